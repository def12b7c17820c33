import CZeroKernels
import ZeroTensor

// Shard-local ports of torch.optim's for-loop CPU paths. Each line mirrors one torch op;
// `a.addingProduct(b, c)` is torch's fused `add(…, alpha:)` / `addcmul` / `lerp` (fma on AVX2).

/// Coupled L2 of torch's SGD, Adagrad and RMSprop: grad.add(param, alpha=wd) = fma(p, wd, g).
@inline(__always) func coupledGradient(_ g: Float, _ p: Float, _ wd: Float?) -> Float {
    guard let wd else { return g }
    return g.addingProduct(p, wd)
}

/// torch.optim.SGD: coupled decay, momentum buffer (cloned from the first gradient), dampening, Nesterov.
final class SGDOptimizer: FusedOptimizer {
    let setup: ShardSetup
    let buffer: FlatBuffer<Float>?

    init(_ setup: ShardSetup) {
        self.setup = setup
        buffer = setup.config.momentum != 0 ? setup.state() : nil
    }

    var state: [OptimizerStateArray] { buffer.map { [OptimizerStateArray(name: "momentum_buffer", floats: $0)] } ?? [] }
    var supportsResharding: Bool { true }

    func step(master p: UnsafeMutableBufferPointer<Float>, gradient: UnsafeBufferPointer<Float>,
              working: UnsafeMutableBufferPointer<UInt16>?, context: StepContext) throws {
        try checkStepArguments(count: count, master: p, gradient: gradient, working: working, context: context)
        let mom = Float(config.momentum), oneMinusDampening = Float(1 - config.dampening)
        let negLR = Float(-context.learningRate), first = context.step == 1
        for run in decay.runs {
            let wd: Float? = run.decays && config.weightDecay != 0 ? Float(config.weightDecay) : nil
            for i in run.range {
                var g = coupledGradient(gradient[i], p[i], wd)
                if let b = buffer?.pointer {
                    b[i] = first ? g : (b[i] * mom).addingProduct(g, oneMinusDampening)
                    g = config.nesterov ? g.addingProduct(b[i], mom) : b[i]
                }
                p[i] = p[i].addingProduct(g, negLR)
            }
        }
        writeBack(p, working)
    }
}

/// torch.optim.Adagrad: clr = lr / (1 + (step - 1) * lr_decay); sum += g*g; p += (-clr * g) / (sqrt(sum) + eps).
final class AdagradOptimizer: FusedOptimizer {
    let setup: ShardSetup
    let sum: FlatBuffer<Float>

    init(_ setup: ShardSetup) {
        self.setup = setup
        sum = setup.state()
        sum.fill(Float(setup.config.initialAccumulatorValue))
    }

    var state: [OptimizerStateArray] { [OptimizerStateArray(name: "sum", floats: sum)] }
    var supportsResharding: Bool { true }

    func step(master p: UnsafeMutableBufferPointer<Float>, gradient: UnsafeBufferPointer<Float>,
              working: UnsafeMutableBufferPointer<UInt16>?, context: StepContext) throws {
        try checkStepArguments(count: count, master: p, gradient: gradient, working: working, context: context)
        let clr = context.learningRate / (1 + Double(context.step - 1) * config.learningRateDecay)
        let negCLR = Float(-clr), eps = Float(config.eps)
        let s = sum.pointer
        for run in decay.runs {
            let wd: Float? = run.decays && config.weightDecay != 0 ? Float(config.weightDecay) : nil
            for i in run.range {
                let g = coupledGradient(gradient[i], p[i], wd)
                s[i] = s[i].addingProduct(g, g)
                let std = s[i].squareRoot() + eps
                p[i] = p[i] + (negCLR * g) / std
            }
        }
        writeBack(p, working)
    }
}

/// torch.optim.RMSprop: square_avg = fma((1-alpha)*g, g, sa*alpha); optional centered grad_avg (lerp)
/// and momentum buffer.
final class RMSpropOptimizer: FusedOptimizer {
    let setup: ShardSetup
    let squareAverage: FlatBuffer<Float>
    let gradientAverage: FlatBuffer<Float>?
    let buffer: FlatBuffer<Float>?

    init(_ setup: ShardSetup) {
        self.setup = setup
        squareAverage = setup.state()
        gradientAverage = setup.config.centered ? setup.state() : nil
        buffer = setup.config.momentum > 0 ? setup.state() : nil
    }

    var state: [OptimizerStateArray] {
        var s = [OptimizerStateArray(name: "square_avg", floats: squareAverage)]
        if let buffer { s.append(OptimizerStateArray(name: "momentum_buffer", floats: buffer)) }
        if let gradientAverage { s.append(OptimizerStateArray(name: "grad_avg", floats: gradientAverage)) }
        return s
    }
    var supportsResharding: Bool { true }

