import Foundation
import ZeroTensor

/// Hugging Face `save_pretrained` directories of GPT2LMHeadModel: config.json (the shape)
/// next to model.safetensors (the weights). Reading infers the GPT shape and refuses the
/// config values our model does not compute (another activation, an untied head...), all
/// of them in one message; writing produces a directory `from_pretrained` loads unedited.
public enum HuggingFaceGPT2 {
    /// The fields of a GPT-2 config.json we read; others (dropout, token ids) do not change the forward pass.
    struct ConfigFile: Decodable {
        var model_type: String?
        var n_layer: Int?
        var n_head: Int?
        var n_embd: Int?
        var n_positions: Int?
        var n_ctx: Int?
        var vocab_size: Int?
        var n_inner: Int?
        var activation_function: String?
        var layer_norm_epsilon: Double?
        var tie_word_embeddings: Bool?
        var scale_attn_weights: Bool?
        var scale_attn_by_inverse_layer_idx: Bool?
    }

    /// Whether `url` is a directory (a `save_pretrained` directory rather than one file).
    public static func isDirectory(_ url: URL) -> Bool {
        var isDir: ObjCBool = false
        return FileManager.default.fileExists(atPath: url.path, isDirectory: &isDir) && isDir.boolValue
    }

    /// The GPT shape config.json in `directory` describes.
    public static func config(directory: URL) throws -> GPTConfig {
        let url = directory.appendingPathComponent("config.json")
        guard FileManager.default.fileExists(atPath: url.path) else {
            throw GPTConfigError("\(directory.path): no config.json (expected a save_pretrained directory)")
        }
        let file: ConfigFile
        do { file = try JSONDecoder().decode(ConfigFile.self, from: Data(contentsOf: url)) } catch {
            throw GPTConfigError("\(url.path): not a GPT-2 config (\(describe(error)))")
        }
        return try config(file, source: url.path)
    }

    static func config(_ f: ConfigFile, source: String) throws -> GPTConfig {
        var problems: [String] = []
        if let t = f.model_type, t != "gpt2" { problems.append("model_type \"\(t)\" (only gpt2)") }
        let missing = [("n_layer", f.n_layer), ("n_head", f.n_head), ("n_embd", f.n_embd), ("vocab_size", f.vocab_size),
                       ("n_positions", f.n_positions ?? f.n_ctx)].filter { $0.1 == nil }.map(\.0)
        if !missing.isEmpty { problems.append("missing " + missing.joined(separator: ", ")) }
        if let a = f.activation_function, !["gelu_new", "gelu_pytorch_tanh"].contains(a) {
            problems.append("activation_function \"\(a)\" (the model computes gelu_new)")
        }
        if let inner = f.n_inner, let c = f.n_embd, inner != 4 * c { problems.append("n_inner \(inner) (must be 4 x n_embd)") }
        if let eps = f.layer_norm_epsilon, eps != 1e-5 { problems.append("layer_norm_epsilon \(eps) (must be 1e-5)") }
        if f.tie_word_embeddings == false { problems.append("tie_word_embeddings false (the head is tied to wte)") }
        if f.scale_attn_weights == false { problems.append("scale_attn_weights false") }
        if f.scale_attn_by_inverse_layer_idx == true { problems.append("scale_attn_by_inverse_layer_idx true") }
        guard problems.isEmpty else {
            throw GPTConfigError("\(source): cannot use this GPT-2 config: " + problems.joined(separator: "; "))
        }
        do {
            return try GPTConfig.shape(layers: f.n_layer!, heads: f.n_head!, channels: f.n_embd!,
                                       contextLength: (f.n_positions ?? f.n_ctx)!, vocabularySize: f.vocab_size!)
        } catch { throw GPTConfigError("\(source): \(error)") }
    }

