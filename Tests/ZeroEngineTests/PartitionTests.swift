import Foundation
import Testing
import ZeroComm
import ZeroEngine
import ZeroOptim
import ZeroTensor

@Suite struct PartitionTests {
    @Test func padsEveryUnitToWholeBlocksAndDealsThem() {
        let p = Partition(unitCounts: [20480, 49_984, 128], ranks: 4)
        #expect(p.paddedCounts == [20480, 50_176, 1024])
        // 49 blocks over 4 ranks: 12, 12, 12, 13 (the last rank's is the largest).
        #expect(p.shardCounts(unit: 1) == [12_288, 12_288, 12_288, 13_312])
        #expect(p.shardRange(unit: 1, rank: 3) == 36_864 ..< 50_176)
        // One block: only the last rank owns any of it.
        #expect(p.shardCounts(unit: 2) == [0, 0, 0, 1024])
        #expect(p.paddingElements == 50_176 - 49_984 + 1024 - 128)
        #expect((0..<4).map(p.shardTotal(rank:)).reduce(0, +) == p.paddedTotal)
    }

    @Test(arguments: [1, 2, 3, 4, 8, 64, 1000])
    func shardsTileTheUnitWithoutOverlap(ranks: Int) {
        let p = Partition(unitCounts: [5000, 1, 300_000], ranks: ranks)
        for u in 0..<3 {
            var next = 0
            for r in 0..<ranks {
                let range = p.shardRange(unit: u, rank: r)
                #expect(range.lowerBound == next)
                #expect(range.lowerBound % Partition.alignment == 0 && range.count % Partition.alignment == 0)
                #expect(range.count <= p.largestShard(unit: u))
                next = range.upperBound
            }
            #expect(next == p.paddedCounts[u])
        }
    }

    /// The padding of a unit is below one block at any rank count, so every full-size buffer
    /// (replica, full gradient, gather slot) stops growing with N; shards differ by one block.
    @Test(arguments: [1, 7, 64, 256, 1000, 4096])
    func paddingIsBoundedWhateverTheRankCount(ranks: Int) {
        let counts = [10_240 + 64 * 64, 49_984, 49_984, 128, 1, 2_000_001]
        let p = Partition(unitCounts: counts, ranks: ranks)
        for u in counts.indices {
            #expect(p.paddedCounts[u] - counts[u] < Partition.alignment)
            let sizes = p.shardCounts(unit: u)
            #expect(sizes.max()! - sizes.min()! <= Partition.alignment)
        }
        #expect(p.paddingElements < counts.count * Partition.alignment)
    }

    /// Equal shards of a unit padded to a multiple of N x 1024 (checkpoints written before the
    /// block rule) are the block rule's cut of that size.
    @Test(arguments: [1, 2, 3, 4, 8])
    func blockRuleReadsEqualShards(ranks: Int) {
        let padded = 7 * ranks * Partition.alignment
        for r in 0..<ranks {
            #expect(Partition.shardRange(padded: padded, ranks: ranks, rank: r) == r * padded / ranks ..< (r + 1) * padded / ranks)
        }
    }

    /// The global norm over uneven block shards (some ranks owning nothing of a unit) has the
    /// bits of the single-process norm over the unpadded units.
    @Test(arguments: [2, 3, 5, 64])
    func normOverUnevenShardsIsTheWholeNorm(ranks: Int) throws {
        let counts = [5000, 128, 40_000]
        let p = Partition(unitCounts: counts, ranks: ranks)
        var units: [[Float]] = []
        for (u, n) in counts.enumerated() {
            var values = [Float](repeating: 0, count: n)
            for i in 0..<n { values[i] = Float(sin(Double(i * 7 + u))) * Float(1 + i % 13) }
            units.append(values)
        }
        let frozen = units
        let whole = withUnitPointers(frozen) { GlobalNorm.norm(units: $0) }
        let norms: [Double] = try SimulatedCluster.run(ranks: ranks) { comm in
            var shards: [[Float]] = []
            for u in frozen.indices {
                let range = p.shardRange(unit: u, rank: comm.rank)
                var shard = [Float](repeating: 0, count: range.count)
                for i in 0..<range.count where range.lowerBound + i < counts[u] { shard[i] = frozen[u][range.lowerBound + i] }
                shards.append(shard)
            }
            return try withUnitPointers(shards) { pointers in
                try GlobalNorm.norm(unitShards: pointers, shardCounts: frozen.indices.map { p.shardCounts(unit: $0) }, communicator: comm)
            }
        }
        for n in norms { #expect(n.bitPattern == whole.bitPattern) }
    }

    /// The plan of the last rank (the largest) at N = 256: its full-size buffers are the units
    /// plus < 1024 elements each, so per-rank bytes do not grow with N and N ranks together
    /// grow linearly. (With units padded to N x 1024 the N = 256 plan was 2.3x the N = 64 one.)
    @Test func planAt256RanksIsBoundedPerRank() {
        let counts = [20480, 49984, 49984, 128], ops = [[0], [1], [2], [3, 0]]
        func total(_ n: Int, stage: Int) -> Int {
            let plan = AllocationPlan(partition: Partition(unitCounts: counts, ranks: n), opUnits: ops, rank: n - 1,
                                      stage: StagePlan(stage: stage), precision: .bf16, microBatch: 2, sequenceLength: 64,
                                      accumulationSteps: 1)
            return plan.buffers(optimizerStateBytesPerElement: 8, activationBytes: 0).reduce(0) { $0 + $1.bytes }
        }
        for stage in 0...3 {
            let (one, n64, n256) = (total(1, stage: stage), total(64, stage: stage), total(256, stage: stage))
            // Never more per rank than one rank holding everything, plus one block per unit per sharded term.
            #expect(n256 <= one + 4 * 1024 * 32, "stage \(stage): \(n256) vs \(one)")
            // Per-rank bytes do not grow from 64 to 256 ranks (the sharded part shrinks).
            #expect(n256 <= n64, "stage \(stage): \(n256) at 256 ranks, \(n64) at 64")
            // Total over ranks: linear in N (ratio 4 for 4x the ranks, within 1%).
            #expect(Double(256 * n256) / Double(64 * n64) < 4.04, "stage \(stage)")
        }
    }

    @Test func stagesAreData() {
        #expect(StagePlan(stage: 0).fullMaster && StagePlan(stage: 0).allReducesGradients)
        #expect(!StagePlan(stage: 1).fullMaster && StagePlan(stage: 1).gathersWeightsAfterUpdate)
        #expect(StagePlan(stage: 2).reduceGradientsPerUnit && StagePlan(stage: 2).fullWorkingWeights)
        #expect(StagePlan(stage: 3).gathersWeightsPerOp && !StagePlan(stage: 3).fullWorkingWeights)
    }
}
