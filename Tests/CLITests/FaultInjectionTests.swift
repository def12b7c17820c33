import Foundation
import Testing
import ZeroTensor

/// Fault injection against the real binary: kill -9 of the simulated job and of one MPI
/// rank at seeded random moments (mid-save included), SIGINT/SIGTERM mid-run, two jobs on
/// one save directory. After each, a resume must reach the bits (params_sha256) of a run
/// that was never disturbed. Bounded: a handful of short gpt-tiny runs.
@Suite(.serialized) struct FaultInjectionTests {
    /// Long enough (about 1 s) for a signal or kill to land mid-run.
    static let steps = 200
    static let args = ["--model", "gpt-tiny", "--micro-batch", "2", "--seq-len", "32", "--global-micro-batches", "4",
                       "--lr", "0.01", "--warmup", "1", "--clip", "0.5", "--stage", "2", "--log-every", "0",
                       "--steps", "\(steps)", "--timeout", "30"]

    /// params_sha256 of an undisturbed run (computed once).
    static let straight: Result<String, any Error> = Result {
        let dir = scratch("straight")
        let metrics = dir.appendingPathComponent("m.jsonl").path
        let r = try runProcess(zeroTrainBinary(), ["--simulate", "2", "--metrics", metrics] + args, timeout: .seconds(120))
        guard r.status == 0 else { throw TestFailure("straight run failed: \(r.stderr)") }
        return try TrainCLITests.metrics(metrics).sha
    }

    static func scratch(_ name: String) -> URL {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("zt-fault-\(name)-\(getpid())")
        try? FileManager.default.removeItem(at: url)
        try! FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        return url
    }

    /// Resumes `save` (or starts over when nothing complete was saved) to the end and
    /// checks the bits and that no temporary file is left.
    func resumeMatchesStraight(_ save: URL, _ what: String) throws {
        let metrics = save.deletingLastPathComponent().appendingPathComponent("\(save.lastPathComponent)-resumed.jsonl").path
        let hasCheckpoint = ((try? FileManager.default.contentsOfDirectory(atPath: save.path)) ?? [])
            .contains { FileManager.default.fileExists(atPath: save.appendingPathComponent($0).appendingPathComponent("manifest.json").path) }
        let r = try runProcess(zeroTrainBinary(), ["--simulate", "2", "--save", save.path, "--metrics", metrics]
                               + (hasCheckpoint ? ["--resume", save.path] : []) + Self.args, timeout: .seconds(120))
        #expect(r.status == 0, "\(what): resume failed: \(r.stderr)")
        #expect(try TrainCLITests.metrics(metrics).sha == Self.straight.get(), "\(what): resumed bits differ")
        let leftovers = FileManager.default.enumerator(atPath: save.path)?.compactMap { $0 as? String }.filter { $0.contains(".tmp-") } ?? []
        #expect(leftovers.isEmpty, "\(what): temporary files left: \(leftovers)")
    }

    @Test func killNineOfTheSimulatedJobThenResumeIsBitIdentical() throws {
        var rng = SeededGenerator(seed: 12)
        for trial in 0..<3 {
            let save = Self.scratch("kill9-\(trial)")
            let job = try Job(zeroTrainBinary(), ["--simulate", "2", "--save", save.path, "--save-every", trial == 0 ? "1" : "7"] + Self.args)
            if trial == 0 {
                // Mid-save: the moment a temporary shard or a manifest-less step directory shows up.
                job.waitFor(seconds: 60) { Job.saveInProgress(save) }
            } else {
                Thread.sleep(forTimeInterval: 0.2 + Double(rng.next() % 800) / 1000)
            }
            job.kill(SIGKILL)
            _ = job.wait(seconds: 30)
            try resumeMatchesStraight(save, "trial \(trial)")
        }
    }

    @Test func killNineOfOneMPIRankThenResumeIsBitIdentical() throws {
        var rng = SeededGenerator(seed: 34)
        let save = Self.scratch("mpikill")
        let (mpirun, options) = mpirunCommand(ranks: 2)
        let job = try Job(mpirun, options + [zeroTrainBinary().path, "--save", save.path, "--save-every", "5"] + Self.args)
        job.waitFor(seconds: 60) { Job.completeCheckpoints(save) >= 1 }
        Thread.sleep(forTimeInterval: Double(rng.next() % 500) / 1000)
        let ranks = job.children()
        try #require(!ranks.isEmpty, "no rank processes")
        Foundation.kill(ranks[Int(rng.next() % UInt64(ranks.count))], SIGKILL)
        #expect(job.wait(seconds: 60) != nil, "the job outlived a killed rank")
        try resumeMatchesStraight(save, "mpi rank kill")
    }

