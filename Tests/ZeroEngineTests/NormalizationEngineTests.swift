import Foundation
import Testing
import ZeroComm
import ZeroEngine
import ZeroModels
import ZeroTensor

private let modelFixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
    .deletingLastPathComponent().appendingPathComponent("Fixtures/model")

/// ||ours - ref|| / ||ref|| (fp64).
private func relativeL2(_ ours: [Float], _ ref: [Float]) -> Double {
    precondition(ours.count == ref.count)
    var num = 0.0, den = 0.0
    for (a, b) in zip(ours, ref) { num += Double(a - b) * Double(a - b); den += Double(b) * Double(b) }
    return (num / max(den, 1e-300)).squareRoot()
}

/// `--norm batch|layer` through the trainer: torch parity of whole steps, the determinism
/// contract, checkpoints with running statistics, evaluation with them.
@Suite(.serialized) struct NormalizationEngineTests {
    /// The mlp with BatchNorm: G micro-batches of 2 x 32 tokens.
    func config(stage: Int, norm: NormKind = .batch, steps: Int = 2) -> TrainingConfig {
        var c = tinyConfig(stage: stage, globalMicroBatches: 4, steps: steps)
        c.model = .mlp
        c.norm = norm
        return c
    }

    struct Outcome: Sendable {
        var losses: [Double]
        var validation: Double
        var initial: [[Float]], final: [[Float]]
        var layout: ParameterLayout
        var buffers: [String: [Float]]
    }

    /// Trains `config` on a dataset of `stream` through the Trainer API, then evaluates.
    func train(_ config: TrainingConfig, stream: [UInt16], ranks: Int, validationBatches: Int) throws -> Outcome {
        let data = try TokenDataset(tokens: stream, vocabularySize: 256)
        let outcomes = try SimulatedCluster.run(ranks: ranks, timeout: .seconds(120)) { comm in
            let trainer = try Trainer(config: config, communicator: comm, dataset: data)
            trainer.initializeFromSeed()
            let initial = try trainer.consolidatedMaster()
            var losses: [Double] = []
            for _ in 0 ..< config.steps { losses.append(try trainer.trainStep().loss) }
            let validation = try trainer.validationLoss(on: data, batches: validationBatches)
            let norms = (trainer.model as! any NormalizedModel).norms
            let buffers = Dictionary(uniqueKeysWithValues: norms.buffers.map { ($0.name, $0.values) })
            return Outcome(losses: losses, validation: validation, initial: initial, final: try trainer.consolidatedMaster(),
                           layout: trainer.model.layout, buffers: buffers)
        }
        return outcomes[0]
    }

