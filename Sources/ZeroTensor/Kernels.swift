import CZeroKernels
import Foundation

/// Forward/backward kernel pairs in the style of llm.c: plain loops over raw
/// pointers, outputs first, backward *accumulating* (+=) into parameter gradients.
///
/// Legend: B batch, T sequence, C channels, OC output channels, V vocab,
/// NH heads, hs = C / NH head size, N = B * T rows. All tensors are row-major.
/// Linear weights use Hugging Face's Conv1D layout [C, OC] (y = x W + b), so the
/// forward is one no-transpose sgemm.
public enum Kernels {}

// MARK: - Linear (matmul + bias)

extension Kernels {
    /// out[N, OC] = inp[N, C] W[C, OC] + bias[OC].
    public static func linearForward(
        out: UnsafeMutablePointer<Float>, inp: UnsafePointer<Float>,
        weight: UnsafePointer<Float>, bias: UnsafePointer<Float>?,
        N: Int, C: Int, OC: Int, matmul: Matmul = .fp32
    ) {
        linearForward(out: out, input: .float(inp, C), weight: weight, bias: bias, N: N, C: C, OC: OC, matmul: matmul)
    }

    /// `linearForward` with the input given as a matmul operand: `.bf16` for an activation
    /// stored only in bf16 (dense [N, C]; bf16 compute only).
    public static func linearForward(
        out: UnsafeMutablePointer<Float>, input: BF16Gemm.Input,
        weight: UnsafePointer<Float>, bias: UnsafePointer<Float>?,
        N: Int, C: Int, OC: Int, matmul: Matmul = .fp32
    ) {
        if let bias {
            for n in 0..<N { (out + n * OC).update(from: bias, count: OC) }
        }
        matmul.gemm(m: N, n: OC, k: C, a: input, b: .float(weight, OC), beta: bias == nil ? 0 : 1, c: out, ldc: OC)
    }

    /// dinp[N, C] (+)= dout W^T; dweight[C, OC] += inp^T dout; dbias[OC] += sum over rows of dout.
    /// `dinp` is overwritten.
    public static func linearBackward(
        dinp: UnsafeMutablePointer<Float>?, dweight: UnsafeMutablePointer<Float>, dbias: UnsafeMutablePointer<Float>?,
        dout: UnsafePointer<Float>, inp: UnsafePointer<Float>, weight: UnsafePointer<Float>,
        N: Int, C: Int, OC: Int, matmul: Matmul = .fp32
    ) {
        linearBackward(dinp: dinp, dweight: dweight, dbias: dbias, dout: dout, input: .float(inp, C), weight: weight,
                       N: N, C: C, OC: OC, matmul: matmul)
    }

    /// `linearBackward` with the forward input given as a matmul operand (`.bf16`: stored only
    /// in bf16, dense [N, C]; bf16 compute only).
    public static func linearBackward(
        dinp: UnsafeMutablePointer<Float>?, dweight: UnsafeMutablePointer<Float>, dbias: UnsafeMutablePointer<Float>?,
        dout: UnsafePointer<Float>, input: BF16Gemm.Input, weight: UnsafePointer<Float>,
        N: Int, C: Int, OC: Int, matmul: Matmul = .fp32
    ) {
        var stored = false
        if case .bf16 = input { stored = true }
        // The round-once route also serves the sgemm fallback for a bf16 input: the same
        // rounded values reach sgemm either way, so the bits equal the per-call rounding.
        if matmul.precision == .bf16 && (stored || BF16Gemm.path == .oneDNN) {
            // dout feeds both products: round it once.
            let d = BF16Gemm.operandScratch(count: N * OC)
            matmul.timed(m: dinp == nil ? 0 : N, n: C, k: OC) {
                BF16Gemm.round(dout, rows: 1, columns: N * OC, leadingDimension: N * OC, into: d)
                if let dinp {
                    BF16Gemm.gemm(transposeB: true, m: N, n: C, k: OC, a: .bf16(d), b: .float(weight, OC), c: dinp, ldc: C)
                }
            }
            matmul.timed(m: C, n: OC, k: N) {
                BF16Gemm.gemm(transposeA: true, m: C, n: OC, k: N, a: input, b: .bf16(d), beta: 1, c: dweight, ldc: OC)
            }
            if let dbias { biasBackward(dbias: dbias, dout: dout, N: N, OC: OC) }
            return
        }
        guard case .float(let inp, _) = input else { preconditionFailure("a bf16 matmul operand needs bf16 compute") }
        if let dinp {
            matmul.gemm(transposeB: true, m: N, n: C, k: OC, a: dout, lda: OC, b: weight, ldb: OC,
                        beta: 0, c: dinp, ldc: C)
        }
        matmul.gemm(transposeA: true, m: C, n: OC, k: N, a: inp, lda: C, b: dout, ldb: OC,
                   beta: 1, c: dweight, ldc: OC)
        if let dbias { biasBackward(dbias: dbias, dout: dout, N: N, OC: OC) }
    }

