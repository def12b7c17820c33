import Foundation

/// Helpers for tests that run the built `zero-train` executable (and mpirun jobs of it).

/// The `zero-train` built alongside this test bundle (same configuration, debug or
/// release): the sibling of the test executable, else `.build/<config>/zero-train`
/// from the package root found through `#filePath`.
func zeroTrainBinary(filePath: String = #filePath) -> URL {
    let fm = FileManager.default
    var candidates: [URL] = []
    if let exe = try? fm.destinationOfSymbolicLink(atPath: "/proc/self/exe") {
        // .build/<triple>/<config>/zero-trainPackageTests.xctest
        candidates.append(URL(fileURLWithPath: exe).deletingLastPathComponent().appendingPathComponent("zero-train"))
    }
    if let bundle = Bundle.main.executableURL {
        candidates.append(bundle.deletingLastPathComponent().appendingPathComponent("zero-train"))
    }
    let root = URL(fileURLWithPath: filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    for config in ["release", "debug"] {
        candidates.append(root.appendingPathComponent(".build/\(config)/zero-train"))
    }
    return candidates.first { fm.isExecutableFile(atPath: $0.path) } ?? candidates.last!
}

/// A child process that outlived its time limit (it was killed).
struct ProcessTimeout: Error, CustomStringConvertible {
    var command: String
    var timeout: Duration
    var stdout: String
    var stderr: String
    var description: String { "\(command) did not finish within \(timeout); killed. stderr: \(stderr.suffix(2000))" }
}

/// Collects one pipe's bytes on its own thread, so a child filling the other pipe
/// never deadlocks against us.
/// Sendable because `data` is written by the reader thread only, and read after `done` is signalled.
private final class PipeReader: @unchecked Sendable {
    private let done = DispatchSemaphore(value: 0)
    private var data = Data()
    init(_ pipe: Pipe) {
        let handle = pipe.fileHandleForReading
        Thread.detachNewThread { [self] in
            data = handle.readDataToEndOfFile()
            done.signal()
        }
    }
    /// The bytes read, waiting at most `wait` for the writer to close its end
    /// (orphaned grandchildren of a killed child may keep it open).
    func text(wait: Double) -> String {
        if done.wait(timeout: .now() + wait) == .timedOut { return "" }
        return String(decoding: data, as: UTF8.self)
    }
}

/// Runs `executable` with `args` (extra `environment` on top of ours) and returns its
/// exit status and output. Past `timeout` the child gets SIGTERM (mpirun forwards it
/// to its ranks), then SIGKILL, and `ProcessTimeout` is thrown.
func runProcess(
    _ executable: URL, _ args: [String], environment: [String: String] = [:], timeout: Duration
) throws -> (status: Int32, stdout: String, stderr: String) {
    let process = Process()
    process.executableURL = executable
    process.arguments = args
    process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
    let out = Pipe(), err = Pipe()
    process.standardOutput = out
    process.standardError = err
    process.standardInput = FileHandle.nullDevice
    let outReader = PipeReader(out), errReader = PipeReader(err)
    try process.run()
    let deadline = ContinuousClock.now + timeout
    while process.isRunning && ContinuousClock.now < deadline { usleep(5_000) }
    if process.isRunning {
        kill(process.processIdentifier, SIGTERM)
        let grace = ContinuousClock.now + .seconds(3)
        while process.isRunning && ContinuousClock.now < grace { usleep(10_000) }
        if process.isRunning { kill(process.processIdentifier, SIGKILL) }
        process.waitUntilExit()
        throw ProcessTimeout(command: ([executable.path] + args).joined(separator: " "), timeout: timeout,
                             stdout: outReader.text(wait: 2), stderr: errReader.text(wait: 2))
    }
    process.waitUntilExit()
    return (process.terminationStatus, outReader.text(wait: 10), errReader.text(wait: 10))
}

/// The `mpirun` executable and the options launch/mpirun.sh would add for `ranks`
/// ranks here: --allow-run-as-root when root, --oversubscribe, the ob1 PML, no
/// help-message aggregation (it can hang mpirun when several ranks abort), one
/// OpenBLAS thread per rank.
func mpirunCommand(ranks: Int) -> (executable: URL, arguments: [String]) {
    let path = (ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin").split(separator: ":")
        .map { URL(fileURLWithPath: String($0)).appendingPathComponent("mpirun") }
        .first { FileManager.default.isExecutableFile(atPath: $0.path) } ?? URL(fileURLWithPath: "/usr/bin/mpirun")
    var args = ["-n", "\(ranks)", "--oversubscribe", "--bind-to", "none", "--mca", "pml", "ob1", "--mca", "orte_base_help_aggregate", "0", "-x", "OPENBLAS_NUM_THREADS=1"]
    if getuid() == 0 { args.insert("--allow-run-as-root", at: 0) }
    return (path, args)
}

/// Runs `zero-train args...` under `mpirun -n ranks`.
func runMPI(ranks: Int, _ args: [String], timeout: Duration) throws -> (status: Int32, stdout: String, stderr: String) {
    let (mpirun, options) = mpirunCommand(ranks: ranks)
    return try runProcess(mpirun, options + [zeroTrainBinary().path] + args, timeout: timeout)
}
