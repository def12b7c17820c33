import Foundation
import Testing

/// `launch/local-cluster.sh`: the package's multi-host rig (network namespaces as hosts,
/// mpirun over TCP between them). These tests need root and network namespaces; where
/// those are missing they are skipped, saying why.
enum Rig {
    /// The rig script, found from this file's path (the package root's launch/).
    static let script: URL = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("launch/local-cluster.sh")

    /// nil when the rig can run here, else its one-line reason (from `--check`).
    static let unavailableReason: String? = {
        guard let r = try? runProcess(script, ["--check"], timeout: .seconds(30)) else { return "local-cluster.sh --check did not run" }
        return r.status == 0 ? nil : r.stderr.trimmingCharacters(in: .whitespacesAndNewlines)
    }()
    static var available: Bool { unavailableReason == nil }

    /// Runs `zero-train args...` on `hosts` x `slots` ranks of the rig.
    static func run(hosts: Int, slots: Int, _ args: [String], timeout: Duration) throws -> (status: Int32, stdout: String, stderr: String) {
        try runProcess(script, ["--hosts", "\(hosts)", "--slots", "\(slots)", "--", zeroTrainBinary().path] + args, timeout: timeout)
    }

    /// The `final` object's params_sha256 and the per-step losses of a metrics file.
    static func metrics(_ path: String) throws -> (losses: [String], sha: String) {
        var losses: [String] = [], sha = ""
        for line in try String(contentsOfFile: path, encoding: .utf8).split(separator: "\n") {
            let object = try JSONSerialization.jsonObject(with: Data(line.utf8)) as! [String: Any]
            if object["final"] as? Bool == true { sha = object["params_sha256"] as! String } else { losses.append("\(object["loss"]!)") }
        }
        return (losses, sha)
    }

    static func scratch(_ name: String) -> URL {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("zt-rig-\(getpid())-\(name)")
        try? FileManager.default.removeItem(at: dir)
        try? FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        return dir
    }

    /// Pids of the processes inside network namespace `name`.
    static func processes(inNamespace name: String) -> [Int32] {
        let out = (try? runProcess(URL(fileURLWithPath: "/usr/bin/env"), ["ip", "netns", "pids", name], timeout: .seconds(10)))?.stdout ?? ""
        return out.split(separator: "\n").compactMap { Int32($0) }
    }

    /// The namespaces of the rig with script pid `pid` still present (zr<pid>h<i>, zr<pid>sw).
    static func namespaces(of pid: Int32) -> [String] {
        let list = (try? runProcess(URL(fileURLWithPath: "/usr/bin/env"), ["ip", "netns", "list"], timeout: .seconds(10)))?.stdout ?? ""
        return list.split(separator: "\n").map { String($0.split(separator: " ").first ?? "") }
            .filter { $0 == "zr\(pid)sw" || ($0.hasPrefix("zr\(pid)h") && Int($0.dropFirst("zr\(pid)h".count)) != nil) }
    }
}

@Suite("Multi-host rig (launch/local-cluster.sh)", .serialized,
       .enabled(if: Rig.available, "network namespaces cannot be made here (needs root and netns/veth/bridge support)"))
struct MultiHostTests {
    static let tiny = ["--model", "gpt-tiny", "--micro-batch", "2", "--seq-len", "32", "--global-micro-batches", "8",
                       "--lr", "0.01", "--warmup", "1", "--clip", "0.5", "--log-every", "0", "--timeout", "60"]

    /// The single-host reference: 3 steps on 4 ranks of one mpirun (computed once).
    static let reference: Reference = {
        let path = Rig.scratch("reference").appendingPathComponent("m.jsonl").path
        do {
            let r = try runMPI(ranks: 4, ["--stage", "2", "--steps", "3", "--metrics", path] + tiny, timeout: .seconds(120))
            guard r.status == 0 else { return Reference(failure: "single-host run failed: \(r.stderr)") }
            let m = try Rig.metrics(path)
            return Reference(losses: m.losses, sha: m.sha)
        } catch { return Reference(failure: "single-host run failed: \(error)") }
    }()

    struct Reference: Sendable {
        var losses: [String] = [], sha = "", failure: String? = nil
    }

    @Test("2 hosts x 2 ranks (overlap on) give the single-host bits (overlap off)", arguments: [0, 1, 2, 3])
    func multiHostEqualsSingleHost(stage: Int) throws {
        let single = Self.reference
        try #require(single.failure == nil, "\(single.failure ?? "")")
        let path = Rig.scratch("stage\(stage)").appendingPathComponent("m.jsonl").path
        let r = try Rig.run(hosts: 2, slots: 2, ["--stage", "\(stage)", "--steps", "3", "--metrics", path] + Self.tiny, timeout: .seconds(120))
        #expect(r.status == 0, "rig run failed: \(r.stderr)")
        // --overlap auto: the ranks span two hosts, so collectives run on the communication thread.
        #expect(r.stdout.contains("4 ranks (mpi) | overlap on |"))
        let multi = try Rig.metrics(path)
        #expect(multi.losses.count == 3)
        #expect(multi.losses == single.losses)
        #expect(!multi.sha.isEmpty && multi.sha == single.sha)
    }

