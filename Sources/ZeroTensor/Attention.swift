import CZeroKernels
import Foundation

extension Kernels {
    /// Causal multi-head self-attention.
    ///
    /// qkv[B, T, 3C] holds q | k | v, each split into NH heads of hs = C / NH channels.
    /// att[B, NH, T, T] receives the softmax probabilities (zero above the diagonal),
    /// out[B, T, C] the heads' outputs side by side. Per (b, h): S = q k^T / sqrt(hs)
    /// and y = softmax(S) v are sgemms reading q, k, v in place (leading dimension 3C),
    /// done in blocks of query rows so the masked upper triangle is mostly skipped.
    public static func attentionForward(
        out: UnsafeMutablePointer<Float>, att: UnsafeMutablePointer<Float>,
        qkv: UnsafePointer<Float>, B: Int, T: Int, C: Int, NH: Int, matmul: Matmul = .fp32,
        bf16: BF16AttentionBuffers? = nil
    ) {
        if matmul.precision == .bf16, let bf16,
           batchedForward(out: out, att: att, qkv: qkv, B: B, T: T, C: C, NH: NH, buffers: bf16) { return }
        let hs = C / NH, C3 = 3 * C
        let scale = 1 / Float(hs).squareRoot()
        for b in 0..<B {
            for h in 0..<NH {
                let q = qkv + b * T * C3 + h * hs, k = q + C, v = q + 2 * C
                let a = att + (b * NH + h) * T * T
                let y = out + b * T * C + h * hs
                // Row blocks [r0, r1) only look at keys 0..<r1: about half of T x T when causal.
                var r0 = 0
                while r0 < T {
                    let r1 = min(T, r0 + attentionBlockRows), rows = r1 - r0
                    matmul.gemm(transposeB: true, m: rows, n: r1, k: hs, alpha: scale, a: q + r0 * C3, lda: C3, b: k, ldb: C3,
                               c: a + r0 * T, ldc: T)
                    softmaxCausalRows(a, r0: r0, r1: r1, T: T)
                    matmul.gemm(m: rows, n: hs, k: r1, a: a + r0 * T, lda: T, b: v, ldb: C3, c: y + r0 * C, ldc: C)
                    r0 = r1
                }
            }
        }
    }

    /// Rows per block in the causal attention sgemms (queries r0..<r0+64 see keys 0..<r0+64).
    public static let attentionBlockRows = 64

    /// Softmax of rows r0..<r1 of a T-wide matrix in place over columns 0...t, zeros after
    /// (C kernel: vector max and glibc-exact exps, the row sum sequential; elementwise.h).
    @inline(__always)
    public static func softmaxCausalRows(_ a: UnsafeMutablePointer<Float>, r0: Int, r1: Int, T: Int) {
        zt_softmax_causal_rows(a, r0, r1, T)
    }

    /// Softmax backward of rows r0..<r1: d = a (d - sum_j a d) on columns 0...t (the dot summed
    /// in order), zeros on t < j < r1.
    @inline(__always)
    public static func softmaxCausalBackwardRows(_ a: UnsafePointer<Float>, _ d: UnsafeMutablePointer<Float>, r0: Int, r1: Int, T: Int) {
        zt_softmax_causal_backward_rows(a, d, r0, r1, T)
    }

    /// Backward of `attentionForward`: dqkv[B, T, 3C] += gradients from dout[B, T, C].
    /// `scratch` holds T * T floats (dA, then dS in place).
    public static func attentionBackward(
        dqkv: UnsafeMutablePointer<Float>, scratch: UnsafeMutablePointer<Float>,
        dout: UnsafePointer<Float>, qkv: UnsafePointer<Float>, att: UnsafePointer<Float>,
        B: Int, T: Int, C: Int, NH: Int, matmul: Matmul = .fp32,
        bf16: BF16AttentionBuffers? = nil
    ) {
        if matmul.precision == .bf16, let bf16,
           batchedBackward(dqkv: dqkv, dout: dout, qkv: qkv, att: att, B: B, T: T, C: C, NH: NH, buffers: bf16) { return }
        let hs = C / NH, C3 = 3 * C
        let scale = 1 / Float(hs).squareRoot()
        for b in 0..<B {
            for h in 0..<NH {
                let q = qkv + b * T * C3 + h * hs, k = q + C, v = q + 2 * C
                let dq = dqkv + b * T * C3 + h * hs, dk = dq + C, dv = dq + 2 * C
                let a = att + (b * NH + h) * T * T
                let dy = dout + b * T * C + h * hs
                var r0 = 0
                while r0 < T {
                    let r1 = min(T, r0 + attentionBlockRows), rows = r1 - r0
                    let ab = a + r0 * T, sb = scratch + r0 * T
                    // dA = dy v^T; dv += A^T dy
                    matmul.gemm(transposeB: true, m: rows, n: r1, k: hs, a: dy + r0 * C, lda: C, b: v, ldb: C3, c: sb, ldc: T)
                    matmul.gemm(transposeA: true, m: r1, n: hs, k: rows, a: ab, lda: T, b: dy + r0 * C, ldb: C, beta: 1, c: dv, ldc: C3)
                    // dS = A * (dA - sum_j A dA), causal rows
                    softmaxCausalBackwardRows(a, scratch, r0: r0, r1: r1, T: T)
                    // dq += scale dS k; dk += scale dS^T q
                    matmul.gemm(m: rows, n: hs, k: r1, alpha: scale, a: sb, lda: T, b: k, ldb: C3, beta: 1, c: dq + r0 * C3, ldc: C3)
                    matmul.gemm(transposeA: true, m: r1, n: hs, k: rows, alpha: scale, a: sb, lda: T, b: q + r0 * C3, ldb: C3,
                               beta: 1, c: dk, ldc: C3)
                    r0 = r1
                }
            }
        }
    }
}
