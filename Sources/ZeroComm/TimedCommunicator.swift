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
    public init() {}

    /// The time spent between `earlier` and `self`.
    public func since(_ earlier: CommTiming) -> CommTiming {
        var d = CommTiming()
        d.inFlightSeconds = inFlightSeconds - earlier.inFlightSeconds
        d.waitSeconds = waitSeconds - earlier.waitSeconds
        d.calls = calls - earlier.calls
        return d
    }
}

/// A `Communicator` that forwards every call to `base` and times it: the one place
/// where communication time is measured (per-step metrics read `timing` deltas).
///
/// Every collective of both backends is blocking: it returns when its data has arrived,
/// so the whole call is both in flight and waited for, and `inFlightSeconds ==
/// waitSeconds`. The time includes waiting for slower peers to arrive (load imbalance),
/// as a network profile would. Results, errors and traffic are `base`'s, unchanged.
/// Like every communicator, use it from its rank's one thread.
public final class TimedCommunicator: Communicator, @unchecked Sendable {
    public let base: any Communicator
    public private(set) var timing = CommTiming()

    public init(_ base: any Communicator) { self.base = base }

    public var rank: Int { base.rank }
    public var size: Int { base.size }
    public var backendName: String { base.backendName }
    public var traffic: TrafficCounters { base.traffic }

    /// Runs one blocking collective and adds its duration to both clocks.
    private func timed<T>(_ call: () throws -> T) rethrows -> T {
        let start = ContinuousClock.now
        defer {
            let seconds = (ContinuousClock.now - start).seconds
            timing.inFlightSeconds += seconds
            timing.waitSeconds += seconds
            timing.calls += 1
        }
        return try call()
    }

    public func allReduce(_ buffer: UnsafeMutableBufferPointer<Float>) throws {
        try timed { try base.allReduce(buffer) }
    }
    public func allReduce(bfloat16 input: UnsafeBufferPointer<UInt16>, into output: UnsafeMutableBufferPointer<Float>) throws {
        try timed { try base.allReduce(bfloat16: input, into: output) }
    }
    public func reduceScatter(_ input: UnsafeBufferPointer<Float>, into output: UnsafeMutableBufferPointer<Float>) throws {
        try timed { try base.reduceScatter(input, into: output) }
    }
    public func reduceScatter(bfloat16 input: UnsafeBufferPointer<UInt16>, into output: UnsafeMutableBufferPointer<Float>) throws {
        try timed { try base.reduceScatter(bfloat16: input, into: output) }
    }
    public func allGather(_ input: UnsafeBufferPointer<Float>, into output: UnsafeMutableBufferPointer<Float>) throws {
        try timed { try base.allGather(input, into: output) }
    }
    public func allGather(_ input: UnsafeBufferPointer<UInt16>, into output: UnsafeMutableBufferPointer<UInt16>) throws {
        try timed { try base.allGather(input, into: output) }
    }
    public func allGather(_ input: UnsafeBufferPointer<Double>, into output: UnsafeMutableBufferPointer<Double>) throws {
        try timed { try base.allGather(input, into: output) }
    }
    public func reduceScatter(_ input: UnsafeBufferPointer<Float>, counts: [Int], into output: UnsafeMutableBufferPointer<Float>) throws {
        try timed { try base.reduceScatter(input, counts: counts, into: output) }
    }
    public func reduceScatter(bfloat16 input: UnsafeBufferPointer<UInt16>, counts: [Int], into output: UnsafeMutableBufferPointer<Float>) throws {
        try timed { try base.reduceScatter(bfloat16: input, counts: counts, into: output) }
    }
    public func allGather(_ input: UnsafeBufferPointer<Float>, counts: [Int], into output: UnsafeMutableBufferPointer<Float>) throws {
        try timed { try base.allGather(input, counts: counts, into: output) }
    }
    public func allGather(_ input: UnsafeBufferPointer<UInt16>, counts: [Int], into output: UnsafeMutableBufferPointer<UInt16>) throws {
        try timed { try base.allGather(input, counts: counts, into: output) }
    }
    public func allGather(_ input: UnsafeBufferPointer<Double>, counts: [Int], into output: UnsafeMutableBufferPointer<Double>) throws {
        try timed { try base.allGather(input, counts: counts, into: output) }
    }
    public func broadcast(_ buffer: UnsafeMutableRawBufferPointer, root: Int) throws {
        try timed { try base.broadcast(buffer, root: root) }
    }
    public func barrier() throws {
        try timed { try base.barrier() }
    }

    public func attach(ledger: MemoryLedger) { base.attach(ledger: ledger) }
    public func abort(_ message: String) -> Never { base.abort(message) }
}
