import Foundation
import Testing
import ZeroModels
import ZeroTensor

/// bf16 compute (every matmul input rounded to bf16, fp32 accumulation): parity with a
/// PyTorch reference doing the same casts (Tests/Fixtures/make_bf16_compute_fixtures.py),
/// on the parameters and batch of gpt_fp32.safetensors.
///
/// Tolerance: two correct implementations differ only in the order of the fp32 sums inside
/// each matmul. The fixture measures that spread directly (reference summed in fp32 vs in
/// fp64): at most 2e-7 relative L2 per gradient tensor. An order change can also flip the
/// bf16 rounding of an intermediate (one element moves by 2^-8 relative) now and then, so we
/// allow 1e-4 relative L2 per gradient tensor and 1e-5 on the loss and logits: 500x the
/// spread, yet 28x below the smallest distance between the reference and the all-fp32 model
/// (2.8e-3, the fixture's fp32_distance), so a matmul whose inputs are not rounded fails.
@Suite struct BF16ComputeParityTests {
    static let gradientTolerance = 1e-4

    func load() throws -> (source: SafeTensors, reference: SafeTensors, config: GPTConfig, B: Int, T: Int) {
        let source = try fixture("gpt_fp32.safetensors"), reference = try fixture("gpt_bf16_compute.safetensors")
        let config = GPTConfig(name: "fixture", vocabularySize: meta(source, "vocab"), contextLength: meta(source, "context"),
                               layers: meta(source, "layers"), heads: meta(source, "heads"), channels: meta(source, "channels"))
        return (source, reference, config, meta(source, "batch"), meta(source, "seq"))
    }

    func run(_ precision: ComputePrecision) throws -> (loss: Float, logits: [Float]?, gradients: [[Float]], model: GPT) {
        let f = try load()
        let model = GPT(config: f.config, batchSize: f.B, sequenceLength: f.T, ledger: nil, precision: precision)
        let units = try unitsFromFixture(f.source, layout: model.layout)
        let r = runModel(model, units: units, tokens: try int32s(f.source, "tokens"), targets: try int32s(f.source, "targets"), B: f.B, T: f.T)
        return (r.loss, r.logits, r.gradients, model)
    }

    @Test func gptMatchesTorchWithTheSameCasts() throws {
        let reference = try load().reference
        let ours = try run(.bf16)
        let refLoss = try reference.floats("loss")[0]
        let lossRel = abs(ours.loss - refLoss) / abs(refLoss)
        #expect(lossRel <= 1e-5, "loss \(ours.loss) vs torch \(refLoss)")
        let logits = Difference(ours.logits!, try reference.floats("logits"))
        #expect(logits.relL2 <= 1e-5, "logits: \(logits)")
        var worst = 0.0
        for t in ours.model.layout.tensors {
            let d = Difference(tensorSlice(ours.gradients, t), try reference.floats("grad." + t.name, expectedShape: t.shape))
            worst = max(worst, d.relL2)
            #expect(d.relL2 <= Self.gradientTolerance, "grad \(t.name): \(d)")
        }
        print("parity GPT bf16 compute (\(BF16Gemm.path.rawValue)): loss rel \(lossRel), logits \(logits), worst grad rel L2 \(worst)")
    }

    /// The fp32 model is far outside the tolerance: the fixture can tell bf16 compute from fp32.
    @Test func fp32ComputeIsOutsideTheTolerance() throws {
        let reference = try load().reference
        let ours = try run(.fp32)
        for t in ours.model.layout.tensors {
            let d = Difference(tensorSlice(ours.gradients, t), try reference.floats("grad." + t.name, expectedShape: t.shape))
            #expect(d.relL2 > 10 * Self.gradientTolerance, "grad \(t.name): \(d)")
        }
    }
}

/// The bf16 GEMM route itself: exact products of rounded inputs, and bit-stable results.
@Suite(.serialized) struct BF16GemmTests {
    static func matrix(_ count: Int, seed: UInt64) -> [Float] {
        var rng = SeededGenerator(seed: seed, key: "bf16-gemm")
        var xs = [Float](repeating: 0, count: count)
        xs.withUnsafeMutableBufferPointer { rng.fillNormal($0, std: 1) }
        return xs
    }

    /// op(A) op(B) through BF16Gemm, into C (beta, alpha as given).
    static func gemm(_ tA: Bool, _ tB: Bool, m: Int, n: Int, k: Int, a: [Float], b: [Float], c: inout [Float],
                     alpha: Float = 1, beta: Float = 0) {
        a.withUnsafeBufferPointer { ap in
            b.withUnsafeBufferPointer { bp in
                c.withUnsafeMutableBufferPointer { cp in
                    BF16Gemm.gemm(transposeA: tA, transposeB: tB, m: m, n: n, k: k, alpha: alpha, a: ap.baseAddress!, lda: tA ? m : k,
                                  b: bp.baseAddress!, ldb: tB ? k : n, beta: beta, c: cp.baseAddress!, ldc: n)
                }
            }
        }
    }

