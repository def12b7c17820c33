import Foundation
import ZeroModels
import ZeroOptim

/// Everything that defines a run. Ranks must agree on it (checked at start-up);
/// the checkpoint manifest stores it. Each field is declared once more, as an entry of
/// `TrainingOption.all`, which gives its flag, config keys, JSON key, help and range.
public struct TrainingConfig: Codable, Sendable, Equatable {
    public var model = ModelName.gptSmall
    public var stage = ZeroStage.two
    /// Optimizer steps in the whole run (a resumed run continues to this total).
    public var steps = 200
    /// Sequences per micro-batch (B).
    public var microBatch = 8
    /// Micro-batches each rank accumulates per optimizer step (A); G = ranks * A.
    public var gradAccum = 1
    /// Micro-batches per optimizer step over all ranks (G); overrides gradAccum when set.
    public var globalMicroBatches: Int? = nil
    public var seqLen = 128
    public var lr = 3e-3
    public var minLR = 3e-4
    public var warmup = 20
    public var schedule = ScheduleName.warmupCosine
    /// The DeepSpeed scheduler of `schedule == .deepspeed` (from a DeepSpeed config's
    /// "scheduler" section; stored in the manifest under "deepSpeedSchedule").
    public var deepSpeedSchedule: DeepSpeedSchedule? = nil
    public var weightDecay = 0.1
    /// Coupled L1 and L2 penalties added to the gradient (matrices only), for every optimizer.
    public var l1 = 0.0
    public var l2 = 0.0
    public var beta1 = 0.9
    public var beta2 = 0.95
    public var eps = 1e-8
    /// Max global gradient norm; 0 disables clipping.
    public var clip = 1.0
    public var optimizer = OptimizerKind.adamw
    /// L-BFGS (`optimizer == .lbfgs`): history pairs m, line search, iterations per step (torch's max_iter).
    public var lbfgsHistory = 100
    public var lineSearch = LBFGS.LineSearch.none
    public var lbfgsIterations = 20
    public var precision = PrecisionName.bf16
    public var data: String? = nil
    /// Validation data (a file, directory or glob, like `data`).
    public var valData: String? = nil
    /// Hold out the last fraction of the `data` stream as validation data (0: none).
    public var valFraction = 0.0
    /// Validation loss every K steps and at the last step (0: never).
    public var evalEvery = 0
    /// Micro-batches of the fixed validation set.
    public var evalBatches = 8
    public var initFrom: String? = nil
    public var seed: UInt64 = 1337
    public var save: String? = nil
    public var saveEvery = 0
    public var keep = 2
    /// Consecutive skipped (non-finite) steps that abort the run.
    public var maxSkips = 5
    /// Error on a non-finite gradient norm instead of skipping the step.
    public var errorIfNonfinite = false
    /// Seconds a collective may wait for the other ranks before the job aborts.
    public var timeout = 300.0
    /// OpenBLAS threads per rank. OpenBLAS splits an sgemm differently for different
    /// thread counts, which changes the bits; the determinism contract holds for one
    /// value across runs, so it is part of the config (default 1: one core per rank).
    public var blasThreads = 1
    /// Compute threads per rank (`--threads`): OpenBLAS's and oneDNN's OpenMP count; when
    /// set it is what runs, in place of `blasThreads`. Like it, part of the determinism key.
    public var threads: Int? = nil
    /// The thread count the rank's matmuls run with.
    public var computeThreads: Int { threads ?? blasThreads }
    /// Per-block activation recompute: the forward keeps only block inputs, the backward
    /// recomputes each block's activations first. Same bits, less activation memory.
    public var recompute = false
    /// Reduce-scatters and (stage 3) prefetch all-gathers run on a communication thread
    /// while compute goes on; the same collectives in the same order, so the same bits.
    public var overlap = OverlapMode.auto
    /// The MLP's normalization after each hidden Linear (Linear -> norm -> ReLU).
    public var norm = NormKind.none
    /// Progress line every N steps (rank 0).
    public var logEvery = 1
    /// What is trained, and with which loss (nil: cross_entropy, or infonce for contrastive).
    public var task = TaskName.lm
    public var loss: LossName? = nil
    public var labelSmoothing = 0.0
    public var focalGamma = 2.0
    public var focalAlpha = 0.25
    public var temperature = 0.5
    public var margin = 1.0
    /// Dropout on the mlp model's hidden activations, token and feature MLP (0: none).
    public var dropout = 0.0

    public init() {}

    public var isBF16: Bool { precision == .bf16 }

    /// Accumulation steps per rank for `ranks` ranks, validating G.
    public func accumulationSteps(ranks: Int) throws -> Int {
        guard let g = globalMicroBatches else { return gradAccum }
        guard g >= ranks else {
            throw ConfigError("\(ranks) ranks cannot share \(g) micro-batches per step: need ranks <= --global-micro-batches")
        }
        guard g % ranks == 0 else {
            throw ConfigError("\(g) micro-batches per step do not divide evenly over \(ranks) ranks")
        }
        return g / ranks
    }

