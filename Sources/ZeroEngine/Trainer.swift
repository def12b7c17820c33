import Foundation
import ZeroComm
import ZeroModels
import ZeroOptim
import ZeroTensor

/// One rank's training state and its step.
///
/// The step is one straight sequence (docs/design.md): for each accumulation step,
/// forward op by op (stage 3 gathers each op's units first), then backward in reverse
/// (gather again, backward, reduce a unit's gradient as soon as its last op is done
/// in stages 2-3, or all units after backward in stages 0-1). After the last micro-batch:
/// finish the canonical sums, average, global norm, clip, update the owned range,
/// re-gather working weights (stages 1-2). `StagePlan` turns calls into no-ops.
public final class Trainer {
    public let config: TrainingConfig
    public let communicator: any Communicator
    public let plan: StagePlan
    public let partition: Partition
    public let model: any TrainableModel
    public let ledger: MemoryLedger
    public let accumulationSteps: Int
    public var rank: Int { communicator.rank }
    public var ranks: Int { communicator.size }
    public var globalMicroBatches: Int { accumulationSteps * ranks }

    let dataset: TokenDataset
    let bf16: Bool
    var schedule: LearningRateScheduler
    let opUnits: [[Int]]
    /// For each unit, the op whose backward is its last use (backward runs ops in reverse).
    let lastBackwardOp: [Int]

    // Working weights: full padded units (stages 0-2) or the owned shard (stage 3).
    var workingBF16: [FlatBuffer<UInt16>] = []
    var workingF32: [FlatBuffer<Float>] = []
    // fp32 master: full padded units (stage 0) or the owned shard (1-3).
    var master: [FlatBuffer<Float>] = []
    var optimizers: [any ShardOptimizer] = []
    var accumulators: [GradientAccumulator] = []

    // Two slots serve every op: slot 0 for unit 0 (the tied embedding), slot 1 for any other unit.
    var computeSlots: [FlatBuffer<Float>] = []     // bf16 widened to fp32 for the kernels
    var gatheredBF16Slots: [FlatBuffer<UInt16>] = [] // stage 3, bf16
    var gatheredF32Slots: [FlatBuffer<Float>] = []   // stage 3, fp32 mode
    var gradSlots: [FlatBuffer<Float>] = []        // stages 2-3
    var fullGrads: [FlatBuffer<Float>] = []        // stages 0-1
    var wire: FlatBuffer<UInt16>? = nil            // bf16 copy of one unit's gradient
    var shardScratch: FlatBuffer<Float>            // stages 1-2 gather source, fp32
    var shardScratchBF16: FlatBuffer<UInt16>
    let tokens: FlatBuffer<Int32>
    let targets: FlatBuffer<Int32>

    /// Optimizer steps done (the next step index), updates applied, skipped steps.
    public internal(set) var step = 0
    public internal(set) var updatesApplied = 0
    public internal(set) var skippedSteps = 0
    var consecutiveSkips = 0

    public init(config: TrainingConfig, communicator: any Communicator, dataset: TokenDataset,
                ledger: MemoryLedger = MemoryLedger()) throws {
        try config.validate()
        self.config = config
        self.communicator = communicator
        self.ledger = ledger
        self.dataset = dataset
        self.plan = StagePlan(stage: config.stage)
        self.bf16 = config.isBF16
        accumulationSteps = try config.accumulationSteps(ranks: communicator.size)
        model = try makeModel(config, ledger: ledger)
        guard dataset.vocabularySize <= model.vocabularySize else {
            throw ConfigError("the data has token ids up to \(dataset.vocabularySize - 1) but \(config.model) has a vocabulary of \(model.vocabularySize)")
        }
        partition = Partition(layout: model.layout, ranks: communicator.size)
        schedule = try makeSchedule(config)
        opUnits = model.opUnits
        var last = Array(repeating: Int.max, count: model.layout.units.count)
        for (op, units) in opUnits.enumerated() { for u in units { last[u] = min(last[u], op) } }
        lastBackwardOp = last
        let bt = config.microBatch * config.seqLen
        tokens = FlatBuffer(count: bt, category: .scratch, ledger: ledger)
        targets = FlatBuffer(count: bt, category: .scratch, ledger: ledger)
        let part = partition, gathers = plan.gathersWeightsAfterUpdate, isBF16 = config.isBF16
        let maxShard = (0..<part.unitCount).map { part.shardCount(unit: $0) }.max() ?? 0
        shardScratch = FlatBuffer(count: gathers && !isBF16 ? maxShard : 0, category: .communication, ledger: ledger)
        shardScratchBF16 = FlatBuffer(count: gathers && isBF16 ? maxShard : 0, category: .communication, ledger: ledger)
        try allocateState()
    }