    func step(master p: UnsafeMutableBufferPointer<Float>, gradient: UnsafeBufferPointer<Float>,
              working: UnsafeMutableBufferPointer<UInt16>?, context: StepContext) throws {
        try checkStepArguments(count: count, master: p, gradient: gradient, working: working, context: context)
        let a = Float(config.alpha), oneMinusAlpha = Float(1 - config.alpha), eps = Float(config.eps)
        let small = abs(oneMinusAlpha) < 0.5
        let mom = Float(config.momentum), negLR = Float(-context.learningRate)
        let sa = squareAverage.pointer
        for run in decay.runs {
            let wd: Float? = run.decays && config.weightDecay != 0 ? Float(config.weightDecay) : nil
            for i in run.range {
                let g = coupledGradient(gradient[i], p[i], wd)
                sa[i] = (sa[i] * a).addingProduct(oneMinusAlpha * g, g)
                var avg: Float
                if let ga = gradientAverage?.pointer {
                    ga[i] = small ? ga[i].addingProduct(oneMinusAlpha, g - ga[i])
                                  : g.addingProduct(oneMinusAlpha - 1, g - ga[i])
                    avg = sa[i].addingProduct(-ga[i], ga[i]).squareRoot()
                } else {
                    avg = sa[i].squareRoot()
                }
                avg = avg + eps
                if let b = buffer?.pointer {
                    b[i] = b[i] * mom + g / avg
                    p[i] = p[i].addingProduct(b[i], negLR)
                } else {
                    p[i] = p[i] + (negLR * g) / avg
                }
            }
        }
        writeBack(p, working)
    }
}

/// Lion (lucidrains/lion-pytorch): p *= 1 - lr*wd; c = fma(g, 1-b1, m*b1); p = fma(sign(c), -lr, p);
/// m = fma(g, 1-b2, m*b2). Vectorized with bf16 write-back (one of the benchmarked kernels).
final class LionOptimizer: FusedOptimizer {
    let setup: ShardSetup
    let m: FlatBuffer<Float>

    init(_ setup: ShardSetup) {
        self.setup = setup
        m = setup.state()
    }

    var state: [OptimizerStateArray] { [OptimizerStateArray(name: "exp_avg", floats: m)] }
    var supportsResharding: Bool { true }

    func step(master p: UnsafeMutableBufferPointer<Float>, gradient: UnsafeBufferPointer<Float>,
              working: UnsafeMutableBufferPointer<UInt16>?, context: StepContext) throws {
        try checkStepArguments(count: count, master: p, gradient: gradient, working: working, context: context)
        let lr = context.learningRate
        for run in decay.runs {
            let wd = run.decays ? config.weightDecay : 0
            let lo = run.range.lowerBound
            LionOptimizer.kernel(p: p.baseAddress! + lo, g: gradient.baseAddress! + lo, m: m.pointer.baseAddress! + lo,
                                 working: working.map { $0.baseAddress! + lo }, count: run.range.count,
                                 decay: Float(1 - lr * wd), beta1: Float(config.beta1),
                                 oneMinusBeta1: Float(1 - config.beta1), beta2: Float(config.beta2),
                                 oneMinusBeta2: Float(1 - config.beta2), negLR: Float(-lr))
        }
    }

    static func kernel(p: UnsafeMutablePointer<Float>, g: UnsafePointer<Float>, m: UnsafeMutablePointer<Float>,
                       working: UnsafeMutablePointer<UInt16>?, count: Int, decay: Float, beta1: Float,
                       oneMinusBeta1: Float, beta2: Float, oneMinusBeta2: Float, negLR: Float) {
        let d8 = SIMD8<Float>(repeating: decay), b1 = SIMD8<Float>(repeating: beta1)
        let omb1 = SIMD8<Float>(repeating: oneMinusBeta1), b2 = SIMD8<Float>(repeating: beta2)
        let omb2 = SIMD8<Float>(repeating: oneMinusBeta2), lr8 = SIMD8<Float>(repeating: negLR)
        let one = SIMD8<Float>(repeating: 1), zero = SIMD8<Float>(repeating: 0)
        let vectorEnd = count & ~7
        var i = 0
        while i < vectorEnd {
            var pv = UnsafeRawPointer(p + i).loadUnaligned(as: SIMD8<Float>.self)
            let gv = UnsafeRawPointer(g + i).loadUnaligned(as: SIMD8<Float>.self)
            let mv = UnsafeRawPointer(m + i).loadUnaligned(as: SIMD8<Float>.self)
            pv = pv * d8
            let c = zt_fma8(gv, omb1, mv * b1)
            var s = zero
            s.replace(with: one, where: c .> zero)
            s.replace(with: -one, where: c .< zero)
            s.replace(with: c, where: c .!= c)  // sign(NaN) = NaN
            pv = zt_fma8(s, lr8, pv)
            UnsafeMutableRawPointer(p + i).storeBytes(of: pv, as: SIMD8<Float>.self)
            UnsafeMutableRawPointer(m + i).storeBytes(of: zt_fma8(gv, omb2, mv * b2), as: SIMD8<Float>.self)
            if let working {
                UnsafeMutableRawPointer(working + i).storeBytes(of: zt_bf16_round8(pv), as: SIMD8<UInt16>.self)
            }
            i += 8
        }
        while i < count {
            let c = (m[i] * beta1).addingProduct(g[i], oneMinusBeta1)
            let s: Float = c > 0 ? 1 : (c < 0 ? -1 : (c.isNaN ? c : 0))
            p[i] = (p[i] * decay).addingProduct(s, negLR)
            m[i] = (m[i] * beta2).addingProduct(g[i], oneMinusBeta2)
            working?[i] = BFloat16.round(p[i])
            i += 1
        }
    }
}
