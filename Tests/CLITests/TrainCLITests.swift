import Foundation
import Testing

/// End-to-end runs of the built `zero-train`: MPI equals simulation, bad input gets
/// one line, a killed rank ends the job and its last checkpoint resumes.
@Suite(.serialized) struct TrainCLITests {
    static let tiny = ["--model", "gpt-tiny", "--micro-batch", "2", "--seq-len", "32", "--global-micro-batches", "8",
                       "--lr", "0.01", "--warmup", "1", "--clip", "0.5"]

    static func metrics(_ path: String) throws -> (losses: [String], sha: String) {
        let lines = try String(contentsOfFile: path, encoding: .utf8).split(separator: "\n")
        var losses: [String] = [], sha = ""
        for line in lines {
            let object = try JSONSerialization.jsonObject(with: Data(line.utf8)) as! [String: Any]
            if object["final"] as? Bool == true { sha = object["params_sha256"] as! String }
            else { losses.append("\(object["loss"]!)") }
        }
        return (losses, sha)
    }

    static var mpirun: [String] {
        var args = ["mpirun", "-n", "4", "--oversubscribe", "--mca", "pml", "ob1", "--bind-to", "none", "-x", "OPENBLAS_NUM_THREADS=1"]
        if getuid() == 0 { args.insert("--allow-run-as-root", at: 1) }
        return args
    }

