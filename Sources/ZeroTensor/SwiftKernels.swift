import Foundation

/// The elementwise kernels as they were in Swift before the C kernels (CZeroKernels) replaced
/// them: the bit-identity oracle for the tests and the baseline of `zero-train bench kernels`.
/// Not used by training.
public enum SwiftKernels {
    static let geluScale: Float = 0.7978845608028654

    /// out = a + b over n elements.
    public static func residualForward(out: UnsafeMutablePointer<Float>, a: UnsafePointer<Float>, b: UnsafePointer<Float>, count n: Int) {
        for i in 0..<n { out[i] = a[i] + b[i] }
    }

    /// da += dout; db += dout.
    public static func residualBackward(da: UnsafeMutablePointer<Float>, db: UnsafeMutablePointer<Float>, dout: UnsafePointer<Float>, count n: Int) {
        for i in 0..<n { da[i] += dout[i]; db[i] += dout[i] }
    }

    /// dbias[OC] += sum over n of dout[n, OC] (rows added in order, lanes vectorize).
    public static func biasBackward(dbias: UnsafeMutablePointer<Float>, dout: UnsafePointer<Float>, N: Int, OC: Int) {
        for n in 0..<N {
            let row = dout + n * OC
            for o in 0..<OC { dbias[o] += row[o] }
        }
    }

    /// losses[n] = logsumexp(logits[n, :]) - logits[n, targets[n]]; returns their mean
    /// (summed in Double, so the mean does not depend on N's size for accuracy).
    @discardableResult
    public static func crossEntropyForward(
        losses: UnsafeMutablePointer<Float>, logits: UnsafePointer<Float>, targets: UnsafePointer<Int32>, N: Int, V: Int
    ) -> Float {
        var total = 0.0
        for n in 0..<N {
            let row = logits + n * V
            var maxv = -Float.infinity
            for v in 0..<V { maxv = max(maxv, row[v]) }
            var sum: Float = 0
            for v in 0..<V { sum += Foundation.exp(row[v] - maxv) }
            let l = Foundation.log(sum) + maxv - row[Int(targets[n])]
            losses[n] = l
            total += Double(l)
        }
        return Float(total / Double(N))
    }

    /// dlogits[n, v] = (softmax(logits[n])[v] - [v == targets[n]]) * dloss, with dloss = 1 / N
    /// for a mean loss. `dlogits` may alias `logits` (in place).
    public static func crossEntropyBackward(
        dlogits: UnsafeMutablePointer<Float>, logits: UnsafePointer<Float>, targets: UnsafePointer<Int32>,
        N: Int, V: Int, dloss: Float
    ) {
        for n in 0..<N {
            let row = logits + n * V, drow = dlogits + n * V
            var maxv = -Float.infinity
            for v in 0..<V { maxv = max(maxv, row[v]) }
            var sum: Float = 0
            for v in 0..<V {
                let e = Foundation.exp(row[v] - maxv)
                drow[v] = e
                sum += e
            }
            let scale = dloss / sum
            for v in 0..<V { drow[v] *= scale }
            drow[Int(targets[n])] -= dloss
        }
    }

    /// out = 0.5 x (1 + tanh(u)), u = sqrt(2/pi) (x + 0.044715 x^3): GPT-2's "gelu_new".
    ///
    /// Computed as x * sigmoid(2u), the same function (0.5 (1 + tanh u) = 1 / (1 + e^-2u)),
    /// with an 8-lane exp: libm's tanhf stays scalar and cost a third of a gpt-small step.
    /// Agrees with the Double reference to ~2e-7 relative (see KernelTests.gelu).
    public static func geluForward(out: UnsafeMutablePointer<Float>, inp: UnsafePointer<Float>, count n: Int) {
        var i = 0
        while i + 8 <= n {
            store8(gelu8(load8(inp + i)), out + i)
            i += 8
        }
        if i < n {
            var x = SIMD8<Float>()
            for j in 0..<(n - i) { x[j] = inp[i + j] }
            let y = gelu8(x)
            for j in 0..<(n - i) { out[i + j] = y[j] }
        }
    }

