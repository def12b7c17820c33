import Foundation

/// The one declaration of every training option: its flag, its config-file keys, its key in
/// the checkpoint manifest, its help and what it accepts. The CLI's flags, `--config`
/// parsing, `TrainingConfig`'s Codable form (the manifest) and validation all read this
/// table, so an option is added in one place (plus its `@Option` line, which a test checks).
public struct TrainingOption: Sendable {
    /// The flag without its dashes ("micro-batch").
    public let flag: String
    /// Keys accepted in a `--config` JSON file (ours first, then DeepSpeed's spelling if any).
    public let configKeys: [String]
    /// Key in `TrainingConfig`'s JSON (the manifest and the ranks' consensus check).
    public let manifestKey: String
    /// One sentence: what the option does.
    public let summary: String
    /// What it accepts, as a phrase that completes "--flag must be ...".
    public let accepts: String
    /// Every accepted value, for closed sets.
    public let choices: [String]?
    /// A switch on the command line (`--error-if-nonfinite`), true or false in a config file.
    public let isSwitch: Bool
    /// Changing it on `--resume` changes what the run computes (refused without
    /// `--allow-config-change`); false for bookkeeping (where to save, how long to wait) and
    /// for what a resume may change by design (stage, steps).
    public let changesMath: Bool

    let setText: @Sendable (inout TrainingConfig, String) -> Bool
    let setJSON: @Sendable (inout TrainingConfig, ConfigJSON) -> Bool
    let isValid: @Sendable (TrainingConfig) -> Bool
    let current: @Sendable (TrainingConfig) -> String?
    let encode: @Sendable (TrainingConfig, inout KeyedEncodingContainer<OptionKey>) throws -> Void
    let decode: @Sendable (inout TrainingConfig, KeyedDecodingContainer<OptionKey>) throws -> Void

    /// Sets the option from command-line text; `label` names the source in the error ("--lr").
    public func set(_ config: inout TrainingConfig, text: String, label: String) throws {
        guard setText(&config, text) else { throw ConfigError("\(label) must be \(accepts), not '\(text)'") }
    }

    /// Sets the option from a config file's value; `label` names the source ("ds.json: 'lr'").
    public func set(_ config: inout TrainingConfig, json: ConfigJSON, label: String) throws {
        guard setJSON(&config, json) else { throw ConfigError("\(label) must be \(accepts), not \(json.text)") }
    }

    /// Throws when the config's value is outside what the option accepts.
    public func check(_ config: TrainingConfig) throws {
        guard isValid(config) else { throw ConfigError("--\(flag) must be \(accepts), not \(current(config) ?? "unset")") }
    }

    /// The config's value as a flag would spell it (nil when unset).
    public func value(in config: TrainingConfig) -> String? { current(config) }

    /// The `--help` text: summary, accepted values, default and config keys.
    public var help: String {
        var text = summary
        if let choices { text += " One of: \(choices.joined(separator: ", "))." }
        else if !isSwitch { text += " Accepts \(accepts)." }
        if let d = value(in: TrainingConfig()), !isSwitch { text += " Default: \(d)." }
        return text
    }

    public static func named(_ flag: String) -> TrainingOption? { all.first { $0.flag == flag } }
    public static func forConfigKey(_ key: String) -> TrainingOption? { all.first { $0.configKeys.contains(key) } }
}

/// What an option accepts: a test and the phrase that names it in help and error lines.
public struct Accepted<Value: OptionValue>: Sendable {
    public let phrase: String
    let test: @Sendable (Value) -> Bool
    public init(_ phrase: String, _ test: @escaping @Sendable (Value) -> Bool) { self.phrase = phrase; self.test = test }
}

extension Accepted where Value == Int {
    static func from(_ low: Int, to high: Int) -> Accepted { Accepted("an integer from \(low) to \(high)") { (low...high).contains($0) } }
}

