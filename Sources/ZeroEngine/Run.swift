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
public func runTraining(config: TrainingConfig, communicator base: any Communicator,
                        options: RunOptions = RunOptions(), ledger: MemoryLedger = MemoryLedger()) throws -> RunSummary {
    try config.validate()
    // Times every collective (the per-step communication metrics are its deltas) and, with
    // --overlap on, runs them on the rank's communication thread.
    let mpi = base as? MPICommunicator
    var overlap = config.overlap.resolved(ranks: base.size, spansHosts: mpi?.spansHosts ?? false)
    if overlap && mpi?.allowsCommunicationThread == false {
        // Every rank sees the same library: all stop together, or all run without the thread.
        if config.overlap == .on { throw AgreedFailure("--overlap on needs MPI_THREAD_SERIALIZED, which this MPI library does not provide; use --overlap off") }
        overlap = false
    }
    let comm = TimedCommunicator(base, overlap: overlap)
    defer { comm.close() }
    comm.attach(ledger: ledger)
    Blas.setThreadCount(config.computeThreads)
    try checkConsensus(config, comm)
    StopSignals.install()
    // The save directory is checked writable and locked before anything trains.
    let saveRoot = config.save.map { URL(fileURLWithPath: $0) }
    var saveLock: SaveDirectoryLock? = nil
    if let root = saveRoot { try rootDecides(comm) { saveLock = try SaveDirectoryLock(root: root) } }
    defer { withExtendedLifetime(saveLock) {} }
    var identity = try RunIdentity.start(config: config, communicator: comm)
    let dataset: any MicroBatchSource, validation: (any MicroBatchSource)?
    if config.task == .lm {
        (dataset, validation) = try loadTokenData(config)
    } else {
        (dataset, validation) = try loadFeatureData(config)
    }
    let trainer = try Trainer(config: config, communicator: comm, dataset: dataset, ledger: ledger)
    let isRoot = comm.rank == 0
    let log: (String) -> Void = { if isRoot { options.log($0) } }

    if let resume = options.resume {
        let dir = try Checkpoint.resolve(resume)
        try trainer.loadCheckpoint(dir)
        identity.resume(from: try Checkpoint.readManifest(dir))
        log("resumed from \(dir.path) at step \(trainer.step)")
    } else if let initFile = config.initFrom {
        log("loading initial weights from \(initFile)")
        try trainer.initialize(fromSafetensors: URL(fileURLWithPath: initFile))
    } else {
        trainer.initializeFromSeed()
    }
    let psi = trainer.partition.unpaddedTotal
    if let validation, config.evalEvery > 0 {
        let size = (validation as? TokenDataset).map { "\($0.count) tokens" } ?? (validation as? FeatureDataset).map { "\($0.count) rows" } ?? ""
        log("validation: \(validation.source), \(size); \(config.evalBatches) micro-batches every \(config.evalEvery) steps")
    }
    log("zero-train: \(config.model) (\(psi) params) | \(comm.size) ranks (\(comm.backendName))\(comm.size > 1 ? " | overlap \(comm.overlaps ? "on" : "off")" : "") | stage \(config.stage) | \(config.precision) | \(config.optimizer) | G=\(trainer.globalMicroBatches) micro-batches x \(config.microBatch)x\(config.rowLength) \(config.task == .lm ? "tokens" : "rows (task \(config.task), loss \(config.effectiveLoss))") per step")

    // A resumed run appends: the records of earlier steps are never rewritten.
    let metrics = try comm.rank == 0 ? options.metricsPath.map { try MetricsWriter(path: $0, append: options.resume != nil) } : nil
    var losses: [Double] = [], norms: [Double] = []
    var tokens = 0, seconds = 0.0
    var stopSignal: Int32 = 0
    var lastSaved: URL? = nil
    let started = ContinuousClock.now, firstStep = trainer.step
    while trainer.step < config.steps {
        let commBefore = comm.timing
        let r = try trainer.trainStep()
        let commTime = comm.timing.since(commBefore)
        let computeSeconds = max(0, r.seconds - commTime.waitSeconds)
        losses.append(r.loss); norms.append(r.gradNormPreclip)
        tokens += r.tokens; seconds += r.seconds
        // One small gather per step: per-rank peaks for the progress line, and what every
        // rank must agree on before the step counts: non-finite weights, a stop signal.
        let fields = 4
        let mine = [Double(ledger.peakTotal), Double(peakResidentBytes()), Double(r.nonFiniteWeights), Double(StopSignals.pending)]
        var all = [Double](repeating: 0, count: fields * comm.size)
        try mine.withUnsafeBufferPointer { m in try all.withUnsafeMutableBufferPointer { try comm.allGather(m, into: $0) } }
        let perRank = stride(from: 0, to: all.count, by: fields).map { Array(all[$0 ..< $0 + fields]) }
        let nonFinite = trainer.plan.fullMaster ? perRank.map { $0[2] }.max()! : perRank.map { $0[2] }.reduce(0, +)
        if nonFinite > 0 {
            throw AgreedFailure(String(
                format: "step %d's update made %.0f weights non-finite (lr %.3e): the learning rate is too high for this model and data; nothing of this step was saved: lower --lr and resume from the last checkpoint",
                r.step, nonFinite, r.learningRate))
        }
        stopSignal = Int32(perRank.map { $0[3] }.first { $0 != 0 } ?? 0)
        // The validation loss (collective: every rank takes part) on the steps it is due.
        var valLoss: Double? = nil
        if let validation, config.evalEvery > 0, r.step % config.evalEvery == 0 || r.step == config.steps {
            valLoss = try trainer.validationLoss(on: validation, batches: config.evalBatches)
        }
        if comm.rank == 0 {
            let peaks = perRank.map { Int($0[0]) }
            let valText = valLoss.map { String(format: " | val_loss %.4f", $0) } ?? ""
            if options.logEvery > 0 && (r.step % options.logEvery == 0 || r.step == config.steps || r.step == 1) {
                let mem = peaks.map { formatBytes($0) }.joined(separator: " ")
                let since = (ContinuousClock.now - started).components
                let elapsed = Double(since.seconds) + Double(since.attoseconds) * 1e-18
                let eta = elapsed / Double(r.step - firstStep) * Double(config.steps - r.step)
                log(String(format: "step %5d/%d | loss %.4f%@ | lr %.3e | grad_norm_preclip %.3f | %.0f tok/s | %.0f ms (comm exposed %.0f%%)%@ | peak/rank %@ | elapsed %@ | eta %@",
                           r.step, config.steps, r.loss, valText, r.learningRate, r.gradNormPreclip, Double(r.tokens) / r.seconds,
                           r.seconds * 1000, r.seconds > 0 ? 100 * commTime.waitSeconds / r.seconds : 0,
                           r.skipped ? " | SKIPPED (non-finite)" : "", mem, formatDuration(elapsed), formatDuration(eta)))
            } else if !valText.isEmpty && options.logEvery > 0 {
                log(String(format: "step %5d/%d%@", r.step, config.steps, valText))
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
            ] + stepTimingFields(commTime, computeSeconds: computeSeconds) + (valLoss.map { [("val_loss", jsonNumber($0))] } ?? [])
              // L-BFGS: iterations and loss evaluations (forward + backward of the step's batch) so far.
              + (trainer.lbfgs.map { [("lbfgs_iterations", "\($0.iterations)"), ("lbfgs_evaluations", "\($0.evaluations)")] } ?? []))
        }
        if options.sampleEvery > 0 && r.step % options.sampleEvery == 0, let gpt = GPTConfig.named(config.model) {
            let units = try trainer.consolidatedMaster()   // collective: every rank gathers
            if comm.rank == 0 { log("sample at step \(r.step): " + sampleText(config, gpt, units, prompt: options.samplePrompt, count: options.sampleTokens)) }
        }
        if let root = saveRoot, (config.saveEvery > 0 && r.step % config.saveEvery == 0) || r.step == config.steps || stopSignal != 0 {
            let dir = try trainer.saveCheckpoint(root: root, identity: identity)
            lastSaved = dir
            log("saved checkpoint step \(r.step) to \(dir.path)")
        }
        if stopSignal != 0 { break }
    }
    // A signal during the last step changes nothing: the run is complete.
    if trainer.step >= config.steps { stopSignal = 0 }
    // The classifier's recall per class on the validation rows (collective), logged and recorded.
    var recallFields: [(String, String)] = []
    if config.task == .classify, let rows = validation as? FeatureDataset {
        let (recall, accuracy) = try trainer.classRecall(on: rows)
        log("validation recall per class: " + recall.map { String(format: "%.4f", $0) }.joined(separator: " ") + String(format: " | accuracy %.4f", accuracy))
        recallFields = [("recall_per_class", "[" + recall.map(jsonNumber).joined(separator: ", ") + "]"), ("accuracy", jsonNumber(accuracy))]
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
                    ("skipped_steps", "\(summary.skippedSteps)"), ("tokens_per_second", jsonNumber(summary.tokensPerSecond))]
                   + recallFields
                   + (stopSignal != 0 ? [("stopped_by", jsonQuoted(StopSignals.name(stopSignal)))] : []))
    if stopSignal != 0 {
        let saved = lastSaved.map { "; saved checkpoint \($0.path), continue with --resume \($0.deletingLastPathComponent().path)" }
            ?? "; no checkpoint (no --save)"
        throw AgreedFailure("stopped by \(StopSignals.name(stopSignal)) after step \(trainer.step) of \(config.steps)\(saved)")
    }
    log("done: \(summary.steps) steps | params_sha256 \(sha)")
    return summary
}

