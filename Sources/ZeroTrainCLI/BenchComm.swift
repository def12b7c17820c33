import ArgumentParser
import Foundation
import ZeroComm

/// `zero-train bench comm`: our canonical collectives next to Open MPI's own.
///
/// Bandwidths follow nccl-tests: `algbw = bytes / seconds` and
/// `busbw = algbw * 2(n-1)/n` for all-reduce, `algbw * (n-1)/n` for reduce-scatter and
/// all-gather. `bytes` is the message size per rank as nccl-tests counts it: the
/// all-reduce buffer, the reduce-scatter input (the full, unsharded vector) and the
/// all-gather output (also the full vector). Each time is the slowest rank's, per
/// iteration, after a barrier; the median over iterations is reported. Backends and
/// collectives alternate within each iteration so that all see the same background load.
struct BenchComm: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "comm",
        abstract: "Bandwidth of all-reduce, reduce-scatter and all-gather: ours vs Open MPI's (under mpirun).",
        discussion: """
        launch/mpirun.sh -n 4 .build/release/zero-train bench comm
        zero-train bench comm --simulate 4 --sizes 1M,16M
        """
    )

    @Option(help: "Simulate N ranks as threads in this process instead of using MPI.")
    var simulate: Int?

    @Option(help: "Comma-separated message sizes per rank; K or M suffix (MiB if none).")
    var sizes: String = "1M,4M,16M,64M"

    @Option(help: "Timed iterations per size (median reported).")
    var iterations: Int = 7

    @Option(help: "Untimed warm-up iterations per size.")
    var warmup: Int = 2

    @Flag(help: "Print JSON lines instead of a table.")
    var json = false

    func validate() throws {
        if let n = simulate, n < 1 || n > 64 { throw ValidationError("--simulate must be in 1...64") }
        if iterations < 1 || warmup < 0 { throw ValidationError("--iterations must be >= 1 and --warmup >= 0") }
        _ = try BenchComm.parseSizes(sizes)
    }

    static func parseSizes(_ text: String) throws -> [Int] {
        try text.split(separator: ",").map { item in
            let s = item.trimmingCharacters(in: .whitespaces).uppercased()
            let (digits, scale): (Substring, Int) =
                s.hasSuffix("K") ? (s.dropLast(), 1 << 10) : s.hasSuffix("M") ? (s.dropLast(), 1 << 20) : (Substring(s), 1 << 20)
            guard let v = Int(digits), v > 0 else { throw ValidationError("bad size '\(item)' in --sizes") }
            return v * scale
        }
    }

    struct Row: Sendable, Codable {
        var collective: String
        var backend: String
        var bytes: Int
        var seconds: Double
        var algbw_gbps: Double
        var busbw_gbps: Double
    }

    func run() throws {
        let sizes = try BenchComm.parseSizes(self.sizes)
        let (iterations, warmup) = (self.iterations, self.warmup)
        let results = runOnRanks(simulate: simulate, timeout: 300) { comm in
            try BenchComm.measure(comm, sizes: sizes, iterations: iterations, warmup: warmup)
        }
        guard let (ranks, backend, rows) = results.first, !rows.isEmpty else { return }
        if json {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.sortedKeys]
            for row in rows { print(String(decoding: try encoder.encode(row), as: UTF8.self)) }
        } else {
            print("\(ranks) ranks (\(backend)), median of \(iterations) after \(warmup) warm-up")
            print("collective      backend  bytes/rank   time (ms)   algbw GB/s   busbw GB/s")
            for r in rows {
                let size = r.bytes >= 1 << 20 ? "\(r.bytes >> 20) MiB" : "\(r.bytes >> 10) KiB"
                print(r.collective.padding(toLength: 16, withPad: " ", startingAt: 0)
                    + r.backend.padding(toLength: 9, withPad: " ", startingAt: 0)
                    + size.padding(toLength: 11, withPad: " ", startingAt: 0)
                    + String(format: "%10.3f %12.2f %12.2f", r.seconds * 1e3, r.algbw_gbps, r.busbw_gbps))
            }
        }
    }

    /// Runs on every rank; returns the rows on rank 0 and nothing elsewhere.
    static func measure(_ comm: any Communicator, sizes: [Int], iterations: Int, warmup: Int) throws -> (Int, String, [Row]) {
        let n = comm.size
        let mpi = comm as? MPICommunicator
        var rows: [Row] = []
        for size in sizes {
            let count = max(n, size / 4 / n * n)
            let bytes = count * 4
            let buffer = UnsafeMutableBufferPointer<Float>.allocate(capacity: count)
            let full = UnsafeMutableBufferPointer<Float>.allocate(capacity: count)
            let shard = UnsafeMutableBufferPointer<Float>.allocate(capacity: count / n)
            defer { buffer.deallocate(); full.deallocate(); shard.deallocate() }
            full.initialize(repeating: 1e-3)
            shard.initialize(repeating: 1e-3)
            buffer.initialize(repeating: 1e-3)

            var ops: [(String, String, () throws -> Void)] = [
                ("all_reduce", "zero", { try comm.allReduce(buffer) }),
                ("reduce_scatter", "zero", { try comm.reduceScatter(UnsafeBufferPointer(full), into: shard) }),
                ("all_gather", "zero", { try comm.allGather(UnsafeBufferPointer(shard), into: full) }),
            ]
            if let mpi {
                ops += [
                    ("all_reduce", "mpi", { try mpi.vendorAllReduce(buffer) }),
                    ("reduce_scatter", "mpi", { try mpi.vendorReduceScatter(UnsafeBufferPointer(full), into: shard) }),
                    ("all_gather", "mpi", { try mpi.vendorAllGather(UnsafeBufferPointer(shard), into: full) }),
                ]
            }
            // Ours and Open MPI's alternate iteration by iteration, so that both see the
            // same background load on a shared machine.
            var times = [[Double]](repeating: [], count: ops.count)
            for it in 0..<(warmup + iterations) {
                for (k, op) in ops.enumerated() {
                    try comm.barrier()
                    let t0 = ContinuousClock.now
                    try op.2()
                    if it >= warmup { times[k].append((ContinuousClock.now - t0).seconds) }
                }
                buffer.update(repeating: 1e-3)  // keep repeated all-reduces finite
            }
            for (k, (collective, backend, _)) in ops.enumerated() {
                // The slowest rank defines each iteration's time.
                var all = [Double](repeating: 0, count: n * iterations)
                try times[k].withUnsafeBufferPointer { i in try all.withUnsafeMutableBufferPointer { try comm.allGather(i, into: $0) } }
                let perIteration = (0..<iterations).map { it in (0..<n).map { all[$0 * iterations + it] }.max()! }.sorted()
                let median = perIteration[iterations / 2]
                let algbw = Double(bytes) / median / 1e9
                let factor = collective == "all_reduce" ? 2.0 * Double(n - 1) / Double(n) : Double(n - 1) / Double(n)
                rows.append(Row(collective: collective, backend: backend, bytes: bytes, seconds: median, algbw_gbps: algbw, busbw_gbps: algbw * factor))
            }
        }
        return (n, comm.backendName, comm.rank == 0 ? rows : [])
    }
}
