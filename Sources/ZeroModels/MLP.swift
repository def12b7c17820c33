import ZeroTensor

/// A next-token MLP for simple tasks: each position sees only its current token.
///
/// Layer 0 is an embedding of the token (a Linear on its one-hot: row lookup plus bias)
/// followed by ReLU; layers 1..<n are Linear + ReLU; layer n is a Linear to V logits
/// followed by mean cross-entropy. One unit per layer ("layers.k.weight" [in, out],
/// "layers.k.bias" [out]); op k = layer k. Same calling order and threading rule as `GPT`.
/// With a norm (`norms`, docs/normalization.md) each hidden layer is Linear -> norm -> ReLU and
/// its unit also holds "layers.k.norm.weight" and "layers.k.norm.bias" [out]. With `dropout`
/// p > 0 every hidden activation is dropped after its ReLU (`Dropout`, as in the feature MLP).
/// Sendable only to be handed to a rank thread: all use is from one thread at a time, never concurrent.
public final class MLP: NormalizedModel, MicroBatchKeyed, @unchecked Sendable {
    public let layout: ParameterLayout
    public let vocabularySize: Int
    public let hiddenWidths: [Int]
    public let batchSize: Int
    public let sequenceLength: Int
    public let opUnits: [[Int]]
    /// No positional state: any length works; reported as the micro-batch's length.
    public var contextLength: Int { sequenceLength }
    public private(set) var loss: Float = .nan
    /// The dtype every matmul multiplies in (bf16: bf16-rounded inputs, fp32 accumulation).
    public let precision: ComputePrecision
    /// The norm after each hidden Linear (Linear -> norm -> ReLU; none by default).
    public let norms: HiddenNorms

    private let matmul: Matmul
    private let widths: [Int]            // [V] + hidden + [V]
    private let hiddenOffsets: [Int]     // h_k [N, widths[k+1]] for k in 0..<n
    private let logitsOffset, lossesOffset: Int
    private let scratchOffsets: (Int, Int)
    private let floats: FlatBuffer<Float>
    private let ids: FlatBuffer<Int32>
    /// Dropout probability after each hidden ReLU, as `torch.nn.Dropout(p)`; training micro-batches only.
    public let dropout: Float
    private var dropoutKey: Dropout.Key? = nil

    public init(vocabularySize: Int, hiddenWidths: [Int], batchSize: Int, sequenceLength: Int, ledger: MemoryLedger?,
                precision: ComputePrecision = .fp32, norm: NormKind = .none, dropout: Float = 0) {
        precondition(!hiddenWidths.isEmpty && hiddenWidths.allSatisfy { $0 > 0 }, "MLP needs at least one positive hidden width")
        precondition(dropout >= 0 && dropout < 1, "dropout must be in [0, 1)")
        self.dropout = dropout
        self.vocabularySize = vocabularySize
        self.precision = precision
        matmul = Matmul(precision)
        self.hiddenWidths = hiddenWidths
        self.batchSize = batchSize
        self.sequenceLength = sequenceLength
        layout = MLP.layout(vocabularySize: vocabularySize, hiddenWidths: hiddenWidths, norm: norm)
        norms = HiddenNorms(kind: norm, widths: hiddenWidths, rows: batchSize * sequenceLength, ledger: ledger)
        widths = [vocabularySize] + hiddenWidths + [vocabularySize]
        opUnits = (0...hiddenWidths.count).map { [$0] }
        let plan = MLP.plan(vocabularySize: vocabularySize, hiddenWidths: hiddenWidths, N: batchSize * sequenceLength)
        hiddenOffsets = plan.hidden
        logitsOffset = plan.logits
        lossesOffset = plan.losses
        scratchOffsets = plan.scratch
        floats = FlatBuffer(count: plan.total, category: .activations, ledger: ledger)
        ids = FlatBuffer(count: 2 * batchSize * sequenceLength, category: .activations, ledger: ledger)
    }

