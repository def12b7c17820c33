import Testing
import ZeroEngine
import ZeroOptim

/// `--l1` / `--l2` through the trainer: the penalties are added to each unit's averaged, clipped
/// gradient shard before the optimizer step, on the decaying tensors only.
@Suite struct RegularizationEngineTests {
    func config(stage: Int, l1: Double, l2: Double, optimizer: OptimizerKind = .adamw, weightDecay: Double = 0.1) -> TrainingConfig {
        var c = tinyConfig(stage: stage, globalMicroBatches: 4, steps: 2)
        c.optimizer = optimizer
        c.weightDecay = weightDecay
        c.l1 = l1
        c.l2 = l2
        return c
    }

    /// Same bits for stages 0-3 and 1, 2, 4 ranks, with both penalties next to AdamW's decoupled decay.
    @Test func stagesAndRankCountsAgreeBitForBit() throws {
        let reference = try simulate(config(stage: 0, l1: 1e-3, l2: 0.05), ranks: 1)
        let unregularized = try simulate(config(stage: 0, l1: 0, l2: 0), ranks: 1)
        #expect(reference.paramsSHA256 != unregularized.paramsSHA256, "the penalties changed nothing")
        #expect(reference.losses.allSatisfy { $0.isFinite })
        for stage in 0...3 {
            for ranks in [1, 2, 4] where !(stage == 0 && ranks == 1) {
                let run = try simulate(config(stage: stage, l1: 1e-3, l2: 0.05), ranks: ranks)
                #expect(bits(run.losses) == bits(reference.losses), "stage \(stage) x \(ranks) ranks: losses differ")
                #expect(run.paramsSHA256 == reference.paramsSHA256, "stage \(stage) x \(ranks) ranks: weights differ")
            }
        }
    }

    /// `--optimizer adam --l2 x` is torch's Adam(weight_decay=x), i.e. our `--optimizer adam --weight-decay x`,
    /// bit for bit (stage 3 on 2 ranks against stage 0 on 1), and the same holds for SGD.
    @Test(arguments: [OptimizerKind.adam, .sgd])
    func l2IsTheCoupledWeightDecayOfAdamAndSGD(_ kind: OptimizerKind) throws {
        let viaL2 = try simulate(config(stage: 3, l1: 0, l2: 0.05, optimizer: kind, weightDecay: 0), ranks: 2)
        let viaDecay = try simulate(config(stage: 0, l1: 0, l2: 0, optimizer: kind, weightDecay: 0.05), ranks: 1)
        let neither = try simulate(config(stage: 0, l1: 0, l2: 0, optimizer: kind, weightDecay: 0), ranks: 1)
        #expect(viaL2.paramsSHA256 == viaDecay.paramsSHA256)
        #expect(viaL2.paramsSHA256 != neither.paramsSHA256)
    }

    /// L1 alone, under another family (fused Lion kernel), is also rank-count independent.
    @Test func l1WithLionAcrossRanks() throws {
        let one = try simulate(config(stage: 0, l1: 0.01, l2: 0, optimizer: .lion, weightDecay: 0), ranks: 1)
        let four = try simulate(config(stage: 2, l1: 0.01, l2: 0, optimizer: .lion, weightDecay: 0), ranks: 4)
        let none = try simulate(config(stage: 0, l1: 0, l2: 0, optimizer: .lion, weightDecay: 0), ranks: 1)
        #expect(one.paramsSHA256 == four.paramsSHA256)
        #expect(one.paramsSHA256 != none.paramsSHA256)
    }
}
