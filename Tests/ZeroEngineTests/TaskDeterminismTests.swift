import Foundation
import Testing
import ZeroEngine
import ZeroModels

/// The classifier and contrastive tasks keep the determinism contract: the same config, seed and
/// global batch give the same losses and master bits for every stage and rank count 1, 2, 4
/// (micro-batch g of step s reads rows keyed by (seed, s, g) alone; each contrastive loss runs
/// over one micro-batch's 2B views).
@Suite struct TaskDeterminismTests {
    static func config(task: TaskName, loss: LossName, stage: Int) -> TrainingConfig {
        var c = TrainingConfig()
        c.model = .mlp
        c.task = task
        c.loss = loss
        c.stage = ZeroStage(rawValue: stage)!
        c.steps = 3
        c.microBatch = 8
        c.globalMicroBatches = 4
        c.lr = 3e-3
        c.warmup = 1
        c.clip = 0.5
        if loss == .crossEntropy { c.labelSmoothing = 0.1 }
        return c
    }

    @Test(arguments: [(TaskName.classify, LossName.crossEntropy), (.classify, .focal), (.classify, .sigmoidFocal),
                      (.contrastive, .infonce), (.contrastive, .triplet)])
    func stagesAndRankCountsAgreeBitForBit(task: TaskName, loss: LossName) throws {
        let reference = try simulate(Self.config(task: task, loss: loss, stage: 0), ranks: 1)
        #expect(reference.losses.count == 3 && reference.losses.allSatisfy { $0.isFinite && $0 > 0 })
        for stage in 0...3 {
            for ranks in [1, 2, 4] where !(stage == 0 && ranks == 1) {
                let run = try simulate(Self.config(task: task, loss: loss, stage: stage), ranks: ranks)
                #expect(bits(run.losses) == bits(reference.losses), "\(task) \(loss) stage \(stage) x \(ranks): losses differ")
                #expect(run.paramsSHA256 == reference.paramsSHA256, "\(task) \(loss) stage \(stage) x \(ranks): master differs")
            }
        }
    }

    /// The losses are different functions: each gives its own trajectory.
    @Test func lossesChangeTheRun() throws {
        let ce = try simulate(Self.config(task: .classify, loss: .crossEntropy, stage: 1), ranks: 2)
        let focal = try simulate(Self.config(task: .classify, loss: .focal, stage: 1), ranks: 2)
        #expect(ce.paramsSHA256 != focal.paramsSHA256)
    }

    @Test func taskRelationsAreChecked() {
        var c = Self.config(task: .classify, loss: .infonce, stage: 0)
        #expect(throws: ConfigError.self) { try c.validate() }
        c.loss = .focal; c.model = .gptTiny
        #expect(throws: ConfigError.self) { try c.validate() }
        c = Self.config(task: .contrastive, loss: .triplet, stage: 0); c.microBatch = 1
        #expect(throws: ConfigError.self) { try c.validate() }
        c = TrainingConfig(); c.labelSmoothing = 0.1
        #expect(throws: ConfigError.self) { try c.validate() }
        c = TrainingConfig(); c.loss = .focal
        #expect(throws: ConfigError.self) { try c.validate() }
    }
}
