import Foundation

/// Naive reference kernels: the same contracts as `Kernels`, as plain loops with no BLAS
/// and no vector tricks (llm.c's CPU code). Tests compare the fast kernels against them.
public enum ReferenceKernels {
    public static func linearForward(out: UnsafeMutablePointer<Float>, inp: UnsafePointer<Float>, weight: UnsafePointer<Float>,
                                     bias: UnsafePointer<Float>?, N: Int, C: Int, OC: Int) {
        for n in 0..<N {
            for o in 0..<OC {
                var v: Float = bias?[o] ?? 0
                for i in 0..<C { v += inp[n * C + i] * weight[i * OC + o] }
                out[n * OC + o] = v
            }
        }
    }

    /// dinp overwritten; dweight, dbias accumulated.
    public static func linearBackward(dinp: UnsafeMutablePointer<Float>, dweight: UnsafeMutablePointer<Float>, dbias: UnsafeMutablePointer<Float>?,
                                      dout: UnsafePointer<Float>, inp: UnsafePointer<Float>, weight: UnsafePointer<Float>, N: Int, C: Int, OC: Int) {
        for n in 0..<N {
            for i in 0..<C {
                var v: Float = 0
                for o in 0..<OC { v += dout[n * OC + o] * weight[i * OC + o] }
                dinp[n * C + i] = v
            }
        }
        for i in 0..<C {
            for o in 0..<OC {
                var v: Float = 0
                for n in 0..<N { v += inp[n * C + i] * dout[n * OC + o] }
                dweight[i * OC + o] += v
            }
        }
        if let dbias { for o in 0..<OC { for n in 0..<N { dbias[o] += dout[n * OC + o] } } }
    }

    public static func layerNormForward(out: UnsafeMutablePointer<Float>, mean: UnsafeMutablePointer<Float>, rstd: UnsafeMutablePointer<Float>,
                                        inp: UnsafePointer<Float>, weight: UnsafePointer<Float>, bias: UnsafePointer<Float>, N: Int, C: Int) {
        for n in 0..<N {
            let x = inp + n * C
            var m: Float = 0
            for i in 0..<C { m += x[i] }
            m /= Float(C)
            var v: Float = 0
            for i in 0..<C { v += (x[i] - m) * (x[i] - m) }
            v /= Float(C)
            let s = 1 / (v + Kernels.layerNormEpsilon).squareRoot()
            for i in 0..<C { out[n * C + i] = s * (x[i] - m) * weight[i] + bias[i] }
            mean[n] = m
            rstd[n] = s
        }
    }

    public static func layerNormBackward(dinp: UnsafeMutablePointer<Float>, dweight: UnsafeMutablePointer<Float>, dbias: UnsafeMutablePointer<Float>,
                                         dout: UnsafePointer<Float>, inp: UnsafePointer<Float>, weight: UnsafePointer<Float>,
                                         mean: UnsafePointer<Float>, rstd: UnsafePointer<Float>, N: Int, C: Int) {
        for n in 0..<N {
            var a: Float = 0, b: Float = 0
            for i in 0..<C {
                let norm = (inp[n * C + i] - mean[n]) * rstd[n]
                let dnorm = weight[i] * dout[n * C + i]
                a += dnorm
                b += dnorm * norm
            }
            a /= Float(C); b /= Float(C)
            for i in 0..<C {
                let norm = (inp[n * C + i] - mean[n]) * rstd[n]
                let dnorm = weight[i] * dout[n * C + i]
                dbias[i] += dout[n * C + i]
                dweight[i] += norm * dout[n * C + i]
                dinp[n * C + i] += (dnorm - a - norm * b) * rstd[n]
            }
        }
    }

    public static func geluForward(out: UnsafeMutablePointer<Float>, inp: UnsafePointer<Float>, count n: Int) {
        for i in 0..<n {
            let x = Double(inp[i])
            out[i] = Float(0.5 * x * (1 + Foundation.tanh((2 / Double.pi).squareRoot() * (x + 0.044715 * x * x * x))))
        }
    }

    public static func geluBackward(dinp: UnsafeMutablePointer<Float>, inp: UnsafePointer<Float>, dout: UnsafePointer<Float>, count n: Int) {
        let s = (2 / Double.pi).squareRoot()
        for i in 0..<n {
            let x = Double(inp[i])
            let th = Foundation.tanh(s * (x + 0.044715 * x * x * x))
            let grad = 0.5 * (1 + th) + 0.5 * x * (1 - th * th) * s * (1 + 3 * 0.044715 * x * x)
            dinp[i] = Float(Double(dout[i]) * grad)
        }
    }