    public static func layout(vocabularySize V: Int, hiddenWidths: [Int], norm: NormKind = .none) -> ParameterLayout {
        let widths = [V] + hiddenWidths + [V]
        var units: [UnitInfo] = [], tensors: [TensorInfo] = []
        for k in 0..<(widths.count - 1) {
            tensors.append(TensorInfo(name: "layers.\(k).weight", shape: [widths[k], widths[k + 1]], unit: k, offset: 0, decay: true))
            tensors.append(TensorInfo(name: "layers.\(k).bias", shape: [widths[k + 1]], unit: k, offset: widths[k] * widths[k + 1], decay: false))
            let normed = k < hiddenWidths.count ? norm : .none
            tensors += HiddenNorms.tensors(kind: normed, layer: k, width: widths[k + 1], offset: (widths[k] + 1) * widths[k + 1])
            units.append(UnitInfo(name: "layers.\(k)", count: (widths[k] + 1) * widths[k + 1]
                                  + HiddenNorms.parameterCount(kind: normed, width: widths[k + 1])))
        }
        return ParameterLayout(units: units, tensors: tensors)
    }

    private static func plan(vocabularySize V: Int, hiddenWidths: [Int], N: Int)
        -> (hidden: [Int], logits: Int, losses: Int, scratch: (Int, Int), total: Int)
    {
        var o = 0
        func take(_ n: Int) -> Int { defer { o += n }; return o }
        let hidden = hiddenWidths.map { take(N * $0) }
        let logits = take(N * V), losses = take(N)
        let widest = hiddenWidths.max()!
        let scratch = (take(N * widest), take(N * widest))
        return (hidden, logits, losses, scratch, o)
    }

    /// Bytes this model allocates through the ledger for a B x T micro-batch.
    public static func activationBytes(vocabularySize: Int, hiddenWidths: [Int], batchSize: Int, sequenceLength: Int,
                                       norm: NormKind = .none) -> Int {
        plan(vocabularySize: vocabularySize, hiddenWidths: hiddenWidths, N: batchSize * sequenceLength).total * 4
            + 2 * batchSize * sequenceLength * 4
            + HiddenNorms.activationBytes(kind: norm, widths: hiddenWidths, rows: batchSize * sequenceLength)
    }

    /// The logits [B, T, V] after the last forward op (overwritten by backward).
    public var logits: UnsafeBufferPointer<Float> {
        UnsafeBufferPointer(rebasing: floats.readOnly[logitsOffset..<(logitsOffset + batchSize * sequenceLength * vocabularySize)])
    }

    /// Embedding rows normal(0, 1); hidden matrices normal(0, sqrt(2 / fan_in)) (He, for ReLU);
    /// the output matrix normal(0, 1 / sqrt(fan_in)); zero biases. Keyed by (seed, tensor name).
    public func initialize(unit: Int, into buffer: UnsafeMutableBufferPointer<Float>, seed: UInt64) {
        let fanIn = widths[unit], out = widths[unit + 1]
        let std: Float = unit == 0 ? 1 : (unit == hiddenWidths.count ? 1 / Float(fanIn).squareRoot() : (2 / Float(fanIn)).squareRoot())
        var rng = SeededGenerator(seed: seed, key: "layers.\(unit).weight")
        rng.fillNormal(UnsafeMutableBufferPointer(rebasing: buffer[0..<(fanIn * out)]), std: std)
        UnsafeMutableBufferPointer(rebasing: buffer[(fanIn * out)..<((fanIn + 1) * out)]).update(repeating: 0)
        if unit < hiddenWidths.count { HiddenNorms.initialize(kind: norms.kind, width: out, into: buffer, offset: (fanIn + 1) * out) }
    }

    public func setBatch(tokens: UnsafeBufferPointer<Int32>, targets: UnsafeBufferPointer<Int32>, batchSize: Int, sequenceLength: Int) {
        precondition(batchSize == self.batchSize && sequenceLength == self.sequenceLength, "batch shape differs from the model's")
        let n = batchSize * sequenceLength
        for i in 0..<n {
            precondition(tokens[i] >= 0 && Int(tokens[i]) < vocabularySize && targets[i] >= 0 && Int(targets[i]) < vocabularySize,
                         "token id out of range")
            ids[i] = tokens[i]
            ids[n + i] = targets[i]
        }
    }

    public func setBatchKey(seed: UInt64, step: Int, microBatch g: Int) {
        dropoutKey = Dropout.Key(p: dropout, seed: seed, step: step, microBatch: g)
    }