    static let shapes: [(Bool, Bool)] = [(false, false), (false, true), (true, false)]

    @Test(arguments: [0, 1, 2])
    func matchesTheExactProductOfRoundedInputs(shape: Int) {
        let (tA, tB) = Self.shapes[shape]
        let m = 70, n = 96, k = 300
        let a = Self.matrix(m * k, seed: 1), b = Self.matrix(k * n, seed: 2)
        let c0 = Self.matrix(m * n, seed: 3)
        var c = c0
        Self.gemm(tA, tB, m: m, n: n, k: k, a: a, b: b, c: &c, alpha: 0.125, beta: 1)
        var worst = 0.0, roundingMatters = false
        for i in 0..<m {
            for j in 0..<n {
                var exact = 0.0, unrounded = 0.0, scale = 0.0
                for p in 0..<k {
                    let x = tA ? a[p * m + i] : a[i * k + p], y = tB ? b[j * k + p] : b[p * n + j]
                    exact += Double(BFloat16.quantize(x)) * Double(BFloat16.quantize(y))
                    unrounded += Double(x) * Double(y)
                    scale += abs(Double(x) * Double(y))
                }
                let expected = 0.125 * exact + Double(c0[i * n + j])
                worst = max(worst, abs(Double(c[i * n + j]) - expected) / (0.125 * scale))
                if abs(0.125 * (unrounded - exact)) > 1e-4 * 0.125 * scale { roundingMatters = true }
            }
        }
        // fp32 summation of k exact products: error below k * 2^-24 of the sum of magnitudes.
        #expect(worst <= Double(k) * 0x1p-24, "worst relative error \(worst)")
        #expect(roundingMatters, "the data cannot tell rounded from unrounded inputs")
    }

    /// Rounding keeps subnormals (as torch.bfloat16 does), but AVX512-BF16's dot product
    /// (VDPBF16PS, which oneDNN's bf16 kernels use, as in PyTorch) reads subnormal bf16
    /// inputs as zero; the sgemm path multiplies them.
    @Test func subnormalInputs() {
        var c: [Float] = [0]
        let tiny = Float(bitPattern: 0x0002_0000)  // a float32 subnormal that bf16 holds exactly
        Self.gemm(false, false, m: 1, n: 1, k: 1, a: [tiny], b: [0x1p100], c: &c)
        if BF16Gemm.path == .oneDNN && BF16Gemm.isa.hasPrefix("avx512_core_bf16") {
            #expect(c[0] == 0)
        } else if BF16Gemm.path == .sgemm {
            #expect(c[0] == tiny * 0x1p100)
        }
    }

    @Test func cachedAndFreshPrimitivesGiveTheSameBits() {
        for (tA, tB) in Self.shapes {
            let m = 128, n = 192, k = 256
            let a = Self.matrix(m * k, seed: 4), b = Self.matrix(k * n, seed: 5)
            var first = [Float](repeating: 0, count: m * n), cached = first, fresh = first
            Self.gemm(tA, tB, m: m, n: n, k: k, a: a, b: b, c: &first)
            Self.gemm(tA, tB, m: m, n: n, k: k, a: a, b: b, c: &cached)
            if BF16Gemm.path == .oneDNN { #expect(BF16Gemm.cachedPrimitives > 0) }
            BF16Gemm.clearCache()
            #expect(BF16Gemm.cachedPrimitives == 0)
            Self.gemm(tA, tB, m: m, n: n, k: k, a: a, b: b, c: &fresh)
            #expect(first.map(\.bitPattern) == cached.map(\.bitPattern))
            #expect(first.map(\.bitPattern) == fresh.map(\.bitPattern))
        }
    }

    /// Micro-batches on different ranks: the same shape on another thread (its own primitive
    /// cache), and rows computed in two halves, give the bits of the whole.
    @Test func otherThreadsAndRowSplitsGiveTheSameBits() async {
        let m = 256, n = 192, k = 256
        let a = Self.matrix(m * k, seed: 6), b = Self.matrix(k * n, seed: 7)
        var whole = [Float](repeating: 0, count: m * n)
        Self.gemm(false, false, m: m, n: n, k: k, a: a, b: b, c: &whole)
        let onThread: [Float] = await withCheckedContinuation { done in
            Thread {
                var c = [Float](repeating: 0, count: m * n)
                Self.gemm(false, false, m: m, n: n, k: k, a: a, b: b, c: &c)
                done.resume(returning: c)
            }.start()
        }
        #expect(whole.map(\.bitPattern) == onThread.map(\.bitPattern))
        let h = m / 2
        var top = [Float](repeating: 0, count: h * n), bottom = top
        Self.gemm(false, false, m: h, n: n, k: k, a: Array(a[0..<(h * k)]), b: b, c: &top)
        Self.gemm(false, false, m: h, n: n, k: k, a: Array(a[(h * k)...]), b: b, c: &bottom)
        #expect(whole.map(\.bitPattern) == (top + bottom).map(\.bitPattern))
    }
}
