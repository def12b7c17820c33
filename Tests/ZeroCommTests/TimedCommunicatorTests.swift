import Foundation
import Testing
import ZeroComm

@Suite("TimedCommunicator")
struct TimedCommunicatorTests {
    @Test("results and traffic are the wrapped backend's; every call is timed once")
    func transparent() throws {
        let plain = try SimulatedCluster.run(ranks: 3) { comm in (try runEverything(comm), comm.traffic) }
        let timed = try SimulatedCluster.run(ranks: 3) { base in
            let comm = TimedCommunicator(base)
            let outcome = try runEverything(comm)
            return (outcome, comm.traffic, comm.timing)
        }
        for r in 0..<3 {
            #expect(timed[r].0.allReduce.map(\.bitPattern) == plain[r].0.allReduce.map(\.bitPattern))
            #expect(timed[r].0.reduceScatterBF16.map(\.bitPattern) == plain[r].0.reduceScatterBF16.map(\.bitPattern))
            #expect(timed[r].0.gatherHalf == plain[r].0.gatherHalf)
            #expect(timed[r].0.broadcast == plain[r].0.broadcast)
            #expect(timed[r].1 == plain[r].1)
            let t = timed[r].2
            #expect(t.calls == 9)  // runEverything's 8 collectives and its final barrier
            #expect(t.inFlightSeconds > 0 && t.inFlightSeconds == t.waitSeconds)
        }
    }

    @Test("a rank blocked on a late peer counts the wait; the late rank does not")
    func waitingForALatePeer() throws {
        let timings = try SimulatedCluster.run(ranks: 2) { base in
            let comm = TimedCommunicator(base)
            let before = comm.timing
            if comm.rank == 1 { usleep(300_000) }
            var x: [Float] = [Float(comm.rank), 1]
            try x.withUnsafeMutableBufferPointer { try comm.allReduce($0) }
            return comm.timing.since(before)
        }
        #expect(timings[0].calls == 1 && timings[1].calls == 1)
        #expect(timings[0].waitSeconds >= 0.25, "rank 0 waited \(timings[0].waitSeconds) s")
        #expect(timings[1].waitSeconds < 0.2, "rank 1 waited \(timings[1].waitSeconds) s")
    }

    @Test("with overlap, issue returns before the peer arrives; the rank computes meanwhile and waits only for the rest")
    func issuedCollectiveRunsWhileTheRankComputes() throws {
        let results = try SimulatedCluster.run(ranks: 2) { base in
            let comm = TimedCommunicator(base, overlap: true)
            defer { comm.close() }
            let before = comm.timing
            // Rank 1 arrives 300 ms late; rank 0 issues at once and "computes" for 150 ms.
            if comm.rank == 1 { usleep(300_000) }
            let x = UnsafeMutableBufferPointer<Float>.allocate(capacity: 2)
            defer { x.deallocate() }
            x[0] = Float(comm.rank + 1); x[1] = 1
            let ticket = comm.issue { try $0.allReduce(x) }
            let doneAtIssue = ticket.isDone
            if comm.rank == 0 { usleep(150_000) }
            try comm.wait(ticket)
            return (doneAtIssue, [x[0], x[1]], comm.timing.since(before))
        }
        #expect(results[0].0 == false, "rank 0's all-reduce cannot be done before rank 1 arrived")
        for r in 0..<2 { #expect(results[r].1 == [3, 2]) }
        let t = results[0].2
        #expect(t.calls == 1)
        #expect(t.inFlightSeconds >= 0.25, "in flight \(t.inFlightSeconds) s")
        // Rank 0 blocked only for what was left after its 150 ms of compute.
        #expect(t.waitSeconds < t.inFlightSeconds - 0.1, "waited \(t.waitSeconds) of \(t.inFlightSeconds) s")
    }

    @Test("with overlap, collectives run in issue order and give the blocking results bit for bit")
    func overlappedEqualsBlocking() throws {
        let plain = try SimulatedCluster.run(ranks: 3) { comm in (try runEverything(comm), comm.traffic) }
        let threaded = try SimulatedCluster.run(ranks: 3) { base in
            let comm = TimedCommunicator(base, overlap: true)
            defer { comm.close() }
            return (try runEverything(comm), comm.traffic, comm.timing)
        }
        for r in 0..<3 {
            #expect(threaded[r].0.allReduce.map(\.bitPattern) == plain[r].0.allReduce.map(\.bitPattern))
            #expect(threaded[r].0.reduceScatterBF16.map(\.bitPattern) == plain[r].0.reduceScatterBF16.map(\.bitPattern))
            #expect(threaded[r].0.gatherHalf == plain[r].0.gatherHalf)
            #expect(threaded[r].0.broadcast == plain[r].0.broadcast)
            #expect(threaded[r].1 == plain[r].1)
            #expect(threaded[r].2.calls == 9 && threaded[r].2.inFlightSeconds >= threaded[r].2.waitSeconds)
        }
    }

    @Test("a collective that fails on the communication thread fails its ticket and every later one with the same error")
    func failureReachesEveryLaterTicket() throws {
        let outcomes = try SimulatedCluster.run(ranks: 2) { base in
            let comm = TimedCommunicator(base, overlap: true)
            defer { comm.close() }
            let n = comm.rank == 0 ? 4 : 6   // the ranks disagree on the count
            let x = UnsafeMutableBufferPointer<Float>.allocate(capacity: n)
            defer { x.deallocate() }
            x.initialize(repeating: 1)
            let first = comm.issue { try $0.allReduce(x) }
            let second = comm.issue { try $0.barrier() }
            var errors: [String] = []
            for ticket in [first, second] {
                do { try comm.wait(ticket); errors.append("none") } catch { errors.append("\(error)") }
            }
            return errors
        }
        for r in 0..<2 {
            #expect(outcomes[r][0].contains("all_reduce"), "rank \(r): \(outcomes[r][0])")
            #expect(outcomes[r][1] == outcomes[r][0])
        }
    }
}
