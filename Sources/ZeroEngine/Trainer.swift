import Foundation
import ZeroComm
import ZeroModels
import ZeroOptim
import ZeroTensor

/// One rank's training state and its step.
///
/// The step is one straight call sequence over `ShardedUnit`s (docs/design.md); what a
/// stage keeps full or sharded, when gradients are reduced and which types travel are
/// data, computed once in the `AllocationPlan` and held by the units.
public final class Trainer {
    public let config: TrainingConfig
    public let communicator: any Communicator
    public let plan: StagePlan
    public let partition: Partition
    public let allocation: AllocationPlan
    public let model: any TrainableModel
    public let ledger: MemoryLedger
    public let accumulationSteps: Int
    public var rank: Int { communicator.rank }
    public var ranks: Int { communicator.size }
    public var globalMicroBatches: Int { accumulationSteps * ranks }

    let dataset: any MicroBatchSource
    var schedule: LearningRateScheduler
    let opUnits: [[Int]]
    /// One per parameter unit, in layout order.
    public private(set) var units: [ShardedUnit] = []
    let slots: UnitSlots
    /// Units whose finished micro-batch gradient waits to be issued, and those whose
    /// reduction is issued and not yet completed, oldest first.
    var toReduce: [Int] = []
    var reducing: [Int] = []
    let tokens: FlatBuffer<Int32>
    let targets: FlatBuffer<Int32>
    /// `--optimizer lbfgs`: the one L-BFGS over all units' master ranges (TrainerLBFGS.swift).
    public private(set) var lbfgs: LBFGS?

    /// Optimizer steps done (the next step index), updates applied, skipped steps.
    public internal(set) var step = 0
    public internal(set) var updatesApplied = 0
    public internal(set) var skippedSteps = 0
    var consecutiveSkips = 0

    public init(config: TrainingConfig, communicator: any Communicator, dataset: any MicroBatchSource,
                ledger: MemoryLedger = MemoryLedger()) throws {
        try config.validate()
        self.config = config
        self.communicator = communicator
        self.ledger = ledger
        self.dataset = dataset
        self.plan = StagePlan(stage: config.stage)
        accumulationSteps = try config.accumulationSteps(ranks: communicator.size)
        model = try makeModel(config, data: dataset, ledger: ledger)
        if let tokens = dataset as? TokenDataset, tokens.vocabularySize > model.vocabularySize {
            throw ConfigError("the data has token ids up to \(tokens.vocabularySize - 1) but \(config.model) has a vocabulary of \(model.vocabularySize)")
        }
        try dataset.check(model: model)
        guard let precision = PrecisionPolicy(named: config.precision) else {
            throw ConfigError("unknown precision '\(config.precision)' (bf16, fp32)")
        }
        partition = Partition(layout: model.layout, ranks: communicator.size)
        schedule = try makeSchedule(config)
        opUnits = model.opUnits
        allocation = AllocationPlan(partition: partition, opUnits: opUnits, rank: communicator.rank, stage: plan,
                                    precision: precision, microBatch: config.microBatch, sequenceLength: config.rowLength,
                                    accumulationSteps: accumulationSteps,
                                    overlap: (communicator as? TimedCommunicator)?.overlaps
                                        ?? config.overlap.resolved(ranks: communicator.size, spansHosts: false))
        tokens = FlatBuffer(count: allocation.batchElements, category: .scratch, ledger: ledger)
        targets = FlatBuffer(count: allocation.batchElements, category: .scratch, ledger: ledger)
        slots = UnitSlots(plan: allocation, ledger: ledger)
        if config.optimizer == .lbfgs { lbfgs = makeLBFGS() }
        var offset = 0
        for u in 0..<partition.unitCount {
            let range = allocation.range(allocation.master, unit: u)
            let segments = decaySegments(unit: u, in: range)
            let optimizer = try lbfgs.map { LBFGSShard($0, offset: offset, count: range.count) } ?? makeOptimizer(
                optimizerConfig(config), count: range.count, decaySegments: segments,
                parameterShapes: config.optimizer == .adafactor ? parameterShapes(model.layout, unit: u) : nil,
                shardOffset: range.lowerBound, shardedAcrossRanks: !plan.fullMaster,
                ledger: ledger)
            offset += range.count
            let unit = ShardedUnit(index: u, plan: allocation, optimizer: optimizer, slots: slots,
                                   communicator: communicator, ledger: ledger)
            unit.regularization = CoupledRegularization(l1: config.l1, l2: config.l2)
            unit.regularizedSegments = segments
            units.append(unit)
        }
    }

    /// Each unit's fp32 master range (the checkpoint and the hash read these).
    var master: [FlatBuffer<Float>] { units.map(\.master) }
    var optimizers: [any ShardOptimizer] { units.map(\.optimizer) }

    /// Ranges (relative to `range`'s start) of unit u's elements that take weight decay.
    func decaySegments(unit u: Int, in range: Range<Int>) -> [Range<Int>] {
        model.layout.tensors.filter { $0.unit == u && $0.decay }.compactMap { t in
            let lo = max(t.offset, range.lowerBound), hi = min(t.offset + t.count, range.upperBound)
            return lo < hi ? (lo - range.lowerBound) ..< (hi - range.lowerBound) : nil
        }
    }

    // MARK: - Initial state

    /// Fills master and working weights from full unit values (seeded init, a file, or a
    /// test's fixture), before the first step.
    public func loadInitialWeights(_ unitValues: (Int) throws -> [Float]) rethrows {
        for u in 0..<partition.unitCount {
            var full = try unitValues(u)
            precondition(full.count == partition.unitCounts[u])
            full.append(contentsOf: repeatElement(0, count: partition.paddedCounts[u] - full.count))
            full.withUnsafeBufferPointer { units[u].load(fullValues: $0) }
        }
    }

    public func initializeFromSeed() {
        loadInitialWeights { u in
            var values = [Float](repeating: 0, count: partition.unitCounts[u])
            values.withUnsafeMutableBufferPointer { model.initialize(unit: u, into: $0, seed: config.seed) }
            return values
        }
    }

    public func initialize(fromSafetensors url: URL) throws {
        guard let gpt = GPTConfig.named(config.model) else {
            throw ConfigError("--init needs a GPT model; \(config.model) has no safetensors layout")
        }
        let units = try loadGPT2(safetensorsAt: url, config: gpt)
        try checkFinite(units, source: "--init \(url.path)")
        loadInitialWeights { units[$0] }
    }
}

/// Builds the model a config names.
func makeModel(_ config: TrainingConfig, data: any MicroBatchSource, ledger: MemoryLedger) throws -> any TrainableModel {
    if let features = data as? FeatureDataset { return makeFeatureModel(config, data: features, ledger: ledger) }
    if let gpt = GPTConfig.named(config.model) {
        return GPT(config: gpt, batchSize: config.microBatch, sequenceLength: config.seqLen, ledger: ledger,
                   precision: config.isBF16 ? .bf16 : .fp32, recompute: config.recompute)
    }
    return MLP(vocabularySize: 256, hiddenWidths: [256, 256], batchSize: config.microBatch,
               sequenceLength: config.seqLen, ledger: ledger, precision: config.isBF16 ? .bf16 : .fp32, norm: config.norm,
               dropout: Float(config.dropout))
}
