import Foundation
import ZeroTensor

/// Feature rows with integer class labels, for `--task classify` and `--task contrastive`.
///
/// Training micro-batch g of step s draws row b uniformly from (seed, s, g, b) alone, as
/// `TokenDataset` places its windows, so the bits do not depend on the rank count. Evaluation
/// (negative steps) reads the rows in order instead: micro-batch m holds rows m B ..< (m + 1) B
/// (wrapping past the end), so an evaluation covers the set and every row counts once.
public struct FeatureDataset: MicroBatchSource {
    /// Row-major [count, featureCount].
    public let features: [Float]
    public let labels: [Int32]
    public let featureCount: Int
    /// Classes: one more than the largest label (at least 2).
    public let classCount: Int
    public let source: String
    public var count: Int { labels.count }

    /// Augmentation of the contrastive views: Gaussian noise of this standard deviation is
    /// added to every feature, then each feature is zeroed with probability `viewDropout`.
    public static let viewNoise: Float = 0.1
    public static let viewDropout = 0.1

    public init(features: [Float], labels: [Int32], featureCount: Int, source: String, classCount: Int? = nil) throws {
        guard featureCount >= 1, !labels.isEmpty, features.count == labels.count * featureCount else {
            throw TokenDatasetError("\(source): \(features.count) feature values do not form \(labels.count) rows of \(featureCount) (need at least one row)")
        }
        if let i = labels.firstIndex(where: { $0 < 0 }) { throw TokenDatasetError("\(source): label \(labels[i]) of row \(i) is negative") }
        if let i = features.firstIndex(where: { !$0.isFinite }) {
            throw TokenDatasetError("\(source): feature \(i % featureCount) of row \(i / featureCount) is not finite")
        }
        self.features = features
        self.labels = labels
        self.featureCount = featureCount
        self.classCount = max(classCount ?? 0, Int(labels.max()!) + 1, 2)
        self.source = source
    }

    public func check(model: any TrainableModel) throws {
        guard let m = model as? any FeatureModel else { throw TokenDatasetError("\(source): feature rows need a feature model (--model mlp)") }
        guard m.featureCount == featureCount else {
            throw TokenDatasetError("\(source): rows of \(featureCount) features, the model takes \(m.featureCount)")
        }
    }

    /// Row of example b of micro-batch g of `step` (see the type's comment).
    public func row(step: Int, microBatch g: Int, example b: Int, seed: UInt64, batchSize: Int) -> Int {
        if step < 0 { return (g * batchSize + b) % count }
        var rng = SeededGenerator(seed: seed, keys: [UInt64(truncatingIfNeeded: step), UInt64(truncatingIfNeeded: g), UInt64(truncatingIfNeeded: b)])
        return Int(rng.next() % UInt64(count))
    }

    /// Rows of evaluation micro-batch m that are new (not wrapped around): B, or fewer at the end.
    public func evaluationRows(microBatch m: Int, batchSize: Int) -> Int { max(0, min(batchSize, count - m * batchSize)) }

    public func load(step: Int, microBatch g: Int, seed: UInt64, batchSize: Int, sequenceLength: Int, into model: any TrainableModel,
                     tokens: UnsafeMutableBufferPointer<Int32>, targets: UnsafeMutableBufferPointer<Int32>) throws {
        guard let m = model as? any FeatureModel, m.examples == batchSize else { try check(model: model); return }
        let F = featureCount, x = m.inputRows, y = m.inputLabels
        m.setBatchKey(seed: seed, step: step, microBatch: g)
        for b in 0..<batchSize {
            let r = row(step: step, microBatch: g, example: b, seed: seed, batchSize: batchSize)
            y[b] = labels[r]
            for v in 0..<m.views {
                let out = (v * batchSize + b) * F
                for f in 0..<F { x[out + f] = features[r * F + f] }
                guard m.views > 1 else { continue }
                // View v of example b: keyed by (seed, step, g, b, v), apart from the row draw's keys.
                var rng = SeededGenerator(seed: seed ^ 0x5649_4557_5321, keys: [UInt64(truncatingIfNeeded: step), UInt64(truncatingIfNeeded: g),
                                                                            UInt64(truncatingIfNeeded: b), UInt64(v)])
                for f in 0..<F {
                    let noisy = x[out + f] + Float(Double(Self.viewNoise) * rng.nextNormal())
                    x[out + f] = rng.nextUniform() < Self.viewDropout ? 0 : noisy
                }
            }
        }
    }

    /// The last `fraction` of the rows as validation data, the rest for training.
    public func split(validationFraction fraction: Double) throws -> (train: FeatureDataset, validation: FeatureDataset) {
        let held = Int((Double(count) * fraction).rounded(.down))
        guard held >= 1 && held < count else {
            throw TokenDatasetError("\(source): --val-fraction \(fraction) of \(count) rows leaves no training or no validation row")
        }
        let F = featureCount, cut = count - held
        return (try FeatureDataset(features: Array(features[0 ..< cut * F]), labels: Array(labels[0 ..< cut]), featureCount: F,
                                   source: "\(source) (first \(cut) rows)", classCount: classCount),
                try FeatureDataset(features: Array(features[(cut * F)...]), labels: Array(labels[cut...]), featureCount: F,
                                   source: "\(source) (last \(held) rows, --val-fraction)", classCount: classCount))
    }
}

// MARK: - The built-in synthetic imbalanced set

extension FeatureDataset {
    /// Class frequencies of the synthetic set: one majority class and two minority classes.
    public static let syntheticFrequencies = [0.80, 0.15, 0.03, 0.02]
    public static let syntheticFeatures = 16
    /// Scale of the class means: small enough that the classes overlap.
    public static let syntheticSeparation = 0.6

    /// K = 4 Gaussian clusters in F = 16 dimensions, class c drawn with frequency
    /// `syntheticFrequencies[c]`; class means normal(0, separation²) per feature, keyed by
    /// (seed, "synthetic.means"); features mean + normal(0, 1). `split` "train" (8192 rows) and
    /// "validation" (2048 rows) share the means and draw their rows from their own keys.
    public static func synthetic(seed: UInt64, split: String) -> FeatureDataset {
        let K = syntheticFrequencies.count, F = syntheticFeatures
        var meanRNG = SeededGenerator(seed: seed, key: "synthetic.means")
        let means = (0 ..< K * F).map { _ in Float(syntheticSeparation * meanRNG.nextNormal()) }
        let n = split == "train" ? 8192 : 2048
        var rng = SeededGenerator(seed: seed, key: "synthetic.\(split)")
        var features = [Float](repeating: 0, count: n * F), labels = [Int32](repeating: 0, count: n)
        for i in 0..<n {
            var u = rng.nextUniform(), c = 0
            while c < K - 1 && u >= syntheticFrequencies[c] { u -= syntheticFrequencies[c]; c += 1 }
            labels[i] = Int32(c)
            for f in 0..<F { features[i * F + f] = means[c * F + f] + Float(rng.nextNormal()) }
        }
        // Valid by construction: finite features, labels below K.
        return try! FeatureDataset(features: features, labels: labels, featureCount: F,
                                   source: "synthetic imbalanced (seed \(seed), \(split))", classCount: K)
    }
}