    @Test func sigintStopsAfterTheStepWithACheckpointAndResumesBitIdentically() throws {
        let dir = Self.scratch("sigint")
        let save = dir.appendingPathComponent("save"), metrics = dir.appendingPathComponent("m.jsonl").path
        let job = try Job(zeroTrainBinary(), ["--simulate", "2", "--save", save.path, "--metrics", metrics] + Self.args)
        job.waitFor(seconds: 60) { ((try? String(contentsOfFile: metrics, encoding: .utf8)) ?? "").split(separator: "\n").count >= 2 }
        job.kill(SIGINT)
        let status = job.wait(seconds: 60)
        #expect(status != nil && status != 0)
        let lines = job.stderr.split(separator: "\n")
        #expect(lines.count == 1 && lines[0].contains("stopped by SIGINT after step"), "\(job.stderr)")
        let before = try String(contentsOfFile: metrics, encoding: .utf8)
        #expect(before.contains("\"stopped_by\": \"SIGINT\""))
        #expect(Job.completeCheckpoints(save) == 1)

        // Resume appends to the metrics file and reaches the straight run's bits.
        let r = try runProcess(zeroTrainBinary(), ["--simulate", "2", "--save", save.path, "--metrics", metrics, "--resume", save.path] + Self.args,
                               timeout: .seconds(120))
        #expect(r.status == 0, "\(r.stderr)")
        let after = try String(contentsOfFile: metrics, encoding: .utf8)
        #expect(after.hasPrefix(before))
        #expect(try TrainCLITests.metrics(metrics).sha == Self.straight.get())
    }

    /// SIGTERM to one rank of an MPI job (as a batch system's signal to a task): every rank
    /// stops after the same step, a checkpoint is saved, and it resumes to the straight
    /// run's bits. (Signals are sent to a rank, not to mpirun: a test runner may start
    /// children with signals blocked, and mpirun would inherit that.)
    @Test func sigtermToOneMPIRankStopsEveryRankAtTheSameStep() throws {
        let save = Self.scratch("mpiterm")
        let (mpirun, options) = mpirunCommand(ranks: 2)
        let job = try Job(mpirun, options + [zeroTrainBinary().path, "--save", save.path, "--save-every", "50"] + Self.args)
        job.waitFor(seconds: 60) { ((try? String(contentsOf: save.appendingPathComponent(".zero-train.lock"), encoding: .utf8)) ?? "").contains("pid") }
        Thread.sleep(forTimeInterval: 0.3)
        let ranks = job.children()
        try #require(ranks.count == 2, "rank processes: \(ranks)")
        Foundation.kill(ranks[1], SIGTERM)
        let status = job.wait(seconds: 60)
        #expect(status != nil && status != 0)
        #expect(job.stderr.contains("stopped by SIGTERM after step"), "\(job.stderr)")
        #expect(Job.completeCheckpoints(save) >= 1)
        try resumeMatchesStraight(save, "mpi SIGTERM")
    }

    /// A second job on the same directory is refused naming the first; the first finishes intact.
    @Test func secondJobOnTheSameDirectoryIsRefused() throws {
        let dir = Self.scratch("twojobs")
        let save = dir.appendingPathComponent("save"), metrics = dir.appendingPathComponent("m.jsonl").path
        let first = try Job(zeroTrainBinary(), ["--simulate", "2", "--save", save.path, "--save-every", "20", "--metrics", metrics] + Self.args)
        first.waitFor(seconds: 60) { ((try? String(contentsOfFile: save.appendingPathComponent(".zero-train.lock").path, encoding: .utf8)) ?? "").contains("pid") }
        let second = try runProcess(zeroTrainBinary(), ["--simulate", "2", "--save", save.path, "--seed", "9"] + Self.args, timeout: .seconds(60))
        #expect(second.status != 0)
        let lines = second.stderr.split(separator: "\n")
        #expect(lines.count == 1 && lines[0].contains("is in use by another zero-train job") && lines[0].contains("pid \(first.process.processIdentifier)"),
                "\(second.stderr)")
        #expect(first.wait(seconds: 120) == 0, "\(first.stderr)")
        #expect(try TrainCLITests.metrics(metrics).sha == Self.straight.get())
        let export = try runProcess(zeroTrainBinary(), ["export", "--checkpoint", save.path, "--out", dir.appendingPathComponent("x.safetensors").path],
                                    timeout: .seconds(60))
        #expect(export.status == 0, "\(export.stderr)")
    }
}

