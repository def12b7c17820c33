import ZeroComm

/// What to do when the global gradient norm is not finite.
public enum NonFinitePolicy: String, Sendable, Codable, CaseIterable {
    /// Report it in `ClipResult`; the engine skips the step (weights and state untouched) and counts it.
    case skip
    /// Throw `NonFiniteGradientError` (torch's `error_if_nonfinite=True`).
    case error
}

/// The global gradient norm was NaN or infinite and the policy says error.
public struct NonFiniteGradientError: Error, CustomStringConvertible, Sendable {
    public var norm: Double
    public var description: String { "gradient norm is \(norm) (non-finite); step refused" }
}

/// Outcome of global-norm clipping for one step.
public struct ClipResult: Sendable, Equatable {
    /// sqrt of the fp64 sum of squares, before clipping: log it as "grad_norm_preclip".
    public var norm: Double
    /// The float32 coefficient multiplied into the gradients (1 when not clipped).
    public var coefficient: Float
    /// False when the norm is NaN or infinite: gradients were left as they are and the
    /// caller must skip the optimizer step.
    public var isFinite: Bool
    /// Whether the gradients were scaled (coefficient < 1).
    public var clipped: Bool
}

/// Global L2 norm of a sharded gradient with bits that do not depend on the rank count, and
/// PyTorch's `clip_grad_norm_` coefficient.
///
/// The norm is defined over fixed 1024-element blocks of each unit's flat gradient: one fp64
/// sum of squares per block, added sequentially inside the block (squares of floats are exact in
/// fp64), then all block sums added sequentially in (unit, block) order. A rank shard of a unit
/// is a whole number of blocks, so gathering the block sums and adding them in (unit, rank,
/// block) order gives the same bits for any rank count; zero padding adds exactly nothing.
/// It differs from torch's float32 norm-of-norms by float32 rounding (torch accumulates in
/// float32 with its own reduction tree); the fp64 value is the more accurate one.
public enum GlobalNorm {
    public static let blockSize = 1024

    /// Number of blocks covering `count` elements (the last one may be partial).
    public static func blockCount(_ count: Int) -> Int { (count + blockSize - 1) / blockSize }

    /// One fp64 sum of squares per 1024-element block of `g`, sequential inside the block.
    public static func sumsOfSquares(_ g: UnsafeBufferPointer<Float>, into sums: UnsafeMutableBufferPointer<Double>) {
        let blocks = blockCount(g.count)
        precondition(sums.count >= blocks, "need \(blocks) block sums, got room for \(sums.count)")
        guard let base = g.baseAddress else { return }
        // Four blocks at a time: four independent sequential chains keep the adder busy
        // without changing any block's order of additions.
        var b = 0
        while b + 4 <= blocks && (b + 4) * blockSize <= g.count {
            var s0 = 0.0, s1 = 0.0, s2 = 0.0, s3 = 0.0
            let p = base + b * blockSize
            for k in 0..<blockSize {
                let x0 = Double(p[k]), x1 = Double(p[k + blockSize])
                let x2 = Double(p[k + 2 * blockSize]), x3 = Double(p[k + 3 * blockSize])
                s0 += x0 * x0; s1 += x1 * x1; s2 += x2 * x2; s3 += x3 * x3
            }
            sums[b] = s0; sums[b + 1] = s1; sums[b + 2] = s2; sums[b + 3] = s3
            b += 4
        }
        while b < blocks {
            var s = 0.0
            for k in (b * blockSize)..<min(g.count, (b + 1) * blockSize) {
                let x = Double(base[k])
                s += x * x
            }
            sums[b] = s
            b += 1
        }
    }

    /// Sequential fp64 sum in order.
    public static func combine(_ sums: UnsafeBufferPointer<Double>) -> Double {
        var total = 0.0
        for s in sums { total += s }
        return total
    }

