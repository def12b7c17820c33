import Synchronization

/// What a long-lived buffer holds; the memory report uses the same categories.
public enum MemoryCategory: String, CaseIterable, Sendable, Codable, Comparable {
    /// 16-bit (or fp32 in fp32 mode) working weights the model computes from.
    case weights
    /// fp32 master weights of the owned shard.
    case master
    /// Optimizer moments and other optimizer state.
    case optimizerState = "optimizer_state"
    /// Gradient buffers (full or owned shard).
    case gradients
    /// Forward activations kept for backward, and backward scratch.
    case activations
    /// Send/receive and reduction scratch of the communicator.
    case communication
    /// Stage-3 units gathered for the current forward/backward op.
    case gathered
    /// Everything else (data batches, conversions).
    case scratch

    public static func < (a: Self, b: Self) -> Bool {
        allCases.firstIndex(of: a)! < allCases.firstIndex(of: b)!
    }
}

/// Per-rank byte accounting: every long-lived buffer is allocated through one ledger,
/// so a rank knows its current and peak bytes per category (and in total).
/// Thread-safe; in simulation each rank has its own ledger.
public final class MemoryLedger: Sendable {
    private struct Counts {
        var current: [MemoryCategory: Int] = [:]
        var peak: [MemoryCategory: Int] = [:]
        var currentTotal = 0
        var peakTotal = 0
    }
    private let counts = Mutex(Counts())

    public init() {}

    public func allocated(_ bytes: Int, _ category: MemoryCategory) {
        counts.withLock { c in
            let now = c.current[category, default: 0] + bytes
            c.current[category] = now
            c.peak[category] = max(c.peak[category, default: 0], now)
            c.currentTotal += bytes
            c.peakTotal = max(c.peakTotal, c.currentTotal)
        }
    }

    public func freed(_ bytes: Int, _ category: MemoryCategory) {
        counts.withLock { c in
            c.current[category, default: 0] -= bytes
            c.currentTotal -= bytes
        }
    }

    public func current(_ category: MemoryCategory) -> Int { counts.withLock { $0.current[category, default: 0] } }
    public func peak(_ category: MemoryCategory) -> Int { counts.withLock { $0.peak[category, default: 0] } }
    public var currentTotal: Int { counts.withLock { $0.currentTotal } }
    public var peakTotal: Int { counts.withLock { $0.peakTotal } }
    public var peakByCategory: [MemoryCategory: Int] { counts.withLock { $0.peak } }
}

/// An owned, zero-initialized, contiguous buffer tagged with a memory category.
/// The unsafe pointer is for kernels; the buffer frees itself and tells the ledger.
/// Sendable because the pointer and count never change; writers must not race (one owner thread, or disjoint ranges).
public final class FlatBuffer<Element: BitwiseCopyable>: @unchecked Sendable {
    public let pointer: UnsafeMutableBufferPointer<Element>
    public let category: MemoryCategory
    private let ledger: MemoryLedger?

    public init(count: Int, category: MemoryCategory, ledger: MemoryLedger?) {
        precondition(count >= 0, "negative buffer size")
        let raw = UnsafeMutableRawPointer.allocate(
            byteCount: max(1, count * MemoryLayout<Element>.stride), alignment: 64)
        raw.initializeMemory(as: UInt8.self, repeating: 0, count: max(1, count * MemoryLayout<Element>.stride))
        pointer = UnsafeMutableBufferPointer(start: raw.bindMemory(to: Element.self, capacity: count), count: count)
        self.category = category
        self.ledger = ledger
        ledger?.allocated(byteCount, category)
    }

    deinit {
        ledger?.freed(byteCount, category)
        UnsafeMutableRawPointer(pointer.baseAddress!).deallocate()
    }

    public var count: Int { pointer.count }
    public var byteCount: Int { pointer.count * MemoryLayout<Element>.stride }
    public var readOnly: UnsafeBufferPointer<Element> { UnsafeBufferPointer(pointer) }

    public subscript(i: Int) -> Element {
        get { pointer[i] }
        set { pointer[i] = newValue }
    }

    /// A view of `range` (no copy).
    public func slice(_ range: Range<Int>) -> UnsafeMutableBufferPointer<Element> {
        UnsafeMutableBufferPointer(rebasing: pointer[range])
    }

    public func fill(_ value: Element) {
        pointer.update(repeating: value)
    }
}
