import Crypto
import Foundation
import ZeroComm
import ZeroModels
import ZeroOptim
import ZeroTensor

/// Sharded checkpoints that survive crashes and reshard on resume.
///
/// Layout: `DIR/step-00000100/rank-00002.safetensors` per rank (its owned range of the
/// fp32 master and of every optimizer state array, for every unit), then
/// `DIR/step-00000100/manifest.json` written last by rank 0 with the config and the
/// SHA-256 of every shard file. Every file goes to a temporary name, is fsynced and
/// renamed, so a crash at any moment leaves the previous checkpoint whole; a step
/// directory without a manifest is ignored. What a rank saves does not depend on the
/// stage, so any checkpoint resumes at any stage and (for parameter-aligned optimizer
/// state) at any rank count.
public struct CheckpointManifest: Codable, Sendable {
    public struct FileEntry: Codable, Sendable { public var name: String; public var sha256: String; public var bytes: Int }
    public struct UnitEntry: Codable, Sendable {
        public var name: String
        public var count: Int
        public var padded: Int
        /// Elements each rank's shard holds, in rank order: rank r's shard is the range after
        /// the first r (`Partition`'s block rule). Absent in checkpoints written with equal
        /// shards (padded / ranks each), which the same rule also describes.
        public var shards: [Int]? = nil
        /// Rank r's element range of the unit, from the manifest's padded size and rank count.
        public func shardRange(rank r: Int, ranks: Int) -> Range<Int> {
            Partition.shardRange(padded: padded, ranks: ranks, rank: r)
        }
    }
    public struct StateEntry: Codable, Sendable {
        public var name: String
        public var parametersPerBlock: Int
        public var bytesPerBlock: Int
        /// Saved whole by every rank and restored whole (absent: cut by parameter range).
        public var replicated: Bool? = nil
    }
    public var format = "zero-train-checkpoint"
    public var version = 1
    public var step: Int
    public var updatesApplied: Int
    public var skippedSteps: Int
    public var ranks: Int
    public var stage: Int
    public var config: TrainingConfig
    public var units: [UnitEntry]
    public var stateArrays: [StateEntry]
    public var supportsResharding: Bool
    public var files: [FileEntry]
    /// The learning-rate schedule with its state (ReduceLROnPlateau's best, counters and rate);
    /// absent in older checkpoints.
    public var schedule: LearningRateScheduler? = nil
    /// The data the run trained on (absent in older checkpoints); `--resume` compares it.
    public var dataFingerprint: DataFingerprint? = nil
    /// The run that wrote it (also in every shard's header) and its config hash; absent in
    /// older checkpoints.
    public var runId: String? = nil
    public var configHash: String? = nil
    /// Earlier runs of its timeline, oldest first, with the step each was resumed at.
    public var lineage: [LineageEntry]? = nil
    /// Seconds since 1970 when it was saved: `--resume DIR` takes the newest save.
    public var savedAt: Double? = nil
    /// Non-trainable model buffers (BatchNorm running statistics) in rank 0's shard as
    /// "buffer.NAME" fp32 tensors; absent when the model has none.
    public var buffers: [BufferEntry]? = nil

    public struct BufferEntry: Codable, Sendable, Equatable {
        public var name: String
        public var count: Int
    }

    public struct LineageEntry: Codable, Sendable, Equatable {
        public var runId: String
        public var step: Int
        public init(runId: String, step: Int) { self.runId = runId; self.step = step }
    }
}

public enum Checkpoint {
    static func stepDirectoryName(_ step: Int) -> String { String(format: "step-%08d", step) }
    static func rankFileName(_ rank: Int) -> String { String(format: "rank-%05d.safetensors", rank) }

    /// The checkpoint to resume from `url`: `url` itself when it holds a manifest, else the
    /// most recently saved complete checkpoint under it (the timeline that saved last; a
    /// directory that holds several timelines never switches to another one's higher step).
    public static func resolve(_ url: URL) throws -> URL {
        let fm = FileManager.default
        var isDir: ObjCBool = false
        guard fm.fileExists(atPath: url.path, isDirectory: &isDir), isDir.boolValue else {
            throw ConfigError("no checkpoint directory at \(url.path)")
        }
        if fm.fileExists(atPath: url.appendingPathComponent("manifest.json").path) { return url }
        let complete = completeCheckpoints(in: url)
        // An unreadable manifest sorts first, so the damage is reported rather than skipped.
        let keyed = complete.map { dir in ((try? readManifest(dir)).map { $0.savedAt ?? 0 } ?? .infinity, dir) }
        guard let dir = keyed.max(by: { ($0.0, $0.1.lastPathComponent) < ($1.0, $1.1.lastPathComponent) })?.1 else {
            throw ConfigError("no complete checkpoint (a step-* directory with manifest.json) in \(url.path)")
        }
        return dir
    }

