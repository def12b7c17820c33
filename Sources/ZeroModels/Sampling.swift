import Foundation
import ZeroTensor

/// How the next token is drawn from the logits.
public struct SamplingOptions: Sendable, Equatable {
    /// Divides the logits; 0 takes the most likely token (greedy).
    public var temperature = 1.0
    /// Keep only the k most likely tokens (0: all).
    public var topK = 0
    public var seed: UInt64 = 1337
    public init(temperature: Double = 1.0, topK: Int = 0, seed: UInt64 = 1337) {
        self.temperature = temperature; self.topK = topK; self.seed = seed
    }
}

extension GPT {
    /// Continues `prompt` by `count` tokens with weights `units` (fp32, one buffer per
    /// unit, layout order). Each token costs one forward pass over the last
    /// min(context, prompt + count) tokens; causal attention makes the padding after the
    /// current position irrelevant. The draws come from one generator keyed by the seed
    /// alone, so the same weights, prompt and options give the same tokens.
    public static func generate(config: GPTConfig, units: [UnsafeBufferPointer<Float>], prompt: [Int32], count: Int,
                                options: SamplingOptions) -> [Int32] {
        precondition(!prompt.isEmpty, "the prompt needs at least one token")
        let window = min(config.contextLength, prompt.count + count)
        let model = GPT(config: config, batchSize: 1, sequenceLength: window, ledger: nil, precision: .fp32)
        let weights: [UnsafeBufferPointer<Float>?] = units
        var rng = SeededGenerator(seed: options.seed, key: "sample")
        var sequence = prompt, generated: [Int32] = []
        var ids = [Int32](repeating: 0, count: window)
        let V = config.vocabularySize
        for _ in 0..<count {
            let context = sequence.suffix(window)
            for (i, t) in context.enumerated() { ids[i] = t }
            for i in context.count..<window { ids[i] = 0 }
            ids.withUnsafeBufferPointer { model.setBatch(tokens: $0, targets: $0, batchSize: 1, sequenceLength: window) }
            for op in model.opUnits.indices { model.forward(op: op, weights: weights) }
            let row = (context.count - 1) * V
            let next = pick(UnsafeBufferPointer(rebasing: model.logits[row..<(row + V)]), options: options, rng: &rng)
            sequence.append(next)
            generated.append(next)
        }
        return generated
    }

    /// Greedy at temperature 0; else softmax(logits / temperature) over the top k, drawn
    /// by inverse CDF (ties broken by the lower token id, so the order is fixed).
    public static func pick(_ logits: UnsafeBufferPointer<Float>, options: SamplingOptions, rng: inout SeededGenerator) -> Int32 {
        let u = rng.nextUniform()
        var order = Array(0..<logits.count)
        order.sort { logits[$0] != logits[$1] ? logits[$0] > logits[$1] : $0 < $1 }
        if options.temperature <= 0 { return Int32(order[0]) }
        if options.topK > 0 { order = Array(order.prefix(options.topK)) }
        let top = Double(logits[order[0]])
        let weights = order.map { exp((Double(logits[$0]) - top) / options.temperature) }
        let target = u * weights.reduce(0, +)
        var sum = 0.0
        for (i, w) in weights.enumerated() {
            sum += w
            if sum > target { return Int32(order[i]) }
        }
        return Int32(order[weights.count - 1])
    }
}
