import ArgumentParser
import Foundation
import ZeroComm
import ZeroTensor

/// `zero-train selftest-comm`: every collective, fp32 and bf16, odd sizes, inputs from
/// (seed, rank). Rank 0 prints one line per collective with an FNV-1a 64-bit hash of
/// every rank's result bits (in rank order) and each rank's traffic counters. The
/// output does not depend on the backend, so `mpirun -n 4` and `--simulate 4` must
/// print identical text (Tests/CLITests/CommMPITests.swift checks it).
struct SelfTestComm: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "selftest-comm",
        abstract: "Run every collective on deterministic inputs and print result hashes (for tests).",
        shouldDisplay: false
    )

    @Option(help: "Simulate N ranks as threads in this process instead of using MPI.")
    var simulate: Int?

    @Option(help: "Seed of the generated inputs.")
    var seed: UInt64 = 1

    @Option(help: "Seconds a rank may wait in a collective.")
    var timeout: Int = 120

    /// Faults for the no-hang tests: `mismatch` makes the last rank call all-reduce with
    /// one element more; `absent` makes it sleep instead of calling the collective (so the
    /// others time out); `finished` makes it skip the collective and end (so the others
    /// see its final barrier instead of their all-reduce).
    @Option(help: "Inject a fault: none, mismatch, absent or finished.")
    var fault: String = "none"

    func validate() throws {
        if !["none", "mismatch", "absent", "finished"].contains(fault) {
            throw ValidationError("--fault must be none, mismatch, absent or finished")
        }
        if let n = simulate, n < 1 || n > 64 { throw ValidationError("--simulate must be in 1...64") }
    }

    func run() throws {
        let (seed, fault, timeout) = (self.seed, self.fault, self.timeout)
        let lines = runOnRanks(simulate: simulate, timeout: Double(timeout)) { comm in
            if fault != "none" {
                let last = comm.rank == comm.size - 1
                if fault == "finished" && last { return "" }
                if fault == "absent" && last { sleep(UInt32(10 * timeout)); return "" }
                var b = [Float](repeating: 1, count: fault == "mismatch" && last ? 11 : 10)
                try b.withUnsafeMutableBufferPointer { try comm.allReduce($0) }
            }
            return try SelfTestComm.exercise(comm, seed: seed)
        }
        if let text = lines.first(where: { !$0.isEmpty }) { print(text, terminator: "") }
    }

    /// One record per collective: (name, this rank's result hash, traffic delta).
    static func exercise(_ comm: any Communicator, seed: UInt64) throws -> String {
        let r = comm.rank, n = comm.size
        var records: [(name: String, hash: UInt64, sent: Int, received: Int)] = []
        func record(_ name: String, _ kind: CollectiveKind, _ body: () throws -> UInt64) throws {
            let before = comm.traffic
            let h = try body()
            let after = comm.traffic
            records.append((name, h, after.sent[kind, default: 0] - before.sent[kind, default: 0],
                            after.received[kind, default: 0] - before.received[kind, default: 0]))
        }
        func inputs(_ count: Int, _ salt: UInt64) -> [Float] {
            selfTestInputs(count: count, seed: seed &* 1_000_003 &+ UInt64(r) &* 7919 &+ salt)
        }
        func halves(_ count: Int, _ salt: UInt64) -> [UInt16] { inputs(count, salt).map { BFloat16.round($0) } }

        for count in [1037, 100_003] {
            try record("all_reduce fp32 count=\(count)", .allReduce) {
                var b = inputs(count, 1)
                try b.withUnsafeMutableBufferPointer { try comm.allReduce($0) }
                return fnv1a(b)
            }
            try record("all_reduce bf16 count=\(count)", .allReduce) {
                let i = halves(count, 2)
                var o = [Float](repeating: .nan, count: count)
                try i.withUnsafeBufferPointer { i in try o.withUnsafeMutableBufferPointer { try comm.allReduce(bfloat16: i, into: $0) } }
                return fnv1a(o)
            }
        }
        let chunk = 333
        try record("reduce_scatter fp32 chunk=\(chunk)", .reduceScatter) {
            let i = inputs(n * chunk, 3)
            var o = [Float](repeating: .nan, count: chunk)
            try i.withUnsafeBufferPointer { i in try o.withUnsafeMutableBufferPointer { try comm.reduceScatter(i, into: $0) } }
            return fnv1a(o)
        }
        try record("reduce_scatter bf16 chunk=\(chunk)", .reduceScatter) {
            let i = halves(n * chunk, 4)
            var o = [Float](repeating: .nan, count: chunk)
            try i.withUnsafeBufferPointer { i in try o.withUnsafeMutableBufferPointer { try comm.reduceScatter(bfloat16: i, into: $0) } }
            return fnv1a(o)
        }
        let g = 101
        try record("all_gather fp32 count=\(g)", .allGather) {
            let i = inputs(g, 5)
            var o = [Float](repeating: .nan, count: n * g)
            try i.withUnsafeBufferPointer { i in try o.withUnsafeMutableBufferPointer { try comm.allGather(i, into: $0) } }
            return fnv1a(o)
        }
        try record("all_gather u16 count=\(g)", .allGather) {
            let i = halves(g, 6)
            var o = [UInt16](repeating: 0, count: n * g)
            try i.withUnsafeBufferPointer { i in try o.withUnsafeMutableBufferPointer { try comm.allGather(i, into: $0) } }
            return fnv1a(o)
        }
        try record("all_gather f64 count=\(g)", .allGather) {
            let i = inputs(g, 7).map { Double($0) / 3 }
            var o = [Double](repeating: .nan, count: n * g)
            try i.withUnsafeBufferPointer { i in try o.withUnsafeMutableBufferPointer { try comm.allGather(i, into: $0) } }
            return fnv1a(o)
        }
        // Uneven counts (the engine's block shards): every third rank has none.
        let counts = (0..<n).map { $0 % 3 == 1 ? 0 : 50 + 17 * $0 }, total = counts.reduce(0, +)
        try record("reduce_scatter fp32 uneven total=\(total)", .reduceScatter) {
            let i = inputs(total, 8)
            var o = [Float](repeating: .nan, count: counts[r])
            try i.withUnsafeBufferPointer { i in try o.withUnsafeMutableBufferPointer { try comm.reduceScatter(i, counts: counts, into: $0) } }
            return fnv1a(o)
        }
        try record("reduce_scatter bf16 uneven total=\(total)", .reduceScatter) {
            let i = halves(total, 9)
            var o = [Float](repeating: .nan, count: counts[r])
            try i.withUnsafeBufferPointer { i in try o.withUnsafeMutableBufferPointer { try comm.reduceScatter(bfloat16: i, counts: counts, into: $0) } }
            return fnv1a(o)
        }
        try record("all_gather fp32 uneven total=\(total)", .allGather) {
            let i = inputs(counts[r], 10)
            var o = [Float](repeating: .nan, count: total)
            try i.withUnsafeBufferPointer { i in try o.withUnsafeMutableBufferPointer { try comm.allGather(i, counts: counts, into: $0) } }
            return fnv1a(o)
        }
        try record("all_gather u16 uneven total=\(total)", .allGather) {
            let i = halves(counts[r], 11)
            var o = [UInt16](repeating: 0, count: total)
            try i.withUnsafeBufferPointer { i in try o.withUnsafeMutableBufferPointer { try comm.allGather(i, counts: counts, into: $0) } }
            return fnv1a(o)
        }
        try record("all_gather f64 uneven total=\(total)", .allGather) {
            let i = inputs(counts[r], 12).map { Double($0) / 3 }
            var o = [Double](repeating: .nan, count: total)
            try i.withUnsafeBufferPointer { i in try o.withUnsafeMutableBufferPointer { try comm.allGather(i, counts: counts, into: $0) } }
            return fnv1a(o)
        }
        try record("broadcast bytes=77 root=last", .broadcast) {
            var b = (0..<77).map { UInt8(truncatingIfNeeded: r &* 31 &+ $0) }
            try b.withUnsafeMutableBytes { try comm.broadcast($0, root: n - 1) }
            return fnv1a(b)
        }
        try record("barrier", .barrier) {
            try comm.barrier()
            return fnv1a([UInt8]())
        }

        // Gather (hash, sent, received) of every record from every rank as 16-bit words.
        let words = records.flatMap { rec in [rec.hash, UInt64(rec.sent), UInt64(rec.received)].flatMap(splitWords) }
        var all = [UInt16](repeating: 0, count: n * words.count)
        try words.withUnsafeBufferPointer { i in try all.withUnsafeMutableBufferPointer { try comm.allGather(i, into: $0) } }
        guard r == 0 else { return "" }
        let perRecord = 12
        var text = "selftest-comm ranks=\(n) seed=\(seed)\n"
        for (k, rec) in records.enumerated() {
            var combined = FNV1a()
            var sent: [UInt64] = [], received: [UInt64] = []
            for q in 0..<n {
                let base = q * words.count + k * perRecord
                combined.add(joinWords(all, base))
                sent.append(joinWords(all, base + 4))
                received.append(joinWords(all, base + 8))
            }
            let hex = String(combined.value, radix: 16)
            text += "\(rec.name): hash=\(String(repeating: "0", count: 16 - hex.count) + hex) "
            text += "sent=\(sent.map(String.init).joined(separator: ",")) received=\(received.map(String.init).joined(separator: ","))\n"
        }
        return text
    }
}