    // MARK: - Buffers

    var slotSizes: [Int] {
        let p = partition.paddedCounts
        return [p[0], p.dropFirst().max() ?? 0]
    }
    func slot(of unit: Int) -> Int { unit == 0 ? 0 : 1 }

    private func allocateState() throws {
        let p = partition
        for u in 0..<p.unitCount {
            let workingCount = plan.fullWorkingWeights ? p.paddedCounts[u] : p.shardCount(unit: u)
            if bf16 {
                workingBF16.append(FlatBuffer(count: workingCount, category: .weights, ledger: ledger))
            } else {
                workingF32.append(FlatBuffer(count: workingCount, category: .weights, ledger: ledger))
            }
            let masterCount = plan.fullMaster ? p.paddedCounts[u] : p.shardCount(unit: u)
            master.append(FlatBuffer(count: masterCount, category: .master, ledger: ledger))
            let base = plan.fullMaster ? 0 : p.shardRange(unit: u, rank: rank).lowerBound
            optimizers.append(try makeOptimizer(
                optimizerConfig(config), count: masterCount,
                decaySegments: decaySegments(unit: u, in: base ..< base + masterCount),
                parameterShapes: config.optimizer == "adafactor" ? parameterShapes(model.layout, unit: u, range: base ..< base + masterCount) : nil,
                ledger: ledger))
            accumulators.append(GradientAccumulator(count: masterCount, accumulationSteps: accumulationSteps, ledger: ledger))
        }
        if plan.reduceGradientsPerUnit {
            gradSlots = slotSizes.map { FlatBuffer(count: $0, category: .gradients, ledger: ledger) }
        } else {
            fullGrads = p.paddedCounts.map { FlatBuffer(count: $0, category: .gradients, ledger: ledger) }
        }
        if bf16 {
            wire = FlatBuffer(count: p.paddedCounts.max() ?? 0, category: .gradients, ledger: ledger)
            computeSlots = slotSizes.map { FlatBuffer(count: $0, category: plan.gathersWeightsPerOp ? .gathered : .scratch, ledger: ledger) }
            if plan.gathersWeightsPerOp {
                gatheredBF16Slots = slotSizes.map { FlatBuffer(count: $0, category: .gathered, ledger: ledger) }
            }
        } else if plan.gathersWeightsPerOp {
            gatheredF32Slots = slotSizes.map { FlatBuffer(count: $0, category: .gathered, ledger: ledger) }
        }
    }

    /// Ranges (relative to `range`'s start) of unit u's elements that take weight decay.
    func decaySegments(unit u: Int, in range: Range<Int>) -> [Range<Int>] {
        model.layout.tensors.filter { $0.unit == u && $0.decay }.compactMap { t in
            let lo = max(t.offset, range.lowerBound), hi = min(t.offset + t.count, range.upperBound)
            return lo < hi ? (lo - range.lowerBound) ..< (hi - range.lowerBound) : nil
        }
    }

    // MARK: - Initial state

    /// Fills master and working weights from full unit values (seeded init or a file).
    func loadInitialWeights(_ unitValues: (Int) throws -> [Float]) rethrows {
        for u in 0..<partition.unitCount {
            var full = try unitValues(u)
            precondition(full.count == partition.unitCounts[u])
            full.append(contentsOf: repeatElement(0, count: partition.paddedCounts[u] - full.count))
            let range = plan.fullMaster ? 0 ..< partition.paddedCounts[u] : partition.shardRange(unit: u, rank: rank)
            full.withUnsafeBufferPointer { f in
                _ = master[u].pointer.update(fromContentsOf: f[range])
            }
            refreshWorking(unit: u, fullValues: full)
        }
    }

