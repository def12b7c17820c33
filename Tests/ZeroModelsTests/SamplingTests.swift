import Foundation
import Testing
import ZeroModels
import ZeroTensor

/// The sampler: greedy and top-k picks, the distribution it draws from, and that the
/// padded window gives the logits of the unpadded sequence (causal attention).
@Suite struct SamplingTests {
    @Test func greedyTopKAndTemperature() {
        let logits: [Float] = [0.5, 2.0, -1.0, 2.0, 1.0]
        logits.withUnsafeBufferPointer { l in
            var rng = SeededGenerator(seed: 1)
            // Greedy: the highest logit, the lower id on a tie.
            #expect(GPT.pick(l, options: SamplingOptions(temperature: 0), rng: &rng) == 1)
            // top-k 2 only ever returns ids 1 and 3.
            var seen = Set<Int32>()
            for _ in 0..<200 { seen.insert(GPT.pick(l, options: SamplingOptions(temperature: 1, topK: 2), rng: &rng)) }
            #expect(seen == [1, 3])
        }
        // Two logits 0 and ln 3: p = 1/4, 3/4. 40000 draws: the standard error is 0.0022.
        let two: [Float] = [0, Float(log(3.0))]
        var rng = SeededGenerator(seed: 7)
        let ones = two.withUnsafeBufferPointer { l in (0..<40000).filter { _ in GPT.pick(l, options: SamplingOptions(), rng: &rng) == 1 }.count }
        #expect(abs(Double(ones) / 40000 - 0.75) < 0.01, "\(ones)")
        // Temperature 2 flattens it: p(1) = 3^(1/2) / (1 + 3^(1/2)) = 0.634.
        let flat = two.withUnsafeBufferPointer { l in (0..<40000).filter { _ in GPT.pick(l, options: SamplingOptions(temperature: 2), rng: &rng) == 1 }.count }
        #expect(abs(Double(flat) / 40000 - 0.634) < 0.01, "\(flat)")
    }

    @Test func generationFollowsTheModelsLogits() throws {
        let config = GPTConfig.tiny
        let layout = GPT.layout(for: config)
        let model = GPT(config: config, batchSize: 1, sequenceLength: 5, ledger: nil)
        var units = layout.units.map { [Float](repeating: 0, count: $0.count) }
        for u in units.indices { units[u].withUnsafeMutableBufferPointer { model.initialize(unit: u, into: $0, seed: 3) } }
        let prompt: [Int32] = [72, 101, 108, 108, 111]
        // Greedy next token = argmax of the exact-length forward at the last position.
        let logits: [Float] = units.withUnsafeBufferPointers { pointers in
            let w: [UnsafeBufferPointer<Float>?] = pointers
            prompt.withUnsafeBufferPointer { model.setBatch(tokens: $0, targets: $0, batchSize: 1, sequenceLength: 5) }
            for op in model.opUnits.indices { model.forward(op: op, weights: w) }
            return Array(model.logits[(4 * 256)..<(5 * 256)])
        }
        let argmax = Int32(logits.indices.max { logits[$0] < logits[$1] || (logits[$0] == logits[$1] && $0 > $1) }!)
        let greedy = units.withUnsafeBufferPointers { GPT.generate(config: config, units: $0, prompt: prompt, count: 20, options: SamplingOptions(temperature: 0)) }
        #expect(greedy.count == 20 && greedy[0] == argmax)
        // Same seed, same tokens; another seed, other tokens.
        let a = units.withUnsafeBufferPointers { GPT.generate(config: config, units: $0, prompt: prompt, count: 40, options: SamplingOptions(seed: 5)) }
        let b = units.withUnsafeBufferPointers { GPT.generate(config: config, units: $0, prompt: prompt, count: 40, options: SamplingOptions(seed: 5)) }
        let c = units.withUnsafeBufferPointers { GPT.generate(config: config, units: $0, prompt: prompt, count: 40, options: SamplingOptions(seed: 6)) }
        #expect(a == b && a != c)
        // Past the context (64) the window slides.
        let long = units.withUnsafeBufferPointers { GPT.generate(config: config, units: $0, prompt: prompt, count: 70, options: SamplingOptions(seed: 5)) }
        #expect(long.count == 70 && Array(long.prefix(40)) == a)
    }
}
