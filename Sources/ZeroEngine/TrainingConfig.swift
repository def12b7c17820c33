import Foundation
import ZeroModels
import ZeroOptim

/// Everything that defines a run. Ranks must agree on it (checked at start-up);
/// the checkpoint manifest stores it.
public struct TrainingConfig: Codable, Sendable, Equatable {
    public var model = "gpt-small"
    public var stage = 2
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
    public var schedule = "warmup_cosine"
    public var weightDecay = 0.1
    public var beta1 = 0.9
    public var beta2 = 0.95
    public var eps = 1e-8
    /// Max global gradient norm; 0 disables clipping.
    public var clip = 1.0
    public var optimizer = "adamw"
    public var precision = "bf16"
    public var data: String? = nil
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

    public init() {}

    public var isBF16: Bool { precision == "bf16" }

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

    /// Checks values that do not depend on the rank count.
    public func validate() throws {
        guard GPTConfig.named(model) != nil || model.hasPrefix("mlp") else {
            let names = GPTConfig.presets.map(\.name).joined(separator: ", ")
            throw ConfigError("unknown model '\(model)' (known: \(names), mlp)")
        }
        guard (0...3).contains(stage) else { throw ConfigError("stage must be 0, 1, 2 or 3, not \(stage)") }
        guard steps >= 1 else { throw ConfigError("--steps must be at least 1") }
        guard microBatch >= 1, gradAccum >= 1 else { throw ConfigError("--micro-batch and --grad-accum must be at least 1") }
        if let g = globalMicroBatches, g < 1 { throw ConfigError("--global-micro-batches must be at least 1") }
        guard seqLen >= 1 else { throw ConfigError("--seq-len must be at least 1") }
        if let gpt = GPTConfig.named(model), seqLen > gpt.contextLength {
            throw ConfigError("--seq-len \(seqLen) exceeds \(model)'s context length \(gpt.contextLength)")
        }
        guard ["bf16", "fp32"].contains(precision) else { throw ConfigError("--precision must be bf16 or fp32, not '\(precision)'") }
        guard OptimizerKind(rawValue: optimizer) != nil else {
            throw ConfigError("unknown optimizer '\(optimizer)' (known: \(OptimizerKind.allCases.map(\.rawValue).joined(separator: ", ")))")
        }
        guard lr > 0, lr.isFinite else { throw ConfigError("--lr must be positive") }
        guard clip >= 0 else { throw ConfigError("--clip must be >= 0") }
        guard keep >= 1 else { throw ConfigError("--keep must be at least 1") }
        guard timeout > 0 else { throw ConfigError("--timeout must be positive") }
        guard (1...256).contains(blasThreads) else { throw ConfigError("--blas-threads must be 1 to 256") }
        if saveEvery > 0 && save == nil { throw ConfigError("--save-every needs --save DIR") }
    }

    /// Canonical JSON (sorted keys), used for the consensus check and the manifest.
    public func canonicalJSON() -> Data {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        return try! encoder.encode(self)
    }

    /// Fields that must match for a resume to continue the same run bit for bit
    /// (rank count and stage may differ: the checkpoint is resharded).
    public func sameRun(as other: TrainingConfig) -> [String] {
        var diffs: [String] = []
        if model != other.model { diffs.append("model \(other.model) vs \(model)") }
        if precision != other.precision { diffs.append("precision \(other.precision) vs \(precision)") }
        if optimizer != other.optimizer { diffs.append("optimizer \(other.optimizer) vs \(optimizer)") }
        return diffs
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
