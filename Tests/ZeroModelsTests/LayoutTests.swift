import Foundation
import Testing
import ZeroModels
import ZeroTensor

@Suite struct LayoutTests {
    @Test(arguments: GPTConfig.presets)
    func gptLayoutCounts(config: GPTConfig) {
        let layout = GPT.layout(for: config)
        #expect(layout.units.count == config.layers + 2)
        #expect(layout.units[0].count == config.embeddingUnitCount)
        #expect(layout.units[1...config.layers].allSatisfy { $0.count == config.blockUnitCount })
        #expect(layout.units.last!.count == config.finalUnitCount)
        #expect(layout.parameterCount == config.parameterCount)
        // tensors tile each unit exactly, in order
        for u in layout.units.indices {
            var offset = 0
            for t in layout.tensors where t.unit == u {
                #expect(t.offset == offset)
                offset += t.count
            }
            #expect(offset == layout.units[u].count)
        }
        #expect(layout.tensor(named: "h.0.attn.c_attn.weight")?.shape == [config.channels, 3 * config.channels])
        #expect(layout.tensor(named: "wte.weight")?.decay == true && layout.tensor(named: "h.0.ln_1.weight")?.decay == false)
        #expect(layout.tensor(named: "h.0.mlp.c_fc.bias")?.decay == false)
    }

    @Test func gpt2SmallParameterCount() {
        #expect(GPTConfig.gpt2.parameterCount == 124_439_808)
    }

    @Test func gptOps() {
        let model = GPT(config: .tiny, batchSize: 1, sequenceLength: 8, ledger: nil)
        #expect(model.opUnits == [[0], [1], [2], [3, 0]])
    }

    /// GPT-2 init: statistics per tensor, and values keyed by (seed, name) only.
    @Test func gptInitialization() {
        let config = GPTConfig.small
        let model = GPT(config: config, batchSize: 1, sequenceLength: 4, ledger: nil)
        let layout = model.layout
        var units = layout.units.map { [Float](repeating: .nan, count: $0.count) }
        for u in units.indices.reversed() {
            units[u].withUnsafeMutableBufferPointer { model.initialize(unit: u, into: $0, seed: 7) }
        }
        for t in layout.tensors {
            let v = units[t.unit][t.offset..<(t.offset + t.count)]
            if t.name.hasSuffix(".bias") { #expect(v.allSatisfy { $0 == 0 }, "\(t.name)"); continue }
            if t.name.contains("ln_") { #expect(v.allSatisfy { $0 == 1 }, "\(t.name)"); continue }
            let mean = v.reduce(0.0) { $0 + Double($1) } / Double(v.count)
            let std = (v.reduce(0.0) { $0 + Double($1) * Double($1) } / Double(v.count) - mean * mean).squareRoot()
            let expected = t.name.hasSuffix("c_proj.weight") ? 0.02 / (2.0 * Double(config.layers)).squareRoot() : 0.02
            #expect(abs(std / expected - 1) < 0.03, "\(t.name): std \(std), expected \(expected)")
            #expect(abs(mean) < 4 * expected / Double(v.count).squareRoot() + 1e-7, "\(t.name): mean \(mean)")
        }
        // same seed: same values, in any order, from a fresh model; other seed: different
        let other = GPT(config: config, batchSize: 2, sequenceLength: 8, ledger: nil)
        var again = [Float](repeating: 0, count: layout.units[2].count)
        again.withUnsafeMutableBufferPointer { other.initialize(unit: 2, into: $0, seed: 7) }
        #expect(again == units[2])
        again.withUnsafeMutableBufferPointer { other.initialize(unit: 2, into: $0, seed: 8) }
        #expect(again != units[2])
        // h.0 and h.1 differ (keyed by name)
        #expect(units[1] != units[2])
    }

    @Test func mlpLayoutAndInit() {
        let model = MLP(vocabularySize: 16, hiddenWidths: [8, 4], batchSize: 1, sequenceLength: 2, ledger: nil)
        #expect(model.layout.units.map(\.count) == [17 * 8, 9 * 4, 5 * 16])
        #expect(model.opUnits == [[0], [1], [2]])
        var buffer = [Float](repeating: 1, count: 17 * 8)
        buffer.withUnsafeMutableBufferPointer { model.initialize(unit: 0, into: $0, seed: 1) }
        #expect(buffer[(16 * 8)...].allSatisfy { $0 == 0 })
        #expect(buffer[..<(16 * 8)].contains { $0 != 0 })
    }

    /// A few SGD steps on the embedded corpus lower the loss (the whole op loop works).
    @Test func gptLearns() throws {
        let config = GPTConfig(name: "t", vocabularySize: 256, contextLength: 16, layers: 1, heads: 2, channels: 32)
        let B = 4, T = 16
        let model = GPT(config: config, batchSize: B, sequenceLength: T, ledger: nil)
        var units = model.layout.units.map { [Float](repeating: 0, count: $0.count) }
        for u in units.indices { units[u].withUnsafeMutableBufferPointer { model.initialize(unit: u, into: $0, seed: 1) } }
        let data = try TokenDataset.embedded()
        var tok = [Int32](repeating: 0, count: B * T), tgt = tok
        tok.withUnsafeMutableBufferPointer { tp in tgt.withUnsafeMutableBufferPointer { gp in
            data.fill(step: 0, microBatch: 0, seed: 1, batchSize: B, sequenceLength: T, tokens: tp, targets: gp)
        } }
        var losses: [Float] = []
        for _ in 0..<30 {
            let run = runModel(model, units: units, tokens: tok, targets: tgt, B: B, T: T)
            losses.append(run.loss)
            for u in units.indices { for i in units[u].indices { units[u][i] -= 0.5 * run.gradients[u][i] } }
        }
        #expect(abs(losses[0] - log(256)) < 0.1, "initial loss \(losses[0])")
        #expect(losses.last! < 0.7 * losses[0], "losses \(losses)")
    }
}
