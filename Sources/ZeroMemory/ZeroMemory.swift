import ZeroOptim
// ZeroMemory: the analytic per-rank memory model (docs/memory.md).
//
// Three views, all instant for any parameter count and rank count:
// - PaperModel: the ZeRO paper's model-state formulas (Table 1, Figure 1), real-valued.
// - BufferPlan: the runtime's real buffers, term by term, for a GPT config (what the
//   engine allocates through its MemoryLedger, so a measured peak can be compared).
// - DeepSpeedEstimate: what DeepSpeed's estimators print, for a compatibility view.
// MemoryReport puts them together, decides what fits, and renders text or JSON.
import ZeroTensor

/// Numeric mode of a run: which bytes the working weights and the gradient wire use.
public enum PrecisionMode: String, CaseIterable, Sendable, Codable {
    /// bf16 working weights and gradient wire, fp32 master, moments and accumulation.
    case bf16
    /// fp32 everywhere (the engine still keeps master and working copies apart).
    case fp32

    /// w: bytes per working-weight element.
    public var workingWeightBytes: Int { self == .bf16 ? 2 : 4 }
    /// g: bytes per gradient element on the wire (reductions still add in fp32).
    public var gradientWireBytes: Int { self == .bf16 ? 2 : 4 }
}

/// K (fp32 master + optimizer state, bytes per parameter) of an optimizer by name, as
/// ZeroOptim reports it, rounded up to whole bytes (8-bit AdamW: 4 + 2 + its block scales;
/// L-BFGS with history m: 4 + 4 (2m + 2), its pairs, direction and previous gradient).
public func optimizerBytesPerParameter(_ name: String, history: Int = 100) throws -> Int {
    guard let kind = ZeroOptim.OptimizerKind(rawValue: name) else {
        throw MemoryModelError("unknown optimizer '\(name)' (known: \(ZeroOptim.OptimizerKind.allCases.map(\.rawValue).joined(separator: ", ")))")
    }
    var config = OptimizerConfig(kind: kind)
    if kind == .sgd { config.momentum = 0.9 }  // what the trainer runs
    guard (1...10_000).contains(history) else { throw MemoryModelError("--history must be an integer from 1 to 10000, not \(history)") }
    config.history = history
    return Int(config.masterAndStateBytesPerParameter.rounded(.up))
}

/// A bad input to the memory model: one line saying what and what is allowed.
public struct MemoryModelError: Error, CustomStringConvertible, Equatable {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// The ZeRO stages the runtime implements.
public let zeroStages = 0...3

/// Throws unless `stage` is 0, 1, 2 or 3.
public func validateStage(_ stage: Int) throws {
    guard zeroStages.contains(stage) else {
        throw MemoryModelError("stage must be 0, 1, 2 or 3 (got \(stage))")
    }
}

/// The most ranks the model accepts (2^24), far beyond any cluster, so byte counts stay in Int.
public let maximumRanks = 1 << 24

/// Throws unless `ranks` is in 1...2^24.
public func validateRanks(_ ranks: Int) throws {
    guard ranks >= 1 else { throw MemoryModelError("ranks must be at least 1 (got \(ranks))") }
    guard ranks <= maximumRanks else { throw MemoryModelError("ranks must be at most \(maximumRanks) (got \(ranks))") }
}
