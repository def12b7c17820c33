import Foundation
import ZeroOptim

/// Flags given on the command line, for filling a DeepSpeed config's `"auto"` values: the
/// config those flags produce on their own, and the flag names given.
public struct ExplicitFlags: Sendable {
    public var config: TrainingConfig
    public var flags: Set<String>
    public init(config: TrainingConfig = TrainingConfig(), flags: Set<String> = []) {
        self.config = config
        self.flags = flags
    }
}

/// A DeepSpeed config read with DeepSpeed's semantics (docs/deepspeed.md): its defaults for
/// absent keys (no clipping, constant LR, fp32, stage 0, AdamW with weight decay 0), its
/// schedulers, its batch-size rule, and every key not honoured refused in one line.
struct DeepSpeedConfig {
    /// Top-level keys that mark a file as a DeepSpeed config.
    static let markers: Set<String> = [
        "train_batch_size", "train_micro_batch_size_per_gpu", "gradient_accumulation_steps", "gradient_clipping",
        "zero_optimization", "scheduler", "bf16", "fp16", "steps_per_print", "wall_clock_breakdown",
        "zero_allow_untested_optimizer", "prescale_gradients", "gradient_predivide_factor", "communication_data_type",
        "flops_profiler", "activation_checkpointing", "tensorboard", "wandb", "amp", "zero_force_ds_cpu_optimizer",
    ]

    static func isDeepSpeed(_ object: [String: ConfigJSON]) -> Bool {
        if case .object? = object["optimizer"] { return true }
        return object.keys.contains { markers.contains($0) }
    }

    /// zero_optimization keys that only tune communication buffers or placement: any value
    /// (including "auto") gives the same numbers in DeepSpeed, and zero-train's schedule is fixed.
    static let performanceKeys: Set<String> = [
        "contiguous_gradients", "reduce_scatter", "allgather_partitions", "allgather_bucket_size",
        "reduce_bucket_size", "stage3_prefetch_bucket_size", "stage3_param_persistence_threshold",
        "stage3_max_live_parameters", "stage3_max_reuse_distance", "sub_group_size", "round_robin_gradients",
        "stage3_gather_16bit_weights_on_model_save", "gather_16bit_weights_on_model_save", "elastic_checkpoint",
        "load_from_fp32_weights", "memory_efficient_linear",
    ]

    let file: String
    let explicit: ExplicitFlags
    let ranks: Int
    var c: TrainingConfig
    var problems: [String] = []
    var unknown: [String] = []
    /// "auto" keys with no flag to fill them: "key (--flag)".
    var autos: [String] = []

    init(file: String, config: TrainingConfig, ranks: Int, explicit: ExplicitFlags) {
        self.file = file
        self.explicit = explicit
        self.ranks = ranks
        // DeepSpeed's behaviour when a key is absent.
        c = config
        c.clip = 0
        c.schedule = .constant
        c.deepSpeedSchedule = nil
        c.precision = .fp32
        c.stage = .zero
    }

    /// Reads the whole file, then throws one line naming every key not honoured.
    mutating func apply(_ object: [String: ConfigJSON]) throws -> TrainingConfig {
        for (key, value) in object.sorted(by: { $0.key < $1.key }) { read(key, value) }
        resolveBatch(object)
        if case .object(let s)? = object["scheduler"] { readScheduler(s, fileHasSteps: object["steps"] != nil) }
        var parts: [String] = []
        if !unknown.isEmpty { parts.append("unknown or unsupported key\(unknown.count > 1 ? "s" : ""): \(unknown.joined(separator: ", "))") }
        parts += problems
        if !autos.isEmpty {
            parts.append("\"auto\" needs a value (write it in the file, or pass the flag): \(autos.joined(separator: ", "))")
        }
        if !parts.isEmpty { throw ConfigError("\(file): \(parts.joined(separator: "; "))") }
        return c
    }

    mutating func attempt(_ body: (inout TrainingConfig) throws -> Void) {
        do { try body(&c) } catch { problems.append("\(error)") }
    }

    mutating func set(_ flag: String, _ value: ConfigJSON, _ key: String) {
        attempt { try TrainingOption.named(flag)!.set(&$0, json: value, label: "'\(key)'") }
    }

    /// "auto" filled from the flag when it was given, else recorded as missing; true when handled.
    mutating func auto(_ value: ConfigJSON, _ key: String, flag: String, fill: (inout TrainingConfig, TrainingConfig) -> Void) -> Bool {
        guard value == .string("auto") else { return false }
        if explicit.flags.contains(flag) { fill(&c, explicit.config) } else { autos.append("\(key) (--\(flag))") }
        return true
    }

