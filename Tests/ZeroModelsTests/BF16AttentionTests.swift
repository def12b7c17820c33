import Foundation
import Testing
import ZeroTensor

/// The batched bf16 attention (all heads of a micro-batch per oneDNN call, strided operands,
/// two causal row blocks) against the per-head bf16 path it replaces: the same casts (q, k, v,
/// P, dy, dS rounded to bf16, fp32 sums), so they differ only in fp32 summation order and in
/// an occasional flipped bf16 rounding of P or dS. Both are far from the unrounded fp32 path.
@Suite struct BF16AttentionTests {
    struct Result { var out: [Float], att: [Float], dqkv: [Float] }

    static func run(B: Int, T: Int, C: Int, NH: Int, precision: ComputePrecision, batched: Bool) -> Result {
        let qkv = BF16GemmTests.matrix(B * T * 3 * C, seed: 11), dout = BF16GemmTests.matrix(B * T * C, seed: 12)
        var out = [Float](repeating: 0, count: B * T * C), att = [Float](repeating: 0, count: B * NH * T * T)
        var dqkv = [Float](repeating: 0, count: B * T * 3 * C), scratch = [Float](repeating: 0, count: T * T)
        let n = BF16AttentionBuffers.counts(B: B, T: T, C: C, NH: NH)
        var halves = [UInt16](repeating: 0, count: n.halves), floats = [Float](repeating: 0, count: n.floats)
        halves.withUnsafeMutableBufferPointer { h in
            floats.withUnsafeMutableBufferPointer { f in
                let buffers = batched ? BF16AttentionBuffers(halves: h.baseAddress!, floats: f.baseAddress!, B: B, T: T, C: C) : nil
                Kernels.attentionForward(out: &out, att: &att, qkv: qkv, B: B, T: T, C: C, NH: NH,
                                         matmul: Matmul(precision), bf16: buffers)
                Kernels.attentionBackward(dqkv: &dqkv, scratch: &scratch, dout: dout, qkv: qkv, att: att,
                                          B: B, T: T, C: C, NH: NH, matmul: Matmul(precision), bf16: buffers)
            }
        }
        return Result(out: out, att: att, dqkv: dqkv)
    }

    @Test(arguments: [(2, 128, 128, 2), (1, 64, 64, 4), (2, 256, 128, 2)])
    func batchedMatchesPerHead(shape: (Int, Int, Int, Int)) {
        let (B, T, C, NH) = shape
        let batched = Self.run(B: B, T: T, C: C, NH: NH, precision: .bf16, batched: true)
        let perHead = Self.run(B: B, T: T, C: C, NH: NH, precision: .bf16, batched: false)
        let fp32 = Self.run(B: B, T: T, C: C, NH: NH, precision: .fp32, batched: false)
        let again = Self.run(B: B, T: T, C: C, NH: NH, precision: .bf16, batched: true)
        #expect(batched.dqkv.map(\.bitPattern) == again.dqkv.map(\.bitPattern), "batched attention is not deterministic")
        #expect(batched.out.map(\.bitPattern) == again.out.map(\.bitPattern))
        for (name, ours, ref, unrounded) in [("out", batched.out, perHead.out, fp32.out), ("att", batched.att, perHead.att, fp32.att),
                                             ("dqkv", batched.dqkv, perHead.dqkv, fp32.dqkv)] {
            let d = Difference(ours, ref), far = Difference(unrounded, ref)
            #expect(d.relL2 <= 1e-5, "\(name) \(shape): batched vs per-head \(d)")
            #expect(far.relL2 >= 100 * max(d.relL2, 1e-7), "\(name) \(shape): fp32 is not far from bf16 (\(far) vs \(d))")
        }
        // Masked entries stay exactly zero.
        var masked = 0
        for bh in 0..<(B * NH) { for t in 0..<T { for j in (t + 1)..<T where batched.att[bh * T * T + t * T + j] != 0 { masked += 1 } } }
        #expect(masked == 0)
    }
}
