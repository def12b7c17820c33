import ZeroModels
import ZeroTensor

/// One stage's per-rank prediction.
public struct StageEstimate: Sendable, Equatable {
    public var stage: Int
    /// The paper's real-valued model-state bytes for this stage (no padding).
    public var modelStateBytes: Double
    /// Every buffer, padding included in its bytes.
    public var terms: [BufferTerm]
    /// Bytes sent per optimizer step and rank (see PaperModel.communicationBytes).
    public var communicationBytesPerStep: Double

    public init(stage: Int, modelStateBytes: Double, terms: [BufferTerm], communicationBytesPerStep: Double) {
        self.stage = stage; self.modelStateBytes = modelStateBytes; self.terms = terms
        self.communicationBytesPerStep = communicationBytesPerStep
    }

    /// Bytes of one category (padding included).
    public func bytes(_ category: MemoryCategory) -> Int {
        terms.lazy.filter { $0.category == category }.reduce(0) { $0 + $1.bytes }
    }
    public var categories: [MemoryCategory: Int] {
        Dictionary(uniqueKeysWithValues: MemoryCategory.allCases.map { ($0, bytes($0)) })
    }
    /// Bytes due to padding, already counted inside the categories (not to be added again).
    public var paddingBytes: Int { terms.reduce(0) { $0 + $1.paddingBytes } }
    /// Sum of all categories: the per-rank peak if every buffer is live at once.
    public var totalBytes: Int { terms.reduce(0) { $0 + $1.bytes } }
}

/// What one rank measured (the engine fills it from its MemoryLedger and /proc).
public struct MeasuredRank: Sendable, Equatable {
    public var rank: Int
    public var peakBytes: [MemoryCategory: Int]
    public var peakTotalBytes: Int
    /// Peak resident set size of the process (VmHWM), when known. Simulated ranks share one.
    public var peakResidentBytes: Int?

    public init(rank: Int, peakBytes: [MemoryCategory: Int], peakTotalBytes: Int, peakResidentBytes: Int? = nil) {
        self.rank = rank; self.peakBytes = peakBytes; self.peakTotalBytes = peakTotalBytes
        self.peakResidentBytes = peakResidentBytes
    }

    /// From a rank's ledger after a run.
    public init(rank: Int, ledger: MemoryLedger, peakResidentBytes: Int? = MemoryInput.peakResidentBytes()) {
        self.init(rank: rank, peakBytes: ledger.peakByCategory, peakTotalBytes: ledger.peakTotal,
                  peakResidentBytes: peakResidentBytes)
    }
}

/// A measured run of one stage, per rank: printed next to the prediction.
public struct MeasuredMemory: Sendable, Equatable {
    public var stage: Int
    public var ranks: [MeasuredRank]
    public init(stage: Int, ranks: [MeasuredRank]) { self.stage = stage; self.ranks = ranks }

    /// The largest peak of `category` over ranks.
    public func maxPeak(_ category: MemoryCategory) -> Int { ranks.map { $0.peakBytes[category, default: 0] }.max() ?? 0 }
    public var maxPeakTotal: Int { ranks.map(\.peakTotalBytes).max() ?? 0 }
    public var maxPeakResident: Int? { ranks.compactMap(\.peakResidentBytes).max() }
}

/// The memory report: predictions for every stage, the budget verdict, and optional
/// DeepSpeed and measured views. Build with `scale(...)` (parameters only) or `runtime(...)`.
public struct MemoryReport: Sendable {
    /// Which model produced the numbers.
    public enum View: String, Sendable {
        /// Parameters only: the paper's model states (+ padding of one flat buffer).
        case modelStates = "model_states"
        /// A GPT config: the runtime's whole buffer plan.
        case runtime
    }

    public var view: View
    public var parameters: Int
    public var ranks: Int
    public var optimizerBytesPerParameter: Int
    /// The run configuration (runtime view only; its stage is ignored: all stages are computed).
    public var run: RunConfiguration?
    /// All four stages, 0...3.
    public var stages: [StageEstimate]
    /// The stages to show (the `--stage` choice, or all).
    public var shownStages: [Int]
    /// Per-rank memory budget, and where it came from.
    public var budgetBytes: Int?
    public var budgetSource: String
    /// When no stage fits: the fewest ranks (power-of-two multiple of `ranks`) at which stage 3 would.
    public var ranksNeededAtStage3: Int?
    /// DeepSpeed's largest_layer_params input (nil in the scale view unless given).
    public var largestLayerParameters: Int?
    public var measured: MeasuredMemory?
    /// The node verdict (runtime view): R ranks, their process overhead and the transient
    /// peaks of --init and checkpoint saves against the node's memory.
    public var node: NodeVerdict?

    public func estimate(stage: Int) -> StageEstimate { stages[stage] }

    /// Whether `stage` fits the per-rank budget and, when there is a node verdict, the node
    /// (nil without either).
    public func fits(_ stage: Int) -> Bool? {
        let rank = budgetBytes.map { stages[stage].totalBytes <= $0 }
        guard let node else { return rank }
        return node.fits(stage) && rank != false
    }

    /// The smallest stage that fits: least communication (stages 0-2 move 2 Psi, stage 3 3 Psi)
    /// and least sharding machinery. nil when none fits or there is no budget.
    public var recommendedStage: Int? { zeroStages.first { fits($0) == true } }