    public func forward(op k: Int, weights: [UnsafeBufferPointer<Float>?]) {
        let N = batchSize * sequenceLength, n = hiddenWidths.count
        let a = floats.pointer.baseAddress!, tokens = UnsafePointer(ids.pointer.baseAddress!)
        let w = weights[k]!.baseAddress!, inW = widths[k], outW = widths[k + 1]
        let bias = w + inW * outW
        // With a norm, ReLU waits for it (Linear -> norm -> ReLU); none keeps the fused embedding ReLU.
        let normed = norms.kind != .none
        if k == 0 {
            let h = a + hiddenOffsets[0]
            for r in 0..<N {
                let row = w + Int(tokens[r]) * outW, o = h + r * outW
                if normed { for j in 0..<outW { o[j] = row[j] + bias[j] } } else { for j in 0..<outW { o[j] = max(row[j] + bias[j], 0) } }
            }
            if normed {
                guard norms.forward(layer: 0, values: h, weight: bias + outW) else { return }
                Kernels.reluForward(out: h, inp: h, count: N * outW)
            }
            if let key = dropoutKey { Dropout.forward(h, count: N * outW, layer: 0, key: key, p: dropout) }
        } else if k < n {
            let h = a + hiddenOffsets[k]
            Kernels.linearForward(out: h, inp: a + hiddenOffsets[k - 1], weight: w, bias: bias, N: N, C: inW, OC: outW, matmul: matmul)
            guard norms.forward(layer: k, values: h, weight: bias + outW) else { return }
            Kernels.reluForward(out: h, inp: h, count: N * outW)
            if let key = dropoutKey { Dropout.forward(h, count: N * outW, layer: k, key: key, p: dropout) }
        } else {
            Kernels.linearForward(out: a + logitsOffset, inp: a + hiddenOffsets[k - 1], weight: w, bias: bias, N: N, C: inW, OC: outW, matmul: matmul)
            loss = Kernels.crossEntropyForward(losses: a + lossesOffset, logits: a + logitsOffset, targets: tokens + N, N: N, V: vocabularySize)
        }
    }

    public func backward(op k: Int, weights: [UnsafeBufferPointer<Float>?], gradients: [UnsafeMutableBufferPointer<Float>?]) {
        let N = batchSize * sequenceLength, n = hiddenWidths.count
        let a = floats.pointer.baseAddress!, tokens = UnsafePointer(ids.pointer.baseAddress!)
        let w = weights[k]!.baseAddress!, g = gradients[k]!.baseAddress!, inW = widths[k], outW = widths[k + 1]
        // d(output of layer j) lives in scratch[j % 2].
        func scratch(_ j: Int) -> UnsafeMutablePointer<Float> { a + (j % 2 == 0 ? scratchOffsets.0 : scratchOffsets.1) }
        if k == n {
            let dlogits = a + logitsOffset
            Kernels.crossEntropyBackward(dlogits: dlogits, logits: dlogits, targets: tokens + N, N: N, V: vocabularySize, dloss: 1 / Float(N))
            Kernels.linearBackward(dinp: scratch(k - 1), dweight: g, dbias: g + inW * outW, dout: dlogits,
                                   inp: a + hiddenOffsets[k - 1], weight: w, N: N, C: inW, OC: outW, matmul: matmul)
        } else {
            let d = scratch(k), h = a + hiddenOffsets[k]
            Kernels.reluBackward(dinp: d, out: h, dout: d, count: N * outW)
            if dropoutKey != nil { Dropout.backward(d, count: N * outW, p: dropout) }
            guard norms.backward(layer: k, gradient: d, weight: w + (inW + 1) * outW, dweight: g + (inW + 1) * outW) else { return }
            if k == 0 {
                Kernels.encoderBackward(dwte: g, dwpe: nil, dout: d, tokens: tokens, B: 1, T: N, C: outW)
                Kernels.biasBackward(dbias: g + inW * outW, dout: d, N: N, OC: outW)
            } else {
                Kernels.linearBackward(dinp: scratch(k - 1), dweight: g, dbias: g + inW * outW, dout: d,
                                       inp: a + hiddenOffsets[k - 1], weight: w, N: N, C: inW, OC: outW, matmul: matmul)
            }
        }
    }
}
