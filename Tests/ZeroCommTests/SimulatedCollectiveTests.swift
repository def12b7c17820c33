import Testing
import ZeroComm
import ZeroTensor

/// What one rank saw after running every collective once.
struct RankOutcome: Sendable {
    var allReduce: [Float] = []
    var allReduceBF16: [Float] = []
    var reduceScatter: [Float] = []
    var reduceScatterBF16: [Float] = []
    var gatherFloat: [Float] = []
    var gatherHalf: [UInt16] = []
    var gatherDouble: [Double] = []
    var broadcast: [UInt8] = []
    var traffic = TrafficCounters()
}

// Odd sizes so that pieces are uneven and nothing is a multiple of a vector width.
let allReduceCount = 1037
let scatterChunk = 13
let gatherCount = 7
let broadcastBytes = 19

func seed(_ rank: Int, _ salt: Int) -> UInt64 { UInt64(rank * 1000 + salt) }

func runEverything(_ comm: any Communicator) throws -> RankOutcome {
    let r = comm.rank, n = comm.size
    var o = RankOutcome()
    o.allReduce = mixedInputs(count: allReduceCount, seed: seed(r, 1))
    try o.allReduce.withUnsafeMutableBufferPointer { try comm.allReduce($0) }

    let halves = bfloat16Inputs(count: allReduceCount, seed: seed(r, 2))
    o.allReduceBF16 = Array(repeating: .nan, count: allReduceCount)
    try halves.withUnsafeBufferPointer { i in try o.allReduceBF16.withUnsafeMutableBufferPointer { try comm.allReduce(bfloat16: i, into: $0) } }

    let scatterIn = mixedInputs(count: n * scatterChunk, seed: seed(r, 3))
    o.reduceScatter = Array(repeating: .nan, count: scatterChunk)
    try scatterIn.withUnsafeBufferPointer { i in try o.reduceScatter.withUnsafeMutableBufferPointer { try comm.reduceScatter(i, into: $0) } }

    let scatterHalves = bfloat16Inputs(count: n * scatterChunk, seed: seed(r, 4))
    o.reduceScatterBF16 = Array(repeating: .nan, count: scatterChunk)
    try scatterHalves.withUnsafeBufferPointer { i in try o.reduceScatterBF16.withUnsafeMutableBufferPointer { try comm.reduceScatter(bfloat16: i, into: $0) } }

    let gf = mixedInputs(count: gatherCount, seed: seed(r, 5))
    o.gatherFloat = Array(repeating: 0, count: n * gatherCount)
    try gf.withUnsafeBufferPointer { i in try o.gatherFloat.withUnsafeMutableBufferPointer { try comm.allGather(i, into: $0) } }
    let gh = bfloat16Inputs(count: gatherCount, seed: seed(r, 6))
    o.gatherHalf = Array(repeating: 0, count: n * gatherCount)
    try gh.withUnsafeBufferPointer { i in try o.gatherHalf.withUnsafeMutableBufferPointer { try comm.allGather(i, into: $0) } }
    let gd = mixedInputs(count: gatherCount, seed: seed(r, 7)).map { Double($0) / 3 }
    o.gatherDouble = Array(repeating: 0, count: n * gatherCount)
    try gd.withUnsafeBufferPointer { i in try o.gatherDouble.withUnsafeMutableBufferPointer { try comm.allGather(i, into: $0) } }

    o.broadcast = (0..<broadcastBytes).map { UInt8(truncatingIfNeeded: r * 31 + $0) }
    try o.broadcast.withUnsafeMutableBytes { try comm.broadcast($0, root: n - 1) }
    try comm.barrier()
    o.traffic = comm.traffic
    return o
}