extension Accepted where Value == Double {
    static let positive = Accepted("a finite number > 0") { $0.isFinite && $0 > 0 }
    static let nonNegative = Accepted("a finite number >= 0") { $0.isFinite && $0 >= 0 }
    static let belowOne = Accepted("a number in [0, 1)") { $0 >= 0 && $0 < 1 }
}

extension Accepted where Value: ChoiceValue {
    /// Any case: "bf16 or fp32", "0, 1, 2 or 3".
    static var anyCase: Accepted {
        let names = Value.allCases.map(\.optionText)
        let phrase = names.count == 1 ? names[0] : names.dropLast().joined(separator: ", ") + " or " + names.last!
        return Accepted(phrase) { _ in true }
    }
}

extension Accepted {
    /// The value `text` spells, if it is of the type and accepted.
    func value(text: String) -> Value? { Value(optionText: text).flatMap { test($0) ? $0 : nil } }
    /// The value of a config file's JSON value, if it is of the type and accepted.
    func value(json: ConfigJSON) -> Value? { Value(json: json).flatMap { test($0) ? $0 : nil } }
}

extension Accepted where Value == ModelName {
    /// The presets, or a custom GPT shape by name.
    static var presetOrShape: Accepted {
        Accepted(anyCase.phrase + ", or a GPT shape gpt-L<layers>-H<heads>-C<channels>-T<context>-V<vocab>") { _ in true }
    }
}

extension Accepted where Value == String {
    static let path = Accepted("a non-empty path") { !$0.isEmpty }
}

extension Accepted where Value == UInt64 {
    static let any = Accepted("an integer from 0 to \(UInt64.max)") { _ in true }
}

extension Accepted where Value == Bool {
    static let any = Accepted("true or false") { _ in true }
}

struct OptionKey: CodingKey {
    var stringValue: String
    var intValue: Int? { nil }
    init(_ s: String) { stringValue = s }
    init?(stringValue: String) { self.stringValue = stringValue }
    init?(intValue: Int) { nil }
}

extension TrainingOption {
    /// An option stored in a non-optional field.
    static func option<V: OptionValue>(
        _ flag: String, _ path: WritableKeyPath<TrainingConfig, V> & Sendable, manifest: String, keys: [String]? = nil,
        math: Bool = true, _ accepted: Accepted<V>, _ summary: String
    ) -> TrainingOption {
        let key = OptionKey(manifest)
        return TrainingOption(
            flag: flag, configKeys: keys ?? [flag.replacingOccurrences(of: "-", with: "_")], manifestKey: manifest,
            summary: summary, accepts: accepted.phrase, choices: (V.self as? any ChoiceValue.Type).map { choiceNames($0) },
            isSwitch: V.self == Bool.self, changesMath: math,
            setText: { c, text in accepted.value(text: text).map { c[keyPath: path] = $0 } != nil },
            setJSON: { c, json in accepted.value(json: json).map { c[keyPath: path] = $0 } != nil },
            isValid: { accepted.test($0[keyPath: path]) },
            current: { $0[keyPath: path].optionText },
            encode: { c, container in try container.encode(c[keyPath: path], forKey: key) },
            decode: { c, container in
                if let v = try container.decodeIfPresent(V.self, forKey: key) { c[keyPath: path] = v }
            })
    }

