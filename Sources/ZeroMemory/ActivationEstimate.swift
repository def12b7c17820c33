import ZeroModels
import ZeroTensor

/// Activation memory of a GPT-2 forward and backward, estimated the way llm.c counts it.
///
/// The report uses `runtime(precision:recompute:)`: exactly what `GPT` allocates through the
/// ledger (`GPT.activationBytes`; bf16 compute stores the matmul-only activations as bf16).
/// The llm.c-style count below stays as a cross-check of that function's order of magnitude.
public enum ActivationEstimate {
    /// Exactly the bytes the runtime's GPT allocates for (B, T) in `precision` compute, with
    /// per-block recompute (`--recompute`) or without.
    public static func runtime(precision: ComputePrecision, recompute: Bool = false) -> ActivationBytes {
        { GPT.activationBytes(config: $0, batchSize: $1, sequenceLength: $2, recompute: recompute, precision: precision) }
    }
    /// `runtime` in fp32 compute.
    public static let runtime: ActivationBytes = runtime(precision: .fp32)
    /// `runtime` in fp32 compute with per-block recompute.
    public static let recomputed: ActivationBytes = runtime(precision: .fp32, recompute: true)

    /// fp32 values the GPT-2 forward keeps for backward (llm.c's ActivationTensors, with one
    /// (B, NH, T, T) attention matrix: the softmax probabilities):
    /// encoded (B,T,C); per layer ln1 (B,T,C) + mean/rstd 2 (B,T), qkv (B,T,3C), atty (B,T,C),
    /// att (B,NH,T,T), attproj (B,T,C), residual2 (B,T,C), ln2 (B,T,C) + 2 (B,T),
    /// fch (B,T,4C), fch_gelu (B,T,4C), fcproj (B,T,C), residual3 (B,T,C);
    /// lnf (B,T,C) + 2 (B,T); logits/probs (B,T,V).
    public static func gpt2ForwardValues(_ config: GPTConfig, batchSize b: Int, sequenceLength t: Int) -> Int {
        let c = config.channels, nh = config.heads, v = config.vocabularySize
        let bt = b * t
        let perLayer = bt * c + 2 * bt        // ln1 + mean, rstd
            + 3 * bt * c                      // qkv
            + bt * c                          // atty
            + b * nh * t * t                  // attention probabilities
            + bt * c + bt * c                 // attproj, residual2
            + bt * c + 2 * bt                 // ln2 + mean, rstd
            + 4 * bt * c + 4 * bt * c         // fch, fch_gelu
            + bt * c + bt * c                 // fcproj, residual3
        return bt * c + config.layers * perLayer + bt * c + 2 * bt + bt * v
    }

    /// Default activation bytes: the forward's saved values in fp32, plus backward scratch
    /// of the same size (llm.c's grads_acts mirrors the activations one for one).
    @Sendable public static func gpt2(_ config: GPTConfig, _ batchSize: Int, _ sequenceLength: Int) -> Int {
        2 * 4 * gpt2ForwardValues(config, batchSize: batchSize, sequenceLength: sequenceLength)
    }
}
