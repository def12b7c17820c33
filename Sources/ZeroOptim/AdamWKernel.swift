import CZeroKernels
import ZeroTensor

/// The fused single-pass mixed-precision AdamW (and Adam with coupled L2) kernel.
///
/// Per element, in exactly this order (float32 unless noted; "fma" is one rounding), which is the
/// order of torch.optim.AdamW's for-loop CPU path on AVX2 (docs/optimizers.md, "AdamW: the documented order"):
/// ```
/// g = fma(p, l2, g)                          Adam only (coupled L2: grad.add(param, alpha=wd))
/// p = p * decayFactor                        AdamW only, decaying segments only; decayFactor = f32(1 - lr*wd)
/// m = fma(w, g - m, m)                       lerp_(g, w), w = f32(1 - beta1) < 0.5
///   = fma(w - 1, g - m, g)                   (lerp's other branch when w >= 0.5)
/// v = fma(f32(1 - beta2) * g, g, v * f32(beta2))
/// d = sqrt(v) / f32(sqrt(1 - beta2^t)) + f32(eps)
/// p = p + (f32(-(lr / (1 - beta1^t))) * m) / d
/// working = bf16_rne(p)
/// ```
/// Bias corrections are computed in Double with C `pow`, as Python does. The scalar tail runs
/// the same operations one lane at a time, so every element gets the same bits wherever it sits.
public enum AdamWKernel {
    /// The float32 scalars of one step, computed once per step and segment.
    public struct Coefficients: Sendable, Equatable {
        /// Multiplies p before the update; nil when no decoupled decay applies (torch skips the multiply).
        public var decayFactor: Float?
        /// Coupled L2 factor added to the gradient (Adam); nil when none.
        public var l2: Float?
        public var lerpWeight: Float
        public var beta2: Float
        public var oneMinusBeta2: Float
        public var biasCorrection2Sqrt: Float
        public var eps: Float
        public var negativeStepSize: Float

        /// torch's scalars for `config` at 1-based `step` with learning rate `learningRate`;
        /// `decays` says whether weight decay applies to the segment.
        public init(config: OptimizerConfig, step: Int, learningRate lr: Double, decays: Bool) {
            let wd = decays ? config.weightDecay : 0
            decayFactor = (config.kind != .adam && wd != 0) ? Float(1 - lr * wd) : nil
            l2 = (config.kind == .adam && wd != 0) ? Float(wd) : nil
            lerpWeight = Float(1 - config.beta1)
            beta2 = Float(config.beta2)
            oneMinusBeta2 = Float(1 - config.beta2)
            let t = Double(step)
            let bc1 = 1 - cPow(config.beta1, t)
            let bc2 = 1 - cPow(config.beta2, t)
            biasCorrection2Sqrt = Float(bc2.squareRoot())
            eps = Float(config.eps)
            negativeStepSize = Float(-(lr / bc1))
        }
    }

    /// Elements ahead that the loop asks the cache for (the loop is divider-bound in cache, so
    /// the memory streams need a head start to overlap with the arithmetic).
    static let prefetchDistance = 512

