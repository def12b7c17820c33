import Crypto
import Foundation
import ZeroComm
import ZeroModels
import ZeroOptim
import ZeroTensor

/// How a run ended, as every rank sees it.
public struct RunSummary: Sendable {
    public var steps: Int
    public var losses: [Double]
    public var gradNorms: [Double]
    public var skippedSteps: Int
    /// SHA-256 of the consolidated fp32 master weights (unpadded, layout order).
    public var paramsSHA256: String
    public var tokensPerSecond: Double
    public var peakBytesByCategory: [MemoryCategory: Int]
    public var peakLedgerBytes: Int
    public var peakRSSBytes: Int
    public var traffic: TrafficCounters
    public var parameterCount: Int
    public var paddingElements: Int
}

/// Options of a run that are not part of the model/optimizer config.
public struct RunOptions: Sendable {
    public var resume: URL? = nil
    public var metricsPath: String? = nil
    /// Print a progress line every N steps (rank 0); 0 for none.
    public var logEvery = 1
    public var log: @Sendable (String) -> Void = { print($0) }
    /// Print a sample of `sampleTokens` after `samplePrompt` every K steps (GPT models; 0: never).
    public var sampleEvery = 0
    public var samplePrompt = "\n"
    public var sampleTokens = 64
    public init() {}
}

/// Trains on this rank: the whole program of one rank, MPI or simulated.
public func runTraining(config: TrainingConfig, communicator comm: any Communicator,
                        options: RunOptions = RunOptions(), ledger: MemoryLedger = MemoryLedger()) throws -> RunSummary {
    try config.validate()
    comm.attach(ledger: ledger)
    Blas.setThreadCount(config.blasThreads)
    try checkConsensus(config, comm)
    let vocab = GPTConfig.named(config.model)?.vocabularySize ?? 256
    let dataset = try config.data.map { try TokenDataset(contentsOf: URL(fileURLWithPath: $0), vocabularySize: vocab) }
        ?? TokenDataset.embedded()
    try dataset.validate(sequenceLength: config.seqLen)
    let trainer = try Trainer(config: config, communicator: comm, dataset: dataset, ledger: ledger)
    let isRoot = comm.rank == 0
    let log: (String) -> Void = { if isRoot { options.log($0) } }

    if let resume = options.resume {
        let dir = try Checkpoint.resolve(resume)
        try trainer.loadCheckpoint(dir)
        log("resumed from \(dir.path) at step \(trainer.step)")
    } else if let initFile = config.initFrom {
        log("loading initial weights from \(initFile)")
        try trainer.initialize(fromSafetensors: URL(fileURLWithPath: initFile))
    } else {
        trainer.initializeFromSeed()
    }
    let psi = trainer.partition.unpaddedTotal
    log("zero-train: \(config.model) (\(psi) params) | \(comm.size) ranks (\(comm.backendName)) | stage \(config.stage) | \(config.precision) | \(config.optimizer) | G=\(trainer.globalMicroBatches) micro-batches x \(config.microBatch)x\(config.seqLen) tokens per step")

    let metrics = try comm.rank == 0 ? options.metricsPath.map { try MetricsWriter(path: $0) } : nil
    var losses: [Double] = [], norms: [Double] = []
    var tokens = 0, seconds = 0.0
    let saveRoot = config.save.map { URL(fileURLWithPath: $0) }
    let started = ContinuousClock.now, firstStep = trainer.step
    while trainer.step < config.steps {
        let r = try trainer.trainStep()
        losses.append(r.loss); norms.append(r.gradNormPreclip)
        tokens += r.tokens; seconds += r.seconds
        // Per-rank peaks for the progress line (one small gather per step).
        let mine = [Double(ledger.peakTotal), Double(peakResidentBytes())]
        var all = [Double](repeating: 0, count: 2 * comm.size)
        try mine.withUnsafeBufferPointer { m in try all.withUnsafeMutableBufferPointer { try comm.allGather(m, into: $0) } }
        if comm.rank == 0 {
            let peaks = stride(from: 0, to: all.count, by: 2).map { Int(all[$0]) }
            if options.logEvery > 0 && (r.step % options.logEvery == 0 || r.step == config.steps || r.step == 1) {
                let mem = peaks.map { formatBytes($0) }.joined(separator: " ")
                let since = (ContinuousClock.now - started).components
                let elapsed = Double(since.seconds) + Double(since.attoseconds) * 1e-18
                let eta = elapsed / Double(r.step - firstStep) * Double(config.steps - r.step)
                log(String(format: "step %5d/%d | loss %.4f | lr %.3e | grad_norm_preclip %.3f | %.0f tok/s | %.0f ms%@ | peak/rank %@ | elapsed %@ | eta %@",
                           r.step, config.steps, r.loss, r.learningRate, r.gradNormPreclip, Double(r.tokens) / r.seconds,
                           r.seconds * 1000, r.skipped ? " | SKIPPED (non-finite)" : "", mem, formatDuration(elapsed), formatDuration(eta)))
            }
            metrics?.write([
                ("step", "\(r.step)"), ("loss", jsonNumber(r.loss)), ("lr", jsonNumber(r.learningRate)),
                ("grad_norm", jsonNumber(r.gradNormPreclip)), ("skipped", r.skipped ? "true" : "false"),
                ("skipped_total", "\(trainer.skippedSteps)"), ("tokens", "\(r.tokens)"),
                ("step_seconds", jsonNumber(r.seconds)), ("tokens_per_second", jsonNumber(Double(r.tokens) / r.seconds)),
                ("comm_bytes", jsonObject(Dictionary(uniqueKeysWithValues: comm.traffic.sent.map { ($0.key.rawValue, $0.value) }))),
                ("comm_bytes_received", jsonObject(Dictionary(uniqueKeysWithValues: comm.traffic.received.map { ($0.key.rawValue, $0.value) }))),
                ("peak_rss_bytes", "\(peakResidentBytes())"),
                ("peak_ledger_bytes_per_rank", "[" + peaks.map(String.init).joined(separator: ", ") + "]"),
                ("peak_bytes_by_category", jsonObject(Dictionary(uniqueKeysWithValues: ledger.peakByCategory.map { ($0.key.rawValue, $0.value) }))),
            ])
        }
        if options.sampleEvery > 0 && r.step % options.sampleEvery == 0, let gpt = GPTConfig.named(config.model) {
            let units = try trainer.consolidatedMaster()   // collective: every rank gathers
            if isRoot { log("sample at step \(r.step): " + sampleText(config, gpt, units, prompt: options.samplePrompt, count: options.sampleTokens)) }
        }
        if let root = saveRoot, (config.saveEvery > 0 && r.step % config.saveEvery == 0) || r.step == config.steps {
            try trainer.saveCheckpoint(root: root)
            log("saved checkpoint step \(r.step) to \(root.path)")
        }
    }
    let sha = try trainer.consolidatedMasterSHA256()
    let summary = RunSummary(
        steps: trainer.step, losses: losses, gradNorms: norms, skippedSteps: trainer.skippedSteps, paramsSHA256: sha,
        tokensPerSecond: seconds > 0 ? Double(tokens) / seconds : 0, peakBytesByCategory: ledger.peakByCategory,
        peakLedgerBytes: ledger.peakTotal, peakRSSBytes: peakResidentBytes(), traffic: comm.traffic,
        parameterCount: psi, paddingElements: trainer.partition.paddingElements)
    metrics?.write([("final", "true"), ("steps", "\(summary.steps)"), ("params_sha256", jsonQuoted(sha)),
                    ("params", "\(psi)"), ("padded_params", "\(trainer.partition.paddedTotal)"), ("ranks", "\(comm.size)"),
                    ("stage", "\(config.stage)"), ("peak_ledger_bytes", "\(summary.peakLedgerBytes)"),
                    ("peak_rss_bytes", "\(summary.peakRSSBytes)"),
                    ("skipped_steps", "\(summary.skippedSteps)"), ("tokens_per_second", jsonNumber(summary.tokensPerSecond))])
    log("done: \(summary.steps) steps | params_sha256 \(sha)")
    return summary
}

