import ZeroTensor

/// The normalization after each hidden Linear of the MLP (`--norm`): Linear -> norm -> ReLU.
public enum NormKind: String, Sendable, CaseIterable, Codable {
    /// No normalization: the MLP of before, bit for bit.
    case none
    /// BatchNorm1d over the global batch of the step (docs/normalization.md).
    case batch
    /// LayerNorm over the hidden features of each row.
    case layer
}

/// What the batch-norm layers do in the current pass. The trainer sets it; the model reads it.
public enum NormPhase: Sendable, Equatable {
    /// Every layer's statistics of this step are known: normalize with them (the step's final pass).
    case train
    /// Evaluation (torch's eval()): normalize with the running statistics.
    case eval
    /// Layers below `layer` normalize with this step's statistics; `layer` records its input's
    /// partial statistics and the pass stops there.
    case forwardStatistics(layer: Int)
    /// Forward as `.train`; backward through layers above `layer`, which records the partial
    /// sums of its output gradient, and the pass stops there.
    case backwardStatistics(layer: Int)
}

/// A model whose hidden layers may be normalized; the trainer drives BatchNorm's passes through it.
public protocol NormalizedModel: TrainableModel {
    var norms: HiddenNorms { get }
}

/// The norm layers of the MLP's hidden layers: their state, buffers and the two hooks the
/// model calls (after a hidden Linear in forward, after the ReLU's backward in backward).
///
/// Layer k normalizes hidden layer k (op k), C_k = widths[k] channels; its weight (gamma,
/// ones) and bias (beta, zeros) follow the Linear's bias in unit k, undecayed. BatchNorm's
/// running mean and variance are buffers outside the parameters (saved in checkpoints).
/// Used from one thread at a time, like the model.
public final class HiddenNorms: @unchecked Sendable {
    public let kind: NormKind
    public let widths: [Int]
    /// Rows of one micro-batch (B x T).
    public let rows: Int
    public var phase = NormPhase.train

    /// Per layer: this step's global mean and 1/sqrt(var + eps), and the global means of the
    /// output gradient and of its product with xhat (BatchNorm; set by the trainer).
    public var mean: [[Double]], rstd: [[Double]], meanDout: [[Double]], meanDoutXhat: [[Double]]
    /// Per layer: running mean (zeros) and unbiased running variance (ones), fp32 as torch.
    public var runningMean: [[Float]], runningVariance: [[Float]]
    /// The partial statistics the last statistics pass recorded: [first C | second C] values
    /// (mean and m2 in forward, sum of dout and of dout * xhat in backward).
    public private(set) var partial: [Double] = []

    /// Per layer: xhat (BatchNorm) or the norm's input (LayerNorm), [rows, C].
    private let saved: [FlatBuffer<Float>]
    /// LayerNorm's per-row mean and rstd, and its backward's input-gradient scratch.
    private let rowMean: [FlatBuffer<Float>], rowRstd: [FlatBuffer<Float>], scratch: FlatBuffer<Float>?

    public init(kind: NormKind, widths: [Int], rows: Int, ledger: MemoryLedger?) {
        self.kind = kind
        self.widths = kind == .none ? [] : widths
        self.rows = rows
        let w = self.widths
        mean = w.map { [Double](repeating: 0, count: $0) }
        rstd = w.map { [Double](repeating: 1, count: $0) }
        meanDout = mean
        meanDoutXhat = mean
        runningMean = w.map { [Float](repeating: 0, count: $0) }
        runningVariance = w.map { [Float](repeating: 1, count: $0) }
        saved = w.map { FlatBuffer(count: rows * $0, category: .activations, ledger: ledger) }
        let perRow = kind == .layer ? w : []
        rowMean = perRow.map { _ in FlatBuffer(count: rows, category: .activations, ledger: ledger) }
        rowRstd = perRow.map { _ in FlatBuffer(count: rows, category: .activations, ledger: ledger) }
        scratch = kind == .layer ? FlatBuffer(count: rows * w.max()!, category: .activations, ledger: ledger) : nil
    }

    /// Bytes a model with these norms allocates for them (for the activation estimate).
    public static func activationBytes(kind: NormKind, widths: [Int], rows: Int) -> Int {
        switch kind {
        case .none: return 0
        case .batch: return widths.reduce(0) { $0 + rows * $1 } * 4
        case .layer: return (widths.reduce(0) { $0 + rows * $1 + 2 * rows } + rows * widths.max()!) * 4
        }
    }

    /// Parameters a norm adds to a hidden layer of `width` channels (weight and bias).
    public static func parameterCount(kind: NormKind, width: Int) -> Int { kind == .none ? 0 : 2 * width }

    /// The norm's tensors of hidden layer k: "layers.k.norm.weight" and ".bias", at `offset` of unit k.
    public static func tensors(kind: NormKind, layer k: Int, width: Int, offset: Int) -> [TensorInfo] {
        guard kind != .none else { return [] }
        return [TensorInfo(name: "layers.\(k).norm.weight", shape: [width], unit: k, offset: offset, decay: false),
                TensorInfo(name: "layers.\(k).norm.bias", shape: [width], unit: k, offset: offset + width, decay: false)]
    }

