import ZeroModels

/// Range partition of every unit's flat buffer over the ranks.
///
/// Each unit is padded only to a multiple of `alignment` (1024) elements: nb blocks. Rank r
/// owns the contiguous blocks [r nb / N, (r+1) nb / N) (integer division), so shards differ
/// by at most one block, the last rank's is never smaller than another's, and when N > nb
/// some ranks own nothing of the unit. A unit's padding is below one block whatever N is, so
/// every full-size buffer (replicas, full gradients, gather slots) is the unit plus < 1024
/// elements (docs/memory.md, "Padding"). Padding is zeros that never receive gradient, so it
/// never changes a result. The block is a multiple of the norm block (1024) and of the 8-bit
/// optimizer block (256), so shard boundaries fall on block boundaries at every rank count.
///
/// When nb is a multiple of N every shard holds nb / N blocks: the equal shards of
/// checkpoints written before this rule (units padded to a multiple of N x 1024) are the
/// same cut, so `shardRange(padded:ranks:rank:)` reads both.
public struct Partition: Sendable, Equatable {
    public static let alignment = 1024

    public let ranks: Int
    /// Every unit's padded size is a multiple of this (the block).
    public let unitAlignment: Int
    /// Unpadded element counts, one per unit.
    public let unitCounts: [Int]
    /// Padded element counts, multiples of `unitAlignment`.
    public let paddedCounts: [Int]

    public init(unitCounts: [Int], ranks: Int, alignment: Int = Partition.alignment) {
        precondition(ranks >= 1 && alignment >= 1)
        self.ranks = ranks
        self.unitAlignment = alignment
        self.unitCounts = unitCounts
        paddedCounts = unitCounts.map { ($0 + alignment - 1) / alignment * alignment }
    }

    public init(layout: ParameterLayout, ranks: Int) {
        self.init(unitCounts: layout.units.map(\.count), ranks: ranks)
    }

    /// Rank r's contiguous share of `padded` elements cut into `alignment`-element blocks.
    /// A size that is not whole blocks (a checkpoint of another alignment) is cut into
    /// `ranks` equal shards, as it was written.
    public static func shardRange(padded: Int, ranks: Int, rank r: Int, alignment: Int = Partition.alignment) -> Range<Int> {
        guard padded % alignment == 0 else {
            let s = padded / ranks
            return r * s ..< (r + 1) * s
        }
        let blocks = padded / alignment
        return r * blocks / ranks * alignment ..< (r + 1) * blocks / ranks * alignment
    }

    public var unitCount: Int { unitCounts.count }
    /// Rank r's shard of unit u, in the unit's (padded) element coordinates.
    public func shardRange(unit u: Int, rank r: Int) -> Range<Int> {
        Partition.shardRange(padded: paddedCounts[u], ranks: ranks, rank: r, alignment: unitAlignment)
    }
    /// Elements of unit u that rank r owns (0 when it owns no block of it).
    public func shardCount(unit u: Int, rank r: Int) -> Int { shardRange(unit: u, rank: r).count }
    /// Every rank's element count of unit u, in rank order (the collectives' counts).
    public func shardCounts(unit u: Int) -> [Int] { (0..<ranks).map { shardCount(unit: u, rank: $0) } }
    /// The largest shard of unit u (the last rank's).
    public func largestShard(unit u: Int) -> Int { shardCount(unit: u, rank: ranks - 1) }
    /// Rank r's elements over all units.
    public func shardTotal(rank r: Int) -> Int { (0..<unitCount).reduce(0) { $0 + shardCount(unit: $1, rank: r) } }
    public var paddedTotal: Int { paddedCounts.reduce(0, +) }
    public var unpaddedTotal: Int { unitCounts.reduce(0, +) }
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
