import ZeroComm
import ZeroTensor

/// The update flowing through a chain of transforms, over one flat fp32 shard.
///
/// It is kept in torch's `addcdiv` form so that a chain reproduces PyTorch's order of
/// operations exactly: the final application is
/// `p = p + (f32(scaleNumerator / scaleDenominator) * values) / divisor` when a transform set a
/// divisor, else `p = fma(values, f32(scale), p)` (torch's `add_(x, alpha:)`).
/// Scalar factors are kept pending as a Double fraction because torch folds them into one
/// float32 scalar (`-lr / (1 - beta1^t)`) before touching the elements.
public struct ShardUpdate {
    /// Parameters (fp32 master); transforms such as decoupled decay may change them directly.
    public var params: UnsafeMutableBufferPointer<Float>
    /// On entry the gradient (a copy the chain may overwrite), then the update's numerator.
    public var values: UnsafeMutableBufferPointer<Float>
    /// Per-element divisor of the update, set by the transform that owns its storage.
    public var divisor: UnsafeMutableBufferPointer<Float>?
    public var scaleNumerator: Double = 1
    public var scaleDenominator: Double = 1
    /// 1-based step count including this step.
    public var step: Int
    public var learningRate: Double
    /// Set by a transform when the step must not touch params or state.
    public var skipped = false
    /// Per-tensor pending factors (Adafactor's relative step and clipping). When set, only these
    /// ranges are applied, each with f32(scaleNumerator * numerator / (scaleDenominator * denominator)).
    public var segmentScales: [SegmentScale]?
    /// For transforms whose statistics span the pieces other ranks hold; nil in one process.
    public var communicator: (any Communicator)?

    public init(params: UnsafeMutableBufferPointer<Float>, values: UnsafeMutableBufferPointer<Float>,
                step: Int, learningRate: Double) {
        self.params = params
        self.values = values
        self.step = step
        self.learningRate = learningRate
    }

    /// The pending scalar as torch rounds it: one float32.
    public var scale: Float { Float(scaleNumerator / scaleDenominator) }
}

/// A pending factor that applies to one range of the shard only.
public struct SegmentScale: Sendable {
    public var range: Range<Int>
    public var numerator: Double
    public var denominator: Double = 1
}

/// One equation of an optimizer with explicit state, updating a flat shard in place (optax's
/// init/update pair: init is the initializer, update is `update(_:range:)`).
public protocol GradientTransform: AnyObject {
    /// Transforms the elements `range` of `update` (whole shard unless masked).
    func update(_ update: inout ShardUpdate, range: Range<Int>) throws
}

/// Applies the transforms in order.
public final class Chain: GradientTransform {
    public let transforms: [any GradientTransform]
    public init(_ transforms: [any GradientTransform]) { self.transforms = transforms }
    public func update(_ update: inout ShardUpdate, range: Range<Int>) throws {
        for t in transforms {
            try t.update(&update, range: range)
            if update.skipped { return }
        }
    }
}

/// Decoupled weight decay, torch's way: multiplies the parameters by f32(1 - lr * weightDecay)
/// before the update is added (optax's `add_decayed_weights` adds `wd * p` to the update instead,
/// which rounds differently). A zero rate leaves p untouched, as torch skips the multiply.
public final class DecayWeights: GradientTransform {
    public let weightDecay: Double
    public init(weightDecay: Double) { self.weightDecay = weightDecay }
    public func update(_ u: inout ShardUpdate, range: Range<Int>) throws {
        guard weightDecay != 0 else { return }
        let c = Float(1 - u.learningRate * weightDecay)
        for i in range { u.params[i] = u.params[i] * c }
    }
}

/// Coupled L2 (torch.optim.Adam's and SGD's `weight_decay`): g = fma(p, f32(wd), g).
public final class AddWeightDecay: GradientTransform {
    public let weightDecay: Double
    public init(weightDecay: Double) { self.weightDecay = weightDecay }
    public func update(_ u: inout ShardUpdate, range: Range<Int>) throws {
        guard weightDecay != 0 else { return }
        let wd = Float(weightDecay)
        for i in range { u.values[i] = u.values[i].addingProduct(u.params[i], wd) }
    }
}

/// Adam's moments with bias correction: updates m (lerp) and v, then leaves the update as
/// numerator m, divisor sqrt(v) / f32(sqrt(1 - beta2^t)) + eps, pending scale 1 / (1 - beta1^t).
public final class ScaleByAdam: GradientTransform {
    public let beta1: Double, beta2: Double, eps: Double
    public let m: FlatBuffer<Float>, v: FlatBuffer<Float>
    let divisor: FlatBuffer<Float>

    public init(count: Int, beta1: Double, beta2: Double, eps: Double, ledger: MemoryLedger? = nil) {
        self.beta1 = beta1
        self.beta2 = beta2
        self.eps = eps
        m = FlatBuffer(count: count, category: .optimizerState, ledger: ledger)
        v = FlatBuffer(count: count, category: .optimizerState, ledger: ledger)
        divisor = FlatBuffer(count: count, category: .scratch, ledger: ledger)
    }

