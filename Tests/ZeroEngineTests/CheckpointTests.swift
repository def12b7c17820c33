import Foundation
import Testing
import ZeroComm
import ZeroEngine

@Suite(.serialized) struct CheckpointTests {
    /// Stop at step 2 and resume to step 4: the same bits as an uninterrupted run,
    /// also at another rank count and stage (resharding).
    @Test func resumeAndReshardAreBitIdentical() throws {
        let straight = try simulate(tinyConfig(stage: 2, steps: 4), ranks: 4)

        let dir = temporaryDirectory("resume")
        var first = tinyConfig(stage: 2, steps: 2)
        first.save = dir.path
        let half = try simulate(first, ranks: 4)
        #expect(bits(half.losses) == bits(Array(straight.losses.prefix(2))))

        let resumed = try simulate(tinyConfig(stage: 2, steps: 4), ranks: 4, resume: dir)
        #expect(bits(resumed.losses) == bits(Array(straight.losses.suffix(2))))
        #expect(resumed.paramsSHA256 == straight.paramsSHA256)

        let resharded = try simulate(tinyConfig(stage: 3, steps: 4), ranks: 2, resume: dir)
        #expect(bits(resharded.losses) == bits(Array(straight.losses.suffix(2))))
        #expect(resharded.paramsSHA256 == straight.paramsSHA256)

        let toStage0 = try simulate(tinyConfig(stage: 0, steps: 4), ranks: 1, resume: dir)
        #expect(toStage0.paramsSHA256 == straight.paramsSHA256)
    }

    @Test func keepsOnlyTheNewestCheckpoints() throws {
        let dir = temporaryDirectory("keep")
        var c = tinyConfig(stage: 1, globalMicroBatches: 2, steps: 4)
        c.save = dir.path
        c.saveEvery = 1
        c.keep = 2
        _ = try simulate(c, ranks: 2)
        let all = try FileManager.default.contentsOfDirectory(atPath: dir.path).sorted()
        #expect(all == [".zero-train.lock", "step-00000003", "step-00000004"])
        let names = all.filter { !$0.hasPrefix(".") }
        let files = try FileManager.default.contentsOfDirectory(atPath: dir.appendingPathComponent(names[1]).path).sorted()
        #expect(files == ["manifest.json", "rank-00000.safetensors", "rank-00001.safetensors"])
    }

    @Test func damagedOrIncompleteCheckpointsAreRefusedWithoutWriting() throws {
        let dir = temporaryDirectory("bad")
        var c = tinyConfig(stage: 2, globalMicroBatches: 2, steps: 1)
        c.save = dir.path
        _ = try simulate(c, ranks: 2)
        let step = dir.appendingPathComponent("step-00000001")
        let shard = step.appendingPathComponent("rank-00001.safetensors")
        let good = try Data(contentsOf: shard)

        // A flipped byte fails the checksum.
        var bad = good
        bad[bad.count - 3] ^= 0x40
        try bad.write(to: shard)
        var more = tinyConfig(stage: 2, globalMicroBatches: 2, steps: 2)
        more.save = dir.path
        #expect(throws: (any Error).self) { _ = try simulate(more, ranks: 2, resume: dir) }
        do { _ = try simulate(more, ranks: 2, resume: dir) } catch {
            #expect("\(error)".contains("SHA-256"))
        }
        // Nothing was overwritten by the failed resume.
        #expect(try Data(contentsOf: shard) == bad)

        // A manifest without its shards.
        try FileManager.default.removeItem(at: shard)
        do { _ = try simulate(more, ranks: 2, resume: dir); Issue.record("resumed without a shard") } catch {
            #expect("\(error)".contains("missing"))
        }

        // A checkpoint of another model.
        try good.write(to: shard)
        var other = more
        other.model = .gptSmall
        other.seqLen = 32
        do { _ = try simulate(other, ranks: 2, resume: dir); Issue.record("resumed another model") } catch {
            #expect("\(error)".contains("another run"))
        }

        // A directory with no complete checkpoint.
        let empty = temporaryDirectory("empty")
        try FileManager.default.createDirectory(at: empty.appendingPathComponent("step-00000005"), withIntermediateDirectories: true)
        #expect(throws: (any Error).self) { _ = try Checkpoint.resolve(empty) }
    }
}

