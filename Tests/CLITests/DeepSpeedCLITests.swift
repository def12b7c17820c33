import Foundation
import Testing

/// DeepSpeed configs in the style of DeepSpeed's examples and the Hugging Face Trainer's
/// zero2 / zero3 configs, through the real binary: a run whose lr column is DeepSpeed's curve
/// value by value, or one line naming every key that is not honoured.
@Suite(.serialized) struct DeepSpeedCLITests {
    static let model = ["--model", "gpt-tiny", "--seq-len", "32", "--log-every", "0"]

    func write(_ name: String, _ json: String) throws -> String {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("zt-ds-\(getpid())")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        let url = dir.appendingPathComponent(name)
        try Data(json.utf8).write(to: url)
        return url.path
    }

    /// The lr column of a metrics file, exactly as written.
    func learningRates(_ path: String) throws -> [Double] {
        try String(contentsOfFile: path, encoding: .utf8).split(separator: "\n").compactMap { line in
            guard let r = line.range(of: "\"lr\":") else { return nil }
            let rest = line[r.upperBound...]
            return Double(rest.prefix { $0 != "," && $0 != "}" }.trimmingCharacters(in: .whitespaces))
        }
    }

    /// HF Trainer zero2 style, "auto" written out: WarmupDecayLR, log warm-up, on 2 ranks with
    /// train_batch_size = 2 x 2 x 2. Step i uses DeepSpeed's value at last_batch_iteration i - 1.
    @Test func zero2ConfigRunsDeepSpeedsCurve() throws {
        let config = try write("zero2.json", """
        {
          "fp16": {"enabled": false, "loss_scale": 0, "loss_scale_window": 1000, "initial_scale_power": 16, "hysteresis": 2, "min_loss_scale": 1},
          "bf16": {"enabled": true},
          "optimizer": {"type": "AdamW", "params": {"lr": 0.003, "betas": [0.9, 0.999], "eps": 1e-8, "weight_decay": 0.01}},
          "scheduler": {"type": "WarmupDecayLR", "params": {"warmup_min_lr": 0, "warmup_max_lr": 0.003, "warmup_num_steps": 3, "total_num_steps": 6}},
          "zero_optimization": {"stage": 2, "offload_optimizer": {"device": "cpu", "pin_memory": true}, "allgather_partitions": true,
                                "allgather_bucket_size": 2e8, "overlap_comm": true, "reduce_scatter": true, "reduce_bucket_size": 2e8,
                                "contiguous_gradients": true},
          "gradient_accumulation_steps": 2, "gradient_clipping": 1.0, "steps_per_print": 2000, "train_batch_size": 8,
          "train_micro_batch_size_per_gpu": 2, "wall_clock_breakdown": false
        }
        """)
        let metrics = config + ".metrics.jsonl"
        let r = try runProcess(zeroTrainBinary(), ["--config", config, "--simulate", "2", "--metrics", metrics] + Self.model, timeout: .seconds(300))
        #expect(r.status == 0, "\(r.stderr)")
        // WarmupDecayLR(min 0, max 3e-3, warmup 3, total 6): gamma = log(t + 1) / log(3) for t < 3, then (6 - t) / 3.
        let inv = 1.0 / log(3.0)
        let gamma: [Double] = [0, inv * log(1.0), inv * log(2.0), inv * log(3.0), 1.0, 2.0 / 3.0]  // index i: the value at t = i - 1
        let want = gamma.enumerated().map { i, g in i == 0 ? 0.0 : 0.0 + ((0.003 - 0.0) * g) }
        #expect(try learningRates(metrics) == want)

        // Stopped after 3 steps and resumed from the checkpoint alone: the same curve goes on.
        let save = config + ".ckpt", first = config + ".first.jsonl", second = config + ".second.jsonl"
        let head = try runProcess(zeroTrainBinary(), ["--config", config, "--simulate", "2", "--steps", "3", "--save", save,
                                                      "--metrics", first] + Self.model, timeout: .seconds(300))
        #expect(head.status == 0, "\(head.stderr)")
        let tail = try runProcess(zeroTrainBinary(), ["--resume", save, "--simulate", "2", "--steps", "6", "--metrics", second, "--log-every", "0"],
                                  timeout: .seconds(300))
        #expect(tail.status == 0, "\(tail.stderr)")
        #expect(try learningRates(first) + learningRates(second) == want)
    }

