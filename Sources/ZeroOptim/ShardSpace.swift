import ZeroComm

/// This rank's part of a flat vector and the reductions over all ranks' parts, in a canonical
/// order. The vector is a sequence of segments (the trainer's parameter units); each segment is
/// cut into equal contiguous shards, rank r holding shard r of every segment, back to back.
/// Sums are fp64 sums of 1024-element blocks (within a block four running sums of the elements
/// i mod 4, then (s0 + s1) + (s2 + s3); a product of floats is exact in fp64), the block sums then
/// added segment by segment in global block order. A shard
/// that is a whole number of blocks (the last may be short) gives the same bits at every rank
/// count, and so does a full copy held without a communicator (ZeRO stage 0).
public struct ShardSpace: Sendable {
    public static let blockSize = 1024
    public let count: Int
    /// This rank's element count of each segment, in order (sums to `count`).
    public let segments: [Int]
    public let communicator: (any Communicator)?

    public init(count: Int, communicator: (any Communicator)? = nil) {
        self.init(segments: [count], communicator: communicator)
    }

    public init(segments: [Int], communicator: (any Communicator)? = nil) {
        precondition(segments.allSatisfy { $0 >= 0 })
        self.segments = segments
        self.count = segments.reduce(0, +)
        self.communicator = communicator
    }

    public func dot(_ a: UnsafeBufferPointer<Float>, _ b: UnsafeBufferPointer<Float>) throws -> Double {
        precondition(a.count == count && b.count == count)
        return try blockSum { Double(a[$0]) * Double(b[$0]) }
    }
    public func dot(_ a: [Float], _ b: [Float]) throws -> Double {
        try a.withUnsafeBufferPointer { a in try b.withUnsafeBufferPointer { try dot(a, $0) } }
    }
    public func sumAbs(_ a: UnsafeBufferPointer<Float>) throws -> Double { try blockSum { Double(abs(a[$0])) } }
    public func sumAbs(_ a: [Float]) throws -> Double { try a.withUnsafeBufferPointer { try sumAbs($0) } }

    /// max |a_i| over every shard (NaN if any is NaN).
    public func maxAbs(_ a: [Float]) throws -> Double { try maxAbs(a.count) { a[$0] } }

    /// max |term(i)| over every shard's i in 0..<count (NaN if any is NaN).
    public func maxAbs(_ n: Int, _ term: (Int) -> Float) throws -> Double {
        var m = 0.0
        for i in 0..<n { let v = Double(abs(term(i))); if v > m || v.isNaN { m = v }; if m.isNaN { break } }
        guard let communicator, communicator.size > 1 else { return m }
        var all = [Double](repeating: 0, count: communicator.size)
        try [m].withUnsafeBufferPointer { l in try all.withUnsafeMutableBufferPointer { try communicator.allGather(l, into: $0) } }
        return all.reduce(0) { $0.isNaN || $1.isNaN ? .nan : max($0, $1) }
    }

    /// Sum of term(i) over every shard's elements, in the canonical order (one all-gather).
    /// Inlined so that each caller's term is a plain loop body, not a closure call per element.
    @inline(__always) func blockSum(_ term: (Int) -> Double) throws -> Double {
        // Block sums of each segment, in this rank's order.
        var sums: [Double] = [], blocksPerSegment: [Int] = []
        var base = 0
        for n in segments {
            let blocks = (n + Self.blockSize - 1) / Self.blockSize
            for b in 0..<blocks {
                // Four running sums over i = 0, 1, 2, 3 mod 4 of the block, then (s0 + s1) + (s2 + s3)
                // plus the tail in order: a fixed order per block, and four independent chains.
                let lo = base + b * Self.blockSize, hi = base + min(n, (b + 1) * Self.blockSize)
                var (s0, s1, s2, s3) = (0.0, 0.0, 0.0, 0.0)
                var i = lo
                while i + 4 <= hi {
                    s0 += term(i); s1 += term(i + 1); s2 += term(i + 2); s3 += term(i + 3)
                    i += 4
                }
                var s = (s0 + s1) + (s2 + s3)
                while i < hi { s += term(i); i += 1 }
                sums.append(s)
            }
            blocksPerSegment.append(blocks)
            base += n
        }
        guard let communicator, communicator.size > 1 else { return sums.reduce(0, +) }
        // Ranks may hold different block counts per segment: gather the counts, then the padded sums.
        let ranks = communicator.size, k = segments.count
        var counts = [Double](repeating: 0, count: k * ranks)
        try blocksPerSegment.map(Double.init).withUnsafeBufferPointer { l in
            try counts.withUnsafeMutableBufferPointer { try communicator.allGather(l, into: $0) }
        }
        let widest = Int(counts.max() ?? 0)
        var padded = [Double](repeating: 0, count: k * widest), at = 0
        for s in 0..<k {
            for b in 0..<blocksPerSegment[s] { padded[s * widest + b] = sums[at + b] }
            at += blocksPerSegment[s]
        }
        var all = [Double](repeating: 0, count: k * widest * ranks)
        try padded.withUnsafeBufferPointer { l in try all.withUnsafeMutableBufferPointer { try communicator.allGather(l, into: $0) } }
        var total = 0.0
        for s in 0..<k {
            for q in 0..<ranks {
                for b in 0..<Int(counts[q * k + s]) { total += all[(q * k + s) * widest + b] }
            }
        }
        return total
    }
}
