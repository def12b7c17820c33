import CMPI
import Foundation
import Synchronization
import ZeroTensor

/// One process per rank under mpirun, over MPI_COMM_WORLD.
///
/// Reductions never use MPI_SUM: each is a pairwise exchange (rank q receives chunk q
/// from every rank with nonblocking Isend/Irecv into preallocated, reused buffers) and
/// then the canonical tree sum (`CanonicalSum`) at the receiver, so results equal the
/// simulated backend bit for bit. allReduce is reduce-scatter plus all-gather over N
/// near-equal pieces (`EvenSplit`), so any count works.
///
/// Every collective first exchanges a 40-byte descriptor with every peer (collective,
/// element type, count, root, sequence number): ranks that disagree all throw the same
/// `CommunicatorError` before any payload moves. Waits poll `MPI_Testall` against a
/// deadline; on expiry the rank prints
/// `zero-train: rank R: <collective> timed out after Ns waiting for rank(s) Q` and
/// aborts the job, since a peer that never arrives cannot be recovered from.
///
/// Thread use: MPI is initialized SERIALIZED; call collectives from one thread at a time
/// (the rank's main thread, or its `TimedCommunicator` communication thread with overlap).
/// Sendable because all mutable state (buffers, counters) is used by one thread at a time.
public final class MPICommunicator: Communicator, @unchecked Sendable {
    public let rank: Int
    public let size: Int
    public var backendName: String { "mpi" }
    /// How long a collective may wait for its peers before the job is aborted.
    public let timeout: Duration

    private let comm: MPI_Comm
    private var sequence = 0
    private let requests: UnsafeMutablePointer<MPI_Request?>
    private var requestPeers: [(peer: Int, receive: Bool)] = []
    private let headerOut: UnsafeMutablePointer<Int64>
    private let headerIn: UnsafeMutablePointer<Int64>
    private var scratch: UnsafeMutableRawPointer? = nil
    private var scratchBytes = 0
    private var deadline = ContinuousClock.now
    private var finalized = false
    private var ledger: MemoryLedger?
    private let counters = Mutex(TrafficCounters())
    /// Polls before a waiting rank starts yielding its core: few when this node runs
    /// more ranks than it has cores (a peer needs the core to make progress), many
    /// otherwise (a yield can hand the core to an unrelated process for a time slice).
    private let spinsBeforeYield: Int
    /// Set by an overlapping `TimedCommunicator`: its communication thread shares the cores
    /// with the rank's compute, so a wait polls a few times and then sleeps 50 us between
    /// polls instead of spinning (Open MPI's TCP transport only moves data inside MPI
    /// calls, and the kernel's socket buffers hold far more than 50 us of a link's bytes).
    public var sleepsWhilePolling = false
    /// Whether the ranks run on more than one host (MPI_COMM_TYPE_SHARED groups fewer than all).
    public private(set) var spansHosts = false
    /// Whether the MPI library granted SERIALIZED, which a communication thread needs.
    public var allowsCommunicationThread: Bool {
        var provided: Int32 = 0
        MPI_Query_thread(&provided)
        return provided >= zt_thread_serialized()
    }

    private static let headerTag: Int32 = 7001
    private static let dataTag: Int32 = 7002

    /// True when this process was started by an MPI launcher (mpirun, srun with PMI/PMIx).
    public static var isLaunchedByMPI: Bool {
        let env = ProcessInfo.processInfo.environment
        return ["OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_RANK"].contains { env[$0] != nil }
    }

    /// Initializes MPI (SERIALIZED: the communication thread calls it) once per process and returns a communicator over
    /// COMM_WORLD with errors returned, not fatal. Without a launcher it is a group of one.
    public static func start(timeout: Duration = .seconds(300)) throws -> MPICommunicator {
        var initialized: Int32 = 0
        MPI_Initialized(&initialized)
        if initialized == 0 {
            var provided: Int32 = 0
            let rc = MPI_Init_thread(nil, nil, zt_thread_serialized(), &provided)
            if rc != zt_success() { throw CommunicatorError("MPI_Init_thread failed with code \(rc)") }
        }
        let world = zt_comm_world()
        try check(MPI_Comm_set_errhandler(world, zt_errors_return()), "MPI_Comm_set_errhandler")
        var r: Int32 = 0, n: Int32 = 0
        try check(MPI_Comm_rank(world, &r), "MPI_Comm_rank")
        try check(MPI_Comm_size(world, &n), "MPI_Comm_size")
        // The ranks sharing this node's memory: fewer than all means the job spans hosts.
        var node: MPI_Comm? = nil
        var local: Int32 = n
        if MPI_Comm_split_type(world, zt_comm_type_shared(), r, zt_info_null(), &node) == zt_success() {
            MPI_Comm_size(node, &local)
            MPI_Comm_free(&node)
        }
        let communicator = MPICommunicator(comm: world!, rank: Int(r), size: Int(n), timeout: timeout)
        communicator.spansHosts = local < n
        return communicator
    }

