import ZeroModels

/// Range partition of every unit's flat buffer over the ranks.
///
/// Each unit is padded to a multiple of `ranks * alignment` elements and split into
/// `ranks` equal contiguous shards; rank r owns shard r of every unit. Padding is
/// zeros that never receive gradient, so it never changes a result. The alignment
/// is a multiple of the norm block (1024) and of the 8-bit optimizer block (256),
/// so shard boundaries always fall on block boundaries whatever the rank count.
public struct Partition: Sendable, Equatable {
    public static let alignment = 1024

    public let ranks: Int
    /// Every unit's padded size is a multiple of ranks * alignment.
    public let unitAlignment: Int
    /// Unpadded element counts, one per unit.
    public let unitCounts: [Int]
    /// Padded element counts, multiples of ranks * alignment.
    public let paddedCounts: [Int]

    public init(unitCounts: [Int], ranks: Int, alignment: Int = Partition.alignment) {
        precondition(ranks >= 1 && alignment >= 1)
        self.ranks = ranks
        self.unitAlignment = alignment
        self.unitCounts = unitCounts
        let quantum = ranks * alignment
        paddedCounts = unitCounts.map { ($0 + quantum - 1) / quantum * quantum }
    }

    public init(layout: ParameterLayout, ranks: Int) {
        self.init(unitCounts: layout.units.map(\.count), ranks: ranks)
    }

    public var unitCount: Int { unitCounts.count }
    public func shardCount(unit u: Int) -> Int { paddedCounts[u] / ranks }
    /// Rank r's shard of unit u, in the unit's (padded) element coordinates.
    public func shardRange(unit u: Int, rank r: Int) -> Range<Int> {
        let s = shardCount(unit: u)
        return r * s ..< (r + 1) * s
    }
    public var paddedTotal: Int { paddedCounts.reduce(0, +) }
    public var unpaddedTotal: Int { unitCounts.reduce(0, +) }
    public var shardTotal: Int { paddedTotal / ranks }
    public var paddingElements: Int { paddedTotal - unpaddedTotal }
}

/// What a ZeRO stage keeps full and what it shards. Stages are data: the trainer's
/// step is one straight sequence in which these flags turn calls into no-ops.
public struct StagePlan: Sendable, Equatable {
    public let stage: Int
    /// Working (bf16) weights held as full replicas (stages 0-2) or only the owned shard (3).
    public var fullWorkingWeights: Bool { stage <= 2 }
    /// fp32 master and optimizer state for every element (stage 0) or the owned shard (1-3).
    public var fullMaster: Bool { stage == 0 }
    /// The micro-batch gradient is kept for all units until backward ends (0-1),
    /// or each unit's gradient is reduced as soon as backward has produced it (2-3).
    public var reduceGradientsPerUnit: Bool { stage >= 2 }
    /// Stage 0 all-reduces (everyone gets the whole sum); 1-3 reduce-scatter.
    public var allReducesGradients: Bool { stage == 0 }
    /// Stage 3 gathers a unit's weights before each op that reads it and releases them after.
    public var gathersWeightsPerOp: Bool { stage == 3 }
    /// Stages 1-2 all-gather the updated working-weight shards after the optimizer step.
    public var gathersWeightsAfterUpdate: Bool { stage == 1 || stage == 2 }

    public init(stage: Int) {
        precondition((0...3).contains(stage))
        self.stage = stage
    }
}