@Suite("Simulated collectives")
struct SimulatedCollectiveTests {
    @Test("every collective equals the plain reference", arguments: [1, 2, 3, 4, 8])
    func everyCollective(ranks n: Int) throws {
        let outcomes = try SimulatedCluster.run(ranks: n, timeout: .seconds(60)) { try runEverything($0) }
        let allReduce = referenceTree(ranks: (0..<n).map { mixedInputs(count: allReduceCount, seed: seed($0, 1)) })
        let allReduceBF16 = referenceTree(ranks: (0..<n).map { bfloat16Inputs(count: allReduceCount, seed: seed($0, 2)).map(widen) })
        let scatterFull = referenceTree(ranks: (0..<n).map { mixedInputs(count: n * scatterChunk, seed: seed($0, 3)) })
        let scatterFullBF16 = referenceTree(ranks: (0..<n).map { bfloat16Inputs(count: n * scatterChunk, seed: seed($0, 4)).map(widen) })
        let gf = (0..<n).flatMap { mixedInputs(count: gatherCount, seed: seed($0, 5)) }
        let gh = (0..<n).flatMap { bfloat16Inputs(count: gatherCount, seed: seed($0, 6)) }
        let gd = (0..<n).flatMap { mixedInputs(count: gatherCount, seed: seed($0, 7)).map { Double($0) / 3 } }
        let root = (0..<broadcastBytes).map { UInt8(truncatingIfNeeded: (n - 1) * 31 + $0) }

        for (r, o) in outcomes.enumerated() {
            #expect(bits(o.allReduce) == bits(allReduce), "rank \(r) all_reduce")
            #expect(bits(o.allReduceBF16) == bits(allReduceBF16), "rank \(r) all_reduce bf16")
            let mine = Array(scatterFull[(r * scatterChunk)..<((r + 1) * scatterChunk)])
            #expect(bits(o.reduceScatter) == bits(mine), "rank \(r) reduce_scatter")
            let mineBF16 = Array(scatterFullBF16[(r * scatterChunk)..<((r + 1) * scatterChunk)])
            #expect(bits(o.reduceScatterBF16) == bits(mineBF16), "rank \(r) reduce_scatter bf16")
            #expect(bits(o.gatherFloat) == bits(gf))
            #expect(o.gatherHalf == gh)
            #expect(o.gatherDouble.map(\.bitPattern) == gd.map(\.bitPattern))
            #expect(o.broadcast == root)
        }
    }

    @Test("byte counters are exact", arguments: [1, 3, 4])
    func trafficCounters(ranks n: Int) throws {
        let outcomes = try SimulatedCluster.run(ranks: n) { try runEverything($0) }
        for (r, o) in outcomes.enumerated() {
            // allReduce: pieces of 1037 over n ranks; reduce-scatter at 4 (fp32) or 2 (bf16)
            // bytes per element, then all-gather of the fp32 reduced piece.
            let base = allReduceCount / n, extra = allReduceCount % n
            let mine = base + (r < extra ? 1 : 0)
            let others = allReduceCount - mine
            let gatheredOut: Int = (n - 1) * mine * 4
            let arSent: Int = others * 4 + gatheredOut + others * 2 + gatheredOut
            let scatteredIn: Int = (n - 1) * mine
            let arReceived: Int = scatteredIn * 4 + others * 4 + scatteredIn * 2 + others * 4
            #expect(o.traffic.sent[.allReduce, default: 0] == arSent)
            #expect(o.traffic.received[.allReduce, default: 0] == arReceived)
            #expect(o.traffic.sent[.reduceScatter, default: 0] == (n - 1) * scatterChunk * 6)
            #expect(o.traffic.received[.reduceScatter, default: 0] == (n - 1) * scatterChunk * 6)
            #expect(o.traffic.sent[.allGather, default: 0] == (n - 1) * gatherCount * 14)
            #expect(o.traffic.received[.allGather, default: 0] == (n - 1) * gatherCount * 14)
            #expect(o.traffic.sent[.broadcast, default: 0] == (r == n - 1 ? (n - 1) * broadcastBytes : 0))
            #expect(o.traffic.received[.broadcast, default: 0] == (r == n - 1 ? 0 : broadcastBytes))
            #expect(o.traffic.sent[.barrier, default: 0] == 0)
        }
    }

