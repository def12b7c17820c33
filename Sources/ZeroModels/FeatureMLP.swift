import ZeroTensor

/// The MLP over feature rows, for `--task classify` (K logits) and `--task contrastive`
/// (embeddings), the sibling of the token `MLP` on the same kernels.
///
/// Layer 0 is a Linear on the F features followed by ReLU; layers 1..<n are Linear + ReLU;
/// layer n is a Linear to the outputs, followed by the objective (`ObjectiveKernels`). One unit per
/// layer ("layers.k.weight" [in, out], "layers.k.bias" [out]); op k = layer k. Rows: B examples,
/// or 2B for the contrastive objectives (view 1 of every example, then view 2). With a norm
/// (`norms`, docs/normalization.md) each hidden layer is Linear -> norm -> ReLU, as in the token MLP.
/// Sendable only to be handed to a rank thread: all use is from one thread at a time.
public final class FeatureMLP: FeatureModel, NormalizedModel, @unchecked Sendable {
    public let layout: ParameterLayout
    public let featureCount: Int
    public let outputWidth: Int
    public let hiddenWidths: [Int]
    public let examples: Int
    public let views: Int
    public let objective: Objective
    public let opUnits: [[Int]]
    public var vocabularySize: Int { outputWidth }
    public var contextLength: Int { 1 }
    public private(set) var loss: Float = .nan
    public let precision: ComputePrecision
    /// The norm after each hidden Linear (none by default).
    public let norms: HiddenNorms

    private let matmul: Matmul
    private let widths: [Int]            // [F] + hidden + [outputs]
    private let rows: Int
    private let inputOffset, outputOffset: Int
    private let hiddenOffsets: [Int]
    private let scratchOffsets: (Int, Int)
    private let floats: FlatBuffer<Float>
    private let labels: FlatBuffer<Int32>
    /// d(loss)/d(outputs) [rows, outputs] given from outside (the global-batch InfoNCE, whose loss
    /// spans every micro-batch of the step): used by the next backward instead of the objective's.
    public var outputGradient: [Float]? = nil
    /// Dropout probability on every hidden activation (after its ReLU), as `torch.nn.Dropout(p)`:
    /// kept values are scaled by 1 / (1 - p). Only training micro-batches (step >= 0) drop.
    public let dropout: Float
    private var dropoutKey: Dropout.Key? = nil

    public init(featureCount: Int, hiddenWidths: [Int], outputs: Int, examples: Int, objective: Objective,
                ledger: MemoryLedger?, precision: ComputePrecision = .fp32, dropout: Float = 0, norm: NormKind = .none) {
        precondition(!hiddenWidths.isEmpty && hiddenWidths.allSatisfy { $0 > 0 } && featureCount > 0 && outputs > 0)
        precondition(dropout >= 0 && dropout < 1, "dropout must be in [0, 1)")
        self.dropout = dropout
        self.featureCount = featureCount
        self.hiddenWidths = hiddenWidths
        outputWidth = outputs
        self.examples = examples
        self.objective = objective
        views = objective.isContrastive ? 2 : 1
        self.precision = precision
        matmul = Matmul(precision)
        self.rows = views * examples
        widths = [featureCount] + hiddenWidths + [outputs]
        layout = FeatureMLP.layout(widths: widths, norm: norm)
        norms = HiddenNorms(kind: norm, widths: hiddenWidths, rows: views * examples, ledger: ledger)
        opUnits = (0...hiddenWidths.count).map { [$0] }
        let rows = views * examples, widest = max(hiddenWidths.max()!, outputs)
        // Input rows, hidden activations, outputs, then two gradient scratch buffers.
        let sizes = [rows * featureCount] + hiddenWidths.map { rows * $0 } + [rows * outputs, rows * widest, rows * widest]
        let offsets = sizes.indices.map { sizes[..<$0].reduce(0, +) }
        inputOffset = offsets[0]
        hiddenOffsets = Array(offsets[1 ... hiddenWidths.count])
        outputOffset = offsets[hiddenWidths.count + 1]
        scratchOffsets = (offsets[hiddenWidths.count + 2], offsets[hiddenWidths.count + 3])
        floats = FlatBuffer(count: sizes.reduce(0, +), category: .activations, ledger: ledger)
        labels = FlatBuffer(count: examples, category: .activations, ledger: ledger)
    }

    /// Same names and shapes as the token MLP's layout ("layers.k.weight" [in, out], "layers.k.bias").
    public static func layout(widths: [Int], norm: NormKind = .none) -> ParameterLayout {
        var units: [UnitInfo] = [], tensors: [TensorInfo] = []
        for k in 0..<(widths.count - 1) {
            tensors.append(TensorInfo(name: "layers.\(k).weight", shape: [widths[k], widths[k + 1]], unit: k, offset: 0, decay: true))
            tensors.append(TensorInfo(name: "layers.\(k).bias", shape: [widths[k + 1]], unit: k, offset: widths[k] * widths[k + 1], decay: false))
            let normed = k < widths.count - 2 ? norm : .none
            tensors += HiddenNorms.tensors(kind: normed, layer: k, width: widths[k + 1], offset: (widths[k] + 1) * widths[k + 1])
            units.append(UnitInfo(name: "layers.\(k)", count: (widths[k] + 1) * widths[k + 1]
                                  + HiddenNorms.parameterCount(kind: normed, width: widths[k + 1])))
        }
        return ParameterLayout(units: units, tensors: tensors)
    }