    mutating func read(_ key: String, _ value: ConfigJSON) {
        switch key {
        case "train_batch_size", "train_micro_batch_size_per_gpu", "gradient_accumulation_steps":
            return  // resolveBatch
        case "scheduler":
            if value.objectValue == nil { problems.append("'scheduler' must be an object, not \(value.typeName)") }
        case "gradient_clipping":
            if !auto(value, key, flag: "clip", fill: { $0.clip = $1.clip }) { set("clip", value, key) }
        case "optimizer":
            readOptimizer(value)
        case "bf16":
            guard let s = section(value, key) else { return }
            only(s, ["enabled"], key)
            if let e = s["enabled"], !auto(e, "bf16.enabled", flag: "precision", fill: { $0.precision = $1.precision }) {
                if case .bool(let on) = e { c.precision = on ? .bf16 : .fp32 } else { problems.append("'bf16.enabled' must be true or false, not \(e.text)") }
            }
        case "fp16":
            // Loss-scaling keys are unused while fp16 is off, in DeepSpeed too.
            guard let s = section(value, key) else { return }
            only(s, ["enabled", "loss_scale", "initial_scale_power", "loss_scale_window", "hysteresis",
                     "consecutive_hysteresis", "min_loss_scale", "auto_cast"], key)
            if let e = s["enabled"], !auto(e, "fp16.enabled", flag: "precision", fill: { _, _ in }) {
                switch e {
                case .bool(false): break
                case .bool(true): problems.append("fp16 is not supported (zero-train emulates bf16; use \"bf16\": {\"enabled\": true})")
                default: problems.append("'fp16.enabled' must be true or false, not \(e.text)")
                }
            }
        case "zero_optimization":
            guard let s = section(value, key) else { return }
            for (k, v) in s.sorted(by: { $0.key < $1.key }) {
                switch k {
                case "stage": set("stage", v, "zero_optimization.stage")
                case "overlap_comm":
                    // DeepSpeed's switch for overlapping reduction (and stage-3 prefetch) with compute.
                    switch v {
                    case .bool(let on): c.overlap = on ? .on : .off
                    case .string("auto"): break
                    default: problems.append("'zero_optimization.overlap_comm' must be true, false or \"auto\", not \(v.text)")
                    }
                case "offload_optimizer", "offload_param":
                    // Everything already lives in host memory: "cpu" and "none" change nothing.
                    guard let o = section(v, "zero_optimization.\(k)") else { continue }
                    only(o, ["device", "pin_memory", "buffer_count", "fast_init", "ratio"], "zero_optimization.\(k)")
                    if let d = o["device"], d != .string("cpu"), d != .string("none") {
                        problems.append("'zero_optimization.\(k).device' \(d.text) is not supported (cpu or none: zero-train keeps everything in host memory)")
                    }
                    if let r = o["ratio"], Double(json: r) != 1 { problems.append("'zero_optimization.\(k).ratio' must be 1 (partial offload is not modelled)") }
                default:
                    if !Self.performanceKeys.contains(k) { unknown.append("zero_optimization.\(k)") }
                }
            }
        case "steps_per_print", "wall_clock_breakdown", "zero_allow_untested_optimizer", "zero_force_ds_cpu_optimizer":
            return  // reporting or permission switches: no effect on what is computed
        case "prescale_gradients":
            if value != .bool(false) { problems.append("'prescale_gradients' must be false (zero-train averages after the sum)") }
        case "gradient_predivide_factor":
            if Double(json: value) != 1 { problems.append("'gradient_predivide_factor' must be 1.0") }
        default:
            if let option = TrainingOption.forConfigKey(key) {
                attempt { try option.set(&$0, json: value, label: "'\(key)'") }
            } else {
                unknown.append(key)
            }
        }
    }

    mutating func section(_ value: ConfigJSON, _ name: String) -> [String: ConfigJSON]? {
        guard let s = value.objectValue else { problems.append("'\(name)' must be an object, not \(value.typeName)"); return nil }
        return s
    }

    mutating func only(_ s: [String: ConfigJSON], _ allowed: Set<String>, _ name: String) {
        unknown += s.keys.filter { !allowed.contains($0) }.sorted().map { "\(name).\($0)" }
    }

