import ArgumentParser
import Foundation
import ZeroComm
import ZeroEngine
import ZeroMemory
import ZeroModels
import ZeroOptim

/// Checks made before any rank starts: the files a run reads, and whether the allocation plan
/// of one rank (times the ranks this machine runs) fits in this machine's memory. Each
/// failure is one line naming the option, what was expected and what was found.
func checkRunFits(_ c: TrainingConfig, simulatedRanks: Int?) throws {
    for (option, spec) in [("--data", c.data), ("--val-data", c.valData)] {
        guard let spec else { continue }
        var isDirectory: ObjCBool = false
        if FileManager.default.fileExists(atPath: spec, isDirectory: &isDirectory), !isDirectory.boolValue {
            try checkInputFile(spec, option: option, expected: "a text file, an llm.c .bin token shard, a directory or a glob of them")
        }
        do { try TokenDataset.inspect(spec) } catch { throw ConfigError("\(option) \(error)") }
    }
    if let path = c.initFrom, !HuggingFaceGPT2.isDirectory(URL(fileURLWithPath: path)) {
        try checkInputFile(path, option: "--init", expected: "a .safetensors file or a save_pretrained directory")
    }
    if let path = c.save { try checkSaveDirectory(path) }
    try checkMemory(c, simulatedRanks: simulatedRanks)
}

func checkInputFile(_ path: String, option: String, expected: String) throws {
    if let found = describeNonRegularFile(path) {
        throw ConfigError("\(option) \(path): expected \(expected), found \(found)")
    }
    guard access(path, R_OK) == 0 else { throw ConfigError("\(option) \(path): expected \(expected), found a file this user cannot read") }
}

/// `--save` may be missing (it is created) but not a file.
func checkSaveDirectory(_ path: String) throws {
    var isDirectory: ObjCBool = false
    if FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory), !isDirectory.boolValue {
        throw ConfigError("--save \(path): expected a directory, found a file")
    }
}

/// Refuses a run whose ranks on this machine would need more than its memory: one line
/// instead of a failed allocation mid-start-up. GPT presets: the allocation plan the `memory`
/// subcommand renders; the MLP: its activations (its parameters are small).
func checkMemory(_ c: TrainingConfig, simulatedRanks: Int?) throws {
    guard let machine = MemoryInput.machineMemoryBytes() else { return }
    let env = ProcessInfo.processInfo.environment
    let ranks = simulatedRanks ?? Int(env["OMPI_COMM_WORLD_SIZE"] ?? "") ?? 1
    let local = simulatedRanks ?? Int(env["OMPI_COMM_WORLD_LOCAL_SIZE"] ?? "") ?? 1
    let perRank: Int
    if let gpt = GPTConfig.named(c.model) {
        let run = RunConfiguration(
            model: gpt, ranks: ranks, stage: c.stage.rawValue, microBatch: c.microBatch, sequenceLength: c.seqLen,
            accumulationSteps: (try? c.accumulationSteps(ranks: ranks)) ?? c.gradAccum, precision: c.isBF16 ? .bf16 : .fp32,
            optimizerBytesPerParameter: try optimizerBytesPerParameter(c.optimizer.rawValue),
            backend: simulatedRanks == nil ? .mpi : .simulated, recompute: c.recompute,
            // Before MPI starts the hosts are unknown: auto counts the overlap slots where ranks outnumber this node's.
            overlap: c.overlap.resolved(ranks: ranks, spansHosts: local < ranks))
        perRank = MemoryReport.runtimeEstimate(run, stage: c.stage.rawValue).totalBytes
    } else {
        // The MLP as the trainer builds it (vocabulary 256, hidden widths 256 and 256).
        perRank = MLP.activationBytes(vocabularySize: 256, hiddenWidths: [256, 256], batchSize: c.microBatch, sequenceLength: c.seqLen,
                                    norm: c.norm)
    }
    let (need, overflow) = perRank.multipliedReportingOverflow(by: local)
    guard overflow || need > machine else { return }
    let gib = { (b: Int) in String(format: "%.1f GiB", Double(b) / Double(1 << 30)) }
    throw ConfigError("--micro-batch \(c.microBatch) x --seq-len \(c.seqLen) on \(c.model) needs \(overflow ? "more than 2^63 bytes" : gib(need)) "
                      + "for \(local) rank\(local == 1 ? "" : "s") on this machine, which has \(gib(machine)); "
                      + (c.model == .mlp ? "lower --micro-batch or --seq-len"
                         : "lower --micro-batch or --seq-len, or use a higher --stage or more machines (zero-train memory --model \(c.model))"))
}

// The closed-set options parse as ArgumentParser arguments too (raw values, every case listed).
extension ModelName: ExpressibleByArgument {}
extension ZeroStage: ExpressibleByArgument {}
extension ScheduleName: ExpressibleByArgument {}
extension PrecisionName: ExpressibleByArgument {}
extension OptimizerKind: ExpressibleByArgument {}
