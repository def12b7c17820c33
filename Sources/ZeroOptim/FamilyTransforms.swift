import ZeroTensor

// The transforms of the rest of the family, one equation each, in torch's operation order, so
// that `Recipes.chain(_:count:decaySegments:)` is the readable definition of every optimizer
// and each fused kernel (Classic.swift, AdamW8bit.swift) is tested bit-equal to it.

/// SGD's momentum buffer (torch's `momentum_buffer`): b = g on the first step, else
/// fma(g, 1 - dampening, b * momentum); the update is b, or fma(b, momentum, g) with Nesterov.
public final class TraceMomentum: GradientTransform {
    public let momentum: Double, dampening: Double, nesterov: Bool
    public let buffer: FlatBuffer<Float>
    public init(count: Int, momentum: Double, dampening: Double, nesterov: Bool, ledger: MemoryLedger? = nil) {
        self.momentum = momentum
        self.dampening = dampening
        self.nesterov = nesterov
        buffer = FlatBuffer(count: count, category: .optimizerState, ledger: ledger)
    }
    public func update(_ u: inout ShardUpdate, range: Range<Int>) throws {
        let mom = Float(momentum), oneMinusDampening = Float(1 - dampening), b = buffer.pointer
        for i in range {
            let g = u.values[i]
            b[i] = u.step == 1 ? g : (b[i] * mom).addingProduct(g, oneMinusDampening)
            u.values[i] = nesterov ? g.addingProduct(b[i], mom) : b[i]
        }
    }
}

/// Adagrad: sum = fma(g, g, sum); divisor sqrt(sum) + eps; the rate is divided by
/// 1 + (step - 1) * lrDecay.
public final class ScaleByAdagrad: GradientTransform {
    public let eps: Double, learningRateDecay: Double
    public let sum: FlatBuffer<Float>
    let divisor: FlatBuffer<Float>
    public init(count: Int, initialAccumulatorValue: Double, eps: Double, learningRateDecay: Double, ledger: MemoryLedger? = nil) {
        self.eps = eps
        self.learningRateDecay = learningRateDecay
        sum = FlatBuffer(count: count, category: .optimizerState, ledger: ledger)
        sum.fill(Float(initialAccumulatorValue))
        divisor = FlatBuffer(count: count, category: .scratch, ledger: ledger)
    }
    public func update(_ u: inout ShardUpdate, range: Range<Int>) throws {
        let e = Float(eps), s = sum.pointer, d = divisor.pointer
        for i in range {
            let g = u.values[i]
            s[i] = s[i].addingProduct(g, g)
            d[i] = s[i].squareRoot() + e
        }
        u.divisor = d
        u.scaleDenominator *= 1 + Double(u.step - 1) * learningRateDecay
    }
}

/// RMSprop: square_avg = fma((1-alpha) g, g, square_avg * alpha); centered: grad_avg = lerp(grad_avg, g, 1-alpha)
/// and the divisor is sqrt(fma(-grad_avg, grad_avg, square_avg)) + eps, else sqrt(square_avg) + eps.
public final class ScaleByRMS: GradientTransform {
    public let alpha: Double, eps: Double
    public let squareAverage: FlatBuffer<Float>
    public let gradientAverage: FlatBuffer<Float>?
    let divisor: FlatBuffer<Float>
    public init(count: Int, alpha: Double, eps: Double, centered: Bool, ledger: MemoryLedger? = nil) {
        self.alpha = alpha
        self.eps = eps
        squareAverage = FlatBuffer(count: count, category: .optimizerState, ledger: ledger)
        gradientAverage = centered ? FlatBuffer(count: count, category: .optimizerState, ledger: ledger) : nil
        divisor = FlatBuffer(count: count, category: .scratch, ledger: ledger)
    }
    public func update(_ u: inout ShardUpdate, range: Range<Int>) throws {
        let a = Float(alpha), w = Float(1 - alpha), e = Float(eps), small = abs(w) < 0.5
        let sa = squareAverage.pointer, d = divisor.pointer
        for i in range {
            let g = u.values[i]
            sa[i] = (sa[i] * a).addingProduct(w * g, g)
            if let ga = gradientAverage?.pointer {
                ga[i] = small ? ga[i].addingProduct(w, g - ga[i]) : g.addingProduct(w - 1, g - ga[i])
                d[i] = sa[i].addingProduct(-ga[i], ga[i]).squareRoot() + e
            } else {
                d[i] = sa[i].squareRoot() + e
            }
        }
        u.divisor = d
    }
}

