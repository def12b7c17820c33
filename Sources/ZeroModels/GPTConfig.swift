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

    /// A preset or a custom shape by name (`customName`'s form), nil for anything else.
    public static func named(_ name: String) -> GPTConfig? { try? parse(name) }

    /// A preset name, or a custom shape written "gpt-L<layers>-H<heads>-C<channels>-T<context>-V<vocab>"
    /// (e.g. gpt-L2-H4-C32-T48-V260). The name is how a shape travels: in the training
    /// config, the checkpoint manifest and the consensus check, so any shape needs no
    /// other field.
    public static func parse(_ name: String) throws -> GPTConfig {
        if let preset = presets.first(where: { $0.name == name }) { return preset }
        let parts = name.split(separator: "-", omittingEmptySubsequences: false)
        guard parts.count == 6, parts[0] == "gpt" else {
            throw GPTConfigError("unknown model '\(name)' (presets: \(presets.map(\.name).joined(separator: ", ")), or a shape like gpt-L2-H4-C32-T48-V260)")
        }
        var values: [Character: Int] = [:]
        for part in parts.dropFirst() {
            guard let key = part.first, "LHCTV".contains(key), let v = Int(part.dropFirst()), values[key] == nil else {
                throw GPTConfigError("model '\(name)': '\(part)' is not one of L<layers> H<heads> C<channels> T<context> V<vocab>")
            }
            values[key] = v
        }
        return try shape(layers: values["L"]!, heads: values["H"]!, channels: values["C"]!,
                         contextLength: values["T"]!, vocabularySize: values["V"]!)
    }

    /// Any GPT-2 shape, validated; named after the preset it equals, else `customName`.
    public static func shape(layers: Int, heads: Int, channels: Int, contextLength: Int, vocabularySize: Int) throws -> GPTConfig {
        guard layers >= 1, heads >= 1, channels >= 1, contextLength >= 1, vocabularySize >= 1 else {
            throw GPTConfigError("a GPT shape needs n_layer, n_head, n_embd, block size and vocab size of at least 1")
        }
        guard channels % heads == 0 else {
            throw GPTConfigError("n_embd \(channels) is not a multiple of n_head \(heads)")
        }
        guard vocabularySize <= 1 << 24, contextLength <= 1 << 20, channels <= 1 << 16, layers <= 4096 else {
            throw GPTConfigError("GPT shape out of range (vocab <= 2^24, block size <= 2^20, n_embd <= 65536, n_layer <= 4096)")
        }
        var c = GPTConfig(name: "", vocabularySize: vocabularySize, contextLength: contextLength, layers: layers, heads: heads, channels: channels)
        c.name = presets.first { $0.sameShape(as: c) }?.name ?? c.customName
        return c
    }

    /// This shape with some dimensions replaced (nil keeps the current one).
    public func with(layers: Int? = nil, heads: Int? = nil, channels: Int? = nil, contextLength: Int? = nil,
                     vocabularySize: Int? = nil) throws -> GPTConfig {
        try GPTConfig.shape(layers: layers ?? self.layers, heads: heads ?? self.heads, channels: channels ?? self.channels,
                            contextLength: contextLength ?? self.contextLength, vocabularySize: vocabularySize ?? self.vocabularySize)
    }

    /// "gpt-L<layers>-H<heads>-C<channels>-T<context>-V<vocab>".
    public var customName: String { "gpt-L\(layers)-H\(heads)-C\(channels)-T\(contextLength)-V\(vocabularySize)" }

    /// Same dimensions (the name aside).
    public func sameShape(as other: GPTConfig) -> Bool {
        layers == other.layers && heads == other.heads && channels == other.channels
            && contextLength == other.contextLength && vocabularySize == other.vocabularySize
    }

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

/// A GPT shape that cannot be built, or a Hugging Face config we cannot honour: one clear line.
public struct GPTConfigError: Error, CustomStringConvertible, Sendable {
    public var description: String
    public init(_ description: String) { self.description = description }
}
