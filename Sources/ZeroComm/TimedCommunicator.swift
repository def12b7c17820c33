import Foundation
import ZeroTensor

/// Wall-clock time a rank spent in communication, cumulative since the wrapper was made.
public struct CommTiming: Sendable, Equatable {
    /// Time during which at least one of this rank's collectives was in flight (issued
    /// and not yet complete), overlapped with compute or not.
    public var inFlightSeconds = 0.0
    /// Time this rank was blocked waiting for communication to complete.
    public var waitSeconds = 0.0
    /// Collectives issued.
    public var calls = 0
    /// CPU time of the communication thread (0 without overlap, where collectives run on
    /// the rank's own thread): what overlapping costs the cores compute runs on.
    public var threadCPUSeconds = 0.0
    public init() {}

    /// The time spent between `earlier` and `self`.
    public func since(_ earlier: CommTiming) -> CommTiming {
        var d = CommTiming()
        d.inFlightSeconds = inFlightSeconds - earlier.inFlightSeconds
        d.waitSeconds = waitSeconds - earlier.waitSeconds
        d.calls = calls - earlier.calls
        d.threadCPUSeconds = threadCPUSeconds - earlier.threadCPUSeconds
        return d
    }
}

/// A `Communicator` that forwards every call to `base` and times it: the one place
/// where communication time is measured (per-step metrics read `timing` deltas), and,
/// with `overlap`, the rank's communication thread.
///
/// Without overlap every collective runs on the caller's thread and blocks, so a call is
/// both in flight and waited for (`inFlightSeconds == waitSeconds`). With overlap, one
/// thread per rank runs every collective in issue order, also the blocking ones (issue
/// then wait), so `base` is only ever called from that thread and each rank's call
/// sequence is exactly the one without overlap: same pieces, same canonical sums, same
/// bits. `inFlightSeconds` then counts the union of the intervals from issue to
/// completion, `waitSeconds` only the time the caller blocked in `wait`. Both include
/// waiting for slower peers (load imbalance), as a network profile would. Results,
/// errors and traffic are `base`'s, unchanged.
public final class TimedCommunicator: Communicator, @unchecked Sendable {
    public let base: any Communicator
    /// Whether collectives run on a communication thread (`issue` returns at once).
    public let overlaps: Bool

    private struct Job { let ticket: CommTicket; let run: (any Communicator) throws -> Void }
    /// Guards everything below, and every ticket's fields while the thread runs.
    private let condition = NSCondition()
    private var queue: [Job] = []
    private var head = 0
    private var pending = 0
    private var busySince = ContinuousClock.now
    private var clock = CommTiming()
    private var failure: (any Error)?
    private var closing = false
    private var threadRunning = false

    /// `overlap` starts the communication thread; call `close()` before `base` is finalized.
    public init(_ base: any Communicator, overlap: Bool = false) {
        self.base = base
        overlaps = overlap
        guard overlap else { return }
        (base as? MPICommunicator)?.sleepsWhilePolling = true
        threadRunning = true
        let thread = Thread { [self] in serve() }
        thread.name = "zero-train comm \(base.rank)"
        thread.stackSize = 8 << 20
        thread.start()
    }

    public var timing: CommTiming {
        condition.lock()
        defer { condition.unlock() }
        return clock
    }

    public var rank: Int { base.rank }
    public var size: Int { base.size }
    public var backendName: String { base.backendName }
    public var traffic: TrafficCounters { base.traffic }

    public func issue(_ collective: @escaping (any Communicator) throws -> Void) -> CommTicket {
        guard overlaps else {
            let start = ContinuousClock.now
            var error: (any Error)?
            do { try collective(base) } catch let e { error = e }
            let seconds = (ContinuousClock.now - start).seconds
            clock.inFlightSeconds += seconds
            clock.waitSeconds += seconds
            clock.calls += 1
            return CommTicket(finishedWith: error)
        }
        let ticket = CommTicket()
        condition.lock()
        precondition(!closing, "collective issued after close()")
        if pending == 0 { busySince = .now }
        pending += 1
        clock.calls += 1
        queue.append(Job(ticket: ticket, run: collective))
        condition.broadcast()
        condition.unlock()
        return ticket
    }

    public func wait(_ ticket: CommTicket) throws {
        condition.lock()
        if !ticket.isDone {
            let start = ContinuousClock.now
            while !ticket.isDone { condition.wait() }
            // Up to the completion, not the wake-up: a wait is then always inside an in-flight interval.
            clock.waitSeconds += max(0, (ticket.finishedAt - start).seconds)
        }
        let error = ticket.error
        condition.unlock()
        if let error { throw error }
    }

    /// Stops the communication thread once the collective it is running ends; collectives
    /// still queued are not started (their tickets fail). Idempotent.
    public func close() {
        condition.lock()
        closing = true
        condition.broadcast()
        while threadRunning { condition.wait() }
        condition.unlock()
    }