    /// optimizer: Adam and AdamW as DeepSpeed builds them (FusedAdam / DeepSpeedCPUAdam):
    /// AdamW unless adam_w_mode is false, lr 1e-3, betas (0.9, 0.999), eps 1e-8, weight decay 0.
    mutating func readOptimizer(_ value: ConfigJSON) {
        guard case .object(let s) = value else {
            set("optimizer", value, "optimizer")  // our own spelling: a name
            return
        }
        only(s, ["type", "params"], "optimizer")
        guard case .string(let type)? = s["type"] else { problems.append("'optimizer' must be a name or an object with a 'type' string"); return }
        guard ["adam", "adamw"].contains(type.lowercased()) else {
            problems.append("optimizer type '\(type)' is not supported (Adam, AdamW)")
            return
        }
        let p: [String: ConfigJSON]
        if let v = s["params"] { guard let o = section(v, "optimizer.params") else { return }; p = o } else { p = [:] }
        only(p, ["lr", "betas", "eps", "weight_decay", "torch_adam", "adam_w_mode", "bias_correction", "amsgrad"], "optimizer.params")
        c.lr = 1e-3; c.beta1 = 0.9; c.beta2 = 0.999; c.eps = 1e-8; c.weightDecay = 0
        var adamW = true
        for key in ["torch_adam", "adam_w_mode", "bias_correction", "amsgrad"] {
            guard let v = p[key] else { continue }
            guard case .bool(let on) = v else { problems.append("'optimizer.params.\(key)' must be true or false, not \(v.text)"); continue }
            if key == "adam_w_mode" { adamW = on }
            if key == "bias_correction" && !on { problems.append("'optimizer.params.bias_correction' false is not supported") }
            if key == "amsgrad" && on { problems.append("'optimizer.params.amsgrad' true is not supported") }
        }
        c.optimizer = adamW ? .adamw : .adam
        let label = { (k: String) in "optimizer.params.\(k)" }
        if let v = p["lr"], !auto(v, label("lr"), flag: "lr", fill: { $0.lr = $1.lr }) { set("lr", v, label("lr")) }
        if let v = p["betas"], !auto(v, label("betas"), flag: explicit.flags.contains("beta2") ? "beta2" : "beta1",
                                       fill: { $0.beta1 = $1.beta1; $0.beta2 = $1.beta2 }) {
            if case .array(let b) = v, b.count == 2 {
                set("beta1", b[0], label("betas[0]"))
                set("beta2", b[1], label("betas[1]"))
            } else {
                problems.append("'\(label("betas"))' must be an array of two numbers in [0, 1), not \(v.text)")
            }
        }
        if let v = p["eps"], !auto(v, label("eps"), flag: "eps", fill: { $0.eps = $1.eps }) { set("eps", v, label("eps")) }
        if let v = p["weight_decay"], !auto(v, label("weight_decay"), flag: "weight-decay", fill: { $0.weightDecay = $1.weightDecay }) {
            set("weight-decay", v, label("weight_decay"))
        }
    }

