import Foundation

extension Kernels {
    /// Causal multi-head self-attention.
    ///
    /// qkv[B, T, 3C] holds q | k | v, each split into NH heads of hs = C / NH channels.
    /// att[B, NH, T, T] receives the softmax probabilities (zero above the diagonal),
    /// out[B, T, C] the heads' outputs side by side. Per (b, h): S = q k^T / sqrt(hs)
    /// and y = softmax(S) v are two sgemms reading q, k, v in place (leading dimension 3C).
    public static func attentionForward(
        out: UnsafeMutablePointer<Float>, att: UnsafeMutablePointer<Float>,
        qkv: UnsafePointer<Float>, B: Int, T: Int, C: Int, NH: Int
    ) {
        let hs = C / NH, C3 = 3 * C
        let scale = 1 / Float(hs).squareRoot()
        for b in 0..<B {
            for h in 0..<NH {
                let q = qkv + b * T * C3 + h * hs, k = q + C, v = q + 2 * C
                let a = att + (b * NH + h) * T * T
                Blas.sgemm(transposeB: true, m: T, n: T, k: hs, alpha: scale, a: q, lda: C3, b: k, ldb: C3, c: a, ldc: T)
                for t in 0..<T { softmaxCausalRow(a + t * T, t: t, T: T) }
                Blas.sgemm(m: T, n: hs, k: T, a: a, lda: T, b: v, ldb: C3, c: out + b * T * C + h * hs, ldc: C)
            }
        }
    }

    /// Softmax of row[0...t] in place, zeros for row[t+1..<T].
    @inline(__always)
    static func softmaxCausalRow(_ row: UnsafeMutablePointer<Float>, t: Int, T: Int) {
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

    /// Backward of `attentionForward`: dqkv[B, T, 3C] += gradients from dout[B, T, C].
    /// `scratch` holds T * T floats (dA, then dS in place).
    public static func attentionBackward(
        dqkv: UnsafeMutablePointer<Float>, scratch: UnsafeMutablePointer<Float>,
        dout: UnsafePointer<Float>, qkv: UnsafePointer<Float>, att: UnsafePointer<Float>,
        B: Int, T: Int, C: Int, NH: Int
    ) {
        let hs = C / NH, C3 = 3 * C
        let scale = 1 / Float(hs).squareRoot()
        for b in 0..<B {
            for h in 0..<NH {
                let q = qkv + b * T * C3 + h * hs, k = q + C, v = q + 2 * C
                let dq = dqkv + b * T * C3 + h * hs, dk = dq + C, dv = dq + 2 * C
                let a = att + (b * NH + h) * T * T
                let dy = dout + b * T * C + h * hs
                // dA = dy v^T; dv += A^T dy
                Blas.sgemm(transposeB: true, m: T, n: T, k: hs, a: dy, lda: C, b: v, ldb: C3, c: scratch, ldc: T)
                Blas.sgemm(transposeA: true, m: T, n: hs, k: T, a: a, lda: T, b: dy, ldb: C, beta: 1, c: dv, ldc: C3)
                // dS = A * (dA - sum_j A dA), causal rows
                for t in 0..<T {
                    let ar = a + t * T, dr = scratch + t * T
                    var dot: Float = 0
                    for j in 0...t { dot += ar[j] * dr[j] }
                    for j in 0...t { dr[j] = ar[j] * (dr[j] - dot) }
                    for j in (t + 1)..<T { dr[j] = 0 }
                }
                // dq += scale dS k; dk += scale dS^T q
                Blas.sgemm(m: T, n: hs, k: T, alpha: scale, a: scratch, lda: T, b: k, ldb: C3, beta: 1, c: dq, ldc: C3)
                Blas.sgemm(transposeA: true, m: T, n: hs, k: T, alpha: scale, a: scratch, lda: T, b: q, ldb: C3, beta: 1, c: dk, ldc: C3)
            }
        }
    }
}