    private init(comm: MPI_Comm, rank: Int, size: Int, timeout: Duration) {
        self.comm = comm
        self.rank = rank
        self.size = size
        self.timeout = timeout
        requests = .allocate(capacity: 2 * size + 2)
        requests.initialize(repeating: zt_request_null(), count: 2 * size + 2)
        headerOut = .allocate(capacity: CallDescriptor.wireCount)
        headerIn = .allocate(capacity: CallDescriptor.wireCount * size)
        let env = ProcessInfo.processInfo.environment
        let local = Int(env["OMPI_COMM_WORLD_LOCAL_SIZE"] ?? "") ?? size
        let cores = ProcessInfo.processInfo.activeProcessorCount
        spinsBeforeYield = Int(env["ZT_COMM_SPINS"] ?? "") ?? (local > cores ? 16 : 20_000)
    }

    deinit {
        requests.deallocate()
        headerOut.deallocate()
        headerIn.deallocate()
        ledger?.freed(scratchBytes, .communication)
        scratch?.deallocate()
    }

    /// Ends MPI for this process (idempotent). No collective may follow.
    ///
    /// Collective: it starts with a checked barrier, so a rank that finishes while its
    /// peers still wait in a collective makes them all fail with a clear mismatch
    /// ("rank(s) 3 called barrier ...") and the job aborts. Without it the finished rank
    /// would sit in MPI_Finalize while the others time out, and Open MPI 4.1.4's mpirun
    /// was seen to hang or crash when ranks abort while one is finalizing.
    public func finalize() {
        if finalized { return }
        if size > 1 {
            do { try barrier() } catch { abort("\(error)") }
        }
        finalized = true
        var done: Int32 = 0
        MPI_Finalized(&done)
        if done == 0 { MPI_Finalize() }
    }

    public var traffic: TrafficCounters { counters.withLock { $0 } }

    public func abort(_ message: String) -> Never {
        abortJob(abortLine(rank, message))
    }

    /// Prints `line` and aborts the job. Ranks that detect the same failure together
    /// (a mismatch, a missing peer) would all call MPI_Abort at once, and Open MPI 4.1's
    /// mpirun can then hang in its error-message aggregation with every rank already
    /// dead; so rank r waits r x 300 ms (at most 3 s) first, and the lowest rank's abort
    /// usually ends the job before the others call theirs.
    private func abortJob(_ line: String) -> Never {
        FileHandle.standardError.write(Data(line.utf8))
        usleep(UInt32(min(rank, 10)) * 300_000)
        MPI_Abort(comm, 1)
        exit(1)
    }

    // MARK: plumbing

    private static func check(_ code: Int32, _ what: String) throws {
        if code == zt_success() { return }
        var text = [CChar](repeating: 0, count: Int(zt_max_error_string()) + 1)
        var length: Int32 = 0
        MPI_Error_string(code, &text, &length)
        let reason = String(decoding: text.prefix(Int(length)).map { UInt8(bitPattern: $0) }, as: UTF8.self)
        throw CommunicatorError("\(what) failed: \(reason) (code \(code))")
    }

    private func check(_ code: Int32, _ kind: CollectiveKind, _ call: String) throws {
        do { try MPICommunicator.check(code, call) } catch let e as CommunicatorError {
            throw CommunicatorError("rank \(rank): \(kind.rawValue): \(e.description)")
        }
    }

    public func attach(ledger: MemoryLedger) {
        self.ledger = ledger
        if scratchBytes > 0 { ledger.allocated(scratchBytes, .communication) }
    }

    /// Reused receive space, grown (and touched once) only when a larger call comes.
    private func scratchSpace(bytes: Int) -> UnsafeMutableRawPointer {
        if bytes > scratchBytes {
            scratch?.deallocate()
            let grown = max(bytes, scratchBytes * 5 / 4)
            ledger?.freed(scratchBytes, .communication)
            ledger?.allocated(grown, .communication)
            scratch = .allocate(byteCount: grown, alignment: 64)
            scratch!.initializeMemory(as: UInt8.self, repeating: 0, count: grown)
            scratchBytes = grown
        }
        return scratch!
    }

