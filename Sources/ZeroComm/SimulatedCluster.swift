import Foundation
import Synchronization
import ZeroTensor

/// N ranks as threads in one process, each with its own `Communicator`.
///
/// The threads are real pthreads with 16 MiB stacks, not Dispatch workers, so 64 ranks
/// that block in a collective never starve each other. Collectives give exactly the
/// bits and traffic counts of `MPICommunicator` (same canonical tree, same pieces).
public enum SimulatedCluster {
    /// Runs `body` on `ranks` threads and returns their results by rank.
    ///
    /// If a rank throws, every rank blocked in (or later entering) a collective is woken
    /// with an error, and the first error thrown is rethrown here once all threads end.
    /// A rank waiting longer than `timeout` in a collective throws a `CommunicatorError`
    /// naming the collective, itself and the ranks that did not arrive.
    public static func run<T: Sendable>(
        ranks: Int,
        timeout: Duration = .seconds(300),
        _ body: @Sendable @escaping (any Communicator) throws -> T
    ) throws -> [T] {
        precondition(ranks >= 1 && ranks <= 4096, "ranks must be in 1...4096")
        let rendezvous = Rendezvous(size: ranks, timeout: timeout)
        let results = Mutex<[T?]>(Array(repeating: nil, count: ranks))
        var threads: [pthread_t] = []
        for r in 0..<ranks {
            let comm = SimulatedCommunicator(rank: r, rendezvous: rendezvous)
            let task = ThreadTask {
                do {
                    let value = try body(comm)
                    results.withLock { $0[r] = value }
                } catch {
                    rendezvous.fail(rank: r, error: error)
                }
            }
            threads.append(try startThread(task))
        }
        for t in threads { pthread_join(t, nil) }
        if let error = rendezvous.firstError { throw error }
        return results.withLock { $0.map { $0! } }
    }

    /// Sendable because `work` is immutable and runs once, on the thread it is handed to.
    private final class ThreadTask: @unchecked Sendable {
        let work: () -> Void
        init(_ work: @escaping () -> Void) { self.work = work }
    }

    private static func startThread(_ task: ThreadTask) throws -> pthread_t {
        var attr = pthread_attr_t()
        pthread_attr_init(&attr)
        defer { pthread_attr_destroy(&attr) }
        pthread_attr_setstacksize(&attr, 16 << 20)
        var thread = pthread_t()
        let context = Unmanaged.passRetained(task).toOpaque()
        let rc = pthread_create(&thread, &attr, { raw in
            let task = Unmanaged<ThreadTask>.fromOpaque(raw!).takeRetainedValue()
            task.work()
            return nil
        }, context)
        if rc != 0 {
            Unmanaged<ThreadTask>.fromOpaque(context).release()
            throw CommunicatorError("could not start a rank thread (pthread_create returned \(rc))")
        }
        return thread
    }
}

/// The meeting point of the simulated ranks: each collective is a few phases, and in
/// each phase every rank posts a descriptor and an address, waits for all ranks, then
/// reads everyone's posts. Posts are double-buffered by generation parity: a rank can
/// be at most one phase ahead of the slowest reader, so it never overwrites a post
/// someone still needs.
/// Sendable because every mutable field is read and written only under `condition`.
final class Rendezvous: @unchecked Sendable {
    struct Post {
        var generation = -1
        var descriptor = CallDescriptor(kind: .barrier, element: .none, count: 0)
        var address: UnsafeMutableRawPointer? = nil
    }

    let size: Int
    let timeout: Duration
    private let condition = NSCondition()
    private var posts: [[Post]]
    private var arrived = [0, 0]
    private var completed = -1
    private var failure: (rank: Int, message: String)?
    private var firstErrorStorage: (any Error)?

    init(size: Int, timeout: Duration) {
        self.size = size
        self.timeout = timeout
        posts = Array(repeating: Array(repeating: Post(), count: size), count: 2)
    }

    var firstError: (any Error)? {
        condition.lock()
        defer { condition.unlock() }
        return firstErrorStorage
    }

    /// Records a rank's failure (the first one wins) and wakes every waiting rank.
    func fail(rank: Int, error: any Error) {
        condition.lock()
        if firstErrorStorage == nil { firstErrorStorage = error }
        if failure == nil { failure = (rank, "\(error)") }
        condition.broadcast()
        condition.unlock()
    }

