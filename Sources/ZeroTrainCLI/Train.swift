import ArgumentParser
import Foundation
import ZeroComm
import ZeroEngine
import ZeroTensor

/// `zero-train [train]`: the default subcommand.
struct Train: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "train",
        abstract: "Train a model with ZeRO stage 0-3 (the default subcommand).",
        discussion: """
        Ranks come from mpirun (one process each) or from --simulate N (threads in one process).
        Each optimizer step consumes G = ranks x grad-accum micro-batches (or --global-micro-batches G,
        which keeps the step identical at any rank count that divides G). For the same config, seed,
        data, micro-batch size and G, losses, grad norms and final weights are bitwise identical for
        every stage and every power-of-two rank count (docs/determinism.md).

        Examples:
          mpirun -n 4 zero-train                              gpt-small, stage 2, embedded corpus
          zero-train --simulate 4 --stage 3 --steps 50
          zero-train --simulate 2 --global-micro-batches 8 --save runs/a --save-every 50
          mpirun -n 4 zero-train --resume runs/a              continue (any rank count or stage)
          zero-train --config ds_config.json                  DeepSpeed-style config
        """
    )

    // One @Option per entry of TrainingOption.all, named after its flag (a test checks they
    // agree). Values arrive as text and are parsed and range-checked by the table, exactly
    // like the same key in a --config file; unconditional parsing hands "-1" to the table.
    @Option(parsing: .unconditional, help: .option("model")) var model: String?
    @Option(parsing: .unconditional, help: .option("stage")) var stage: String?
    @Option(parsing: .unconditional, help: .option("steps")) var steps: String?
    @Option(parsing: .unconditional, help: .option("micro-batch")) var microBatch: String?
    @Option(parsing: .unconditional, help: .option("grad-accum")) var gradAccum: String?
    @Option(parsing: .unconditional, help: .option("global-micro-batches")) var globalMicroBatches: String?
    @Option(parsing: .unconditional, help: .option("seq-len")) var seqLen: String?
    @Option(parsing: .unconditional, help: .option("lr")) var lr: String?
    @Option(parsing: .unconditional, help: .option("min-lr")) var minLr: String?
    @Option(parsing: .unconditional, help: .option("warmup")) var warmup: String?
    @Option(parsing: .unconditional, help: .option("schedule")) var schedule: String?
    @Option(parsing: .unconditional, help: .option("weight-decay")) var weightDecay: String?
    @Option(parsing: .unconditional, help: .option("l1")) var l1: String?
    @Option(parsing: .unconditional, help: .option("l2")) var l2: String?
    @Option(parsing: .unconditional, help: .option("beta1")) var beta1: String?
    @Option(parsing: .unconditional, help: .option("beta2")) var beta2: String?
    @Option(parsing: .unconditional, help: .option("eps")) var eps: String?
    @Option(parsing: .unconditional, help: .option("clip")) var clip: String?
    @Option(parsing: .unconditional, help: .option("optimizer")) var optimizer: String?
    @Option(parsing: .unconditional, help: .option("history")) var history: String?
    @Option(parsing: .unconditional, help: .option("line-search")) var lineSearch: String?
    @Option(parsing: .unconditional, help: .option("lbfgs-iterations")) var lbfgsIterations: String?
    @Option(parsing: .unconditional, help: .option("precision")) var precision: String?
    @Option(parsing: .unconditional, help: .option("data")) var data: String?
    @Option(parsing: .unconditional, help: .option("val-data")) var valData: String?
    @Option(parsing: .unconditional, help: .option("val-fraction")) var valFraction: String?
    @Option(parsing: .unconditional, help: .option("eval-every")) var evalEvery: String?
    @Option(parsing: .unconditional, help: .option("eval-batches")) var evalBatches: String?
    @Option(name: .customLong("init"), parsing: .unconditional, help: .option("init")) var initFrom: String?
    @Option(parsing: .unconditional, help: .option("seed")) var seed: String?
    @Option(parsing: .unconditional, help: .option("save")) var save: String?
    @Option(parsing: .unconditional, help: .option("save-every")) var saveEvery: String?
    @Option(parsing: .unconditional, help: .option("keep")) var keep: String?
    @Option(parsing: .unconditional, help: .option("max-skips")) var maxSkips: String?
    @Flag(help: .option("error-if-nonfinite")) var errorIfNonfinite = false
    @Option(parsing: .unconditional, help: .option("timeout")) var timeout: String?
    @Option(parsing: .unconditional, help: .option("blas-threads")) var blasThreads: String?
    @Option(parsing: .unconditional, help: .option("threads")) var threads: String?
    @Flag(help: .option("recompute")) var recompute = false
    @Option(parsing: .unconditional, help: .option("overlap")) var overlap: String?
    @Option(parsing: .unconditional, help: .option("norm")) var norm: String?
    @Option(parsing: .unconditional, help: .option("log-every")) var logEvery: String?
    @Option(parsing: .unconditional, help: .option("task")) var task: String?
    @Option(parsing: .unconditional, help: .option("loss")) var loss: String?
    @Option(parsing: .unconditional, help: .option("label-smoothing")) var labelSmoothing: String?
    @Option(parsing: .unconditional, help: .option("focal-gamma")) var focalGamma: String?
    @Option(parsing: .unconditional, help: .option("focal-alpha")) var focalAlpha: String?
    @Option(parsing: .unconditional, help: .option("temperature")) var temperature: String?
    @Option(parsing: .unconditional, help: .option("margin")) var margin: String?
    @Option(parsing: .unconditional, help: .option("dropout")) var dropout: String?

    // Options of this invocation, not of the run's configuration.
    @Option(help: "Resume from a checkpoint directory (or a save root: the newest complete one).") var resume: String?
    @Option(help: "Write one JSON object per step to FILE.jsonl (rank 0).") var metrics: String?
    @Option(help: "Read settings from a JSON file (our keys, listed in docs/configuration.md, or a DeepSpeed config); flags override it.")
    var config: String?
    @Option(parsing: .unconditional, help: "Run N ranks as threads in this process (no MPI), 1 to 1024.") var simulate: String?
    @Option(parsing: .unconditional, help: "With --simulate: put each rank behind a link of this rate each way (10gbit, 1gbit, 200mbit): every collective then holds its rank for the bytes it sent over the rate, a sleep that costs no CPU. Measures the step's overlap schedule (with --overlap on) apart from the network stack's CPU cost (docs/performance.md).")
    var simulateLink: String?
    @Flag(help: "On --resume, continue even though an option that changes the math, or the data, differs from the checkpoint's.")
    var allowConfigChange = false

    // Invocation options outside the table: a GPT shape by dimension (stored in the run's
    // configuration as the model's name, e.g. gpt-L2-H4-C32-T48-V260) and samples during training.
    @Option(help: "GPT layers (n_layer), replacing the model's.") var nLayer: Int?
    @Option(help: "GPT attention heads (n_head), replacing the model's.") var nHead: Int?
    @Option(help: "GPT channels (n_embd), replacing the model's.") var nEmbd: Int?
    @Option(help: "GPT context length (n_positions), replacing the model's.") var blockSize: Int?
    @Option(help: "GPT vocabulary size, replacing the model's.") var vocabSize: Int?
    @Option(help: "Print a sample from the current weights every K steps (GPT models).") var sampleEvery: Int = 0
    @Option(help: "Prompt of --sample-every (text, or token ids for token models).") var samplePrompt: String = "\n"
    @Option(help: "Tokens each --sample-every sample generates.") var sampleTokens: Int = 64

    /// The table's options given on this command line, with their text ("true" for a switch),
    /// read from the @Option properties by name.
    func givenOptions() -> [(TrainingOption, String)] {
        Mirror(reflecting: self).children.compactMap { child in
            guard let label = child.label, let option = TrainingOption.matching(property: label) else { return nil }
            if let o = child.value as? Option<String?>, let text = o.wrappedValue { return (option, text) }
            if let f = child.value as? Flag<Bool>, f.wrappedValue { return (option, "true") }
            return nil
        }
    }

    /// The run's configuration: the checkpoint's on --resume (else the defaults), then the
    /// --config file, then the flags given. A resume that would compute something else than
    /// the run it continues is refused, listing the differences, unless --allow-config-change.
    func buildConfig(ranks: Int = 1) throws -> TrainingConfig {
        var c = TrainingConfig()
        let saved = try resume.map { try Checkpoint.readManifest(Checkpoint.resolve(URL(fileURLWithPath: $0))) }
        if let saved { c = saved.config }
        if let path = config {
            // The flags alone, to fill a DeepSpeed config's "auto" values.
            var flagged = c
            for (option, text) in givenOptions() { try option.set(&flagged, text: text, label: "--\(option.flag)") }
            let explicit = ExplicitFlags(config: flagged, flags: Set(givenOptions().map { $0.0.flag }))
            try ConfigFile.apply(URL(fileURLWithPath: path), to: &c, ranks: ranks, explicit: explicit)
        }
        // An explicit --grad-accum replaces a G from the config file or the checkpoint.
        if gradAccum != nil { c.globalMicroBatches = nil }
        for (option, text) in givenOptions() { try option.set(&c, text: text, label: "--\(option.flag)") }
        try c.resolveModelShape(modelGiven: model != nil, overrides: ShapeOverrides(
            layers: nLayer, heads: nHead, channels: nEmbd, contextLength: blockSize, vocabularySize: vocabSize))
        try c.validate()
        if let saved, let resume, !allowConfigChange {
            var diffs = c.resumeDifferences(from: saved.config, savedRanks: saved.ranks, ranks: ranks)
            if let before = saved.dataFingerprint {
                let now = DataFingerprint(data: c.data)
                if now.map(before.sameContent) != true { diffs.append("data \(before.summary) -> \(now?.summary ?? "\(c.data ?? "?") (unreadable)")") }
            }
            if !diffs.isEmpty {
                throw ConfigError("--resume \(resume): this run would differ from the checkpoint's: \(diffs.joined(separator: "; ")); "
                                  + "pass --allow-config-change to continue with the new values")
            }
        }
        return c
    }

    func run() throws {
        let c: TrainingConfig
        let ranks: Int?
        do {
            ranks = try simulate.map(parseRankCount)
            c = try buildConfig(ranks: ranks ?? Int(ProcessInfo.processInfo.environment["OMPI_COMM_WORLD_SIZE"] ?? "") ?? 1)
            try checkRunFits(c, simulatedRanks: ranks)
            if let n = ranks { try SimulationMemory.check(c, ranks: n) }
            if let text = simulateLink {
                guard ranks != nil else { throw ConfigError("--simulate-link needs --simulate N (under mpirun the network is real)") }
                guard parseLinkRate(text) != nil else { throw ConfigError("--simulate-link must be a rate such as 10gbit, 1gbit or 200mbit, not '\(text)'") }
            }
            guard sampleEvery >= 0, sampleTokens >= 0 else { throw ConfigError("--sample-every and --sample-tokens must be >= 0") }
        } catch { fail(error) }
        var options = RunOptions()
        options.resume = resume.map { URL(fileURLWithPath: $0) }
        options.metricsPath = metrics
        options.logEvery = c.logEvery
        options.sampleEvery = sampleEvery
        options.samplePrompt = samplePrompt
        options.sampleTokens = sampleTokens
        options.log = { line in FileHandle.standardOutput.write(Data((line + "\n").utf8)) }
        let runOptions = options
        let link = simulateLink.flatMap(parseLinkRate)
        runOnRanks(simulate: ranks, timeout: c.timeout) { comm in
            let linked: any Communicator = link.map { SimulatedLink(comm, bytesPerSecond: $0) } ?? comm
            _ = try runTraining(config: c, communicator: linked, options: runOptions)
        }
    }
}