/// RMSprop's momentum: b = b * momentum + values / divisor (torch's `mul_` then `addcdiv_`);
/// the update becomes b, without a divisor.
public final class TraceDivided: GradientTransform {
    public let momentum: Double
    public let buffer: FlatBuffer<Float>
    public init(count: Int, momentum: Double, ledger: MemoryLedger? = nil) {
        self.momentum = momentum
        buffer = FlatBuffer(count: count, category: .optimizerState, ledger: ledger)
    }
    public func update(_ u: inout ShardUpdate, range: Range<Int>) throws {
        guard let d = u.divisor else { throw OptimizerError("TraceDivided needs a divisor (put it after ScaleByRMS)") }
        let mom = Float(momentum), b = buffer.pointer
        for i in range {
            b[i] = b[i] * mom + u.values[i] / d[i]
            u.values[i] = b[i]
        }
        u.divisor = nil
    }
}

/// Lion: the update is sign(fma(g, 1-beta1, m * beta1)) (sign(NaN) = NaN), then m = fma(g, 1-beta2, m * beta2).
public final class ScaleByLion: GradientTransform {
    public let beta1: Double, beta2: Double
    public let m: FlatBuffer<Float>
    public init(count: Int, beta1: Double, beta2: Double, ledger: MemoryLedger? = nil) {
        self.beta1 = beta1
        self.beta2 = beta2
        m = FlatBuffer(count: count, category: .optimizerState, ledger: ledger)
    }
    public func update(_ u: inout ShardUpdate, range: Range<Int>) throws {
        let b1 = Float(beta1), w1 = Float(1 - beta1), b2 = Float(beta2), w2 = Float(1 - beta2), m = m.pointer
        for i in range {
            let g = u.values[i]
            let c = (m[i] * b1).addingProduct(g, w1)
            u.values[i] = c > 0 ? 1 : (c < 0 ? -1 : (c.isNaN ? c : 0))
            m[i] = (m[i] * b2).addingProduct(g, w2)
        }
    }
}

/// Adam with block-wise 8-bit moments: per block, dequantize m and v (code * absmax), the moment
/// updates of `ScaleByAdam`, then absmax = largest non-NaN |x| of the block and code = the nearest
/// code of x / absmax by binary search (`DynamicQuantizationMap.quantize`).
public final class ScaleByQuantizedAdam: GradientTransform {
    public let beta1: Double, beta2: Double, eps: Double, block: Int
    public let qm: FlatBuffer<UInt8>, qv: FlatBuffer<UInt8>
    public let absM: FlatBuffer<Float>, absV: FlatBuffer<Float>
    let divisor: FlatBuffer<Float>
    let signedMid = DynamicQuantizationMap.midpoints(DynamicQuantizationMap.signed)
    let unsignedMid = DynamicQuantizationMap.midpoints(DynamicQuantizationMap.unsigned)

    public init(count: Int, block: Int, beta1: Double, beta2: Double, eps: Double, ledger: MemoryLedger? = nil) {
        self.beta1 = beta1
        self.beta2 = beta2
        self.eps = eps
        self.block = block
        qm = FlatBuffer(count: count, category: .optimizerState, ledger: ledger)
        qv = FlatBuffer(count: count, category: .optimizerState, ledger: ledger)
        absM = FlatBuffer(count: (count + block - 1) / block, category: .optimizerState, ledger: ledger)
        absV = FlatBuffer(count: (count + block - 1) / block, category: .optimizerState, ledger: ledger)
        divisor = FlatBuffer(count: count, category: .scratch, ledger: ledger)
        qm.fill(UInt8(DynamicQuantizationMap.signed.firstIndex(of: 0)!))
        qv.fill(UInt8(DynamicQuantizationMap.unsigned.firstIndex(of: 0)!))
    }