/// The token streams of the language-model task: --data (or the embedded corpus), and
/// --val-data or the --val-fraction split.
func loadTokenData(_ config: TrainingConfig) throws -> (train: TokenDataset, validation: TokenDataset?) {
    let vocab = GPTConfig.named(config.model)?.vocabularySize ?? 256
    var dataset = try config.data.map { try TokenDataset(spec: $0, vocabularySize: vocab) } ?? TokenDataset.embedded()
    var validation = try config.valData.map { try TokenDataset(spec: $0, vocabularySize: vocab) }
    if config.valFraction > 0 {
        (dataset, validation) = try dataset.split(validationFraction: config.valFraction, sequenceLength: config.seqLen)
    }
    try dataset.validate(sequenceLength: config.seqLen)
    try validation?.validate(sequenceLength: config.seqLen)
    return (dataset, validation)
}

/// This rank's compute and communication time for one step, as metrics fields.
func stepTimingFields(_ comm: CommTiming, computeSeconds: Double) -> [(String, String)] {
    [("compute_seconds", jsonNumber(computeSeconds)), ("comm_seconds", jsonNumber(comm.inFlightSeconds)),
     ("comm_wait_seconds", jsonNumber(comm.waitSeconds)), ("comm_thread_cpu_seconds", jsonNumber(comm.threadCPUSeconds))]
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
                try full.withUnsafeMutableBufferPointer { try communicator.allGather(master[u].readOnly, counts: partition.shardCounts(unit: u), into: $0) }
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
            try full.withUnsafeMutableBufferPointer { try communicator.allGather(master[u].readOnly, counts: partition.shardCounts(unit: u), into: $0) }
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
