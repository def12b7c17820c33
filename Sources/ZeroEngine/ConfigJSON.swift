import Foundation

/// A config file's JSON, decoded so that numbers and Booleans stay apart (JSONSerialization
/// on Linux hands back NSNumber for both, and 0 or 1 then reads as a Boolean).
public indirect enum ConfigJSON: Decodable, Equatable, Sendable {
    case null
    case bool(Bool)
    case int(Int)
    /// An integer above Int.max (a seed).
    case unsigned(UInt64)
    case double(Double)
    case string(String)
    case array([ConfigJSON])
    case object([String: ConfigJSON])

    public init(from decoder: any Decoder) throws {
        let c = try decoder.singleValueContainer()
        if c.decodeNil() { self = .null }
        else if let b = try? c.decode(Bool.self) { self = .bool(b) }
        else if let n = try? c.decode(Int.self) { self = .int(n) }
        else if let n = try? c.decode(UInt64.self) { self = .unsigned(n) }
        else if let d = try? c.decode(Double.self) { self = .double(d) }
        else if let s = try? c.decode(String.self) { self = .string(s) }
        else if let a = try? c.decode([ConfigJSON].self) { self = .array(a) }
        else { self = .object(try c.decode([String: ConfigJSON].self)) }
    }

    /// Parses JSON text; nil when it is not JSON.
    public static func parse(_ data: Data) -> ConfigJSON? { try? JSONDecoder().decode(ConfigJSON.self, from: data) }

    /// Compact JSON text, for error lines.
    public var text: String {
        switch self {
        case .null: return "null"
        case .bool(let b): return b ? "true" : "false"
        case .int(let n): return String(n)
        case .unsigned(let n): return String(n)
        case .double(let d): return "\(d)"
        case .string(let s): return "\"\(s)\""
        case .array(let a): return "[" + a.map(\.text).joined(separator: ", ") + "]"
        case .object(let o): return "{" + o.keys.sorted().map { "\"\($0)\": \(o[$0]!.text)" }.joined(separator: ", ") + "}"
        }
    }

    /// The JSON type's name, for "must be ..., not an object" lines.
    public var typeName: String {
        switch self {
        case .null: return "null"
        case .bool: return "a Boolean"
        case .int, .unsigned, .double: return "a number"
        case .string: return "a string"
        case .array: return "an array"
        case .object: return "an object"
        }
    }

    public var objectValue: [String: ConfigJSON]? {
        if case .object(let o) = self { return o }
        return nil
    }
}
