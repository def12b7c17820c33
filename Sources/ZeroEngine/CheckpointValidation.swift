import Foundation
import ZeroModels

/// Checks that a checkpoint tells one consistent story before any number in it is used
/// to size, divide or index: the manifest against itself, then every shard's header
/// against the manifest. A manifest edited by hand (ranks 0, padding 0, swapped or
/// duplicated file entries, a changed step) or a shard from another run, rank or step is
/// refused with one line.
extension CheckpointManifest {
    /// Largest rank count a manifest may claim (far beyond any real job; keeps the
    /// padding arithmetic below from overflowing).
    static let maximumRanks = 1 << 20

    func validate(at dir: URL) throws {
        func bad(_ what: String) -> TrainingError {
            TrainingError("checkpoint manifest \(dir.appendingPathComponent("manifest.json").path) is inconsistent: \(what)")
        }
        guard (1...CheckpointManifest.maximumRanks).contains(ranks) else { throw bad("ranks is \(ranks)") }
        guard files.count == ranks else { throw bad("\(files.count) shard files listed for \(ranks) ranks") }
        for (r, file) in files.enumerated() where file.name != Checkpoint.rankFileName(r) {
            throw bad("file entry \(r) is \(file.name), expected \(Checkpoint.rankFileName(r))")
        }
        guard step >= 0, (0...step).contains(updatesApplied), (0...step).contains(skippedSteps) else {
            throw bad("step \(step), updates applied \(updatesApplied), skipped \(skippedSteps)")
        }
        if let dirStep = Checkpoint.step(ofDirectoryName: dir.lastPathComponent), dirStep != step {
            throw bad("step \(step) in a directory named \(dir.lastPathComponent)")
        }
        guard !units.isEmpty else { throw bad("no parameter units") }
        // Padding differs between versions (whole blocks now, a multiple of ranks x 1024
        // before), but a padded unit must hold the unit and be cut by the block rule or into
        // equal shards; the shards' sizes are checked against it below.
        for (u, unit) in units.enumerated() where unit.count < 1 || unit.padded < unit.count
            || (unit.padded % Partition.alignment != 0 && unit.padded % ranks != 0) {
            throw bad("unit \(u) (\(unit.name)) has \(unit.count) elements padded to \(unit.padded), which \(ranks) ranks cannot share")
        }
        for (u, unit) in units.enumerated() {
            if let shards = unit.shards, shards != (0..<ranks).map({ unit.shardRange(rank: $0, ranks: ranks).count }) {
                throw bad("unit \(u) (\(unit.name)) lists shard sizes that do not cut \(unit.padded) elements over \(ranks) ranks in whole blocks")
            }
        }
        for state in stateArrays where state.parametersPerBlock < 1 || state.bytesPerBlock < 1
            || (state.replicated != true && Partition.alignment % state.parametersPerBlock != 0) {
            throw bad("optimizer state '\(state.name)' has \(state.bytesPerBlock) bytes per \(state.parametersPerBlock) parameters")
        }
    }

    /// Checks one shard's header and sizes against the manifest: shard `r` of this run,
    /// rank count and step, holding exactly its slice of every unit.
    func validate(shard file: SafeTensors, rank r: Int, path: String) throws {
        func bad(_ what: String) -> TrainingError {
            TrainingError("checkpoint shard \(path) does not belong to this checkpoint: \(what)")
        }
        let meta = file.metadata
        guard meta["format"] == "zero-train-shard" else { throw bad("it is not a zero-train shard") }
        guard meta["rank"] == "\(r)" else { throw bad("it is rank \(meta["rank"] ?? "?")'s shard, listed as rank \(r)'s") }
        guard meta["ranks"] == "\(ranks)" else { throw bad("it was written by \(meta["ranks"] ?? "?") ranks, the manifest says \(ranks)") }
        guard meta["step"] == "\(step)" else { throw bad("it was saved at step \(meta["step"] ?? "?"), the manifest says \(step)") }
        if let runId {
            guard meta["run_id"] == runId else { throw bad("it was written by run \(meta["run_id"] ?? "unknown"), the manifest by run \(runId)") }
        }
        if let configHash {
            guard meta["config_hash"] == configHash else { throw bad("its config hash \(meta["config_hash"] ?? "none") differs from the manifest's \(configHash)") }
        }
        for (u, unit) in units.enumerated() {
            let shard = unit.shardRange(rank: r, ranks: ranks).count
            guard let master = file.entries.first(where: { $0.name == "unit.\(u).master" }), master.count == shard else {
                throw bad("unit \(u)'s master is not \(shard) elements")
            }
            for state in stateArrays {
                let expected = state.replicated == true ? nil : shard / state.parametersPerBlock * state.bytesPerBlock
                guard let entry = file.entries.first(where: { $0.name == "unit.\(u).state.\(state.name)" }) else {
                    throw bad("unit \(u) has no optimizer state '\(state.name)'")
                }
                if let expected, entry.range.count != expected {
                    throw bad("unit \(u)'s optimizer state '\(state.name)' is \(entry.range.count) bytes, expected \(expected)")
                }
            }
        }
    }
}

extension Checkpoint {
    /// N of a directory named step-N or step-N.RUNID; nil for other names.
    static func step(ofDirectoryName name: String) -> Int? {
        guard name.hasPrefix("step-") else { return nil }
        return Int(name.dropFirst(5).prefix { $0 != "." })
    }
}
