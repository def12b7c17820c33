import Testing
import ZeroComm
import ZeroOptim
import ZeroTensor

/// Adafactor's whole-tensor statistics do not depend on how the tensors are cut over ranks.
@Suite struct AdafactorShardingTests {
    /// A unit of matrices and vectors, with padding after the last tensor.
    static let shapes: [ParameterShape] = [
        .vector(0..<37),
        ParameterShape(range: 37..<(37 + 48 * 40), rows: 48, cols: 40),
        .vector((37 + 1920)..<(37 + 1920 + 40)),
        ParameterShape(range: 1997..<(1997 + 64 * 33), rows: 64, cols: 33),
    ]
    static let used = 1997 + 64 * 33
    static let padded = 8192

    /// Runs `steps` steps with the unit cut into `ranks` equal shards; returns the whole master.
    func run(ranks: Int, steps: Int = 4) throws -> [Float] {
        let n = Self.padded, s = n / ranks
        var c = OptimizerConfig(kind: .adafactor)
        c.weightDecay = 0.1
        let config = c
        var p0 = Inputs.params(seed: 3, count: n)
        for i in Self.used..<n { p0[i] = 0 }
        let start = p0
        let parts = try SimulatedCluster.run(ranks: ranks) { comm in
            let range = comm.rank * s ..< (comm.rank + 1) * s
            let decay = (37..<1957).clamped(to: range)
            let opt = try makeOptimizer(config, count: s, decaySegments: decay.isEmpty ? [] : [(decay.lowerBound - range.lowerBound)..<(decay.upperBound - range.lowerBound)],
                                        parameterShapes: Self.shapes, shardOffset: range.lowerBound,
                                        shardedAcrossRanks: ranks > 1, ledger: nil)
            #expect(opt.supportsResharding && opt.state.allSatisfy { $0.isReplicated })
            var master = Array(start[range])
            for t in 1...steps {
                var g = Inputs.gradient(seed: 3, step: t, count: n)
                for i in Self.used..<n { g[i] = 0 }
                let mine = Array(g[range])
                try master.withUnsafeMutableBufferPointer { m in
                    try mine.withUnsafeBufferPointer {
                        try opt.step(master: m, gradient: $0, working: nil,
                                     context: StepContext(step: t, learningRate: 1e-2, communicator: comm))
                    }
                }
            }
            return master
        }
        let whole = parts.flatMap { $0 }
        #expect(whole != start)
        return whole
    }

    @Test func cutTensorsGiveTheBitsOfWholeOnes() throws {
        let one = try run(ranks: 1)
        for ranks in [2, 4, 8] {  // cuts inside rows, inside vectors, between tensors
            let cut = try run(ranks: ranks)
            #expect(cut.map(\.bitPattern) == one.map(\.bitPattern), "\(ranks) ranks")
        }
    }

    @Test func paddingIsLeftAlone() throws {
        let one = try run(ranks: 2)
        #expect(one[Self.used...].allSatisfy { $0 == 0 })
    }
}