    /// dinp = dout * gelu'(inp); overwrites `dinp` (which may alias `dout`).
    /// With s = sigmoid(2u): gelu' = s + 2 x s (1 - s) sqrt(2/pi) (1 + 3 * 0.044715 x^2).
    public static func geluBackward(dinp: UnsafeMutablePointer<Float>, inp: UnsafePointer<Float>, dout: UnsafePointer<Float>, count n: Int) {
        var i = 0
        while i + 8 <= n {
            store8(load8(dout + i) * geluGrad8(load8(inp + i)), dinp + i)
            i += 8
        }
        if i < n {
            var x = SIMD8<Float>()
            for j in 0..<(n - i) { x[j] = inp[i + j] }
            let g = geluGrad8(x)
            for j in 0..<(n - i) { dinp[i + j] = dout[i + j] * g[j] }
        }
    }

    @inline(__always)
    static func geluSigmoid8(_ x: SIMD8<Float>) -> SIMD8<Float> {
        let x3: SIMD8<Float> = x * x * x
        let u: SIMD8<Float> = geluScale * (x + 0.044715 * x3)
        return 1 / (1 + exp8(-2 * u))
    }

    @inline(__always)
    static func gelu8(_ x: SIMD8<Float>) -> SIMD8<Float> { x * geluSigmoid8(x) }

    @inline(__always)
    static func geluGrad8(_ x: SIMD8<Float>) -> SIMD8<Float> {
        let s = geluSigmoid8(x)
        let x2: SIMD8<Float> = x * x
        let du: SIMD8<Float> = geluScale * (1 + 0.134145 * x2)
        let twoXS: SIMD8<Float> = 2 * x * s
        return s + twoXS * (1 - s) * du
    }

    /// e^x on 8 lanes: Cody-Waite reduction x = k ln2 + r, |r| <= ln2 / 2, Cephes's degree-6
    /// polynomial for e^r (about 1 ulp), times 2^k built in the exponent bits. Inputs are
    /// clamped to [-87.3, 88.3], so results stay finite and normal (no NaN input expected).
    @inline(__always)
    public static func exp8(_ x: SIMD8<Float>) -> SIMD8<Float> {
        // (SIMD clamped(lowerBound:upperBound:) is not inlined; select instead)
        let lower = SIMD8<Float>(repeating: -87.3), upper = SIMD8<Float>(repeating: 88.3)
        let x = x.replacing(with: lower, where: x .< lower).replacing(with: upper, where: x .> upper)
        let magic: Float = 0x1.8p23
        let t = x * 1.44269504088896341 + magic          // round(x / ln2) in the low mantissa bits
        let k = t - magic
        let hi: SIMD8<Float> = k * 0.693359375, lo: SIMD8<Float> = k * 2.12194440e-4
        let r: SIMD8<Float> = x - hi + lo                 // ln2 = 0.693359375 - 2.12194440e-4
        var p: SIMD8<Float> = SIMD8(repeating: 1.9875691500e-4)
        p = p * r + 1.3981999507e-3
        p = p * r + 8.3334519073e-3
        p = p * r + 4.1665795894e-2
        p = p * r + 1.6666665459e-1
        p = p * r + 5.0000001201e-1
        let r2: SIMD8<Float> = r * r
        let er: SIMD8<Float> = p * r2 + r + 1
        let kBits = unsafeBitCast(t, to: SIMD8<UInt32>.self) &- unsafeBitCast(SIMD8<Float>(repeating: magic), to: SIMD8<UInt32>.self)
        let scale = unsafeBitCast((kBits &+ 127) &<< 23, to: SIMD8<Float>.self)
        return er * scale
    }

