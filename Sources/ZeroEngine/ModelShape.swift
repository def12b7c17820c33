import Foundation
import ZeroModels

/// GPT dimensions given on the command line (`--n-layer --n-head --n-embd --block-size
/// --vocab-size`); nil keeps the base model's.
public struct ShapeOverrides: Sendable, Equatable {
    public var layers: Int?
    public var heads: Int?
    public var channels: Int?
    public var contextLength: Int?
    public var vocabularySize: Int?
    public init(layers: Int? = nil, heads: Int? = nil, channels: Int? = nil, contextLength: Int? = nil, vocabularySize: Int? = nil) {
        self.layers = layers; self.heads = heads; self.channels = channels
        self.contextLength = contextLength; self.vocabularySize = vocabularySize
    }
    public var isEmpty: Bool { self == ShapeOverrides() }
}

extension TrainingConfig {
    /// Settles `model` from `--init DIR` and the shape flags, before `validate()`.
    ///
    /// A `save_pretrained` directory's config.json gives the shape unless `--model` was
    /// given (`modelGiven`), in which case the two must agree. Shape flags then replace
    /// single dimensions of that base (or of `model`). The result is stored as a model
    /// name (a preset's, or "gpt-L..-H..-C..-T..-V.."), so the manifest, the consensus
    /// check and every consumer of `model` carry the shape without another field.
    public mutating func resolveModelShape(modelGiven: Bool, overrides: ShapeOverrides = ShapeOverrides()) throws {
        var base: GPTConfig? = nil
        if let path = initFrom, HuggingFaceGPT2.isDirectory(URL(fileURLWithPath: path)) {
            let theirs = try HuggingFaceGPT2.config(directory: URL(fileURLWithPath: path))
            if modelGiven, let mine = GPTConfig.named(model), !mine.sameShape(as: theirs) {
                throw ConfigError("--model \(model) differs from \(path)/config.json (\(theirs.name)); drop --model to use the directory's shape")
            }
            base = theirs
        }
        if !overrides.isEmpty && base == nil {
            guard model != .mlp else { throw ConfigError("--n-layer/--n-head/--n-embd/--block-size/--vocab-size apply to GPT models, not \(model)") }
            do { base = try GPTConfig.parse(model.rawValue) } catch { throw ConfigError("\(error)") }
        }
        guard let b = base else {
            // Say what is wrong with a mistyped shape name.
            if model != .mlp { do { _ = try GPTConfig.parse(model.rawValue) } catch { throw ConfigError("\(error)") } }
            return
        }
        do {
            let shape = try b.with(layers: overrides.layers, heads: overrides.heads, channels: overrides.channels,
                                   contextLength: overrides.contextLength, vocabularySize: overrides.vocabularySize)
            guard let name = ModelName(rawValue: shape.name) else { throw ConfigError("model shape \(shape.name) is not a valid model name") }
            model = name
        } catch { throw ConfigError("\(error)") }
    }
}

extension TrainingConfig {
    /// Whether the model reads bytes: trained on text (the embedded corpus, a text file)
    /// rather than llm.c .bin token shards, with a vocabulary that holds every byte.
    public var isByteLevel: Bool {
        guard let gpt = GPTConfig.named(model), gpt.vocabularySize >= 256 else { return false }
        guard let data else { return true }
        var isDir: ObjCBool = false
        if FileManager.default.fileExists(atPath: data, isDirectory: &isDir), isDir.boolValue {
            let names = (try? FileManager.default.contentsOfDirectory(atPath: data)) ?? []
            return !names.contains { $0.hasSuffix(".bin") }
        }
        return !data.hasSuffix(".bin")
    }
}

/// The prompt and `count` sampled tokens (seeded by the run's seed) as text for byte-level
/// models, else as token ids; a token-id prompt is read from space-separated numbers.
func sampleText(_ config: TrainingConfig, _ gpt: GPTConfig, _ units: [[Float]], prompt: String, count: Int) -> String {
    let bytes = config.isByteLevel
    var ids = bytes ? prompt.utf8.map { Int32($0) }
        : prompt.split(separator: " ").compactMap { Int32($0) }.filter { $0 >= 0 && Int($0) < gpt.vocabularySize }
    if ids.isEmpty { ids = [bytes ? 10 : 0] }
    let out = withUnitPointers(units) {
        GPT.generate(config: gpt, units: $0, prompt: ids, count: count, options: SamplingOptions(seed: config.seed))
    }
    let all = ids + out
    return bytes ? String(decoding: all.map { UInt8(truncatingIfNeeded: $0) }, as: UTF8.self).debugDescription
        : all.map(String.init).joined(separator: " ")
}