    /// The weights file of `url`: the file itself, or a directory's model.safetensors.
    public static func weightsFile(_ url: URL) throws -> URL {
        guard isDirectory(url) else { return url }
        let file = url.appendingPathComponent("model.safetensors")
        if FileManager.default.fileExists(atPath: file.path) { return file }
        let fm = FileManager.default
        if fm.fileExists(atPath: url.appendingPathComponent("model.safetensors.index.json").path) {
            throw GPTConfigError("\(url.path): sharded safetensors (model.safetensors.index.json) are not supported; save with a larger max_shard_size")
        }
        if fm.fileExists(atPath: url.appendingPathComponent("pytorch_model.bin").path) {
            throw GPTConfigError("\(url.path): only pytorch_model.bin; save with safe_serialization=True to get model.safetensors")
        }
        throw GPTConfigError("\(url.path): no model.safetensors")
    }

    /// A config.json `GPT2LMHeadModel.from_pretrained` loads as is: GPT-2's architecture
    /// fields for this shape, tied head, no dropout (our model has none), torch dtype of the weights.
    public static func configJSON(_ c: GPTConfig, dtype: SafeTensors.DType) -> String {
        let torchDType = dtype == .bf16 ? "bfloat16" : "float32"
        let special = c.vocabularySize == 50257 ? "50256" : "null"   // GPT-2's <|endoftext|>, else none
        let fields: [(String, String)] = [
            ("activation_function", "\"gelu_new\""), ("architectures", "[\"GPT2LMHeadModel\"]"), ("attn_pdrop", "0.0"),
            ("bos_token_id", special), ("dtype", "\"\(torchDType)\""), ("embd_pdrop", "0.0"), ("eos_token_id", special),
            ("initializer_range", "0.02"), ("layer_norm_epsilon", "1e-05"), ("model_type", "\"gpt2\""),
            ("n_embd", "\(c.channels)"), ("n_head", "\(c.heads)"), ("n_inner", "null"), ("n_layer", "\(c.layers)"),
            ("n_positions", "\(c.contextLength)"), ("reorder_and_upcast_attn", "false"), ("resid_pdrop", "0.0"),
            ("scale_attn_by_inverse_layer_idx", "false"), ("scale_attn_weights", "true"), ("tie_word_embeddings", "true"),
            ("torch_dtype", "\"\(torchDType)\""), ("use_cache", "true"), ("vocab_size", "\(c.vocabularySize)"),
        ]
        return "{\n" + fields.map { "  \"\($0.0)\": \($0.1)" }.joined(separator: ",\n") + "\n}\n"
    }

    /// Writes `directory`/config.json and `directory`/model.safetensors (creating the directory).
    public static func save(units: [UnsafeBufferPointer<Float>], config: GPTConfig, to directory: URL, dtype: SafeTensors.DType) throws {
        let fm = FileManager.default
        if fm.fileExists(atPath: directory.path) && !isDirectory(directory) {
            throw SafeTensorsError("\(directory.path) exists and is not a directory")
        }
        do { try fm.createDirectory(at: directory, withIntermediateDirectories: true) } catch {
            throw SafeTensorsError("cannot create \(directory.path): \(describe(error))")
        }
        try saveGPT2(units: units, config: config, to: directory.appendingPathComponent("model.safetensors"), dtype: dtype)
        do {
            try Data(configJSON(config, dtype: dtype).utf8).write(to: directory.appendingPathComponent("config.json"), options: .atomic)
        } catch {
            throw SafeTensorsError("cannot write \(directory.path)/config.json: \(describe(error))")
        }
    }

    static func describe(_ error: Error) -> String {
        if let e = error as? DecodingError {
            switch e {
            case .typeMismatch(_, let c), .valueNotFound(_, let c), .keyNotFound(_, let c), .dataCorrupted(let c):
                let path = c.codingPath.map(\.stringValue).joined(separator: ".")
                return path.isEmpty ? c.debugDescription : "\(path): \(c.debugDescription)"
            @unknown default: return "\(e)"
            }
        }
        return (error as NSError).localizedDescription
    }
}
