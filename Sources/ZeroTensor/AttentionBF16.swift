/// Operand buffers of the batched bf16 attention: bf16 copies of qkv, of dy and of the
/// probabilities (then of dS), and the fp32 dA / dS matrices of every head of a micro-batch.
/// The model allocates them once (bf16 mode only) and accounts for them.
public struct BF16AttentionBuffers {
    public let qkv: UnsafeMutablePointer<UInt16>     // [B, T, 3C]
    public let dy: UnsafeMutablePointer<UInt16>      // [B, T, C]
    public let probs: UnsafeMutablePointer<UInt16>   // [B, NH, T, T]
    public let scores: UnsafeMutablePointer<Float>   // [B, NH, T, T]

    /// bf16 elements and fp32 elements needed for (B, T, C, NH).
    public static func counts(B: Int, T: Int, C: Int, NH: Int) -> (halves: Int, floats: Int) {
        (4 * B * T * C + B * NH * T * T, B * NH * T * T)
    }

    public init(halves: UnsafeMutablePointer<UInt16>, floats: UnsafeMutablePointer<Float>, B: Int, T: Int, C: Int) {
        qkv = halves
        dy = halves + 3 * B * T * C
        probs = halves + 4 * B * T * C
        scores = floats
    }
}

extension Kernels {
    /// Query rows per block of the batched attention: two blocks (the second sees all keys,
    /// the first only the first half), so 3/4 of the T x T square is computed, in two oneDNN
    /// calls per product for all heads of the micro-batch.
    static func batchedBlocks(T: Int) -> [(Int, Int)] {
        T >= 128 ? [(0, T / 2), (T / 2, T)] : [(0, T)]
    }

    /// `attentionForward` with every product batched over (b, h) in oneDNN bf16 matmuls:
    /// qkv rounded to bf16 once, S = q k^T / sqrt(hs) per row block, the causal softmax in
    /// fp32, the probabilities rounded once, y = P v. Returns false if oneDNN is unavailable
    /// (nothing written that the per-head path does not overwrite).
    static func batchedForward(
        out: UnsafeMutablePointer<Float>, att: UnsafeMutablePointer<Float>, qkv: UnsafePointer<Float>,
        B: Int, T: Int, C: Int, NH: Int, buffers: BF16AttentionBuffers
    ) -> Bool {
        let hs = C / NH, C3 = 3 * C, TT = T * T
        let scale = 1 / Float(hs).squareRoot()
        let q = buffers.qkv, k = q + C, v = q + 2 * C
        let heads: BF16Gemm.Strides = (T * C3, hs, C3, 1)          // q, k, v rows of one head
        let headsT: BF16Gemm.Strides = (T * C3, hs, 1, C3)         // k^T
        let square: BF16Gemm.Strides = (NH * TT, TT, T, 1)         // [B, NH, T, T]
        BF16Gemm.round(qkv, rows: 1, columns: B * T * C3, leadingDimension: B * T * C3, into: q)
        for (r0, r1) in batchedBlocks(T: T) {
            guard BF16Gemm.batched(batch: (B, NH), m: r1 - r0, n: r1, k: hs, alpha: scale,
                                   a: q + r0 * C3, aStrides: heads, b: k, bStrides: headsT,
                                   c: att + r0 * T, cStrides: square) else { return false }
        }
        for bh in 0..<(B * NH) { softmaxCausalRows(att + bh * TT, r0: 0, r1: T, T: T) }
        BF16Gemm.round(att, rows: 1, columns: B * NH * TT, leadingDimension: B * NH * TT, into: buffers.probs)
        for (r0, r1) in batchedBlocks(T: T) {
            guard BF16Gemm.batched(batch: (B, NH), m: r1 - r0, n: hs, k: r1,
                                   a: buffers.probs + r0 * T, aStrides: square, b: v, bStrides: heads,
                                   c: out + r0 * C, cStrides: (T * C, hs, C, 1)) else { return false }
        }
        return true
    }

