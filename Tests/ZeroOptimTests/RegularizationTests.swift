import Foundation
import Testing
import ZeroOptim
import ZeroTensor

/// Coupled L1 / L2 (`--l1`, `--l2`): added to the gradient before any optimizer, on the decay
/// segments only. Against torch (Tests/Fixtures/make_regularization_fixtures.py) and against
/// the chains (regularization transforms prepended to every family's recipe).
@Suite struct RegularizationTests {
    struct Strengths: Decodable { var l1: Double; var l2: Double }

    /// Steps `optimizer` through the fixture, adding the fixture's L1 and L2 to each gradient first.
    func run(_ name: String, reference: (OptimizerFixture) -> [[UInt32]]) throws -> (differing: [Int], moved: Bool) {
        let f = try loadFixture(name)
        let s = try loadFixture(name, as: Strengths.self)
        let regularization = CoupledRegularization(l1: s.l1, l2: s.l2)
        let optimizer = try makeOptimizer(f.config.optimizerConfig, count: f.n, decaySegments: f.decaySegments, ledger: nil)
        var master = Inputs.params(seed: f.seed, count: f.n)
        let initial = master
        var differing: [Int] = []
        for t in 1...f.steps {
            var g = Inputs.gradient(seed: f.seed, step: t, count: f.n)
            try master.withUnsafeMutableBufferPointer { m in
                try g.withUnsafeMutableBufferPointer { gp in
                    try regularization.apply(to: gp, params: m, segments: f.decaySegments)
                    try optimizer.step(master: m, gradient: UnsafeBufferPointer(gp), working: nil,
                                       context: StepContext(step: t, learningRate: f.config.lr))
                }
            }
            let expected = floats(reference(f)[t - 1])
            differing.append(zip(master, expected).filter { $0.bitPattern != $1.bitPattern }.count)
        }
        return (differing, master != initial)
    }

    /// SGD with momentum, L2 as torch's weight_decay and L1 in the loss: bit-exact over 10 steps.
    @Test func sgdMatchesTorchBitForBit() throws {
        let r = try run("reg_sgd") { $0.params }
        #expect(r.differing.allSatisfy { $0 == 0 }, "elements differing per step: \(r.differing)")
        #expect(r.moved)
    }

    /// Adam(weight_decay = l2) with L1 in the loss, and AdamW(decoupled 0.1) with L1 and a hand-added
    /// coupled L2: bit-exact against torch run with a correctly rounded sqrt (see "IEEE sqrt").
    @Test(arguments: ["reg_adam", "reg_adamw"])
    func adamFamilyMatchesTorchBitForBit(_ name: String) throws {
        let r = try run(name) { $0.params_ieee_sqrt! }
        #expect(r.differing.allSatisfy { $0 == 0 }, "\(name): elements differing per step: \(r.differing)")
        #expect(r.moved)
    }

    /// The penalties change the trajectory: without them torch's fixture is not reproduced.
    @Test func fixturesNeedThePenalties() throws {
        let f = try loadFixture("reg_sgd")
        let optimizer = try makeOptimizer(f.config.optimizerConfig, count: f.n, decaySegments: f.decaySegments, ledger: nil)
        var master = Inputs.params(seed: f.seed, count: f.n)
        let g = Inputs.gradient(seed: f.seed, step: 1, count: f.n)
        try master.withUnsafeMutableBufferPointer { m in
            try g.withUnsafeBufferPointer { try optimizer.step(master: m, gradient: $0, working: nil, context: StepContext(step: 1, learningRate: f.config.lr)) }
        }
        let expected = floats(f.params[0])
        #expect(zip(master, expected).filter { $0.bitPattern != $1.bitPattern }.count > 60)
    }

    /// Element by element: g + l1 sign(p) (sign(0) = 0), then fma(p, l2, .), inside the segments;
    /// outside them the gradient is untouched.
    @Test func elementFormulaAndMask() throws {
        let n = 300, segments = [10..<100, 200..<260]
        var p = Inputs.params(seed: 5, count: n)
        p[20] = 0; p[21] = -0.0
        let g0 = Inputs.gradient(seed: 5, step: 1, count: n)
        var g = g0
        let l1 = 0.003, l2 = 0.07
        try p.withUnsafeMutableBufferPointer { pp in
            try g.withUnsafeMutableBufferPointer { try CoupledRegularization(l1: l1, l2: l2).apply(to: $0, params: pp, segments: segments) }
        }
        for i in 0..<n {
            let inside = segments.contains { $0.contains(i) }
            let sign: Float = p[i] > 0 ? 1 : (p[i] < 0 ? -1 : 0)
            let expected = inside ? (g0[i] + Float(l1) * sign).addingProduct(p[i], Float(l2)) : g0[i]
            #expect(g[i].bitPattern == expected.bitPattern, "element \(i)")
        }
        #expect(g[20] == g0[20] && g[21] == g0[21], "sign(0) is 0 and p = 0 adds no L2")
    }