    /// train_batch_size = micro-batch x accumulation x ranks: the missing one derived, an
    /// inconsistent set refused (DeepSpeed's `_set_batch_related_parameters`).
    mutating func resolveBatch(_ object: [String: ConfigJSON]) {
        var bad = false
        func count(_ key: String, flag: String?, flagged: (TrainingConfig) -> Int) -> Int? {
            guard let v = object[key] else { return nil }
            if v == .string("auto") {
                if let flag, explicit.flags.contains(flag) { return flagged(explicit.config) }
                if flag != nil { autos.append("\(key) (--\(flag!))") ; bad = true }
                return nil  // train_batch_size "auto": derived from the other two
            }
            guard let n = Int(json: v), n >= 1 else {
                problems.append("'\(key)' must be a whole number >= 1, not \(v.text)")
                bad = true
                return nil
            }
            return n
        }
        let tbs = count("train_batch_size", flag: nil) { _ in 0 }
        let micro = count("train_micro_batch_size_per_gpu", flag: "micro-batch") { $0.microBatch }
        let accum = count("gradient_accumulation_steps", flag: "grad-accum") { $0.gradAccum }
        guard !bad else { return }
        let world = ranks
        var m = micro, a = accum
        switch (tbs, micro, accum) {
        case (let t?, let mb?, let ga?):
            guard t == mb * ga * world else {
                problems.append("train_batch_size \(t) != train_micro_batch_size_per_gpu \(mb) x gradient_accumulation_steps \(ga) x \(world) rank\(world > 1 ? "s" : "")")
                return
            }
        case (let t?, let mb?, nil):
            guard t % (mb * world) == 0 else {
                problems.append("train_batch_size \(t) is not a multiple of train_micro_batch_size_per_gpu \(mb) x \(world) rank\(world > 1 ? "s" : "")")
                return
            }
            a = t / (mb * world)
        case (let t?, nil, let ga?):
            guard t % (ga * world) == 0 else {
                problems.append("train_batch_size \(t) is not a multiple of gradient_accumulation_steps \(ga) x \(world) rank\(world > 1 ? "s" : "")")
                return
            }
            m = t / (ga * world)
        case (let t?, nil, nil):
            guard t % world == 0 else { problems.append("train_batch_size \(t) is not a multiple of \(world) ranks"); return }
            m = t / world; a = 1
        case (nil, _?, _):
            a = a ?? 1
        case (nil, nil, _):
            // Our own micro_batch key (or --micro-batch) stands in for DeepSpeed's; else DeepSpeed's refusal.
            guard object["micro_batch"] != nil || explicit.flags.contains("micro-batch") else {
                problems.append("DeepSpeed needs train_batch_size or train_micro_batch_size_per_gpu")
                return
            }
            m = c.microBatch
            a = a ?? c.gradAccum
        }
        set("micro-batch", .int(m!), "train_micro_batch_size_per_gpu")
        set("grad-accum", .int(a!), "gradient_accumulation_steps")
        // A fixed train_batch_size fixes G = accumulation x ranks, also for a resume on other ranks.
        if tbs != nil { c.globalMicroBatches = a! * world } else if accum != nil { c.globalMicroBatches = nil }
    }
}