    /// HF Trainer zero3 style with "auto": refused in one line naming each key and its flag;
    /// the same file runs when the flags are given, with WarmupLR's log warm-up.
    @Test func zero3AutoConfigNeedsFlags() throws {
        let config = try write("zero3.json", """
        {
          "fp16": {"enabled": "auto", "loss_scale": 0, "loss_scale_window": 1000, "initial_scale_power": 16, "hysteresis": 2, "min_loss_scale": 1},
          "bf16": {"enabled": "auto"},
          "optimizer": {"type": "AdamW", "params": {"lr": "auto", "betas": "auto", "eps": "auto", "weight_decay": "auto"}},
          "scheduler": {"type": "WarmupLR", "params": {"warmup_min_lr": "auto", "warmup_max_lr": "auto", "warmup_num_steps": "auto"}},
          "zero_optimization": {"stage": 3, "offload_optimizer": {"device": "cpu", "pin_memory": true},
                                "offload_param": {"device": "cpu", "pin_memory": true}, "overlap_comm": true, "contiguous_gradients": true,
                                "sub_group_size": 1e9, "reduce_bucket_size": "auto", "stage3_prefetch_bucket_size": "auto",
                                "stage3_param_persistence_threshold": "auto", "stage3_max_live_parameters": 1e9,
                                "stage3_max_reuse_distance": 1e9, "stage3_gather_16bit_weights_on_model_save": true},
          "gradient_accumulation_steps": "auto", "gradient_clipping": "auto", "steps_per_print": 2000, "train_batch_size": "auto",
          "train_micro_batch_size_per_gpu": "auto", "wall_clock_breakdown": false
        }
        """)
        let refused = try runProcess(zeroTrainBinary(), ["--config", config, "--steps", "2"] + Self.model, timeout: .seconds(60))
        #expect(refused.status != 0)
        let line = refused.stderr.trimmingCharacters(in: .whitespacesAndNewlines)
        #expect(!line.contains("\n"), "\(line)")
        for key in ["bf16.enabled (--precision)", "fp16.enabled (--precision)", "optimizer.params.lr (--lr)", "optimizer.params.eps (--eps)",
                    "train_micro_batch_size_per_gpu (--micro-batch)", "gradient_accumulation_steps (--grad-accum)",
                    "gradient_clipping (--clip)", "scheduler.params.warmup_num_steps (--warmup)", "scheduler.params.warmup_min_lr (--min-lr)"] {
            #expect(line.contains(key), "\(key): \(line)")
        }
        let metrics = config + ".metrics.jsonl"
        let flags = ["--precision", "bf16", "--lr", "0.002", "--beta1", "0.9", "--eps", "1e-8", "--weight-decay", "0",
                     "--micro-batch", "2", "--grad-accum", "1", "--clip", "1", "--min-lr", "0.0001", "--warmup", "4", "--steps", "6"]
        let r = try runProcess(zeroTrainBinary(), ["--config", config, "--simulate", "2", "--metrics", metrics] + flags + Self.model,
                               timeout: .seconds(300))
        #expect(r.status == 0, "\(r.stderr)")
        // WarmupLR(min 1e-4, max 2e-3, warmup 4, log): min + delta * log(t + 1) / log(4) for t < 4, then max.
        let delta = 0.002 - 0.0001, inv = 1.0 / log(4.0)
        let want = (0..<6).map { i -> Double in
            let t = i - 1
            if t < 0 { return 0.0001 }
            return 0.0001 + (delta * (t < 4 ? inv * log(Double(t + 1)) : 1.0))
        }
        #expect(try learningRates(metrics) == want)
    }

    /// DeepSpeed's example style (train_batch_size only, "Adam", WarmupCosineLR with every
    /// parameter): micro-batch derived as 8 / 2 ranks, the cosine curve value by value.
    @Test func exampleConfigRunsWarmupCosine() throws {
        let config = try write("example.json", """
        {"train_batch_size": 8, "steps_per_print": 10,
         "optimizer": {"type": "Adam", "params": {"lr": 0.002, "betas": [0.8, 0.999], "eps": 1e-8, "weight_decay": 3e-7}},
         "scheduler": {"type": "WarmupCosineLR", "params": {"total_num_steps": 6, "warmup_num_steps": 2, "warmup_min_ratio": 0.1,
                       "cos_min_ratio": 0.01, "warmup_type": "linear"}},
         "gradient_clipping": 1.0, "prescale_gradients": false, "bf16": {"enabled": false}, "wall_clock_breakdown": false,
         "zero_optimization": {"stage": 1}}
        """)
        let metrics = config + ".metrics.jsonl"
        let r = try runProcess(zeroTrainBinary(), ["--config", config, "--simulate", "2", "--metrics", metrics] + Self.model, timeout: .seconds(300))
        #expect(r.status == 0, "\(r.stderr)")
        // WarmupCosineLR: step 0 holds 0; at t = i - 1 < 2 the ratio is 0.1 + (t / 2) * 0.9, then
        // max(0, 0.01 + 0.99 * (1 + cos(pi * (t - 1) / 4)) / 2).
        let want = (0..<6).map { i -> Double in
            let t = i - 1
            if t < 0 { return 0.0 }
            if t < 2 { return 0.002 * (0.1 + Double(t) / Double(2) * (1.0 - 0.1)) }
            let ratio = (1 + cos(Double.pi * Double(t - 2 + 1) / Double(6 - 2))) / 2
            return 0.002 * max(0.0, 0.01 + (1.0 - 0.01) * ratio)
        }
        #expect(try learningRates(metrics) == want)
    }

    /// DeepSpeed's own example style: a refused set is named key by key in one line.
    @Test func refusedKeysInOneLine() throws {
        let config = try write("refused.json", """
        {"train_batch_size": 16, "train_micro_batch_size_per_gpu": 2, "gradient_accumulation_steps": 2,
         "optimizer": {"type": "OneBitAdam", "params": {"lr": 0.001, "freeze_step": 400}},
         "scheduler": {"type": "LRRangeTest", "params": {"lr_range_test_min_lr": 1e-5}},
         "fp16": {"enabled": true}, "flops_profiler": {"enabled": true}, "activation_checkpointing": {"partition_activations": true}}
        """)
        let r = try runProcess(zeroTrainBinary(), ["--config", config, "--simulate", "2"] + Self.model, timeout: .seconds(60))
        #expect(r.status != 0)
        #expect(r.stderr == "zero-train: error: refused.json: unknown or unsupported keys: activation_checkpointing, flops_profiler; "
                + "fp16 is not supported (zero-train emulates bf16; use \"bf16\": {\"enabled\": true}); "
                + "optimizer type 'OneBitAdam' is not supported (Adam, AdamW); "
                + "train_batch_size 16 != train_micro_batch_size_per_gpu 2 x gradient_accumulation_steps 2 x 2 ranks; "
                + "scheduler type 'LRRangeTest' is not supported (WarmupLR, WarmupDecayLR, WarmupCosineLR, OneCycle)\n")
    }
}
