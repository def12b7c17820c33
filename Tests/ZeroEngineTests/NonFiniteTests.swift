import Foundation
import Testing
import ZeroComm
import ZeroEngine
import ZeroModels

/// A non-finite loss or gradient norm skips the step without touching weights or
/// optimizer state, is counted, and K skips in a row stop the run with a message.
@Suite struct NonFiniteTests {
    /// gpt-tiny weights from the seeded init with `poison` in block 0 (one NaN is refused
    /// at load time; a row of huge finite values makes the forward overflow), as a
    /// safetensors file.
    static func poisonedWeights(_ dir: URL, nan: Bool = false) throws -> URL {
        let gpt = GPT(config: .tiny, batchSize: 1, sequenceLength: 8, ledger: nil)
        var units = gpt.layout.units.enumerated().map { u, info in
            var values = [Float](repeating: 0, count: info.count)
            values.withUnsafeMutableBufferPointer { gpt.initialize(unit: u, into: $0, seed: 1) }
            return values
        }
        if nan { units[1][5] = .nan } else { for i in 0..<256 { units[1][i] = 3e38 } }
        let url = dir.appendingPathComponent(nan ? "nan.safetensors" : "huge.safetensors")
        try withUnitPointers(units) { try saveGPT2(units: $0, config: .tiny, to: url, dtype: .f32) }
        return url
    }

    @Test func nonFiniteStepsAreSkippedAndCounted() throws {
        let dir = temporaryDirectory("nan")
        var config = tinyConfig(stage: 2, globalMicroBatches: 2, steps: 1)
        config.initFrom = try Self.poisonedWeights(dir).path
        let one = try simulate(config, ranks: 2)
        #expect(one.skippedSteps == 1 && !one.losses[0].isFinite)
        config.steps = 3
        let three = try simulate(config, ranks: 2)
        #expect(three.skippedSteps == 3)
        // Untouched: the master weights after 3 skipped steps are those after 1.
        #expect(three.paramsSHA256 == one.paramsSHA256)

        config.steps = 10
        config.maxSkips = 4
        do {
            _ = try simulate(config, ranks: 2)
            Issue.record("ran 10 non-finite steps")
        } catch {
            #expect("\(error)".contains("4 steps in a row had a non-finite loss or gradient norm"))
        }
        config.errorIfNonfinite = true
        do {
            _ = try simulate(config, ranks: 2)
            Issue.record("did not stop at the first non-finite step")
        } catch {
            #expect("\(error)".contains("non-finite loss at step 1"))
        }
    }

    /// NaN in --init weights is refused at load time, naming the tensor (not blamed on --lr).
    @Test func nonFiniteInitWeightsAreRefusedByName() throws {
        let dir = temporaryDirectory("nan-init")
        var config = tinyConfig(stage: 2, globalMicroBatches: 2, steps: 1)
        config.initFrom = try Self.poisonedWeights(dir, nan: true).path
        do { _ = try simulate(config, ranks: 2); Issue.record("trained from NaN weights") } catch {
            let gpt = GPT(config: .tiny, batchSize: 1, sequenceLength: 8, ledger: nil)
            let tensor = try #require(gpt.layout.tensors.first { $0.unit == 1 && $0.offset <= 5 && 5 < $0.offset + $0.count })
            #expect("\(error)".contains("tensor \(tensor.name) has 1 non-finite values"), "\(error)")
            #expect("\(error)".contains("nan.safetensors"))
        }
    }

    /// An update that makes weights non-finite stops the run, naming the learning rate;
    /// nothing of that step is saved (the previous checkpoint stays the newest).
    @Test func updateThatMakesWeightsNonFiniteStopsTheRun() throws {
        let dir = temporaryDirectory("nan-update")
        var config = tinyConfig(stage: 3, globalMicroBatches: 2, steps: 3)
        config.optimizer = .sgd
        config.lr = 1e39   // finite as a Double, +inf in the fp32 update
        config.save = dir.path
        config.saveEvery = 1
        do { _ = try simulate(config, ranks: 2); Issue.record("kept training with non-finite weights") } catch {
            #expect("\(error)".contains("weights non-finite") && "\(error)".contains("learning rate is too high"), "\(error)")
        }
        let saved = try FileManager.default.contentsOfDirectory(atPath: dir.path).filter { $0.hasPrefix("step-") }
        #expect(saved.isEmpty, "saved \(saved)")
    }
}
