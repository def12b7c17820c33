import Foundation
import Testing
import ZeroModels
import ZeroTensor

/// The fp32 loss kernels of the feature models against the fp64 references of `Loss` (themselves
/// tested against torch), and the whole feature MLP (forward, loss, backward of every parameter)
/// against torch (Tests/Fixtures/make_loss_fixtures.py, model/feature_mlp.safetensors).
/// Tolerance: fp32 kernels against float64 references, each element within 2e-5 of
/// max(|reference|, 1e-2 max |reference|): a few fp32 ulps through exp, log and pow.
@Suite struct FeatureMLPTests {
    func close(_ a: [Float], _ ref: [Float], _ what: String, tolerance: Float = 2e-5) {
        #expect(a.count == ref.count, "\(what): \(a.count) values vs \(ref.count)")
        let scale = 1e-2 * (ref.map(abs).max() ?? 0)
        let worst = zip(a, ref).map { abs($0 - $1) / max(abs($1), scale, 1e-12) }.max() ?? 0
        #expect(worst <= tolerance, "\(what): off by \(worst) relative")
        #expect(ref.contains { $0 != 0 }, "\(what): the reference is all zero")
    }

    static func randoms(_ n: Int, seed: UInt64, std: Float = 2) -> [Float] {
        var rng = SeededGenerator(seed: seed)
        return (0..<n).map { _ in Float(rng.nextNormal()) * std }
    }

    func kernel(_ o: Objective, _ x: [Float], _ labels: [Int32], rows: Int, width: Int) -> (Float, [Float]) {
        var g = [Float](repeating: .nan, count: x.count)
        let value = x.withUnsafeBufferPointer { xp in
            labels.withUnsafeBufferPointer { lp in
                g.withUnsafeMutableBufferPointer {
                    ObjectiveKernels.backward(o, gradient: $0.baseAddress!, outputs: xp.baseAddress!, labels: lp.baseAddress!, rows: rows, width: width)
                }
                return ObjectiveKernels.forward(o, outputs: xp.baseAddress!, labels: lp.baseAddress!, rows: rows, width: width)
            }
        }
        return (value, g)
    }

    @Test func classifierKernelsMatchTheReferences() {
        let N = 32, K = 5
        let x = Self.randoms(N * K, seed: 11)
        let y = (0..<N).map { Int32(($0 * 7) % K) }
        let cases: [(Objective, Loss.Result)] = [
            (.crossEntropy(labelSmoothing: 0), Loss.crossEntropy(logits: x, targets: y, classes: K)),
            (.crossEntropy(labelSmoothing: 0.1), Loss.crossEntropy(logits: x, targets: y, classes: K, labelSmoothing: 0.1)),
            (.softmaxFocal(alpha: 0.25, gamma: 2), Loss.softmaxFocal(logits: x, targets: y, classes: K)),
            (.softmaxFocal(alpha: 1, gamma: 0.5), Loss.softmaxFocal(logits: x, targets: y, classes: K, alpha: 1, gamma: 0.5)),
            (.sigmoidFocal(alpha: 0.25, gamma: 2),
             Loss.sigmoidFocal(logits: x, targets: (0..<(N * K)).map { $0 % K == Int(y[$0 / K]) ? 1 : 0 })),
            (.sigmoidFocal(alpha: -1, gamma: 1),
             Loss.sigmoidFocal(logits: x, targets: (0..<(N * K)).map { $0 % K == Int(y[$0 / K]) ? 1 : 0 }, alpha: -1, gamma: 1)),
        ]
        for (objective, reference) in cases {
            let (value, g) = kernel(objective, x, y, rows: N, width: K)
            close([value], [reference.value], "\(objective) value")
            close(g, reference.gradients[0], "\(objective) gradient")
        }
    }

    @Test func contrastiveKernelsMatchTheReferences() {
        let B = 6, D = 4, z = Self.randoms(2 * B * D, seed: 12, std: 1)
        let (nce, gn) = kernel(.infoNCE(temperature: 0.3), z, [], rows: 2 * B, width: D)
        let ref = Loss.ntXent(embeddings: z, dimension: D, temperature: 0.3)
        close([nce], [ref.value], "infonce value")
        close(gn, ref.gradients[0], "infonce gradient")
        // Triplet: anchor row b, positive row B + b, negative row B + (b + 1) mod B.
        let rows = { (r: [Int]) in r.flatMap { z[($0 * D) ..< ($0 * D + D)] } }
        let a = rows(Array(0..<B)), p = rows((0..<B).map { B + $0 }), q = rows((0..<B).map { B + ($0 + 1) % B })
        let t = Loss.tripletMargin(anchor: a, positive: p, negative: q, dimension: D, margin: 1)
        var expected = [Float](repeating: 0, count: z.count)
        for b in 0..<B {
            for k in 0..<D {
                expected[b * D + k] += t.gradients[0][b * D + k]
                expected[(B + b) * D + k] += t.gradients[1][b * D + k]
                expected[(B + (b + 1) % B) * D + k] += t.gradients[2][b * D + k]
            }
        }
        let (tv, tg) = kernel(.triplet(margin: 1), z, [], rows: 2 * B, width: D)
        close([tv], [t.value], "triplet value")
        close(tg, expected, "triplet gradient")
    }