    /// Initial weight ones and bias zeros (as torch), into a unit's buffer at `offset`.
    public static func initialize(kind: NormKind, width: Int, into unit: UnsafeMutableBufferPointer<Float>, offset: Int) {
        guard kind != .none else { return }
        UnsafeMutableBufferPointer(rebasing: unit[offset ..< offset + width]).update(repeating: 1)
        UnsafeMutableBufferPointer(rebasing: unit[offset + width ..< offset + 2 * width]).update(repeating: 0)
    }

    /// Normalizes hidden layer k's pre-activation h [rows, C] in place (weight = gamma, weight + C = beta).
    /// Returns false when this pass stops here (BatchNorm recording layer k's input statistics).
    public func forward(layer k: Int, values h: UnsafeMutablePointer<Float>, weight: UnsafePointer<Float>) -> Bool {
        guard kind != .none else { return true }
        let C = widths[k], N = rows, s = saved[k].pointer.baseAddress!
        if kind == .layer {
            s.update(from: h, count: N * C)
            Kernels.layerNormForward(out: h, mean: rowMean[k].pointer.baseAddress!, rstd: rowRstd[k].pointer.baseAddress!,
                                     inp: s, weight: weight, bias: weight + C, N: N, C: C)
            return true
        }
        if case .forwardStatistics(let j) = phase, j == k {
            partial = [Double](repeating: 0, count: 2 * C)
            partial.withUnsafeMutableBufferPointer {
                BatchNorm.partialStatistics(inp: h, N: N, C: C, mean: $0.baseAddress!, m2: $0.baseAddress! + C)
            }
            return false
        }
        if phase == .eval {
            let m = runningMean[k].map(Double.init)
            let r = runningVariance[k].map { 1 / (Double($0) + BatchNorm.epsilon).squareRoot() }
            BatchNorm.forward(out: h, xhat: s, inp: h, mean: m, rstd: r, weight: weight, bias: weight + C, N: N, C: C)
        } else {
            BatchNorm.forward(out: h, xhat: s, inp: h, mean: mean[k], rstd: rstd[k], weight: weight, bias: weight + C, N: N, C: C)
        }
        return true
    }

    /// Backward of layer k's norm in place on d [rows, C] (the gradient of its output in, of its
    /// input out), adding to dweight (C) and dweight + C (the bias). Returns false when this pass
    /// stops here (BatchNorm recording layer k's output-gradient sums).
    public func backward(layer k: Int, gradient d: UnsafeMutablePointer<Float>, weight: UnsafePointer<Float>,
                         dweight: UnsafeMutablePointer<Float>) -> Bool {
        guard kind != .none else { return true }
        let C = widths[k], N = rows, s = saved[k].pointer.baseAddress!
        if kind == .layer {
            let dx = scratch!.pointer.baseAddress!
            dx.update(repeating: 0, count: N * C)
            Kernels.layerNormBackward(dinp: dx, dweight: dweight, dbias: dweight + C, dout: d, inp: s, weight: weight,
                                      mean: rowMean[k].pointer.baseAddress!, rstd: rowRstd[k].pointer.baseAddress!, N: N, C: C)
            d.update(from: dx, count: N * C)
            return true
        }
        precondition(phase != .eval, "BatchNorm backward in evaluation mode")
        if case .backwardStatistics(let j) = phase, j == k {
            partial = [Double](repeating: 0, count: 2 * C)
            partial.withUnsafeMutableBufferPointer {
                BatchNorm.partialGradientSums(dout: d, xhat: s, N: N, C: C, sumDout: $0.baseAddress!, sumDoutXhat: $0.baseAddress! + C)
            }
            return false
        }
        BatchNorm.backward(dinp: d, dweight: dweight, dbias: dweight + C, dout: d, xhat: s, weight: weight,
                           rstd: rstd[k], meanDout: meanDout[k], meanDoutXhat: meanDoutXhat[k], N: N, C: C)
        return true
    }

    /// Running statistics as checkpoint buffers: ("layers.k.norm.running_mean" | "running_var", values).
    public var buffers: [(name: String, values: [Float])] {
        guard kind == .batch else { return [] }
        return widths.indices.flatMap { k in
            [("layers.\(k).norm.running_mean", runningMean[k]), ("layers.\(k).norm.running_var", runningVariance[k])]
        }
    }

    /// Sets buffer `name` (one of `buffers`' names) to `values`.
    public func setBuffer(_ name: String, _ values: [Float]) {
        for k in widths.indices {
            if name == "layers.\(k).norm.running_mean" { precondition(values.count == widths[k]); runningMean[k] = values }
            if name == "layers.\(k).norm.running_var" { precondition(values.count == widths[k]); runningVariance[k] = values }
        }
    }
}
