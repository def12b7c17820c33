import Foundation
import Testing
import ZeroModels
import ZeroTensor

/// Hugging Face `save_pretrained` directories (Tests/Fixtures/make_hf_fixtures.py): the shape
/// comes from config.json, the logits match transformers', and what we write has
/// transformers' own tensor names, shapes and config fields.
@Suite struct HuggingFaceDirectoryTests {
    static let hf = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Fixtures/hf")
    static let tiny = hf.appendingPathComponent("tiny")

    @Test func shapeComesFromConfigJSON() throws {
        let c = try HuggingFaceGPT2.config(directory: Self.tiny)
        #expect(c == GPTConfig(name: "gpt-L2-H4-C32-T48-V260", vocabularySize: 260, contextLength: 48, layers: 2, heads: 4, channels: 32))
        #expect(try GPTConfig.parse(c.name) == c)
        #expect(try GPTConfig.parse("gpt-L2-H4-C64-T64-V256") == .tiny)   // a preset's shape keeps the preset's name
        #expect(try GPTConfig.small.with(layers: 3).name == "gpt-L3-H4-C256-T128-V256")
        for bad in ["gpt-L2-H3-C32-T48-V260", "gpt-L2-H4-C32-T48", "gpt-L0-H4-C32-T48-V260", "gpt-X2-H4-C32-T48-V260", "gpt-huge"] {
            #expect(throws: GPTConfigError.self) { try GPTConfig.parse(bad) }
        }
    }

    /// Our fp32 forward on the directory's weights equals transformers' logits: max abs
    /// difference <= 2e-5 on logits of magnitude ~1 (fp32 with different summation orders).
    @Test func logitsMatchTransformers() throws {
        let config = try HuggingFaceGPT2.config(directory: Self.tiny)
        let units = try loadGPT2(safetensorsAt: Self.tiny, config: config)
        let ref = try SafeTensors(contentsOf: Self.hf.appendingPathComponent("tiny_logits.safetensors"))
        let tokens = try ref.floats("tokens", expectedShape: [2, 16]).map { Int32($0) }
        let model = GPT(config: config, batchSize: 2, sequenceLength: 16, ledger: nil)
        let logits = runModel(model, units: units, tokens: tokens, targets: tokens, B: 2, T: 16).logits!
        let expected = try ref.floats("logits", expectedShape: [2, 16, 260])
        let d = Difference(logits, expected)
        #expect(d.maxAbs <= 2e-5, "\(d)")
        #expect(expected.map(abs).max()! > 0.5)   // the comparison is not between near-zero values
    }

    /// What we write is what transformers wrote: the same tensor names and shapes, and a
    /// config.json that agrees on every field that shapes the model.
    @Test func savedDirectoryHasTransformersLayout() throws {
        let config = try HuggingFaceGPT2.config(directory: Self.tiny)
        let units = try loadGPT2(safetensorsAt: Self.tiny, config: config)
        let out = FileManager.default.temporaryDirectory.appendingPathComponent("zt-hfdir-\(getpid())")
        try? FileManager.default.removeItem(at: out)
        try units.withUnsafeBufferPointers { try HuggingFaceGPT2.save(units: $0, config: config, to: out, dtype: .f32) }
        let theirs = try SafeTensors(contentsOf: Self.tiny.appendingPathComponent("model.safetensors"))
        let ours = try SafeTensors(contentsOf: out.appendingPathComponent("model.safetensors"))
        #expect(Dictionary(uniqueKeysWithValues: ours.entries.map { ($0.name, $0.shape) })
                == Dictionary(uniqueKeysWithValues: theirs.entries.map { ($0.name, $0.shape) }))
        #expect(ours.metadata["format"] == "pt")
        #expect(try loadGPT2(safetensorsAt: out, config: config) == units)

        let a = try jsonObject(Self.tiny.appendingPathComponent("config.json"))
        let b = try jsonObject(out.appendingPathComponent("config.json"))
        for key in ["model_type", "architectures", "n_layer", "n_head", "n_embd", "n_positions", "vocab_size", "n_inner",
                    "activation_function", "layer_norm_epsilon", "tie_word_embeddings", "scale_attn_weights",
                    "scale_attn_by_inverse_layer_idx", "attn_pdrop", "resid_pdrop", "embd_pdrop", "dtype"] {
            #expect(b[key] != nil, "config.json lacks \(key)")
            #expect("\(b[key] ?? "nil")" == "\(a[key] ?? "nil")", "\(key): ours \(b[key] ?? "nil"), transformers \(a[key] ?? "nil")")
        }
        #expect(try HuggingFaceGPT2.config(directory: out) == config)
        try units.withUnsafeBufferPointers { try HuggingFaceGPT2.save(units: $0, config: config, to: out, dtype: .bf16) }
        #expect(try jsonObject(out.appendingPathComponent("config.json"))["torch_dtype"] as? String == "bfloat16")
        #expect(try SafeTensors(contentsOf: out.appendingPathComponent("model.safetensors")).entries.allSatisfy { $0.dtype == .bf16 })
    }

    @Test func unsupportedConfigsAreRefusedInOneLine() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("zt-hfbad-\(getpid())")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        try Data(#"{"model_type": "gpt2", "n_layer": 1, "n_head": 1, "n_embd": 8, "n_positions": 8, "vocab_size": 10, "activation_function": "relu", "n_inner": 16, "tie_word_embeddings": false}"#.utf8)
            .write(to: dir.appendingPathComponent("config.json"))
        do {
            _ = try HuggingFaceGPT2.config(directory: dir)
            Issue.record("accepted an unsupported config")
        } catch let e as GPTConfigError {
            let text = e.description
            #expect(text.contains("activation_function") && text.contains("n_inner") && text.contains("tie_word_embeddings") && !text.contains("\n"), "\(text)")
        }
        try Data(#"{"model_type": "gpt2", "n_layer": "2"}"#.utf8).write(to: dir.appendingPathComponent("config.json"))
        #expect(throws: GPTConfigError.self) { try HuggingFaceGPT2.config(directory: dir) }
        #expect(throws: GPTConfigError.self) { try HuggingFaceGPT2.weightsFile(dir) }   // no model.safetensors
    }

    func jsonObject(_ url: URL) throws -> [String: Any] {
        try JSONSerialization.jsonObject(with: Data(contentsOf: url)) as! [String: Any]
    }
}