    private func receive(_ buffer: UnsafeMutableRawPointer, _ count: Int, _ type: MPI_Datatype?, from peer: Int, _ kind: CollectiveKind, tag: Int32 = MPICommunicator.dataTag) throws {
        let i = requestPeers.count
        requestPeers.append((peer, true))
        try check(MPI_Irecv(buffer, Int32(count), type, Int32(peer), tag, comm, requests + i), kind, "MPI_Irecv")
    }

    private func send(_ buffer: UnsafeRawPointer, _ count: Int, _ type: MPI_Datatype?, to peer: Int, _ kind: CollectiveKind, tag: Int32 = MPICommunicator.dataTag) throws {
        let i = requestPeers.count
        requestPeers.append((peer, false))
        try check(MPI_Isend(buffer, Int32(count), type, Int32(peer), tag, comm, requests + i), kind, "MPI_Isend")
    }

    /// Completes every posted request, yielding the core between polls (ranks may
    /// outnumber cores); past the deadline, names the missing peers and aborts the job.
    private func waitAll(_ kind: CollectiveKind) throws {
        let n = requestPeers.count
        defer { requestPeers.removeAll(keepingCapacity: true) }
        if n == 0 { return }
        var flag: Int32 = 0
        var spins = 0
        while true {
            try check(MPI_Testall(Int32(n), requests, &flag, zt_statuses_ignore()), kind, "MPI_Testall")
            if flag != 0 { return }
            spins += 1
            if sleepsWhilePolling {
                if spins > 64 { usleep(50) }
            } else if spins > spinsBeforeYield { sched_yield() }
            if spins & 63 == 0 && ContinuousClock.now > deadline { timedOut(kind, n) }
        }
    }

    private func timedOut(_ kind: CollectiveKind, _ n: Int) -> Never {
        var missing: [Int] = []
        for i in 0..<n where requestPeers[i].receive {
            var flag: Int32 = 0
            MPI_Test(requests + i, &flag, zt_status_ignore())
            if flag == 0 { missing.append(requestPeers[i].peer) }
        }
        if missing.isEmpty { missing = (0..<n).map { requestPeers[$0].peer } }
        let line = "zero-train: rank \(rank): \(kind.rawValue) timed out after \(formatSeconds(timeout)) waiting for rank(s) \(rangeList(Array(Set(missing))))\n"
        abortJob(line)
    }

    /// Starts a collective: sets the deadline and checks with every peer that all ranks
    /// are making the same call.
    private func open(_ descriptor: CallDescriptor) throws {
        if finalized {
            throw CommunicatorError("rank \(rank): \(descriptor.kind.rawValue) called after finalize()")
        }
        deadline = ContinuousClock.now + timeout
        var d = descriptor
        d.sequence = sequence
        sequence += 1
        if size == 1 { return }
        let w = CallDescriptor.wireCount
        for (i, v) in d.wire.enumerated() { headerOut[i] = v; headerIn[rank * w + i] = v }
        for i in 1..<size {
            let q = (rank + size - i) % size
            try receive(headerIn + q * w, w, zt_int64(), from: q, d.kind, tag: MPICommunicator.headerTag)
        }
        for i in 1..<size {
            try send(headerOut, w, zt_int64(), to: (rank + i) % size, d.kind, tag: MPICommunicator.headerTag)
        }
        try waitAll(d.kind)
        var all: [CallDescriptor] = []
        for q in 0..<size {
            guard let e = CallDescriptor(wire: headerIn + q * w) else {
                throw CommunicatorError("rank \(rank): \(d.kind.rawValue): rank \(q) sent an unreadable call header")
            }
            all.append(e)
        }
        if let message = CallDescriptor.mismatch(all, seenBy: rank) { throw CommunicatorError(message) }
    }

    private func count(_ kind: CollectiveKind, _ t: (sent: Int, received: Int)) {
        counters.withLock { $0.add(kind, t) }
    }

    // MARK: reductions

