import Foundation
import ZeroComm
import ZeroEngine

/// A small, fast run of gpt-tiny: G micro-batches of 2 x 32 tokens per step.
func tinyConfig(stage: Int, globalMicroBatches: Int = 8, steps: Int = 3) -> TrainingConfig {
    var c = TrainingConfig()
    c.model = .gptTiny
    c.stage = ZeroStage(rawValue: stage)!
    c.steps = steps
    c.microBatch = 2
    c.seqLen = 32
    c.globalMicroBatches = globalMicroBatches
    c.lr = 1e-2
    c.minLR = 1e-3
    c.warmup = 1
    c.clip = 0.5   // small enough that clipping really happens
    return c
}

/// Trains on `ranks` simulated ranks and returns rank 0's summary (checking every rank agrees).
func simulate(_ config: TrainingConfig, ranks: Int, resume: URL? = nil) throws -> RunSummary {
    var options = RunOptions()
    options.resume = resume
    options.log = { _ in }
    let opts = options
    let summaries = try SimulatedCluster.run(ranks: ranks, timeout: .seconds(120)) { comm in
        try runTraining(config: config, communicator: comm, options: opts)
    }
    for s in summaries { precondition(s.paramsSHA256 == summaries[0].paramsSHA256, "ranks disagree") }
    return summaries[0]
}

func bits(_ xs: [Double]) -> [UInt64] { xs.map(\.bitPattern) }

func temporaryDirectory(_ name: String) -> URL {
    let url = FileManager.default.temporaryDirectory.appendingPathComponent("zero-train-tests-\(name)-\(getpid())")
    try? FileManager.default.removeItem(at: url)
    try! FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    return url
}
