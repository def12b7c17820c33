import Crypto
import Foundation

/// Which data a run trained on: path, size and SHA-256 of the first MiB (cheap at any size;
/// enough to tell two corpora or two shards apart). Stored in the checkpoint manifest.
public struct DataFingerprint: Codable, Sendable, Equatable {
    /// As given to `--data`; nil for the embedded corpus.
    public var path: String?
    public var bytes: Int
    public var sha256FirstMiB: String

    /// The fingerprint of `--data path` (nil path: the embedded corpus); nil when the file cannot be read.
    public init?(data path: String?) {
        self.path = path
        guard let path else { bytes = 0; sha256FirstMiB = ""; return }
        guard let handle = FileHandle(forReadingAtPath: path),
              let size = try? FileManager.default.attributesOfItem(atPath: path)[.size] as? Int else { return nil }
        defer { try? handle.close() }
        guard let head = try? handle.read(upToCount: 1 << 20) else { return nil }
        bytes = size
        sha256FirstMiB = SHA256.hash(data: head).map { String(format: "%02x", $0) }.joined()
    }

    /// Same content (the path may have moved).
    public func sameContent(as other: DataFingerprint) -> Bool {
        (path == nil) == (other.path == nil) && bytes == other.bytes && sha256FirstMiB == other.sha256FirstMiB
    }

    public var summary: String {
        guard let path else { return "the embedded corpus" }
        return "\(path) (\(bytes) bytes, sha256 of first MiB \(sha256FirstMiB.prefix(12)))"
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