    /// Pairwise exchange of reduce-scatter pieces: piece q of `input` (elements `pieces[q]`)
    /// goes to rank q, and this rank's piece from every peer lands in scratch slot q. Returns
    /// the sources in rank order (its own piece read in place).
    private func exchangePieces<T>(_ input: UnsafePointer<T>, _ pieces: [Range<Int>], _ type: MPI_Datatype?, _ kind: CollectiveKind) throws -> [UnsafePointer<T>] {
        let mine = pieces[rank]
        let stride = MemoryLayout<T>.stride
        // Slots for the N-1 peers only: peer q uses slot q, or q-1 above this rank.
        let space = scratchSpace(bytes: max(1, (size - 1) * mine.count * stride))
        let slots = space.bindMemory(to: T.self, capacity: (size - 1) * mine.count)
        func slot(_ q: Int) -> UnsafeMutablePointer<T> { slots + (q < rank ? q : q - 1) * mine.count }
        if !mine.isEmpty {
            for i in 1..<size {
                let q = (rank + size - i) % size
                try receive(slot(q), mine.count, type, from: q, kind)
            }
        }
        for i in 1..<size {
            let q = (rank + i) % size
            let r = pieces[q]
            if !r.isEmpty { try send(input + r.lowerBound, r.count, type, to: q, kind) }
        }
        try waitAll(kind)
        return (0..<size).map { q in q == rank ? input + mine.lowerBound : UnsafePointer(slot(q)) }
    }

    /// All-gather of the pieces `pieces` (rank q's at `pieces[q]`), in place in `buffer`.
    private func gatherPieces<T>(_ buffer: UnsafeMutablePointer<T>, _ pieces: [Range<Int>], _ type: MPI_Datatype?, _ kind: CollectiveKind) throws {
        for i in 1..<size {
            let q = (rank + size - i) % size
            let r = pieces[q]
            if !r.isEmpty { try receive(buffer + r.lowerBound, r.count, type, from: q, kind) }
        }
        let mine = pieces[rank]
        if !mine.isEmpty {
            for i in 1..<size { try send(buffer + mine.lowerBound, mine.count, type, to: (rank + i) % size, kind) }
        }
        try waitAll(kind)
    }

    /// The element ranges of `counts` laid end to end.
    private static func ranges(_ counts: [Int]) -> [Range<Int>] {
        var at = 0
        return counts.map { c in defer { at += c }; return at ..< at + c }
    }

    private func evenPieces(_ n: Int) -> [Range<Int>] {
        let split = EvenSplit(count: n, parts: size)
        return (0..<size).map(split.range)
    }

    public func allReduce(_ buffer: UnsafeMutableBufferPointer<Float>) throws {
        let n = buffer.count
        try LocalChecks.fitsMPI(n, .allReduce, rank: rank)
        try open(CallDescriptor(kind: .allReduce, element: .float, count: n))
        count(.allReduce, TrafficModel.allReduce(count: n, size: size, rank: rank, inWidth: 4))
        if size == 1 || n == 0 { return }
        let pieces = evenPieces(n)
        let base = buffer.baseAddress!
        let sources = try exchangePieces(UnsafePointer(base), pieces, zt_float(), .allReduce)
        let mine = pieces[rank]
        if !mine.isEmpty { CanonicalSum.sum(sources, count: mine.count, into: base + mine.lowerBound) }
        try gatherPieces(base, pieces, zt_float(), .allReduce)
    }

    public func allReduce(bfloat16 input: UnsafeBufferPointer<UInt16>, into output: UnsafeMutableBufferPointer<Float>) throws {
        try LocalChecks.allReduce(inputCount: input.count, outputCount: output.count, rank: rank)
        let n = input.count
        try LocalChecks.fitsMPI(n, .allReduce, rank: rank)
        try open(CallDescriptor(kind: .allReduce, element: .bfloat16, count: n))
        count(.allReduce, TrafficModel.allReduce(count: n, size: size, rank: rank, inWidth: 2))
        if n == 0 { return }
        let pieces = evenPieces(n)
        let sources = size == 1 ? [input.baseAddress!] : try exchangePieces(input.baseAddress!, pieces, zt_uint16(), .allReduce)
        let mine = pieces[rank]
        if !mine.isEmpty { CanonicalSum.sum(bfloat16: sources, count: mine.count, into: output.baseAddress! + mine.lowerBound) }
        if size > 1 { try gatherPieces(output.baseAddress!, pieces, zt_float(), .allReduce) }
    }

