import Testing
import ZeroOptim
import ZeroTensor

/// Every fused optimizer is a fast implementation of its chain of transforms: same bits, step after step.
/// (Adafactor's optimizer runs its chain; the test still checks its state and decay wiring.)
@Suite struct ChainTests {
    /// A family member: name, config.
    static let members: [(String, OptimizerConfig)] = {
        func c(_ kind: OptimizerKind, _ edit: (inout OptimizerConfig) -> Void = { _ in }) -> OptimizerConfig {
            var c = OptimizerConfig(kind: kind)
            c.learningRate = 3e-2
            c.weightDecay = 0.1
            edit(&c)
            return c
        }
        return [
            ("adamw", c(.adamw)),
            ("adam-l2", c(.adam) { $0.beta1 = 0.4 }),
            ("sgd", c(.sgd)),
            ("sgd-momentum", c(.sgd) { $0.momentum = 0.9; $0.dampening = 0.1 }),
            ("sgd-nesterov", c(.sgd) { $0.momentum = 0.9; $0.nesterov = true }),
            ("adagrad", c(.adagrad) { $0.learningRateDecay = 0.01; $0.initialAccumulatorValue = 0.1 }),
            ("rmsprop", c(.rmsprop)),
            ("rmsprop-centered", c(.rmsprop) { $0.centered = true; $0.alpha = 0.3 }),
            ("rmsprop-momentum", c(.rmsprop) { $0.momentum = 0.9 }),
            ("rmsprop-centered-momentum", c(.rmsprop) { $0.centered = true; $0.momentum = 0.5 }),
            ("lion", c(.lion) { $0.learningRate = 1e-3 }),
            ("adamw8bit", c(.adamw8bit)),
            ("adafactor", c(.adafactor)),
        ]
    }()

    @Test(arguments: 0..<members.count)
    func fusedKernelEqualsChain(_ index: Int) throws {
        let (name, config) = Self.members[index]
        let n = 1037  // a tail shorter than a vector and than a quantization block
        let segments = [0..<(n / 3), (n / 2)..<n]
        let fused = try makeOptimizer(config, count: n, decaySegments: segments, ledger: nil)
        let chain = try Recipes.chain(config, count: n, decaySegments: segments)
        var a = Inputs.params(seed: 11, count: n), b = a
        var scratch = [Float](repeating: 0, count: n)
        var moved = false
        for t in 1...8 {
            let g = Inputs.gradient(seed: 11, step: t, count: n)
            let lr = config.learningRate * Double(9 - t) / 8
            let before = a
            try a.withUnsafeMutableBufferPointer { p in
                try g.withUnsafeBufferPointer { try fused.step(master: p, gradient: $0, working: nil, context: StepContext(step: t, learningRate: lr)) }
            }
            _ = try b.withUnsafeMutableBufferPointer { p in
                try g.withUnsafeBufferPointer { gp in
                    try scratch.withUnsafeMutableBufferPointer { try Recipes.step(chain, params: p, gradient: gp, scratch: $0, step: t, learningRate: lr) }
                }
            }
            moved = moved || a != before
            let differing = zip(a, b).filter { $0.bitPattern != $1.bitPattern }.count
            #expect(differing == 0, "\(name), step \(t): \(differing) of \(n) parameters differ")
        }
        #expect(moved, "\(name): the parameters never moved")
    }
}