    @Test("the rig's hosts are separate: own hostnames and addresses, TCP between them, cleaned up after")
    func hostsAreSeparate() throws {
        let r = try runProcess(Rig.script, ["--hosts", "2", "--slots", "2", "--", "/bin/sh", "-c", "echo $(hostname) $(ip -4 -o addr show dev eth0 | awk '{print $4}')"],
                               timeout: .seconds(60))
        #expect(r.status == 0, "\(r.stderr)")
        let lines = Set(r.stdout.split(separator: "\n").map(String.init))
        #expect(lines.count == 2, "expected two distinct hosts, got \(lines)")
        #expect(lines.allSatisfy { $0.contains("-h0 10.") || $0.contains("-h1 10.") })
        // Hostnames are zr<pid>-h<i>, namespaces zr<pid>h<i> and zr<pid>sw.
        let pids = Set(lines.compactMap { Int32($0.prefix { $0 != "-" }.dropFirst(2)) })
        #expect(pids.count == 1)
        for pid in pids { #expect(Rig.namespaces(of: pid).isEmpty, "namespaces left behind") }
    }

    @Test("the command's exit code is the rig's, and bad usage gets one line")
    func exitCodes() throws {
        let failing = try runProcess(Rig.script, ["--hosts", "2", "--slots", "1", "--", "/bin/sh", "-c", "exit 3"], timeout: .seconds(60))
        #expect(failing.status == 3)  // mpirun reports the first failing rank's code
        let usage = try runProcess(Rig.script, ["--hosts", "0", "--", "true"], timeout: .seconds(10))
        #expect(usage.status == 2)
        #expect(usage.stderr == "local-cluster.sh: --hosts must be 1..200, got '0'\n")
        let delay = try runProcess(Rig.script, ["--hosts", "2", "--delay", "0.2ms", "--", "true"], timeout: .seconds(30))
        if delay.status != 0 {  // kernels without netem refuse --delay clearly
            #expect(delay.stderr.contains("--delay needs the netem qdisc"), "\(delay.stderr)")
        }
    }

    @Test("kill -9 of a rank on the second host ends the whole job within 60 s, and the rig cleans up")
    func killedRemoteRankEndsJob() throws {
        let job = Process()
        job.executableURL = Rig.script
        job.arguments = ["--hosts", "2", "--slots", "2", "--", zeroTrainBinary().path, "--stage", "3", "--steps", "100000"] + Self.tiny
        job.standardOutput = FileHandle.nullDevice
        job.standardError = FileHandle.nullDevice
        try job.run()
        defer { if job.isRunning { kill(job.processIdentifier, SIGKILL) } }
        // The second host's ranks: the zero-train processes in its namespace (its orted
        // daemonizes, so they are not below the rig in the process tree).
        var remote: [Int32] = []
        let ready = ContinuousClock.now + .seconds(60)
        while remote.count < 2 && ContinuousClock.now < ready && job.isRunning {
            usleep(200_000)
            remote = Rig.processes(inNamespace: "zr\(job.processIdentifier)h1").filter { command($0) == "zero-train" }
        }
        try #require(remote.count == 2, "did not find the second host's two ranks")
        sleep(2)  // let the job get into its steps
        kill(remote[0], SIGKILL)
        let killedAt = ContinuousClock.now
        while job.isRunning && ContinuousClock.now - killedAt < .seconds(90) { usleep(100_000) }
        let waited = ContinuousClock.now - killedAt
        #expect(waited < .seconds(60), "the job took \(waited) to end after a remote rank was killed")
        #expect(!job.isRunning && job.terminationStatus != 0)
        #expect(Rig.namespaces(of: job.processIdentifier).isEmpty, "namespaces left behind")
    }

    @Test("a checkpoint written by the multi-host job resumes on one host bit-identically")
    func multiHostCheckpointResumesOnOneHost() throws {
        let dir = Rig.scratch("ckpt")
        let multiPath = dir.appendingPathComponent("multi.jsonl").path
        let r = try Rig.run(hosts: 2, slots: 2, ["--stage", "3", "--steps", "4", "--save", dir.appendingPathComponent("ckpt").path,
                                                 "--save-every", "2", "--metrics", multiPath] + Self.tiny, timeout: .seconds(120))
        #expect(r.status == 0, "rig run failed: \(r.stderr)")
        let multi = try Rig.metrics(multiPath)
        // Resume the step-2 checkpoint on one host (2 ranks, stage 1: resharded) to step 4.
        let onePath = dir.appendingPathComponent("one.jsonl").path
        let one = try runMPI(ranks: 2, ["--stage", "1", "--steps", "4", "--resume", dir.appendingPathComponent("ckpt/step-00000002").path,
                                        "--metrics", onePath] + Self.tiny, timeout: .seconds(120))
        #expect(one.status == 0, "resume failed: \(one.stderr)")
        #expect(one.stdout.contains("at step 2"), "\(one.stderr)")
        let resumed = try Rig.metrics(onePath)
        #expect(resumed.losses == Array(multi.losses.suffix(2)))
        #expect(!resumed.sha.isEmpty && resumed.sha == multi.sha)
    }
}

/// A process's command name, from /proc.
private func command(_ pid: Int32) -> String {
    ((try? String(contentsOfFile: "/proc/\(pid)/comm", encoding: .utf8)) ?? "").trimmingCharacters(in: .whitespacesAndNewlines)
}