    public var inputRows: UnsafeMutableBufferPointer<Float> {
        UnsafeMutableBufferPointer(rebasing: floats.pointer[inputOffset ..< inputOffset + rows * featureCount])
    }
    public var inputLabels: UnsafeMutableBufferPointer<Int32> { labels.pointer }
    public var outputs: UnsafeBufferPointer<Float> {
        UnsafeBufferPointer(rebasing: floats.readOnly[outputOffset ..< outputOffset + rows * outputWidth])
    }

    /// Hidden matrices normal(0, sqrt(2 / fan_in)) (He, for ReLU); the output matrix
    /// normal(0, 1 / sqrt(fan_in)); zero biases. Keyed by (seed, tensor name).
    public func initialize(unit: Int, into buffer: UnsafeMutableBufferPointer<Float>, seed: UInt64) {
        let fanIn = widths[unit], out = widths[unit + 1]
        let std: Float = unit == hiddenWidths.count ? 1 / Float(fanIn).squareRoot() : (2 / Float(fanIn)).squareRoot()
        var rng = SeededGenerator(seed: seed, key: "layers.\(unit).weight")
        rng.fillNormal(UnsafeMutableBufferPointer(rebasing: buffer[0..<(fanIn * out)]), std: std)
        UnsafeMutableBufferPointer(rebasing: buffer[(fanIn * out)..<((fanIn + 1) * out)]).update(repeating: 0)
        if unit < hiddenWidths.count { HiddenNorms.initialize(kind: norms.kind, width: out, into: buffer, offset: (fanIn + 1) * out) }
    }

    public func setBatchKey(seed: UInt64, step: Int, microBatch g: Int) {
        dropoutKey = Dropout.Key(p: dropout, seed: seed, step: step, microBatch: g)
    }

    /// Token batches do not apply: the data source writes `inputRows` and `inputLabels`.
    public func setBatch(tokens: UnsafeBufferPointer<Int32>, targets: UnsafeBufferPointer<Int32>, batchSize: Int, sequenceLength: Int) {
        preconditionFailure("FeatureMLP takes feature rows, not tokens")
    }

    public func forward(op k: Int, weights: [UnsafeBufferPointer<Float>?]) {
        let n = hiddenWidths.count, a = floats.pointer.baseAddress!
        let w = weights[k]!.baseAddress!, inW = widths[k], outW = widths[k + 1]
        let inp = k == 0 ? a + inputOffset : a + hiddenOffsets[k - 1]
        let out = k == n ? a + outputOffset : a + hiddenOffsets[k]
        Kernels.linearForward(out: out, inp: inp, weight: w, bias: w + inW * outW, N: rows, C: inW, OC: outW, matmul: matmul)
        if k < n {
            guard norms.forward(layer: k, values: out, weight: w + (inW + 1) * outW) else { return }
            Kernels.reluForward(out: out, inp: out, count: rows * outW)
            if let key = dropoutKey { Dropout.forward(out, count: rows * outW, layer: k, key: key, p: dropout) }
        } else {
            for b in 0..<examples where objective.isContrastive == false {
                precondition(labels.pointer[b] >= 0 && Int(labels.pointer[b]) < outputWidth, "label out of range")
            }
            loss = ObjectiveKernels.forward(objective, outputs: out, labels: labels.readOnly.baseAddress!, rows: rows, width: outW)
        }
    }

    public func backward(op k: Int, weights: [UnsafeBufferPointer<Float>?], gradients: [UnsafeMutableBufferPointer<Float>?]) {
        let n = hiddenWidths.count, a = floats.pointer.baseAddress!
        let w = weights[k]!.baseAddress!, g = gradients[k]!.baseAddress!, inW = widths[k], outW = widths[k + 1]
        // d(output of layer j) lives in scratch[j % 2].
        func scratch(_ j: Int) -> UnsafeMutablePointer<Float> { a + (j % 2 == 0 ? scratchOffsets.0 : scratchOffsets.1) }
        let d: UnsafeMutablePointer<Float>
        if k == n {
            d = a + outputOffset
            if let given = outputGradient {
                precondition(given.count == rows * outW, "output gradient of the wrong size")
                d.update(from: given, count: given.count)
                outputGradient = nil
            } else {
                ObjectiveKernels.backward(objective, gradient: d, outputs: d, labels: labels.readOnly.baseAddress!, rows: rows, width: outW)
            }
        } else {
            d = scratch(k)
            Kernels.reluBackward(dinp: d, out: a + hiddenOffsets[k], dout: d, count: rows * outW)
            if dropoutKey != nil { Dropout.backward(d, count: rows * outW, p: dropout) }
            guard norms.backward(layer: k, gradient: d, weight: w + (inW + 1) * outW, dweight: g + (inW + 1) * outW) else { return }
        }
        let inp = k == 0 ? a + inputOffset : a + hiddenOffsets[k - 1]
        Kernels.linearBackward(dinp: k == 0 ? nil : scratch(k - 1), dweight: g, dbias: g + inW * outW, dout: d,
                               inp: inp, weight: w, N: rows, C: inW, OC: outW, matmul: matmul)
    }
}