    /// Forward, loss and backward of the whole MLP against torch, for every loss.
    @Test(arguments: [("cross_entropy", Objective.crossEntropy(labelSmoothing: 0.1)),
                      ("focal", .softmaxFocal(alpha: 0.25, gamma: 2)), ("sigmoid_focal", .sigmoidFocal(alpha: 0.25, gamma: 2)),
                      ("infonce", .infoNCE(temperature: 0.5)), ("triplet", .triplet(margin: 1))])
    func wholeModelMatchesTorch(name: String, objective: Objective) throws {
        let file = try fixture("feature_mlp.safetensors")
        let contrastive = objective.isContrastive
        let examples = contrastive ? 4 : 6, outputs = contrastive ? 3 : 4
        let model = FeatureMLP(featureCount: 5, hiddenWidths: [8, 8], outputs: outputs, examples: examples, objective: objective, ledger: nil)
        let x = try file.floats("\(name).x")
        _ = model.inputRows.update(fromContentsOf: x)
        if !contrastive { _ = model.inputLabels.update(fromContentsOf: try file.floats("labels").map { Int32($0) }) }
        let values: [[Float]] = try (0..<3).map { try file.floats("\(name).layers.\($0).weight") + file.floats("\(name).layers.\($0).bias") }
        let w = values.map { v in UnsafeMutableBufferPointer<Float>.allocate(capacity: v.count).initialized(from: v) }
        let g = values.map { v in UnsafeMutableBufferPointer<Float>.allocate(capacity: v.count).initialized(repeating: 0) }
        defer { (w + g).forEach { $0.deallocate() } }
        let weights = w.map { Optional(UnsafeBufferPointer($0)) }, gradients = g.map { Optional($0) }
        for op in 0..<3 { model.forward(op: op, weights: weights) }
        close([model.loss], try file.floats("\(name).loss"), "\(name): loss")
        for op in (0..<3).reversed() { model.backward(op: op, weights: weights, gradients: gradients) }
        let grads = g.map { Array($0) }
        for k in 0..<3 {
            let ref = try file.floats("\(name).grad.layers.\(k).weight") + file.floats("\(name).grad.layers.\(k).bias")
            close(grads[k], ref, "\(name): gradient of layers.\(k)", tolerance: 1e-4)
        }
    }

    /// Checks a 3-layer MLP with dropout 0.3 against the torch fixture entries under `prefix`: the
    /// keep masks of its 2 hidden layers ([rows x width] each, seed 7, step 2, micro-batch 1, as the
    /// fixture script recomputes them), the loss, every gradient, and that evaluation (step < 0)
    /// does not drop. The model's batch is already loaded.
    func checkDropout(_ model: any TrainableModel & MicroBatchKeyed, _ file: SafeTensors, prefix: String, maskCount: Int) throws {
        let masks = try file.floats("\(prefix)mask")
        for k in 0..<2 {
            let ours = Dropout.keepMask(seed: 7, step: 2, microBatch: 1, layer: k, count: maskCount, p: 0.3)
            #expect(ours.map { $0 ? Float(1) : 0 } == Array(masks[(k * maskCount) ..< ((k + 1) * maskCount)]), "\(prefix) layer \(k) mask")
        }
        let values: [[Float]] = try (0..<3).map { try file.floats("\(prefix)layers.\($0).weight") + file.floats("\(prefix)layers.\($0).bias") }
        let w = values.map { v in UnsafeMutableBufferPointer<Float>.allocate(capacity: v.count).initialized(from: v) }
        let g = values.map { v in UnsafeMutableBufferPointer<Float>.allocate(capacity: v.count).initialized(repeating: 0) }
        defer { (w + g).forEach { $0.deallocate() } }
        let weights = w.map { Optional(UnsafeBufferPointer($0)) }, gradients = g.map { Optional($0) }
        model.setBatchKey(seed: 7, step: -1, microBatch: 1)
        for op in 0..<3 { model.forward(op: op, weights: weights) }
        let evaluation = model.loss
        model.setBatchKey(seed: 7, step: 2, microBatch: 1)
        for op in 0..<3 { model.forward(op: op, weights: weights) }
        close([model.loss], try file.floats("\(prefix)loss"), "\(prefix) loss")
        #expect(evaluation != model.loss, "evaluation must not drop")
        for op in (0..<3).reversed() { model.backward(op: op, weights: weights, gradients: gradients) }
        for k in 0..<3 {
            let ref = try file.floats("\(prefix)grad.layers.\(k).weight") + file.floats("\(prefix)grad.layers.\(k).bias")
            close(Array(g[k]), ref, "\(prefix) gradient of layers.\(k)", tolerance: 1e-4)
        }
    }

