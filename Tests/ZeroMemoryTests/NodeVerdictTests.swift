import Foundation
import Testing
import ZeroMemory
import ZeroModels

/// The per-node verdict: R ranks' buffers and process overheads plus the transient peaks of
/// --init and checkpoint saves, against the node's memory; and what would fit instead.
@Suite struct NodeVerdictTests {
    static let gib = 1 << 30

    @Test func transientsFollowTheirFormulas() throws {
        let run = RunConfiguration(model: .medium, ranks: 4, stage: 3, microBatch: 8, sequenceLength: 256)
        let t = TransientPeaks(run)
        let psi = GPTConfig.medium.parameterCount
        let u = run.units
        #expect(t.initBytesPerRank == 4 * psi + 4 * u.largestUnit(among: u.units).padded)
        #expect(t.initFileBytes == 4 * psi)
        #expect(t.saveBytesPerRank == 2 * 12 * u.ownedShard.padded)
        #expect(t.saveRootExtraBytes == 12 * u.ownedShard.padded)
        let v = try NodeVerdict.evaluate(run, ranksPerNode: 4, nodeMemoryBytes: 64 * Self.gib, source: "test", chosenStage: 3)
        for s in 0...3 {
            let steady = 4 * (MemoryReport.runtimeEstimate(run, stage: s).totalBytes + run.fixedOverheadBytes)
            #expect(v.stage(s).steadyBytes == steady)
            var c = run
            c.stage = s
            let ts = TransientPeaks(c)
            #expect(v.stage(s).initPeakBytes == steady + 4 * ts.initBytesPerRank + ts.initFileBytes)
            #expect(v.stage(s).savePeakBytes == steady + 4 * ts.saveBytesPerRank + ts.saveRootExtraBytes)
        }
        #expect(v.fits(3) && v.suggestions.isEmpty)
    }

    /// The case: 4 ranks of about 12 GiB each on a 24 GiB node must not "fit".
    @Test func ranksShareTheNode() throws {
        let run = RunConfiguration(model: .gpt2, ranks: 4, stage: 0, microBatch: 8, sequenceLength: 1024)
        let perRank = MemoryReport.runtimeEstimate(run, stage: 0).totalBytes
        #expect(perRank > 8 * Self.gib && perRank < 24 * Self.gib)   // one rank alone would fit 24 GiB
        var report = try MemoryReport.runtime(run, stages: [0], budgetBytes: 24 * Self.gib / 4, budgetSource: "test")
        report.node = try NodeVerdict.evaluate(run, ranksPerNode: 4, nodeMemoryBytes: 24 * Self.gib, source: "test", chosenStage: 0)
        #expect(report.fits(0) == false)
        let node = try #require(report.node)
        #expect(!node.suggestions.isEmpty)
        // Every suggestion names a setting; the micro-batch one keeps the batch with grad-accum.
        #expect(node.suggestions.contains { $0.contains("--micro-batch") && $0.contains("--grad-accum") }, "\(node.suggestions)")
        // Check the suggestion: its configuration does fit.
        let mb = try #require(node.suggestions.first { $0.contains("--micro-batch") })
        let words = mb.split(separator: " ")
        let stage = Int(words[words.firstIndex(of: "--stage")! + 1])!
        let b = Int(words[words.firstIndex(of: "--micro-batch")! + 1])!
        var c = run
        c.microBatch = b
        c.accumulationSteps = 8 / b
        #expect(NodeVerdict.peaks(c, ranksPerNode: 4)[stage].peakBytes <= 24 * Self.gib)

        let json = report.json().rendered
        let object = try #require(JSONSerialization.jsonObject(with: Data(json.utf8)) as? [String: Any])
        let nodeJSON = try #require(object["node"] as? [String: Any])
        #expect(nodeJSON["ranks_per_node"] as? Int == 4 && nodeJSON["node_memory_bytes"] as? Int == 24 * Self.gib)
        #expect(((nodeJSON["stages"] as? [[String: Any]])?.first?["fits"] as? Bool) == false)
        #expect((nodeJSON["transient"] as? [String: Any])?["save_bytes_per_rank"] is Int)
        #expect(report.text().contains("Does not fit the node. Would fit: "))
        // Two ranks per node halve the steady part.
        let two = try NodeVerdict.evaluate(run, ranksPerNode: 2, nodeMemoryBytes: 24 * Self.gib, source: "test", chosenStage: 0)
        #expect(two.stage(0).steadyBytes * 2 == node.stage(0).steadyBytes)
        #expect(throws: MemoryModelError.self) {
            try NodeVerdict.evaluate(run, ranksPerNode: 5, nodeMemoryBytes: 24 * Self.gib, source: "test", chosenStage: 0)
        }
    }

    /// The target: gpt2-124m, B = 8, T = 1024, 4 ranks on a 24 GiB node fits at stage 3
    /// only with --recompute, and the verdict says so (a suggestion whose configuration fits).
    @Test func recomputeIsSuggestedWhenItFits() throws {
        let run = RunConfiguration(model: .gpt2, ranks: 4, stage: 3, microBatch: 8, sequenceLength: 1024)
        let node = try NodeVerdict.evaluate(run, ranksPerNode: 4, nodeMemoryBytes: 24 * Self.gib, source: "test", chosenStage: 3)
        #expect(!node.fits(3))
        let idea = try #require(node.suggestions.first { $0.contains("--recompute") }, "\(node.suggestions)")
        #expect(idea.hasPrefix("--stage 3 --recompute"))
        var c = run
        c.recompute = true
        c.activationBytes = ActivationEstimate.recomputed
        #expect(NodeVerdict.peaks(c, ranksPerNode: 4)[3].peakBytes <= 24 * Self.gib)
        let recomputed = RunConfiguration(model: .gpt2, ranks: 4, stage: 3, microBatch: 8, sequenceLength: 1024, recompute: true)
        let again = try NodeVerdict.evaluate(recomputed, ranksPerNode: 4, nodeMemoryBytes: 24 * Self.gib, source: "test", chosenStage: 3)
        #expect(again.fits(3) && again.suggestions.isEmpty)
    }
}