    /// dbias[OC] += sum over n of dout[n, OC] (rows added in order).
    public static func biasBackward(dbias: UnsafeMutablePointer<Float>, dout: UnsafePointer<Float>, N: Int, OC: Int) {
        zt_bias_backward(dbias, dout, N, OC)
    }
}

// MARK: - Embedding (token + position)

extension Kernels {
    /// out[B, T, C] = wte[tokens[b, t], :] + wpe[t, :] (wpe optional).
    public static func encoderForward(
        out: UnsafeMutablePointer<Float>, tokens: UnsafePointer<Int32>,
        wte: UnsafePointer<Float>, wpe: UnsafePointer<Float>?, B: Int, T: Int, C: Int
    ) {
        for b in 0..<B {
            for t in 0..<T {
                let o = out + (b * T + t) * C
                let e = wte + Int(tokens[b * T + t]) * C
                if let wpe {
                    let p = wpe + t * C
                    for i in 0..<C { o[i] = e[i] + p[i] }
                } else {
                    o.update(from: e, count: C)
                }
            }
        }
    }

    /// dwte[tokens[b, t], :] += dout[b, t, :]; dwpe[t, :] += dout[b, t, :] (scatter-add, in order).
    public static func encoderBackward(
        dwte: UnsafeMutablePointer<Float>, dwpe: UnsafeMutablePointer<Float>?,
        dout: UnsafePointer<Float>, tokens: UnsafePointer<Int32>, B: Int, T: Int, C: Int
    ) {
        for b in 0..<B {
            for t in 0..<T {
                let d = dout + (b * T + t) * C
                let e = dwte + Int(tokens[b * T + t]) * C
                for i in 0..<C { e[i] += d[i] }
                if let dwpe {
                    let p = dwpe + t * C
                    for i in 0..<C { p[i] += d[i] }
                }
            }
        }
    }
}

// MARK: - Elementwise: residual, ReLU

extension Kernels {
    /// out = a + b over n elements.
    public static func residualForward(out: UnsafeMutablePointer<Float>, a: UnsafePointer<Float>, b: UnsafePointer<Float>, count n: Int) {
        zt_residual_forward(out, a, b, n)
    }

    /// da += dout; db += dout.
    public static func residualBackward(da: UnsafeMutablePointer<Float>, db: UnsafeMutablePointer<Float>, dout: UnsafePointer<Float>, count n: Int) {
        zt_residual_backward(da, db, dout, n)
    }

    /// out = max(inp, 0) (in place allowed).
    public static func reluForward(out: UnsafeMutablePointer<Float>, inp: UnsafePointer<Float>, count n: Int) {
        for i in 0..<n { out[i] = inp[i] > 0 ? inp[i] : 0 }
    }

    /// dinp = out > 0 ? dout : 0, from the ReLU's output (in place over dout allowed).
    public static func reluBackward(dinp: UnsafeMutablePointer<Float>, out: UnsafePointer<Float>, dout: UnsafePointer<Float>, count n: Int) {
        for i in 0..<n { dinp[i] = out[i] > 0 ? dout[i] : 0 }
    }
}

// MARK: - Softmax cross-entropy (mean over N rows)

extension Kernels {
    /// losses[n] = logsumexp(logits[n, :]) - logits[n, targets[n]]; returns their mean
    /// (summed in Double, so the mean does not depend on N's size for accuracy). The row sum of
    /// exps is sequential and each exp has glibc expf's bits, vectorized (elementwise.h).
    @discardableResult
    public static func crossEntropyForward(
        losses: UnsafeMutablePointer<Float>, logits: UnsafePointer<Float>, targets: UnsafePointer<Int32>, N: Int, V: Int
    ) -> Float {
        zt_cross_entropy_forward(losses, logits, targets, N, V)
    }

    /// dlogits[n, v] = (softmax(logits[n])[v] - [v == targets[n]]) * dloss, with dloss = 1 / N
    /// for a mean loss. `dlogits` may alias `logits` (in place).
    public static func crossEntropyBackward(
        dlogits: UnsafeMutablePointer<Float>, logits: UnsafePointer<Float>, targets: UnsafePointer<Int32>,
        N: Int, V: Int, dloss: Float
    ) {
        zt_cross_entropy_backward(dlogits, logits, targets, N, V, dloss)
    }
}