    /// The token MLP's dropout (--model mlp --task lm --dropout 0.3) against torch: the same keyed
    /// masks after the embedding's and the hidden layer's ReLU.
    @Test func tokenMLPDropoutMatchesTorch() throws {
        let file = try fixture("token_mlp_dropout.safetensors")
        let model = MLP(vocabularySize: 8, hiddenWidths: [6, 6], batchSize: 2, sequenceLength: 3, ledger: nil, dropout: 0.3)
        let tokens = try file.floats("tokens").map { Int32($0) }, targets = try file.floats("targets").map { Int32($0) }
        tokens.withUnsafeBufferPointer { t in
            targets.withUnsafeBufferPointer { model.setBatch(tokens: t, targets: $0, batchSize: 2, sequenceLength: 3) }
        }
        try checkDropout(model, file, prefix: "", maskCount: 36)
    }

    /// The feature MLP's dropout: our keep masks (the fixture recomputes them from the same
    /// SplitMix64 keys) and the forward and backward through them, against torch.
    @Test func dropoutMatchesTorch() throws {
        let file = try fixture("feature_mlp.safetensors")
        let model = FeatureMLP(featureCount: 5, hiddenWidths: [8, 8], outputs: 4, examples: 6,
                               objective: .crossEntropy(labelSmoothing: 0), ledger: nil, dropout: 0.3)
        _ = model.inputRows.update(fromContentsOf: try file.floats("dropout.x"))
        _ = model.inputLabels.update(fromContentsOf: try file.floats("labels").map { Int32($0) })
        try checkDropout(model, file, prefix: "dropout.", maskCount: 48)
    }

    @Test func syntheticSetIsImbalancedAndSeeded() {
        let a = FeatureDataset.synthetic(seed: 5, split: "train"), b = FeatureDataset.synthetic(seed: 5, split: "train")
        #expect(a.features == b.features && a.labels == b.labels)
        #expect(FeatureDataset.synthetic(seed: 6, split: "train").features != a.features)
        let share = (0..<4).map { c in Double(a.labels.filter { $0 == c }.count) / Double(a.count) }
        for (s, f) in zip(share, FeatureDataset.syntheticFrequencies) { #expect(abs(s - f) < 0.01, "class share \(s) vs \(f)") }
    }

    @Test func csvAndNpyFilesRead() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("feature-files-\(getpid())")
        try? FileManager.default.removeItem(at: dir)
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        try "a,b,label\n1.5,2,0\n-1,0.25,2\n".write(to: dir.appendingPathComponent("d.csv"), atomically: true, encoding: .utf8)
        let csv = try FeatureDataset(spec: dir.appendingPathComponent("d.csv").path)
        #expect(csv.features == [1.5, 2, -1, 0.25] && csv.labels == [0, 2] && csv.classCount == 3)
        func npy(_ descr: String, _ shape: String, _ body: Data) -> Data {
            var header = "{'descr': '\(descr)', 'fortran_order': False, 'shape': \(shape), }"
            while (10 + header.utf8.count + 1) % 64 != 0 { header += " " }
            header += "\n"
            var d = Data([0x93]) + Data("NUMPY".utf8) + Data([1, 0, UInt8(header.utf8.count % 256), UInt8(header.utf8.count / 256)])
            d += Data(header.utf8); d += body
            return d
        }
        let xs: [Float] = [1, 2, 3, 4, 5, 6], ys: [Int64] = [1, 0, 3]
        try npy("<f4", "(3, 2)", xs.withUnsafeBytes { Data($0) }).write(to: dir.appendingPathComponent("features.npy"))
        try npy("<i8", "(3,)", ys.withUnsafeBytes { Data($0) }).write(to: dir.appendingPathComponent("labels.npy"))
        let fromDir = try FeatureDataset(spec: dir.path)
        #expect(fromDir.features == xs && fromDir.labels == [1, 0, 3] && fromDir.featureCount == 2 && fromDir.classCount == 4)
        #expect(throws: TokenDatasetError.self) { try FeatureDataset(spec: dir.appendingPathComponent("missing.npy").path) }
    }
}

extension UnsafeMutableBufferPointer where Element == Float {
    func initialized(from values: [Float]) -> Self { _ = initialize(from: values); return self }
    func initialized(repeating value: Float) -> Self { initialize(repeating: value); return self }
}