    /// Step directories under `root` that hold a manifest.
    static func completeCheckpoints(in root: URL) -> [URL] {
        let fm = FileManager.default
        let names = ((try? fm.contentsOfDirectory(atPath: root.path)) ?? []).filter { $0.hasPrefix("step-") }.sorted()
        return names.map { root.appendingPathComponent($0) }
            .filter { fm.fileExists(atPath: $0.appendingPathComponent("manifest.json").path) }
    }

    public static func readManifest(_ dir: URL) throws -> CheckpointManifest {
        let url = dir.appendingPathComponent("manifest.json")
        guard let data = FileManager.default.contents(atPath: url.path) else {
            throw ConfigError("checkpoint manifest missing: \(url.path)")
        }
        do {
            let decoder = JSONDecoder()
            decoder.nonConformingFloatDecodingStrategy = .convertFromString(positiveInfinity: "inf", negativeInfinity: "-inf", nan: "nan")
            let m = try decoder.decode(CheckpointManifest.self, from: data)
            guard m.format == "zero-train-checkpoint", m.version == 1 else {
                throw ConfigError("\(url.path) is not a zero-train checkpoint manifest (version 1)")
            }
            return m
        } catch let e as ConfigError { throw e } catch let e as TrainingError { throw e } catch {
            throw TrainingError("checkpoint manifest \(url.path) is unreadable: \(error)")
        }
    }

    /// Lowercase hex SHA-256, as the manifest lists each shard file.
    public static func sha256Hex(_ data: Data) -> String {
        SHA256.hash(data: data).map { String(format: "%02x", $0) }.joined()
    }
}

extension Trainer {
    /// Saves this step's checkpoint (collective: every rank calls it) and returns its
    /// directory. `identity` goes into every shard's header and the manifest.
    @discardableResult
    public func saveCheckpoint(root: URL, identity: RunIdentity) throws -> URL {
        // Rank 0 names the directory: step-N, or step-N.RUNID when step-N holds another
        // timeline's checkpoint (never overwritten).
        var name = Checkpoint.stepDirectoryName(step)
        if rank == 0, let other = try? Checkpoint.readManifest(root.appendingPathComponent(name)), other.runId != identity.runId {
            name += "." + identity.runId
        }
        name = try broadcastString(name, communicator)
        let dir = root.appendingPathComponent(name)
        do { try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true) } catch {
            throw TrainingError("cannot create checkpoint directory \(dir.path): \(underlyingReason(error))")
        }
        // A second signal mid-save removes this process's temporary files (every simulated
        // rank's; under MPI its own). Names as SafeTensors.writeAtomically makes them.
        let local = communicator.backendName == "simulated" ? Array(0..<ranks) : [rank]
        if rank == local[0] {
            StopSignals.saving(temporaries: local.map { dir.appendingPathComponent(".\(Checkpoint.rankFileName($0)).tmp-\(getpid())").path }
                + (rank == 0 ? [dir.appendingPathComponent(".manifest.json.tmp-\(getpid())").path] : []))
        }
        defer { if rank == local[0] { StopSignals.saving(temporaries: nil) } }
        // Views into the master must outlive serialization: collect copies.
        var masters: [[Float]] = []
        var raw: [(name: String, bytes: Data)] = []
        for u in 0..<partition.unitCount {
            let shard = partition.shardRange(unit: u, rank: rank)
            let local = plan.fullMaster ? shard : 0 ..< shard.count
            masters.append(Array(master[u].readOnly[local]))
            for array in optimizers[u].state {
                if array.isReplicated {
                    raw.append(("unit.\(u).state.\(array.name)", Data(UnsafeRawBufferPointer(array.bytes))))
                    continue
                }
                let lo = local.lowerBound / array.parametersPerBlock * array.bytesPerBlock
                let hi = local.upperBound / array.parametersPerBlock * array.bytesPerBlock
                raw.append(("unit.\(u).state.\(array.name)", Data(UnsafeRawBufferPointer(rebasing: UnsafeRawBufferPointer(array.bytes)[lo..<hi]))))
            }
        }
        raw += bufferTensors
        let data = withUnitPointers(masters) { pointers in
            var tensors = pointers.enumerated().map { SafeTensors.Tensor(name: "unit.\($0).master", shape: [$1.count], dtype: .f32, values: $1) }
            tensors += raw.map { SafeTensors.Tensor(name: $0.name, rawBytes: $0.bytes) }
            return SafeTensors.serialize(tensors, metadata: [
                "format": "zero-train-shard", "rank": "\(rank)", "ranks": "\(ranks)", "step": "\(step)",
                "run_id": identity.runId, "config_hash": identity.configHash,
            ])
        }
        try SafeTensors.writeAtomically(data, to: dir.appendingPathComponent(Checkpoint.rankFileName(rank)))

