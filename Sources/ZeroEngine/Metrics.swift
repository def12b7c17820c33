import Foundation
import ZeroComm
import ZeroTensor

/// Peak resident set size of this process (VmHWM), in bytes; 0 when unknown.
public func peakResidentBytes() -> Int {
    guard let status = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8) else { return 0 }
    for line in status.split(separator: "\n") where line.hasPrefix("VmHWM:") {
        let kb = line.split(separator: " ").dropFirst().first.flatMap { Int($0) } ?? 0
        return kb * 1024
    }
    return 0
}

/// A JSON number that parses back to the same value (Swift prints the shortest
/// round-tripping form); null for non-finite values, which JSON cannot hold.
func jsonNumber(_ x: Double) -> String { x.isFinite ? "\(x)" : "null" }
func jsonNumber(_ x: Float) -> String { x.isFinite ? "\(x)" : "null" }

/// Appends one JSON object per line to a metrics file (rank 0 only).
final class MetricsWriter {
    private let handle: FileHandle

    /// `append`: keep the file's records (a resumed run), else start it empty.
    init(path: String, append: Bool = false) throws {
        let exists = FileManager.default.fileExists(atPath: path)
        guard (append && exists) || FileManager.default.createFile(atPath: path, contents: nil),
              let h = FileHandle(forWritingAtPath: path) else {
            throw TrainingError("cannot write metrics file \(path)")
        }
        if append { _ = try? h.seekToEnd() }
        handle = h
    }

    func write(_ fields: [(String, String)]) {
        let body = fields.map { "\"\($0.0)\": \($0.1)" }.joined(separator: ", ")
        handle.write(Data(("{" + body + "}\n").utf8))
    }

    deinit { try? handle.close() }
}

func jsonObject(_ dict: [String: Int]) -> String {
    "{" + dict.sorted { $0.key < $1.key }.map { "\(jsonQuoted($0.key)): \($0.value)" }.joined(separator: ", ") + "}"
}

/// Human-readable byte count in binary units.
public func formatBytes(_ bytes: Int) -> String {
    let b = Double(bytes)
    if b >= Double(1 << 30) { return String(format: "%.2f GiB", b / Double(1 << 30)) }
    if b >= Double(1 << 20) { return String(format: "%.1f MiB", b / Double(1 << 20)) }
    if b >= 1024 { return String(format: "%.1f KiB", b / 1024) }
    return "\(bytes) B"
}
