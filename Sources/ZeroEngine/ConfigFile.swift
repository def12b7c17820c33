import Foundation

/// Reads a JSON config: our own keys (the flag names, e.g. "micro_batch", "stage") or a
/// DeepSpeed config (train_micro_batch_size_per_gpu, gradient_accumulation_steps,
/// gradient_clipping, bf16.enabled, zero_optimization.stage, optimizer, scheduler).
/// Unknown or unsupported keys are named in an error, never ignored.
public enum ConfigFile {
    public static func apply(_ url: URL, to config: inout TrainingConfig) throws {
        guard let data = FileManager.default.contents(atPath: url.path) else {
            throw ConfigError("config file not found: \(url.path)")
        }
        guard let object = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any] else {
            throw ConfigError("config file \(url.path) is not a JSON object")
        }
        try apply(object, to: &config, file: url.lastPathComponent)
    }

    static func apply(_ object: [String: Any], to c: inout TrainingConfig, file: String) throws {
        var unknown: [String] = []
        for (key, value) in object.sorted(by: { $0.key < $1.key }) {
            func num() throws -> Double {
                guard let n = value as? NSNumber, !(value is Bool) else { throw ConfigError("\(file): '\(key)' must be a number") }
                return n.doubleValue
            }
            func int() throws -> Int {
                let d = try num()
                guard d == d.rounded(), abs(d) < 1e15 else { throw ConfigError("\(file): '\(key)' must be a whole number") }
                return Int(d)
            }
            func str() throws -> String {
                guard let s = value as? String else { throw ConfigError("\(file): '\(key)' must be a string") }
                return s
            }
            func bool() throws -> Bool {
                guard let b = value as? Bool else { throw ConfigError("\(file): '\(key)' must be true or false") }
                return b
            }
            switch key {
            // Our names (as the flags, with underscores).
            case "model": c.model = try str()
            case "stage": c.stage = try int()
            case "steps": c.steps = try int()
            case "micro_batch", "train_micro_batch_size_per_gpu": c.microBatch = try int()
            case "grad_accum", "gradient_accumulation_steps": c.gradAccum = try int()
            case "global_micro_batches": c.globalMicroBatches = try int()
            case "seq_len": c.seqLen = try int()
            case "lr": c.lr = try num()
            case "min_lr": c.minLR = try num()
            case "warmup": c.warmup = try int()
            case "schedule": c.schedule = try str()
            case "weight_decay": c.weightDecay = try num()
            case "beta1": c.beta1 = try num()
            case "beta2": c.beta2 = try num()
            case "eps": c.eps = try num()
            case "clip", "gradient_clipping": c.clip = try num()
            case "optimizer":
                if let name = value as? String { c.optimizer = name } else { try applyDeepSpeedOptimizer(value, to: &c, file: file) }
            case "precision": c.precision = try str()
            case "data": c.data = try str()
            case "init": c.initFrom = try str()
            case "seed": c.seed = UInt64(try int())
            case "save": c.save = try str()
            case "save_every": c.saveEvery = try int()
            case "keep": c.keep = try int()
            case "max_skips": c.maxSkips = try int()
            case "timeout": c.timeout = try num()
            case "blas_threads": c.blasThreads = try int()
            // DeepSpeed's names.
            case "train_batch_size":
                // G * micro_batch; resolved below once micro_batch is known.
                continue
            case "bf16":
                guard let section = value as? [String: Any] else { throw ConfigError("\(file): 'bf16' must be an object") }
                try only(section, ["enabled"], in: "bf16", file: file)
                if let e = section["enabled"] as? Bool { c.precision = e ? "bf16" : "fp32" }
            case "fp16":
                if let section = value as? [String: Any], section["enabled"] as? Bool == true {
                    throw ConfigError("\(file): fp16 is not supported (zero-train emulates bf16; use \"bf16\": {\"enabled\": true})")
                }
            case "zero_optimization":
                guard let section = value as? [String: Any] else { throw ConfigError("\(file): 'zero_optimization' must be an object") }
                try only(section, ["stage", "contiguous_gradients", "overlap_comm", "reduce_scatter", "allgather_partitions"], in: "zero_optimization", file: file)
                if let s = section["stage"] as? NSNumber { c.stage = s.intValue }
            case "scheduler":
                try applyDeepSpeedScheduler(value, to: &c, file: file)
            case "steps_per_print", "wall_clock_breakdown":
                continue  // harmless reporting keys
            default:
                unknown.append(key)
            }
        }
        if let tbs = object["train_batch_size"] {
            guard let n = tbs as? NSNumber else { throw ConfigError("\(file): 'train_batch_size' must be a number") }
            guard n.intValue % c.microBatch == 0 else {
                throw ConfigError("\(file): train_batch_size \(n.intValue) is not a multiple of the micro-batch \(c.microBatch)")
            }
            c.globalMicroBatches = n.intValue / c.microBatch
        }
        if !unknown.isEmpty {
            throw ConfigError("\(file): unknown or unsupported key\(unknown.count > 1 ? "s" : ""): \(unknown.joined(separator: ", "))")
        }
    }

    static func only(_ section: [String: Any], _ allowed: Set<String>, in name: String, file: String) throws {
        let extra = section.keys.filter { !allowed.contains($0) }.sorted()
        if !extra.isEmpty {
            throw ConfigError("\(file): unsupported key\(extra.count > 1 ? "s" : "") in '\(name)': \(extra.joined(separator: ", "))")
        }
    }

    static func applyDeepSpeedOptimizer(_ value: Any, to c: inout TrainingConfig, file: String) throws {
        guard let section = value as? [String: Any], let type = section["type"] as? String else {
            throw ConfigError("\(file): 'optimizer' must be a name or an object with a 'type'")
        }
        try only(section, ["type", "params"], in: "optimizer", file: file)
        switch type.lowercased() {
        case "adamw": c.optimizer = "adamw"
        case "adam": c.optimizer = "adam"
        case "lion": c.optimizer = "lion"
        case "sgd": c.optimizer = "sgd"
        default: throw ConfigError("\(file): optimizer type '\(type)' is not supported (AdamW, Adam, Lion, SGD)")
        }
        guard let params = section["params"] as? [String: Any] else { return }
        try only(params, ["lr", "betas", "eps", "weight_decay", "torch_adam", "adam_w_mode"], in: "optimizer.params", file: file)
        if let lr = params["lr"] as? NSNumber { c.lr = lr.doubleValue }
        if let b = params["betas"] as? [NSNumber], b.count == 2 { c.beta1 = b[0].doubleValue; c.beta2 = b[1].doubleValue }
        if let e = params["eps"] as? NSNumber { c.eps = e.doubleValue }
        if let wd = params["weight_decay"] as? NSNumber { c.weightDecay = wd.doubleValue }
    }

    static func applyDeepSpeedScheduler(_ value: Any, to c: inout TrainingConfig, file: String) throws {
        guard let section = value as? [String: Any], let type = section["type"] as? String else {
            throw ConfigError("\(file): 'scheduler' must be an object with a 'type'")
        }
        try only(section, ["type", "params"], in: "scheduler", file: file)
        let params = section["params"] as? [String: Any] ?? [:]
        switch type {
        case "WarmupCosineLR":
            try only(params, ["total_num_steps", "warmup_num_steps", "cos_min_ratio", "warmup_min_ratio"], in: "scheduler.params", file: file)
            c.schedule = "warmup_cosine"
            if let n = params["warmup_num_steps"] as? NSNumber { c.warmup = n.intValue }
            if let n = params["total_num_steps"] as? NSNumber { c.steps = n.intValue }
            if let r = params["cos_min_ratio"] as? NSNumber { c.minLR = c.lr * r.doubleValue }
        case "WarmupLR":
            try only(params, ["warmup_num_steps", "warmup_max_lr", "warmup_min_lr", "warmup_type"], in: "scheduler.params", file: file)
            c.schedule = "warmup_constant"
            if let n = params["warmup_num_steps"] as? NSNumber { c.warmup = n.intValue }
            if let lr = params["warmup_max_lr"] as? NSNumber { c.lr = lr.doubleValue }
        default:
            throw ConfigError("\(file): scheduler type '\(type)' is not supported (WarmupCosineLR, WarmupLR)")
        }
    }
}
