extension Kernels {
    /// sqrt(2 / pi), the GELU tanh approximation's scale.
    static let geluScale: Float = 0.7978845608028654

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
}
