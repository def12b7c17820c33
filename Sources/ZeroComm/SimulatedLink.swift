import Foundation
import ZeroTensor

/// A simulated rank behind a network link of `bytesPerSecond` each way (`--simulate-link`):
/// each collective of `base` completes, then holds its caller for the bytes this rank
/// sent divided by the rate, as if they had crossed the link.
///
/// The hold is a sleep, so the link costs no CPU: what it measures is the step's schedule
/// alone, the case of a cluster whose network stack runs beside the compute cores. The rig
/// (`launch/local-cluster.sh`) is the real thing, with the kernel's TCP work on the same
/// cores. Simulated collectives finish as soon as the last rank arrives, so the hold starts
/// when the exchange would have. Bits and traffic are `base`'s.
public final class SimulatedLink: Communicator, @unchecked Sendable {
    public let base: any Communicator
    public let bytesPerSecond: Double

    public init(_ base: any Communicator, bytesPerSecond: Double) {
        precondition(bytesPerSecond > 0)
        self.base = base
        self.bytesPerSecond = bytesPerSecond
    }

    public var rank: Int { base.rank }
    public var size: Int { base.size }
    public var backendName: String { base.backendName }
    public var traffic: TrafficCounters { base.traffic }

    private func crossing<T>(_ call: () throws -> T) rethrows -> T {
        let before = base.traffic.totalSent
        let result = try call()
        let seconds = Double(base.traffic.totalSent - before) / bytesPerSecond
        if seconds > 0 { usleep(UInt32(min(seconds, 3600) * 1e6)) }
        return result
    }

    public func allReduce(_ buffer: UnsafeMutableBufferPointer<Float>) throws {
        try crossing { try base.allReduce(buffer) }
    }
    public func allReduce(bfloat16 input: UnsafeBufferPointer<UInt16>, into output: UnsafeMutableBufferPointer<Float>) throws {
        try crossing { try base.allReduce(bfloat16: input, into: output) }
    }
    public func reduceScatter(_ input: UnsafeBufferPointer<Float>, into output: UnsafeMutableBufferPointer<Float>) throws {
        try crossing { try base.reduceScatter(input, into: output) }
    }
    public func reduceScatter(bfloat16 input: UnsafeBufferPointer<UInt16>, into output: UnsafeMutableBufferPointer<Float>) throws {
        try crossing { try base.reduceScatter(bfloat16: input, into: output) }
    }
    public func allGather(_ input: UnsafeBufferPointer<Float>, into output: UnsafeMutableBufferPointer<Float>) throws {
        try crossing { try base.allGather(input, into: output) }
    }
    public func allGather(_ input: UnsafeBufferPointer<UInt16>, into output: UnsafeMutableBufferPointer<UInt16>) throws {
        try crossing { try base.allGather(input, into: output) }
    }
    public func allGather(_ input: UnsafeBufferPointer<Double>, into output: UnsafeMutableBufferPointer<Double>) throws {
        try crossing { try base.allGather(input, into: output) }
    }
    public func reduceScatter(_ input: UnsafeBufferPointer<Float>, counts: [Int], into output: UnsafeMutableBufferPointer<Float>) throws {
        try crossing { try base.reduceScatter(input, counts: counts, into: output) }
    }
    public func reduceScatter(bfloat16 input: UnsafeBufferPointer<UInt16>, counts: [Int], into output: UnsafeMutableBufferPointer<Float>) throws {
        try crossing { try base.reduceScatter(bfloat16: input, counts: counts, into: output) }
    }
    public func allGather(_ input: UnsafeBufferPointer<Float>, counts: [Int], into output: UnsafeMutableBufferPointer<Float>) throws {
        try crossing { try base.allGather(input, counts: counts, into: output) }
    }
    public func allGather(_ input: UnsafeBufferPointer<UInt16>, counts: [Int], into output: UnsafeMutableBufferPointer<UInt16>) throws {
        try crossing { try base.allGather(input, counts: counts, into: output) }
    }
    public func allGather(_ input: UnsafeBufferPointer<Double>, counts: [Int], into output: UnsafeMutableBufferPointer<Double>) throws {
        try crossing { try base.allGather(input, counts: counts, into: output) }
    }
    public func broadcast(_ buffer: UnsafeMutableRawBufferPointer, root: Int) throws {
        try crossing { try base.broadcast(buffer, root: root) }
    }
    public func barrier() throws { try base.barrier() }

    public func attach(ledger: MemoryLedger) { base.attach(ledger: ledger) }
    public func abort(_ message: String) -> Never { base.abort(message) }
}

/// A link rate as `tc` spells it: "10gbit", "1gbit", "200mbit", "500kbit", or bits per
/// second; nil for anything else. Returns bytes per second.
public func parseLinkRate(_ text: String) -> Double? {
    let t = text.lowercased()
    let units: [(String, Double)] = [("tbit", 1e12), ("gbit", 1e9), ("mbit", 1e6), ("kbit", 1e3), ("bit", 1)]
    for (suffix, scale) in units where t.hasSuffix(suffix) {
        guard let n = Double(t.dropLast(suffix.count)), n.isFinite, n > 0 else { return nil }
        return n * scale / 8
    }
    guard let n = Double(t), n.isFinite, n > 0 else { return nil }
    return n / 8
}