/// `--simulate N`: 1 to 1024 ranks, and not inside an MPI job (every MPI rank would run its
/// own N-rank job into the same files).
func parseRankCount(_ text: String) throws -> Int {
    guard let n = Int(text), (1...1024).contains(n) else { throw ConfigError("--simulate must be an integer from 1 to 1024, not '\(text)'") }
    if let size = ProcessInfo.processInfo.environment["OMPI_COMM_WORLD_SIZE"] ?? ProcessInfo.processInfo.environment["PMI_SIZE"],
       let ranks = Int(size), ranks > 1 {
        throw ConfigError("--simulate cannot run under mpirun (this job has \(ranks) MPI ranks): use one or the other")
    }
    return n
}

extension TrainingOption {
    /// The option a CLI property stands for: its name is the flag in camel case ("_minLr" for
    /// min-lr) or the config field's name ("_initFrom" for init).
    static func matching(property label: String) -> TrainingOption? {
        let squash = { (s: String) in s.lowercased().filter { $0.isLetter || $0.isNumber } }
        let name = squash(label)
        return all.first { squash($0.flag) == name || squash($0.manifestKey) == name }
    }
}

extension ArgumentHelp {
    /// Help of a table option, listing every accepted value.
    static func option(_ flag: String) -> ArgumentHelp {
        ArgumentHelp(TrainingOption.named(flag)?.help ?? "(not in the option table)")
    }
}

