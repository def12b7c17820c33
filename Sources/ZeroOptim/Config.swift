import ZeroComm
import ZeroTensor

/// The optimizer families ZeroOptim implements, by the name used in configs and JSON.
public enum OptimizerKind: String, CaseIterable, Sendable, Codable {
    /// torch.optim.AdamW: decoupled weight decay, bias-corrected moments.
    case adamw
    /// torch.optim.Adam with `weight_decay` as coupled L2 (added to the gradient).
    case adam
    /// torch.optim.SGD, optionally with momentum, dampening and Nesterov.
    case sgd
    /// torch.optim.Adagrad.
    case adagrad
    /// torch.optim.RMSprop (optionally centered, with momentum).
    case rmsprop
    /// Lion (Chen et al. 2023), as in lucidrains/lion-pytorch.
    case lion
    /// AdamW with block-wise 8-bit quantized moments (bitsandbytes-style dynamic map).
    case adamw8bit
    /// torch.optim.Adafactor (factored second moment, no first moment).
    case adafactor
    /// torch.optim.LBFGS: a closure re-evaluates loss and gradient several times per step, so
    /// the trainer runs it over all units at once (`LBFGS`), not through `makeOptimizer`.
    case lbfgs
}

/// Hyper-parameters of one optimizer. Defaults are PyTorch's for AdamW; use
/// `OptimizerConfig(kind:)` to get the PyTorch defaults of another family.
public struct OptimizerConfig: Sendable, Codable, Equatable {
    public var kind: OptimizerKind
    public var learningRate: Double = 1e-3
    public var beta1: Double = 0.9
    public var beta2: Double = 0.999
    public var eps: Double = 1e-8
    public var weightDecay: Double = 0.01
    /// SGD and RMSprop momentum.
    public var momentum: Double = 0
    /// SGD dampening.
    public var dampening: Double = 0
    /// SGD Nesterov momentum.
    public var nesterov: Bool = false
    /// RMSprop smoothing constant.
    public var alpha: Double = 0.99
    /// RMSprop: normalize by the centered second moment (an estimate of the variance).
    public var centered: Bool = false
    /// Adagrad learning-rate decay: clr = lr / (1 + (step - 1) * lrDecay).
    public var learningRateDecay: Double = 0
    /// Adagrad initial accumulator value.
    public var initialAccumulatorValue: Double = 0
    /// 8-bit AdamW quantization block (elements); must divide 1024 so blocks never straddle shards.
    public var quantizationBlockSize: Int = 256
    /// Adafactor: 1 - beta2_t = step^beta2Decay.
    public var beta2Decay: Double = -0.8
    /// Adafactor eps1 (nil: float32 machine epsilon, as torch) and eps2.
    public var adafactorEps1: Double? = nil
    public var adafactorEps2: Double = 1e-3
    /// Adafactor update clipping threshold d.
    public var clipThreshold: Double = 1.0
    /// L-BFGS history size m (torch's history_size).
    public var history: Int = 100

    /// PyTorch's defaults for `kind` (lion: lucidrains' defaults lr 1e-4, betas 0.9/0.99, decay 0).
    public init(kind: OptimizerKind) {
        self.kind = kind
        switch kind {
        case .adamw, .adamw8bit: break
        case .adam: weightDecay = 0
        case .sgd: weightDecay = 0
        case .adagrad: learningRate = 1e-2; eps = 1e-10; weightDecay = 0
        case .rmsprop: learningRate = 1e-2; weightDecay = 0
        case .lion: learningRate = 1e-4; beta1 = 0.9; beta2 = 0.99; weightDecay = 0
        case .adafactor: learningRate = 1e-2; weightDecay = 0
        case .lbfgs: learningRate = 1; weightDecay = 0
        }
    }

    /// Defaults of `kind`, then the common overrides.
    public init(kind: OptimizerKind, learningRate: Double? = nil, beta1: Double? = nil, beta2: Double? = nil,
                eps: Double? = nil, weightDecay: Double? = nil, momentum: Double = 0, nesterov: Bool = false) {
        self.init(kind: kind)
        if let learningRate { self.learningRate = learningRate }
        if let beta1 { self.beta1 = beta1 }
        if let beta2 { self.beta2 = beta2 }
        if let eps { self.eps = eps }
        if let weightDecay { self.weightDecay = weightDecay }
        self.momentum = momentum
        self.nesterov = nesterov
    }
}

extension OptimizerConfig {
    /// Optimizer-state bytes per parameter, EXCLUDING the fp32 master copy.
    /// Adafactor reports its unfactored upper bound (4: a vector's variance); factored matrices
    /// need only (rows + cols) / (rows * cols) * 4. The instance's `state` gives exact bytes.
    public var stateBytesPerParameter: Double {
        switch kind {
        case .adamw, .adam: return 8
        case .sgd: return momentum != 0 ? 4 : 0
        case .adagrad: return 4
        case .rmsprop: return 4 + (momentum > 0 ? 4 : 0) + (centered ? 4 : 0)
        case .lion: return 4
        case .adamw8bit: return 2 + 2 * 4 / Double(quantizationBlockSize)
        case .adafactor: return 4
        case .lbfgs: return 8 * Double(history) + 8  // m pairs (s, y), direction, previous gradient
        }
    }