    /// An option stored in an optional field (absent means unset).
    static func option<V: OptionValue>(
        _ flag: String, _ path: WritableKeyPath<TrainingConfig, V?> & Sendable, manifest: String, keys: [String]? = nil,
        math: Bool = true, _ accepted: Accepted<V>, _ summary: String
    ) -> TrainingOption {
        let key = OptionKey(manifest)
        return TrainingOption(
            flag: flag, configKeys: keys ?? [flag.replacingOccurrences(of: "-", with: "_")], manifestKey: manifest,
            summary: summary, accepts: accepted.phrase, choices: nil, isSwitch: false, changesMath: math,
            setText: { c, text in accepted.value(text: text).map { c[keyPath: path] = $0 } != nil },
            setJSON: { c, json in accepted.value(json: json).map { c[keyPath: path] = $0 } != nil },
            isValid: { c in c[keyPath: path].map(accepted.test) ?? true },
            current: { $0[keyPath: path]?.optionText },
            encode: { c, container in try container.encodeIfPresent(c[keyPath: path], forKey: key) },
            decode: { c, container in
                if let v = try container.decodeIfPresent(V.self, forKey: key) { c[keyPath: path] = v }
            })
    }

    private static func choiceNames<C: ChoiceValue>(_: C.Type) -> [String] { C.allCases.map(\.optionText) }
}

