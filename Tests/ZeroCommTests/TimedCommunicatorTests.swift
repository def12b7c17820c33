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
}
