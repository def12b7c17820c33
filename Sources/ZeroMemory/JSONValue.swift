import ZeroTensor

/// A small JSON value with ordered object keys, so reports print in a stable, readable order.
public indirect enum JSONValue: Sendable, Equatable {
    case int(Int)
    case double(Double)
    case string(String)
    case bool(Bool)
    case null
    case array([JSONValue])
    case object([(String, JSONValue)])

    /// A byte count that may be fractional (the paper's real-valued formulas): an integer
    /// when it is whole, a number otherwise.
    public static func bytes(_ value: Double) -> JSONValue {
        if let whole = Int(exactly: value) { return .int(whole) }
        return .double(value)
    }

    /// Compact JSON text (one line).
    public var rendered: String {
        switch self {
        case .int(let v): return String(v)
        case .double(let v): return v.isFinite ? "\(v)" : "null"
        case .string(let s): return jsonQuoted(s)
        case .bool(let b): return b ? "true" : "false"
        case .null: return "null"
        case .array(let items): return "[" + items.map(\.rendered).joined(separator: ",") + "]"
        case .object(let pairs): return "{" + pairs.map { jsonQuoted($0.0) + ":" + $0.1.rendered }.joined(separator: ",") + "}"
        }
    }

    public static func == (a: JSONValue, b: JSONValue) -> Bool { a.rendered == b.rendered }
}
