import Foundation
import ZeroEngine
import ZeroMemory
import ZeroModels

/// `--simulate N` runs N ranks as threads of one process, so the process holds N ranks'
/// buffers: N x (the allocation plan's per-rank total + about 2 MiB per thread: stack,
/// allocator arena) + the process's fixed overhead (docs/memory.md, "--simulate N"). The
/// plan is the last rank's (its block shards are the largest), so the product bounds every
/// rank; padding is below one block per unit at any N, so the total is linear in N.
/// Above what the machine has available the run is refused with one line before any
/// allocation, instead of being killed by the kernel part-way.
enum SimulationMemory {
    /// Measured: peak RSS minus N x plan total, gpt-tiny at N = 256 and 1000: 1.5-1.6 MiB per rank
    /// (rounded up: the prediction must not fall short).
    static let perThreadBytes = 2 << 20

    /// Predicted peak RSS of `config` on `ranks` simulated ranks, with the plan's per-rank
    /// total and padding; nil for models the plan does not describe (the MLP).
    static func predict(_ config: TrainingConfig, ranks: Int) throws -> (total: Int, perRank: Int, padding: Int)? {
        guard let gpt = GPTConfig.named(config.model), let precision = PrecisionMode(rawValue: config.precision.rawValue) else { return nil }
        let run = RunConfiguration(model: gpt, ranks: ranks, stage: config.stage.rawValue, microBatch: config.microBatch,
                                   sequenceLength: config.seqLen, accumulationSteps: try config.accumulationSteps(ranks: ranks),
                                   precision: precision, optimizerBytesPerParameter: try optimizerBytesPerParameter(config.optimizer.rawValue),
                                   backend: .simulated, recompute: config.recompute,
                                   overlap: config.overlap.resolved(ranks: ranks, spansHosts: false))
        let estimate = MemoryReport.runtimeEstimate(run, stage: config.stage.rawValue)
        let (perRank, overflow) = (estimate.totalBytes + perThreadBytes).multipliedReportingOverflow(by: ranks)
        return (overflow ? .max : perRank + run.fixedOverheadBytes, estimate.totalBytes, estimate.paddingBytes)
    }

    /// Refuses a simulation that cannot fit in this machine's available memory.
    static func check(_ config: TrainingConfig, ranks: Int) throws {
        guard let p = try predict(config, ranks: ranks), let available = availableBytes() else { return }
        guard p.total > available else { return }
        throw ConfigError(
            "--simulate \(ranks) needs about \(formatBytes(p.total)) (\(ranks) ranks x \(formatBytes(p.perRank)) planned, \(formatBytes(p.padding)) of it padding, + \(formatBytes(perThreadBytes)) per thread), more than the \(formatBytes(available)) this machine has available; use fewer simulated ranks or mpirun")
    }

    /// MemAvailable from /proc/meminfo (what can be allocated without swapping), in bytes.
    static func availableBytes() -> Int? {
        guard let text = try? String(contentsOfFile: "/proc/meminfo", encoding: .utf8) else { return nil }
        for line in text.split(separator: "\n") where line.hasPrefix("MemAvailable:") {
            let fields = line.split(separator: " ")
            if fields.count >= 2, let kib = Int(fields[1]) { return kib * 1024 }
        }
        return nil
    }
}
