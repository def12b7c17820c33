import Testing
import ZeroComm
import ZeroOptim
import ZeroTensor

/// A one-rank communicator: enough to run the cross-rank code paths in-process.
final class LoneCommunicator: Communicator, @unchecked Sendable {
    var rank: Int { 0 }
    var size: Int { 1 }
    var backendName: String { "lone" }
    var traffic: TrafficCounters { TrafficCounters() }
    func allReduce(_ buffer: UnsafeMutableBufferPointer<Float>) throws {}
    func allReduce(bfloat16 input: UnsafeBufferPointer<UInt16>, into output: UnsafeMutableBufferPointer<Float>) throws {
        for i in input.indices { output[i] = BFloat16(bitPattern: input[i]).float }
    }
    func reduceScatter(_ input: UnsafeBufferPointer<Float>, into output: UnsafeMutableBufferPointer<Float>) throws {
        _ = output.initialize(from: input)
    }
    func reduceScatter(bfloat16 input: UnsafeBufferPointer<UInt16>, into output: UnsafeMutableBufferPointer<Float>) throws {
        for i in input.indices { output[i] = BFloat16(bitPattern: input[i]).float }
    }
    func allGather(_ input: UnsafeBufferPointer<Float>, into output: UnsafeMutableBufferPointer<Float>) throws { _ = output.initialize(from: input) }
    func allGather(_ input: UnsafeBufferPointer<UInt16>, into output: UnsafeMutableBufferPointer<UInt16>) throws { _ = output.initialize(from: input) }
    func allGather(_ input: UnsafeBufferPointer<Double>, into output: UnsafeMutableBufferPointer<Double>) throws { _ = output.initialize(from: input) }
    func broadcast(_ buffer: UnsafeMutableRawBufferPointer, root: Int) throws {}
    func barrier() throws {}
    func abort(_ message: String) -> Never { fatalError(message) }
}

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

    @Test func normThroughACommunicatorEqualsSingleProcess() throws {
        let units: [[Float]] = [3 * 1024, 2048, 1024].enumerated().map { k, n in Inputs.gradient(seed: 70 + k, step: 1, count: n) }
        let flat = units.flatMap { $0 }
        try flat.withUnsafeBufferPointer { all in
            var at = 0
            let parts = units.map { u in defer { at += u.count }; return UnsafeBufferPointer(rebasing: all[at..<(at + u.count)]) }
            let viaComm = try GlobalNorm.norm(unitShards: parts, communicator: LoneCommunicator())
            #expect(viaComm.bitPattern == GlobalNorm.norm(units: parts).bitPattern)
        }
    }
}