    /// One AdamW step over `count` elements; `working` (may be nil) receives bf16 of the new p.
    public static func step(master p: UnsafeMutablePointer<Float>, gradient g: UnsafePointer<Float>,
                            m: UnsafeMutablePointer<Float>, v: UnsafeMutablePointer<Float>,
                            working: UnsafeMutablePointer<UInt16>?, count: Int, _ c: Coefficients) {
        let small = abs(c.lerpWeight) < 0.5
        let wS: Float = small ? c.lerpWeight : c.lerpWeight - 1
        let decay = c.decayFactor ?? 1, hasDecay = c.decayFactor != nil
        let l2 = c.l2 ?? 0, hasL2 = c.l2 != nil
        let w8 = SIMD8<Float>(repeating: wS), b2 = SIMD8<Float>(repeating: c.beta2)
        let omb2 = SIMD8<Float>(repeating: c.oneMinusBeta2), bc2 = SIMD8<Float>(repeating: c.biasCorrection2Sqrt)
        let eps = SIMD8<Float>(repeating: c.eps), ss = SIMD8<Float>(repeating: c.negativeStepSize)
        let decay8 = SIMD8<Float>(repeating: decay), l2v = SIMD8<Float>(repeating: l2)
        let vectorEnd = count & ~7
        var i = 0
        while i < vectorEnd {
            if i & 15 == 0 {
                zt_prefetch(p + i + prefetchDistance); zt_prefetch(g + i + prefetchDistance)
                zt_prefetch(m + i + prefetchDistance); zt_prefetch(v + i + prefetchDistance)
            }
            var pv = UnsafeRawPointer(p + i).loadUnaligned(as: SIMD8<Float>.self)
            var gv = UnsafeRawPointer(g + i).loadUnaligned(as: SIMD8<Float>.self)
            var mv = UnsafeRawPointer(m + i).loadUnaligned(as: SIMD8<Float>.self)
            var vv = UnsafeRawPointer(v + i).loadUnaligned(as: SIMD8<Float>.self)
            if hasL2 { gv = zt_fma8(pv, l2v, gv) }
            if hasDecay { pv = pv * decay8 }
            mv = zt_fma8(w8, gv - mv, small ? mv : gv)
            vv = zt_fma8(omb2 * gv, gv, vv * b2)
            let d = zt_sqrt8(vv) / bc2 + eps
            pv = pv + (ss * mv) / d
            UnsafeMutableRawPointer(p + i).storeBytes(of: pv, as: SIMD8<Float>.self)
            UnsafeMutableRawPointer(m + i).storeBytes(of: mv, as: SIMD8<Float>.self)
            UnsafeMutableRawPointer(v + i).storeBytes(of: vv, as: SIMD8<Float>.self)
            if let working {
                UnsafeMutableRawPointer(working + i).storeBytes(of: zt_bf16_round8(pv), as: SIMD8<UInt16>.self)
            }
            i += 8
        }
        while i < count {
            var pi = p[i], gi = g[i], mi = m[i], vi = v[i]
            if hasL2 { gi = gi.addingProduct(pi, l2) }
            if hasDecay { pi = pi * decay }
            mi = (small ? mi : gi).addingProduct(wS, gi - mi)
            vi = (vi * c.beta2).addingProduct(c.oneMinusBeta2 * gi, gi)
            let d = vi.squareRoot() / c.biasCorrection2Sqrt + c.eps
            pi = pi + (c.negativeStepSize * mi) / d
            p[i] = pi; m[i] = mi; v[i] = vi
            working?[i] = BFloat16.round(pi)
            i += 1
        }
    }
}

/// AdamW (decoupled decay) or Adam (coupled L2) over one shard, fp32 master and moments,
/// one fused pass per decay run.
final class AdamWOptimizer: FusedOptimizer {
    let setup: ShardSetup
    let m: FlatBuffer<Float>
    let v: FlatBuffer<Float>

    init(_ setup: ShardSetup) {
        self.setup = setup
        m = setup.state()
        v = setup.state()
    }

    var state: [OptimizerStateArray] {
        [OptimizerStateArray(name: "exp_avg", floats: m), OptimizerStateArray(name: "exp_avg_sq", floats: v)]
    }
    var supportsResharding: Bool { true }

    func step(master: UnsafeMutableBufferPointer<Float>, gradient: UnsafeBufferPointer<Float>,
              working: UnsafeMutableBufferPointer<UInt16>?, context: StepContext) throws {
        try checkStepArguments(count: count, master: master, gradient: gradient, working: working, context: context)
        for run in decay.runs {
            let c = AdamWKernel.Coefficients(config: config, step: context.step,
                                             learningRate: context.learningRate, decays: run.decays)
            let lo = run.range.lowerBound
            AdamWKernel.step(master: master.baseAddress! + lo, gradient: gradient.baseAddress! + lo,
                             m: m.pointer.baseAddress! + lo, v: v.pointer.baseAddress! + lo,
                             working: working.map { $0.baseAddress! + lo }, count: run.range.count, c)
        }
    }
}