    /// out[N, C] = (inp - mean) * rstd * weight + bias per row; saves mean[N] and rstd[N] for backward.
    /// Variance is the biased one (divide by C), as torch.nn.LayerNorm.
    public static func layerNormForward(
        out: UnsafeMutablePointer<Float>, mean: UnsafeMutablePointer<Float>, rstd: UnsafeMutablePointer<Float>,
        inp: UnsafePointer<Float>, weight: UnsafePointer<Float>, bias: UnsafePointer<Float>, N: Int, C: Int
    ) {
        let invC = 1 / Float(C)
        for n in 0..<N {
            let x = inp + n * C
            let m = sum(x, C) * invC
            var v8 = SIMD8<Float>()
            var i = 0
            while i + 8 <= C {
                let d = load8(x + i) - m
                v8 += d * d
                i += 8
            }
            var v = v8.sum()
            while i < C { let d = x[i] - m; v += d * d; i += 1 }
            let s = 1 / (v * invC + Kernels.layerNormEpsilon).squareRoot()
            let o = out + n * C
            for i in 0..<C { o[i] = (x[i] - m) * s * weight[i] + bias[i] }
            mean[n] = m
            rstd[n] = s
        }
    }

    /// dinp[N, C] += dx; dweight[C] += sum_n norm * dout; dbias[C] += sum_n dout.
    public static func layerNormBackward(
        dinp: UnsafeMutablePointer<Float>, dweight: UnsafeMutablePointer<Float>, dbias: UnsafeMutablePointer<Float>,
        dout: UnsafePointer<Float>, inp: UnsafePointer<Float>, weight: UnsafePointer<Float>,
        mean: UnsafePointer<Float>, rstd: UnsafePointer<Float>, N: Int, C: Int
    ) {
        let invC = 1 / Float(C)
        for n in 0..<N {
            let d = dout + n * C, x = inp + n * C, dx = dinp + n * C
            let m = mean[n], s = rstd[n]
            // Two reductions: mean of dnorm and mean of dnorm * norm.
            var a8 = SIMD8<Float>(), b8 = SIMD8<Float>()
            var i = 0
            while i + 8 <= C {
                let norm = (load8(x + i) - m) * s
                let dnorm = load8(weight + i) * load8(d + i)
                a8 += dnorm
                b8 += dnorm * norm
                i += 8
            }
            var dnormMean = a8.sum(), dnormNormMean = b8.sum()
            while i < C {
                let norm = (x[i] - m) * s
                let dnorm = weight[i] * d[i]
                dnormMean += dnorm
                dnormNormMean += dnorm * norm
                i += 1
            }
            dnormMean *= invC
            dnormNormMean *= invC
            for i in 0..<C {
                let norm = (x[i] - m) * s
                let dnorm = weight[i] * d[i]
                dbias[i] += d[i]
                dweight[i] += norm * d[i]
                dx[i] += (dnorm - dnormMean - norm * dnormNormMean) * s
            }
        }
    }

    /// Sum of n floats with 8 lanes (a fixed, deterministic order).
    @inline(__always)
    static func sum(_ x: UnsafePointer<Float>, _ n: Int) -> Float {
        var a = SIMD8<Float>()
        var i = 0
        while i + 8 <= n { a += load8(x + i); i += 8 }
        var s = a.sum()
        while i < n { s += x[i]; i += 1 }
        return s
    }

    @inline(__always)
    static func load8(_ p: UnsafePointer<Float>) -> SIMD8<Float> {
        UnsafeRawPointer(p).loadUnaligned(as: SIMD8<Float>.self)
    }

    @inline(__always)
    static func store8(_ v: SIMD8<Float>, _ p: UnsafeMutablePointer<Float>) {
        UnsafeMutableRawPointer(p).storeBytes(of: v, as: SIMD8<Float>.self)
    }

    /// Softmax of row[0...t] in place, zeros for row[t+1..<T].
    public static func softmaxCausalRow(_ row: UnsafeMutablePointer<Float>, t: Int, T: Int) {
        var maxv = -Float.infinity
        for j in 0...t { maxv = max(maxv, row[j]) }
        var sum: Float = 0
        for j in 0...t {
            let e = Foundation.exp(row[j] - maxv)
            row[j] = e
            sum += e
        }
        let inv = 1 / sum
        for j in 0...t { row[j] *= inv }
        for j in (t + 1)..<T { row[j] = 0 }
    }

