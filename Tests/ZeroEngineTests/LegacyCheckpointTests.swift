import Foundation
import Testing
import ZeroComm
import ZeroEngine
import ZeroModels

/// Checkpoints written before the block rule padded every unit to a multiple of
/// ranks x 1024 elements and cut it into equal shards (and had no per-unit `shards` in
/// the manifest). They must still resume, at any rank count and stage.
@Suite(.serialized) struct LegacyCheckpointTests {
    @Test func equalShardCheckpointsStillResume() throws {
        let straight = try simulate(tinyConfig(stage: 2, steps: 4), ranks: 4)
        let dir = temporaryDirectory("legacy")
        var first = tinyConfig(stage: 2, steps: 2)
        first.save = dir.path
        _ = try simulate(first, ranks: 4)
        let step = dir.appendingPathComponent("step-00000002")
        #expect(try Checkpoint.readManifest(step).units.map(\.padded) == [20480, 50176, 50176, 1024])

        try rewriteAsEqualShards(step)
        let legacy = try Checkpoint.readManifest(step)
        #expect(legacy.units.map(\.padded) == [20480, 53248, 53248, 4096])
        #expect(legacy.units.allSatisfy { $0.shards == nil })
        for (ranks, stage) in [(4, 2), (2, 3), (1, 0), (8, 1)] {
            let resumed = try simulate(tinyConfig(stage: stage, steps: 4), ranks: ranks, resume: step)
            #expect(resumed.paramsSHA256 == straight.paramsSHA256, "\(ranks) ranks, stage \(stage)")
        }
    }
}

/// Rewrites a checkpoint in place into the layout of checkpoints written before the block
/// rule: units padded to a multiple of ranks x 1024, equal shards, no `shards` entries.
func rewriteAsEqualShards(_ dir: URL) throws {
    let reader = try CheckpointReader(dir)
    var manifest = reader.manifest
    let n = manifest.ranks
    let names = (0..<n).map { String(format: "rank-%05d.safetensors", $0) }
    let old = try names.map { try SafeTensors(contentsOf: dir.appendingPathComponent($0)) }
    var masters = [[[Float]]](repeating: [], count: n)
    var raw = [[(String, Data)]](repeating: [], count: n)
    for (u, unit) in manifest.units.enumerated() {
        let quantum = n * 1024
        let padded = (unit.count + quantum - 1) / quantum * quantum, shard = padded / n
        let full = try reader.master(unit: u) + [Float](repeating: 0, count: padded - unit.count)
        for r in 0..<n { masters[r].append(Array(full[r * shard ..< (r + 1) * shard])) }
        for state in manifest.stateArrays {
            let name = "unit.\(u).state.\(state.name)"
            if state.replicated == true {
                for r in 0..<n { raw[r].append((name, try old[r].bytes(name))) }
                continue
            }
            var bytes = try reader.read(unit: u, tensor: "state.\(state.name)", elementRange: 0 ..< unit.padded,
                                        bytesPerBlock: state.bytesPerBlock, perBlock: state.parametersPerBlock)
            bytes.append(Data(count: (padded - unit.padded) / state.parametersPerBlock * state.bytesPerBlock))
            let per = shard / state.parametersPerBlock * state.bytesPerBlock
            for r in 0..<n { raw[r].append((name, bytes.subdata(in: r * per ..< (r + 1) * per))) }
        }
        manifest.units[u].padded = padded
        manifest.units[u].shards = nil
    }
    for r in 0..<n {
        let data = withUnitPointers(masters[r]) { pointers in
            var tensors = pointers.enumerated().map { SafeTensors.Tensor(name: "unit.\($0).master", shape: [$1.count], dtype: .f32, values: $1) }
            tensors += raw[r].map { SafeTensors.Tensor(name: $0.0, rawBytes: $0.1) }
            return SafeTensors.serialize(tensors, metadata: old[r].metadata)
        }
        try data.write(to: dir.appendingPathComponent(names[r]))
        manifest.files[r].sha256 = Checkpoint.sha256Hex(data)
        manifest.files[r].bytes = data.count
    }
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
    encoder.nonConformingFloatEncodingStrategy = .convertToString(positiveInfinity: "inf", negativeInfinity: "-inf", nan: "nan")
    try encoder.encode(manifest).write(to: dir.appendingPathComponent("manifest.json"))
}