/// Ranks must agree on what to run (a mismatch hangs ZeRO-3 elsewhere): rank 0's
/// config is broadcast and compared.
func checkConsensus(_ config: TrainingConfig, _ comm: any Communicator) throws {
    guard comm.size > 1 else { return }
    var mine = [UInt8](config.canonicalJSON())
    var length = [UInt64(mine.count)]
    try length.withUnsafeMutableBytes { try comm.broadcast($0, root: 0) }
    var theirs = [UInt8](repeating: 0, count: Int(length[0]))
    if comm.rank == 0 { theirs = mine }
    try theirs.withUnsafeMutableBytes { try comm.broadcast($0, root: 0) }
    var agree = [Double(theirs == mine ? 1 : 0)]
    var all = [Double](repeating: 0, count: comm.size)
    try agree.withUnsafeMutableBufferPointer { a in try all.withUnsafeMutableBufferPointer { try comm.allGather(UnsafeBufferPointer(a), into: $0) } }
    if let bad = all.firstIndex(where: { $0 == 0 }) {
        throw ConfigError("rank \(bad)'s configuration differs from rank 0's; every rank must run the same command")
    }
    mine.removeAll()
}

extension Trainer {
    /// SHA-256 of the fp32 master weights in layout order, unpadded (same on every rank).
    public func consolidatedMasterSHA256() throws -> String {
        var hasher = SHA256()
        for u in 0..<partition.unitCount {
            let n = partition.unitCounts[u]
            if plan.fullMaster {
                hasher.update(bufferPointer: UnsafeRawBufferPointer(UnsafeBufferPointer(rebasing: master[u].readOnly[0..<n])))
            } else {
                var full = [Float](repeating: 0, count: partition.paddedCounts[u])
                try full.withUnsafeMutableBufferPointer { try communicator.allGather(master[u].readOnly, into: $0) }
                full.withUnsafeBufferPointer { hasher.update(bufferPointer: UnsafeRawBufferPointer(UnsafeBufferPointer(rebasing: $0[0..<n]))) }
            }
        }
        return hasher.finalize().map { String(format: "%02x", $0) }.joined()
    }

    /// The consolidated fp32 master weights, one array per unit (unpadded).
    public func consolidatedMaster() throws -> [[Float]] {
        try (0..<partition.unitCount).map { u in
            let n = partition.unitCounts[u]
            if plan.fullMaster { return Array(master[u].readOnly[0..<n]) }
            var full = [Float](repeating: 0, count: partition.paddedCounts[u])
            try full.withUnsafeMutableBufferPointer { try communicator.allGather(master[u].readOnly, into: $0) }
            return Array(full[0..<n])
        }
    }
}

/// "42s", "3m07s", "2h05m" for the progress line's elapsed time and ETA.
func formatDuration(_ seconds: Double) -> String {
    guard seconds.isFinite, seconds >= 0 else { return "?" }
    let s = Int(seconds.rounded())
    if s < 60 { return "\(s)s" }
    if s < 3600 { return String(format: "%dm%02ds", s / 60, s % 60) }
    return String(format: "%dh%02dm", s / 3600, (s % 3600) / 60)
}