    @Test("the tree over 2^k ranks is the tree over pairs of ranks", arguments: [4, 8])
    func hierarchy(ranks n: Int) throws {
        let count = 301
        let inputs = (0..<n).map { mixedInputs(count: count, seed: seed($0, 9)) }
        var pairs: [[Float]] = []
        for p in 0..<(n / 2) {
            let a: [Float] = inputs[2 * p], b: [Float] = inputs[2 * p + 1]
            pairs.append((0..<count).map { (i: Int) -> Float in a[i] + b[i] })
        }
        let pairInputs = pairs
        let full = try SimulatedCluster.run(ranks: n) { comm in
            var b = inputs[comm.rank]
            try b.withUnsafeMutableBufferPointer { try comm.allReduce($0) }
            return b
        }
        let halved = try SimulatedCluster.run(ranks: n / 2) { comm in
            var b = pairInputs[comm.rank]
            try b.withUnsafeMutableBufferPointer { try comm.allReduce($0) }
            return b
        }
        #expect(bits(full[0]) == bits(halved[0]))
        #expect(bits(full[0]) == bits(referenceTree(ranks: inputs)))
        // The inputs are mixed enough that a sequential sum differs: the order matters.
        var sequential: [Float] = inputs[0]
        for r in 1..<n { for i in 0..<count { sequential[i] += inputs[r][i] } }
        #expect(bits(sequential) != bits(full[0]))
    }

    @Test("64 ranks agree with the reference")
    func sixtyFourRanks() throws {
        let n = 64, count = 200
        let results = try SimulatedCluster.run(ranks: n) { comm in
            var b = mixedInputs(count: count, seed: seed(comm.rank, 11))
            try b.withUnsafeMutableBufferPointer { try comm.allReduce($0) }
            return b
        }
        let expected = referenceTree(ranks: (0..<n).map { mixedInputs(count: count, seed: seed($0, 11)) })
        #expect(results.allSatisfy { bits($0) == bits(expected) })
    }

    @Test("CanonicalSum over 1 to 9 sources, in place on source 0")
    func canonicalSumInPlace() {
        for n in 1...9 {
            let count = 2500  // spans several blocks
            let inputs = (0..<n).map { mixedInputs(count: count, seed: seed($0, 12)) }
            let storage = inputs.map { values -> UnsafeMutablePointer<Float> in
                let p = UnsafeMutablePointer<Float>.allocate(capacity: count)
                p.initialize(from: values, count: count)
                return p
            }
            defer { storage.forEach { $0.deallocate() } }
            CanonicalSum.sum(storage.map { UnsafePointer($0) }, count: count, into: storage[0])
            let out = Array(UnsafeBufferPointer(start: storage[0], count: count))
            #expect(bits(out) == bits(referenceTree(ranks: inputs)), "n = \(n)")
        }
    }

    @Test("reused communication buffers are reported to an attached ledger")
    func ledger() throws {
        let peaks = try SimulatedCluster.run(ranks: 4) { comm -> Int in
            let ledger = MemoryLedger()
            comm.attach(ledger: ledger)
            var b = [Float](repeating: 1, count: 1037)
            try b.withUnsafeMutableBufferPointer { try comm.allReduce($0) }
            return ledger.current(.communication)
        }
        // The reduced piece of 1037 elements over 4 ranks: 260, 259, 259, 259 floats.
        #expect(peaks == [1040, 1036, 1036, 1036])
    }

    @Test("EvenSplit pieces are contiguous and near-equal")
    func partition() {
        let p = EvenSplit(count: 10, parts: 4)
        #expect((0..<4).map { p.range($0) } == [0..<3, 3..<6, 6..<8, 8..<10])
        let q = EvenSplit(count: 2, parts: 3)
        #expect((0..<3).map { q.range($0) } == [0..<1, 1..<2, 2..<2])
    }
}

