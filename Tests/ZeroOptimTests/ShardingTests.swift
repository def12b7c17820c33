import Testing
import ZeroComm
import ZeroOptim
import ZeroTensor

/// Steps `optimizers` (one per shard of `ranges`) over the same gradients; returns the master.
func runSharded(_ config: OptimizerConfig, n: Int, ranges: [Range<Int>], decay: [Range<Int>], steps: ClosedRange<Int>,
                master: inout [Float], optimizers: [any ShardOptimizer]) throws {
    for t in steps {
        let g = Inputs.gradient(seed: 9, step: t, count: n)
        for (r, opt) in zip(ranges, optimizers) {
            try master.withUnsafeMutableBufferPointer { m in
                try g.withUnsafeBufferPointer { gp in
                    try opt.step(master: m.part(r), gradient: UnsafeBufferPointer(rebasing: gp[r]), working: nil,
                                 context: StepContext(step: t, learningRate: 1e-2))
                }
            }
        }
    }
}

extension UnsafeMutableBufferPointer where Element == Float {
    func part(_ r: Range<Int>) -> UnsafeMutableBufferPointer<Float> { UnsafeMutableBufferPointer(rebasing: self[r]) }
}

func shards(_ n: Int, _ parts: Int) -> [Range<Int>] {
    let s = n / parts
    return (0..<parts).map { $0 * s..<($0 + 1) * s }
}

func optimizers(_ config: OptimizerConfig, _ ranges: [Range<Int>], decay: [Range<Int>]) throws -> [any ShardOptimizer] {
    try ranges.map { r in
        let local = decay.compactMap { d -> Range<Int>? in
            let c = d.clamped(to: r)
            return c.isEmpty ? nil : (c.lowerBound - r.lowerBound)..<(c.upperBound - r.lowerBound)
        }
        return try makeOptimizer(config, count: r.count, decaySegments: local, ledger: nil)
    }
}

@Suite("Shard-local optimizers: rank count and resharding")
struct ShardingTests {
    static let kinds: [OptimizerKind] = [.adamw, .adam, .sgd, .adagrad, .rmsprop, .lion, .adamw8bit]

    /// Splitting the parameters into 1, 2, 4 or 8 shards gives the same bits, and the state
    /// written by 4 shards, re-cut into 2 shards by its parameter-aligned arrays, continues exactly.
    @Test(arguments: kinds)
    func shardCountIndependentAndReshardable(_ kind: OptimizerKind) throws {
        let n = 8 * 1024
        var config = OptimizerConfig(kind: kind)
        config.momentum = kind == .sgd || kind == .rmsprop ? 0.9 : 0
        let decay = [100..<3000, 5000..<8000]
        let p0 = Inputs.params(seed: 9, count: n)
        var reference = p0
        try runSharded(config, n: n, ranges: [0..<n], decay: decay, steps: 1...6, master: &reference,
                       optimizers: optimizers(config, [0..<n], decay: decay))
        for parts in [2, 4, 8] {
            var m = p0
            try runSharded(config, n: n, ranges: shards(n, parts), decay: decay, steps: 1...6, master: &m,
                           optimizers: optimizers(config, shards(n, parts), decay: decay))
            #expect(m.map(\.bitPattern) == reference.map(\.bitPattern), "\(kind) with \(parts) shards")
        }
        // Reshard after 3 steps: 4 shards -> 2 shards by copying the state arrays' byte ranges.
        var m = p0
        let four = try optimizers(config, shards(n, 4), decay: decay)
        try runSharded(config, n: n, ranges: shards(n, 4), decay: decay, steps: 1...3, master: &m, optimizers: four)
        let two = try optimizers(config, shards(n, 2), decay: decay)
        for (k, target) in two.enumerated() {
            for (a, array) in target.state.enumerated() {
                for j in 0..<2 {
                    let source = four[2 * k + j].state[a]
                    let offset = j * (n / 4) / array.parametersPerBlock * array.bytesPerBlock
                    let dst = UnsafeMutableRawBufferPointer(rebasing: array.bytes[offset..<(offset + source.bytes.count)])
                    dst.copyMemory(from: UnsafeRawBufferPointer(source.bytes))
                }
            }
        }
        try runSharded(config, n: n, ranges: shards(n, 2), decay: decay, steps: 4...6, master: &m, optimizers: two)
        #expect(m.map(\.bitPattern) == reference.map(\.bitPattern), "\(kind) resharded 4 -> 2")
    }

    /// The cross-rank norm through the real simulated communicator: each rank passes its
    /// shard of every (zero-padded) unit; the bits equal the single-process norm.
    @Test(arguments: [1, 2, 4, 8])
    func normThroughTheCommunicatorEqualsSingleProcess(ranks: Int) throws {
        let units: [[Float]] = [3 * 1024 + 17, 2048, 700].enumerated().map { k, n in Inputs.gradient(seed: 70 + k, step: 1, count: n) }
        let expected = try units.withUnsafeBufferPointers { GlobalNorm.norm(units: $0) }
        let quantum = ranks * GlobalNorm.blockSize
        let padded = units.map { $0 + [Float](repeating: 0, count: ($0.count + quantum - 1) / quantum * quantum - $0.count) }
        let norms = try SimulatedCluster.run(ranks: ranks) { comm in
            try padded.withUnsafeBufferPointers { full in
                let shards = full.map { u in
                    let s = u.count / comm.size
                    return UnsafeBufferPointer(rebasing: u[(comm.rank * s)..<((comm.rank + 1) * s)])
                }
                return try GlobalNorm.norm(unitShards: shards, communicator: comm)
            }
        }
        for n in norms { #expect(n.bitPattern == expected.bitPattern) }
    }
}

extension Array where Element == [Float] {
    /// Calls `body` with buffer pointers to every inner array.
    func withUnsafeBufferPointers<R>(_ body: ([UnsafeBufferPointer<Float>]) throws -> R) rethrows -> R {
        var pointers: [UnsafeBufferPointer<Float>] = []
        func recurse(_ i: Int) throws -> R {
            if i == count { return try body(pointers) }
            return try self[i].withUnsafeBufferPointer { p in
                pointers.append(p)
                defer { pointers.removeLast() }
                return try recurse(i + 1)
            }
        }
        return try recurse(0)
    }
}
