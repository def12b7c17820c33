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

    @Option(help: "Model: gpt-tiny, gpt-small, gpt-medium, gpt2-124m, mlp, or a GPT shape gpt-L<n>-H<n>-C<n>-T<n>-V<n>.") var model: String?
    @Option(help: "ZeRO stage: 0 (data parallel), 1 (shard optimizer state), 2 (+gradients), 3 (+parameters).") var stage: Int?
    @Option(help: "Total optimizer steps of the run (a resumed run continues to this total).") var steps: Int?
    @Option(help: "Sequences per micro-batch (B).") var microBatch: Int?
    @Option(help: "Micro-batches each rank accumulates per step (A); G = ranks x A.") var gradAccum: Int?
    @Option(help: "Micro-batches per step over all ranks (G); overrides --grad-accum.") var globalMicroBatches: Int?
    @Option(help: "Tokens per sequence (T).") var seqLen: Int?
    @Option(help: "Peak learning rate.") var lr: Double?
    @Option(help: "Learning-rate floor of the cosine schedule.") var minLr: Double?
    @Option(help: "Linear warm-up steps.") var warmup: Int?
    @Option(help: "LR schedule: warmup_cosine, constant, warmup_constant, onecycle, step, cyclic.") var schedule: String?
    @Option(help: "Decoupled weight decay (matrices only; biases and norms are not decayed).") var weightDecay: Double?
    @Option(help: "Adam beta1.") var beta1: Double?
    @Option(help: "Adam beta2.") var beta2: Double?
    @Option(help: "Adam epsilon.") var eps: Double?
    @Option(help: "Clip the global gradient norm to this value (0 disables).") var clip: Double?
    @Option(help: "Optimizer: adamw, adam, sgd, adagrad, rmsprop, lion, adamw8bit.") var optimizer: String?
    @Option(help: "bf16 (bf16 working weights and gradients, fp32 master and moments) or fp32.") var precision: String?
    @Option(help: "Training data: a text file (bytes) or an llm.c .bin token shard. Default: the embedded corpus.") var data: String?
    @Option(name: .customLong("init"), help: "Initial weights: a Hugging Face GPT-2 .safetensors file, or a save_pretrained directory (its config.json gives the shape).") var initFrom: String?
    @Option(help: "GPT layers (n_layer), replacing the model's.") var nLayer: Int?
    @Option(help: "GPT attention heads (n_head), replacing the model's.") var nHead: Int?
    @Option(help: "GPT channels (n_embd), replacing the model's.") var nEmbd: Int?
    @Option(help: "GPT context length (n_positions), replacing the model's.") var blockSize: Int?
    @Option(help: "GPT vocabulary size, replacing the model's.") var vocabSize: Int?
    @Option(help: "Seed for initialization and data order.") var seed: UInt64?
    @Option(help: "Save sharded checkpoints under DIR.") var save: String?
    @Option(help: "Save every N steps (and at the end).") var saveEvery: Int?
    @Option(help: "Keep the newest K checkpoints.") var keep: Int?
    @Option(help: "Resume from a checkpoint directory (or a save root: the newest complete one).") var resume: String?
    @Option(help: "Write one JSON object per step to FILE.jsonl (rank 0).") var metrics: String?
    @Option(help: "Read settings from a JSON file (our keys or a DeepSpeed config); flags override it.") var config: String?
    @Option(help: "Run N ranks as threads in this process (no MPI).") var simulate: Int?
    @Option(help: "Seconds a collective waits for the other ranks before the job aborts.") var timeout: Double?
    @Option(help: "Abort after this many non-finite steps in a row.") var maxSkips: Int?
    @Option(help: "OpenBLAS threads per rank (default 1). Bits are identical across rank counts only for the same value.") var blasThreads: Int?
    @Flag(help: "Stop with an error on a non-finite gradient norm instead of skipping the step.") var errorIfNonfinite = false
    @Option(help: "Print a progress line every N steps.") var logEvery: Int = 1
    @Option(help: "Print a sample from the current weights every K steps (GPT models).") var sampleEvery: Int = 0
    @Option(help: "Prompt of --sample-every (text, or token ids for token models).") var samplePrompt: String = "\n"
    @Option(help: "Tokens each --sample-every sample generates.") var sampleTokens: Int = 64

    func buildConfig() throws -> TrainingConfig {
        var c = TrainingConfig()
        if let path = config { try ConfigFile.apply(URL(fileURLWithPath: path), to: &c) }
        if let v = model { c.model = v }
        if let v = stage { c.stage = v }
        if let v = steps { c.steps = v }
        if let v = microBatch { c.microBatch = v }
        if let v = gradAccum { c.gradAccum = v; c.globalMicroBatches = nil }
        if let v = globalMicroBatches { c.globalMicroBatches = v }
        if let v = seqLen { c.seqLen = v }
        if let v = lr { c.lr = v }
        if let v = minLr { c.minLR = v }
        if let v = warmup { c.warmup = v }
        if let v = schedule { c.schedule = v }
        if let v = weightDecay { c.weightDecay = v }
        if let v = beta1 { c.beta1 = v }
        if let v = beta2 { c.beta2 = v }
        if let v = eps { c.eps = v }
        if let v = clip { c.clip = v }
        if let v = optimizer { c.optimizer = v }
        if let v = precision { c.precision = v }
        if let v = data { c.data = v }
        if let v = initFrom { c.initFrom = v }
        if let v = seed { c.seed = v }
        if let v = save { c.save = v }
        if let v = saveEvery { c.saveEvery = v }
        if let v = keep { c.keep = v }
        if let v = timeout { c.timeout = v }
        if let v = maxSkips { c.maxSkips = v }
        if let v = blasThreads { c.blasThreads = v }
        if errorIfNonfinite { c.errorIfNonfinite = true }
        try c.resolveModelShape(modelGiven: model != nil, overrides: ShapeOverrides(
            layers: nLayer, heads: nHead, channels: nEmbd, contextLength: blockSize, vocabularySize: vocabSize))
        try c.validate()
        return c
    }

    func run() throws {
        let c: TrainingConfig
        do { c = try buildConfig() } catch { fail(error) }
        guard sampleEvery >= 0, sampleTokens >= 0 else { fail(ConfigError("--sample-every and --sample-tokens must be >= 0")) }
        var options = RunOptions()
        options.resume = resume.map { URL(fileURLWithPath: $0) }
        options.metricsPath = metrics
        options.logEvery = logEvery
        options.sampleEvery = sampleEvery
        options.samplePrompt = samplePrompt
        options.sampleTokens = sampleTokens
        options.log = { line in FileHandle.standardOutput.write(Data((line + "\n").utf8)) }
        let runOptions = options
        runOnRanks(simulate: simulate, timeout: c.timeout) { comm in
            _ = try runTraining(config: c, communicator: comm, options: runOptions)
        }
    }
}

/// Runs `body` on every rank: threads under --simulate N, else this MPI process
/// (a group of one without mpirun). Returns the ranks' results (under MPI, this rank's).
/// A failure on any rank ends the whole job with one line and a non-zero exit.
@discardableResult
func runOnRanks<T: Sendable>(simulate: Int?, timeout: Double, _ body: @escaping @Sendable (any Communicator) throws -> T) -> [T] {
    let limit = Duration.milliseconds(Int(timeout * 1000))
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
        if comm.size == 1 { comm.finalize(); fail(error) }
        comm.abort("\(error)")
    }
}

/// One clear line on stderr and a non-zero exit. Under mpirun every rank meets the same
/// bad input; only rank 0 says so.
func fail(_ error: Error) -> Never {
    let rank = ProcessInfo.processInfo.environment["OMPI_COMM_WORLD_RANK"] ?? ProcessInfo.processInfo.environment["PMI_RANK"] ?? "0"
    if rank == "0" { FileHandle.standardError.write(Data("zero-train: error: \(error)\n".utf8)) }
    exit(1)
}