extension TrainingOption {
    /// Every option of a training run, in `--help` order.
    public static let all: [TrainingOption] = [
        option("model", \.model, manifest: "model", .presetOrShape,
               "Model: a preset, or any GPT shape by name (e.g. gpt-L2-H4-C32-T48-V260; or --n-layer etc.)."),
        option("stage", \.stage, manifest: "stage", math: false, .anyCase,
               "ZeRO stage: 0 (data parallel), 1 (shard optimizer state), 2 (+gradients), 3 (+parameters)."),
        option("steps", \.steps, manifest: "steps", math: false, .from(1, to: 1_000_000_000),
               "Total optimizer steps of the run (a resumed run continues to this total)."),
        option("micro-batch", \.microBatch, manifest: "microBatch", keys: ["micro_batch", "train_micro_batch_size_per_gpu"],
               .from(1, to: 1_000_000), "Sequences per micro-batch (B)."),
        option("grad-accum", \.gradAccum, manifest: "gradAccum", keys: ["grad_accum", "gradient_accumulation_steps"], math: false,
               .from(1, to: 1_000_000), "Micro-batches each rank accumulates per step (A); G = ranks x A."),
        option("global-micro-batches", \.globalMicroBatches, manifest: "globalMicroBatches", math: false, .from(1, to: 1_000_000),
               "Micro-batches per step over all ranks (G); overrides --grad-accum."),
        option("seq-len", \.seqLen, manifest: "seqLen", .from(1, to: 1_000_000),
               "Tokens per sequence (T), at most the model's context length."),
        option("lr", \.lr, manifest: "lr", .positive, "Peak learning rate."),
        option("min-lr", \.minLR, manifest: "minLR", .nonNegative,
               "Learning-rate floor of the cosine, cyclic and plateau schedules (at most --lr)."),
        option("warmup", \.warmup, manifest: "warmup", .from(0, to: 1_000_000_000), "Linear warm-up steps."),
        option("schedule", \.schedule, manifest: "schedule", .anyCase,
               "LR schedule (cosine = warmup_cosine, onecycle = one_cycle, plateau = reduce_on_plateau; deepspeed: set by a DeepSpeed config's scheduler)."),
        option("weight-decay", \.weightDecay, manifest: "weightDecay", .nonNegative,
               "Decoupled weight decay (matrices only; biases and norms are not decayed)."),
        option("l1", \.l1, manifest: "l1", .nonNegative,
               "L1 penalty added to the gradient, g += l1 sign(p) (coupled; matrices only; any optimizer)."),
        option("l2", \.l2, manifest: "l2", .nonNegative,
               "L2 penalty added to the gradient, g += l2 p (coupled, as Adam's weight_decay; matrices only; any optimizer)."),
        option("beta1", \.beta1, manifest: "beta1", .belowOne, "Adam beta1."),
        option("beta2", \.beta2, manifest: "beta2", .belowOne, "Adam beta2."),
        option("eps", \.eps, manifest: "eps", .positive, "Adam epsilon."),
        option("clip", \.clip, manifest: "clip", keys: ["clip", "gradient_clipping"], .nonNegative,
               "Clip the global gradient norm to this value; 0 disables clipping (inf is refused: use 0)."),
        option("optimizer", \.optimizer, manifest: "optimizer", .anyCase,
               "Optimizer (lbfgs: torch.optim.LBFGS, re-evaluating the step's fixed batch; needs --clip 0 --weight-decay 0; docs/optimizers.md)."),
        option("history", \.lbfgsHistory, manifest: "lbfgsHistory", .from(1, to: 10_000),
               "L-BFGS history size m (torch's history_size): m pairs (s, y) sharded like optimizer state."),
        option("line-search", \.lineSearch, manifest: "lineSearch", .anyCase,
               "L-BFGS line search (torch's line_search_fn): none (fixed step lr) or strong_wolfe."),
        option("lbfgs-iterations", \.lbfgsIterations, manifest: "lbfgsIterations", .from(1, to: 1_000_000),
               "L-BFGS iterations per optimizer step (torch's max_iter; the step also ends once it has made max_iter x 5/4 loss evaluations)."),
        option("precision", \.precision, manifest: "precision", .anyCase,
               "bf16 (bf16 working weights and gradients, fp32 master and moments) or fp32."),
        option("data", \.data, manifest: "data", math: false, .path,
               "Training data: a file, a directory or a glob of llm.c .bin token shards (or of text files, read as bytes), one stream in sorted order. Default: the embedded corpus. For --task classify/contrastive: a directory with features.npy and labels.npy, X.npy with X.labels.npy, or a .csv with the label last (default: a synthetic imbalanced set)."),
        option("val-data", \.valData, manifest: "valData", math: false, .path,
               "Validation data, read like --data (for --eval-every)."),
        option("val-fraction", \.valFraction, manifest: "valFraction", .belowOne,
               "Hold out the last F of the --data stream as validation data (0: none)."),
        option("eval-every", \.evalEvery, manifest: "evalEvery", math: false, .from(0, to: 1_000_000_000),
               "Validation loss every K steps and at the last step; 0: never."),
        option("eval-batches", \.evalBatches, manifest: "evalBatches", math: false, .from(1, to: 1_000_000),
               "Micro-batches of the fixed validation set (the same at every evaluation)."),
        option("init", \.initFrom, manifest: "initFrom", math: false, .path, "Initial weights from a Hugging Face GPT-2 .safetensors file."),
        option("seed", \.seed, manifest: "seed", .any, "Seed for initialization and data order."),
        option("save", \.save, manifest: "save", math: false, .path, "Save sharded checkpoints under DIR."),
        option("save-every", \.saveEvery, manifest: "saveEvery", math: false, .from(0, to: 1_000_000_000),
               "Save every N steps (and at the end); 0: only at the end."),
        option("keep", \.keep, manifest: "keep", math: false, .from(1, to: 1_000_000), "Keep the newest K checkpoints."),
        option("max-skips", \.maxSkips, manifest: "maxSkips", math: false, .from(0, to: 1_000_000_000),
               "Abort after this many non-finite steps in a row."),
        option("error-if-nonfinite", \.errorIfNonfinite, manifest: "errorIfNonfinite", math: false, .any,
               "Stop with an error on a non-finite gradient norm instead of skipping the step."),
        option("timeout", \.timeout, manifest: "timeout", math: false,
               Accepted("a number of seconds > 0 and <= 1e9") { $0 > 0 && $0 <= 1e9 },
               "Seconds a collective waits for the other ranks before the job aborts."),
        option("blas-threads", \.blasThreads, manifest: "blasThreads", .from(1, to: 256),
               "OpenBLAS threads per rank. Bits are identical across rank counts only for the same value."),
        option("threads", \.threads, manifest: "threads", .from(1, to: 256),
               "Compute threads per rank: OpenBLAS and oneDNN (OpenMP) both run T threads; replaces --blas-threads. Part of the determinism key: bits are identical across stages and rank counts for one T."),
        option("recompute", \.recompute, manifest: "recompute", math: false, .any,
               "Recompute each GPT block's activations in backward from its saved input: less activation memory, about one more forward of compute, same bits."),
        option("overlap", \.overlap, manifest: "overlap", math: false, .anyCase,
               "Overlap communication with compute: each rank's collectives run on its own communication thread, a unit's gradient reduction while backward goes on and (stage 3) the next op's all-gather while the current op computes, one of each in flight. auto: on when the ranks span more than one host. Same bits on or off (docs/performance.md)."),
        option("norm", \.norm, manifest: "norm", .anyCase,
               "MLP normalization after each hidden Linear (Linear -> norm -> ReLU): batch = BatchNorm over the step's global batch (running statistics for evaluation), layer = LayerNorm, none."),
        option("log-every", \.logEvery, manifest: "logEvery", math: false, .from(0, to: 1_000_000_000),
               "Print a progress line every N steps; 0: none (scripts)."),
        option("task", \.task, manifest: "task", .anyCase,
               "What to train: lm (next token), classify (feature rows -> class, --model mlp) or contrastive (embeddings of two views of each row, --model mlp). Without --data, classify and contrastive use a synthetic imbalanced set drawn from --seed (docs/losses.md)."),
        option("loss", \.loss, manifest: "loss", .anyCase,
               "Loss: cross_entropy, focal (softmax) or sigmoid_focal for lm/classify (lm: cross_entropy only); infonce or triplet for contrastive. Default: cross_entropy, infonce for contrastive."),
        option("label-smoothing", \.labelSmoothing, manifest: "labelSmoothing", .belowOne,
               "Label smoothing of cross_entropy, as torch CrossEntropyLoss(label_smoothing=) (classify only)."),
        option("focal-gamma", \.focalGamma, manifest: "focalGamma",
               Accepted("a number from 0 to 10") { $0 >= 0 && $0 <= 10 }, "Focusing exponent gamma of the focal losses."),
        option("focal-alpha", \.focalAlpha, manifest: "focalAlpha",
               Accepted("a number in [0, 1], or -1 for no weighting") { ($0 >= 0 && $0 <= 1) || $0 == -1 },
               "Weight alpha of the focal losses (sigmoid_focal: of the positive class, as torchvision; -1: none)."),
        option("temperature", \.temperature, manifest: "temperature",
               Accepted("a number from 0.001 to 100") { $0 >= 0.001 && $0 <= 100 }, "Temperature of the infonce loss."),
        option("margin", \.margin, manifest: "margin", .positive, "Margin of the triplet loss (p = 2, as TripletMarginLoss)."),
        option("dropout", \.dropout, manifest: "dropout", .belowOne,
               "Dropout on the mlp model's hidden activations (token and feature MLP), as torch.nn.Dropout(p) after each ReLU; masks keyed by (seed, step, micro-batch, layer); off in evaluation."),
    ]
}

extension TrainingOption {
    /// The option table as Markdown, for docs/configuration.md (a test keeps the two equal).
    public static func markdownTable() -> String {
        var lines = ["| Flag | Config keys | Manifest key | Accepts | Default | Meaning |", "|---|---|---|---|---|---|"]
        for o in all {
            let accepts = o.choices.map { $0.joined(separator: ", ") } ?? o.accepts
            let defaultValue = o.isSwitch ? "off" : (o.value(in: TrainingConfig()) ?? "unset")
            let cells = ["`--\(o.flag)`", o.configKeys.map { "`\($0)`" }.joined(separator: ", "), "`\(o.manifestKey)`",
                         accepts, "`\(defaultValue)`", o.summary]
            lines.append("| " + cells.map { $0.replacingOccurrences(of: "|", with: "\\|") }.joined(separator: " | ") + " |")
        }
        return lines.joined(separator: "\n") + "\n"
    }
}
