import ZeroEngine
import ZeroModels
import ZeroTensor

/// Elements of a buffer on one rank: as allocated (padded) and how many of them hold
/// real parameters. Their difference is the padding that buffer carries.
public struct ElementCount: Sendable, Equatable {
    public var padded: Int
    public var real: Int
    public init(padded: Int, real: Int) { self.padded = padded; self.real = real }
    public static func + (a: Self, b: Self) -> Self { .init(padded: a.padded + b.padded, real: a.real + b.real) }
    public static let zero = ElementCount(padded: 0, real: 0)
}

/// The parameter units of a model, padded for N ranks, and which units each op reads.
///
/// Each unit u is padded to P_u = roundup(count_u, A) elements (A = alignment, 1024): nb_u =
/// P_u / A blocks, whatever the rank count. Rank r owns blocks [r nb_u / N, (r+1) nb_u / N)
/// (the engine's `Partition`), so shards differ by at most one block, the last rank's is
/// the largest (ceil(nb_u / N) blocks) and holds the padding (< A elements per unit).
public struct UnitPlan: Sendable, Equatable {
    /// Unpadded elements per unit.
    public var counts: [Int]
    /// Units read by each forward op (backward runs them in reverse).
    public var opUnits: [[Int]]
    public var ranks: Int
    public var alignment: Int
    /// The rank whose padding the report shows (default: the last, which owns the most).
    public var rank: Int

    public init(counts: [Int], opUnits: [[Int]], ranks: Int, alignment: Int = 1024, rank: Int? = nil) {
        self.counts = counts; self.opUnits = opUnits; self.ranks = ranks
        self.alignment = alignment; self.rank = rank ?? ranks - 1
    }

    /// A GPT's units: embeddings (V+T)C, L blocks, final 2C; ops: embedding [0],
    /// block i [i], head [final, embedding] (the head is tied to wte).
    public static func gpt(_ config: GPTConfig, ranks: Int, alignment: Int = 1024, rank: Int? = nil) -> UnitPlan {
        let counts = [config.embeddingUnitCount]
            + Array(repeating: config.blockUnitCount, count: config.layers) + [config.finalUnitCount]
        let final = config.layers + 1
        let ops = [[0]] + (0..<config.layers).map { [$0 + 1] } + [[final, 0]]
        return UnitPlan(counts: counts, opUnits: ops, ranks: ranks, alignment: alignment, rank: rank)
    }

    /// One flat unit of `parameters` elements with a single op: the scale view.
    public static func flat(parameters: Int, ranks: Int, alignment: Int = 1024) -> UnitPlan {
        UnitPlan(counts: [parameters], opUnits: [[0]], ranks: ranks, alignment: alignment)
    }

    /// The engine's partition of these units.
    public var partition: Partition { Partition(unitCounts: counts, ranks: ranks, alignment: alignment) }
    /// P_u: unit u's padded element count.
    public func padded(_ u: Int) -> Int { (counts[u] + alignment - 1) / alignment * alignment }
    /// Unit u's element range on `rank` (the reporting rank by default).
    public func shardRange(_ u: Int, rank r: Int? = nil) -> Range<Int> {
        Partition.shardRange(padded: padded(u), ranks: ranks, rank: r ?? rank, alignment: alignment)
    }
    /// S_u: unit u's shard on the reporting rank.
    public func shard(_ u: Int) -> Int { shardRange(u).count }
    /// Real (non-padding) elements of unit u in `rank`'s shard.
    public func realShard(_ u: Int, rank r: Int) -> Int {
        let range = shardRange(u, rank: r)
        return max(0, min(counts[u], range.upperBound) - range.lowerBound)
    }

    public var units: Range<Int> { counts.indices }
    /// Psi: all real parameters.
    public var parameterCount: Int { counts.reduce(0, +) }

    /// Unit u, full.
    public func full(_ u: Int) -> ElementCount { .init(padded: padded(u), real: counts[u]) }
    /// All units, full (P elements).
    public var all: ElementCount { units.reduce(.zero) { $0 + full($1) } }
    /// The reporting rank's shard of all units (S = sum of S_u elements).
    public var ownedShard: ElementCount {
        units.reduce(.zero) { $0 + ElementCount(padded: shard($1), real: realShard($1, rank: rank)) }
    }
    /// The largest single unit among `candidates` (by padded size).
    public func largestUnit(among candidates: some Sequence<Int>) -> ElementCount {
        candidates.map(full).max { ($0.padded, $0.real) < ($1.padded, $1.real) } ?? .zero
    }
    /// The engine's two per-op slots: one for unit 0 (the tied embedding) and one sized for
    /// the largest other unit. Every op's units fit (a GPT head reads final + embedding).
    public var slots: ElementCount { full(0) + largestUnit(among: units.dropFirst()) }
    /// The largest op: the most elements resident for one op's units.
    public var largestOp: ElementCount {
        opUnits.map { $0.reduce(.zero) { $0 + full($1) } }.max { ($0.padded, $0.real) < ($1.padded, $1.real) } ?? .zero
    }
}