    /// llm.c's attention_forward: preatt, masked softmax, weighted sum, all loops.
    public static func attentionForward(out: UnsafeMutablePointer<Float>, att: UnsafeMutablePointer<Float>, qkv: UnsafePointer<Float>,
                                        B: Int, T: Int, C: Int, NH: Int) {
        let hs = C / NH, scale = 1 / Float(hs).squareRoot()
        for b in 0..<B { for t in 0..<T { for h in 0..<NH {
            let q = qkv + b * T * 3 * C + t * 3 * C + h * hs
            let a = att + b * NH * T * T + h * T * T + t * T
            var maxv = -Float.infinity
            for t2 in 0...t {
                let k = qkv + b * T * 3 * C + t2 * 3 * C + h * hs + C
                var v: Float = 0
                for i in 0..<hs { v += q[i] * k[i] }
                a[t2] = v * scale
                maxv = max(maxv, a[t2])
            }
            var sum: Float = 0
            for t2 in 0...t { a[t2] = Foundation.exp(a[t2] - maxv); sum += a[t2] }
            for t2 in 0..<T { a[t2] = t2 <= t ? a[t2] / sum : 0 }
            let o = out + b * T * C + t * C + h * hs
            for i in 0..<hs { o[i] = 0 }
            for t2 in 0...t {
                let v = qkv + b * T * 3 * C + t2 * 3 * C + h * hs + 2 * C
                for i in 0..<hs { o[i] += a[t2] * v[i] }
            }
        } } }
    }

    /// dqkv accumulated.
    public static func attentionBackward(dqkv: UnsafeMutablePointer<Float>, dout: UnsafePointer<Float>, qkv: UnsafePointer<Float>,
                                         att: UnsafePointer<Float>, B: Int, T: Int, C: Int, NH: Int) {
        let hs = C / NH, scale = 1 / Float(hs).squareRoot()
        var datt = [Float](repeating: 0, count: T), dpre = [Float](repeating: 0, count: T)
        for b in 0..<B { for t in 0..<T { for h in 0..<NH {
            let a = att + b * NH * T * T + h * T * T + t * T
            let dy = dout + b * T * C + t * C + h * hs
            let q = qkv + b * T * 3 * C + t * 3 * C + h * hs, dq = dqkv + b * T * 3 * C + t * 3 * C + h * hs
            for t2 in 0...t {
                let v = qkv + b * T * 3 * C + t2 * 3 * C + h * hs + 2 * C
                let dv = dqkv + b * T * 3 * C + t2 * 3 * C + h * hs + 2 * C
                var s: Float = 0
                for i in 0..<hs { s += v[i] * dy[i]; dv[i] += a[t2] * dy[i] }
                datt[t2] = s
            }
            var dot: Float = 0
            for t2 in 0...t { dot += a[t2] * datt[t2] }
            for t2 in 0...t { dpre[t2] = a[t2] * (datt[t2] - dot) }
            for t2 in 0...t {
                let k = qkv + b * T * 3 * C + t2 * 3 * C + h * hs + C
                let dk = dqkv + b * T * 3 * C + t2 * 3 * C + h * hs + C
                for i in 0..<hs {
                    dq[i] += k[i] * dpre[t2] * scale
                    dk[i] += q[i] * dpre[t2] * scale
                }
            }
        } } }
    }

    /// Mean loss in Double.
    public static func crossEntropy(logits: UnsafePointer<Float>, targets: UnsafePointer<Int32>, N: Int, V: Int,
                                    dlogits: UnsafeMutablePointer<Float>) -> Float {
        var total = 0.0
        for n in 0..<N {
            var m = -Double.infinity
            for v in 0..<V { m = max(m, Double(logits[n * V + v])) }
            var s = 0.0
            for v in 0..<V { s += Foundation.exp(Double(logits[n * V + v]) - m) }
            total += Foundation.log(s) + m - Double(logits[n * V + Int(targets[n])])
            for v in 0..<V {
                let p = Foundation.exp(Double(logits[n * V + v]) - m) / s
                dlogits[n * V + v] = Float((p - (v == Int(targets[n]) ? 1 : 0)) / Double(N))
            }
        }
        return Float(total / Double(N))
    }
}
