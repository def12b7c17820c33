/// GPT-2 family hyper-parameters (nanoGPT / Hugging Face GPT2LMHeadModel, tied head, no dropout).
/// Legend used in kernels: B batch, T sequence, C channels, V vocab, L layers, NH heads.
public struct GPTConfig: Sendable, Equatable, Codable {
    public var name: String
    public var vocabularySize: Int   // V
    public var contextLength: Int    // T_max
    public var layers: Int           // L
    public var heads: Int            // NH
    public var channels: Int         // C

    public init(name: String, vocabularySize: Int, contextLength: Int, layers: Int, heads: Int, channels: Int) {
        self.name = name; self.vocabularySize = vocabularySize; self.contextLength = contextLength
        self.layers = layers; self.heads = heads; self.channels = channels
    }

    public static let tiny = GPTConfig(name: "gpt-tiny", vocabularySize: 256, contextLength: 64, layers: 2, heads: 4, channels: 64)
    public static let small = GPTConfig(name: "gpt-small", vocabularySize: 256, contextLength: 128, layers: 4, heads: 4, channels: 256)
    public static let medium = GPTConfig(name: "gpt-medium", vocabularySize: 256, contextLength: 256, layers: 6, heads: 8, channels: 512)
    public static let gpt2 = GPTConfig(name: "gpt2-124m", vocabularySize: 50257, contextLength: 1024, layers: 12, heads: 12, channels: 768)

    public static let presets: [GPTConfig] = [.tiny, .small, .medium, .gpt2]
    public static func named(_ name: String) -> GPTConfig? { presets.first { $0.name == name } }

    /// Elements of the embedding unit: wte [V, C] and wpe [T_max, C].
    public var embeddingUnitCount: Int { (vocabularySize + contextLength) * channels }
    /// Elements of one transformer block: ln_1, c_attn, attn c_proj, ln_2, c_fc, mlp c_proj.
    public var blockUnitCount: Int {
        let c = channels
        return 2 * c + (c * 3 * c + 3 * c) + (c * c + c) + 2 * c + (c * 4 * c + 4 * c) + (4 * c * c + c)
    }
    /// Elements of the final unit: ln_f weight and bias.
    public var finalUnitCount: Int { 2 * channels }
    /// Psi: all parameters (the head is tied to wte and adds none).
    public var parameterCount: Int { embeddingUnitCount + layers * blockUnitCount + finalUnitCount }
}