    /// Working weights = bf16 rounding (or copy) of the master values.
    func refreshWorking(unit u: Int, fullValues full: [Float]) {
        let range = plan.fullWorkingWeights ? 0 ..< partition.paddedCounts[u] : partition.shardRange(unit: u, rank: rank)
        full.withUnsafeBufferPointer { f in
            let src = UnsafeBufferPointer(rebasing: f[range])
            if bf16 { BFloat16.round(src, into: workingBF16[u].pointer) }
            else { _ = workingF32[u].pointer.update(fromContentsOf: src) }
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
        loadInitialWeights { units[$0] }
    }

    // MARK: - Residency (gather / widen) per op

    /// fp32 weight pointers for the units op reads; nil for the rest.
    func residentWeights(op: Int) throws -> [UnsafeBufferPointer<Float>?] {
        var weights = [UnsafeBufferPointer<Float>?](repeating: nil, count: partition.unitCount)
        for u in opUnits[op] {
            let s = slot(of: u), n = partition.paddedCounts[u]
            if plan.gathersWeightsPerOp {
                if bf16 {
                    let gathered = gatheredBF16Slots[s].slice(0..<n)
                    try communicator.allGather(workingBF16[u].readOnly, into: gathered)
                    let dst = computeSlots[s].slice(0..<n)
                    BFloat16.widen(UnsafeBufferPointer(gathered), into: dst)
                    weights[u] = UnsafeBufferPointer(dst)
                } else {
                    let gathered = gatheredF32Slots[s].slice(0..<n)
                    try communicator.allGather(workingF32[u].readOnly, into: gathered)
                    weights[u] = UnsafeBufferPointer(gathered)
                }
            } else if bf16 {
                let dst = computeSlots[s].slice(0..<n)
                BFloat16.widen(workingBF16[u].readOnly, into: dst)
                weights[u] = UnsafeBufferPointer(dst)
            } else {
                weights[u] = workingF32[u].readOnly
            }
        }
        return weights
    }

    func gradientBuffer(unit u: Int) -> UnsafeMutableBufferPointer<Float> {
        let n = partition.paddedCounts[u]
        return plan.reduceGradientsPerUnit ? gradSlots[slot(of: u)].slice(0..<n) : fullGrads[u].pointer
    }

    // MARK: - Gradient reduction

    /// Rounds unit u's micro-batch gradient to the wire precision (the one rounding point
    /// of gradients) and reduces it across ranks into the unit's canonical accumulator.
    func reduceGradient(unit u: Int) throws {
        let grad = gradientBuffer(unit: u)
        let out = accumulators[u].nextInput()
        if bf16, let wire {
            let w = wire.slice(0..<grad.count)
            BFloat16.round(UnsafeBufferPointer(grad), into: w)
            if plan.allReducesGradients {
                try communicator.allReduce(bfloat16: UnsafeBufferPointer(w), into: out.pointer)
            } else {
                try communicator.reduceScatter(bfloat16: UnsafeBufferPointer(w), into: out.pointer)
            }
        } else if plan.allReducesGradients {
            _ = out.pointer.update(fromContentsOf: grad)
            try communicator.allReduce(out.pointer)
        } else {
            try communicator.reduceScatter(UnsafeBufferPointer(grad), into: out.pointer)
        }
        accumulators[u].push(out)
    }
}

/// Builds the model a config names.
func makeModel(_ config: TrainingConfig, ledger: MemoryLedger) throws -> any TrainableModel {
    if let gpt = GPTConfig.named(config.model) {
        return GPT(config: gpt, batchSize: config.microBatch, sequenceLength: config.seqLen, ledger: ledger,
                   precision: config.isBF16 ? .bf16 : .fp32)
    }
    return MLP(vocabularySize: 256, hiddenWidths: [256, 256], batchSize: config.microBatch,
               sequenceLength: config.seqLen, ledger: ledger, precision: config.isBF16 ? .bf16 : .fp32)
}