    /// ZeRO's K: fp32 master (4) plus optimizer state, bytes per parameter (AdamW: 12).
    public var masterAndStateBytesPerParameter: Double { 4 + stateBytesPerParameter }
}

/// What one step needs besides the buffers.
public struct StepContext: Sendable {
    /// 1-based count of updates applied including this one, like torch's `state['step']` after its increment.
    public var step: Int
    /// The learning rate of this step (from the schedule).
    public var learningRate: Double
    /// For optimizers that need cross-rank statistics; nil in single-process use.
    public var communicator: (any Communicator)?

    public init(step: Int, learningRate: Double, communicator: (any Communicator)? = nil) {
        self.step = step
        self.learningRate = learningRate
        self.communicator = communicator
    }
}

/// One named state array of a shard, parameter-aligned so the engine can reshard it:
/// parameters [a, b) (multiples of parametersPerBlock) own bytes [a/ppb*bpb, b/ppb*bpb).
public struct OptimizerStateArray {
    public let name: String
    public let parametersPerBlock: Int
    public let bytesPerBlock: Int
    public let bytes: UnsafeMutableRawBufferPointer
    /// The same bytes on every rank, whatever the shard (Adafactor's per-tensor statistics):
    /// saved whole and restored whole, not cut by parameter range.
    public let isReplicated: Bool

    public init(name: String, parametersPerBlock: Int, bytesPerBlock: Int, bytes: UnsafeMutableRawBufferPointer,
                isReplicated: Bool = false) {
        self.name = name
        self.parametersPerBlock = parametersPerBlock
        self.bytesPerBlock = bytesPerBlock
        self.bytes = bytes
        self.isReplicated = isReplicated
    }

    /// A float32 per parameter.
    init(name: String, floats: FlatBuffer<Float>) {
        self.init(name: name, parametersPerBlock: 1, bytesPerBlock: 4, bytes: UnsafeMutableRawBufferPointer(floats.pointer))
    }
}

/// An optimizer over one contiguous shard of fp32 master weights.
public protocol ShardOptimizer: AnyObject {
    var config: OptimizerConfig { get }
    var count: Int { get }
    /// Updates `master` in place from `gradient` (fp32, already averaged and clipped); if `working` is given,
    /// writes the round-to-nearest-even bf16 of the new master into it (fused bf16 write-back).
    func step(master: UnsafeMutableBufferPointer<Float>, gradient: UnsafeBufferPointer<Float>,
              working: UnsafeMutableBufferPointer<UInt16>?, context: StepContext) throws
    /// Empty for plain SGD without momentum.
    var state: [OptimizerStateArray] { get }
    /// False for optimizers whose state can be neither cut by parameter range nor replicated: the engine then refuses to reshard.
    var supportsResharding: Bool { get }
}

extension ShardOptimizer {
    /// Bytes of optimizer state this shard holds (exact; the config's per-parameter figure is nominal).
    public var stateBytes: Int { state.reduce(0) { $0 + $1.bytes.count } }
}

/// A failure of optimizer construction or of a step, in one line.
public struct OptimizerError: Error, CustomStringConvertible, Sendable, Equatable {
    public var description: String
    public init(_ description: String) { self.description = description }
}

/// Shape of one parameter tensor, for Adafactor (which factors matrices).
/// `range` is in unit coordinates (the shard starts at `shardOffset` there); `rows * cols == range.count`;
/// a vector has rows == 1.
public struct ParameterShape: Sendable, Codable, Equatable {
    public var range: Range<Int>
    public var rows: Int
    public var cols: Int
    public init(range: Range<Int>, rows: Int, cols: Int) {
        self.range = range
        self.rows = rows
        self.cols = cols
    }
    /// A vector (bias, LayerNorm): variance kept per element.
    public static func vector(_ range: Range<Int>) -> ParameterShape { ParameterShape(range: range, rows: 1, cols: range.count) }
    public var isMatrix: Bool { rows > 1 }
}