/// Per-rank counts (Partition's uneven block shards), some ranks with none.
@Suite struct UnevenCollectiveTests {
    static func counts(_ n: Int) -> [Int] { (0..<n).map { $0 % 3 == 1 ? 0 : 5 + 7 * $0 } }

    @Test("uneven reduce-scatter and all-gather equal the reference, with exact traffic", arguments: [1, 2, 3, 5, 8])
    func unevenMatchesReference(ranks n: Int) throws {
        let counts = Self.counts(n), total = counts.reduce(0, +)
        let offsets = counts.indices.map { counts[..<$0].reduce(0, +) }
        let outcomes = try SimulatedCluster.run(ranks: n) { comm in
            let r = comm.rank
            let input = mixedInputs(count: total, seed: seed(r, 11))
            var mine = [Float](repeating: .nan, count: counts[r])
            try input.withUnsafeBufferPointer { i in try mine.withUnsafeMutableBufferPointer { try comm.reduceScatter(i, counts: counts, into: $0) } }
            let halves = bfloat16Inputs(count: total, seed: seed(r, 12))
            var mineBF16 = [Float](repeating: .nan, count: counts[r])
            try halves.withUnsafeBufferPointer { i in try mineBF16.withUnsafeMutableBufferPointer { try comm.reduceScatter(bfloat16: i, counts: counts, into: $0) } }
            var whole = [Float](repeating: .nan, count: total)
            try mine.withUnsafeBufferPointer { i in try whole.withUnsafeMutableBufferPointer { try comm.allGather(i, counts: counts, into: $0) } }
            let doubles = (0..<counts[r]).map { Double(r) + Double($0) / 8 }
            var gathered = [Double](repeating: .nan, count: total)
            try doubles.withUnsafeBufferPointer { i in try gathered.withUnsafeMutableBufferPointer { try comm.allGather(i, counts: counts, into: $0) } }
            return (mine, mineBF16, whole, gathered, comm.traffic)
        }
        let sums = referenceTree(ranks: (0..<n).map { mixedInputs(count: total, seed: seed($0, 11)) })
        let sumsBF16 = referenceTree(ranks: (0..<n).map { bfloat16Inputs(count: total, seed: seed($0, 12)).map(widen) })
        var expectedDoubles: [Double] = []
        for q in 0..<n {
            for i in 0..<counts[q] { expectedDoubles.append(Double(q) + Double(i) / 8) }
        }
        for (r, o) in outcomes.enumerated() {
            let mine = offsets[r] ..< offsets[r] + counts[r]
            #expect(bits(o.0) == bits(Array(sums[mine])))
            #expect(bits(o.1) == bits(Array(sumsBF16[mine])))
            #expect(bits(o.2) == bits(sums))
            #expect(o.3 == expectedDoubles)
            let (own, others): (Int, Int) = (counts[r], total - counts[r])
            let traffic: TrafficCounters = o.4
            #expect(traffic.sent[.reduceScatter, default: 0] == others * 6)
            #expect(traffic.received[.reduceScatter, default: 0] == (n - 1) * own * 6)
            #expect(traffic.sent[.allGather, default: 0] == (n - 1) * own * 12)
            #expect(traffic.received[.allGather, default: 0] == others * 12)
        }
    }

    @Test("ranks cutting a buffer differently all fail naming the call")
    func disagreeingCountsFail() throws {
        #expect(throws: CommunicatorError.self) {
            _ = try SimulatedCluster.run(ranks: 3) { comm in
                let counts = comm.rank == 2 ? [2, 2, 2] : [1, 2, 3]
                let input = [Float](repeating: 1, count: 6)
                var out = [Float](repeating: 0, count: counts[comm.rank])
                try input.withUnsafeBufferPointer { i in try out.withUnsafeMutableBufferPointer { try comm.reduceScatter(i, counts: counts, into: $0) } }
            }
        }
    }
}
