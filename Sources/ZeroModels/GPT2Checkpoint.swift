import Foundation
import ZeroTensor

/// Loads a Hugging Face GPT-2 safetensors checkpoint into unit buffers (one array per
/// unit, layout order). Names may carry the "transformer." prefix or not;
/// "lm_head.weight" is ignored (tied to wte). Every tensor of the layout must be present
/// with exactly the layout's shape; unknown tensors (other than attention bias buffers)
/// are an error, so a mismatched config is caught instead of silently half-loaded.
/// `url` may also be a `save_pretrained` directory: its config.json must describe `config`'s
/// shape and its model.safetensors is read.
public func loadGPT2(safetensorsAt url: URL, config: GPTConfig) throws -> [[Float]] {
    if HuggingFaceGPT2.isDirectory(url) {
        let theirs = try HuggingFaceGPT2.config(directory: url)
        guard theirs.sameShape(as: config) else {
            throw GPTConfigError("\(url.path)/config.json describes \(theirs.name), not \(config.name); drop --model and the shape flags to use its shape")
        }
    }
    let file = try SafeTensors(contentsOf: HuggingFaceGPT2.weightsFile(url))
    let layout = GPT.layout(for: config)
    var byName: [String: SafeTensors.Entry] = [:]
    for e in file.entries {
        let name = e.name.hasPrefix("transformer.") ? String(e.name.dropFirst("transformer.".count)) : e.name
        if name == "lm_head.weight" || name.hasSuffix(".attn.bias") || name.hasSuffix(".attn.masked_bias") { continue }
        guard layout.tensor(named: name) != nil else {
            throw SafeTensorsError("\(url.lastPathComponent): unexpected tensor \"\(e.name)\" for \(config.name) (L=\(config.layers))")
        }
        byName[name] = e
    }
    var units = layout.units.map { [Float](repeating: 0, count: $0.count) }
    for t in layout.tensors {
        guard let e = byName[t.name] else {
            throw SafeTensorsError("\(url.lastPathComponent): tensor \"\(t.name)\" is missing")
        }
        guard e.shape == t.shape else {
            throw SafeTensorsError("\(url.lastPathComponent): tensor \"\(e.name)\" has shape \(e.shape), \(config.name) expects \(t.shape)")
        }
        units[t.unit].withUnsafeMutableBufferPointer { buf in
            file.read(e, into: UnsafeMutableBufferPointer(rebasing: buf[t.offset..<(t.offset + t.count)]))
        }
    }
    return units
}

/// Writes unit buffers as a Hugging Face GPT-2 safetensors file ("transformer."-prefixed
/// names, Conv1D [in, out] matrices, no lm_head since it is tied), in fp32 or bf16
/// (round to nearest even). Written to a temporary name, fsynced, then renamed.
public func saveGPT2(units: [UnsafeBufferPointer<Float>], config: GPTConfig, to url: URL, dtype: SafeTensors.DType) throws {
    let layout = GPT.layout(for: config)
    guard units.count == layout.units.count else {
        throw SafeTensorsError("saveGPT2: \(units.count) unit buffers, \(config.name) has \(layout.units.count)")
    }
    for (u, info) in layout.units.enumerated() where units[u].count < info.count {
        throw SafeTensorsError("saveGPT2: unit \(u) (\(info.name)) has \(units[u].count) values, needs \(info.count)")
    }
    let tensors = layout.tensors.map { t in
        SafeTensors.Tensor(name: "transformer." + t.name, shape: t.shape, dtype: dtype,
                           values: UnsafeBufferPointer(rebasing: units[t.unit][t.offset..<(t.offset + t.count)]))
    }
    try SafeTensors.write(tensors, metadata: ["format": "pt"], to: url)
}
