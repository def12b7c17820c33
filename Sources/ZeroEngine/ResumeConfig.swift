import Crypto
import Foundation
import ZeroModels

/// Which data a run trained on: path, size and SHA-256 of the first MiB (cheap at any size;
/// enough to tell two corpora or two shards apart). Stored in the checkpoint manifest.
/// A directory or glob of several files: total size, file count, and the SHA-256 over every
/// file's size and first-MiB hash in stream order (so renaming a file that changes the order
/// changes the fingerprint).
public struct DataFingerprint: Codable, Sendable, Equatable {
    /// As given to `--data`; nil for the embedded corpus.
    public var path: String?
    public var bytes: Int
    public var sha256FirstMiB: String
    /// Files of the stream when more than one (absent: one file, as in older manifests).
    public var files: Int? = nil

    /// The fingerprint of `--data path` (nil path: the embedded corpus); nil when a file cannot be read.
    public init?(data path: String?) {
        self.path = path
        guard let path else { bytes = 0; sha256FirstMiB = ""; return }
        guard let urls = try? TokenDataset.files(for: path), !urls.isEmpty else { return nil }
        var parts: [(bytes: Int, hash: String)] = []
        for url in urls {
            guard let part = DataFingerprint.head(url.path) else { return nil }
            parts.append(part)
        }
        if parts.count == 1 {
            (bytes, sha256FirstMiB) = parts[0]
            return
        }
        bytes = parts.reduce(0) { $0 + $1.bytes }
        files = parts.count
        let listing = parts.map { "\($0.bytes) \($0.hash)\n" }.joined()
        sha256FirstMiB = SHA256.hash(data: Data(listing.utf8)).map { String(format: "%02x", $0) }.joined()
    }

    /// A file's size and the SHA-256 of its first MiB.
    static func head(_ path: String) -> (bytes: Int, hash: String)? {
        guard let handle = FileHandle(forReadingAtPath: path),
              let size = try? FileManager.default.attributesOfItem(atPath: path)[.size] as? Int else { return nil }
        defer { try? handle.close() }
        guard let head = try? handle.read(upToCount: 1 << 20) else { return nil }
        return (size, SHA256.hash(data: head).map { String(format: "%02x", $0) }.joined())
    }

    /// Same content (the path may have moved).
    public func sameContent(as other: DataFingerprint) -> Bool {
        (path == nil) == (other.path == nil) && bytes == other.bytes && sha256FirstMiB == other.sha256FirstMiB
            && (files ?? 1) == (other.files ?? 1)
    }

    public var summary: String {
        guard let path else { return "the embedded corpus" }
        let count = files.map { "\($0) files, " } ?? ""
        return "\(path) (\(count)\(bytes) bytes, sha256 of first MiB \(sha256FirstMiB.prefix(12)))"
    }
}

extension TrainingConfig {
    /// What a resumed run would compute differently from the run it continues: every option
    /// the table marks as changing the math, and the micro-batches per step G (which follows
    /// the rank count unless --global-micro-batches fixes it). Empty when it continues bit for bit.
    public func resumeDifferences(from saved: TrainingConfig, savedRanks: Int, ranks: Int) -> [String] {
        var diffs = TrainingOption.all.filter(\.changesMath).compactMap { option -> String? in
            let (before, now) = (option.value(in: saved), option.value(in: self))
            return before == now ? nil : "--\(option.flag) \(before ?? "unset") -> \(now ?? "unset")"
        }
        let before = saved.globalMicroBatches ?? savedRanks * saved.gradAccum
        let now = globalMicroBatches ?? ranks * gradAccum
        if before != now { diffs.append("micro-batches per step (G) \(before) -> \(now)") }
        if saved.deepSpeedSchedule != deepSpeedSchedule { diffs.append("DeepSpeed scheduler parameters differ") }
        return diffs
    }
}