/// One buffer (or group of buffers) of a plan: the engine's `PlannedBuffer`, so that the
/// report and the trainer share one type.
public typealias BufferTerm = PlannedBuffer

extension PlannedBuffer {
    /// `bytesPerElement` times `elements` (times `copies`), padding included.
    public init(_ category: MemoryCategory, _ name: String, bytesPerElement b: Int, _ e: ElementCount, copies: Int = 1) {
        self.init(category: category, name: name, bytes: b * e.padded * copies,
                  paddingBytes: b * (e.padded - e.real) * copies)
    }
}

/// Activation bytes a model keeps for (batch, sequence): forward saves plus backward scratch.
public typealias ActivationBytes = @Sendable (GPTConfig, _ batchSize: Int, _ sequenceLength: Int) -> Int

/// What the runtime allocates per rank for one run configuration.
public struct RunConfiguration: Sendable {
    public var model: GPTConfig
    public var ranks: Int
    public var stage: Int
    public var microBatch: Int
    public var sequenceLength: Int
    /// A: micro-batches accumulated per optimizer step (per rank).
    public var accumulationSteps: Int
    public var precision: PrecisionMode
    /// K: optimizer bytes per parameter, fp32 master included (AdamW: 12).
    public var optimizerBytesPerParameter: Int
    /// A: alignment of every unit's padding, in elements (the engine's 1024).
    public var alignment: Int
    /// The model's activation bytes; nil (the default): exactly what `GPT` allocates for this
    /// `precision` and `recompute` (`ActivationEstimate.runtime(precision:recompute:)`).
    public var activationBytes: ActivationBytes?
    /// Per-block activation recompute (`--recompute`): labels the activations term; the
    /// default `activationBytes` follows it.
    public var recompute: Bool
    /// Collectives overlapped with compute (the trainer's --overlap, resolved): one more
    /// gathered slot at stage 3 and one more gradient slot at stages 2-3.
    public var overlap: Bool
    /// Communicator receive scratch; nil means what `backend` allocates (BufferPlan.communication).
    public var communicationScratchBytes: Int?
    /// Which communicator runs: its receive scratch differs.
    public var backend: Backend = .mpi
    /// What a process holds outside the ledger: code, the Swift runtime and Foundation,
    /// OpenBLAS's per-thread buffers, Open MPI's shared-memory segments, allocator slack.
    /// Not derivable from the config: measured here (peak RSS minus ledger peak of
    /// gpt-small and gpt-medium runs under mpirun, stages 0-3: 43-45 MiB), so a prediction
    /// of RSS is `total + fixedOverheadBytes` per process.
    public var fixedOverheadBytes: Int = RunConfiguration.measuredFixedOverheadBytes
    public static let measuredFixedOverheadBytes = 44 << 20

    public enum Backend: String, Sendable { case mpi, simulated }

    public init(model: GPTConfig, ranks: Int, stage: Int, microBatch: Int, sequenceLength: Int,
                accumulationSteps: Int = 1, precision: PrecisionMode = .bf16,
                optimizerBytesPerParameter: Int = 12, alignment: Int = 1024,
                activationBytes: ActivationBytes? = nil,
                communicationScratchBytes: Int? = nil, backend: Backend = .mpi, recompute: Bool = false,
                overlap: Bool = false)
    {
        self.recompute = recompute
        self.overlap = overlap
        self.backend = backend
        self.model = model; self.ranks = ranks; self.stage = stage; self.microBatch = microBatch
        self.sequenceLength = sequenceLength; self.accumulationSteps = accumulationSteps
        self.precision = precision; self.optimizerBytesPerParameter = optimizerBytesPerParameter
        self.alignment = alignment
        self.activationBytes = activationBytes
        self.communicationScratchBytes = communicationScratchBytes
    }

    /// Throws one clear line for an impossible configuration.
    public func validate() throws {
        try validateStage(stage)
        try validateRanks(ranks)
        guard (1...1_000_000).contains(microBatch) else {
            throw MemoryModelError("micro-batch must be 1...1000000 (got \(microBatch))")
        }
        guard sequenceLength >= 1, sequenceLength <= model.contextLength else {
            throw MemoryModelError("sequence length must be 1...\(model.contextLength) for \(model.name) (got \(sequenceLength))")
        }
        guard (1...1_000_000).contains(accumulationSteps) else {
            throw MemoryModelError("gradient accumulation steps must be 1...1000000 (got \(accumulationSteps))")
        }
        // Up to L-BFGS with history 10,000: 4 + 8 m + 8.
        guard (4...80_012).contains(optimizerBytesPerParameter) else {
            throw MemoryModelError("optimizer bytes per parameter must be 4 (the fp32 master) to 80012 (L-BFGS at history 10000), not \(optimizerBytesPerParameter)")
        }
        guard (1...1 << 20).contains(alignment) else { throw MemoryModelError("alignment must be 1...\(1 << 20) elements (got \(alignment))") }
    }