    public func reduceScatter(_ input: UnsafeBufferPointer<Float>, into output: UnsafeMutableBufferPointer<Float>) throws {
        try LocalChecks.reduceScatter(inputCount: input.count, outputCount: output.count, size: size, rank: rank)
        let d = CallDescriptor(kind: .reduceScatter, element: .float, count: input.count)
        try scatter(input, Array(repeating: output.count, count: size), output, d, zt_float()) { CanonicalSum.sum($0, count: $1, into: $2) }
    }

    public func reduceScatter(bfloat16 input: UnsafeBufferPointer<UInt16>, into output: UnsafeMutableBufferPointer<Float>) throws {
        try LocalChecks.reduceScatter(inputCount: input.count, outputCount: output.count, size: size, rank: rank)
        let d = CallDescriptor(kind: .reduceScatter, element: .bfloat16, count: input.count)
        try scatter(input, Array(repeating: output.count, count: size), output, d, zt_uint16()) { CanonicalSum.sum(bfloat16: $0, count: $1, into: $2) }
    }

    public func reduceScatter(_ input: UnsafeBufferPointer<Float>, counts: [Int], into output: UnsafeMutableBufferPointer<Float>) throws {
        try LocalChecks.uneven(.reduceScatter, counts: counts, local: output.count, whole: input.count, size: size, rank: rank)
        let d = CallDescriptor(kind: .reduceScatter, element: .float, counts: counts)
        try scatter(input, counts, output, d, zt_float()) { CanonicalSum.sum($0, count: $1, into: $2) }
    }

    public func reduceScatter(bfloat16 input: UnsafeBufferPointer<UInt16>, counts: [Int], into output: UnsafeMutableBufferPointer<Float>) throws {
        try LocalChecks.uneven(.reduceScatter, counts: counts, local: output.count, whole: input.count, size: size, rank: rank)
        let d = CallDescriptor(kind: .reduceScatter, element: .bfloat16, counts: counts)
        try scatter(input, counts, output, d, zt_uint16()) { CanonicalSum.sum(bfloat16: $0, count: $1, into: $2) }
    }

    /// Pairwise exchange of every rank's piece (`counts` end to end), then the canonical sum of
    /// this rank's N pieces at the receiver.
    private func scatter<T>(_ input: UnsafeBufferPointer<T>, _ counts: [Int], _ output: UnsafeMutableBufferPointer<Float>, _ d: CallDescriptor,
                            _ type: MPI_Datatype?, _ sum: ([UnsafePointer<T>], Int, UnsafeMutablePointer<Float>) -> Void) throws {
        try LocalChecks.fitsMPI(output.count, .reduceScatter, rank: rank)
        try open(d)
        let c = output.count
        count(.reduceScatter, TrafficModel.reduceScatter(counts: counts, rank: rank, width: d.element.byteWidth))
        if input.count == 0 { return }
        let pieces = Self.ranges(counts)
        let sources = size == 1 ? [input.baseAddress!] : try exchangePieces(input.baseAddress!, pieces, type, .reduceScatter)
        if c > 0 { sum(sources, c, output.baseAddress!) }
    }

    // MARK: data movement

    /// Every rank's input (`counts[q]` elements from rank q) end to end in `output`.
    private func gather<T>(_ input: UnsafeBufferPointer<T>, _ counts: [Int], _ output: UnsafeMutableBufferPointer<T>, _ d: CallDescriptor, _ type: MPI_Datatype?) throws {
        try LocalChecks.fitsMPI(counts.max() ?? 0, .allGather, rank: rank)
        try open(d)
        count(.allGather, TrafficModel.allGather(counts: counts, rank: rank, width: MemoryLayout<T>.stride))
        if output.count == 0 { return }
        let pieces = Self.ranges(counts)
        if !input.isEmpty { (output.baseAddress! + pieces[rank].lowerBound).update(from: input.baseAddress!, count: input.count) }
        if size > 1 { try gatherPieces(output.baseAddress!, pieces, type, .allGather) }
    }

    private func gather<T>(_ input: UnsafeBufferPointer<T>, _ output: UnsafeMutableBufferPointer<T>, _ e: CallDescriptor.Element, _ type: MPI_Datatype?) throws {
        try LocalChecks.allGather(inputCount: input.count, outputCount: output.count, size: size, rank: rank)
        try gather(input, Array(repeating: input.count, count: size), output, CallDescriptor(kind: .allGather, element: e, count: input.count), type)
    }

