import ZeroTensor

/// Every buffer one rank's trainer allocates, and the schedule of its step, computed once
/// from (units, ranks, stage, precision, micro-batch shape). The trainer allocates exactly
/// this plan and `zero-train memory` renders it (`buffers`), so the report cannot drift from
/// the engine. Element counts are in each unit's padded coordinates (see `Partition`).
public struct AllocationPlan: Sendable, Equatable {
    public let partition: Partition
    /// Units read by each forward op (backward runs the ops in reverse).
    public let opUnits: [[Int]]
    /// The rank whose buffers these are (the last rank's shards are the largest and hold the padding).
    public let rank: Int
    public let stage: StagePlan
    public let precision: PrecisionPolicy
    public let microBatch: Int
    public let sequenceLength: Int
    /// A: micro-batches accumulated per optimizer step on this rank.
    public let accumulationSteps: Int
    /// `--overlap on` with more than one rank: collectives are issued ahead on the rank's
    /// communication thread. Adds one gathered slot (stage 3 prefetch) and one gradient
    /// slot (stages 2-3, a reduction in flight), and reduces every unit after its last
    /// backward use at stages 0-1 too.
    public let overlap: Bool

    /// How much of a unit a rank holds.
    public enum Extent: Sendable, Equatable { case full, ownedShard }
    /// How a micro-batch gradient crosses the ranks.
    public enum Reduction: Sendable, Equatable { case allReduce, reduceScatter }
    /// When working weights are gathered from shards.
    public enum WeightGather: Sendable, Equatable { case never, beforeEachOp, afterUpdate }

    public let working: Extent
    public let master: Extent
    public let reduction: Reduction
    public let weightGather: WeightGather
    /// Per op, in backward order's terms: the units whose micro-batch gradient starts (is
    /// zeroed) right before op's backward, and those reduced right after it. Stages 0-1
    /// reduce every unit once backward is over (after op 0); stages 2-3 reduce each unit
    /// as soon as its last backward use is done, so only two gradient slots are live (three
    /// with overlap). With overlap, stages 0-1 also reduce each unit after its last use.
    public let gradientStarts: [[Int]]
    public let gradientReductions: [[Int]]

    public init(partition: Partition, opUnits: [[Int]], rank: Int, stage: StagePlan, precision: PrecisionPolicy,
                microBatch: Int, sequenceLength: Int, accumulationSteps: Int, overlap: Bool = false) {
        precondition((0..<partition.ranks).contains(rank) && accumulationSteps >= 1)
        self.partition = partition; self.opUnits = opUnits; self.rank = rank; self.stage = stage
        self.precision = precision; self.microBatch = microBatch; self.sequenceLength = sequenceLength
        self.accumulationSteps = accumulationSteps
        self.overlap = overlap
        working = stage.fullWorkingWeights ? .full : .ownedShard
        master = stage.fullMaster ? .full : .ownedShard
        reduction = stage.allReducesGradients ? .allReduce : .reduceScatter
        weightGather = stage.gathersWeightsPerOp ? .beforeEachOp : stage.gathersWeightsAfterUpdate ? .afterUpdate : .never
        // Backward visits ops from last to first: a unit's first backward use is its highest op.
        var first = [[Int]](repeating: [], count: opUnits.count)
        var last = [[Int]](repeating: [], count: opUnits.count)
        for u in 0..<partition.unitCount {
            let uses = opUnits.indices.filter { opUnits[$0].contains(u) }
            guard let hi = uses.max(), let lo = uses.min() else { continue }
            first[hi].append(u)
            last[stage.reduceGradientsPerUnit || overlap ? lo : 0].append(u)
        }
        gradientStarts = first
        gradientReductions = last
    }

    // MARK: - Ranges

    /// The elements of unit u an extent covers, in the unit's padded coordinates.
    public func range(_ extent: Extent, unit u: Int) -> Range<Int> {
        extent == .full ? 0 ..< partition.paddedCounts[u] : partition.shardRange(unit: u, rank: rank)
    }

