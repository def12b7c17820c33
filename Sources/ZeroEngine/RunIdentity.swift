import Crypto
import Foundation
import ZeroComm

/// Who wrote a checkpoint: a random id per launch of a job, the hash of its config, and
/// the timeline it continues (docs/formats.md, "Run identity and timelines").
///
/// Every shard file's header and the manifest carry the id and hash, so a shard copied
/// from another run, rank or step is refused on resume. The lineage lets pruning and
/// `--resume DIR` tell the current timeline from others that share the save directory.
public struct RunIdentity: Sendable, Equatable {
    /// 16 hex digits, drawn by rank 0 at start-up and broadcast.
    public var runId: String
    /// First 16 hex digits of the SHA-256 of the canonical config JSON.
    public var configHash: String
    /// Earlier runs of this timeline, oldest first, each with the step it was resumed at
    /// (empty for a run that started from scratch or from --init).
    public var ancestors: [CheckpointManifest.LineageEntry]

    public init(runId: String, configHash: String, ancestors: [CheckpointManifest.LineageEntry] = []) {
        self.runId = runId
        self.configHash = configHash
        self.ancestors = ancestors
    }

    /// A fresh identity agreed by every rank (collective).
    public static func start(config: TrainingConfig, communicator comm: any Communicator) throws -> RunIdentity {
        var id = [UInt64(comm.rank == 0 ? UInt64.random(in: 1 ... .max) : 0)]
        try id.withUnsafeMutableBytes { try comm.broadcast($0, root: 0) }
        return RunIdentity(runId: String(format: "%016llx", id[0]), configHash: hash(config))
    }

    static func hash(_ config: TrainingConfig) -> String {
        String(SHA256.hash(data: config.canonicalJSON()).map { String(format: "%02x", $0) }.joined().prefix(16))
    }

    /// This run continues the checkpoint `manifest`: its timeline becomes ours.
    public mutating func resume(from manifest: CheckpointManifest) {
        ancestors = (manifest.lineage ?? []) + [.init(runId: manifest.runId ?? "", step: manifest.step)]
    }

    /// Whether a checkpoint belongs to this run's timeline: written by this run, or by an
    /// ancestor at or before the step this timeline left it.
    public func owns(_ manifest: CheckpointManifest) -> Bool {
        let id = manifest.runId ?? ""
        return id == runId || ancestors.contains { $0.runId == id && manifest.step <= $0.step }
    }
}

/// Rank 0 does `work`; if it fails, every rank throws the same `AgreedFailure` with rank
/// 0's message (collective), so the job ends with one line and no rank waits alone.
func rootDecides(_ comm: any Communicator, _ work: () throws -> Void) throws {
    var message = ""
    if comm.rank == 0 {
        do { try work() } catch { message = "\(error)" }
    }
    message = try broadcastString(message, comm)
    if !message.isEmpty { throw AgreedFailure(message) }
}

/// Rank 0's `text` on every rank (collective).
func broadcastString(_ text: String, _ comm: any Communicator) throws -> String {
    guard comm.size > 1 else { return text }
    var length = [UInt64(comm.rank == 0 ? text.utf8.count : 0)]
    try length.withUnsafeMutableBytes { try comm.broadcast($0, root: 0) }
    var bytes = comm.rank == 0 ? [UInt8](text.utf8) : [UInt8](repeating: 0, count: Int(length[0]))
    if bytes.isEmpty { return "" }
    try bytes.withUnsafeMutableBytes { try comm.broadcast($0, root: 0) }
    return String(decoding: bytes, as: UTF8.self)
}

/// A failure every rank meets at the same point and reports together (a refused save
/// directory, non-finite weights, an interrupt): the job can end cleanly, with one line
/// from rank 0, instead of aborting.
public struct AgreedFailure: Error, CustomStringConvertible, Sendable {
    public var description: String
    public init(_ description: String) { self.description = description }
}
