import Foundation

extension Kernels {
    /// LayerNorm epsilon, as in GPT-2 (Hugging Face `layer_norm_epsilon`).
    public static let layerNormEpsilon: Float = 1e-5

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
            let s = 1 / (v * invC + layerNormEpsilon).squareRoot()
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
}
