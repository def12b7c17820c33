import Testing
import ZeroMemory
import ZeroModels
import ZeroTensor

/// The runtime's buffer plan, checked against hand arithmetic for gpt-tiny on 2 ranks.
///
/// gpt-tiny: V 256, T 64, C 64, L 2. Units: embedding (256 + 64) 64 = 20480, block 49984,
/// final 128; Psi 120576. Whole 1024-blocks: P_0 = 20480 (20 blocks), P_block = 50176 (49),
/// P_final = 1024 (1), P = 121856, 1280 padding. The last rank owns blocks [10, 20), [24, 49),
/// [24, 49) and [0, 1): S = 10240 + 2 x 25600 + 1024 = 62464 elements, 10240 + 2 x 25408 + 128
/// = 61184 real, so it holds all 1280 of the padding; rank 0 owns 59392, none of it padding.
@Suite struct BufferPlanTests {
    let tiny = GPTConfig.tiny

    @Test func units() {
        let u = UnitPlan.gpt(tiny, ranks: 2)
        #expect(u.counts == [20480, 49984, 49984, 128])
        #expect(u.units.map(u.padded) == [20480, 50176, 50176, 1024])
        #expect(u.opUnits == [[0], [1], [2], [3, 0]])
        #expect(u.all == ElementCount(padded: 121856, real: 120576))
        #expect(u.ownedShard == ElementCount(padded: 62464, real: 61184))
        #expect(UnitPlan.gpt(tiny, ranks: 2, rank: 0).ownedShard == ElementCount(padded: 59392, real: 10240 + 2 * 24576))
        #expect(u.largestOp == ElementCount(padded: 50176, real: 49984))
        #expect(u.slots == ElementCount(padded: 20480 + 50176, real: 20480 + 49984))
    }

    @Test func accumulationLevels() {
        #expect([1, 2, 3, 4, 6, 8, 1000].map(BufferPlan.accumulationLevels) == [1, 2, 2, 3, 3, 4, 10])
    }

    @Test func activationEstimate() {
        // bt = 32: encoded 2048 + L (18 bt C + 4 bt + B NH T T = 39040) + lnf 2048 + 64 + logits 8192.
        #expect(ActivationEstimate.gpt2ForwardValues(tiny, batchSize: 2, sequenceLength: 16) == 90432)
        #expect(ActivationEstimate.gpt2(tiny, 2, 16) == 90432 * 8)
    }

    @Test func stage3Bytes() {
        let run = RunConfiguration(model: tiny, ranks: 2, stage: 3, microBatch: 2, sequenceLength: 16)
        let e = MemoryReport.runtimeEstimate(run, stage: 3)
        #expect(e.bytes(.weights) == 2 * 62464)
        #expect(e.bytes(.master) == 4 * 62464)
        #expect(e.bytes(.optimizerState) == 8 * 62464)
        // fp32 model gradients 4 (P_0 + P_block) + wire 2 P_block + one partial 4 S.
        #expect(e.bytes(.gradients) == 4 * (20480 + 50176) + 2 * 50176 + 4 * 62464)
        // bf16 (the default): ln1, atty, ln2, the GELU output and ln_f stored as bf16.
        #expect(e.bytes(.activations) == GPT.activationBytes(config: tiny, batchSize: 2, sequenceLength: 16, precision: .bf16))
        #expect(e.bytes(.activations) == GPT.activationBytes(config: tiny, batchSize: 2, sequenceLength: 16) - 2 * (7 * 2 + 1) * 32 * 64)
        // MPI receive scratch: (N-1) pieces of the rank's largest shard (25 blocks), bf16.
        #expect(e.bytes(.communication) == 1 * 25600 * 2)
        // Two op slots (embedding + largest other unit), bf16 gathered + fp32 widened.
        #expect(e.bytes(.gathered) == (2 + 4) * (20480 + 50176))
        // Batch (tokens + targets) and bf16 compute's attention operands:
        // bf16 qkv, dy, P [B T 3C + B T C + B NH T T] and fp32 dS [B NH T T].
        let (B, T, C, NH) = (2, 16, tiny.channels, tiny.heads)
        let operands = 2 * (4 * B * T * C + B * NH * T * T) + 4 * B * NH * T * T
        #expect(GPT.matmulOperandBytes(config: tiny, batchSize: B, sequenceLength: T, precision: .bf16) == operands)
        #expect(GPT.matmulOperandBytes(config: tiny, batchSize: B, sequenceLength: T, precision: .fp32) == 0)
        #expect(e.bytes(.scratch) == 2 * 4 * 2 * 16 + operands)
        let padding = 1280 * (2 + 4 + 8) + 4 * 192 + 2 * 192 + 4 * 1280 + 6 * 192
        #expect(e.paddingBytes == padding)
        #expect(e.totalBytes == e.categories.values.reduce(0, +))
        #expect(e.modelStateBytes == 16 * 120576 / 2)
    }

