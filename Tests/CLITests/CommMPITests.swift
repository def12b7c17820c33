import Foundation
import Testing

/// End-to-end checks of the MPI backend against the simulated one, and of its no-hang
/// guarantees, through the built executable (`zero-train selftest-comm`).
@Suite("Communicator under mpirun", .serialized)
struct CommMPITests {
    @Test("mpirun -n 4 and --simulate 4 print identical hashes and traffic", arguments: [4, 3])
    func mpiMatchesSimulation(ranks: Int) throws {
        let mpi = try runMPI(ranks: ranks, ["selftest-comm", "--seed", "7"], timeout: .seconds(120))
        #expect(mpi.status == 0, "\(mpi.stderr)")
        let sim = try runProcess(zeroTrainBinary(), ["selftest-comm", "--seed", "7", "--simulate", "\(ranks)"], timeout: .seconds(60))
        #expect(sim.status == 0, "\(sim.stderr)")
        #expect(sim.stdout.split(separator: "\n").count == 17)
        #expect(sim.stdout.hasPrefix("selftest-comm ranks=\(ranks) seed=7\n"))
        #expect(mpi.stdout == sim.stdout)
    }

    @Test("without mpirun the MPI backend is a group of one, equal to --simulate 1")
    func singleton() throws {
        let direct = try runProcess(zeroTrainBinary(), ["selftest-comm"], timeout: .seconds(60))
        let sim = try runProcess(zeroTrainBinary(), ["selftest-comm", "--simulate", "1"], timeout: .seconds(60))
        #expect(direct.status == 0, "\(direct.stderr)")
        #expect(direct.stdout == sim.stdout)
    }

    @Test("ranks disagreeing on a collective abort the job with a clear message")
    func mismatchAborts() throws {
        let start = ContinuousClock.now
        let r = try runMPI(ranks: 4, ["selftest-comm", "--fault", "mismatch"], timeout: .seconds(60))
        #expect(r.status != 0)
        #expect(r.stderr.contains("ranks disagree on the collective: rank(s) 0-2 called all_reduce(fp32, count 10) as collective #0; rank(s) 3 called all_reduce(fp32, count 11) as collective #0"), "\(r.stderr)")
        #expect(ContinuousClock.now - start < .seconds(30))
    }

    @Test("a rank that never arrives (busy elsewhere): the job aborts after the timeout naming it")
    func absentRankTimesOut() throws {
        let r = try runMPI(ranks: 4, ["selftest-comm", "--fault", "absent", "--timeout", "2"], timeout: .seconds(60))
        #expect(r.status != 0)
        #expect(r.stderr.contains("all_reduce timed out after 2s waiting for rank(s) 3"), "\(r.stderr)")
    }

    @Test("a rank that ends early: its final barrier shows up as a mismatch, the job aborts")
    func finishedRankIsAMismatch() throws {
        let r = try runMPI(ranks: 4, ["selftest-comm", "--fault", "finished", "--timeout", "30"], timeout: .seconds(60))
        #expect(r.status != 0)
        #expect(r.stderr.contains("rank(s) 0-2 called all_reduce(fp32, count 10) as collective #0; rank(s) 3 called barrier(none, count 0) as collective #0"), "\(r.stderr)")
    }

    @Test("kill -9 of one rank ends the whole job within 60 s")
    func killedRankEndsJob() throws {
        let (mpirun, options) = mpirunCommand(ranks: 4)
        let job = Process()
        job.executableURL = mpirun
        job.arguments = options + [zeroTrainBinary().path, "bench", "comm", "--sizes", "1M", "--iterations", "100000"]
        job.standardOutput = FileHandle.nullDevice
        job.standardError = FileHandle.nullDevice
        try job.run()
        defer { if job.isRunning { kill(job.processIdentifier, SIGKILL) } }
        // Wait for mpirun's four ranks to exist, then kill one of them.
        var ranks: [Int32] = []
        let ready = ContinuousClock.now + .seconds(30)
        while ranks.count < 4 && ContinuousClock.now < ready {
            usleep(100_000)
            ranks = children(of: job.processIdentifier)
        }
        #expect(ranks.count == 4)
        guard let victim = ranks.dropFirst().first else { return }
        usleep(500_000)  // let them get into collectives
        kill(victim, SIGKILL)
        // The job has ended when mpirun and every rank are gone; a rank that mpirun has signalled
        // may take a moment longer than mpirun itself on a loaded machine, so both share the deadline.
        let deadline = ContinuousClock.now + .seconds(60)
        func alive() -> [Int32] { ranks.filter { kill($0, 0) == 0 && !isZombie($0) } }
        while (job.isRunning || !alive().isEmpty) && ContinuousClock.now < deadline { usleep(50_000) }
        #expect(!job.isRunning, "mpirun still running 60 s after a rank was killed")
        let left = alive()
        #expect(left.isEmpty, "ranks still alive 60 s after one was killed: \(left)")
    }
}

/// Direct children of `pid`, from /proc.
private func children(of pid: Int32) -> [Int32] {
    guard let entries = try? FileManager.default.contentsOfDirectory(atPath: "/proc") else { return [] }
    return entries.compactMap(Int32.init).filter { p in
        guard let stat = try? String(contentsOfFile: "/proc/\(p)/stat", encoding: .utf8),
              let close = stat.lastIndex(of: ")") else { return false }
        let fields = stat[stat.index(after: close)...].split(separator: " ")
        return fields.count > 2 && Int32(fields[1]) == pid
    }.sorted()
}

private func isZombie(_ pid: Int32) -> Bool {
    guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
          let close = stat.lastIndex(of: ")") else { return true }
    return stat[stat.index(after: close)...].split(separator: " ").first == "Z"
}

@Suite("Test support")
struct SupportTests {
    @Test("runProcess reads large stdout and stderr together without deadlock")
    func largeOutput() throws {
        let script = "head -c 300000 /dev/zero | tr '\\0' a; head -c 200000 /dev/zero | tr '\\0' b >&2; exit 3"
        let r = try runProcess(URL(fileURLWithPath: "/bin/sh"), ["-c", script], timeout: .seconds(30))
        #expect(r.status == 3)
        #expect(r.stdout.count == 300_000)
        #expect(r.stderr.count == 200_000)
    }

    @Test("runProcess kills a child past its timeout and says so")
    func timeout() {
        let start = ContinuousClock.now
        #expect(throws: ProcessTimeout.self) {
            _ = try runProcess(URL(fileURLWithPath: "/bin/sleep"), ["30"], timeout: .milliseconds(300))
        }
        #expect(ContinuousClock.now - start < .seconds(10))
    }

    @Test("zeroTrainBinary finds the built executable")
    func binary() {
        #expect(FileManager.default.isExecutableFile(atPath: zeroTrainBinary().path))
    }
}
