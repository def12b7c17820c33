import Foundation
import Testing
import ZeroEngine
import ZeroModels

/// The classifier and contrastive tasks keep the determinism contract: the same config, seed and
/// global batch give the same losses and master bits for every stage and rank count 1, 2, 4
/// (micro-batch g of step s reads rows keyed by (seed, s, g) alone; InfoNCE all-gathers the G
/// micro-batches' embeddings and computes one loss over them on every rank).
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
        if loss == .focal || loss == .infonce { c.dropout = 0.2 }
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
    /// The classifier with BatchNorm over the step's global batch (and dropout): the same bits at
    /// every stage and rank count, and the norm changes the run.
    @Test func classifierBatchNormAgreesBitForBit() throws {
        var base = Self.config(task: .classify, loss: .focal, stage: 0)
        base.norm = .batch
        let reference = try simulate(base, ranks: 1)
        let plain = try simulate(Self.config(task: .classify, loss: .focal, stage: 0), ranks: 1)
        #expect(reference.paramsSHA256 != plain.paramsSHA256 && reference.losses.allSatisfy(\.isFinite))
        for (stage, ranks) in [(0, 2), (1, 2), (2, 4), (3, 4)] {
            var c = base
            c.stage = ZeroStage(rawValue: stage)!
            let run = try simulate(c, ranks: ranks)
            #expect(bits(run.losses) == bits(reference.losses), "stage \(stage) x \(ranks): losses differ")
            #expect(run.paramsSHA256 == reference.paramsSHA256, "stage \(stage) x \(ranks): master differs")
        }
    }

    /// The token MLP (--task lm) with dropout, alone and under BatchNorm's extra passes (which rerun
    /// forwards: the keyed masks must repeat): the same bits at every stage and rank count.
    @Test(arguments: [NormKind.none, .batch])
    func tokenMLPDropoutAgreesBitForBit(norm: NormKind) throws {
        func config(_ stage: Int, dropout: Double = 0.2) -> TrainingConfig {
            var c = tinyConfig(stage: stage, globalMicroBatches: 4, steps: 2)
            c.model = .mlp
            c.dropout = dropout
            c.norm = norm
            return c
        }
        let reference = try simulate(config(0), ranks: 1)
        let plain = try simulate(config(0, dropout: 0), ranks: 1)
        #expect(reference.paramsSHA256 != plain.paramsSHA256 && reference.losses.allSatisfy(\.isFinite))
        for (stage, ranks) in [(0, 2), (1, 4), (2, 2), (3, 4)] {
            let run = try simulate(config(stage), ranks: ranks)
            #expect(bits(run.losses) == bits(reference.losses), "\(norm) stage \(stage) x \(ranks): losses differ")
            #expect(run.paramsSHA256 == reference.paramsSHA256, "\(norm) stage \(stage) x \(ranks): master differs")
        }
    }

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

    /// InfoNCE's negatives span the G micro-batches of the step (all-gathered): the first step's
    /// gradient norm equals that of one model run over the G micro-batches' rows at once.
    @Test func infoNCESpansTheGlobalBatch() throws {
        var c = Self.config(task: .contrastive, loss: .infonce, stage: 2)
        c.steps = 1; c.precision = .fp32; c.clip = 0; c.microBatch = 4; c.globalMicroBatches = 4; c.dropout = 0
        let run = try simulate(c, ranks: 2)
        // The same step by hand: G = 4 micro-batches of B = 4 examples, views laid out as the trainer does.
        let G = 4, B = 4, data = FeatureDataset.synthetic(seed: c.seed, split: "train")
        let small = FeatureMLP(featureCount: 16, hiddenWidths: [256, 256], outputs: 32, examples: B, objective: c.objective, ledger: nil)
        let big = FeatureMLP(featureCount: 16, hiddenWidths: [256, 256], outputs: 32, examples: G * B, objective: c.objective, ledger: nil)
        var none: [Int32] = [0]
        try none.withUnsafeMutableBufferPointer { t in
            for g in 0..<G {
                try data.load(step: 0, microBatch: g, seed: c.seed, batchSize: B, sequenceLength: 1, into: small, tokens: t, targets: t)
                for v in 0..<2 {
                    for i in 0 ..< B * 16 { big.inputRows[(v * G * B + g * B) * 16 + i] = small.inputRows[v * B * 16 + i] }
                }
            }
        }
        let w = big.layout.units.indices.map { u in
            let p = UnsafeMutableBufferPointer<Float>.allocate(capacity: big.layout.units[u].count)
            big.initialize(unit: u, into: p, seed: c.seed)
            return p
        }
        let g = big.layout.units.map { UnsafeMutableBufferPointer<Float>.allocate(capacity: $0.count) }
        defer { (w + g).forEach { $0.deallocate() } }
        g.forEach { $0.initialize(repeating: 0) }
        let weights = w.map { Optional(UnsafeBufferPointer($0)) }, grads = g.map { Optional($0) }
        for op in 0..<3 { big.forward(op: op, weights: weights) }
        for op in (0..<3).reversed() { big.backward(op: op, weights: weights, gradients: grads) }
        let norm = g.reduce(0.0) { $0 + $1.reduce(0.0) { $0 + Double($1) * Double($1) } }.squareRoot()
        #expect(abs(run.losses[0] - Double(big.loss)) <= 1e-6 * Double(big.loss), "loss \(run.losses[0]) vs \(big.loss)")
        #expect(abs(run.gradNorms[0] - norm) <= 1e-4 * norm, "grad norm \(run.gradNorms[0]) vs \(norm)")
        #expect(run.losses[0] > 2.5, "32 rows: the negatives are the global batch (one micro-batch's 8 rows give about log 7 = 1.9)")
    }
}
