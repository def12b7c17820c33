import Testing
import ZeroOptim
import ZeroTensor

@Suite("Optimizer family against torch counterparts")
struct FamilyTests {
    /// Element-wise ports of torch's for-loop paths: bit-exact where torch's ops are correctly
    /// rounded (no sqrt), else within a few ulp of the update from torch's own previous step.
    @Test(arguments: ["sgd_momentum", "sgd_nesterov", "sgd_plain", "lion"])
    func bitExactWithoutSquareRoots(_ name: String) throws {
        let f = try loadFixture(name)
        let opt = try makeOptimizer(f.config.optimizerConfig, count: f.n, decaySegments: f.decaySegments, ledger: nil)
        let r = try runTrajectory(f, opt)
        #expect(r.maxULP.allSatisfy { $0 == 0 }, "\(name): \(r.maxULP)")
        for (key, bits) in f.state {
            #expect(stateFloats(opt, key).map(\.bitPattern) == bits, "\(name) \(key)")
        }
    }

    /// Bit for bit against torch's own optimizer run with a correctly rounded sqrt.
    @Test(arguments: ["adagrad", "rmsprop", "rmsprop_centered_momentum"])
    func bitExactUnderIEEESquareRoot(_ name: String) throws {
        let f = try loadFixture(name)
        let opt = try makeOptimizer(f.config.optimizerConfig, count: f.n, decaySegments: f.decaySegments, ledger: nil)
        let r = try runTrajectory(f, opt, reference: f.params_ieee_sqrt!)
        #expect(r.maxULP.allSatisfy { $0 == 0 }, "\(name): \(r.maxULP)")
    }

    /// Against torch as it runs (MKL sqrt), over the whole trajectory: sqrt's 1-ulp differences
    /// feed back through the state, so the bound is looser than one step's.
    @Test(arguments: ["adagrad", "rmsprop", "rmsprop_centered_momentum"])
    func withinUpdateULPsOfTorch(_ name: String) throws {
        let f = try loadFixture(name)
        let opt = try makeOptimizer(f.config.optimizerConfig, count: f.n, decaySegments: f.decaySegments, ledger: nil)
        var master = Inputs.params(seed: f.seed, count: f.n)
        var worst = 0.0
        for t in 1...f.steps {
            let previous = master
            let g = Inputs.gradient(seed: f.seed, step: t, count: f.n)
            try master.withUnsafeMutableBufferPointer { m in
                try g.withUnsafeBufferPointer { try opt.step(master: m, gradient: $0, working: nil, context: StepContext(step: t, learningRate: f.config.lr)) }
            }
            let expected = floats(f.params[t - 1])
            for i in 0..<f.n { worst = max(worst, updateULPs(ours: master[i], expected: expected[i], previous: previous[i])) }
        }
        print("\(name): worst \(worst) update-ulp over the trajectory")
        #expect(worst <= 32)
        for (key, bits) in f.state {
            let ours = stateFloats(opt, key)
            #expect(zip(ours, floats(bits)).allSatisfy { ulpDistance($0, $1) <= 8 }, "\(name) \(key)")
        }
    }

    @Test func adamw8bitMatchesReferenceAndTracksFP32() throws {
        let f = try loadFixture("adamw8bit")
        #expect(DynamicQuantizationMap.signed.map(\.bitPattern) == f.signed_map!)
        #expect(DynamicQuantizationMap.unsigned.map(\.bitPattern) == f.unsigned_map!)
        let config = f.config.optimizerConfig
        let opt = try makeOptimizer(config, count: f.n, decaySegments: f.decaySegments, ledger: nil)
        // The reference (torch ops, IEEE sqrt, searchsorted) is matched bit for bit, codes included.
        let r = try runTrajectory(f, opt)
        #expect(r.maxULP.allSatisfy { $0 == 0 }, "\(r.maxULP)")
        for (k, key) in ["exp_avg_q", "exp_avg_sq_q"].enumerated() {
            #expect(Array(opt.state[k].bytes).map(UInt32.init) == f.state[key]!, "\(key)")
        }
        for (k, key) in ["exp_avg_absmax", "exp_avg_sq_absmax"].enumerated() {
            #expect(Array(opt.state[k + 2].bytes.bindMemory(to: Float.self)).map(\.bitPattern) == f.state[key]!, "\(key)")
        }
        // Tracks fp32 AdamW: after 10 steps the parameters differ by far less than the distance travelled.
        let fp32 = try makeOptimizer(OptimizerConfig(kind: .adamw, learningRate: config.learningRate, weightDecay: config.weightDecay),
                                     count: f.n, decaySegments: f.decaySegments, ledger: nil)
        var p32 = Inputs.params(seed: f.seed, count: f.n)
        for t in 1...f.steps {
            let g = Inputs.gradient(seed: f.seed, step: t, count: f.n)
            try p32.withUnsafeMutableBufferPointer { m in
                try g.withUnsafeBufferPointer { try fp32.step(master: m, gradient: $0, working: nil, context: StepContext(step: t, learningRate: config.learningRate)) }
            }
        }
        let p0 = Inputs.params(seed: f.seed, count: f.n)
        let travelled = zip(p32, p0).map { Double(abs($0 - $1)) }.reduce(0, +)
        let gap = zip(p32, r.master).map { Double(abs($0 - $1)) }.reduce(0, +)
        print("adamw8bit vs fp32 AdamW: relative gap \(gap / travelled)")
        #expect(gap / travelled < 0.05)
        #expect(abs(config.stateBytesPerParameter - 2.03125) < 1e-12)
    }