    public func update(_ u: inout ShardUpdate, range: Range<Int>) throws {
        guard range == 0..<qm.count, u.divisor == nil, u.scaleNumerator == 1, u.scaleDenominator == 1 else {
            throw OptimizerError("ScaleByQuantizedAdam works on whole shards, before any scaling transform")
        }
        let w = Float(1 - beta1), small = abs(w) < 0.5, b2 = Float(beta2), omb2 = Float(1 - beta2), e = Float(eps)
        let t = Double(u.step), bc2Sqrt = Float((1 - cPow(beta2, t)).squareRoot())
        let signed = DynamicQuantizationMap.signed, unsigned = DynamicQuantizationMap.unsigned
        var m = [Float](repeating: 0, count: block), v = m
        for b in 0..<absM.count {
            let lo = b * block, hi = min(qm.count, lo + block)
            var maxM: Float = 0, maxV: Float = 0
            for i in lo..<hi {
                let g = u.values[i]
                let m0 = signed[Int(qm[i])] * absM[b], v0 = unsigned[Int(qv[i])] * absV[b]
                let mi = small ? m0.addingProduct(w, g - m0) : g.addingProduct(w - 1, g - m0)
                let vi = (v0 * b2).addingProduct(omb2 * g, g)
                divisor[i] = vi.squareRoot() / bc2Sqrt + e
                u.values[i] = mi
                m[i - lo] = mi
                v[i - lo] = vi
                maxM = max(maxM, abs(mi))  // Swift's max keeps the first argument when the second is NaN
                maxV = max(maxV, abs(vi))
            }
            absM[b] = maxM
            absV[b] = maxV
            signedMid.withUnsafeBufferPointer { sm in
                unsignedMid.withUnsafeBufferPointer { um in
                    for i in lo..<hi {
                        qm[i] = DynamicQuantizationMap.quantize(maxM == 0 ? 0 : m[i - lo] / maxM, midpoints: sm)
                        qv[i] = DynamicQuantizationMap.quantize(maxV == 0 ? 0 : v[i - lo] / maxV, midpoints: um)
                    }
                }
            }
        }
        u.divisor = divisor.pointer
        u.scaleDenominator *= 1 - cPow(beta1, t)
    }
}

extension Recipes {
    /// The chain of transforms that defines `config`'s optimizer (Adafactor: the shard as one vector;
    /// `AdafactorOptimizer` runs it over the unit's real tensors).
    /// Coupled L2 (Adam, SGD, Adagrad, RMSprop) and decoupled decay (AdamW, Lion, 8-bit AdamW) act on
    /// `decaySegments` only.
    public static func chain(_ config: OptimizerConfig, count: Int, decaySegments: [Range<Int>]) throws -> Chain {
        let l2 = Masked(AddWeightDecay(weightDecay: config.weightDecay), segments: decaySegments)
        let decoupled = Masked(DecayWeights(weightDecay: config.weightDecay), segments: decaySegments)
        switch config.kind {
        case .adamw: return adamw(count: count, config: config, decaySegments: decaySegments)
        case .adam: return adam(count: count, config: config, decaySegments: decaySegments)
        case .sgd:
            let momentum: [any GradientTransform] = config.momentum != 0
                ? [TraceMomentum(count: count, momentum: config.momentum, dampening: config.dampening, nesterov: config.nesterov)] : []
            return Chain([l2] + momentum + [ScaleByLearningRate()])
        case .adagrad:
            return Chain([l2, ScaleByAdagrad(count: count, initialAccumulatorValue: config.initialAccumulatorValue,
                                             eps: config.eps, learningRateDecay: config.learningRateDecay),
                          ScaleByLearningRate()])
        case .rmsprop:
            let momentum: [any GradientTransform] = config.momentum > 0 ? [TraceDivided(count: count, momentum: config.momentum)] : []
            return Chain([l2, ScaleByRMS(count: count, alpha: config.alpha, eps: config.eps, centered: config.centered)]
                         + momentum + [ScaleByLearningRate()])
        case .lion:
            return Chain([decoupled, ScaleByLion(count: count, beta1: config.beta1, beta2: config.beta2), ScaleByLearningRate()])
        case .adamw8bit:
            return Chain([decoupled, ScaleByQuantizedAdam(count: count, block: config.quantizationBlockSize,
                                                          beta1: config.beta1, beta2: config.beta2, eps: config.eps),
                          ScaleByLearningRate()])
        case .adafactor:
            return adafactor(config, pieces: TensorPieces(tensors: [.vector(0..<count)], offset: 0, count: count),
                             decaySegments: decaySegments)
        case .lbfgs:
            throw OptimizerError("lbfgs is not a chain of per-element transforms: it steps through a closure (LBFGS)")
        }
    }
}
