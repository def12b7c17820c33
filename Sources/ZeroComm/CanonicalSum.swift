/// The one summation order every reduction in zero-train uses (docs/determinism.md).
///
/// N contributions are added as a balanced pairwise tree over their index:
/// `tree(lo, hi) = tree(lo, mid) + tree(mid, hi)` with `mid = lo + p`, `p` the largest
/// power of two below `hi - lo`, accumulating in fp32. For 4 contributions that is
/// `(x0 + x1) + (x2 + x3)`, for 3 it is `(x0 + x1) + x2`. Because the split points are
/// powers of two, the tree over 2^k ranks is the tree over 2^(k-1) pairs, which is what
/// makes a result independent of how many ranks produced it (docs/determinism.md,
/// "Proof sketch" step 3 and "Communicator reductions").
///
/// The work is done in blocks of `blockCount` elements so that the partial sums of one
/// block stay in L1/L2; every inner loop is a plain contiguous loop the compiler
/// vectorizes. The output may alias one of the sources at the same offset: each block
/// reads all of its sources before writing the block of output.
public enum CanonicalSum {
    /// Elements per block: 1024 floats, so a 64-rank tree's temporaries (2 per level,
    /// 6 levels) stay within about 48 KiB.
    public static let blockCount = 1024

    /// `output[i] = tree(sources[0][i], ..., sources[n-1][i])` for `i < count`.
    public static func sum(_ sources: [UnsafePointer<Float>], count: Int, into output: UnsafeMutablePointer<Float>) {
        let leaves = Leaves.float(sources)
        run(leaves, count: count, output: output)
    }

    /// As `sum(_:count:into:)` with bf16 sources, each widened to fp32 (a 16-bit left
    /// shift, exact) before it is added.
    public static func sum(bfloat16 sources: [UnsafePointer<UInt16>], count: Int, into output: UnsafeMutablePointer<Float>) {
        let leaves = Leaves.bfloat16(sources)
        run(leaves, count: count, output: output)
    }

    /// The split point of `tree(lo, hi)`: `lo` plus the largest power of two below `hi - lo`.
    @inlinable public static func split(_ lo: Int, _ hi: Int) -> Int {
        let n = hi - lo
        precondition(n >= 2)
        var p = 1
        while p * 2 < n { p *= 2 }
        return lo + p
    }

    private enum Leaves {
        case float([UnsafePointer<Float>])
        case bfloat16([UnsafePointer<UInt16>])
        var count: Int {
            switch self {
            case .float(let s): s.count
            case .bfloat16(let s): s.count
            }
        }
    }

    private static func run(_ leaves: Leaves, count: Int, output: UnsafeMutablePointer<Float>) {
        let n = leaves.count
        precondition(n >= 1, "a reduction needs at least one contribution")
        if count == 0 { return }
        var depth = 0
        while (1 << depth) < n { depth += 1 }
        let scratch = UnsafeMutablePointer<Float>.allocate(capacity: max(1, 2 * depth) * blockCount)
        defer { scratch.deallocate() }
        var offset = 0
        while offset < count {
            let m = min(blockCount, count - offset)
            let result = evaluate(leaves, 0, n, offset, m, output + offset, scratch, 0)
            if result != UnsafePointer(output + offset) { copy(result, output + offset, m) }
            offset += m
        }
    }

    /// Evaluates `tree(lo, hi)` on elements `[offset, offset + m)`. Returns a pointer to
    /// the result: a source pointer for a single fp32 leaf (no copy), else `destination`.
    private static func evaluate(
        _ leaves: Leaves, _ lo: Int, _ hi: Int, _ offset: Int, _ m: Int,
        _ destination: UnsafeMutablePointer<Float>, _ scratch: UnsafeMutablePointer<Float>, _ level: Int
    ) -> UnsafePointer<Float> {
        if hi - lo == 1 {
            switch leaves {
            case .float(let s): return s[lo] + offset
            case .bfloat16(let s):
                widen(s[lo] + offset, destination, m)
                return UnsafePointer(destination)
            }
        }
        let mid = split(lo, hi)
        if mid - lo == 1 && hi - mid == 1 {
            switch leaves {
            case .float(let s): add(s[lo] + offset, s[mid] + offset, destination, m)
            case .bfloat16(let s): addWidened(s[lo] + offset, s[mid] + offset, destination, m)
            }
            return UnsafePointer(destination)
        }
        let left = evaluate(leaves, lo, mid, offset, m, scratch + 2 * level * blockCount, scratch, level + 1)
        let right = evaluate(leaves, mid, hi, offset, m, scratch + (2 * level + 1) * blockCount, scratch, level + 1)
        add(left, right, destination, m)
        return UnsafePointer(destination)
    }

    @inline(__always)
    private static func add(_ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, _ d: UnsafeMutablePointer<Float>, _ m: Int) {
        for i in 0..<m { d[i] = a[i] + b[i] }
    }

    @inline(__always)
    private static func addWidened(_ a: UnsafePointer<UInt16>, _ b: UnsafePointer<UInt16>, _ d: UnsafeMutablePointer<Float>, _ m: Int) {
        for i in 0..<m {
            d[i] = Float(bitPattern: UInt32(a[i]) &<< 16) + Float(bitPattern: UInt32(b[i]) &<< 16)
        }
    }

    @inline(__always)
    private static func widen(_ a: UnsafePointer<UInt16>, _ d: UnsafeMutablePointer<Float>, _ m: Int) {
        for i in 0..<m { d[i] = Float(bitPattern: UInt32(a[i]) &<< 16) }
    }

    @inline(__always)
    private static func copy(_ a: UnsafePointer<Float>, _ d: UnsafeMutablePointer<Float>, _ m: Int) {
        d.update(from: a, count: m)
    }
}

/// How a collective cuts `count` elements into `parts` near-equal contiguous pieces:
/// the first `count % parts` pieces get one element more. allReduce uses it so that
/// any count works for any rank count. (ZeroEngine's `Partition` is the other cut: units
/// into aligned shards.)
public struct EvenSplit: Sendable, Equatable {
    public let count: Int
    public let parts: Int
    public init(count: Int, parts: Int) {
        precondition(parts >= 1)
        self.count = count
        self.parts = parts
    }
    /// The element range of piece `q`.
    public func range(_ q: Int) -> Range<Int> {
        let base = count / parts, extra = count % parts
        let start = q * base + min(q, extra)
        return start..<(start + base + (q < extra ? 1 : 0))
    }
}