    public func update(_ u: inout ShardUpdate, range: Range<Int>) throws {
        guard u.divisor == nil, u.scaleNumerator == 1, u.scaleDenominator == 1 else {
            throw OptimizerError("ScaleByAdam must come before any scaling transform")
        }
        let w = Float(1 - beta1), small = abs(w) < 0.5
        let b2 = Float(beta2), omb2 = Float(1 - beta2), e = Float(eps)
        let t = Double(u.step)
        let bc2Sqrt = Float((1 - cPow(beta2, t)).squareRoot())
        for i in range {
            let g = u.values[i]
            let mi = small ? m[i].addingProduct(w, g - m[i]) : g.addingProduct(w - 1, g - m[i])
            let vi = (v[i] * b2).addingProduct(omb2 * g, g)
            m[i] = mi
            v[i] = vi
            divisor[i] = vi.squareRoot() / bc2Sqrt + e
            u.values[i] = mi
        }
        u.divisor = divisor.pointer
        u.scaleDenominator *= 1 - cPow(beta1, t)
    }
}

/// Multiplies the pending scale by -learningRate (the step's rate, from the schedule).
public final class ScaleByLearningRate: GradientTransform {
    public init() {}
    public func update(_ u: inout ShardUpdate, range: Range<Int>) throws {
        u.scaleNumerator *= -u.learningRate
    }
}

/// Applies `inner` only on `segments` (ranges of the shard); elsewhere the update passes through.
/// Only for transforms that act element-wise (weight decay); a masked transform that changes the
/// pending scale or divisor is rejected, since those are shard-wide.
public final class Masked: GradientTransform {
    public let inner: any GradientTransform
    public let segments: [Range<Int>]
    public init(_ inner: any GradientTransform, segments: [Range<Int>]) {
        self.inner = inner
        self.segments = segments
    }
    public func update(_ u: inout ShardUpdate, range: Range<Int>) throws {
        let before = (u.scaleNumerator, u.scaleDenominator, u.divisor?.baseAddress)
        for s in segments {
            let r = s.clamped(to: range)
            if !r.isEmpty { try inner.update(&u, range: r) }
        }
        guard before == (u.scaleNumerator, u.scaleDenominator, u.divisor?.baseAddress) else {
            throw OptimizerError("Masked: the inner transform changed the shard-wide scale or divisor")
        }
    }
}

/// Adds the update to the parameters (optax's `apply_updates`) in torch's addcdiv / add-alpha form.
public func applyUpdates(_ u: ShardUpdate) {
    if u.skipped { return }
    if let segments = u.segmentScales {
        precondition(u.divisor == nil, "per-tensor factors and a divisor do not combine")
        for g in segments {
            let s = Float((u.scaleNumerator * g.numerator) / (u.scaleDenominator * g.denominator))
            for i in g.range { u.params[i] = u.params[i].addingProduct(u.values[i], s) }
        }
        return
    }
    let s = u.scale
    if let d = u.divisor {
        for i in 0..<u.params.count { u.params[i] = u.params[i] + (s * u.values[i]) / d[i] }
    } else {
        for i in 0..<u.params.count { u.params[i] = u.params[i].addingProduct(u.values[i], s) }
    }
}

/// Recipes: optimizers as chains of transforms, the readable reference for the fused kernels.
public enum Recipes {
    /// torch.optim.AdamW: decoupled decay on `decaySegments`, Adam moments, scale by -lr.
    public static func adamw(count: Int, config: OptimizerConfig, decaySegments: [Range<Int>]) -> Chain {
        Chain([
            Masked(DecayWeights(weightDecay: config.weightDecay), segments: decaySegments),
            ScaleByAdam(count: count, beta1: config.beta1, beta2: config.beta2, eps: config.eps),
            ScaleByLearningRate(),
        ])
    }

    /// torch.optim.Adam with coupled L2 on `decaySegments`.
    public static func adam(count: Int, config: OptimizerConfig, decaySegments: [Range<Int>]) -> Chain {
        Chain([
            Masked(AddWeightDecay(weightDecay: config.weightDecay), segments: decaySegments),
            ScaleByAdam(count: count, beta1: config.beta1, beta2: config.beta2, eps: config.eps),
            ScaleByLearningRate(),
        ])
    }

    /// Runs `transform` for one step: copies the gradient into `scratch`, transforms, applies.
    /// Returns false if the step was skipped.
    @discardableResult
    public static func step(_ transform: any GradientTransform, params: UnsafeMutableBufferPointer<Float>,
                            gradient: UnsafeBufferPointer<Float>, scratch: UnsafeMutableBufferPointer<Float>,
                            step: Int, learningRate: Double) throws -> Bool {
        precondition(scratch.count == params.count && gradient.count == params.count)
        _ = scratch.initialize(from: gradient)
        var u = ShardUpdate(params: params, values: scratch, step: step, learningRate: learningRate)
        try transform.update(&u, range: 0..<params.count)
        applyUpdates(u)
        return !u.skipped
    }
}