@Suite struct ConfigTests {
    @Test func badValuesGetOneClearLine() throws {
        var c = tinyConfig(stage: 1)
        do { try TrainingOption.named("stage")!.set(&c, text: "4", label: "--stage"); Issue.record("accepted stage 4") } catch {
            #expect("\(error)" == "--stage must be 0, 1, 2 or 3, not '4'")
        }
        do { try TrainingOption.named("model")!.set(&c, text: "gpt-huge", label: "--model"); Issue.record("accepted gpt-huge") } catch {
            #expect("\(error)" == "--model must be gpt-tiny, gpt-small, gpt-medium, gpt2-124m or mlp, or a GPT shape gpt-L<layers>-H<heads>-C<channels>-T<context>-V<vocab>, not 'gpt-huge'")
        }
        c.beta1 = 1.5
        do { try c.validate(); Issue.record("accepted beta1 1.5") } catch { #expect("\(error)" == "--beta1 must be a number in [0, 1), not 1.5") }
        c = tinyConfig(stage: 1)
        c = tinyConfig(stage: 1, globalMicroBatches: 2)
        #expect(throws: ConfigError.self) { _ = try c.accumulationSteps(ranks: 4) }
        c = tinyConfig(stage: 1, globalMicroBatches: 6)
        #expect(throws: ConfigError.self) { _ = try c.accumulationSteps(ranks: 4) }
        #expect(try c.accumulationSteps(ranks: 3) == 2)
    }

    @Test func readsDeepSpeedConfigsAndNamesUnknownKeys() throws {
        let dir = temporaryDirectory("config")
        let ds = dir.appendingPathComponent("ds.json")
        try Data("""
        {"train_micro_batch_size_per_gpu": 4, "gradient_accumulation_steps": 2, "gradient_clipping": 0.5,
         "bf16": {"enabled": true}, "zero_optimization": {"stage": 3},
         "optimizer": {"type": "AdamW", "params": {"lr": 0.0006, "betas": [0.9, 0.99], "eps": 1e-8, "weight_decay": 0.05}},
         "scheduler": {"type": "WarmupCosineLR", "params": {"total_num_steps": 100, "warmup_num_steps": 10}}}
        """.utf8).write(to: ds)
        var c = TrainingConfig()
        try ConfigFile.apply(ds, to: &c)
        #expect(c.microBatch == 4 && c.gradAccum == 2 && c.clip == 0.5 && c.stage == .three)
        #expect(c.lr == 0.0006 && c.beta2 == 0.99 && c.weightDecay == 0.05 && c.optimizer == .adamw)
        #expect(c.steps == 100 && c.precision == .bf16 && c.schedule == .deepspeed)
        #expect(c.deepSpeedSchedule?.kind == .warmupCosineLR && c.deepSpeedSchedule?.warmupNumSteps == 10)

        let bad = dir.appendingPathComponent("bad.json")
        try Data(#"{"stage": 2, "offload_optimizer": {"device": "cpu"}, "flops_profiler": {}}"#.utf8).write(to: bad)
        do { try ConfigFile.apply(bad, to: &c); Issue.record("accepted unknown keys") } catch {
            #expect("\(error)" == "bad.json: unknown or unsupported keys: flops_profiler, offload_optimizer; "
                    + "DeepSpeed needs train_batch_size or train_micro_batch_size_per_gpu")
        }
    }
}

@Suite(.serialized) struct OptimizerStateCheckpointTests {
    /// Adafactor's replicated state reshards: resume at another rank count and stage.
    @Test func adafactorResumesAndReshardsBitIdentically() throws {
        func config(_ stage: Int, steps: Int) -> TrainingConfig {
            var c = tinyConfig(stage: stage, globalMicroBatches: 4, steps: steps)
            c.optimizer = .adafactor
            return c
        }
        let straight = try simulate(config(2, steps: 4), ranks: 2)
        let dir = temporaryDirectory("adafactor")
        var first = config(2, steps: 2)
        first.save = dir.path
        _ = try simulate(first, ranks: 2)
        for (stage, ranks) in [(2, 2), (3, 4), (0, 1), (1, 4)] {
            let resumed = try simulate(config(stage, steps: 4), ranks: ranks, resume: dir)
            #expect(bits(resumed.losses) == bits(Array(straight.losses.suffix(2))), "stage \(stage) x \(ranks)")
            #expect(resumed.paramsSHA256 == straight.paramsSHA256, "stage \(stage) x \(ranks)")
        }
    }

    /// ReduceLROnPlateau's state is in the manifest and is what the resumed run uses.
    @Test func plateauStateResumes() throws {
        func config(steps: Int) -> TrainingConfig {
            var c = tinyConfig(stage: 1, globalMicroBatches: 2, steps: steps)
            c.schedule = .reduceOnPlateau
            return c
        }
        let straight = try simulate(config(steps: 5), ranks: 2)
        let dir = temporaryDirectory("plateau")
        var first = config(steps: 3)
        first.save = dir.path
        _ = try simulate(first, ranks: 2)
        let resumed = try simulate(config(steps: 5), ranks: 2, resume: dir)
        #expect(bits(resumed.losses) == bits(Array(straight.losses.suffix(2))))
        #expect(resumed.paramsSHA256 == straight.paramsSHA256)

        // The saved state is really used: a manifest whose plateau state has cut the rate resumes differently.
        let manifestURL = dir.appendingPathComponent("step-00000003").appendingPathComponent("manifest.json")
        let text = try String(contentsOf: manifestURL, encoding: .utf8)
        let manifest = try Checkpoint.readManifest(manifestURL.deletingLastPathComponent())
        let plateau = try #require(manifest.schedule?.plateau)
        #expect(plateau.lastEpoch == 3 && plateau.best.isFinite && plateau.learningRate == 1e-2)
        let cut = text.replacingOccurrences(of: "\"learningRate\" : 0.01", with: "\"learningRate\" : 0.001")
        #expect(cut != text)
        try cut.write(to: manifestURL, atomically: true, encoding: .utf8)
        let changed = try simulate(config(steps: 5), ranks: 2, resume: dir)
        #expect(changed.paramsSHA256 != straight.paramsSHA256)
    }
}
