import Foundation

/// Reads a JSON config: our own keys (the flag names with underscores, e.g. "micro_batch",
/// "stage"; see `TrainingOption.all`) or a DeepSpeed config (train_micro_batch_size_per_gpu,
/// gradient_accumulation_steps, gradient_clipping, bf16.enabled, zero_optimization.stage,
/// optimizer, scheduler). Every value is checked for its type and range like the flag it
/// stands for; unknown or unsupported keys are named in an error, never ignored.
public enum ConfigFile {
    public static func apply(_ url: URL, to config: inout TrainingConfig) throws {
        let path = url.path
        if let found = describeNonRegularFile(path) {
            throw found.hasPrefix("nothing") ? ConfigError("config file not found: \(path)")
                : ConfigError("config file \(path) is \(found); expected a JSON file")
        }
        guard let data = FileManager.default.contents(atPath: path) else {
            throw ConfigError("config file \(path) cannot be read (check its permissions)")
        }
        guard let json = ConfigJSON.parse(data) else { throw ConfigError("config file \(path) is not valid JSON") }
        guard let object = json.objectValue else { throw ConfigError("config file \(path) is not a JSON object") }
        try apply(object, to: &config, file: url.lastPathComponent)
    }

    public static func apply(_ object: [String: ConfigJSON], to c: inout TrainingConfig, file: String) throws {
        var unknown: [String] = []
        for (key, value) in object.sorted(by: { $0.key < $1.key }) {
            if key == "optimizer", case .object = value {
                try applyDeepSpeedOptimizer(value, to: &c, file: file)
                continue
            }
            if let option = TrainingOption.forConfigKey(key) {
                try option.set(&c, json: value, label: "\(file): '\(key)'")
                continue
            }
            switch key {
            case "train_batch_size":
                continue  // G * micro_batch; resolved below once micro_batch is known.
            case "bf16":
                let section = try jsonObject(value, "bf16", file: file)
                try only(section, ["enabled"], in: "bf16", file: file)
                if let e = section["enabled"] {
                    guard case .bool(let on) = e else { throw ConfigError("\(file): 'bf16.enabled' must be true or false, not \(e.text)") }
                    c.precision = on ? .bf16 : .fp32
                }
            case "fp16":
                let section = try jsonObject(value, "fp16", file: file)
                if let e = section["enabled"] {
                    guard case .bool(let on) = e else { throw ConfigError("\(file): 'fp16.enabled' must be true or false, not \(e.text)") }
                    if on { throw ConfigError("\(file): fp16 is not supported (zero-train emulates bf16; use \"bf16\": {\"enabled\": true})") }
                }
            case "zero_optimization":
                let section = try jsonObject(value, "zero_optimization", file: file)
                try only(section, ["stage", "contiguous_gradients", "overlap_comm", "reduce_scatter", "allgather_partitions"],
                         in: "zero_optimization", file: file)
                if let s = section["stage"] { try set("stage", s, &c, "\(file): 'zero_optimization.stage'") }
            case "scheduler":
                try applyDeepSpeedScheduler(value, to: &c, file: file)
            case "steps_per_print", "wall_clock_breakdown":
                continue  // harmless reporting keys
            default:
                unknown.append(key)
            }
        }
        if !unknown.isEmpty {
            throw ConfigError("\(file): unknown or unsupported key\(unknown.count > 1 ? "s" : ""): \(unknown.joined(separator: ", "))")
        }
        if let tbs = object["train_batch_size"] {
            guard let n = Int(json: tbs), n >= 1 else {
                throw ConfigError("\(file): 'train_batch_size' must be a whole number >= 1, not \(tbs.text)")
            }
            guard n % c.microBatch == 0 else {
                throw ConfigError("\(file): train_batch_size \(n) is not a multiple of the micro-batch \(c.microBatch)")
            }
            try set("global-micro-batches", .int(n / c.microBatch), &c, "\(file): 'train_batch_size' / micro-batch")
        }
    }

    /// Sets the option with `flag` from a value found under another name (a DeepSpeed section).
    static func set(_ flag: String, _ value: ConfigJSON, _ c: inout TrainingConfig, _ label: String) throws {
        try TrainingOption.named(flag)!.set(&c, json: value, label: label)
    }

    static func jsonObject(_ value: ConfigJSON, _ name: String, file: String) throws -> [String: ConfigJSON] {
        guard let section = value.objectValue else { throw ConfigError("\(file): '\(name)' must be an object, not \(value.typeName)") }
        return section
    }

    static func only(_ section: [String: ConfigJSON], _ allowed: Set<String>, in name: String, file: String) throws {
        let extra = section.keys.filter { !allowed.contains($0) }.sorted()
        if !extra.isEmpty {
            throw ConfigError("\(file): unsupported key\(extra.count > 1 ? "s" : "") in '\(name)': \(extra.joined(separator: ", "))")
        }
    }