extension DeepSpeedConfig {
    /// scheduler: WarmupLR, WarmupDecayLR, WarmupCosineLR, OneCycle with DeepSpeed's defaults.
    mutating func readScheduler(_ s: [String: ConfigJSON], fileHasSteps: Bool) {
        only(s, ["type", "params"], "scheduler")
        guard case .string(let type)? = s["type"] else { problems.append("'scheduler' needs a 'type' string"); return }
        guard let kind = DeepSpeedSchedule.Kind(rawValue: type) else {
            problems.append("scheduler type '\(type)' is not supported (WarmupLR, WarmupDecayLR, WarmupCosineLR, OneCycle)")
            return
        }
        let p: [String: ConfigJSON]
        if let v = s["params"] { guard let o = section(v, "scheduler.params") else { return }; p = o } else { p = [:] }
        let known = problems.count + autos.count
        var d = DeepSpeedSchedule(kind: kind, optimizerLR: c.lr)
        let allowed: [String]
        switch kind {
        case .warmupLR: allowed = ["warmup_min_lr", "warmup_max_lr", "warmup_num_steps", "warmup_type"]
        case .warmupDecayLR: allowed = ["warmup_min_lr", "warmup_max_lr", "warmup_num_steps", "warmup_type", "total_num_steps"]
        case .warmupCosineLR: allowed = ["total_num_steps", "warmup_min_ratio", "warmup_num_steps", "cos_min_ratio", "warmup_type"]
        case .oneCycle:
            allowed = ["cycle_min_lr", "cycle_max_lr", "decay_lr_rate", "cycle_first_step_size", "cycle_second_step_size",
                       "cycle_first_stair_count", "cycle_second_stair_count", "decay_step_size", "cycle_momentum",
                       "cycle_min_mom", "cycle_max_mom", "decay_mom_rate"]
        }
        only(p, Set(allowed + ["last_batch_iteration"]), "scheduler.params")
        if kind == .warmupDecayLR { d.warmupMaxLR = 0.001 }  // WarmupDecayLR passes 0.001; WarmupLR falls back to the optimizer's lr
        let key = { (k: String) in "scheduler.params.\(k)" }
        func number(_ k: String, flag: String?, flagged: (TrainingConfig) -> Double, range: ClosedRange<Double> = 0...Double.greatestFiniteMagnitude) -> Double? {
            guard let v = p[k] else { return nil }
            if v == .string("auto") {
                if let flag, explicit.flags.contains(flag) { return flagged(explicit.config) }
                autos.append(flag.map { "\(key(k)) (--\($0))" } ?? key(k))
                return nil
            }
            guard let x = Double(json: v), x.isFinite, range.contains(x) else {
                problems.append("'\(key(k))' must be a number in [\(range.lowerBound), \(range.upperBound == .greatestFiniteMagnitude ? "inf" : "\(range.upperBound)")], not \(v.text)")
                return nil
            }
            return x
        }
        func integer(_ k: String, flag: String?, flagged: (TrainingConfig) -> Int, minimum: Int = 0) -> Int? {
            guard let v = p[k] else { return nil }
            if v == .string("auto") {
                if let flag, explicit.flags.contains(flag) { return flagged(explicit.config) }
                autos.append(flag.map { "\(key(k)) (--\($0))" } ?? key(k))
                return nil
            }
            guard let n = Int(json: v), n >= minimum else {
                problems.append("'\(key(k))' must be a whole number >= \(minimum), not \(v.text)")
                return nil
            }
            return n
        }
        if let v = p["last_batch_iteration"], Int(json: v) != -1 {
            problems.append("'\(key("last_batch_iteration"))' must be -1 (a resumed run takes its step from the checkpoint)")
        }
        if let v = p["warmup_type"] {
            if v == .string("log") || v == .string("linear"), case .string(let t) = v { d.warmupType = t }
            else { problems.append("'\(key("warmup_type"))' must be \"log\" or \"linear\", not \(v.text)") }
        }
        if let x = number("warmup_min_lr", flag: "min-lr", flagged: { $0.minLR }) { d.warmupMinLR = x }
        if let x = number("warmup_max_lr", flag: "lr", flagged: { $0.lr }) { d.warmupMaxLR = x }
        if let n = integer("warmup_num_steps", flag: "warmup", flagged: { $0.warmup }) { d.warmupNumSteps = n }
        if let n = integer("total_num_steps", flag: "steps", flagged: { $0.steps }, minimum: 1) {
            d.totalNumSteps = n
            if !fileHasSteps { c.steps = n }  // the run's length, unless the file or --steps says otherwise
        } else if (kind == .warmupDecayLR || kind == .warmupCosineLR) && p["total_num_steps"] == nil {
            problems.append("\(type) needs '\(key("total_num_steps"))'")
        }
        if let x = number("warmup_min_ratio", flag: nil, flagged: { _ in 0 }, range: 0...1) { d.warmupMinRatio = x }
        if let x = number("cos_min_ratio", flag: nil, flagged: { _ in 0 }, range: 0...1) { d.cosMinRatio = x }
        if kind == .oneCycle {
            for k in ["cycle_min_lr", "cycle_max_lr"] where p[k] == nil { problems.append("OneCycle needs '\(key(k))'") }
            if let x = number("cycle_min_lr", flag: "min-lr", flagged: { $0.minLR }) { d.cycleMinLR = x }
            if let x = number("cycle_max_lr", flag: "lr", flagged: { $0.lr }) { d.cycleMaxLR = x }
            if let x = number("decay_lr_rate", flag: nil, flagged: { _ in 0 }) { d.decayLRRate = x }
            if let n = integer("cycle_first_step_size", flag: nil, flagged: { _ in 0 }, minimum: 1) { d.cycleFirstStepSize = n }
            if let v = p["cycle_second_step_size"], v != .null {
                if let n = integer("cycle_second_step_size", flag: nil, flagged: { _ in 0 }, minimum: 1) { d.cycleSecondStepSize = n }
            }
            if let n = integer("decay_step_size", flag: nil, flagged: { _ in 0 }) { d.decayStepSize = n }
            // Stair counts are stored but never used by DeepSpeed's OneCycle: any whole number.
            for k in ["cycle_first_stair_count", "cycle_second_stair_count"] where p[k] != nil && p[k] != .null {
                _ = integer(k, flag: nil, flagged: { _ in 0 })
            }
            // DeepSpeed's default cycles Adam's beta1 (and sets beta2 to 0.99): not modelled.
            if p["cycle_momentum"] != .bool(false) {
                problems.append("OneCycle needs '\(key("cycle_momentum"))': false (momentum cycling, DeepSpeed's default, is not supported)")
            }
            for k in ["cycle_min_mom", "cycle_max_mom", "decay_mom_rate"] where p[k] != nil {
                _ = number(k, flag: nil, flagged: { _ in 0 })  // unused with cycle_momentum false
            }
        }
        if problems.count + autos.count == known {
            do { try d.validate() } catch { problems.append("\(error)") }
        }
        c.schedule = .deepspeed
        c.deepSpeedSchedule = d
    }
}
