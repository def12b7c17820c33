import ZeroModels
import ZeroOptim

/// A value an option can take: parsed from command-line text or from a config file's JSON,
/// described in one phrase for help and error lines.
public protocol OptionValue: Codable, Sendable, Equatable {
    /// The value the text spells, or nil when it is not of this type.
    init?(optionText: String)
    /// The value of a config-file JSON value, or nil when it has the wrong type.
    init?(json: ConfigJSON)
    /// How the value is written in a flag or config file (the inverse of `init(optionText:)`).
    var optionText: String { get }
}

/// An option whose values form a closed set, named by their raw values; `--help` and error
/// lines list every case.
public protocol ChoiceValue: OptionValue, CaseIterable, RawRepresentable, CustomStringConvertible {}

extension ChoiceValue where RawValue == String {
    public init?(optionText: String) { self.init(rawValue: optionText) }
    public init?(json: ConfigJSON) {
        guard case .string(let s) = json else { return nil }
        self.init(rawValue: s)
    }
    public var optionText: String { rawValue }
    public var description: String { rawValue }
}

/// The model: a preset (the GPT presets of `GPTConfig.presets`, and a small MLP), or any GPT
/// shape spelled "gpt-L<layers>-H<heads>-C<channels>-T<context>-V<vocab>" (`GPTConfig.parse`).
/// The name is how a shape travels (config, manifest, consensus check), so it needs no other
/// field. `allCases` are the presets, which `--help` lists.
public struct ModelName: ChoiceValue, Hashable {
    public let rawValue: String
    public init?(rawValue: String) {
        // A preset, or anything spelled like a shape: resolveModelShape says what is wrong with a bad one.
        guard Self.allCases.contains(where: { $0.rawValue == rawValue }) || rawValue.hasPrefix("gpt-L") else { return nil }
        self.rawValue = rawValue
    }
    private init(preset: String) { rawValue = preset }

    public static let gptTiny = ModelName(preset: "gpt-tiny")
    public static let gptSmall = ModelName(preset: "gpt-small")
    public static let gptMedium = ModelName(preset: "gpt-medium")
    public static let gpt2 = ModelName(preset: "gpt2-124m")
    public static let mlp = ModelName(preset: "mlp")
    public static let allCases: [ModelName] = [.gptTiny, .gptSmall, .gptMedium, .gpt2, .mlp]
}

/// ZeRO stage: what each rank shards.
public enum ZeroStage: Int, ChoiceValue, Comparable {
    /// Plain data parallelism: everything replicated.
    case zero = 0
    /// Optimizer state sharded.
    case one = 1
    /// Optimizer state and gradients sharded.
    case two = 2
    /// Optimizer state, gradients and parameters sharded.
    case three = 3

    public init?(optionText: String) {
        guard let n = Int(optionText) else { return nil }
        self.init(rawValue: n)
    }
    public init?(json: ConfigJSON) {
        guard let n = Int(json: json) else { return nil }
        self.init(rawValue: n)
    }
    public var optionText: String { String(rawValue) }
    public var description: String { String(rawValue) }
    public static func < (a: ZeroStage, b: ZeroStage) -> Bool { a.rawValue < b.rawValue }
}

/// Learning-rate schedules by the names the CLI accepts. Aliases are cases of their own so a
/// config round-trips exactly; `OptimizerSetup` maps each to its schedule.
public enum ScheduleName: String, ChoiceValue {
    case warmupCosine = "warmup_cosine"
    case cosine
    /// The warm-up of warmup_cosine, then constant (DeepSpeed's WarmupLR).
    case warmupConstant = "warmup_constant"
    case constant
    case oneCycle = "one_cycle"
    case onecycle
    case step
    case cyclic
    case reduceOnPlateau = "reduce_on_plateau"
    case plateau
    /// A DeepSpeed scheduler, set by a DeepSpeed config (`TrainingConfig.deepSpeedSchedule`).
    case deepspeed
}

/// Storage precision of working weights and gradients (master weights and moments are fp32).
public enum PrecisionName: String, ChoiceValue {
    case bf16
    case fp32
}

extension OptimizerKind: ChoiceValue {}
extension LBFGS.LineSearch: ChoiceValue {}

/// What a run trains (`--task`): next-token language modelling, a classifier over feature rows,
/// or an embedding model over two views of each row (docs/losses.md).
/// `--overlap`: whether collectives run on a per-rank communication thread, overlapped with
/// compute (docs/performance.md). Either way the bits are the same.
public enum OverlapMode: String, ChoiceValue {
    /// On when the ranks span more than one host; off on one host, where collectives are
    /// memory copies with nothing to hide and the thread's polling only costs compute.
    case auto
    case on, off

    /// Whether a job of `ranks` ranks overlaps (a single rank has nothing to communicate).
    public func resolved(ranks: Int, spansHosts: Bool) -> Bool {
        guard ranks > 1 else { return false }
        switch self {
        case .on: return true
        case .off: return false
        case .auto: return spansHosts
        }
    }
}

public enum TaskName: String, ChoiceValue {
    case lm
    case classify
    case contrastive
}

/// The loss (`--loss`, docs/losses.md). `focal` is the multi-class softmax form; `sigmoid_focal`
/// is torchvision's `sigmoid_focal_loss` over the one-hot labels (binary per logit).
public enum LossName: String, ChoiceValue {
    case crossEntropy = "cross_entropy"
    case focal
    case sigmoidFocal = "sigmoid_focal"
    case infonce
    case triplet
}

extension GPTConfig {
    /// The preset a model name stands for (nil for the MLP).
    public static func named(_ model: ModelName) -> GPTConfig? { named(model.rawValue) }
}

extension StagePlan {
    public init(stage: ZeroStage) { self.init(stage: stage.rawValue) }
}

extension PrecisionPolicy {
    public init?(named name: PrecisionName) { self.init(named: name.rawValue) }
}

/// Numbers read and write their flag text as Swift spells them.
extension OptionValue where Self: LosslessStringConvertible {
    public init?(optionText: String) { self.init(optionText) }
    public var optionText: String { description }
}

extension Int: OptionValue {
    /// JSON integers, and numbers with no fractional part (2.0); never 2.7 or a Boolean.
    public init?(json: ConfigJSON) {
        switch json {
        case .int(let n): self = n
        case .double(let d): guard let n = Int(exactly: d) else { return nil }; self = n
        default: return nil
        }
    }
}

extension UInt64: OptionValue {
    public init?(json: ConfigJSON) {
        switch json {
        case .int(let n): guard n >= 0 else { return nil }; self = UInt64(n)
        case .unsigned(let n): self = n
        case .double(let d): guard let n = UInt64(exactly: d) else { return nil }; self = n
        default: return nil
        }
    }
}

/// Any spelling Swift reads (so "nan", "inf" and "1e400" arrive as values and the range check names them).
extension Double: OptionValue {
    public init?(json: ConfigJSON) {
        switch json {
        case .int(let n): self = Double(n)
        case .unsigned(let n): self = Double(n)
        case .double(let d): self = d
        default: return nil
        }
    }
}

extension String: OptionValue {
    public init?(optionText: String) { self = optionText }
    public init?(json: ConfigJSON) {
        guard case .string(let s) = json else { return nil }
        self = s
    }
    public var optionText: String { self }
}

extension Bool: OptionValue {
    public init?(optionText: String) {
        switch optionText {
        case "true": self = true
        case "false": self = false
        default: return nil
        }
    }
    public init?(json: ConfigJSON) {
        guard case .bool(let b) = json else { return nil }
        self = b
    }
    public var optionText: String { self ? "true" : "false" }
}
