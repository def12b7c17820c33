import Foundation
import Testing
import ZeroComm

struct Boom: Error, CustomStringConvertible {
    var description: String { "boom" }
}

/// Runs `body` on `ranks` simulated ranks and returns the error `run` rethrows.
func failure(ranks: Int, timeout: Duration = .seconds(30), _ body: @Sendable @escaping (any Communicator) throws -> Void) -> (any Error)? {
    do {
        _ = try SimulatedCluster.run(ranks: ranks, timeout: timeout, body)
        return nil
    } catch {
        return error
    }
}

@Suite("Communicator errors")
struct CommunicatorErrorTests {
    @Test("a local size mismatch throws before any data moves")
    func sizeMismatch() throws {
        // Every rank makes the same mistake, so nobody waits: the error is local.
        let results = try SimulatedCluster.run(ranks: 2, timeout: .seconds(5)) { comm -> String in
            let input = [Float](repeating: 1, count: 3)
            var output = [Float](repeating: 0, count: 5)
            do {
                try input.withUnsafeBufferPointer { i in try output.withUnsafeMutableBufferPointer { try comm.allGather(i, into: $0) } }
                return "no error"
            } catch {
                return "\(error) traffic=\(comm.traffic.totalSent)"
            }
        }
        #expect(results[0] == "rank 0: all_gather: output count 5 != 2 ranks x input count 3 traffic=0")
        // bf16 allReduce with different input and output counts.
        let message = try SimulatedCluster.run(ranks: 1) { comm -> String in
            let input = [UInt16](repeating: 0, count: 4)
            var output = [Float](repeating: 0, count: 3)
            do {
                try input.withUnsafeBufferPointer { i in try output.withUnsafeMutableBufferPointer { try comm.allReduce(bfloat16: i, into: $0) } }
                return "no error"
            } catch { return "\(error)" }
        }[0]
        #expect(message == "rank 0: all_reduce: input count 4 != output count 3")
    }

    @Test("reduce-scatter of a count not divisible by the ranks throws")
    func indivisible() throws {
        let results = try SimulatedCluster.run(ranks: 3, timeout: .seconds(5)) { comm -> String in
            let input = [Float](repeating: 1, count: 10)
            var output = [Float](repeating: 0, count: 3)
            do {
                try input.withUnsafeBufferPointer { i in try output.withUnsafeMutableBufferPointer { try comm.reduceScatter(i, into: $0) } }
                return "no error"
            } catch { return "\(error)" }
        }
        #expect(results[1] == "rank 1: reduce_scatter: input count 10 is not divisible by 3 ranks")
    }

    @Test("a root out of range throws")
    func badRoot() throws {
        let results = try SimulatedCluster.run(ranks: 2, timeout: .seconds(5)) { comm -> String in
            var bytes = [UInt8](repeating: 0, count: 4)
            do {
                try bytes.withUnsafeMutableBytes { try comm.broadcast($0, root: 2) }
                return "no error"
            } catch { return "\(error)" }
        }
        #expect(results[0] == "rank 0: broadcast: root 2 is out of range 0..<2")
    }

    @Test("ranks calling with different counts all get the same clear error")
    func crossRankCountMismatch() throws {
        let results = try SimulatedCluster.run(ranks: 3, timeout: .seconds(10)) { comm -> String in
            var b = [Float](repeating: 1, count: comm.rank == 1 ? 9 : 8)
            do {
                try b.withUnsafeMutableBufferPointer { try comm.allReduce($0) }
                return "no error"
            } catch { return "\(error)" }
        }
        #expect(results[2] == "rank 2: ranks disagree on the collective: rank(s) 0,2 called all_reduce(fp32, count 8) as collective #0; rank(s) 1 called all_reduce(fp32, count 9) as collective #0")
        #expect(results[0].hasPrefix("rank 0: ranks disagree"))
    }

    @Test("ranks calling different collectives get an error, then can go on")
    func crossRankKindMismatch() throws {
        let results = try SimulatedCluster.run(ranks: 2, timeout: .seconds(10)) { comm -> [String] in
            var log: [String] = []
            do {
                if comm.rank == 0 {
                    try comm.barrier()
                } else {
                    var b = [UInt8](repeating: 0, count: 4)
                    try b.withUnsafeMutableBytes { try comm.broadcast($0, root: 0) }
                }
                log.append("no error")
            } catch { log.append("\(error)") }
            try comm.barrier()  // the group stays usable
            log.append("ok")
            return log
        }
        #expect(results[0][0] == "rank 0: ranks disagree on the collective: rank(s) 0 called barrier(none, count 0) as collective #0; rank(s) 1 called broadcast(bytes, count 4, root 0) as collective #0")
        #expect(results[1][1] == "ok")
    }

    @Test("a rank that never arrives: the waiting rank times out naming the collective and the rank")
    func timeout() {
        let start = ContinuousClock.now
        let error = failure(ranks: 3, timeout: .seconds(1)) { comm in
            if comm.rank == 2 { return }  // never calls the collective
            var b = [Float](repeating: 1, count: 4)
            try b.withUnsafeMutableBufferPointer { try comm.allReduce($0) }
        }
        let message = "\(error.map { "\($0)" } ?? "none")"
        #expect(message.contains("all_reduce timed out after 1s waiting for rank(s) 2"), "\(message)")
        #expect(message.hasPrefix("rank 0:") || message.hasPrefix("rank 1:"))
        #expect(ContinuousClock.now - start < .seconds(10))
    }

    @Test("a rank that throws wakes every rank blocked in a collective; its error is rethrown")
    func throwingRankWakesOthers() {
        let start = ContinuousClock.now
        let error = failure(ranks: 4, timeout: .seconds(120)) { comm in
            if comm.rank == 2 {
                Thread.sleep(forTimeInterval: 0.05)
                throw Boom()
            }
            try comm.barrier()
        }
        #expect(error is Boom)
        #expect(ContinuousClock.now - start < .seconds(10))
    }
}
