import Foundation
import Testing
import ZeroComm
import ZeroEngine
import ZeroModels
import ZeroTensor

/// bf16 compute stores the activations that only matmuls read (ln1, atty, ln2, the GELU output,
/// ln_f) as bf16: exactly the rounding the matmul applied to them before, so the bits of a run
/// do not change, and those activations take half the bytes.
@Suite struct BF16ActivationTests {
    /// Per layer ln1, atty, ln2 (N C each) and the GELU output (4 N C), plus ln_f (N C), save
    /// 2 bytes per value; with recompute only the shared block's set and ln_f exist.
    @Test(arguments: [false, true])
    func bf16ActivationsAreSmallerByTheMatmulOnlyTensors(recompute: Bool) {
        for (config, B, T) in [(GPTConfig.tiny, 2, 32), (GPTConfig.small, 8, 128)] {
            let N = B * T, C = config.channels, L = config.layers
            let fp32 = GPT.activationBytes(config: config, batchSize: B, sequenceLength: T, recompute: recompute, precision: .fp32)
            let bf16 = GPT.activationBytes(config: config, batchSize: B, sequenceLength: T, recompute: recompute, precision: .bf16)
            #expect(fp32 - bf16 == 2 * ((recompute ? 1 : L) * 7 + 1) * N * C, "\(config.name), recompute \(recompute)")
            #expect(GPT.activationBytes(config: config, batchSize: B, sequenceLength: T, recompute: recompute) == fp32)
            let ledger = MemoryLedger()
            let model = GPT(config: config, batchSize: B, sequenceLength: T, ledger: ledger, precision: .bf16, recompute: recompute)
            withExtendedLifetime(model) { #expect(ledger.current(.activations) == bf16) }
        }
    }

    /// The head's backward rounds dlogits into the first half of its own fp32 buffer: the
    /// in-place rounding must equal rounding into separate memory (vector chunks and the tail).
    @Test func inPlaceRoundingEqualsSeparate() {
        let n = 16 * 67 + 13
        var rng = SeededGenerator(seed: 7, key: "in-place")
        var values = [Float](repeating: 0, count: n)
        values.withUnsafeMutableBufferPointer { rng.fillNormal($0, std: 3) }
        var separate = [UInt16](repeating: 0, count: n)
        BF16Gemm.round(values, rows: 1, columns: n, leadingDimension: n, into: &separate)
        #expect(Set(separate).count > n / 2)
        let inPlace = [UInt16](unsafeUninitializedCapacity: n) { out, count in
            var buffer = values
            buffer.withUnsafeMutableBytes { raw in
                let src = raw.baseAddress!.assumingMemoryBound(to: Float.self)
                raw.baseAddress!.withMemoryRebound(to: UInt16.self, capacity: n) { h in
                    BF16Gemm.round(src, rows: 1, columns: n, leadingDimension: n, into: h)
                    out.baseAddress!.update(from: h, count: n)
                }
            }
            count = n
        }
        #expect(inPlace == separate)
    }

    /// Hashes measured with the binary from before bf16 activation storage (commit 853787a):
    ///   zero-train --simulate 2 --steps 3 --precision bf16                              -> 1e84324e...
    ///   zero-train --simulate 2 --model gpt-tiny --seq-len 64 --steps 3 --precision bf16 --stage 3 --recompute -> 9026c8aa...
    /// (the gpt-tiny hash is the same at stages 0-3 and without --recompute).
    @Test func bf16RunsKeepTheirBits() throws {
        var small = TrainingConfig()
        small.steps = 3
        small.precision = .bf16
        #expect(try simulate(small, ranks: 2).paramsSHA256 == "1e84324efd9af1608c7a5b1978818a4e9fec844f4853cad4757df40be863d1ae")
        var tiny = TrainingConfig()
        tiny.model = .gptTiny
        tiny.seqLen = 64
        tiny.steps = 3
        tiny.precision = .bf16
        tiny.stage = ZeroStage(rawValue: 3)!
        tiny.recompute = true
        #expect(try simulate(tiny, ranks: 2).paramsSHA256 == "9026c8aaa1062ddefdc207777ad09c16a3cf94ce6c3fb944441bf6c3f9882b50")
    }
}