/// Runs `body` on every rank: threads under --simulate N, else this MPI process
/// (a group of one without mpirun). Returns the ranks' results (under MPI, this rank's).
/// A failure on any rank ends the whole job with one line and a non-zero exit.
@discardableResult
func runOnRanks<T: Sendable>(simulate: Int?, timeout: Double, _ body: @escaping @Sendable (any Communicator) throws -> T) -> [T] {
    // Validation keeps timeout within (0, 1e9] s; the clamp keeps other callers from trapping.
    let limit = Duration.milliseconds(Int(min(max(timeout, 0.001), 1e9) * 1000))
    if let n = simulate {
        guard n >= 1 && n <= 1024 else { fail(ConfigError("--simulate takes 1 to 1024 ranks")) }
        do { return try SimulatedCluster.run(ranks: n, timeout: limit, body) } catch { fail(error) }
    }
    let comm: MPICommunicator
    do { comm = try MPICommunicator.start(timeout: limit) } catch { fail(error) }
    do {
        let result = try body(comm)
        comm.finalize()
        return [result]
    } catch {
        // One rank's failure aborts the job; a failure every rank met together (AgreedFailure)
        // ends it cleanly, with rank 0's one line.
        // (The line goes out before MPI_Finalize: an interrupted job may be killed in it.)
        if comm.size == 1 || error is AgreedFailure { report(error); comm.finalize(); exit(1) }
        comm.abort("\(error)")
    }
}

/// One clear line on stderr and a non-zero exit. Under mpirun every rank meets the same
/// bad input; only rank 0 says so.
func fail(_ error: Error) -> Never {
    report(error)
    exit(1)
}

/// The one line of `fail`, from rank 0 only.
func report(_ error: Error) {
    let rank = ProcessInfo.processInfo.environment["OMPI_COMM_WORLD_RANK"] ?? ProcessInfo.processInfo.environment["PMI_RANK"] ?? "0"
    if rank == "0" { FileHandle.standardError.write(Data("zero-train: error: \(error)\n".utf8)) }
}
