import Foundation
import Testing
import ZeroModels
import ZeroTensor

/// Parity with PyTorch (Tests/Fixtures/make_model_fixtures.py): same parameters and batch,
/// compare logits, loss and every parameter gradient.
///
/// fp32: loss within 1e-5 relative, every gradient within 1e-4 relative L2.
/// bf16 mode (weights rounded through bf16, fp32 compute, gradients rounded to bf16 once):
/// both sides round fp32 values that differ by ~1e-6 relative, so most elements round
/// identically and the rest differ by one bf16 step (2^-8 relative). We require every
/// element within one bf16 step of the reference, |d| <= 2^-7 max(|ours|, |ref|), plus a
/// noise floor of 1e-5 x the tensor's largest magnitude (the key-bias gradient is zero in
/// exact arithmetic, so both sides hold ~1e-10 cancellation noise there), and the whole
/// tensor within 2e-3 relative L2.
@Suite struct ParityTests {
    static let modes = ["fp32", "bf16"]

    @Test(arguments: modes)
    func gpt(mode: String) throws {
        let file = try fixture("gpt_\(mode).safetensors")
        let config = GPTConfig(name: "fixture", vocabularySize: meta(file, "vocab"), contextLength: meta(file, "context"),
                               layers: meta(file, "layers"), heads: meta(file, "heads"), channels: meta(file, "channels"))
        let B = meta(file, "batch"), T = meta(file, "seq")
        let ledger = MemoryLedger()
        let model = GPT(config: config, batchSize: B, sequenceLength: T, ledger: ledger)
        #expect(ledger.current(.activations) == GPT.activationBytes(config: config, batchSize: B, sequenceLength: T))
        let units = try unitsFromFixture(file, layout: model.layout)
        try check(model: model, file: file, units: units, B: B, T: T, bf16: mode == "bf16")
    }

    @Test(arguments: modes)
    func mlp(mode: String) throws {
        let file = try fixture("mlp_\(mode).safetensors")
        let hidden = file.metadata["hidden"]!.split(separator: ",").map { Int($0)! }
        let B = meta(file, "batch"), T = meta(file, "seq")
        let ledger = MemoryLedger()
        let model = MLP(vocabularySize: meta(file, "vocab"), hiddenWidths: hidden, batchSize: B, sequenceLength: T, ledger: ledger)
        #expect(ledger.current(.activations) == MLP.activationBytes(vocabularySize: meta(file, "vocab"), hiddenWidths: hidden,
                                                                    batchSize: B, sequenceLength: T))
        let units = try unitsFromFixture(file, layout: model.layout)
        try check(model: model, file: file, units: units, B: B, T: T, bf16: mode == "bf16")
    }

    func check(model: TrainableModel, file: SafeTensors, units: [[Float]], B: Int, T: Int, bf16: Bool) throws {
        let run = runModel(model, units: units, tokens: try int32s(file, "tokens"), targets: try int32s(file, "targets"), B: B, T: T)
        let refLoss = try file.floats("loss")[0]
        let lossRel = abs(run.loss - refLoss) / abs(refLoss)
        #expect(lossRel <= 1e-5, "loss \(run.loss) vs torch \(refLoss): rel \(lossRel)")
        let logitDiff = Difference(run.logits!, try file.floats("logits"))
        #expect(logitDiff.relL2 <= 1e-5, "logits: \(logitDiff)")
        var worst = 0.0
        for t in model.layout.tensors {
            var ours = tensorSlice(run.gradients, t)
            if bf16 { ours.withUnsafeMutableBufferPointer { BFloat16.quantize(inPlace: $0) } }
            let ref = try file.floats("grad." + t.name, expectedShape: t.shape)
            let d = Difference(ours, ref)
            worst = max(worst, d.relL2)
            if bf16 {
                #expect(d.relL2 <= 2e-3, "grad \(t.name): \(d)")
                let floor = 1e-5 * (ref.map(abs).max() ?? 0)
                let outside = zip(ours, ref).filter { abs($0 - $1) > 0x1p-7 * max(abs($0), abs($1)) + floor }.count
                #expect(outside == 0, "grad \(t.name): \(outside) elements differ by more than one bf16 step; \(d)")
            } else {
                #expect(d.relL2 <= 1e-4, "grad \(t.name): \(d)")
            }
        }
        print("parity \(type(of: model)) \(bf16 ? "bf16" : "fp32"): loss rel \(lossRel), logits \(logitDiff), worst grad rel L2 \(worst)")
    }
}

/// Backward accumulates: a second forward/backward of the same batch into the same
/// gradient buffers doubles every gradient (including unit 0, which both the head and the
/// embedding op add into).
@Suite struct AccumulationTests {
    @Test func secondBackwardDoubles() throws {
        let file = try fixture("gpt_fp32.safetensors")
        let config = GPTConfig(name: "fixture", vocabularySize: meta(file, "vocab"), contextLength: meta(file, "context"),
                               layers: meta(file, "layers"), heads: meta(file, "heads"), channels: meta(file, "channels"))
        let B = meta(file, "batch"), T = meta(file, "seq")
        let model = GPT(config: config, batchSize: B, sequenceLength: T, ledger: nil)
        let units = try unitsFromFixture(file, layout: model.layout)
        let tokens = try int32s(file, "tokens"), targets = try int32s(file, "targets")
        let once = runModel(model, units: units, tokens: tokens, targets: targets, B: B, T: T).gradients
        var twice = once
        units.withUnsafeBufferPointers { weights in
            let w: [UnsafeBufferPointer<Float>?] = weights
            for op in model.opUnits.indices { model.forward(op: op, weights: w) }
            twice.withUnsafeMutableBufferPointers { grads in
                let g: [UnsafeMutableBufferPointer<Float>?] = grads
                for op in model.opUnits.indices.reversed() { model.backward(op: op, weights: w, gradients: g) }
            }
        }
        for u in units.indices {
            let d = Difference(twice[u], once[u].map { 2 * $0 })
            #expect(d.relL2 <= 1e-6, "unit \(u): \(d)")
        }
    }
}