    /// torch's coefficient in float32: `max_norm / (total_norm + 1e-6)` evaluates as
    /// `reciprocal(total_norm + f32(1e-6)) * max_norm` (Tensor.__rdiv__), then clamps to at most 1.
    public static func clipCoefficient(totalNorm: Float, maxNorm: Float) -> Float {
        let c = (1 / (totalNorm + Float(1e-6))) * maxNorm
        return c.isNaN ? c : min(c, 1)
    }

    /// g *= coefficient (torch's `mul_`), vectorized.
    public static func scale(_ g: UnsafeMutableBufferPointer<Float>, by coefficient: Float) {
        for i in g.indices { g[i] = g[i] * coefficient }
    }

    /// Single-process norm of units given whole (each unit's blocks start at its first element).
    public static func norm(units: [UnsafeBufferPointer<Float>]) -> Double {
        var total = 0.0
        for u in units {
            var sums = [Double](repeating: 0, count: blockCount(u.count))
            sums.withUnsafeMutableBufferPointer { sumsOfSquares(u, into: $0) }
            for s in sums { total += s }
        }
        return total.squareRoot()
    }

    /// Cross-rank norm: each rank passes its shard of every unit, in unit order, a whole number
    /// of 1024-element blocks (possibly none). `shardCounts[u][q]` is rank q's element count of
    /// unit u (nil: every rank's shard has this rank's length). Per unit the block sums are
    /// all-gathered and added in (rank, block) order, which is (unit, block) order since the
    /// shards are contiguous, so every rank gets the same bits as the single-process
    /// `norm(units:)` over the unpadded units, whatever the rank count and however the blocks
    /// are dealt.
    public static func norm(unitShards: [UnsafeBufferPointer<Float>], shardCounts: [[Int]]? = nil,
                            communicator: any Communicator) throws -> Double {
        var total = 0.0
        var local: [Double] = []
        var gathered: [Double] = []
        for (u, shard) in unitShards.enumerated() {
            let counts = shardCounts?[u] ?? Array(repeating: shard.count, count: communicator.size)
            guard counts.count == communicator.size, counts[communicator.rank] == shard.count,
                  counts.allSatisfy({ $0 % blockSize == 0 }) else {
                throw OptimizerError("unit \(u): shards of \(counts) elements (this rank's \(shard.count)) are not whole \(blockSize)-element blocks, one per rank")
            }
            let blocks = shard.count / blockSize
            if local.count != blocks { local = [Double](repeating: 0, count: blocks) }
            local.withUnsafeMutableBufferPointer { sumsOfSquares(shard, into: $0) }
            let blockCounts = counts.map { $0 / blockSize }
            let all = blockCounts.reduce(0, +)
            if gathered.count != all { gathered = [Double](repeating: 0, count: all) }
            try local.withUnsafeBufferPointer { l in
                try gathered.withUnsafeMutableBufferPointer { try communicator.allGather(l, counts: blockCounts, into: $0) }
            }
            for s in gathered { total += s }
        }
        return total.squareRoot()
    }

    /// Clips in place to `maxNorm` given the pre-computed global `norm` (from `norm(...)`).
    /// A non-finite norm leaves the gradients untouched and reports `isFinite == false`
    /// (or throws under `.error`).
    public static func clip(_ shards: [UnsafeMutableBufferPointer<Float>], norm: Double, maxNorm: Float,
                            nonFinite: NonFinitePolicy = .skip) throws -> ClipResult {
        guard norm.isFinite else {
            if nonFinite == .error { throw NonFiniteGradientError(norm: norm) }
            return ClipResult(norm: norm, coefficient: .nan, isFinite: false, clipped: false)
        }
        let c = clipCoefficient(totalNorm: Float(norm), maxNorm: maxNorm)
        // torch multiplies even when the clamped coefficient is 1 (a no-op on finite values).
        if c < 1 { for s in shards { scale(s, by: c) } }
        return ClipResult(norm: norm, coefficient: c, isFinite: true, clipped: c < 1)
    }
}