    /// The part of unit u's working buffer the optimizer step writes: the master's range in
    /// working coordinates (the owned shard of a full replica at stages 1-2).
    public func updatedWorkingRange(unit u: Int) -> Range<Int> {
        working == .full && master == .ownedShard ? range(.ownedShard, unit: u) : 0 ..< range(master, unit: u).count
    }

    /// Real (non-padding) elements of unit u within an extent.
    func realCount(_ extent: Extent, unit u: Int) -> Int {
        let r = range(extent, unit: u)
        return max(0, min(partition.unitCounts[u], r.upperBound) - r.lowerBound)
    }

    // MARK: - Slots

    /// Two slots serve every op: slot 0 for unit 0 (a GPT's tied embedding, live from the
    /// head to the embedding op), slot 1 for any other unit, sized for the largest.
    public func weightSlot(of u: Int) -> Int { u == 0 ? 0 : 1 }
    public var weightSlotCounts: [Int] { [partition.paddedCounts[0], largestOtherUnit] }
    /// The largest unit other than unit 0 (what a shared slot is sized for).
    var largestOtherUnit: Int { partition.paddedCounts.dropFirst().max() ?? 0 }
    /// Extra slots for a collective in flight: one more gathered slot (the prefetch) at stage 3
    /// and one more gradient slot (a reduction) at stages 2-3, each as large as slot 1.
    var inFlightSlots: Int { overlap ? 1 : 0 }
    /// fp32 copies of the op slots for the kernels, when working weights are narrower.
    public var computeSlotCounts: [Int] { precision.widensForCompute ? weightSlotCounts : [] }
    /// Stage 3's slots a unit is gathered into before an op (working type): unit 0's, then
    /// one (two with overlap: the op's and the next op's prefetch) for the other units.
    public var gatheredSlotCounts: [Int] {
        weightGather == .beforeEachOp ? weightSlotCounts + Array(repeating: largestOtherUnit, count: inFlightSlots) : []
    }
    /// Compute copies are part of the gathered working set at stage 3, scratch otherwise.
    public var computeSlotCategory: MemoryCategory { weightGather == .beforeEachOp ? .gathered : .scratch }

    /// fp32 micro-batch gradient buffers the model writes into: one per unit when reduced
    /// after backward, else the op slots' sizes (and one more slot with overlap).
    public var gradientSlotCounts: [Int] {
        stage.reduceGradientsPerUnit ? weightSlotCounts + Array(repeating: largestOtherUnit, count: inFlightSlots) : partition.paddedCounts
    }

    /// The rounded wire copy of one unit's gradient (units are reduced one at a time).
    public var wireCount: Int { precision.reduce == .fp32 ? 0 : partition.paddedCounts.max() ?? 0 }
    /// Stages 1-2: the updated shard is copied out before the all-gather writes over it.
    public var gatherSourceCount: Int {
        weightGather == .afterUpdate ? (0..<partition.unitCount).map { partition.shardCount(unit: $0, rank: rank) }.max() ?? 0 : 0
    }
    /// Partial sums kept by the binary-counter accumulation: floor(log2 A) + 1.
    public var accumulationLevels: Int { Self.accumulationLevels(accumulationSteps) }
    public static func accumulationLevels(_ steps: Int) -> Int {
        precondition(steps >= 1)
        return Int.bitWidth - steps.leadingZeroBitCount
    }
    /// Tokens (and targets) per micro-batch.
    public var batchElements: Int { microBatch * sequenceLength }
}

/// One buffer (or group of buffers) of a plan: bytes as allocated and how many are padding.
public struct PlannedBuffer: Sendable, Equatable, Codable {
    public var category: MemoryCategory
    public var name: String
    public var bytes: Int
    public var paddingBytes: Int
    public init(category: MemoryCategory, name: String, bytes: Int, paddingBytes: Int = 0) {
        self.category = category; self.name = name; self.bytes = bytes; self.paddingBytes = paddingBytes
    }
}