    /// Posts for phase `generation` and returns every rank's post once all have arrived.
    func arrive(rank: Int, generation: Int, descriptor: CallDescriptor, address: UnsafeMutableRawPointer?) throws -> [Post] {
        condition.lock()
        defer { condition.unlock() }
        if let f = failure { throw woken(rank, descriptor.kind, f) }
        let p = generation & 1
        posts[p][rank] = Post(generation: generation, descriptor: descriptor, address: address)
        arrived[p] += 1
        if arrived[p] == size {
            arrived[p] = 0
            completed = generation
            condition.broadcast()
        } else {
            let deadline = Date(timeIntervalSinceNow: timeout.seconds)
            while completed < generation {
                if let f = failure { throw woken(rank, descriptor.kind, f) }
                if !condition.wait(until: deadline) && completed < generation {
                    if let f = failure { throw woken(rank, descriptor.kind, f) }
                    let missing = (0..<size).filter { posts[p][$0].generation != generation }
                    let message = "rank \(rank): \(descriptor.kind.rawValue) timed out after \(formatSeconds(timeout)) waiting for rank(s) \(rangeList(missing))"
                    let error = CommunicatorError(message)
                    if firstErrorStorage == nil { firstErrorStorage = error }
                    if failure == nil { failure = (rank, message) }
                    condition.broadcast()
                    throw error
                }
            }
        }
        return posts[p]
    }

    private func woken(_ rank: Int, _ kind: CollectiveKind, _ f: (rank: Int, message: String)) -> CommunicatorError {
        CommunicatorError("rank \(rank): \(kind.rawValue) abandoned because rank \(f.rank) failed: \(f.message)")
    }
}

/// "zero-train: rank R: message", without repeating a "rank R: " the message already has.
func abortLine(_ rank: Int, _ message: String) -> String {
    let prefix = "rank \(rank): "
    return "zero-train: " + (message.hasPrefix(prefix) ? message : prefix + message) + "\n"
}

func formatSeconds(_ d: Duration) -> String {
    let s = d.seconds
    return s == s.rounded() ? "\(Int(s))s" : String(format: "%.3gs", s)
}

/// One simulated rank. Collectives must be called from the rank's own thread.
/// Sendable because its mutable state is touched only by that thread; shared state lives in `Rendezvous`.
final class SimulatedCommunicator: Communicator, @unchecked Sendable {
    let rank: Int
    var size: Int { rendezvous.size }
    var backendName: String { "simulated" }
    private let rendezvous: Rendezvous
    private var generation = 0
    private var sequence = 0
    private var scratch: UnsafeMutableBufferPointer<Float> = .init(start: nil, count: 0)
    private let counters = Mutex(TrafficCounters())
    private var ledger: MemoryLedger?

    init(rank: Int, rendezvous: Rendezvous) {
        self.rank = rank
        self.rendezvous = rendezvous
    }
    deinit {
        ledger?.freed(scratch.count * 4, .communication)
        scratch.deallocate()
    }

    var traffic: TrafficCounters { counters.withLock { $0 } }

    func abort(_ message: String) -> Never {
        FileHandle.standardError.write(Data(abortLine(rank, message).utf8))
        exit(1)
    }

    // MARK: phases

    /// The first phase of a collective: everyone posts, then everyone checks that all
    /// ranks called the same thing.
    private func open(_ d: CallDescriptor, _ address: UnsafeMutableRawPointer?) throws -> [UnsafeMutableRawPointer?] {
        var d = d
        d.sequence = sequence
        sequence += 1
        let posts = try phase(d, address)
        if let message = CallDescriptor.mismatch(posts.map(\.descriptor), seenBy: rank) {
            throw CommunicatorError(message)
        }
        return posts.map(\.address)
    }

    @discardableResult
    private func phase(_ d: CallDescriptor, _ address: UnsafeMutableRawPointer?) throws -> [Rendezvous.Post] {
        let g = generation
        generation += 1
        return try rendezvous.arrive(rank: rank, generation: g, descriptor: d, address: address)
    }

    func attach(ledger: MemoryLedger) {
        self.ledger = ledger
        if scratch.count > 0 { ledger.allocated(scratch.count * 4, .communication) }
    }

    /// The reduced piece of an in-place all-reduce (the only buffer simulation needs:
    /// ranks read each other's memory directly).
    private func scratchBuffer(_ count: Int) -> UnsafeMutablePointer<Float> {
        if scratch.count < count {
            ledger?.freed(scratch.count * 4, .communication)
            ledger?.allocated(count * 4, .communication)
            scratch.deallocate()
            scratch = .allocate(capacity: count)
        }
        return scratch.baseAddress!
    }

    private func count(_ kind: CollectiveKind, _ t: (sent: Int, received: Int)) {
        counters.withLock { $0.add(kind, t) }
    }

