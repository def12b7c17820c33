import Testing
import ZeroEngine
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

    @Test func stagesAreData() {
        #expect(StagePlan(stage: 0).fullMaster && StagePlan(stage: 0).allReducesGradients)
        #expect(!StagePlan(stage: 1).fullMaster && StagePlan(stage: 1).gathersWeightsAfterUpdate)
        #expect(StagePlan(stage: 2).reduceGradientsPerUnit && StagePlan(stage: 2).fullWorkingWeights)
        #expect(StagePlan(stage: 3).gathersWeightsPerOp && !StagePlan(stage: 3).fullWorkingWeights)
    }
}