        // Every shard is on disk before rank 0 hashes them and writes the manifest last.
        try communicator.barrier()
        if rank == 0 {
            var files: [CheckpointManifest.FileEntry] = []
            for r in 0..<ranks {
                let name = Checkpoint.rankFileName(r)
                guard let bytes = FileManager.default.contents(atPath: dir.appendingPathComponent(name).path) else {
                    throw TrainingError("rank \(r)'s checkpoint shard \(name) is missing after save")
                }
                files.append(.init(name: name, sha256: Checkpoint.sha256Hex(bytes), bytes: bytes.count))
            }
            var manifest = CheckpointManifest(
                step: step, updatesApplied: updatesApplied, skippedSteps: skippedSteps, ranks: ranks,
                stage: config.stage.rawValue, config: config,
                units: model.layout.units.enumerated().map {
                    .init(name: $1.name, count: $1.count, padded: partition.paddedCounts[$0], shards: partition.shardCounts(unit: $0))
                },
                stateArrays: optimizers[0].state.map {
                    .init(name: $0.name, parametersPerBlock: $0.parametersPerBlock, bytesPerBlock: $0.bytesPerBlock,
                          replicated: $0.isReplicated ? true : nil)
                },
                supportsResharding: optimizers[0].supportsResharding, files: files, schedule: schedule,
                runId: identity.runId, configHash: identity.configHash, lineage: identity.ancestors,
                savedAt: Date().timeIntervalSince1970)
            manifest.dataFingerprint = DataFingerprint(data: config.data)
            manifest.buffers = bufferEntries
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
            encoder.nonConformingFloatEncodingStrategy = .convertToString(positiveInfinity: "inf", negativeInfinity: "-inf", nan: "nan")
            try SafeTensors.writeAtomically(try encoder.encode(manifest), to: dir.appendingPathComponent("manifest.json"))
            pruneCheckpoints(root: root, identity: identity)
        }
        try communicator.barrier()
        return dir
    }

    /// Keeps the newest `config.keep` complete checkpoints of this run's timeline; other
    /// timelines' checkpoints (another run resumed from an older step) are never touched.
    func pruneCheckpoints(root: URL, identity: RunIdentity) {
        let fm = FileManager.default
        let ours = Checkpoint.completeCheckpoints(in: root).compactMap { dir in
            (try? Checkpoint.readManifest(dir)).flatMap { identity.owns($0) ? ($0.step, dir) : nil }
        }.sorted { ($0.0, $0.1.lastPathComponent) < ($1.0, $1.1.lastPathComponent) }
        for (_, dir) in ours.dropLast(config.keep) {
            // Remove the manifest first so a half-deleted directory is never taken for a checkpoint.
            try? fm.removeItem(at: dir.appendingPathComponent("manifest.json"))
            try? fm.removeItem(at: dir)
        }
    }

    /// Loads a checkpoint saved at any rank count and stage (collective-free: every rank reads).
    public func loadCheckpoint(_ dir: URL) throws {
        let reader = try CheckpointReader(dir)
        let manifest = reader.manifest
        let diffs = config.sameRun(as: manifest.config)
        guard diffs.isEmpty else {
            throw ConfigError("checkpoint \(dir.path) is from another run: \(diffs.joined(separator: ", "))")
        }
        guard manifest.units.map(\.count) == partition.unitCounts else {
            throw ConfigError("checkpoint \(dir.path) does not match \(config.model)'s parameter layout")
        }
        if (manifest.ranks != ranks || (manifest.stage == 0) != (config.stage == .zero)) && !manifest.supportsResharding {
            throw ConfigError("\(config.optimizer)'s state cannot be resharded: resume with \(manifest.ranks) ranks")
        }

        try loadInitialWeights { try reader.master(unit: $0) }
        try loadBuffers(from: reader, at: dir)
        for u in 0..<partition.unitCount {
            let base = plan.fullMaster ? 0 : partition.shardRange(unit: u, rank: rank).lowerBound
            for array in optimizers[u].state {
                guard let entry = manifest.stateArrays.first(where: { $0.name == array.name }),
                      entry.parametersPerBlock == array.parametersPerBlock, entry.bytesPerBlock == array.bytesPerBlock,
                      (entry.replicated ?? false) == array.isReplicated else {
                    throw ConfigError("checkpoint \(dir.path) has no optimizer state '\(array.name)'")
                }
                if array.isReplicated {
                    let data = try reader.replicated(unit: u, tensor: "state.\(array.name)")
                    guard data.count == array.bytes.count else {
                        throw TrainingError("checkpoint \(dir.path): optimizer state '\(array.name)' of unit \(u) has \(data.count) bytes, expected \(array.bytes.count)")
                    }
                    data.withUnsafeBytes { array.bytes.copyMemory(from: $0) }
                    continue
                }
                // Elements past the old padded size are padding: zero state.
                let count = array.bytes.count / array.bytesPerBlock * array.parametersPerBlock
                let available = max(0, min(base + count, manifest.units[u].padded) - base)
                let data = try reader.read(unit: u, tensor: "state.\(array.name)", elementRange: base ..< base + available,
                                    bytesPerBlock: array.bytesPerBlock, perBlock: array.parametersPerBlock)
                array.bytes.initializeMemory(as: UInt8.self, repeating: 0)
                data.withUnsafeBytes { array.bytes.copyMemory(from: $0) }
            }
        }
        if let saved = manifest.schedule, saved.config == schedule.config { schedule = saved }
        step = manifest.step
        updatesApplied = manifest.updatesApplied
        skippedSteps = manifest.skippedSteps
    }
}