/// FNV-1a 64-bit over raw bytes.
struct FNV1a {
    var value: UInt64 = 0xcbf2_9ce4_8422_2325
    mutating func add(bytes: UnsafeRawBufferPointer) {
        for b in bytes { value = (value ^ UInt64(b)) &* 0x100_0000_01b3 }
    }
    mutating func add(_ word: UInt64) {
        withUnsafeBytes(of: word.littleEndian) { add(bytes: $0) }
    }
}

func fnv1a<T: BitwiseCopyable>(_ values: [T]) -> UInt64 {
    var h = FNV1a()
    values.withUnsafeBytes { h.add(bytes: $0) }
    return h.value
}

private func splitWords(_ v: UInt64) -> [UInt16] { (0..<4).map { UInt16(truncatingIfNeeded: v >> (16 * $0)) } }
private func joinWords(_ w: [UInt16], _ at: Int) -> UInt64 { (0..<4).reduce(0) { $0 | UInt64(w[at + $1]) << (16 * $1) } }

/// Mixed magnitudes (2^-20 ... 2^20, both signs) so that summation order shows in the bits.
func selfTestInputs(count: Int, seed: UInt64) -> [Float] {
    var state = seed &* 0x9E37_79B9_7F4A_7C15 &+ 0x1234_5678
    return (0..<count).map { _ in
        state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
        let a = state >> 11
        let mantissa = Float(a % 1_000_000) / 1_000_000 + 0.5
        let exponent = Int((a >> 20) % 41) - 20
        let sign: Float = (a >> 40) & 1 == 0 ? 1 : -1
        return sign * mantissa * Float(sign: .plus, exponent: exponent, significand: 1)
    }
}