    static func applyDeepSpeedOptimizer(_ value: ConfigJSON, to c: inout TrainingConfig, file: String) throws {
        let section = try jsonObject(value, "optimizer", file: file)
        guard case .string(let type)? = section["type"] else {
            throw ConfigError("\(file): 'optimizer' must be a name or an object with a 'type' string")
        }
        try only(section, ["type", "params"], in: "optimizer", file: file)
        switch type.lowercased() {
        case "adamw": c.optimizer = .adamw
        case "adam": c.optimizer = .adam
        case "lion": c.optimizer = .lion
        case "sgd": c.optimizer = .sgd
        default: throw ConfigError("\(file): optimizer type '\(type)' is not supported (AdamW, Adam, Lion, SGD)")
        }
        guard let p = section["params"] else { return }
        let params = try jsonObject(p, "optimizer.params", file: file)
        try only(params, ["lr", "betas", "eps", "weight_decay", "torch_adam", "adam_w_mode"], in: "optimizer.params", file: file)
        let label = { (key: String) in "\(file): 'optimizer.params.\(key)'" }
        if let v = params["lr"] { try set("lr", v, &c, label("lr")) }
        if let v = params["betas"] {
            guard case .array(let b) = v, b.count == 2 else {
                throw ConfigError("\(label("betas")) must be an array of two numbers in [0, 1), not \(v.text)")
            }
            try set("beta1", b[0], &c, label("betas[0]"))
            try set("beta2", b[1], &c, label("betas[1]"))
        }
        if let v = params["eps"] { try set("eps", v, &c, label("eps")) }
        if let v = params["weight_decay"] { try set("weight-decay", v, &c, label("weight_decay")) }
        for key in ["torch_adam", "adam_w_mode"] {
            if let v = params[key], Bool(json: v) == nil { throw ConfigError("\(label(key)) must be true or false, not \(v.text)") }
        }
    }

    static func applyDeepSpeedScheduler(_ value: ConfigJSON, to c: inout TrainingConfig, file: String) throws {
        let section = try jsonObject(value, "scheduler", file: file)
        guard case .string(let type)? = section["type"] else {
            throw ConfigError("\(file): 'scheduler' must be an object with a 'type' string")
        }
        try only(section, ["type", "params"], in: "scheduler", file: file)
        let params = try section["params"].map { try jsonObject($0, "scheduler.params", file: file) } ?? [:]
        let label = { (key: String) in "\(file): 'scheduler.params.\(key)'" }
        switch type {
        case "WarmupCosineLR":
            try only(params, ["total_num_steps", "warmup_num_steps", "cos_min_ratio", "warmup_min_ratio"], in: "scheduler.params", file: file)
            c.schedule = .warmupCosine
            if let v = params["warmup_num_steps"] { try set("warmup", v, &c, label("warmup_num_steps")) }
            if let v = params["total_num_steps"] { try set("steps", v, &c, label("total_num_steps")) }
            if let v = params["cos_min_ratio"] {
                guard let r = Double(json: v), r >= 0, r <= 1 else {
                    throw ConfigError("\(label("cos_min_ratio")) must be a number in [0, 1], not \(v.text)")
                }
                c.minLR = c.lr * r
            }
            if let v = params["warmup_min_ratio"], Double(json: v) == nil {
                throw ConfigError("\(label("warmup_min_ratio")) must be a number, not \(v.text)")
            }
        case "WarmupLR":
            try only(params, ["warmup_num_steps", "warmup_max_lr", "warmup_min_lr", "warmup_type"], in: "scheduler.params", file: file)
            c.schedule = .warmupConstant
            if let v = params["warmup_num_steps"] { try set("warmup", v, &c, label("warmup_num_steps")) }
            if let v = params["warmup_max_lr"] { try set("lr", v, &c, label("warmup_max_lr")) }
        default:
            throw ConfigError("\(file): scheduler type '\(type)' is not supported (WarmupCosineLR, WarmupLR)")
        }
    }
}

/// What is at `path`, in plain words, when it is not a regular file (nil when it is one).
public func describeNonRegularFile(_ path: String) -> String? {
    var st = stat()
    guard stat(path, &st) == 0 else { return errno == ENOENT ? "nothing (no such file)" : String(cString: strerror(errno)) }
    switch st.st_mode & S_IFMT {
    case S_IFREG: return nil
    case S_IFDIR: return "a directory"
    case S_IFIFO: return "a FIFO (named pipe)"
    case S_IFCHR: return "a character device"
    case S_IFBLK: return "a block device"
    case S_IFSOCK: return "a socket"
    default: return "not a regular file"
    }
}
