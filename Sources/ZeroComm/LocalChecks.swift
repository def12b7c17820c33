/// Size checks every backend runs before any data moves: a wrong local size is a
/// programming error on this rank and must not turn into a cross-rank hang.
enum LocalChecks {
    static func reduceScatter(inputCount: Int, outputCount: Int, size: Int, rank: Int) throws {
        if inputCount % size != 0 {
            throw CommunicatorError("rank \(rank): reduce_scatter: input count \(inputCount) is not divisible by \(size) ranks")
        }
        if inputCount != size * outputCount {
            throw CommunicatorError("rank \(rank): reduce_scatter: input count \(inputCount) != \(size) ranks x output count \(outputCount)")
        }
    }

    static func allGather(inputCount: Int, outputCount: Int, size: Int, rank: Int) throws {
        if outputCount != size * inputCount {
            throw CommunicatorError("rank \(rank): all_gather: output count \(outputCount) != \(size) ranks x input count \(inputCount)")
        }
    }

    static func allReduce(inputCount: Int, outputCount: Int, rank: Int) throws {
        if inputCount != outputCount {
            throw CommunicatorError("rank \(rank): all_reduce: input count \(inputCount) != output count \(outputCount)")
        }
    }

    static func broadcast(root: Int, size: Int, rank: Int) throws {
        if root < 0 || root >= size {
            throw CommunicatorError("rank \(rank): broadcast: root \(root) is out of range 0..<\(size)")
        }
    }

    /// Per-rank counts of an uneven collective: one per rank, none negative, and this
    /// rank's local buffer holding its own count and the other the sum.
    static func uneven(_ kind: CollectiveKind, counts: [Int], local: Int, whole: Int, size: Int, rank: Int) throws {
        guard counts.count == size, counts.allSatisfy({ $0 >= 0 }) else {
            throw CommunicatorError("rank \(rank): \(kind.rawValue): \(counts.count) per-rank counts for \(size) ranks (one per rank, none negative)")
        }
        let total = counts.reduce(0, +)
        if local != counts[rank] || whole != total {
            throw CommunicatorError("rank \(rank): \(kind.rawValue): buffers of \(local) and \(whole) elements for own count \(counts[rank]) of \(total)")
        }
    }

    /// MPI counts are 32-bit.
    static func fitsMPI(_ count: Int, _ what: CollectiveKind, rank: Int) throws {
        if count > Int(Int32.max) {
            throw CommunicatorError("rank \(rank): \(what.rawValue): \(count) elements in one message exceeds MPI's 32-bit count; split the buffer")
        }
    }
}
