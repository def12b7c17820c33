import ArgumentParser
import ZeroMemory
import ZeroComm
import ZeroEngine
import ZeroModels

/// `zero-train memory`: will this fit, and which ZeRO stage do I need?
struct Memory: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "memory",
        abstract: "Predict per-rank memory for ZeRO stages 0-3 and say which stage fits.",
        discussion: """
        Scale view (model states only, the ZeRO paper's formulas; instant for any size):
          zero-train memory --params 7.5e9 --ranks 64 [--paper] [--deepspeed]
          zero-train memory --table1                  the paper's Table 1, recomputed
        Runtime view (every buffer the engine allocates, by category):
          zero-train memory --model gpt-small --ranks 4 --micro-batch 8 --stage 3
          zero-train memory --model gpt2-124m --ranks 4 --micro-batch 8 --seq-len 1024 --recompute
        Node verdict (runtime view): R ranks per node share its memory, with each process's overhead
        and the transient peaks of --init loading and checkpoint saves:
          zero-train memory --model gpt2-124m --ranks 8 --ranks-per-node 4 --node-memory 24GiB --stage 3
        Units: GiB = 2^30 bytes, GB = 1e9 bytes. See docs/memory.md for every term.
        """
    )

    // Unconditional parsing hands "-5" to our parser, which says what is wrong with it.
    @Option(parsing: .unconditional, help: "Parameter count for the scale view: 7.5e9, 7.5B, 124M, 1T.")
    var params: String?

    @Option(help: "Model for the runtime view: \(GPTConfig.presets.map(\.name).joined(separator: ", ")), or gpt-L<n>-H<n>-C<n>-T<n>-V<n>.")
    var model: String?

    @Option(parsing: .unconditional, help: "Number of ranks N (data-parallel degree).")
    var ranks: Int = 1

    @Option(parsing: .unconditional, help: "Show one stage (0-3); all by default.")
    var stage: Int?

    @Option(help: "Micro-batch size B per rank (runtime view).")
    var microBatch: Int = 8

    @Option(help: "Sequence length T (runtime view; default: the model's context length).")
    var seqLen: Int?

    @Option(help: "Gradient accumulation steps per optimizer step (runtime view).")
    var gradAccum: Int = 1

    @Option(help: "Precision mode: bf16 (bf16 working weights and wire) or fp32.")
    var precision: String = "bf16"

    @Option(help: "Optimizer (sets K): adamw 12, adam 12, sgd (momentum) 8, lion 8, adagrad 8, rmsprop 8, adamw8bit 7, adafactor 8, lbfgs 8m + 12 (812 at --history 100).")
    var optimizer: String = "adamw"

    @Option(help: "L-BFGS history size m (--optimizer lbfgs): K = 4 + 4 (2m + 2).")
    var history: Int = 100

    @Option(help: "Per-rank memory budget, e.g. 16GiB or 24GB (default: the node's memory shared by its ranks).")
    var memoryPerRank: String?

    @Option(help: "Ranks sharing one node's memory (default: all --ranks, one host).")
    var ranksPerNode: Int?

    @Option(help: "Memory of one node, e.g. 24GiB (default: this machine's MemTotal).")
    var nodeMemory: String?

    @Option(help: "DeepSpeed's largest_layer_params for --deepspeed in the scale view (e.g. 50M).")
    var largestLayerParams: String?

    @Flag(help: "Print GB with the ZeRO paper's rounding (Table 1 and Figure 1) instead of exact bytes.")
    var paper = false

    @Flag(help: "Print the ZeRO paper's Table 1 recomputed next to the printed cells.")
    var table1 = false

    @Flag(help: "Also print what DeepSpeed's ZeRO-2/ZeRO-3 estimators would for the same inputs.")
    var deepspeed = false

    @Flag(help: "Runtime view: per-block activation recompute (the trainer's --recompute).")
    var recompute = false

    @Option(help: "Runtime view: the trainer's --overlap (auto, on, off): on adds a prefetch slot (stage 3) and a gradient slot in flight (stages 2-3). auto: on when --ranks-per-node is below --ranks.")
    var overlap: String = "auto"

    @Flag(help: "One JSON object instead of the human table.")
    var json = false

    @Flag(help: "Also run the runtime view's configuration for a few steps (under mpirun, or as --ranks simulated ranks) and print measured peaks per category next to the prediction.")
    var measure = false

    @Option(help: "Optimizer steps to run with --measure.")
    var measureSteps: Int = 3

    func run() throws {
        if table1 {
            print(Self.table1Text())
            return
        }
        var report = try makeReport()
        if measure {
            guard let run = report.run else { throw MemoryModelError("--measure needs --model NAME (the runtime view)") }
            guard let measured = try measureRun(run, stage: stage ?? 2, optimizer: optimizer, history: history, steps: measureSteps) else { return }
            report.measured = measured
        }
        print(json ? report.json(deepSpeed: deepspeed).rendered : report.text(paper: paper, deepSpeed: deepspeed), terminator: json ? "\n" : "")
    }

    /// `--overlap` as the trainer spells it.
    func overlapMode() throws -> OverlapMode {
        guard let mode = OverlapMode(rawValue: overlap.lowercased()) else {
            throw MemoryModelError("--overlap must be one of auto, on, off, not '\(overlap)'")
        }
        return mode
    }

    func makeReport() throws -> MemoryReport {
        if let stage { try validateStage(stage) }
        try validateRanks(ranks)
        let shown = stage.map { [$0] } ?? Array(zeroStages)
        let k = try optimizerBytesPerParameter(optimizer, history: history)
        guard let precisionMode = PrecisionMode(rawValue: precision) else {
            throw MemoryModelError("unknown precision '\(precision)' (known: bf16, fp32)")
        }
        let perNode = ranksPerNode ?? ranks
        guard perNode >= 1, perNode <= ranks else {
            throw MemoryModelError("--ranks-per-node must be 1...\(ranks) (the ranks); got \(perNode)")
        }
        let nodeBytes: Int?, nodeSource: String
        if let nodeMemory {
            nodeBytes = try MemoryInput.byteSize(nodeMemory); nodeSource = "--node-memory \(nodeMemory)"
        } else {
            nodeBytes = MemoryInput.machineMemoryBytes(); nodeSource = "this machine's MemTotal; set --node-memory"
        }
        let budget: Int?, source: String
        if let memoryPerRank {
            budget = try MemoryInput.byteSize(memoryPerRank); source = "--memory-per-rank \(memoryPerRank)"
        } else {
            budget = nodeBytes.map { $0 / perNode }
            source = "\(nodeSource), shared by \(perNode) rank\(perNode == 1 ? "" : "s") per node"
        }
        switch (params, model) {
        case (let text?, nil):
            let largest = try largestLayerParams.map(MemoryInput.parameterCount)
            return try .scale(parameters: MemoryInput.parameterCount(text), ranks: ranks, stages: shown,
                              optimizerBytesPerParameter: k,
                              budgetBytes: budget, budgetSource: source, largestLayerParameters: largest)
        case (nil, let name?):
            let config = try MemoryInput.model(named: name)
            let run = RunConfiguration(model: config, ranks: ranks, stage: shown[0], microBatch: microBatch,
                                       sequenceLength: seqLen ?? config.contextLength, accumulationSteps: gradAccum,
                                       precision: precisionMode, optimizerBytesPerParameter: k,
                                       backend: measure && !MPICommunicator.isLaunchedByMPI ? .simulated : .mpi,
                                       recompute: recompute, overlap: try overlapMode().resolved(ranks: ranks, spansHosts: perNode < ranks))
            var report = try MemoryReport.runtime(run, stages: shown, budgetBytes: budget, budgetSource: source)
            if let nodeBytes {
                report.node = try NodeVerdict.evaluate(run, ranksPerNode: perNode, nodeMemoryBytes: nodeBytes, source: nodeSource,
                                                       chosenStage: stage)
            }
            return report
        case (_?, _?):
            throw MemoryModelError("give --params or --model, not both")
        case (nil, nil):
            throw MemoryModelError("give --params N (scale view) or --model NAME (runtime view); see --help")
        }
    }

    /// The paper's Table 1 next to our recomputation with its rounding.
    static func table1Text() -> String {
        let ours = PaperModel.table1()
        var out = "ZeRO paper Table 1: model-state GB per device (GB = 1e9 bytes), P_os / P_os+g / P_os+g+p, K = 12.\n"
        out += "Each cell: recomputed with the paper's rounding; a '!' marks a cell that differs from the printed one.\n\n"
        out += "Nd".padding(toLength: 6, withPad: " ", startingAt: 0)
        for psi in ["7.5B", "128B", "1T"] { out += psi.padding(toLength: 24, withPad: " ", startingAt: 0) }
        out += "\n"
        var mismatches = 0
        for (i, n) in PaperModel.table1Ranks.enumerated() {
            out += String(n).padding(toLength: 6, withPad: " ", startingAt: 0)
            for j in 0..<3 {
                let cells = (0..<3).map { s in
                    ours[i][j][s] == PaperModel.table1Printed[i][j][s] ? ours[i][j][s] : { mismatches += 1; return ours[i][j][s] + "!" }()
                }
                out += cells.joined(separator: " / ").padding(toLength: 24, withPad: " ", startingAt: 0)
            }
            out += "\n"
        }
        out += mismatches == 0 ? "\nAll 54 cells match the paper.\n" : "\n\(mismatches) cells differ from the paper.\n"
        return out
    }
}