    @Test func stage0Bytes() {
        let run = RunConfiguration(model: tiny, ranks: 2, stage: 0, microBatch: 2, sequenceLength: 16, accumulationSteps: 6)
        let e = MemoryReport.runtimeEstimate(run, stage: 0)
        #expect(e.bytes(.weights) == 2 * 121856)
        #expect(e.bytes(.master) == 4 * 121856)
        #expect(e.bytes(.optimizerState) == 8 * 121856)
        #expect(e.bytes(.gradients) == 4 * 121856 + 2 * 50176 + 3 * 4 * 121856)    // 3 levels for A = 6
        #expect(e.bytes(.gathered) == 0)
        #expect(e.bytes(.scratch) == 4 * (20480 + 50176) + 256                         // fp32 op slots + batch
                + GPT.matmulOperandBytes(config: tiny, batchSize: 2, sequenceLength: 16, precision: .bf16))
        #expect(e.paddingBytes == 1280 * (2 + 4 + 8 + 4 + 12) + 2 * 192 + 4 * 192)
    }

    @Test func stages1And2AndFp32() {
        let run = RunConfiguration(model: tiny, ranks: 2, stage: 1, microBatch: 2, sequenceLength: 16, precision: .fp32)
        let s1 = MemoryReport.runtimeEstimate(run, stage: 1)
        #expect(s1.bytes(.weights) == 4 * 121856)
        #expect(s1.bytes(.master) == 4 * 62464)
        #expect(s1.bytes(.gradients) == 4 * 121856 + 4 * 62464)                       // fp32: no wire copy
        #expect(s1.bytes(.communication) == 4 * 25600 + 4 * 25600)                     // MPI scratch + gather source
        #expect(s1.bytes(.scratch) == 256)                                              // no widening in fp32
        let s2 = MemoryReport.runtimeEstimate(run, stage: 2)
        #expect(s2.bytes(.gradients) == 4 * (20480 + 50176) + 4 * 62464)
        let s3 = MemoryReport.runtimeEstimate(run, stage: 3)
        #expect(s3.bytes(.gathered) == 4 * (20480 + 50176))
    }

    @Test func pluggableTerms() {
        var run = RunConfiguration(model: tiny, ranks: 2, stage: 2, microBatch: 2, sequenceLength: 16,
                                   activationBytes: { _, b, t in 1000 * b * t }, communicationScratchBytes: 12345)
        run.optimizerBytesPerParameter = 8
        let e = MemoryReport.runtimeEstimate(run, stage: 2)
        #expect(e.bytes(.activations) == 32_000)
        #expect(e.bytes(.communication) == 12345 + 2 * 25600)   // + the all-gather source of stage 2
        #expect(e.bytes(.optimizerState) == 4 * 62464)
    }

    @Test func scaleViewPadding() {
        // 7.5e9 on 64 ranks: one flat buffer of 7324219 whole blocks (256 elements of padding);
        // the last rank owns 114441 of them, the other ranks 114440 or 114441.
        let e = MemoryReport.scaleEstimate(stage: 3, parameters: 7_500_000_000, ranks: 64, k: 12, alignment: 1024)
        #expect(e.modelStateBytes == 1.875e9)
        #expect(e.paddingBytes == 256 * 16)
        #expect(e.totalBytes == 114_441 * 1024 * 16)
    }
}