    /// Parameters-only view: the paper's model states for a flat buffer of `parameters`.
    public static func scale(parameters: Int, ranks: Int, stages shown: [Int] = Array(zeroStages),
                             optimizerBytesPerParameter k: Int = 12, alignment: Int = 1024,
                             budgetBytes: Int? = nil, budgetSource: String = "",
                             largestLayerParameters: Int? = nil) throws -> MemoryReport
    {
        try validateRanks(ranks)
        try shown.forEach(validateStage)
        guard parameters >= 1 else { throw MemoryModelError("parameter count must be at least 1 (got \(parameters))") }
        guard k >= 4 else { throw MemoryModelError("optimizer bytes per parameter must include the 4-byte fp32 master (got \(k))") }
        let estimates = zeroStages.map { scaleEstimate(stage: $0, parameters: parameters, ranks: ranks, k: k, alignment: alignment) }
        var report = MemoryReport(
            view: .modelStates, parameters: parameters, ranks: ranks, optimizerBytesPerParameter: k, run: nil,
            stages: estimates, shownStages: shown, budgetBytes: budgetBytes, budgetSource: budgetSource,
            ranksNeededAtStage3: nil, largestLayerParameters: largestLayerParameters, measured: nil, node: nil)
        if let budget = budgetBytes, report.recommendedStage == nil {
            report.ranksNeededAtStage3 = fewestRanks(from: ranks, budget: budget) {
                scaleEstimate(stage: 3, parameters: parameters, ranks: $0, k: k, alignment: alignment).totalBytes
            }
        }
        return report
    }

    /// Model states for one stage of the scale view, as terms of one flat padded buffer.
    public static func scaleEstimate(stage s: Int, parameters: Int, ranks n: Int, k: Int, alignment: Int) -> StageEstimate {
        let u = UnitPlan.flat(parameters: parameters, ranks: n, alignment: alignment)
        let terms = [
            BufferTerm(.weights, "16-bit weights", bytesPerElement: 2, s >= 3 ? u.ownedShard : u.all),
            BufferTerm(.master, "fp32 master", bytesPerElement: 4, s >= 1 ? u.ownedShard : u.all),
            BufferTerm(.optimizerState, "optimizer state (K - 4)", bytesPerElement: k - 4, s >= 1 ? u.ownedShard : u.all),
            BufferTerm(.gradients, "16-bit gradients", bytesPerElement: 2, s >= 2 ? u.ownedShard : u.all),
        ]
        let psi = Double(parameters)
        return StageEstimate(
            stage: s, modelStateBytes: PaperModel.modelStateBytes(stage: s, parameters: psi, ranks: n, optimizerBytesPerParameter: k),
            terms: terms, communicationBytesPerStep: 2 * PaperModel.communicationElements(stage: s, parameters: psi))
    }

    /// Runtime view: the engine's buffer plan for `run` at every stage.
    public static func runtime(_ run: RunConfiguration, stages shown: [Int] = Array(zeroStages),
                               budgetBytes: Int? = nil, budgetSource: String = "") throws -> MemoryReport
    {
        try run.validate()
        try shown.forEach(validateStage)
        let estimates = zeroStages.map { runtimeEstimate(run, stage: $0) }
        var report = MemoryReport(
            view: .runtime, parameters: run.model.parameterCount, ranks: run.ranks,
            optimizerBytesPerParameter: run.optimizerBytesPerParameter, run: run, stages: estimates,
            shownStages: shown, budgetBytes: budgetBytes, budgetSource: budgetSource, ranksNeededAtStage3: nil,
            largestLayerParameters: DeepSpeedEstimate.largestLayerParameters(run.model), measured: nil, node: nil)
        if let budget = budgetBytes, report.recommendedStage == nil {
            report.ranksNeededAtStage3 = fewestRanks(from: run.ranks, budget: budget) {
                var r = run; r.ranks = $0
                return runtimeEstimate(r, stage: 3).totalBytes
            }
        }
        return report
    }

    /// One stage of the runtime view.
    public static func runtimeEstimate(_ run: RunConfiguration, stage: Int) -> StageEstimate {
        var c = run
        c.stage = stage
        let padded = Double(c.units.all.padded)
        return StageEstimate(
            stage: stage,
            modelStateBytes: PaperModel.modelStateBytes(stage: stage, parameters: Double(c.model.parameterCount),
                                                        ranks: c.ranks, optimizerBytesPerParameter: c.optimizerBytesPerParameter),
            terms: BufferPlan.terms(for: c),
            communicationBytesPerStep: PaperModel.communicationBytes(
                stage: stage, parameters: padded, accumulationSteps: c.accumulationSteps,
                gradientWireBytes: c.precision.gradientWireBytes, weightWireBytes: c.precision.workingWeightBytes))
    }

    /// Doubling from `ranks`, the fewest ranks at which `bytes(ranks)` fits, up to 2^24 ranks.
    static func fewestRanks(from ranks: Int, budget: Int, bytes: (Int) -> Int) -> Int? {
        var n = ranks
        while n <= maximumRanks {
            if bytes(n) <= budget { return n }
            n *= 2
        }
        return nil
    }
}
