import ZeroTensor

extension GPT {
    /// The layout table of a GPT-2 model: unit 0 = embeddings (wte, wpe), units 1...L =
    /// blocks, unit L+1 = final LayerNorm. Names are Hugging Face's without the
    /// "transformer." prefix; matrices use HF's Conv1D layout [in, out], which is what
    /// is stored (y = x W + b is one no-transpose sgemm). Decay: 2-D tensors only.
    public static func layout(for config: GPTConfig) -> ParameterLayout {
        let V = config.vocabularySize, T = config.contextLength, C = config.channels, L = config.layers
        var units: [UnitInfo] = []
        var tensors: [TensorInfo] = []
        func addUnit(_ name: String, _ list: [(String, [Int])]) {
            let u = units.count
            var offset = 0
            for (tensorName, shape) in list {
                tensors.append(TensorInfo(name: tensorName, shape: shape, unit: u, offset: offset, decay: shape.count == 2))
                offset += shape.reduce(1, *)
            }
            units.append(UnitInfo(name: name, count: offset))
        }
        addUnit("embeddings", [("wte.weight", [V, C]), ("wpe.weight", [T, C])])
        for l in 0..<L {
            let p = "h.\(l)."
            addUnit("h.\(l)", [
                (p + "ln_1.weight", [C]), (p + "ln_1.bias", [C]),
                (p + "attn.c_attn.weight", [C, 3 * C]), (p + "attn.c_attn.bias", [3 * C]),
                (p + "attn.c_proj.weight", [C, C]), (p + "attn.c_proj.bias", [C]),
                (p + "ln_2.weight", [C]), (p + "ln_2.bias", [C]),
                (p + "mlp.c_fc.weight", [C, 4 * C]), (p + "mlp.c_fc.bias", [4 * C]),
                (p + "mlp.c_proj.weight", [4 * C, C]), (p + "mlp.c_proj.bias", [C]),
            ])
        }
        addUnit("final", [("ln_f.weight", [C]), ("ln_f.bias", [C])])
        return ParameterLayout(units: units, tensors: tensors)
    }

    /// GPT-2 initialization of one unit, tensor by tensor, each from a generator keyed
    /// by (seed, tensor name): normal(0, 0.02) for wte, wpe and matrices, with
    /// attn.c_proj and mlp.c_proj scaled to 0.02 / sqrt(2 L); zero biases; unit
    /// LayerNorm weights. The values do not depend on rank count or unit order.
    static func initialize(layout: ParameterLayout, config: GPTConfig, unit: Int,
                           into buffer: UnsafeMutableBufferPointer<Float>, seed: UInt64) {
        precondition(buffer.count >= layout.units[unit].count, "unit \(unit) buffer too small")
        let projectionStd = Float(0.02 / (2.0 * Double(config.layers)).squareRoot())
        for tensor in layout.tensors where tensor.unit == unit {
            let view = UnsafeMutableBufferPointer(rebasing: buffer[tensor.offset..<(tensor.offset + tensor.count)])
            if tensor.name.hasSuffix(".bias") {
                view.update(repeating: 0)
            } else if tensor.name.contains("ln_") {
                view.update(repeating: 1)
            } else {
                var rng = SeededGenerator(seed: seed, key: tensor.name)
                let std: Float = tensor.name.hasSuffix("c_proj.weight") ? projectionStd : 0.02
                rng.fillNormal(view, std: std)
            }
        }
    }
}
