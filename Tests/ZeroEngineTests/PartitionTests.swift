import Testing
import ZeroEngine
import ZeroTensor

@Suite struct PartitionTests {
    @Test func padsEveryUnitToRanksTimesAlignment() {
        let p = Partition(unitCounts: [20480, 49_984, 128], ranks: 4)
        #expect(p.paddedCounts == [20480, 53_248, 4096])
        #expect(p.shardCount(unit: 1) == 13_312)
        #expect(p.shardRange(unit: 1, rank: 3) == 39_936 ..< 53_248)
        #expect(p.paddingElements == 53_248 - 49_984 + 4096 - 128)
        #expect(p.shardTotal * 4 == p.paddedTotal)
    }

    @Test(arguments: [1, 2, 3, 4, 8])
    func shardsTileTheUnitWithoutOverlap(ranks: Int) {
        let p = Partition(unitCounts: [5000, 1], ranks: ranks)
        for u in 0..<2 {
            var next = 0
            for r in 0..<ranks {
                let range = p.shardRange(unit: u, rank: r)
                #expect(range.lowerBound == next)
                #expect(range.lowerBound % Partition.alignment == 0)
                next = range.upperBound
            }
            #expect(next == p.paddedCounts[u])
        }
    }

    @Test func stagesAreData() {
        #expect(StagePlan(stage: 0).fullMaster && StagePlan(stage: 0).allReducesGradients)
        #expect(!StagePlan(stage: 1).fullMaster && StagePlan(stage: 1).gathersWeightsAfterUpdate)
        #expect(StagePlan(stage: 2).reduceGradientsPerUnit && StagePlan(stage: 2).fullWorkingWeights)
        #expect(StagePlan(stage: 3).gathersWeightsPerOp && !StagePlan(stage: 3).fullWorkingWeights)
    }
}