    private func gather<T>(_ input: UnsafeBufferPointer<T>, _ counts: [Int], _ output: UnsafeMutableBufferPointer<T>, _ e: CallDescriptor.Element, _ type: MPI_Datatype?) throws {
        try LocalChecks.uneven(.allGather, counts: counts, local: input.count, whole: output.count, size: size, rank: rank)
        try gather(input, counts, output, CallDescriptor(kind: .allGather, element: e, counts: counts), type)
    }

    public func allGather(_ input: UnsafeBufferPointer<Float>, into output: UnsafeMutableBufferPointer<Float>) throws {
        try gather(input, output, .float, zt_float())
    }
    public func allGather(_ input: UnsafeBufferPointer<UInt16>, into output: UnsafeMutableBufferPointer<UInt16>) throws {
        try gather(input, output, .uint16, zt_uint16())
    }
    public func allGather(_ input: UnsafeBufferPointer<Double>, into output: UnsafeMutableBufferPointer<Double>) throws {
        try gather(input, output, .double, zt_double())
    }
    public func allGather(_ input: UnsafeBufferPointer<Float>, counts: [Int], into output: UnsafeMutableBufferPointer<Float>) throws {
        try gather(input, counts, output, .float, zt_float())
    }
    public func allGather(_ input: UnsafeBufferPointer<UInt16>, counts: [Int], into output: UnsafeMutableBufferPointer<UInt16>) throws {
        try gather(input, counts, output, .uint16, zt_uint16())
    }
    public func allGather(_ input: UnsafeBufferPointer<Double>, counts: [Int], into output: UnsafeMutableBufferPointer<Double>) throws {
        try gather(input, counts, output, .double, zt_double())
    }

    public func broadcast(_ buffer: UnsafeMutableRawBufferPointer, root: Int) throws {
        try LocalChecks.broadcast(root: root, size: size, rank: rank)
        try LocalChecks.fitsMPI(buffer.count, .broadcast, rank: rank)
        try open(CallDescriptor(kind: .broadcast, element: .byte, count: buffer.count, root: root))
        count(.broadcast, TrafficModel.broadcast(bytes: buffer.count, size: size, rank: rank, root: root))
        if size == 1 || buffer.count == 0 { return }
        if rank == root {
            for i in 1..<size { try send(buffer.baseAddress!, buffer.count, zt_byte(), to: (rank + i) % size, .broadcast) }
        } else {
            try receive(buffer.baseAddress!, buffer.count, zt_byte(), from: root, .broadcast)
        }
        try waitAll(.broadcast)
    }

    /// The descriptor exchange is itself a barrier: no rank leaves before every rank arrived.
    public func barrier() throws {
        try open(CallDescriptor(kind: .barrier, element: .none, count: 0))
        count(.barrier, (0, 0))
    }

    // MARK: Open MPI's own collectives, for `bench comm` only

    /// `MPI_Allreduce(MPI_IN_PLACE, MPI_SUM)`: Open MPI's order, not canonical; no
    /// timeout, no header, not counted in `traffic`. A yardstick, never for training.
    public func vendorAllReduce(_ buffer: UnsafeMutableBufferPointer<Float>) throws {
        try check(MPI_Allreduce(zt_in_place(), buffer.baseAddress, Int32(buffer.count), zt_float(), zt_sum(), comm), .allReduce, "MPI_Allreduce")
    }

    /// `MPI_Reduce_scatter_block` with MPI_SUM (yardstick; see `vendorAllReduce`).
    public func vendorReduceScatter(_ input: UnsafeBufferPointer<Float>, into output: UnsafeMutableBufferPointer<Float>) throws {
        try LocalChecks.reduceScatter(inputCount: input.count, outputCount: output.count, size: size, rank: rank)
        try check(MPI_Reduce_scatter_block(input.baseAddress, output.baseAddress, Int32(output.count), zt_float(), zt_sum(), comm), .reduceScatter, "MPI_Reduce_scatter_block")
    }

    /// `MPI_Allgather` (yardstick; see `vendorAllReduce`).
    public func vendorAllGather(_ input: UnsafeBufferPointer<Float>, into output: UnsafeMutableBufferPointer<Float>) throws {
        try LocalChecks.allGather(inputCount: input.count, outputCount: output.count, size: size, rank: rank)
        try check(MPI_Allgather(input.baseAddress, Int32(input.count), zt_float(), output.baseAddress, Int32(input.count), zt_float(), comm), .allGather, "MPI_Allgather")
    }
}