/// Reads a checkpoint's shards (after checking the manifest and every SHA-256),
/// by element range of the unpadded unit, whatever rank count wrote it.
public struct CheckpointReader {
    public let manifest: CheckpointManifest
    private let files: [SafeTensors]

    public init(_ dir: URL) throws {
        manifest = try Checkpoint.readManifest(dir)
        try manifest.validate(at: dir)
        var files: [SafeTensors] = []
        for (r, entry) in manifest.files.enumerated() {
            let url = dir.appendingPathComponent(entry.name)
            guard let data = FileManager.default.contents(atPath: url.path) else {
                throw TrainingError("checkpoint shard missing: \(url.path) (the manifest lists it)")
            }
            guard Checkpoint.sha256Hex(data) == entry.sha256 else {
                throw TrainingError("checkpoint shard \(url.path) fails its SHA-256 check: the file is damaged")
            }
            let file = try SafeTensors(data: data, source: url.path)
            try manifest.validate(shard: file, rank: r, path: url.path)
            files.append(file)
        }
        self.files = files
    }

    /// Bytes of `tensor` ("master" or "state.NAME") of unit u for elements `elementRange`;
    /// the saving rank q's shard holds `manifest.units[u].shardRange(rank: q, ...)`.
    public func read(unit u: Int, tensor: String, elementRange: Range<Int>, bytesPerBlock: Int, perBlock: Int) throws -> Data {
        let shards = (0..<manifest.ranks).map { manifest.units[u].shardRange(rank: $0, ranks: manifest.ranks) }
        var out = Data(count: (elementRange.count / perBlock) * bytesPerBlock)
        var e = elementRange.lowerBound
        var q = 0
        while e < elementRange.upperBound {
            while q < shards.count && shards[q].upperBound <= e { q += 1 }
            guard q < shards.count, shards[q].lowerBound <= e else {
                throw TrainingError("checkpoint: element \(e) of unit \(u) is in no rank's shard")
            }
            let start = shards[q].lowerBound
            let end = min(elementRange.upperBound, shards[q].upperBound)
            let bytes = try files[q].bytes("unit.\(u).\(tensor)")
            let lo = (e - start) / perBlock * bytesPerBlock, hi = (end - start) / perBlock * bytesPerBlock
            let dst = (e - elementRange.lowerBound) / perBlock * bytesPerBlock
            out.replaceSubrange(dst ..< dst + (hi - lo), with: bytes[bytes.startIndex + lo ..< bytes.startIndex + hi])
            e = end
        }
        return out
    }

    /// The bytes of a replicated `tensor` of unit u (every rank saved the same; rank 0's are read).
    public func replicated(unit u: Int, tensor: String) throws -> Data {
        Data(try files[0].bytes("unit.\(u).\(tensor)"))
    }

    /// The bytes of tensor `name` of rank 0's shard (replicated state every rank holds alike).
    public func replicatedTensor(_ name: String) throws -> Data { Data(try files[0].bytes(name)) }

    /// Unit u's fp32 master weights, unpadded.
    public func master(unit u: Int) throws -> [Float] {
        let data = try read(unit: u, tensor: "master", elementRange: 0 ..< manifest.units[u].count, bytesPerBlock: 4, perBlock: 1)
        return data.withUnsafeBytes { Array($0.bindMemory(to: Float.self)) }
    }
}

/// Calls `body` with buffer pointers to every array (kept alive for the call).
public func withUnitPointers<R>(_ units: [[Float]], _ body: ([UnsafeBufferPointer<Float>]) throws -> R) rethrows -> R {
    var pointers: [UnsafeBufferPointer<Float>] = []
    func recurse(_ i: Int) throws -> R {
        if i == units.count { return try body(pointers) }
        return try units[i].withUnsafeBufferPointer { p in
            pointers.append(p)
            defer { pointers.removeLast() }
            return try recurse(i + 1)
        }
    }
    return try recurse(0)
}
