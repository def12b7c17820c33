import ZeroComm
import ZeroTensor

/// A floating-point storage type the engine moves or keeps.
public enum DType: String, Sendable, Codable, CaseIterable {
    case fp32
    case bf16

    /// Bytes per element.
    public var byteWidth: Int { self == .bf16 ? 2 : 4 }
}

/// Which type each kind of tensor uses: a frozen value (FSDP2's MixedPrecisionPolicy) that
/// parameterizes one code path per operation, instead of a Bool branched on in many places.
public struct PrecisionPolicy: Sendable, Equatable, Codable {
    /// Working weights: what the replica (or the stage-3 shard) holds and gathers move.
    public var working: DType
    /// Gradients on the wire: rounded to this type once, then reduced with fp32 adds.
    public var reduce: DType
    /// Master weights and optimizer arithmetic (always fp32 today).
    public var master: DType
    /// Operand type of the model's matmuls. fp32 for both modes today: the kernels read
    /// fp32 (bf16 working weights are widened first). A bf16-compute path sets `.bf16` here
    /// and feeds `AllocationPlan.buffers(matmulOperandBytes:)` with its operand copies.
    public var matmul: DType

    public init(working: DType, reduce: DType, master: DType = .fp32, matmul: DType = .fp32) {
        self.working = working; self.reduce = reduce; self.master = master; self.matmul = matmul
    }

    /// bf16 working weights and gradient wire; fp32 master, moments, accumulation and matmuls.
    public static let bf16 = PrecisionPolicy(working: .bf16, reduce: .bf16)
    /// fp32 everywhere (master and working copies still kept apart).
    public static let fp32 = PrecisionPolicy(working: .fp32, reduce: .fp32)

    /// The policy a `--precision` value names.
    public init?(named name: String) {
        switch name {
        case "bf16": self = .bf16
        case "fp32": self = .fp32
        default: return nil
        }
    }

    /// Whether the kernels need an fp32 copy of the working weights.
    public var widensForCompute: Bool { working != .fp32 }
}

/// Working-precision values (weights in the replica, a gathered slot or a gather source),
/// with the few operations the step needs: write from fp32, view as fp32 (widening into a
/// scratch when stored narrower), gather, and the optimizer's write-back.
enum WorkingBuffer {
    case fp32(FlatBuffer<Float>)
    case bf16(FlatBuffer<UInt16>)

    init(_ type: DType, count: Int, category: MemoryCategory, ledger: MemoryLedger?) {
        switch type {
        case .fp32: self = .fp32(FlatBuffer(count: count, category: category, ledger: ledger))
        case .bf16: self = .bf16(FlatBuffer(count: count, category: category, ledger: ledger))
        }
    }

    var count: Int {
        switch self {
        case .fp32(let b): b.count
        case .bf16(let b): b.count
        }
    }

    /// self[offset...] = values, rounded to the working type (round to nearest even).
    func write(_ values: UnsafeBufferPointer<Float>, at offset: Int = 0) {
        let range = offset ..< offset + values.count
        switch self {
        case .fp32(let b): _ = b.slice(range).update(fromContentsOf: values)
        case .bf16(let b): BFloat16.round(values, into: b.slice(range))
        }
    }

    /// self[range] as fp32: the storage itself, or widened into `scratch` (which must then exist).
    func fp32(_ range: Range<Int>, widenInto scratch: FlatBuffer<Float>?) -> UnsafeBufferPointer<Float> {
        switch self {
        case .fp32(let b):
            return UnsafeBufferPointer(b.slice(range))
        case .bf16(let b):
            guard let scratch else { preconditionFailure("bf16 working weights need an fp32 compute slot") }
            let dst = scratch.slice(0 ..< range.count)
            BFloat16.widen(UnsafeBufferPointer(b.slice(range)), into: dst)
            return UnsafeBufferPointer(dst)
        }
    }

    /// self[0 ..< counts.sum()] = every rank's `source[range]` (rank q's has `counts[q]`
    /// elements), end to end in rank order.
    func allGather(_ source: WorkingBuffer, _ range: Range<Int>, counts: [Int], communicator: any Communicator) throws {
        let output = 0 ..< counts.reduce(0, +)
        switch (source, self) {
        case (.fp32(let s), .fp32(let d)): try communicator.allGather(UnsafeBufferPointer(s.slice(range)), counts: counts, into: d.slice(output))
        case (.bf16(let s), .bf16(let d)): try communicator.allGather(UnsafeBufferPointer(s.slice(range)), counts: counts, into: d.slice(output))
        default: preconditionFailure("all-gather between working buffers of different types")
        }
    }

    /// self[0 ..< range.count] = source[range] (same type).
    func copy(from source: WorkingBuffer, _ range: Range<Int>) {
        switch (source, self) {
        case (.fp32(let s), .fp32(let d)): _ = d.slice(0 ..< range.count).update(fromContentsOf: s.slice(range))
        case (.bf16(let s), .bf16(let d)): _ = d.slice(0 ..< range.count).update(fromContentsOf: s.slice(range))
        default: preconditionFailure("copy between working buffers of different types")
        }
    }

    /// Where a fused optimizer writes the bf16 of its new master values (nil: it cannot).
    func optimizerOutput(_ range: Range<Int>) -> UnsafeMutableBufferPointer<UInt16>? {
        switch self {
        case .fp32: nil
        case .bf16(let b): b.slice(range)
        }
    }

    /// After an optimizer step: self[range] = master unless the optimizer already wrote it.
    func finishStep(master: UnsafeBufferPointer<Float>, _ range: Range<Int>) {
        if case .fp32 = self { write(master, at: range.lowerBound) }
    }
}

/// Rounds a unit's fp32 micro-batch gradient to the policy's reduce type (the one rounding
/// point of gradients) and reduces it across ranks with fp32 adds.
struct GradientWire {
    /// The rounded copy; nil when gradients travel in fp32 straight from the model's buffer.
    let wire: FlatBuffer<UInt16>?

    init(_ type: DType, count: Int, ledger: MemoryLedger?) {
        wire = type == .bf16 ? FlatBuffer(count: count, category: .gradients, ledger: ledger) : nil
    }

    /// `output` = the sum over ranks of `gradient` (all-reduce), or this rank's shard of it
    /// (rank q's shard has `counts[q]` elements, end to end).
    func reduce(_ gradient: UnsafeBufferPointer<Float>, into output: UnsafeMutableBufferPointer<Float>,
                _ reduction: AllocationPlan.Reduction, counts: [Int], communicator: any Communicator) throws {
        let allReduce = reduction == .allReduce
        if let wire {
            let w = wire.slice(0 ..< gradient.count)
            BFloat16.round(gradient, into: w)
            if allReduce {
                try communicator.allReduce(bfloat16: UnsafeBufferPointer(w), into: output)
            } else {
                try communicator.reduceScatter(bfloat16: UnsafeBufferPointer(w), counts: counts, into: output)
            }
        } else if allReduce {
            _ = output.update(fromContentsOf: gradient)
            try communicator.allReduce(output)
        } else {
            try communicator.reduceScatter(gradient, counts: counts, into: output)
        }
    }
}