    @Test func adafactorMatchesTorch() throws {
        let f = try loadFixture("adafactor")
        let shapes = f.shapes!
        var at = 0
        let parameterShapes: [ParameterShape] = shapes.map { s in
            defer { at += s[0] * s[1] }
            return ParameterShape(range: at..<(at + s[0] * s[1]), rows: s[0], cols: s[1])
        }
        let opt = try makeOptimizer(f.config.optimizerConfig, count: f.n, decaySegments: f.decaySegments,
                                    parameterShapes: parameterShapes, ledger: nil)
        #expect(opt.supportsResharding)
        var master = Inputs.params(seed: f.seed, count: f.n)
        var worst: Float = 0
        for t in 1...f.steps {
            let g = Inputs.gradient(seed: f.seed, step: t, count: f.n)
            try master.withUnsafeMutableBufferPointer { m in
                try g.withUnsafeBufferPointer { try opt.step(master: m, gradient: $0, working: nil, context: StepContext(step: t, learningRate: f.config.lr)) }
            }
            let expected = floats(f.params[t - 1])
            for i in 0..<f.n { worst = max(worst, abs(master[i] - expected[i]) / max(abs(expected[i]), 1e-3)) }
        }
        print("adafactor: worst relative error \(worst)")
        #expect(worst < 1e-5)
    }

    /// A tensor cut by the shard is an error unless the optimizer combines statistics over ranks.
    @Test func adafactorRejectsCutTensors() {
        #expect(throws: OptimizerError.self) {
            try makeOptimizer(OptimizerConfig(kind: .adafactor), count: 50, decaySegments: [],
                              parameterShapes: [ParameterShape(range: 0..<60, rows: 6, cols: 10)], ledger: nil)
        }
    }

    /// Every per-shard optimizer (L-BFGS is built over all units by the trainer: LBFGSTrainingTests).
    @Test(arguments: OptimizerKind.allCases.filter { $0 != .lbfgs })
    func bf16WriteBackAndLedger(_ kind: OptimizerKind) throws {
        let n = 2048 + 13
        let ledger = MemoryLedger()
        var config = OptimizerConfig(kind: kind)
        config.momentum = kind == .sgd ? 0.9 : 0
        let opt = try makeOptimizer(config, count: n, decaySegments: [0..<1000], ledger: ledger)
        var p = Inputs.params(seed: 5, count: n)
        var w = [UInt16](repeating: 0, count: n)
        let g = Inputs.gradient(seed: 5, step: 1, count: n)
        try p.withUnsafeMutableBufferPointer { pp in
            try g.withUnsafeBufferPointer { gp in
                try w.withUnsafeMutableBufferPointer { try opt.step(master: pp, gradient: gp, working: $0, context: StepContext(step: 1, learningRate: 1e-3)) }
            }
        }
        #expect(w == p.map(BFloat16.round))
        let stateBytes = opt.state.reduce(0) { $0 + $1.bytes.count }
        #expect(ledger.current(.optimizerState) == stateBytes)
        if kind != .adafactor {
            #expect(abs(Double(stateBytes) / Double(n) - config.stateBytesPerParameter) < 0.05)
            for s in opt.state { #expect(s.bytes.count == (n + s.parametersPerBlock - 1) / s.parametersPerBlock * s.bytesPerBlock) }
        }
    }

    @Test func lbfgsIsNotAPerShardOptimizer() {
        #expect(throws: OptimizerError.self) {
            try makeOptimizer(OptimizerConfig(kind: .lbfgs), count: 10, decaySegments: [], ledger: nil)
        }
    }
}