    /// For every family: regularize-then-fused-kernel (what the engine runs) equals the chain with
    /// the penalties prepended, bit for bit over 8 steps, with masked segments and a ragged tail.
    @Test(arguments: 0..<ChainTests.members.count)
    func engineOrderEqualsTheChain(_ index: Int) throws {
        let (name, config) = ChainTests.members[index]
        let n = 1037
        let segments = [0..<(n / 3), (n / 2)..<n]
        let regularization = CoupledRegularization(l1: 2e-3, l2: 0.05)
        let fused = try makeOptimizer(config, count: n, decaySegments: segments, ledger: nil)
        let chain = Chain(regularization.transforms(segments: segments) + [try Recipes.chain(config, count: n, decaySegments: segments)])
        let plain = try makeOptimizer(config, count: n, decaySegments: segments, ledger: nil)
        var a = Inputs.params(seed: 12, count: n), b = a, c = a
        var scratch = [Float](repeating: 0, count: n)
        for t in 1...8 {
            let g = Inputs.gradient(seed: 12, step: t, count: n)
            let lr = config.learningRate * Double(9 - t) / 8
            var rg = g
            try a.withUnsafeMutableBufferPointer { p in
                try rg.withUnsafeMutableBufferPointer { gp in
                    try regularization.apply(to: gp, params: p, segments: segments)
                    try fused.step(master: p, gradient: UnsafeBufferPointer(gp), working: nil, context: StepContext(step: t, learningRate: lr))
                }
            }
            _ = try b.withUnsafeMutableBufferPointer { p in
                try g.withUnsafeBufferPointer { gp in
                    try scratch.withUnsafeMutableBufferPointer { try Recipes.step(chain, params: p, gradient: gp, scratch: $0, step: t, learningRate: lr) }
                }
            }
            try c.withUnsafeMutableBufferPointer { p in
                try g.withUnsafeBufferPointer { try plain.step(master: p, gradient: $0, working: nil, context: StepContext(step: t, learningRate: lr)) }
            }
            let differing = zip(a, b).filter { $0.bitPattern != $1.bitPattern }.count
            #expect(differing == 0, "\(name), step \(t): \(differing) of \(n) parameters differ")
        }
        #expect(a != c, "\(name): the penalties changed nothing")
    }

    /// The seed's point, measured (docs/optimizers.md): 256 weights per gradient scale (1, 0.1, 0.01),
    /// all starting at 1, zero-mean gradients, 1000 steps at lr 1e-3. Adam with L2 0.1 in the gradient
    /// shrinks weights with small gradients far more than those with large ones (the adaptive
    /// denominator rescales the penalty per coordinate); AdamW's decoupled 0.1 shrinks all alike,
    /// by about (1 - 1e-4)^1000 = 0.905.
    @Test func l2UnderAdamSparesWeightsWithLargeGradients() throws {
        let n = 256, scales: [Float] = [1, 0.1, 0.01]
        func means(_ config: OptimizerConfig, _ regularization: CoupledRegularization) throws -> [Double] {
            let optimizer = try makeOptimizer(config, count: 3 * n, decaySegments: [0..<(3 * n)], ledger: nil)
            var p = [Float](repeating: 1, count: 3 * n)
            for t in 1...1000 {
                var g = Inputs.uniform(seed: 500 + t, count: 3 * n)
                for i in g.indices { g[i] *= scales[i / n] }
                try p.withUnsafeMutableBufferPointer { pp in
                    try g.withUnsafeMutableBufferPointer { gp in
                        try regularization.apply(to: gp, params: pp, segments: [0..<(3 * n)])
                        try optimizer.step(master: pp, gradient: UnsafeBufferPointer(gp), working: nil,
                                           context: StepContext(step: t, learningRate: 1e-3))
                    }
                }
            }
            return (0..<3).map { k in p[(k * n)..<((k + 1) * n)].reduce(0.0) { $0 + Double($1) } / Double(n) }
        }
        let adamL2 = try means(OptimizerConfig(kind: .adam, learningRate: 1e-3, weightDecay: 0), CoupledRegularization(l2: 0.1))
        let adamW = try means(OptimizerConfig(kind: .adamw, learningRate: 1e-3, weightDecay: 0.1), CoupledRegularization())
        print("mean weight after 1000 steps, gradient scales 1 / 0.1 / 0.01: adam --l2 0.1:", adamL2, "adamw --weight-decay 0.1:", adamW)
        #expect(adamL2[0] > 0.8 && adamL2[1] < 0.5 && adamL2[2] < adamL2[1])
        #expect(adamW.allSatisfy { abs($0 - 0.905) < 0.01 })
    }
}