    @Test func mpiRunEqualsSimulationBitForBit() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("zt-cli-\(getpid())")
        try? FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        let mpiMetrics = dir.appendingPathComponent("mpi.jsonl").path
        let simMetrics = dir.appendingPathComponent("sim.jsonl").path
        let binary = zeroTrainBinary().path
        let mpi = try runProcess(URL(fileURLWithPath: "/usr/bin/env"),
                                 Self.mpirun + [binary, "--stage", "3", "--steps", "3", "--metrics", mpiMetrics] + Self.tiny,
                                 timeout: .seconds(300))
        #expect(mpi.status == 0, "mpirun failed: \(mpi.stderr)")
        #expect(mpi.stdout.contains("4 ranks (mpi)"))
        let sim = try runProcess(zeroTrainBinary(), ["--simulate", "2", "--stage", "1", "--steps", "3", "--metrics", simMetrics] + Self.tiny,
                                 timeout: .seconds(300))
        #expect(sim.status == 0, "simulation failed: \(sim.stderr)")
        let a = try Self.metrics(mpiMetrics), b = try Self.metrics(simMetrics)
        #expect(a.losses.count == 3)
        #expect(a.losses == b.losses)
        #expect(!a.sha.isEmpty && a.sha == b.sha)
    }

    /// --overlap on under mpirun (the communication thread, MPI_THREAD_SERIALIZED) gives the
    /// blocking run's bits at every stage.
    @Test(arguments: [0, 1, 2, 3])
    func mpiOverlapEqualsBlocking(stage: Int) throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("zt-cli-overlap-\(getpid())")
        try? FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        let mpiMetrics = dir.appendingPathComponent("mpi-\(stage).jsonl").path
        let simMetrics = dir.appendingPathComponent("sim-\(stage).jsonl").path
        let mpi = try runProcess(URL(fileURLWithPath: "/usr/bin/env"),
                                 Self.mpirun + [zeroTrainBinary().path, "--stage", "\(stage)", "--steps", "3", "--overlap", "on",
                                                "--metrics", mpiMetrics] + Self.tiny,
                                 timeout: .seconds(300))
        #expect(mpi.status == 0, "mpirun failed: \(mpi.stderr)")
        #expect(mpi.stdout.contains("4 ranks (mpi) | overlap on |"))
        let sim = try runProcess(zeroTrainBinary(), ["--simulate", "4", "--stage", "\(stage)", "--steps", "3", "--overlap", "off",
                                                     "--metrics", simMetrics] + Self.tiny,
                                 timeout: .seconds(300))
        #expect(sim.status == 0, "simulation failed: \(sim.stderr)")
        #expect(sim.stdout.contains("4 ranks (simulated) | overlap off |"))
        let a = try Self.metrics(mpiMetrics), b = try Self.metrics(simMetrics)
        #expect(a.losses.count == 3 && a.losses == b.losses)
        #expect(!a.sha.isEmpty && a.sha == b.sha)
    }

    /// --simulate-link only delays collectives: the bits are the plain simulation's. Bad uses
    /// get one line.
    @Test func simulatedLinkKeepsTheBits() throws {
        let args = ["--simulate", "2", "--stage", "3", "--steps", "2", "--log-every", "0"] + Self.tiny
        let plain = try runProcess(zeroTrainBinary(), args, timeout: .seconds(120))
        let linked = try runProcess(zeroTrainBinary(), args + ["--simulate-link", "10gbit", "--overlap", "on"], timeout: .seconds(120))
        #expect(plain.status == 0 && linked.status == 0, "\(plain.stderr) \(linked.stderr)")
        let sha = { (s: String) in s.split(separator: "\n").first { $0.contains("params_sha256") }.map(String.init) }
        #expect(sha(plain.stdout) != nil && sha(plain.stdout) == sha(linked.stdout))
        for (bad, message) in [(["--simulate-link", "1gbit"], "needs --simulate"), (["--simulate", "2", "--simulate-link", "fast"], "must be a rate")] {
            let r = try runProcess(zeroTrainBinary(), bad + Self.tiny + ["--steps", "1"], timeout: .seconds(60))
            #expect(r.status == 1 && r.stderr.contains(message) && r.stderr.split(separator: "\n").count == 1, "\(r.stderr)")
        }
    }

    /// OpenBLAS's thread count changes sgemm's bits, so the engine pins it (--blas-threads,
    /// default 1) whatever OPENBLAS_NUM_THREADS says: 1 rank equals 2 simulated ranks.
    @Test func blasThreadsArePinnedByTheConfig() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("zt-blas-\(getpid())")
        try? FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        let args = ["--model", "gpt-small", "--steps", "1", "--micro-batch", "4", "--seq-len", "128", "--global-micro-batches", "2"]
        let one = dir.appendingPathComponent("one.jsonl").path, two = dir.appendingPathComponent("two.jsonl").path
        let a = try runProcess(zeroTrainBinary(), args + ["--metrics", one], environment: ["OPENBLAS_NUM_THREADS": "2"], timeout: .seconds(120))
        let b = try runProcess(zeroTrainBinary(), args + ["--metrics", two, "--simulate", "2"], timeout: .seconds(120))
        #expect(a.status == 0 && b.status == 0, "\(a.stderr)\(b.stderr)")
        #expect(try Self.metrics(one).sha == Self.metrics(two).sha)
    }

    /// `--threads T` sets OpenBLAS's and oneDNN's thread count like --blas-threads T (same
    /// bits), and for one T the bits do not depend on stage or rank count.
    @Test func threadsIsTheComputeThreadCount() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("zt-threads-\(getpid())")
        try? FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        let args = ["--model", "gpt-tiny", "--steps", "2", "--micro-batch", "4", "--seq-len", "64", "--global-micro-batches", "2"]
        var shas: [String] = []
        for (i, extra) in [["--threads", "2"], ["--blas-threads", "2"], ["--threads", "2", "--simulate", "2", "--stage", "3"],
                           ["--threads", "2", "--blas-threads", "2", "--simulate", "2", "--stage", "1", "--recompute"]].enumerated() {
            let path = dir.appendingPathComponent("\(i).jsonl").path
            let r = try runProcess(zeroTrainBinary(), args + extra + ["--metrics", path], timeout: .seconds(120))
            #expect(r.status == 0, "\(extra): \(r.stderr)")
            shas.append(try Self.metrics(path).sha)
        }
        #expect(Set(shas).count == 1, "\(shas)")
    }

    /// `--recompute` under mpirun: 2 MPI ranks at stage 3 with it equal 1 rank without it
    /// (fp32 and bf16); the recompute path reads the weights stage 3 gathered for the backward op.
    @Test(arguments: ["fp32", "bf16"])
    func recomputeUnderMPIKeepsTheBits(precision: String) throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("zt-recompute-\(getpid())-\(precision)")
        try? FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        let args = ["--model", "gpt-tiny", "--steps", "2", "--micro-batch", "2", "--seq-len", "64", "--global-micro-batches", "2",
                    "--precision", precision]
        let kept = dir.appendingPathComponent("kept.jsonl").path, recomputed = dir.appendingPathComponent("recomputed.jsonl").path
        let a = try runProcess(zeroTrainBinary(), args + ["--metrics", kept], timeout: .seconds(120))
        let b = try runMPI(ranks: 2, args + ["--stage", "3", "--recompute", "--metrics", recomputed], timeout: .seconds(120))
        #expect(a.status == 0 && b.status == 0, "\(a.stderr)\(b.stderr)")
        let (x, y) = (try Self.metrics(kept), try Self.metrics(recomputed))
        #expect(!x.sha.isEmpty && x.sha == y.sha && x.losses == y.losses)
    }

    @Test(arguments: [
        (["--stage", "4"], "stage must be 0, 1, 2 or 3"),
        (["--model", "gpt-huge"], "--model must be gpt-tiny, gpt-small, gpt-medium, gpt2-124m or mlp, or a GPT shape gpt-L<layers>-H<heads>-C<channels>-T<context>-V<vocab>, not 'gpt-huge'"),
        (["--simulate", "4", "--global-micro-batches", "2"], "4 ranks cannot share 2 micro-batches"),
        (["--simulate", "4", "--global-micro-batches", "6"], "do not divide evenly"),
        (["--data", "/nonexistent/file.bin"], "/nonexistent/file.bin"),
        (["--resume", "/nonexistent/ckpt"], "no checkpoint directory"),
        (["--precision", "fp16"], "--precision must be bf16 or fp32"),
        (["--threads", "2", "--blas-threads", "3"], "--threads 2 and --blas-threads 3 disagree"),
        (["--threads", "0"], "--threads must be an integer from 1 to 256"),
    ])
    func badInputGetsOneLineAndNonZeroExit(args: [String], message: String) throws {
        let r = try runProcess(zeroTrainBinary(), args + ["--steps", "1"], timeout: .seconds(60))
        #expect(r.status != 0)
        let lines = r.stderr.split(separator: "\n").filter { !$0.isEmpty }
        #expect(lines.count == 1, "stderr: \(r.stderr)")
        #expect(r.stderr.contains(message), "stderr: \(r.stderr)")
    }

    /// kill -9 of one rank ends the whole job well within 60 s, and the newest complete
    /// checkpoint still resumes (here on 2 simulated ranks: resharded).
    @Test func killedRankEndsTheJobAndTheCheckpointResumes() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("zt-kill-\(getpid())")
        try? FileManager.default.removeItem(at: dir)
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = Self.mpirun + [zeroTrainBinary().path, "--stage", "2", "--steps", "100000", "--save", dir.path,
                                           "--save-every", "2", "--timeout", "30", "--log-every", "0"] + Self.tiny
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        // Wait for a complete checkpoint.
        let deadline = Date().addingTimeInterval(120)
        while Date() < deadline {
            let steps = (try? FileManager.default.contentsOfDirectory(atPath: dir.path)) ?? []
            if steps.contains(where: { FileManager.default.fileExists(atPath: dir.appendingPathComponent($0).appendingPathComponent("manifest.json").path) }) { break }
            Thread.sleep(forTimeInterval: 0.2)
        }
        // Kill one rank (a child of mpirun) with SIGKILL.
        let children = try runProcess(URL(fileURLWithPath: "/usr/bin/pgrep"), ["-f", "zero-train --stage 2 --steps 100000"], timeout: .seconds(10))
        let pids = children.stdout.split(separator: "\n").compactMap { Int32($0) }.filter { $0 != process.processIdentifier }
        try #require(!pids.isEmpty, "no rank processes found")
        kill(pids.last!, SIGKILL)
        let killedAt = Date()
        while process.isRunning && Date().timeIntervalSince(killedAt) < 90 { Thread.sleep(forTimeInterval: 0.2) }
        let waited = Date().timeIntervalSince(killedAt)
        if process.isRunning { process.terminate() }
        #expect(waited < 60, "the job took \(waited) s to end after a rank was killed")
        #expect(process.terminationStatus != 0 || process.isRunning == false)

        let newest = try FileManager.default.contentsOfDirectory(atPath: dir.path)
            .filter { FileManager.default.fileExists(atPath: dir.appendingPathComponent($0).appendingPathComponent("manifest.json").path) }
            .compactMap { Int($0.dropFirst("step-".count)) }.max()
        let saved = try #require(newest)
        let resumed = try runProcess(zeroTrainBinary(), ["--simulate", "2", "--stage", "3", "--steps", "\(saved + 2)", "--resume", dir.path] + Self.tiny,
                                     timeout: .seconds(300))
        #expect(resumed.status == 0, "resume failed: \(resumed.stderr)")
        #expect(resumed.stdout.contains("resumed from"))
        #expect(resumed.stdout.contains("resumed from") && resumed.stdout.contains("at step \(saved)"))
        #expect(resumed.stdout.contains("done: \(saved + 2) steps"))
    }
}
