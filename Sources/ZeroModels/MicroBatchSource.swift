/// What fills a micro-batch: token windows for language models (`TokenDataset`), feature rows
/// with labels for the classifier and embedding tasks (`FeatureDataset`).
///
/// The contract every source keeps: micro-batch g of `step` depends only on
/// (seed, step, g), never on the rank that loads it, so the same global batch gives the same
/// bits for every stage and rank count.
public protocol MicroBatchSource: Sendable {
    /// Where the data came from (for messages and logs).
    var source: String { get }
    /// Throws when the data does not fit `model` (token ids past its vocabulary, wrong widths).
    func check(model: any TrainableModel) throws
    /// Loads micro-batch g of `step` into `model`; `tokens` and `targets` are the trainer's
    /// batchSize x sequenceLength scratch, for sources that need it.
    func load(step: Int, microBatch g: Int, seed: UInt64, batchSize: Int, sequenceLength: Int, into model: any TrainableModel,
              tokens: UnsafeMutableBufferPointer<Int32>, targets: UnsafeMutableBufferPointer<Int32>) throws
}

extension TokenDataset: MicroBatchSource {
    public func check(model: any TrainableModel) throws {
        guard vocabularySize <= model.vocabularySize else {
            throw TokenDatasetError("the data has token ids up to \(vocabularySize - 1) but the model has a vocabulary of \(model.vocabularySize)")
        }
    }

    /// `fill`, then `model.setBatch`: the language-model path, unchanged.
    public func load(step: Int, microBatch g: Int, seed: UInt64, batchSize: Int, sequenceLength: Int, into model: any TrainableModel,
                     tokens: UnsafeMutableBufferPointer<Int32>, targets: UnsafeMutableBufferPointer<Int32>) throws {
        fill(step: step, microBatch: g, seed: seed, batchSize: batchSize, sequenceLength: sequenceLength, tokens: tokens, targets: targets)
        model.setBatch(tokens: UnsafeBufferPointer(tokens), targets: UnsafeBufferPointer(targets),
                       batchSize: batchSize, sequenceLength: sequenceLength)
        (model as? any MicroBatchKeyed)?.setBatchKey(seed: seed, step: step, microBatch: g)
    }
}

/// A model over feature rows (the classifier and embedding MLP): the data source writes its
/// input rows and labels in place before the forward.
public protocol FeatureModel: TrainableModel, MicroBatchKeyed {
    /// Features per row (F).
    var featureCount: Int { get }
    /// Views per example: 1 (classify), 2 (contrastive: rows b and B + b are two views of example b).
    var views: Int { get }
    /// Examples per micro-batch (B); the model runs views x B rows.
    var examples: Int { get }
    /// Input rows [views x B, F], written by the data source.
    var inputRows: UnsafeMutableBufferPointer<Float> { get }
    /// Labels [B], written by the data source (unused by the contrastive losses).
    var inputLabels: UnsafeMutableBufferPointer<Int32> { get }
    /// The outputs [views x B, outputs] after the last forward op (logits or embeddings).
    var outputs: UnsafeBufferPointer<Float> { get }
    var outputWidth: Int { get }
}