    // MARK: collectives

    func allReduce(_ buffer: UnsafeMutableBufferPointer<Float>) throws {
        let n = buffer.count
        let d = CallDescriptor(kind: .allReduce, element: .float, count: n)
        let addresses = try open(d, UnsafeMutableRawPointer(buffer.baseAddress))
        let piece = EvenSplit(count: n, parts: size).range(rank)
        let mine = scratchBuffer(max(1, piece.count))
        if !piece.isEmpty {
            let sources = addresses.map { UnsafePointer($0!.assumingMemoryBound(to: Float.self)) + piece.lowerBound }
            CanonicalSum.sum(sources, count: piece.count, into: mine)
        }
        // Everyone has read the inputs; now publish the reduced pieces and gather them.
        let reduced = try phase(d, UnsafeMutableRawPointer(mine)).map(\.address)
        for q in 0..<size {
            let r = EvenSplit(count: n, parts: size).range(q)
            if r.isEmpty { continue }
            let src = reduced[q]!.assumingMemoryBound(to: Float.self)
            (buffer.baseAddress! + r.lowerBound).update(from: src, count: r.count)
        }
        try phase(d, nil)
        count(.allReduce, TrafficModel.allReduce(count: n, size: size, rank: rank, inWidth: 4))
    }

    func allReduce(bfloat16 input: UnsafeBufferPointer<UInt16>, into output: UnsafeMutableBufferPointer<Float>) throws {
        try LocalChecks.allReduce(inputCount: input.count, outputCount: output.count, rank: rank)
        let n = input.count
        let d = CallDescriptor(kind: .allReduce, element: .bfloat16, count: n)
        let addresses = try open(d, UnsafeMutableRawPointer(mutating: input.baseAddress))
        let partition = EvenSplit(count: n, parts: size)
        let piece = partition.range(rank)
        if !piece.isEmpty {
            let sources = addresses.map { UnsafePointer($0!.assumingMemoryBound(to: UInt16.self)) + piece.lowerBound }
            CanonicalSum.sum(bfloat16: sources, count: piece.count, into: output.baseAddress! + piece.lowerBound)
        }
        let outputs = try phase(d, UnsafeMutableRawPointer(output.baseAddress)).map(\.address)
        for q in 0..<size where q != rank {
            let r = partition.range(q)
            if r.isEmpty { continue }
            let src = outputs[q]!.assumingMemoryBound(to: Float.self) + r.lowerBound
            (output.baseAddress! + r.lowerBound).update(from: src, count: r.count)
        }
        try phase(d, nil)
        count(.allReduce, TrafficModel.allReduce(count: n, size: size, rank: rank, inWidth: 2))
    }

    func reduceScatter(_ input: UnsafeBufferPointer<Float>, into output: UnsafeMutableBufferPointer<Float>) throws {
        try LocalChecks.reduceScatter(inputCount: input.count, outputCount: output.count, size: size, rank: rank)
        let d = CallDescriptor(kind: .reduceScatter, element: .float, count: input.count)
        try scatter(input, Array(repeating: output.count, count: size), output, d) { CanonicalSum.sum($0, count: $1, into: $2) }
    }

    func reduceScatter(bfloat16 input: UnsafeBufferPointer<UInt16>, into output: UnsafeMutableBufferPointer<Float>) throws {
        try LocalChecks.reduceScatter(inputCount: input.count, outputCount: output.count, size: size, rank: rank)
        let d = CallDescriptor(kind: .reduceScatter, element: .bfloat16, count: input.count)
        try scatter(input, Array(repeating: output.count, count: size), output, d) { CanonicalSum.sum(bfloat16: $0, count: $1, into: $2) }
    }

    func reduceScatter(_ input: UnsafeBufferPointer<Float>, counts: [Int], into output: UnsafeMutableBufferPointer<Float>) throws {
        try LocalChecks.uneven(.reduceScatter, counts: counts, local: output.count, whole: input.count, size: size, rank: rank)
        let d = CallDescriptor(kind: .reduceScatter, element: .float, counts: counts)
        try scatter(input, counts, output, d) { CanonicalSum.sum($0, count: $1, into: $2) }
    }

    func reduceScatter(bfloat16 input: UnsafeBufferPointer<UInt16>, counts: [Int], into output: UnsafeMutableBufferPointer<Float>) throws {
        try LocalChecks.uneven(.reduceScatter, counts: counts, local: output.count, whole: input.count, size: size, rank: rank)
        let d = CallDescriptor(kind: .reduceScatter, element: .bfloat16, counts: counts)
        try scatter(input, counts, output, d) { CanonicalSum.sum(bfloat16: $0, count: $1, into: $2) }
    }