    /// The causal-softmax backward of `Kernels.attentionBackward` for rows r0..<r1 (its loop body).
    public static func softmaxCausalBackwardRows(_ a: UnsafePointer<Float>, _ scratch: UnsafeMutablePointer<Float>, r0: Int, r1: Int, T: Int) {
        for t in r0..<r1 {
            let ar = a + t * T, dr = scratch + t * T
            var dot: Float = 0
            for j in 0...t { dot += ar[j] * dr[j] }
            for j in 0...t { dr[j] = ar[j] * (dr[j] - dot) }
            for j in (t + 1)..<r1 { dr[j] = 0 }
        }
    }

    /// Rounds every float to a bf16 pattern (round to nearest even, NaN kept quiet with its
    /// sign), bit-identical to the scalar `round(_:)`. `dst.count` must equal `src.count`.
    public static func bf16Round(_ src: UnsafeBufferPointer<Float>, into dst: UnsafeMutableBufferPointer<UInt16>) {
        precondition(dst.count == src.count, "bf16 round: \(src.count) values into \(dst.count) slots")
        let n = src.count
        guard n > 0 else { return }
        let s = UnsafeRawPointer(src.baseAddress!), d = UnsafeMutableRawPointer(dst.baseAddress!)
        var i = 0
        while i + 8 <= n {
            let u = s.loadUnaligned(fromByteOffset: 4 * i, as: SIMD8<UInt32>.self)
            d.storeBytes(of: BFloat16.round8(u), toByteOffset: 2 * i, as: SIMD8<UInt16>.self)
            i += 8
        }
        while i < n { dst[i] = BFloat16.round(src[i]); i += 1 }
    }

    /// Widens bf16 patterns to floats (exact: a 16-bit shift).
    public static func bf16Widen(_ src: UnsafeBufferPointer<UInt16>, into dst: UnsafeMutableBufferPointer<Float>) {
        precondition(dst.count == src.count, "bf16 widen: \(src.count) values into \(dst.count) slots")
        let n = src.count
        guard n > 0 else { return }
        let s = UnsafeRawPointer(src.baseAddress!), d = UnsafeMutableRawPointer(dst.baseAddress!)
        var i = 0
        while i + 8 <= n {
            let h = s.loadUnaligned(fromByteOffset: 2 * i, as: SIMD8<UInt16>.self)
            d.storeBytes(of: SIMD8<UInt32>(truncatingIfNeeded: h) &<< 16, toByteOffset: 4 * i, as: SIMD8<UInt32>.self)
            i += 8
        }
        while i < n { dst[i] = Float(bitPattern: UInt32(src[i]) << 16); i += 1 }
    }

    /// Replaces every float by the nearest bf16 value (round then widen), in place.
    public static func bf16Quantize(inPlace buffer: UnsafeMutableBufferPointer<Float>) {
        let n = buffer.count
        guard n > 0 else { return }
        let p = UnsafeMutableRawPointer(buffer.baseAddress!)
        var i = 0
        while i + 8 <= n {
            let u = p.loadUnaligned(fromByteOffset: 4 * i, as: SIMD8<UInt32>.self)
            p.storeBytes(of: SIMD8<UInt32>(truncatingIfNeeded: BFloat16.round8(u)) &<< 16, toByteOffset: 4 * i, as: SIMD8<UInt32>.self)
            i += 8
        }
        while i < n { buffer[i] = BFloat16.quantize(buffer[i]); i += 1 }
    }

    /// Eight float bit patterns to eight bf16 patterns (the scalar rule, lane-wise).
    @inline(__always)
    static func round8(_ u: SIMD8<UInt32>) -> SIMD8<UInt16> {
        let rounded = (u &+ 0x7FFF &+ ((u &>> 16) & 1)) &>> 16
        let nan = (u & 0x7FFF_FFFF) .> 0x7F80_0000
        let quiet = (u &>> 16) | 0x40
        return SIMD8<UInt16>(truncatingIfNeeded: rounded.replacing(with: quiet, where: nan))
    }
}
