import Foundation
import Testing
import ZeroComm
import ZeroEngine
import ZeroModels
import ZeroTensor

/// `--recompute`: the backward recomputes each block's activations from its saved input.
/// Kernels are deterministic, so a run with it must equal the run without it bit for bit,
/// at every stage and rank count, while the activations it keeps shrink.
@Suite struct RecomputeTests {
    @Test(arguments: ["fp32", "bf16"])
    func sameBitsWithAndWithoutRecompute(precision: String) throws {
        var reference: RunSummary?
        for stage in 0...3 {
            for ranks in [1, 2] {
                var config = tinyConfig(stage: stage, globalMicroBatches: 4, steps: 2)
                config.precision = PrecisionName(rawValue: precision)!
                let kept = try simulate(config, ranks: ranks)
                config.recompute = true
                let recomputed = try simulate(config, ranks: ranks)
                let label = "stage \(stage), \(ranks) ranks, \(precision)"
                #expect(recomputed.paramsSHA256 == kept.paramsSHA256, "\(label)")
                #expect(bits(recomputed.losses) == bits(kept.losses), "\(label)")
                #expect(bits(recomputed.gradNorms) == bits(kept.gradNorms), "\(label)")
                #expect(recomputed.peakBytesByCategory[.activations]! < kept.peakBytesByCategory[.activations]!, "\(label)")
                // The determinism contract: one result for every stage and rank count.
                if let reference { #expect(kept.paramsSHA256 == reference.paramsSHA256, "\(label)") } else { reference = kept }
            }
        }
        // The runs trained: a hash equal to the initial weights' would make the comparison vacuous.
        var untrained = tinyConfig(stage: 0, globalMicroBatches: 4, steps: 2)
        untrained.precision = PrecisionName(rawValue: precision)!
        untrained.lr = 1e-9; untrained.minLR = 1e-9
        #expect(try simulate(untrained, ranks: 1).paramsSHA256 != reference?.paramsSHA256)
    }

    /// Activations kept with recompute: per layer only the block output, plus one shared
    /// block's buffers (gpt-tiny, B = 2, T = 32: the formula, not a copy of the plan's code).
    @Test func recomputeKeepsOneBlockOfActivations() {
        let config = GPTConfig.tiny, B = 2, T = 32
        let N = B * T, C = config.channels, L = config.layers
        let block = N * C + 2 * N + 3 * N * C + N * C + B * config.heads * T * T + N * C + N * C + 2 * N + 8 * N * C
        let full = GPT.activationBytes(config: config, batchSize: B, sequenceLength: T)
        let kept = GPT.activationBytes(config: config, batchSize: B, sequenceLength: T, recompute: true)
        #expect(full - kept == 4 * (L - 1) * block)
        let ledger = MemoryLedger()
        let model = GPT(config: config, batchSize: B, sequenceLength: T, ledger: ledger, recompute: true)
        withExtendedLifetime(model) { #expect(ledger.current(.activations) == kept) }
    }
}