    /// Rank r sums every rank's elements [offset_r, offset_r + counts[r]) straight from their inputs.
    private func scatter<T>(_ input: UnsafeBufferPointer<T>, _ counts: [Int], _ output: UnsafeMutableBufferPointer<Float>, _ d: CallDescriptor,
                            _ sum: ([UnsafePointer<T>], Int, UnsafeMutablePointer<Float>) -> Void) throws {
        let addresses = try open(d, UnsafeMutableRawPointer(mutating: input.baseAddress))
        let c = counts[rank], offset = counts[..<rank].reduce(0, +)
        if c > 0 {
            sum(addresses.map { UnsafePointer($0!.assumingMemoryBound(to: T.self)) + offset }, c, output.baseAddress!)
        }
        try phase(d, nil)
        count(.reduceScatter, TrafficModel.reduceScatter(counts: counts, rank: rank, width: d.element.byteWidth))
    }

    /// Copies every rank's input to its offset in `output`.
    private func gather<T: BitwiseCopyable>(_ input: UnsafeBufferPointer<T>, _ counts: [Int], _ output: UnsafeMutableBufferPointer<T>, _ d: CallDescriptor) throws {
        let addresses = try open(d, UnsafeMutableRawPointer(mutating: input.baseAddress))
        var offset = 0
        for q in 0..<size {
            if counts[q] > 0 {
                (output.baseAddress! + offset).update(from: addresses[q]!.assumingMemoryBound(to: T.self), count: counts[q])
            }
            offset += counts[q]
        }
        try phase(d, nil)
        count(.allGather, TrafficModel.allGather(counts: counts, rank: rank, width: MemoryLayout<T>.stride))
    }

    private func gather<T: BitwiseCopyable>(_ input: UnsafeBufferPointer<T>, _ output: UnsafeMutableBufferPointer<T>, _ e: CallDescriptor.Element) throws {
        try LocalChecks.allGather(inputCount: input.count, outputCount: output.count, size: size, rank: rank)
        try gather(input, Array(repeating: input.count, count: size), output, CallDescriptor(kind: .allGather, element: e, count: input.count))
    }

    private func gather<T: BitwiseCopyable>(_ input: UnsafeBufferPointer<T>, _ counts: [Int], _ output: UnsafeMutableBufferPointer<T>, _ e: CallDescriptor.Element) throws {
        try LocalChecks.uneven(.allGather, counts: counts, local: input.count, whole: output.count, size: size, rank: rank)
        try gather(input, counts, output, CallDescriptor(kind: .allGather, element: e, counts: counts))
    }

    func allGather(_ input: UnsafeBufferPointer<Float>, into output: UnsafeMutableBufferPointer<Float>) throws {
        try gather(input, output, .float)
    }
    func allGather(_ input: UnsafeBufferPointer<UInt16>, into output: UnsafeMutableBufferPointer<UInt16>) throws {
        try gather(input, output, .uint16)
    }
    func allGather(_ input: UnsafeBufferPointer<Double>, into output: UnsafeMutableBufferPointer<Double>) throws {
        try gather(input, output, .double)
    }
    func allGather(_ input: UnsafeBufferPointer<Float>, counts: [Int], into output: UnsafeMutableBufferPointer<Float>) throws {
        try gather(input, counts, output, .float)
    }
    func allGather(_ input: UnsafeBufferPointer<UInt16>, counts: [Int], into output: UnsafeMutableBufferPointer<UInt16>) throws {
        try gather(input, counts, output, .uint16)
    }
    func allGather(_ input: UnsafeBufferPointer<Double>, counts: [Int], into output: UnsafeMutableBufferPointer<Double>) throws {
        try gather(input, counts, output, .double)
    }

    func broadcast(_ buffer: UnsafeMutableRawBufferPointer, root: Int) throws {
        try LocalChecks.broadcast(root: root, size: size, rank: rank)
        let d = CallDescriptor(kind: .broadcast, element: .byte, count: buffer.count, root: root)
        let addresses = try open(d, buffer.baseAddress)
        if rank != root && buffer.count > 0 {
            buffer.baseAddress!.copyMemory(from: addresses[root]!, byteCount: buffer.count)
        }
        try phase(d, nil)
        count(.broadcast, TrafficModel.broadcast(bytes: buffer.count, size: size, rank: rank, root: root))
    }

    func barrier() throws {
        _ = try open(CallDescriptor(kind: .barrier, element: .none, count: 0), nil)
        count(.barrier, (0, 0))
    }
}