/// Builds the optimizer for one shard of `count` parameters.
/// - decaySegments: ranges within the shard where weight decay applies (elsewhere it is 0).
/// - parameterShapes: Adafactor only: the unit's tensors in order (nil: the shard is one vector).
/// - shardOffset: Adafactor only: where the shard starts in the unit's coordinates.
/// - shardedAcrossRanks: Adafactor only: other ranks hold other parts of the unit, so whole-tensor
///   statistics are combined over the step context's communicator (every rank must step).
/// - ledger: state buffers are allocated as `.optimizerState` there.
public func makeOptimizer(_ config: OptimizerConfig, count: Int, decaySegments: [Range<Int>],
                          parameterShapes: [ParameterShape]? = nil, shardOffset: Int = 0, shardedAcrossRanks: Bool = false,
                          ledger: MemoryLedger?) throws -> any ShardOptimizer {
    guard count >= 0 else { throw OptimizerError("negative shard size \(count)") }
    for s in decaySegments where s.lowerBound < 0 || s.upperBound > count {
        throw OptimizerError("decay segment \(s) outside the shard of \(count) parameters")
    }
    let segments = DecaySegments(decaySegments, count: count)
    switch config.kind {
    case .adamw, .adam:
        return AdamWOptimizer(ShardSetup(config: config, count: count, decay: segments, ledger: ledger))
    case .sgd:
        return SGDOptimizer(ShardSetup(config: config, count: count, decay: segments, ledger: ledger))
    case .adagrad:
        return AdagradOptimizer(ShardSetup(config: config, count: count, decay: segments, ledger: ledger))
    case .rmsprop:
        return RMSpropOptimizer(ShardSetup(config: config, count: count, decay: segments, ledger: ledger))
    case .lion:
        return LionOptimizer(ShardSetup(config: config, count: count, decay: segments, ledger: ledger))
    case .adamw8bit:
        return try AdamW8bitOptimizer(ShardSetup(config: config, count: count, decay: segments, ledger: ledger))
    case .adafactor:
        return try AdafactorOptimizer(config: config, count: count, decay: segments, shapes: parameterShapes,
                                      shardOffset: shardOffset, sharded: shardedAcrossRanks, ledger: ledger)
    case .lbfgs:
        throw OptimizerError("lbfgs steps through a closure over all parameters (LBFGS and LBFGSShard), not one shard at a time")
    }
}

/// Decay segments as a sorted partition of [0, count) into runs that decay or not.
/// What every fused kernel is built from: its hyperparameters, shard size, decay runs and
/// the ledger its state is counted in.
struct ShardSetup {
    let config: OptimizerConfig
    let count: Int
    let decay: DecaySegments
    let ledger: MemoryLedger?
    /// A zeroed state buffer of the shard's size (optimizer-state category).
    func state<Element: BitwiseCopyable>() -> FlatBuffer<Element> { FlatBuffer(count: count, category: .optimizerState, ledger: ledger) }
}

/// A fused kernel: its `config`, `count` and `decay` are its setup's.
protocol FusedOptimizer: ShardOptimizer {
    var setup: ShardSetup { get }
}

extension FusedOptimizer {
    var config: OptimizerConfig { setup.config }
    var count: Int { setup.count }
    var decay: DecaySegments { setup.decay }
}

struct DecaySegments {
    /// Consecutive runs covering the shard, with whether decay applies.
    let runs: [(range: Range<Int>, decays: Bool)]

    init(_ segments: [Range<Int>], count: Int) {
        let sorted = segments.filter { !$0.isEmpty }.sorted { $0.lowerBound < $1.lowerBound }
        var runs: [(Range<Int>, Bool)] = []
        var at = 0
        for s in sorted {
            let lo = max(s.lowerBound, at)
            if lo > at { runs.append((at..<lo, false)) }
            if s.upperBound > lo { runs.append((lo..<s.upperBound, true)); at = s.upperBound }
        }
        if at < count { runs.append((at..<count, false)) }
        // Merge neighbours with the same flag.
        var merged: [(range: Range<Int>, decays: Bool)] = []
        for r in runs {
            if let last = merged.last, last.decays == r.1, last.range.upperBound == r.0.lowerBound {
                merged[merged.count - 1] = (last.range.lowerBound..<r.0.upperBound, r.1)
            } else {
                merged.append((r.0, r.1))
            }
        }
        self.runs = merged
    }
}

/// Checks the buffers handed to `step` against the shard size.
func checkStepArguments(count: Int, master: UnsafeMutableBufferPointer<Float>, gradient: UnsafeBufferPointer<Float>,
                        working: UnsafeMutableBufferPointer<UInt16>?, context: StepContext) throws {
    guard master.count == count, gradient.count == count else {
        throw OptimizerError("step buffers have \(master.count) master and \(gradient.count) gradient elements, shard has \(count)")
    }
    if let working, working.count != count {
        throw OptimizerError("working buffer has \(working.count) elements, shard has \(count)")
    }
    guard context.step >= 1 else { throw OptimizerError("step must be 1-based (got \(context.step))") }
}

/// Writes the bf16 of `master[range]` into `working[range]` (scalar path for optimizers whose
/// loop does not write back itself).
func writeBack(_ master: UnsafeMutableBufferPointer<Float>, _ working: UnsafeMutableBufferPointer<UInt16>?) {
    guard let working else { return }
    for i in 0..<master.count { working[i] = BFloat16.round(master[i]) }
}
