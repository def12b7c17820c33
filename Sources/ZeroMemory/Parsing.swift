import Foundation
import ZeroModels


/// Parsing of the human inputs the memory command takes, with one-line errors.
public enum MemoryInput {
    /// A parameter count: "7.5e9", "7500000000", "7.5B", "124M", "1T", "350k".
    /// Suffixes are decimal (k 1e3, M 1e6, B or G 1e9, T 1e12). Must be a whole count >= 1
    /// and at most 1e15.
    public static func parameterCount(_ text: String) throws -> Int {
        let trimmed = text.trimmingCharacters(in: .whitespaces)
        let multipliers: [Character: Double] = ["k": 1e3, "K": 1e3, "M": 1e6, "B": 1e9, "G": 1e9, "T": 1e12]
        var number = Substring(trimmed), multiplier = 1.0
        if let last = trimmed.last, let m = multipliers[last] { number = number.dropLast(); multiplier = m }
        guard !number.isEmpty, number.allSatisfy({ "0123456789.eE+-".contains($0) }),
              let value = Double(number), value.isFinite
        else {
            throw MemoryModelError("cannot read parameter count '\(text)' (examples: 7.5e9, 7.5B, 124M, 1T)")
        }
        let count = value * multiplier
        guard count >= 1 else { throw MemoryModelError("parameter count must be at least 1 (got '\(text)')") }
        guard count <= 1e15 else { throw MemoryModelError("parameter count '\(text)' is above the supported 1e15") }
        let whole = count.rounded()
        guard abs(whole - count) <= 1e-9 * count else {
            throw MemoryModelError("parameter count must be a whole number (got '\(text)' = \(count))")
        }
        return Int(whole)
    }

    /// A byte size: "16GiB" (2^30), "16GB" (1e9), also KiB/MiB/TiB, KB/MB/TB, B, or a plain
    /// byte count. A bare "16G" is refused: say GiB or GB.
    public static func byteSize(_ text: String) throws -> Int {
        let trimmed = text.trimmingCharacters(in: .whitespaces)
        let units: [(String, Double)] = [
            ("KiB", 1024), ("MiB", 1048576), ("GiB", 1073741824), ("TiB", 1099511627776),
            ("KB", 1e3), ("kB", 1e3), ("MB", 1e6), ("GB", 1e9), ("TB", 1e12), ("B", 1),
        ]
        var number = Substring(trimmed), scale = 1.0
        for (suffix, s) in units where trimmed.hasSuffix(suffix) {
            number = number.dropLast(suffix.count); scale = s; break
        }
        number = Substring(number.trimmingCharacters(in: .whitespaces))
        guard !number.isEmpty, number.allSatisfy({ "0123456789.eE+".contains($0) }),
              let value = Double(number), value.isFinite, value > 0
        else {
            throw MemoryModelError("cannot read memory size '\(text)' (examples: 16GiB, 24GB, 512MiB; GiB = 2^30 bytes, GB = 1e9)")
        }
        return Int((value * scale).rounded())
    }

    /// MemTotal of this machine from /proc/meminfo, in bytes; nil when unavailable.
    public static func machineMemoryBytes(meminfo path: String = "/proc/meminfo") -> Int? {
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else { return nil }
        return kibibyteField("MemTotal:", in: text)
    }

    /// Peak resident set size of this process (VmHWM in /proc/self/status), in bytes.
    public static func peakResidentBytes(status path: String = "/proc/self/status") -> Int? {
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else { return nil }
        return kibibyteField("VmHWM:", in: text)
    }

    /// "Name:   1234 kB" (the kernel's kB are KiB) as bytes.
    static func kibibyteField(_ name: String, in text: String) -> Int? {
        for line in text.split(separator: "\n") where line.hasPrefix(name) {
            let fields = line.split(separator: " ", omittingEmptySubsequences: true)
            if fields.count >= 2, let kib = Int(fields[1]) { return kib * 1024 }
        }
        return nil
    }

    /// A preset GPT by name, or an error listing the names.
    public static func model(named name: String) throws -> GPTConfig {
        guard let config = GPTConfig.named(name) else {
            let names = GPTConfig.presets.map(\.name).joined(separator: ", ")
            throw MemoryModelError("unknown model '\(name)' (known: \(names))")
        }
        return config
    }
}