    public var units: UnitPlan { .gpt(model, ranks: ranks, alignment: alignment) }

    /// The GPT's compute precision in this mode (bf16 mode multiplies in bf16).
    public var computePrecision: ComputePrecision { precision == .bf16 ? .bf16 : .fp32 }

    /// `activationBytes` for this configuration's micro-batch.
    public var activationByteCount: Int {
        let bytes = activationBytes ?? ActivationEstimate.runtime(precision: computePrecision, recompute: recompute)
        return bytes(model, microBatch, sequenceLength)
    }
}

extension PrecisionMode {
    /// The engine's precision policy for this mode.
    public var policy: PrecisionPolicy { self == .bf16 ? .bf16 : .fp32 }
}

/// The runtime's buffers: the engine's own `AllocationPlan` for the run (so the report shows
/// exactly what the trainer allocates), plus what lives outside it: optimizer state (K - 4
/// bytes per master element), activations and the communicator's receive scratch.
/// docs/memory.md derives each term.
public enum BufferPlan {
    /// Partial sums kept by the binary-counter accumulation: floor(log2 A) + 1.
    public static func accumulationLevels(_ steps: Int) -> Int { AllocationPlan.accumulationLevels(steps) }

    /// The engine's plan for the reporting rank of `c`.
    public static func allocation(for c: RunConfiguration) -> AllocationPlan {
        let u = c.units
        return AllocationPlan(partition: Partition(unitCounts: u.counts, ranks: c.ranks, alignment: c.alignment),
                              opUnits: u.opUnits, rank: u.rank, stage: StagePlan(stage: c.stage),
                              precision: c.precision.policy, microBatch: c.microBatch, sequenceLength: c.sequenceLength,
                              accumulationSteps: c.accumulationSteps, overlap: c.overlap && c.ranks > 1)
    }

    /// The communicator's own scratch. The MPI backend receives the N-1 peers' pieces of its
    /// reduce-scatter slot into one reused scratch: (N-1) x its largest piece (a unit's shard,
    /// or ceil(P_u / N) of an all-reduce) elements of the wire width; simulated ranks read each
    /// other's memory and need only the reduced piece of an in-place fp32 all-reduce (stage 0,
    /// fp32 mode).
    public static func communicatorScratch(_ c: RunConfiguration, _ plan: AllocationPlan) -> [PlannedBuffer] {
        let even = ((plan.partition.paddedCounts.max() ?? 0) + c.ranks - 1) / c.ranks
        let shard = (0..<plan.partition.unitCount).map { plan.partition.shardCount(unit: $0, rank: plan.rank) }.max() ?? 0
        let piece = plan.reduction == .allReduce ? even : shard
        if let bytes = c.communicationScratchBytes {
            return [PlannedBuffer(category: .communication, name: "communicator scratch (given)", bytes: bytes)]
        }
        if c.backend == .mpi {
            return [PlannedBuffer(category: .communication, name: "MPI receive scratch, (N-1) pieces of the largest unit",
                                  bytes: max(1, (c.ranks - 1) * piece * plan.precision.reduce.byteWidth))]
        }
        if plan.reduction == .allReduce && plan.precision.reduce == .fp32 {
            return [PlannedBuffer(category: .communication, name: "reduced piece of the in-place all-reduce", bytes: 4 * max(1, piece))]
        }
        return []
    }

    /// Every term for `c`, in category order. `matmulOperandBytes` defaults to what the
    /// runtime GPT allocates for bf16 matmul operands in `c`'s precision.
    public static func terms(for c: RunConfiguration, matmulOperandBytes: Int? = nil) -> [BufferTerm] {
        let plan = allocation(for: c)
        let matmulOperandBytes = matmulOperandBytes ?? GPT.matmulOperandBytes(
            config: c.model, batchSize: c.microBatch, sequenceLength: c.sequenceLength,
            precision: c.computePrecision)
        return plan.buffers(optimizerStateBytesPerElement: c.optimizerBytesPerParameter - 4,
                            activationBytes: c.activationByteCount,
                            communicatorScratch: communicatorScratch(c, plan),
                            matmulOperandBytes: matmulOperandBytes, recompute: c.recompute)
    }
}
