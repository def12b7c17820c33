import Foundation
import Testing
import ZeroComm
import ZeroEngine
import ZeroModels

/// A non-finite loss or gradient norm skips the step without touching weights or
/// optimizer state, is counted, and K skips in a row stop the run with a message.
@Suite struct NonFiniteTests {
    /// gpt-tiny weights from the seeded init with one NaN in block 0, as a safetensors file.
    static func poisonedWeights(_ dir: URL) throws -> URL {
        let gpt = GPT(config: .tiny, batchSize: 1, sequenceLength: 8, ledger: nil)
        var units = gpt.layout.units.enumerated().map { u, info in
            var values = [Float](repeating: 0, count: info.count)
            values.withUnsafeMutableBufferPointer { gpt.initialize(unit: u, into: $0, seed: 1) }
            return values
        }
        units[1][5] = .nan
        let url = dir.appendingPathComponent("poisoned.safetensors")
        try withUnitPointers(units) { try saveGPT2(units: $0, config: .tiny, to: url, dtype: .f32) }
        return url
    }

    @Test func nonFiniteStepsAreSkippedAndCounted() throws {
        let dir = temporaryDirectory("nan")
        var config = tinyConfig(stage: 2, globalMicroBatches: 2, steps: 1)
        config.initFrom = try Self.poisonedWeights(dir).path
        let one = try simulate(config, ranks: 2)
        #expect(one.skippedSteps == 1 && one.losses[0].isNaN)
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
}
