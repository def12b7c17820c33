import Foundation
import ZeroModels
import ZeroTensor

/// The classifier and embedding tasks (`--task classify|contrastive`): which loss, which model,
/// which data. The language-model task keeps its own path (`makeModel`, `TokenDataset`).
extension TrainingConfig {
    /// The loss the run trains with: `loss`, else cross_entropy (infonce for contrastive).
    public var effectiveLoss: LossName { loss ?? (task == .contrastive ? .infonce : .crossEntropy) }

    /// Tokens per row: the sequence length for lm, 1 for a feature row.
    public var rowLength: Int { task == .lm ? seqLen : 1 }

    /// The feature models' loss with its hyper-parameters.
    public var objective: Objective {
        switch effectiveLoss {
        case .crossEntropy: return .crossEntropy(labelSmoothing: Float(labelSmoothing))
        case .focal: return .softmaxFocal(alpha: Float(focalAlpha), gamma: Float(focalGamma))
        case .sigmoidFocal: return .sigmoidFocal(alpha: Float(focalAlpha), gamma: Float(focalGamma))
        case .infonce: return .infoNCE(temperature: Float(temperature))
        case .triplet: return .triplet(margin: Float(margin))
        }
    }

    /// The relations between --task, --loss and the model.
    func validateTask() throws {
        let loss = effectiveLoss
        switch task {
        case .lm:
            guard loss == .crossEntropy else { throw ConfigError("--task lm trains with cross_entropy only, not --loss \(loss)") }
            guard labelSmoothing == 0 else { throw ConfigError("--label-smoothing applies to --task classify, not lm") }
            guard dropout == 0 || model == .mlp else { throw ConfigError("--dropout applies to the mlp model; \(model) has no dropout (use --dropout 0)") }
        case .classify, .contrastive:
            guard model == .mlp else { throw ConfigError("--task \(task) needs --model mlp, not \(model)") }
            let contrastive: Set<LossName> = [.infonce, .triplet]
            guard contrastive.contains(loss) == (task == .contrastive) else {
                throw ConfigError("--loss \(loss) does not apply to --task \(task) (classify: cross_entropy, focal, sigmoid_focal; contrastive: infonce, triplet)")
            }
            if labelSmoothing > 0 && loss != .crossEntropy { throw ConfigError("--label-smoothing applies to --loss cross_entropy only") }
            if task == .contrastive && microBatch < 2 { throw ConfigError("--task contrastive needs --micro-batch >= 2 (the other examples are the negatives)") }
        }
    }
}

/// Hidden widths of the feature MLP, and the embedding width of the contrastive task.
let featureHiddenWidths = [256, 256]
let embeddingWidth = 32

/// The feature MLP for `data`'s rows: K logits (classify) or `embeddingWidth` outputs (contrastive).
func makeFeatureModel(_ config: TrainingConfig, data: FeatureDataset, ledger: MemoryLedger) -> FeatureMLP {
    FeatureMLP(featureCount: data.featureCount, hiddenWidths: featureHiddenWidths,
               outputs: config.task == .contrastive ? embeddingWidth : data.classCount,
               examples: config.microBatch, objective: config.objective, ledger: ledger,
               precision: config.isBF16 ? .bf16 : .fp32, dropout: Float(config.dropout), norm: config.norm)
}

/// Training and validation rows of a feature task: `--data` (and `--val-data` or
/// `--val-fraction`), or the synthetic imbalanced set (its own validation split) without `--data`.
func loadFeatureData(_ config: TrainingConfig) throws -> (train: FeatureDataset, validation: FeatureDataset?) {
    guard let spec = config.data else {
        return (FeatureDataset.synthetic(seed: config.seed, split: "train"), FeatureDataset.synthetic(seed: config.seed, split: "validation"))
    }
    var train = try FeatureDataset(spec: spec)
    var validation = try config.valData.map { try FeatureDataset(spec: $0) }
    if config.valFraction > 0 { (train, validation) = try train.split(validationFraction: config.valFraction) }
    if let v = validation, v.featureCount != train.featureCount {
        throw ConfigError("\(v.source) has \(v.featureCount) features per row, \(train.source) has \(train.featureCount)")
    }
    return (train, validation)
}

