import ZeroTensor

/// The collectives the runtime uses, by name in reports and JSON.
public enum CollectiveKind: String, CaseIterable, Sendable, Codable {
    case allReduce = "all_reduce"
    case reduceScatter = "reduce_scatter"
    case allGather = "all_gather"
    case broadcast
    case barrier
}

/// Bytes this rank sent and received, per collective kind.
public struct TrafficCounters: Sendable, Equatable, Codable {
    public var sent: [CollectiveKind: Int] = [:]
    public var received: [CollectiveKind: Int] = [:]
    public init() {}
    public var totalSent: Int { sent.values.reduce(0, +) }
    public var totalReceived: Int { received.values.reduce(0, +) }
}

/// A failure of a collective, reported before any data moves where it can be.
public struct CommunicatorError: Error, CustomStringConvertible, Sendable {
    public var description: String
    public init(_ description: String) { self.description = description }
}

/// A group of ranks and the collectives among them.
///
/// Two backends of equal standing implement it: `MPICommunicator` (one process per
/// rank under mpirun) and `SimulatedCluster` (N ranks as threads in one process).
/// Reductions add the N contributions in one canonical order (docs/determinism.md):
/// a balanced pairwise tree over rank index, `tree(lo, hi) = tree(lo, mid) + tree(mid, hi)`
/// with `mid = lo + (largest power of two < hi - lo)`, in fp32. Neighbours are added
/// first, lower index on the left: ((r0 + r1) + (r2 + r3)), and for 3 ranks (r0 + r1) + r2.
/// Both backends give the same bits.
///
/// Contract shared by both backends (docs/determinism.md, "Communicator reductions"):
/// - local size errors throw a `CommunicatorError` before any data moves;
/// - ranks that disagree on the call (collective, element type, count, root) all throw
///   the same error naming who called what, instead of hanging;
/// - a rank waiting past the timeout fails naming the collective and the missing ranks
///   (thrown in simulation; printed and `MPI_Abort`ed under MPI);
/// - `traffic` counts payload bytes as moved on the wire (bf16 = 2 bytes per element),
///   identical for both backends; control headers are not counted.
/// Call a communicator's collectives from one thread (its rank's).
public protocol Communicator: AnyObject, Sendable {
    var rank: Int { get }
    var size: Int { get }
    /// "mpi" or "simulated".
    var backendName: String { get }

    /// Every rank ends with the canonical sum of all ranks' buffers.
    func allReduce(_ buffer: UnsafeMutableBufferPointer<Float>) throws
    /// bf16 patterns on the wire; every rank ends with the canonical fp32 sum in `output`.
    func allReduce(bfloat16 input: UnsafeBufferPointer<UInt16>, into output: UnsafeMutableBufferPointer<Float>) throws
    /// `input.count == size * output.count`; rank r receives the canonical sum of chunk r.
    func reduceScatter(_ input: UnsafeBufferPointer<Float>, into output: UnsafeMutableBufferPointer<Float>) throws
    /// bf16 patterns on the wire, summed in fp32 at the receiver in the canonical order.
    func reduceScatter(bfloat16 input: UnsafeBufferPointer<UInt16>, into output: UnsafeMutableBufferPointer<Float>) throws
    /// `output.count == size * input.count`; chunk r of output is rank r's input.
    func allGather(_ input: UnsafeBufferPointer<Float>, into output: UnsafeMutableBufferPointer<Float>) throws
    func allGather(_ input: UnsafeBufferPointer<UInt16>, into output: UnsafeMutableBufferPointer<UInt16>) throws
    func allGather(_ input: UnsafeBufferPointer<Double>, into output: UnsafeMutableBufferPointer<Double>) throws
    /// Uneven shards (`Partition`'s block shards): `counts[q]` elements belong to rank q, at
    /// offset `counts[..<q].sum()`. `input.count == counts.sum()`, `output.count == counts[rank]`;
    /// rank r receives the canonical sum of its elements. A count may be 0.
    func reduceScatter(_ input: UnsafeBufferPointer<Float>, counts: [Int], into output: UnsafeMutableBufferPointer<Float>) throws
    func reduceScatter(bfloat16 input: UnsafeBufferPointer<UInt16>, counts: [Int], into output: UnsafeMutableBufferPointer<Float>) throws
    /// Uneven all-gather: `input.count == counts[rank]`, `output.count == counts.sum()`;
    /// rank q's input lands at offset `counts[..<q].sum()`.
    func allGather(_ input: UnsafeBufferPointer<Float>, counts: [Int], into output: UnsafeMutableBufferPointer<Float>) throws
    func allGather(_ input: UnsafeBufferPointer<UInt16>, counts: [Int], into output: UnsafeMutableBufferPointer<UInt16>) throws
    func allGather(_ input: UnsafeBufferPointer<Double>, counts: [Int], into output: UnsafeMutableBufferPointer<Double>) throws
    /// Root's bytes end up on every rank.
    func broadcast(_ buffer: UnsafeMutableRawBufferPointer, root: Int) throws
    func barrier() throws

    /// Payload bytes this rank has sent and received so far, per kind (see the table in
    /// docs/determinism.md: allReduce counts its reduce-scatter and all-gather halves).
    var traffic: TrafficCounters { get }
    /// Reports this rank's reused communication buffers (receive slots, reduced pieces)
    /// to `ledger` under `.communication`, now and whenever they grow. Call it once,
    /// before the first collective. Per-call temporaries of the tree sum (at most 48 KiB)
    /// are not reported.
    func attach(ledger: MemoryLedger)
    /// Ends the whole job (every rank) with a one-line message and a non-zero exit:
    /// `MPI_Abort` under MPI, `exit(1)` of the process in simulation.
    func abort(_ message: String) -> Never

    /// Starts `collective` (a call of this communicator's collectives) and returns at once
    /// where the communicator has a communication thread (`TimedCommunicator` with
    /// overlap), else runs it now. Collectives run one at a time in issue order, so every
    /// rank's sequence is the same as if they were called in place; the buffers `collective`
    /// reads and writes must stay untouched until `wait` returns for its ticket.
    func issue(_ collective: @escaping (any Communicator) throws -> Void) -> CommTicket
    /// Blocks until the ticket's collective is done; rethrows its error.
    func wait(_ ticket: CommTicket) throws
}

extension Communicator {
    public func issue(_ collective: @escaping (any Communicator) throws -> Void) -> CommTicket {
        do { try collective(self) } catch { return CommTicket(finishedWith: error) }
        return CommTicket(finishedWith: nil)
    }
    public func wait(_ ticket: CommTicket) throws {
        precondition(ticket.isDone, "wait on a ticket of another communicator")
        if let error = ticket.error { throw error }
    }
}

/// A collective issued ahead of the point that needs its result (`Communicator.issue`).
/// Sendable because its two fields are written once, by the communication thread under
/// its communicator's lock, before `isDone` is set and read after it.
public final class CommTicket: @unchecked Sendable {
    public internal(set) var isDone: Bool
    public internal(set) var error: (any Error)?
    /// When the communication thread completed it.
    var finishedAt = ContinuousClock.now
    init() { isDone = false }
    public init(finishedWith error: (any Error)?) {
        isDone = true
        self.error = error
    }
}