    /// The communication thread: runs queued collectives in order. After one fails, the
    /// rest fail with the same error without running (the ranks' sequences have diverged).
    private func serve() {
        condition.lock()
        while true {
            while head == queue.count && !closing { condition.wait() }
            if closing { break }
            let job = queue[head]
            head += 1
            if head == queue.count { queue.removeAll(keepingCapacity: true); head = 0 }
            var error = failure
            if error == nil {
                condition.unlock()
                do { try job.run(base) } catch let e { error = e }
                condition.lock()
            }
            clock.threadCPUSeconds = threadCPUTime()
            finish(job.ticket, error)
        }
        for job in queue[head...] { finish(job.ticket, failure ?? CommunicatorError("rank \(rank): collective not started: the communicator was closed")) }
        queue.removeAll()
        head = 0
        threadRunning = false
        condition.broadcast()
        condition.unlock()
    }

    /// CPU seconds the calling thread has used.
    private func threadCPUTime() -> Double {
        var t = timespec()
        clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t)
        return Double(t.tv_sec) + Double(t.tv_nsec) * 1e-9
    }

    /// Completes a ticket (lock held).
    private func finish(_ ticket: CommTicket, _ error: (any Error)?) {
        if let error, failure == nil { failure = error }
        let now = ContinuousClock.now
        ticket.error = error
        ticket.finishedAt = now
        ticket.isDone = true
        pending -= 1
        if pending == 0 { clock.inFlightSeconds += (now - busySince).seconds }
        condition.broadcast()
    }

    /// Runs one collective in place (no overlap) or through the thread, and waits for it.
    private func blocking(_ collective: @escaping (any Communicator) throws -> Void) throws {
        try wait(issue(collective))
    }

    public func allReduce(_ buffer: UnsafeMutableBufferPointer<Float>) throws {
        try blocking { try $0.allReduce(buffer) }
    }
    public func allReduce(bfloat16 input: UnsafeBufferPointer<UInt16>, into output: UnsafeMutableBufferPointer<Float>) throws {
        try blocking { try $0.allReduce(bfloat16: input, into: output) }
    }
    public func reduceScatter(_ input: UnsafeBufferPointer<Float>, into output: UnsafeMutableBufferPointer<Float>) throws {
        try blocking { try $0.reduceScatter(input, into: output) }
    }
    public func reduceScatter(bfloat16 input: UnsafeBufferPointer<UInt16>, into output: UnsafeMutableBufferPointer<Float>) throws {
        try blocking { try $0.reduceScatter(bfloat16: input, into: output) }
    }
    public func allGather(_ input: UnsafeBufferPointer<Float>, into output: UnsafeMutableBufferPointer<Float>) throws {
        try blocking { try $0.allGather(input, into: output) }
    }
    public func allGather(_ input: UnsafeBufferPointer<UInt16>, into output: UnsafeMutableBufferPointer<UInt16>) throws {
        try blocking { try $0.allGather(input, into: output) }
    }
    public func allGather(_ input: UnsafeBufferPointer<Double>, into output: UnsafeMutableBufferPointer<Double>) throws {
        try blocking { try $0.allGather(input, into: output) }
    }
    public func reduceScatter(_ input: UnsafeBufferPointer<Float>, counts: [Int], into output: UnsafeMutableBufferPointer<Float>) throws {
        try blocking { try $0.reduceScatter(input, counts: counts, into: output) }
    }
    public func reduceScatter(bfloat16 input: UnsafeBufferPointer<UInt16>, counts: [Int], into output: UnsafeMutableBufferPointer<Float>) throws {
        try blocking { try $0.reduceScatter(bfloat16: input, counts: counts, into: output) }
    }
    public func allGather(_ input: UnsafeBufferPointer<Float>, counts: [Int], into output: UnsafeMutableBufferPointer<Float>) throws {
        try blocking { try $0.allGather(input, counts: counts, into: output) }
    }
    public func allGather(_ input: UnsafeBufferPointer<UInt16>, counts: [Int], into output: UnsafeMutableBufferPointer<UInt16>) throws {
        try blocking { try $0.allGather(input, counts: counts, into: output) }
    }
    public func allGather(_ input: UnsafeBufferPointer<Double>, counts: [Int], into output: UnsafeMutableBufferPointer<Double>) throws {
        try blocking { try $0.allGather(input, counts: counts, into: output) }
    }
    public func broadcast(_ buffer: UnsafeMutableRawBufferPointer, root: Int) throws {
        try blocking { try $0.broadcast(buffer, root: root) }
    }
    public func barrier() throws {
        try blocking { try $0.barrier() }
    }

    public func attach(ledger: MemoryLedger) { base.attach(ledger: ledger) }
    public func abort(_ message: String) -> Never { base.abort(message) }
}
