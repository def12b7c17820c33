import Foundation
import ZeroComm
import ZeroEngine
import ZeroMemory
import ZeroOptim
import ZeroTensor

/// Runs `run`'s configuration for a few steps and returns every rank's measured peaks
/// (on rank 0; nil on the other ranks, which print nothing). Under mpirun the job's ranks
/// are used; otherwise `run.ranks` simulated ranks.
func measureRun(_ run: RunConfiguration, stage: Int, optimizer: String, history: Int = 100, steps: Int) throws -> MeasuredMemory? {
    var config = TrainingConfig()
    guard let model = ModelName(rawValue: run.model.name), let zeroStage = ZeroStage(rawValue: stage),
          let precision = PrecisionName(rawValue: run.precision.rawValue), let kind = OptimizerKind(rawValue: optimizer) else {
        throw ConfigError("--measure runs \(ModelName.allCases.map(\.rawValue).joined(separator: ", ")) with a known optimizer, stage 0-3")
    }
    config.model = model
    config.stage = zeroStage
    config.steps = max(1, steps)
    config.microBatch = run.microBatch
    config.seqLen = run.sequenceLength
    config.gradAccum = run.accumulationSteps
    config.precision = precision
    config.optimizer = kind
    if kind == .lbfgs {  // what L-BFGS accepts (TrainingConfig.validate)
        config.lbfgsHistory = history
        config.clip = 0
        config.weightDecay = 0
    }
    config.recompute = run.recompute
    config.overlap = run.overlap ? .on : .off
    config.warmup = 0
    let categories = MemoryCategory.allCases
    let trainConfig = config
    let underMPI = MPICommunicator.isLaunchedByMPI
    let results = MeasureResults()
    runOnRanks(simulate: underMPI ? nil : run.ranks, timeout: trainConfig.timeout) { comm in
        guard comm.size == run.ranks else {
            throw ConfigError("--ranks \(run.ranks) but mpirun started \(comm.size) ranks")
        }
        let ledger = MemoryLedger()
        var options = RunOptions()
        options.log = { _ in }
        _ = try runTraining(config: trainConfig, communicator: comm, options: options, ledger: ledger)
        // Every rank's peaks reach rank 0: one row of doubles per rank.
        let peaks = ledger.peakByCategory
        let mine = categories.map { Double(peaks[$0, default: 0]) } + [Double(ledger.peakTotal), Double(peakResidentBytes())]
        var all = [Double](repeating: 0, count: mine.count * comm.size)
        try mine.withUnsafeBufferPointer { m in try all.withUnsafeMutableBufferPointer { try comm.allGather(m, into: $0) } }
        if comm.rank == 0 {
            let width = mine.count
            results.set((0..<comm.size).map { r in
                let row = all[(r * width)..<((r + 1) * width)].map { Int($0) }
                var byCategory: [MemoryCategory: Int] = [:]
                for (i, c) in categories.enumerated() { byCategory[c] = row[i] }
                return MeasuredRank(rank: r, peakBytes: byCategory, peakTotalBytes: row[width - 2], peakResidentBytes: row[width - 1])
            })
        }
    }
    return results.ranks.map { MeasuredMemory(stage: stage, ranks: $0) }
}

/// Rank 0's measurements, handed out of the rank closure.
/// Sendable because `value` is read and written only under `lock`.
final class MeasureResults: @unchecked Sendable {
    private let lock = NSLock()
    private var value: [MeasuredRank]?
    func set(_ ranks: [MeasuredRank]) { lock.lock(); value = ranks; lock.unlock() }
    var ranks: [MeasuredRank]? { lock.lock(); defer { lock.unlock() }; return value }
}