    /// Checks every option against its accepted range (`TrainingOption.all`), then the
    /// relations between options. Values that do not depend on the rank count only.
    public func validate() throws {
        for option in TrainingOption.all { try option.check(self) }
        if let gpt = GPTConfig.named(model), seqLen > gpt.contextLength {
            throw ConfigError("--seq-len must be at most \(model)'s context length \(gpt.contextLength), not \(seqLen)")
        }
        if [.warmupCosine, .cosine, .cyclic, .plateau, .reduceOnPlateau].contains(schedule) && minLR > lr {
            throw ConfigError("--min-lr (\(minLR)) must be at most --lr (\(lr)) for the \(schedule) schedule; lower --min-lr too")
        }
        if saveEvery > 0 && save == nil { throw ConfigError("--save-every needs --save DIR") }
        if schedule == .deepspeed && deepSpeedSchedule == nil {
            throw ConfigError("--schedule deepspeed comes with a DeepSpeed config's \"scheduler\" section (--config FILE)")
        }
        if valData != nil && valFraction > 0 {
            throw ConfigError("--val-data and --val-fraction both name validation data; give one of them")
        }
        if evalEvery > 0 && valData == nil && valFraction == 0 && !(task != .lm && data == nil) {
            throw ConfigError("--eval-every needs validation data: --val-data PATH or --val-fraction F")
        }
        if norm != .none && model != .mlp {
            throw ConfigError("--norm \(norm) applies to the mlp model; \(model) has its own LayerNorms (use --norm none)")
        }
        if norm == .batch && task == .contrastive {
            throw ConfigError("--norm batch does not combine with --task contrastive (its loss already spans the global batch in its own passes); use --norm layer or none")
        }
        if optimizer == .lbfgs {
            let set = [("--clip", clip), ("--weight-decay", weightDecay), ("--l1", l1), ("--l2", l2)].filter { $0.1 != 0 }
            if !set.isEmpty {
                throw ConfigError("--optimizer lbfgs minimizes the loss its closure returns, as torch.optim.LBFGS: \(set.map { "\($0.0) \($0.1)" }.joined(separator: ", ")) would change the gradient but not that loss; set \(set.map { "\($0.0) 0" }.joined(separator: " "))")
            }
        }
        if let threads, blasThreads != 1, blasThreads != threads {
            throw ConfigError("--threads \(threads) and --blas-threads \(blasThreads) disagree; give one of them")
        }
        try validateTask()
    }

    /// Canonical JSON (sorted keys), used for the consensus check and the manifest.
    /// Never fails: non-finite numbers (refused by `validate`) are written as strings.
    public func canonicalJSON() -> Data {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        encoder.nonConformingFloatEncodingStrategy = .convertToString(positiveInfinity: "inf", negativeInfinity: "-inf", nan: "nan")
        return (try? encoder.encode(self)) ?? Data()
    }

    /// Fields that must match for a resume to continue the same run bit for bit
    /// (rank count and stage may differ: the checkpoint is resharded).
    public func sameRun(as other: TrainingConfig) -> [String] {
        var diffs: [String] = []
        if model != other.model { diffs.append("model \(other.model) vs \(model)") }
        if precision != other.precision { diffs.append("precision \(other.precision) vs \(precision)") }
        if optimizer != other.optimizer { diffs.append("optimizer \(other.optimizer) vs \(optimizer)") }
        if optimizer == .lbfgs && other.optimizer == .lbfgs && lbfgsHistory != other.lbfgsHistory {
            diffs.append("L-BFGS --history \(other.lbfgsHistory) vs \(lbfgsHistory) (the saved state holds \(other.lbfgsHistory) pairs)")
        }
        return diffs
    }
}

/// The JSON form comes from the option table: each option under its manifest key; absent
/// keys keep their defaults (older manifests decode), unset optionals are omitted.
extension TrainingConfig {
    public init(from decoder: any Decoder) throws {
        self.init()
        let container = try decoder.container(keyedBy: OptionKey.self)
        for option in TrainingOption.all { try option.decode(&self, container) }
        deepSpeedSchedule = try container.decodeIfPresent(DeepSpeedSchedule.self, forKey: OptionKey("deepSpeedSchedule"))
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: OptionKey.self)
        for option in TrainingOption.all { try option.encode(self, &container) }
        try container.encodeIfPresent(deepSpeedSchedule, forKey: OptionKey("deepSpeedSchedule"))
    }
}

/// A failure while training (non-finite steps, damaged or missing checkpoint files, files
/// that cannot be written), as opposed to a bad configuration: one clear line.
public struct TrainingError: Error, CustomStringConvertible, Sendable {
    public var description: String
    public init(_ description: String) { self.description = description }
}

/// A bad configuration: one clear line.
public struct ConfigError: Error, CustomStringConvertible, Sendable {
    public var description: String
    public init(_ description: String) { self.description = description }
}