/// --simulate N beyond what the allocation plan says fits in memory, or under mpirun, is
/// refused with one line before anything is allocated.
@Suite struct SimulateLimitTests {
    @Test func simulationThatCannotFitIsRefused() throws {
        let r = try runProcess(zeroTrainBinary(), ["--model", "gpt-medium", "--simulate", "1024", "--steps", "1"], timeout: .seconds(60))
        #expect(r.status != 0)
        let lines = r.stderr.split(separator: "\n")
        #expect(lines.count == 1 && lines[0].contains("needs") && lines[0].contains("for 1024 ranks on this machine"), "\(r.stderr)")
    }

    @Test func simulateUnderMPIIsRefused() throws {
        let dir = FaultInjectionTests.scratch("mpisim")
        let r = try runMPI(ranks: 2, ["--simulate", "2", "--model", "gpt-tiny", "--seq-len", "32", "--steps", "1", "--save", dir.path], timeout: .seconds(60))
        #expect(r.status != 0)
        #expect(r.stderr.contains("--simulate cannot run under mpirun"), "\(r.stderr)")
    }
}

/// A background child with its output in files (no pipe to fill).
final class Job {
    let process = Process()
    private let out: URL, err: URL

    init(_ executable: URL, _ args: [String]) throws {
        let base = FileManager.default.temporaryDirectory.appendingPathComponent("zt-job-\(getpid())-\(UInt32.random(in: 0 ... .max))")
        out = base.appendingPathExtension("out")
        err = base.appendingPathExtension("err")
        FileManager.default.createFile(atPath: out.path, contents: nil)
        FileManager.default.createFile(atPath: err.path, contents: nil)
        process.executableURL = executable
        process.arguments = args
        process.standardOutput = try FileHandle(forWritingTo: out)
        process.standardError = try FileHandle(forWritingTo: err)
        process.standardInput = FileHandle.nullDevice
        try process.run()
    }

    var stdout: String { (try? String(contentsOf: out, encoding: .utf8)) ?? "" }
    var stderr: String { (try? String(contentsOf: err, encoding: .utf8)) ?? "" }

    func kill(_ signal: Int32) { if process.isRunning { Foundation.kill(process.processIdentifier, signal) } }

    /// Polls `condition` every millisecond until it holds, the job ends or time runs out.
    func waitFor(seconds: Double, _ condition: () -> Bool) {
        let deadline = Date().addingTimeInterval(seconds)
        while process.isRunning && Date() < deadline && !condition() { usleep(1000) }
    }

    /// The exit status, or nil (and the job killed) after `seconds`.
    func wait(seconds: Double) -> Int32? {
        let deadline = Date().addingTimeInterval(seconds)
        while process.isRunning && Date() < deadline { usleep(5000) }
        if process.isRunning {
            Foundation.kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
            return nil
        }
        return process.terminationStatus
    }

    /// Direct children (mpirun's ranks).
    func children() -> [Int32] {
        let r = try? runProcess(URL(fileURLWithPath: "/usr/bin/pgrep"), ["-P", "\(process.processIdentifier)"], timeout: .seconds(10))
        return (r?.stdout ?? "").split(separator: "\n").compactMap { Int32($0) }
    }

    static func completeCheckpoints(_ save: URL) -> Int {
        ((try? FileManager.default.contentsOfDirectory(atPath: save.path)) ?? [])
            .filter { FileManager.default.fileExists(atPath: save.appendingPathComponent($0).appendingPathComponent("manifest.json").path) }.count
    }

    static func saveInProgress(_ save: URL) -> Bool {
        for step in (try? FileManager.default.contentsOfDirectory(atPath: save.path)) ?? [] where step.hasPrefix("step-") {
            let dir = save.appendingPathComponent(step)
            if !FileManager.default.fileExists(atPath: dir.appendingPathComponent("manifest.json").path) { return true }
            if ((try? FileManager.default.contentsOfDirectory(atPath: dir.path)) ?? []).contains(where: { $0.contains(".tmp-") }) { return true }
        }
        return false
    }
}


struct TestFailure: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}
