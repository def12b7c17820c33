/// What one rank says it is calling: compared across ranks before any payload moves,
/// so that ranks disagreeing on the collective, its element type, its count or its
/// root get a clear error on every rank instead of a hang or silent corruption
/// (docs/determinism.md, "Cross-rank agreement"; DeepSpeed issue 7998 is that hang).
struct CallDescriptor: Equatable, Sendable, CustomStringConvertible {
    enum Element: Int64, Sendable {
        case none = 0, float = 1, bfloat16 = 2, uint16 = 3, double = 4, byte = 5
        var name: String {
            switch self {
            case .none: "none"
            case .float: "fp32"
            case .bfloat16: "bf16"
            case .uint16: "u16"
            case .double: "f64"
            case .byte: "bytes"
            }
        }
        var byteWidth: Int {
            switch self {
            case .none: 0
            case .float: 4
            case .bfloat16, .uint16: 2
            case .double: 8
            case .byte: 1
            }
        }
    }

    var kind: CollectiveKind
    var element: Element
    /// The local input element count (the buffer count for in-place calls).
    var count: Int
    var root: Int = -1
    /// Index of this call in the communicator's sequence of collectives.
    var sequence: Int = 0
    /// Uneven collectives: a digest of the per-rank counts (0 for even calls), so ranks
    /// that cut the buffer differently disagree before any payload moves.
    var layout: Int64 = 0

    var description: String {
        var s = "\(kind.rawValue)(\(element.name), count \(count)"
        if kind == .broadcast { s += ", root \(root)" }
        if layout != 0 { s += ", per-rank counts #" + String(UInt64(bitPattern: layout) >> 40, radix: 16) }
        return s + ") as collective #\(sequence)"
    }

    static let wireCount = 6
    var wire: [Int64] {
        [Int64(CallDescriptor.kindCode(kind)), element.rawValue, Int64(count), Int64(root), Int64(sequence), layout]
    }
    init(kind: CollectiveKind, element: Element, count: Int, root: Int = -1, sequence: Int = 0) {
        self.kind = kind
        self.element = element
        self.count = count
        self.root = root
        self.sequence = sequence
    }
    /// An uneven collective over `counts` (its count is their sum, the same on every rank).
    init(kind: CollectiveKind, element: Element, counts: [Int]) {
        self.init(kind: kind, element: element, count: counts.reduce(0, +))
        var h: UInt64 = 0xcbf2_9ce4_8422_2325  // FNV-1a over the counts
        for c in counts {
            h = (h ^ UInt64(truncatingIfNeeded: c)) &* 0x100_0000_01b3
        }
        layout = Int64(bitPattern: h | 1)
    }
    init?(wire w: UnsafePointer<Int64>) {
        guard let k = CallDescriptor.kind(code: Int(w[0])), let e = Element(rawValue: w[1]) else { return nil }
        self.init(kind: k, element: e, count: Int(w[2]), root: Int(w[3]), sequence: Int(w[4]))
        layout = w[5]
    }
    static func kindCode(_ k: CollectiveKind) -> Int { CollectiveKind.allCases.firstIndex(of: k)! + 1 }
    static func kind(code: Int) -> CollectiveKind? {
        code >= 1 && code <= CollectiveKind.allCases.count ? CollectiveKind.allCases[code - 1] : nil
    }

    /// Nil when every rank agrees, else one line naming who called what.
    static func mismatch(_ all: [CallDescriptor], seenBy rank: Int) -> String? {
        guard let first = all.first, all.contains(where: { $0 != first }) else { return nil }
        let groups = Dictionary(grouping: all.indices, by: { all[$0].description })
        let parts = groups.sorted { $0.value[0] < $1.value[0] }.map { "rank(s) \(rangeList($0.value)) called \($0.key)" }
        return "rank \(rank): ranks disagree on the collective: " + parts.joined(separator: "; ")
    }
}

/// "0-3,5": compact rank lists for error messages.
func rangeList(_ ranks: [Int]) -> String {
    var parts: [String] = []
    var i = 0
    let r = ranks.sorted()
    while i < r.count {
        var j = i
        while j + 1 < r.count && r[j + 1] == r[j] + 1 { j += 1 }
        parts.append(j > i ? "\(r[i])-\(r[j])" : "\(r[i])")
        i = j + 1
    }
    return parts.joined(separator: ",")
}

/// Wire bytes of each collective, identical for both backends (docs/determinism.md,
/// "Traffic"). Payload only: the per-call control header is not counted.
enum TrafficModel {
    /// reduceScatter / allGather pairwise exchange: (N-1) chunks out, (N-1) chunks in.
    static func exchange(chunkBytes: Int, size: Int) -> (sent: Int, received: Int) {
        ((size - 1) * chunkBytes, (size - 1) * chunkBytes)
    }
    /// allReduce = reduce-scatter of N near-equal pieces at `inWidth` bytes per element,
    /// then all-gather of the reduced fp32 pieces.
    static func allReduce(count: Int, size: Int, rank: Int, inWidth: Int) -> (sent: Int, received: Int) {
        let p = EvenSplit(count: count, parts: size)
        let mine = p.range(rank).count
        let others = count - mine
        let sent = others * inWidth + (size - 1) * mine * 4
        let received = (size - 1) * mine * inWidth + others * 4
        return (sent, received)
    }
    /// Uneven reduce-scatter: every other rank's elements out, own count in from N-1 peers.
    static func reduceScatter(counts: [Int], rank: Int, width: Int) -> (sent: Int, received: Int) {
        let total = counts.reduce(0, +), mine = counts[rank]
        return ((total - mine) * width, (counts.count - 1) * mine * width)
    }
    /// Uneven all-gather: own count out to N-1 peers, every other rank's elements in.
    static func allGather(counts: [Int], rank: Int, width: Int) -> (sent: Int, received: Int) {
        let (s, r) = reduceScatter(counts: counts, rank: rank, width: width)
        return (r, s)
    }
    /// Linear broadcast: the root sends the buffer to each other rank.
    static func broadcast(bytes: Int, size: Int, rank: Int, root: Int) -> (sent: Int, received: Int) {
        rank == root ? ((size - 1) * bytes, 0) : (0, bytes)
    }
}

extension TrafficCounters {
    mutating func add(_ kind: CollectiveKind, _ t: (sent: Int, received: Int)) {
        sent[kind, default: 0] += t.sent
        received[kind, default: 0] += t.received
    }
}
