import Foundation
import Testing
import ZeroComm
import ZeroEngine
import ZeroTensor

/// The balanced tree over index order, split at the largest power of two below the count
/// (docs/determinism.md), computed plainly in one place.
func referenceTree(_ xs: ArraySlice<Float>) -> Float {
    if xs.count == 1 { return xs.first! }
    var half = 1
    while half * 2 < xs.count { half *= 2 }
    let mid = xs.startIndex + half
    return referenceTree(xs[xs.startIndex..<mid]) + referenceTree(xs[mid...])
}

@Suite struct DeterminismTests {
    /// Values of mixed magnitudes, where summation order shows in the bits.
    static func contributions(_ g: Int, count: Int) -> [Float] {
        var gen = SeededGenerator(seed: UInt64(g) &* 0x9E37_79B9 &+ 7)
        return (0..<count).map { _ in
            let m = Float(gen.next() % 2000) / 1000 - 1
            return m * Float(1 << (gen.next() % 24))
        }
    }

    @Test(arguments: [1, 2, 3, 4, 5, 6, 7, 8, 16])
    func binaryCounterEqualsTheBalancedTree(steps: Int) {
        let count = 64
        let acc = GradientAccumulator(count: count, accumulationSteps: steps, ledger: nil)
        let inputs = (0..<steps).map { Self.contributions($0, count: count) }
        for x in inputs {
            let b = acc.nextInput()
            for i in 0..<count { b[i] = x[i] }
            acc.push(b)
        }
        let total = acc.finish()
        for i in 0..<count {
            let expected = referenceTree(ArraySlice(inputs.map { $0[i] }))
            #expect(total[i].bitPattern == expected.bitPattern)
        }
        // Plain sequential accumulation is not the same order: the test data can tell.
        if steps >= 4 {  // for 3, (g0 + g1) + g2 is also the sequential order
            let sequential = (0..<count).map { i in inputs.dropFirst().reduce(inputs[0][i]) { $0 + $1[i] } }
            #expect((0..<count).contains { sequential[$0].bitPattern != total[$0].bitPattern })
        }
    }

    /// Ranks reduce (communicator tree) then accumulate (binary counter): the tree over g = a*N + r.
    @Test(arguments: [1, 2, 4, 8])
    func reductionThenAccumulationIsTheTreeOverG(ranks: Int) throws {
        let g = 8, count = 2048
        let a = g / ranks
        let inputs = (0..<g).map { Self.contributions($0, count: count) }
        let results = try SimulatedCluster.run(ranks: ranks) { comm in
            let acc = GradientAccumulator(count: count, accumulationSteps: a, ledger: nil)
            for step in 0..<a {
                let out = acc.nextInput()
                _ = out.pointer.update(fromContentsOf: inputs[step * ranks + comm.rank])
                try comm.allReduce(out.pointer)
                acc.push(out)
            }
            let total = acc.finish()
            return withExtendedLifetime(total) { Array(total.readOnly) }
        }
        for i in 0..<count {
            #expect(results[0][i].bitPattern == referenceTree(ArraySlice(inputs.map { $0[i] })).bitPattern)
        }
    }

    /// The contract: same config, seed, data, micro-batch and G give the same losses,
    /// grad norms and final master weights for every stage and power-of-two rank count.
    @Test func stagesAndRankCountsAgreeBitForBit() throws {
        let reference = try simulate(tinyConfig(stage: 0), ranks: 1)
        #expect(reference.losses.count == 3)
        #expect(reference.losses.allSatisfy { $0.isFinite && $0 > 1 })
        var runs: [(String, RunSummary)] = []
        for stage in 0...3 {
            for ranks in [1, 2, 4] where !(stage == 0 && ranks == 1) {
                runs.append(("stage \(stage) x \(ranks) ranks", try simulate(tinyConfig(stage: stage), ranks: ranks)))
            }
        }
        runs.append(("stage 3 x 8 ranks", try simulate(tinyConfig(stage: 3), ranks: 8)))
        for (name, run) in runs {
            #expect(bits(run.losses) == bits(reference.losses), "\(name): losses differ")
            #expect(bits(run.gradNorms) == bits(reference.gradNorms), "\(name): grad norms differ")
            #expect(run.paramsSHA256 == reference.paramsSHA256, "\(name): final master weights differ")
        }
    }

    @Test func fp32ModeIsAlsoStageIndependent() throws {
        var c0 = tinyConfig(stage: 0, globalMicroBatches: 4, steps: 2); c0.precision = .fp32
        var c3 = c0; c3.stage = .three
        let a = try simulate(c0, ranks: 1), b = try simulate(c3, ranks: 4)
        #expect(bits(a.losses) == bits(b.losses))
        #expect(a.paramsSHA256 == b.paramsSHA256)
    }
}


@Suite struct AdafactorDeterminismTests {
    /// Adafactor's factored statistics are whole-tensor sums combined exactly over ranks,
    /// so tensors cut by shard boundaries give the bits of whole ones.
    @Test func adafactorStagesAndRankCountsAgreeBitForBit() throws {
        func config(_ stage: Int) -> TrainingConfig {
            var c = tinyConfig(stage: stage, globalMicroBatches: 4, steps: 2)
            c.optimizer = .adafactor
            c.weightDecay = 0.01
            return c
        }
        let reference = try simulate(config(0), ranks: 1)
        #expect(reference.losses.allSatisfy { $0.isFinite })
        for stage in 0...3 {
            for ranks in [1, 2, 4] where !(stage == 0 && ranks == 1) {
                let run = try simulate(config(stage), ranks: ranks)
                #expect(bits(run.losses) == bits(reference.losses), "stage \(stage) x \(ranks) ranks: losses differ")
                #expect(run.paramsSHA256 == reference.paramsSHA256, "stage \(stage) x \(ranks) ranks: master differs")
            }
        }
    }
}