extension AllocationPlan {
    /// Every buffer of the plan in category order, for the memory report. What the plan does not
    /// own comes in as arguments: optimizer state bytes per master element (K - 4), the model's
    /// activations, the communicator's own scratch, and bf16 matmul operand copies.
    public func buffers(optimizerStateBytesPerElement k: Int, activationBytes: Int,
                        communicatorScratch: [PlannedBuffer] = [], matmulOperandBytes: Int = 0,
                        recompute: Bool = false) -> [PlannedBuffer] {
        let units = 0..<partition.unitCount
        func elements(_ extent: Extent) -> (Int, Int) {
            units.reduce((0, 0)) { ($0.0 + range(extent, unit: $1).count, $0.1 + realCount(extent, unit: $1)) }
        }
        func full(_ u: Int) -> (Int, Int) { (partition.paddedCounts[u], partition.unitCounts[u]) }
        func largest(_ candidates: some Sequence<Int>) -> (Int, Int) { candidates.map(full).max { $0 < $1 } ?? (0, 0) }
        func term(_ c: MemoryCategory, _ name: String, _ width: Int, _ e: (Int, Int), copies: Int = 1) -> PlannedBuffer {
            PlannedBuffer(category: c, name: name, bytes: width * e.0 * copies, paddingBytes: width * (e.0 - e.1) * copies)
        }
        let slots = { let a = full(0), b = largest(units.dropFirst()); return (a.0 + b.0, a.1 + b.1) }()
        let w = precision.working.byteWidth, levels = accumulationLevels
        let masterType = precision.master.rawValue
        var out = [
            term(.weights, working == .full ? "working weights (full replica)" : "working weights (owned shard)", w, elements(working)),
            term(.master, "\(masterType) master (\(master == .full ? "full" : "owned shard"))", precision.master.byteWidth, elements(master)),
            term(.optimizerState, "optimizer state (K - 4 bytes per master element)", k, elements(master)),
            stage.reduceGradientsPerUnit
                ? term(.gradients, "fp32 model gradients (embedding + largest unit)", 4, slots)
                : term(.gradients, "fp32 model gradients (all units)", 4, elements(.full)),
        ]
        if stage.reduceGradientsPerUnit && inFlightSlots > 0 {
            out.append(term(.gradients, "fp32 gradient slot of a reduction in flight (--overlap, largest unit)", 4, largest(units.dropFirst()), copies: inFlightSlots))
        }
        if wireCount > 0 {
            out.append(term(.gradients, "gradient wire copy, \(precision.reduce.rawValue) (largest unit)", precision.reduce.byteWidth, largest(units)))
        }
        out.append(term(.gradients, "reduced fp32 gradient partials x \(levels) level\(levels == 1 ? "" : "s")", 4, elements(master), copies: levels))
        out.append(PlannedBuffer(category: .activations, name: "activations (B=\(microBatch), T=\(sequenceLength)\(recompute ? ", per-block recompute" : ""))", bytes: activationBytes))
        let widened = !computeSlotCounts.isEmpty
        if !gatheredSlotCounts.isEmpty {
            let merged = widened && computeSlotCategory == .gathered
            out.append(term(.gathered, merged ? "gathered op slots (\(precision.working.rawValue) + fp32 widened)" : "gathered op slots (\(precision.working.rawValue))",
                            w + (merged ? 4 : 0), slots))
        }
        if !gatheredSlotCounts.isEmpty && inFlightSlots > 0 {
            out.append(term(.gathered, "prefetch slot, \(precision.working.rawValue) (--overlap, largest unit)", w, largest(units.dropFirst()), copies: inFlightSlots))
        }
        if widened && computeSlotCategory == .scratch {
            out.append(term(.scratch, "fp32 compute copies of the op slots", 4, slots))
        }
        out.append(PlannedBuffer(category: .scratch, name: "data batch (tokens + targets, int32)", bytes: 2 * 4 * batchElements))
        if matmulOperandBytes > 0 {
            out.append(PlannedBuffer(category: .scratch, name: "bf16 matmul operand copies", bytes: matmulOperandBytes))
        }
        out += communicatorScratch
        if gatherSourceCount > 0 {
            out.append(PlannedBuffer(category: .communication, name: "all-gather source (largest shard)", bytes: w * gatherSourceCount))
        }
        return out
    }
}