    /// `attentionBackward` batched like `batchedForward`: dA = dy v^T, dv += P^T dy, dS by the
    /// fp32 softmax backward, dq += dS k / sqrt(hs), dk += dS^T q / sqrt(hs). Returns false,
    /// before writing dqkv, if oneDNN is unavailable.
    static func batchedBackward(
        dqkv: UnsafeMutablePointer<Float>, dout: UnsafePointer<Float>, qkv: UnsafePointer<Float>, att: UnsafePointer<Float>,
        B: Int, T: Int, C: Int, NH: Int, buffers: BF16AttentionBuffers
    ) -> Bool {
        let hs = C / NH, C3 = 3 * C, TT = T * T
        let scale = 1 / Float(hs).squareRoot()
        let q = buffers.qkv, k = q + C, v = q + 2 * C
        let dq = dqkv, dk = dqkv + C, dv = dqkv + 2 * C
        let heads: BF16Gemm.Strides = (T * C3, hs, C3, 1)
        let headsT: BF16Gemm.Strides = (T * C3, hs, 1, C3)
        let dyHeads: BF16Gemm.Strides = (T * C, hs, C, 1)
        let square: BF16Gemm.Strides = (NH * TT, TT, T, 1)
        let squareT: BF16Gemm.Strides = (NH * TT, TT, 1, T)
        let blocks = batchedBlocks(T: T)
        BF16Gemm.round(qkv, rows: 1, columns: B * T * C3, leadingDimension: B * T * C3, into: q)
        BF16Gemm.round(dout, rows: 1, columns: B * T * C, leadingDimension: B * T * C, into: buffers.dy)
        BF16Gemm.round(att, rows: 1, columns: B * NH * TT, leadingDimension: B * NH * TT, into: buffers.probs)
        let dS = buffers.scores
        for (r0, r1) in blocks {
            // dA (rows r0..<r1, keys 0..<r1) = dy v^T
            guard BF16Gemm.batched(batch: (B, NH), m: r1 - r0, n: r1, k: hs,
                                   a: buffers.dy + r0 * C, aStrides: dyHeads, b: v, bStrides: headsT,
                                   c: dS + r0 * T, cStrides: square) else { return false }
        }
        for bh in 0..<(B * NH) {
            for (r0, r1) in blocks { softmaxCausalBackwardRows(att + bh * TT, dS + bh * TT, r0: r0, r1: r1, T: T) }
        }
        // From here on dqkv is written: a oneDNN failure now (after the same kind of call
        // succeeded above) cannot fall back without double-counting, so it stops the run.
        func must(_ ok: Bool) { precondition(ok, "oneDNN batched attention matmul failed part-way through backward") }
        for (r0, r1) in blocks {
            // dv[0..<r1] += P[r0..<r1, 0..<r1]^T dy[r0..<r1]
            must(BF16Gemm.batched(batch: (B, NH), m: r1, n: hs, k: r1 - r0,
                                  a: buffers.probs + r0 * T, aStrides: squareT, b: buffers.dy + r0 * C, bStrides: dyHeads,
                                  beta: 1, c: dv, cStrides: heads))
        }
        // dS's columns >= r1 of a block are never read; rounding them is harmless.
        let dSb = buffers.probs
        BF16Gemm.round(dS, rows: 1, columns: B * NH * TT, leadingDimension: B * NH * TT, into: dSb)
        for (r0, r1) in blocks {
            must(BF16Gemm.batched(batch: (B, NH), m: r1 - r0, n: hs, k: r1, alpha: scale,
                                  a: dSb + r0 * T, aStrides: square, b: k, bStrides: heads,
                                  beta: 1, c: dq + r0 * C3, cStrides: heads))
            must(BF16Gemm.batched(batch: (B, NH), m: r1, n: hs, k: r1 - r0, alpha: scale,
                                  a: dSb + r0 * T, aStrides: squareT, b: q + r0 * C3, bStrides: heads,
                                  beta: 1, c: dk, cStrides: heads))
        }
        return true
    }
}
