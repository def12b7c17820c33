import Foundation

/// The `--save` directory of a running job: checked writable at start-up, locked for the
/// life of the run, cleared of what dead writers left behind.
///
/// The lock is an advisory `flock` on `DIR/.zero-train.lock`, taken by rank 0 (the
/// simulating process) and released when the process exits, however it exits; the file
/// names the holder (host, pid, start time) so a refused job can say who holds it.
public final class SaveDirectoryLock: @unchecked Sendable {
    public static let lockFileName = ".zero-train.lock"
    public let root: URL
    private let descriptor: Int32

    /// Checks `root` (creating it when missing), takes the lock and removes stale files.
    /// Throws one line naming the path or the job that holds it.
    public init(root: URL) throws {
        self.root = root
        try SaveDirectoryLock.checkWritable(root)
        let path = root.appendingPathComponent(SaveDirectoryLock.lockFileName).path
        let fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw ConfigError("--save \(root.path): cannot open its lock file \(path): \(errnoText())") }
        guard flock(fd, LOCK_EX | LOCK_NB) == 0 else {
            let holder = (try? String(contentsOfFile: path, encoding: .utf8))?.trimmingCharacters(in: .whitespacesAndNewlines)
            close(fd)
            throw ConfigError("--save \(root.path) is in use by another zero-train job (\(holder.map { $0.isEmpty ? "holder unknown" : $0 } ?? "holder unknown")); wait for it to finish or choose another directory")
        }
        descriptor = fd
        let hostName = ProcessInfo.processInfo.hostName
        let since = ISO8601DateFormatter().string(from: Date())
        let text = "host \(hostName), pid \(getpid()), since \(since)\n"
        ftruncate(fd, 0)
        _ = text.withCString { pwrite(fd, $0, strlen($0), 0) }
        fsync(fd)
        SaveDirectoryLock.removeStaleFiles(root)
    }

    deinit { close(descriptor) }

    /// A directory we can create, write, fsync and delete a file in; else one line naming
    /// the path and what is wrong, before any training.
    static func checkWritable(_ root: URL) throws {
        let fm = FileManager.default
        var isDir: ObjCBool = false
        if fm.fileExists(atPath: root.path, isDirectory: &isDir) {
            guard isDir.boolValue else { throw ConfigError("--save \(root.path) is a file, not a directory") }
        } else {
            // mkdir one level at a time, for the errno of the level that fails.
            var prefix = root.path.hasPrefix("/") ? "" : "."
            for part in root.path.split(separator: "/") {
                prefix += "/" + part
                if mkdir(prefix, 0o755) != 0 && errno != EEXIST {
                    throw ConfigError("--save \(root.path): cannot create the directory \(prefix): \(errnoText())")
                }
            }
            guard fm.fileExists(atPath: root.path, isDirectory: &isDir), isDir.boolValue else {
                throw ConfigError("--save \(root.path): cannot create the directory (a part of the path is a file)")
            }
        }
        let probe = root.appendingPathComponent(".zero-train-probe-\(getpid())")
        let fd = open(probe.path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw ConfigError("--save \(root.path) is not writable: \(errnoText())") }
        let wrote = "probe\n".withCString { write(fd, $0, 6) }
        let synced = fsync(fd)
        let reason = errnoText()
        close(fd)
        unlink(probe.path)
        guard wrote == 6, synced == 0 else { throw ConfigError("--save \(root.path): writing a test file failed: \(reason)") }
    }

    /// Under the lock nobody else writes here, so every temporary file (`.NAME.tmp-PID`) and
    /// every step directory without a manifest (an interrupted save or prune) is debris of
    /// a dead writer.
    static func removeStaleFiles(_ root: URL) {
        let fm = FileManager.default
        guard let names = try? fm.contentsOfDirectory(atPath: root.path) else { return }
        for name in names where name.hasPrefix("step-") {
            let dir = root.appendingPathComponent(name)
            if !fm.fileExists(atPath: dir.appendingPathComponent("manifest.json").path) {
                try? fm.removeItem(at: dir)
                continue
            }
            for file in (try? fm.contentsOfDirectory(atPath: dir.path)) ?? [] where isTemporary(file) {
                try? fm.removeItem(at: dir.appendingPathComponent(file))
            }
        }
        for file in names where isTemporary(file) || file.hasPrefix(".zero-train-probe-") {
            try? fm.removeItem(at: root.appendingPathComponent(file))
        }
    }

    static func isTemporary(_ name: String) -> Bool { name.hasPrefix(".") && name.contains(".tmp-") }
}

func errnoText() -> String { String(cString: strerror(errno)) }

/// The POSIX reason inside a Foundation error, in plain words.
func underlyingReason(_ error: Error) -> String {
    let ns = error as NSError
    if let inner = ns.userInfo[NSUnderlyingErrorKey] as? NSError, inner.domain == NSPOSIXErrorDomain {
        return String(cString: strerror(Int32(inner.code)))
    }
    return ns.localizedDescription
}
