import ZeroTensor

/// Dropout as `torch.nn.Dropout(p)` after a hidden ReLU, for both MLPs: each activation is kept
/// when u >= p and kept values are scaled by 1 / (1 - p).
///
/// The masks are not drawn from a running generator: micro-batch g of `step` and hidden layer k
/// key them, so they are the same on whichever rank runs g (the determinism contract) and on
/// every re-run of a forward (BatchNorm's statistics passes, the contrastive second forward).
public enum Dropout {
    /// Which of hidden layer k's `count` activations (row-major [rows, width]) micro-batch g of
    /// `step` keeps: u from SplitMix64 keyed by (seed ^ "DROP", step, g, k), in element order.
    public static func keepMask(seed: UInt64, step: Int, microBatch g: Int, layer k: Int, count: Int, p: Float) -> [Bool] {
        var rng = SeededGenerator(seed: seed ^ 0x4452_4F50, keys: [UInt64(truncatingIfNeeded: step), UInt64(truncatingIfNeeded: g), UInt64(k)])
        return (0..<count).map { _ in rng.nextUniform() >= Double(p) }
    }

    /// The micro-batch a model is about to run, or nil when nothing drops (p = 0 or evaluation).
    public struct Key: Sendable {
        public var seed: UInt64, step: Int, microBatch: Int
        /// nil for p = 0 and for evaluation (step < 0).
        public init?(p: Float, seed: UInt64, step: Int, microBatch g: Int) {
            guard p > 0 && step >= 0 else { return nil }
            self.seed = seed; self.step = step; microBatch = g
        }
    }

    /// Forward: drops hidden layer k's activations `x` [count] in place under `key`'s mask.
    public static func forward(_ x: UnsafeMutablePointer<Float>, count: Int, layer k: Int, key: Key, p: Float) {
        let keep = keepMask(seed: key.seed, step: key.step, microBatch: key.microBatch, layer: k, count: count, p: p)
        let scale = 1 / (1 - p)
        for i in 0..<count { x[i] = keep[i] ? x[i] * scale : 0 }
    }

    /// Backward after the ReLU's: the stored output is relu(z) x mask / (1 - p), positive exactly
    /// where both let the gradient through, so the ReLU backward already zeroed the dropped
    /// entries and only the 1 / (1 - p) scale is left.
    public static func backward(_ d: UnsafeMutablePointer<Float>, count: Int, p: Float) {
        let scale = 1 / (1 - p)
        for i in 0..<count { d[i] *= scale }
    }
}

/// A model whose forward depends on which micro-batch runs (dropout masks): the data source
/// names it before each forward (step < 0: evaluation, nothing drops).
public protocol MicroBatchKeyed: AnyObject {
    func setBatchKey(seed: UInt64, step: Int, microBatch g: Int)
}
