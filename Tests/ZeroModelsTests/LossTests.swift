import Testing
import ZeroModels

/// Each loss against PyTorch (float64 reference from fp32 inputs, Tests/Fixtures/make_loss_fixtures.py).
/// Tolerance: the value and every gradient element within 2e-6 relative (of max(|ref|, 1e-3)):
/// our sums run in fp64 and the results are rounded once to fp32, so they sit within an ulp or
/// two of the float64 reference (fp32's ulp is 1.2e-7 relative).
@Suite struct LossTests {
    let file: SafeTensors
    init() throws { file = try fixture("losses.safetensors") }

    func check(_ name: String, _ result: Loss.Result, inputs: [Int]) throws {
        let loss = try file.floats("\(name).loss")[0]
        #expect(abs(result.value - loss) <= 2e-6 * max(abs(loss), 1e-3), "\(name): loss \(result.value) vs torch \(loss)")
        for (g, i) in zip(result.gradients, inputs) {
            let ref = try file.floats("\(name).grad.in\(i)")
            #expect(g.count == ref.count)
            let worst = zip(g, ref).map { abs($0 - $1) / max(abs($1), 1e-3) }.max() ?? 0
            #expect(worst <= 2e-6, "\(name): gradient of input \(i) off by \(worst) relative")
        }
        #expect(result.gradients.contains { $0.contains { $0 != 0 } }, "\(name): all gradients are zero")
    }

    @Test func crossEntropyWithLabelSmoothing() throws {
        let r = Loss.crossEntropy(logits: try file.floats("ce.in0"), targets: try int32s(file, "ce.in1"), classes: 5, labelSmoothing: 0.1)
        try check("ce", r, inputs: [0])
    }

    @Test func sigmoidFocal() throws {
        let r = Loss.sigmoidFocal(logits: try file.floats("focal_sigmoid.in0"), targets: try file.floats("focal_sigmoid.in1"))
        try check("focal_sigmoid", r, inputs: [0])
    }

    @Test func softmaxFocal() throws {
        let r = Loss.softmaxFocal(logits: try file.floats("focal_softmax.in0"), targets: try int32s(file, "focal_softmax.in1"), classes: 5)
        try check("focal_softmax", r, inputs: [0])
    }

    @Test func ntXent() throws {
        try check("infonce", Loss.ntXent(embeddings: try file.floats("infonce.in0"), dimension: 4, temperature: 0.5), inputs: [0])
    }

    @Test func tripletMargin() throws {
        let r = Loss.tripletMargin(anchor: try file.floats("triplet.in0"), positive: try file.floats("triplet.in1"),
                                   negative: try file.floats("triplet.in2"), dimension: 4)
        try check("triplet", r, inputs: [0, 1, 2])
        #expect(r.gradients[0][0..<4].allSatisfy { $0 == 0 }, "the inactive triplet has no gradient")
    }

    /// Without smoothing and focusing, both reduce to plain cross-entropy (gamma 0, alpha 1).
    @Test func focalWithoutFocusingIsCrossEntropy() throws {
        let x = try file.floats("ce.in0"), y = try int32s(file, "ce.in1")
        let ce = Loss.crossEntropy(logits: x, targets: y, classes: 5)
        let focal = Loss.softmaxFocal(logits: x, targets: y, classes: 5, alpha: 1, gamma: 0)
        #expect(abs(ce.value - focal.value) <= 1e-6 * abs(ce.value))
        #expect(zip(ce.gradients[0], focal.gradients[0]).allSatisfy { abs($0 - $1) <= 1e-7 })
    }
}
