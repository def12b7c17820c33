import ZeroTensor

/// Sums the per-accumulation-step reduced gradients of one unit shard in the
/// canonical order (docs/determinism.md): a binary counter of partial sums, where
/// two partials of the same level are added older + newer and carried up, and the
/// leftovers are folded from the lowest level up (older on the left). Together with
/// the communicator's tree over ranks this is the balanced tree over
/// g = accumulationStep * ranks + rank, split at the largest power of two.
public final class GradientAccumulator {
    private var levels: [FlatBuffer<Float>?]
    private var spare: [FlatBuffer<Float>] = []
    private let count: Int
    private let ledger: MemoryLedger?

    /// `accumulationSteps` bounds the levels kept: floor(log2(A)) + 1.
    public init(count: Int, accumulationSteps: Int, ledger: MemoryLedger?) {
        self.count = count
        self.ledger = ledger
        var n = 1
        var a = accumulationSteps
        while a > 1 { a >>= 1; n += 1 }
        levels = Array(repeating: nil, count: n)
        // Allocate every level up front so peak memory is reached at once and measured honestly.
        spare = (0..<n).map { _ in FlatBuffer<Float>(count: count, category: .gradients, ledger: ledger) }
    }

    /// A buffer to reduce the next accumulation step's sum into.
    public func nextInput() -> FlatBuffer<Float> {
        if let b = spare.popLast() { return b }
        return FlatBuffer<Float>(count: count, category: .gradients, ledger: ledger)
    }

    /// Adds a reduced step sum (obtained from `nextInput`) to the counter.
    public func push(_ sum: FlatBuffer<Float>) {
        let carry = sum
        var level = 0
        while level < levels.count, let older = levels[level] {
            add(older, into: carry)
            spare.append(older)
            levels[level] = nil
            level += 1
        }
        if level == levels.count { levels.append(nil) }
        levels[level] = carry
    }

    /// Folds the leftover partials (lowest level first, older on the left) and
    /// returns the total; the counter is empty afterwards.
    public func finish() -> FlatBuffer<Float> {
        var total: FlatBuffer<Float>? = nil
        for level in levels.indices {
            guard let partial = levels[level] else { continue }
            levels[level] = nil
            if let t = total {
                add(partial, into: t)
                spare.append(partial)
            } else {
                total = partial
            }
        }
        return total!
    }

    /// Returns a buffer from `finish` once its contents are used.
    public func recycle(_ buffer: FlatBuffer<Float>) { spare.append(buffer) }

    /// into[i] = older[i] + into[i]
    private func add(_ older: FlatBuffer<Float>, into newer: FlatBuffer<Float>) {
        let o = older.pointer, n = newer.pointer
        for i in 0..<count { n[i] = o[i] + n[i] }
    }
}
