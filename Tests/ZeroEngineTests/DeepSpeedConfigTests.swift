import Foundation
import Testing
import ZeroEngine
import ZeroOptim

/// DeepSpeed configs read with DeepSpeed's semantics: its defaults for absent keys, Adam as
/// AdamW, the train_batch_size rule, "auto", and every refused key in one line.
@Suite struct DeepSpeedConfigTests {
    func apply(_ json: String, ranks: Int = 1, explicit: ExplicitFlags = ExplicitFlags()) throws -> TrainingConfig {
        let url = temporaryDirectory("ds-config").appendingPathComponent("ds.json")
        try Data(json.utf8).write(to: url)
        var c = TrainingConfig()
        try ConfigFile.apply(url, to: &c, ranks: ranks, explicit: explicit)
        return c
    }

    func refusal(_ json: String, ranks: Int = 1) -> String? {
        do { _ = try apply(json, ranks: ranks); return nil } catch { return "\(error)" }
    }

    /// Absent keys mean what they mean in DeepSpeed, not our defaults.
    @Test func absentKeysTakeDeepSpeedDefaults() throws {
        let c = try apply(#"{"train_micro_batch_size_per_gpu": 2}"#)
        #expect(c.clip == 0 && c.schedule == .constant && c.deepSpeedSchedule == nil)
        #expect(c.precision == .fp32 && c.stage == .zero && c.microBatch == 2 && c.gradAccum == 1 && c.globalMicroBatches == nil)
        // Our own keys still work next to DeepSpeed's.
        let ours = try apply(#"{"train_micro_batch_size_per_gpu": 2, "model": "gpt-tiny", "seq_len": 16, "steps": 7}"#)
        #expect(ours.model.rawValue == "gpt-tiny" && ours.seqLen == 16 && ours.steps == 7)
    }

    @Test func overlapCommIsTheOverlapSwitch() throws {
        let base = #""train_micro_batch_size_per_gpu": 1"#
        #expect(try apply(#"{\#(base), "zero_optimization": {"overlap_comm": true}}"#).overlap == .on)
        #expect(try apply(#"{\#(base), "zero_optimization": {"overlap_comm": false}}"#).overlap == .off)
        #expect(try apply(#"{\#(base), "zero_optimization": {"overlap_comm": "auto"}}"#).overlap == .auto)
        #expect(try apply(#"{\#(base)}"#).overlap == .auto)
        #expect(refusal(#"{\#(base), "zero_optimization": {"overlap_comm": 3}}"#)?.contains("overlap_comm' must be true, false") == true)
    }

    @Test func adamIsAdamWUnlessAdamWModeIsFalse() throws {
        let base = #""train_micro_batch_size_per_gpu": 1"#
        let adam = try apply(#"{\#(base), "optimizer": {"type": "Adam"}}"#)
        #expect(adam.optimizer == .adamw && adam.lr == 1e-3 && adam.beta1 == 0.9 && adam.beta2 == 0.999)
        #expect(adam.eps == 1e-8 && adam.weightDecay == 0)
        let torch = try apply(#"{\#(base), "optimizer": {"type": "Adam", "params": {"torch_adam": true, "lr": 2e-4, "weight_decay": 0.1}}}"#)
        #expect(torch.optimizer == .adamw && torch.lr == 2e-4 && torch.weightDecay == 0.1)
        let l2 = try apply(#"{\#(base), "optimizer": {"type": "AdamW", "params": {"adam_w_mode": false}}}"#)
        #expect(l2.optimizer == .adam)
    }

    /// train_batch_size = micro x accumulation x ranks; the missing one is derived.
    @Test func batchSizeRule() throws {
        let a = try apply(#"{"train_batch_size": 16, "train_micro_batch_size_per_gpu": 2}"#, ranks: 4)
        #expect(a.microBatch == 2 && a.gradAccum == 2 && a.globalMicroBatches == 8)
        let b = try apply(#"{"train_batch_size": 12, "gradient_accumulation_steps": 3}"#, ranks: 2)
        #expect(b.microBatch == 2 && b.gradAccum == 3 && b.globalMicroBatches == 6)
        let c = try apply(#"{"train_batch_size": 8}"#, ranks: 2)
        #expect(c.microBatch == 4 && c.gradAccum == 1 && c.globalMicroBatches == 2)
        let d = try apply(#"{"train_batch_size": 8, "train_micro_batch_size_per_gpu": 2, "gradient_accumulation_steps": 2}"#, ranks: 2)
        #expect(d.microBatch == 2 && d.gradAccum == 2)
        #expect(refusal(#"{"train_batch_size": 16, "train_micro_batch_size_per_gpu": 2, "gradient_accumulation_steps": 3}"#, ranks: 2)
                == "ds.json: train_batch_size 16 != train_micro_batch_size_per_gpu 2 x gradient_accumulation_steps 3 x 2 ranks")
        #expect(refusal(#"{"train_batch_size": 10, "train_micro_batch_size_per_gpu": 4}"#)
                == "ds.json: train_batch_size 10 is not a multiple of train_micro_batch_size_per_gpu 4 x 1 rank")
        #expect(refusal(#"{"gradient_accumulation_steps": 2}"#) == "ds.json: DeepSpeed needs train_batch_size or train_micro_batch_size_per_gpu")
        // Our own micro_batch / grad_accum keys stand in for DeepSpeed's.
        let ours = try apply(#"{"micro_batch": 3, "grad_accum": 2, "gradient_clipping": 0.5}"#)
        #expect(ours.microBatch == 3 && ours.gradAccum == 2 && ours.clip == 0.5 && ours.schedule == .constant)
    }

    /// Each scheduler with its parameters; the run's steps follow total_num_steps unless given.
    @Test func schedulersKeepEveryParameter() throws {
        let c = try apply("""
        {"train_micro_batch_size_per_gpu": 1, "optimizer": {"type": "AdamW", "params": {"lr": 5e-4}},
         "scheduler": {"type": "WarmupCosineLR", "params": {"total_num_steps": 50, "warmup_num_steps": 5,
                       "warmup_min_ratio": 0.1, "cos_min_ratio": 0.02, "warmup_type": "linear"}}}
        """)
        var want = DeepSpeedSchedule(kind: .warmupCosineLR, optimizerLR: 5e-4)
        want.totalNumSteps = 50; want.warmupNumSteps = 5; want.warmupMinRatio = 0.1; want.cosMinRatio = 0.02; want.warmupType = "linear"
        #expect(c.schedule == .deepspeed && c.deepSpeedSchedule == want && c.steps == 50)
        let w = try apply(#"{"train_micro_batch_size_per_gpu": 1, "steps": 9, "scheduler": {"type": "WarmupDecayLR", "params": {"total_num_steps": 40}}}"#)
        #expect(w.steps == 9 && w.deepSpeedSchedule?.warmupMaxLR == 0.001 && w.deepSpeedSchedule?.warmupNumSteps == 1000)
        #expect(w.deepSpeedSchedule?.warmupType == "log")
        let one = try apply("""
        {"train_micro_batch_size_per_gpu": 1, "scheduler": {"type": "OneCycle", "params": {"cycle_min_lr": 1e-4,
         "cycle_max_lr": 1e-3, "cycle_first_step_size": 10, "decay_lr_rate": 0.1, "decay_step_size": 5, "cycle_momentum": false}}}
        """)
        #expect(one.deepSpeedSchedule?.cycleFirstStepSize == 10 && one.deepSpeedSchedule?.decayStepSize == 5)
        // The config round-trips through the manifest's JSON.
        let again = try JSONDecoder().decode(TrainingConfig.self, from: one.canonicalJSON())
        #expect(again == one)
    }

    /// Every key that is not honoured, in one line.
    @Test func everyRefusalInOneLine() {
        let message = refusal("""
        {"train_batch_size": 16, "train_micro_batch_size_per_gpu": 2, "gradient_accumulation_steps": 3,
         "fp16": {"enabled": true}, "optimizer": {"type": "Lamb"}, "flops_profiler": {"enabled": true},
         "zero_optimization": {"stage": 3, "offload_param": {"device": "nvme"}, "zero_hpz_partition_size": 2},
         "scheduler": {"type": "OneCycle", "params": {"cycle_min_lr": 0.1, "cycle_max_lr": 0.2}}}
        """)
        #expect(message == "ds.json: unknown or unsupported keys: flops_profiler, zero_optimization.zero_hpz_partition_size; "
                + "fp16 is not supported (zero-train emulates bf16; use \"bf16\": {\"enabled\": true}); "
                + "optimizer type 'Lamb' is not supported (Adam, AdamW); "
                + "'zero_optimization.offload_param.device' \"nvme\" is not supported (cpu or none: zero-train keeps everything in host memory); "
                + "train_batch_size 16 != train_micro_batch_size_per_gpu 2 x gradient_accumulation_steps 3 x 1 rank; "
                + "OneCycle needs 'scheduler.params.cycle_momentum': false (momentum cycling, DeepSpeed's default, is not supported)")
        #expect(refusal(#"{"train_micro_batch_size_per_gpu": 1, "scheduler": {"type": "LRRangeTest"}}"#)
                == "ds.json: scheduler type 'LRRangeTest' is not supported (WarmupLR, WarmupDecayLR, WarmupCosineLR, OneCycle)")
        #expect(refusal(#"{"train_micro_batch_size_per_gpu": 1, "scheduler": {"type": "WarmupCosineLR"}}"#)
                == "ds.json: WarmupCosineLR needs 'scheduler.params.total_num_steps'")
    }

    /// "auto" is filled from flags given, else named with the flag that would fill it.
    @Test func autoValues() throws {
        let hf = """
        {"bf16": {"enabled": "auto"}, "optimizer": {"type": "AdamW", "params": {"lr": "auto", "betas": "auto", "eps": "auto", "weight_decay": "auto"}},
         "scheduler": {"type": "WarmupLR", "params": {"warmup_min_lr": "auto", "warmup_max_lr": "auto", "warmup_num_steps": "auto"}},
         "zero_optimization": {"stage": 3, "reduce_bucket_size": "auto", "stage3_prefetch_bucket_size": "auto"},
         "gradient_accumulation_steps": "auto", "gradient_clipping": "auto", "train_batch_size": "auto", "train_micro_batch_size_per_gpu": "auto"}
        """
        #expect(refusal(hf) == "ds.json: \"auto\" needs a value (write it in the file, or pass the flag): bf16.enabled (--precision), "
                + "gradient_clipping (--clip), optimizer.params.lr (--lr), optimizer.params.betas (--beta1), optimizer.params.eps (--eps), "
                + "optimizer.params.weight_decay (--weight-decay), train_micro_batch_size_per_gpu (--micro-batch), "
                + "gradient_accumulation_steps (--grad-accum), scheduler.params.warmup_min_lr (--min-lr), "
                + "scheduler.params.warmup_max_lr (--lr), scheduler.params.warmup_num_steps (--warmup)")
        var flagged = TrainingConfig()
        flagged.precision = .bf16; flagged.clip = 0.5; flagged.lr = 2e-3; flagged.beta2 = 0.98; flagged.eps = 1e-6
        flagged.weightDecay = 0.01; flagged.microBatch = 3; flagged.gradAccum = 2; flagged.minLR = 1e-5; flagged.warmup = 7
        let flags: Set<String> = ["precision", "clip", "lr", "beta2", "eps", "weight-decay", "micro-batch", "grad-accum", "min-lr", "warmup"]
        let c = try apply(hf, ranks: 2, explicit: ExplicitFlags(config: flagged, flags: flags))
        #expect(c.precision == .bf16 && c.clip == 0.5 && c.lr == 2e-3 && c.beta2 == 0.98 && c.eps == 1e-6 && c.weightDecay == 0.01)
        #expect(c.microBatch == 3 && c.gradAccum == 2 && c.globalMicroBatches == nil && c.stage == .three)
        #expect(c.deepSpeedSchedule?.warmupMinLR == 1e-5 && c.deepSpeedSchedule?.warmupMaxLR == 2e-3 && c.deepSpeedSchedule?.warmupNumSteps == 7)
    }
}