extension Trainer {
    /// Recall per class and accuracy of the classifier over every row of `data`, in order.
    ///
    /// Evaluation micro-batch m holds rows m B ..< (m + 1) B; rank r runs m = k N + r as
    /// `validationLoss` does (the same forwards on every rank, so stage 3's gathers match). The
    /// counts are integers, summed exactly, so the figures do not depend on the rank count.
    public func classRecall(on data: FeatureDataset) throws -> (recall: [Double], accuracy: Double) {
        guard let model = model as? FeatureMLP, !model.objective.isContrastive else { return ([], .nan) }
        let K = model.outputWidth, B = config.microBatch, n = ranks
        let batches = (data.count + B - 1) / B, rounds = (batches + n - 1) / n
        var counts = [Double](repeating: 0, count: 2 * K)   // [total_k..., correct_k...]
        for k in 0..<rounds {
            let m = k * n + rank
            _ = try evaluating { try forward(microBatch: m, of: Self.validationStep, in: data) }
            let logits = model.outputs, labels = model.inputLabels
            for b in 0 ..< data.evaluationRows(microBatch: m, batchSize: B) {
                var best = 0
                for c in 1..<K where logits[b * K + c] > logits[b * K + best] { best = c }
                counts[Int(labels[b])] += 1
                if best == Int(labels[b]) { counts[K + Int(labels[b])] += 1 }
            }
        }
        var all = [Double](repeating: 0, count: 2 * K * n)
        try counts.withUnsafeBufferPointer { c in try all.withUnsafeMutableBufferPointer { try communicator.allGather(c, into: $0) } }
        var total = [Double](repeating: 0, count: 2 * K)
        for r in 0..<n { for i in 0 ..< 2 * K { total[i] += all[r * 2 * K + i] } }
        let recall = (0..<K).map { total[$0] > 0 ? total[K + $0] / total[$0] : .nan }
        return (recall, total[K...].reduce(0, +) / total[..<K].reduce(0, +))
    }
}

extension Trainer {
    /// The step's forward and backward for `--loss infonce`, whose negatives span the global batch:
    /// nil for every other loss (the micro-batches then run one by one).
    ///
    /// Pass 1 runs the forward of this rank's A micro-batches and keeps their embeddings; an
    /// all-gather over the ranks gives every rank the G micro-batches' embeddings, which it lays
    /// out in g order (view 1 of every example of g = 0, 1, ..., then view 2 in the same order),
    /// so rows i and i + GB are the two views of one example. Every rank computes NT-Xent over these
    /// 2GB rows and its gradient, the same bits everywhere. Pass 2 runs each local micro-batch again
    /// (forward, then backward from the gradient rows of its own embeddings, times G because the
    /// step averages the G micro-batch gradients). The loss and the bits depend on G only, not on
    /// how the G micro-batches are spread over ranks.
    func globalContrastiveLosses() throws -> [Float]? {
        guard let model = model as? FeatureMLP, case .infoNCE = model.objective else { return nil }
        let A = accumulationSteps, N = ranks, G = A * N, B = model.examples, D = model.outputWidth
        let block = 2 * B * D
        var local = [Float](repeating: 0, count: A * block)
        for a in 0..<A {
            _ = try forward(microBatch: a * N + rank, of: step, in: dataset)
            for i in 0..<block { local[a * block + i] = model.outputs[i] }
        }
        var gathered = [Float](repeating: 0, count: N * A * block)
        try local.withUnsafeBufferPointer { l in try gathered.withUnsafeMutableBufferPointer { try communicator.allGather(l, into: $0) } }
        // Micro-batch g = a N + r sits at gathered[(r A + a) block ...]; view v of its example b goes to row v G B + g B + b.
        func globalRow(g: Int, view v: Int, example b: Int) -> Int { v * G * B + g * B + b }
        var z = [Float](repeating: 0, count: G * block)
        for g in 0..<G {
            let (a, r) = g.quotientAndRemainder(dividingBy: N), source = (r * A + a) * block
            for v in 0..<2 {
                for b in 0..<B {
                    let from = source + (v * B + b) * D, to = globalRow(g: g, view: v, example: b) * D
                    for k in 0..<D { z[to + k] = gathered[from + k] }
                }
            }
        }
        var dz = [Float](repeating: 0, count: z.count)
        let labels = [Int32](repeating: 0, count: 2 * G * B)
        let loss = z.withUnsafeBufferPointer { zp in
            labels.withUnsafeBufferPointer { lp in
                dz.withUnsafeMutableBufferPointer {
                    ObjectiveKernels.backward(model.objective, gradient: $0.baseAddress!, outputs: zp.baseAddress!, labels: lp.baseAddress!, rows: 2 * G * B, width: D)
                }
                return ObjectiveKernels.forward(model.objective, outputs: zp.baseAddress!, labels: lp.baseAddress!, rows: 2 * G * B, width: D)
            }
        }
        for a in 0..<A {
            let g = a * N + rank
            var mine = [Float](repeating: 0, count: block)
            for v in 0..<2 {
                for b in 0..<B {
                    let from = globalRow(g: g, view: v, example: b) * D, to = (v * B + b) * D
                    for k in 0..<D { mine[to + k] = dz[from + k] * Float(G) }
                }
            }
            _ = try microBatch(accumulationStep: a) { model.outputGradient = mine }
        }
        return [Float](repeating: loss, count: A)
    }
}