    /// Two SGD steps of the mlp with BatchNorm (or LayerNorm) equal torch's on the concatenated
    /// global batch: losses, every parameter's update, the running statistics, and the
    /// validation loss in eval() (BatchNorm with the running statistics). On 1 rank stage 0 and
    /// on 2 ranks stage 3 (the same bits, so the same agreement).
    @Test(arguments: [NormKind.batch, .layer])
    func stepsMatchTorch(norm: NormKind) throws {
        let file = try SafeTensors(contentsOf: modelFixtures.appendingPathComponent("mlp_norm_\(norm).safetensors"))
        func meta(_ key: String) -> Int { Int(file.metadata[key]!)! }
        var c = config(stage: 0, norm: norm, steps: meta("steps"))
        c.microBatch = meta("micro_batch"); c.seqLen = meta("seq_len"); c.globalMicroBatches = meta("global_micro_batches")
        c.seed = UInt64(meta("seed")); c.precision = .fp32
        c.optimizer = .sgd; c.lr = Double(file.metadata["lr"]!)!; c.weightDecay = 0; c.clip = 0; c.schedule = .constant; c.warmup = 0
        let stream = try file.floats("stream").map { UInt16($0) }
        let validationBatches = meta("val_batches")

        // The fixture placed the windows as TokenDataset does (its replication is checked first).
        let data = try TokenDataset(tokens: stream, vocabularySize: 256)
        let G = c.globalMicroBatches!, B = c.microBatch
        var starts: [Int] = []
        for step in 0 ..< c.steps { for g in 0 ..< G { for b in 0 ..< B { starts.append(data.windowStart(step: step, microBatch: g, row: b, seed: c.seed, sequenceLength: c.seqLen)) } } }
        for m in 0 ..< validationBatches { for b in 0 ..< B { starts.append(data.windowStart(step: -1, microBatch: m, row: b, seed: c.seed, sequenceLength: c.seqLen)) } }
        #expect(starts == (try file.floats("window_starts")).map { Int($0) })

        let one = try train(c, stream: stream, ranks: 1, validationBatches: validationBatches)
        var c3 = c; c3.stage = .three
        let two = try train(c3, stream: stream, ranks: 2, validationBatches: validationBatches)
        #expect(bits(one.losses) == bits(two.losses) && one.validation.bitPattern == two.validation.bitPattern)
        #expect(one.final == two.final && one.buffers == two.buffers)

        let torchLosses = try file.floats("losses")
        for (ours, ref) in zip(one.losses, torchLosses) { #expect(abs(ours - Double(ref)) <= 1e-5 * Double(ref), "loss \(ours) vs torch \(ref)") }
        let val = Double(try file.floats("val_loss")[0])
        #expect(abs(one.validation - val) <= 1e-5 * val, "validation loss \(one.validation) vs torch \(val)")
        let stride = meta("matrix_stride")
        var worst = 0.0
        for t in one.layout.tensors {
            let ref = try file.floats("param." + t.name)
            let every = t.count > 4096 ? stride : 1
            let indices = Array(Swift.stride(from: 0, to: t.count, by: every))
            #expect(indices.count == ref.count, "\(t.name)")
            let final = indices.map { one.final[t.unit][t.offset + $0] }, initial = indices.map { one.initial[t.unit][t.offset + $0] }
            // Compare the update (after - before): it is what the gradient decides.
            let ours = zip(final, initial).map { $0 - $1 }, theirs = zip(ref, initial).map { $0 - $1 }
            // A Linear's bias right before BatchNorm has a zero gradient (the mean is subtracted):
            // both sides hold rounding noise, which must stay noise.
            if theirs.allSatisfy({ abs($0) < 1e-6 }) {
                #expect(norm == .batch && t.name.hasSuffix("bias") && ours.allSatisfy { abs($0) < 1e-6 }, "update of \(t.name)")
                continue
            }
            let d = relativeL2(ours, theirs)
            worst = max(worst, d)
            #expect(d <= 1e-4, "update of \(t.name): relative L2 error \(d)")
            #expect(relativeL2(final, ref) <= 1e-6, "\(t.name) after the steps")
        }
        if norm == .batch {
            #expect(one.buffers.count == 4)
            for (name, values) in one.buffers {
                let d = relativeL2(values, try file.floats("buffer." + name))
                #expect(d <= 1e-5, "\(name): relative L2 error \(d)")
            }
        } else {
            #expect(one.buffers.isEmpty)
        }
        print("mlp --norm \(norm) vs torch: losses \(one.losses) vs \(torchLosses), val \(one.validation) vs \(val), worst update rel L2 \(worst)")
    }

    /// The contract: stages 0-3 x 1, 2, 4 ranks give the same bits with BatchNorm over the global batch.
    @Test func batchNormIsBitIdenticalAcrossStagesAndRankCounts() throws {
        let reference = try simulate(config(stage: 0), ranks: 1)
        let plain = try simulate(config(stage: 0, norm: .none), ranks: 1)
        #expect(reference.paramsSHA256 != plain.paramsSHA256)
        #expect(reference.losses.allSatisfy { $0.isFinite })
        for stage in 0...3 {
            for ranks in [1, 2, 4] where !(stage == 0 && ranks == 1) {
                let run = try simulate(config(stage: stage), ranks: ranks)
                #expect(bits(run.losses) == bits(reference.losses), "stage \(stage) x \(ranks) ranks: losses differ")
                #expect(bits(run.gradNorms) == bits(reference.gradNorms), "stage \(stage) x \(ranks) ranks: grad norms differ")
                #expect(run.paramsSHA256 == reference.paramsSHA256, "stage \(stage) x \(ranks) ranks: weights differ")
            }
        }
    }

    /// --norm layer is also rank-count and stage independent.
    @Test func layerNormIsBitIdenticalAcrossStagesAndRankCounts() throws {
        let a = try simulate(config(stage: 0, norm: .layer), ranks: 1)
        let b = try simulate(config(stage: 3, norm: .layer), ranks: 4)
        #expect(a.paramsSHA256 == b.paramsSHA256 && bits(a.losses) == bits(b.losses))
    }

    /// The validation loss of a run, read from its metrics file.
    func validationLoss(metrics: URL) throws -> Double? {
        let lines = try String(contentsOf: metrics, encoding: .utf8).split(separator: "\n")
        for line in lines.reversed() {
            let object = try JSONSerialization.jsonObject(with: Data(line.utf8)) as! [String: Any]
            if let v = object["val_loss"] as? Double { return v }
        }
        return nil
    }

    func run(_ config: TrainingConfig, ranks: Int, resume: URL? = nil, metrics: URL) throws -> RunSummary {
        var options = RunOptions()
        options.resume = resume
        options.metricsPath = metrics.path
        options.log = { _ in }
        let opts = options
        return try SimulatedCluster.run(ranks: ranks, timeout: .seconds(120)) { comm in
            try runTraining(config: config, communicator: comm, options: opts)
        }[0]
    }

    /// Stop at step 2, resume to 4 at another rank count and stage: the same weights, and the
    /// same validation loss (which reads the running statistics the checkpoint restored).
    @Test func resumeRestoresTheRunningStatistics() throws {
        let dir = temporaryDirectory("norm-resume")
        func withEval(_ c: TrainingConfig) -> TrainingConfig {
            var c = c
            c.valFraction = 0.05; c.evalEvery = 4; c.evalBatches = 3
            return c
        }
        let straight = try run(withEval(config(stage: 1, steps: 4)), ranks: 2, metrics: dir.appendingPathComponent("a.jsonl"))
        var first = withEval(config(stage: 1, steps: 2)); first.save = dir.appendingPathComponent("ckpt").path
        _ = try run(first, ranks: 2, metrics: dir.appendingPathComponent("b.jsonl"))
        let resumed = try run(withEval(config(stage: 3, steps: 4)), ranks: 4, resume: dir.appendingPathComponent("ckpt"),
                              metrics: dir.appendingPathComponent("c.jsonl"))
        #expect(resumed.paramsSHA256 == straight.paramsSHA256)
        let a = try validationLoss(metrics: dir.appendingPathComponent("a.jsonl"))
        let c = try validationLoss(metrics: dir.appendingPathComponent("c.jsonl"))
        #expect(a != nil && a == c, "validation loss \(String(describing: a)) straight vs \(String(describing: c)) resumed")

        // The manifest lists the buffers; a manifest that lies about their size is refused in one line.
        let step = dir.appendingPathComponent("ckpt/step-00000002")
        let manifestURL = step.appendingPathComponent("manifest.json")
        let manifest = try String(contentsOf: manifestURL, encoding: .utf8)
        #expect(manifest.contains("layers.1.norm.running_var"))
        try manifest.replacingOccurrences(of: "\"count\" : 256", with: "\"count\" : 255").write(to: manifestURL, atomically: true, encoding: .utf8)
        do {
            _ = try run(withEval(config(stage: 3, steps: 4)), ranks: 2, resume: step, metrics: dir.appendingPathComponent("d.jsonl"))
            Issue.record("a lying manifest was accepted")
        } catch {
            #expect("\(error)".contains("running_mean") && !"\(error)".contains("\n"), "\(error)")
        }
    }

    /// A checkpoint without running statistics (saved with --norm layer: the same parameter
    /// layout) is refused by a --norm batch run in one line.
    @Test func missingRunningStatisticsAreRefused() throws {
        let dir = temporaryDirectory("norm-missing")
        var layer = config(stage: 0, norm: .layer, steps: 1); layer.save = dir.path
        _ = try simulate(layer, ranks: 1)
        do {
            _ = try simulate(config(stage: 0, norm: .batch, steps: 2), ranks: 1, resume: dir)
            Issue.record("a checkpoint without running statistics was accepted")
        } catch {
            #expect("\(error)".contains("has no BatchNorm running statistics"), "\(error)")
        }
    }

    /// --norm is for the mlp: a GPT model refuses it with one clear line.
    @Test func gptRefusesNorm() {
        var c = tinyConfig(stage: 0)
        c.norm = .batch
        #expect(throws: ConfigError.self) { try c.validate() }
        do { try c.validate() } catch { #expect("\(error)".contains("--norm batch applies to the mlp model")) }
    }
}
