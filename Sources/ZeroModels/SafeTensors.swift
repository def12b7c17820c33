import Foundation
import ZeroTensor

/// A small safetensors reader and writer (F32, BF16, F16).
///
/// File: 8-byte little-endian header length n, n bytes of JSON mapping tensor names to
/// {dtype, shape, data_offsets: [begin, end]} (relative to the data start) plus an
/// optional "__metadata__" of string pairs, then the raw little-endian data. The reader
/// checks everything it relies on: header size limit, well-formed JSON, supported
/// dtypes, byte counts that match shapes, and data ranges that tile the data section
/// exactly (contiguous, no gaps or overlaps, inside the file).
public struct SafeTensors: Sendable {
    public enum DType: String, Sendable, CaseIterable {
        case f32 = "F32", bf16 = "BF16", f16 = "F16"
        /// Raw bytes (checkpoints keep quantized optimizer state this way).
        case u8 = "U8"
        public var byteCount: Int {
            switch self {
            case .f32: 4
            case .bf16, .f16: 2
            case .u8: 1
            }
        }
    }

    public struct Entry: Sendable, Equatable {
        public var name: String
        public var dtype: DType
        public var shape: [Int]
        /// Byte range inside the data section.
        public var range: Range<Int>
        public var count: Int { shape.reduce(1, *) }
    }

    /// Largest header accepted (the format's reference implementation uses 100 MB).
    public static let maximumHeaderBytes = 100_000_000

    public let metadata: [String: String]
    /// Entries in file order (by data offset).
    public let entries: [Entry]
    private let data: Data
    private let dataStart: Int

    public init(contentsOf url: URL) throws {
        let data: Data
        do { data = try Data(contentsOf: url, options: .mappedIfSafe) } catch {
            throw SafeTensorsError("cannot read \(url.path): \(error.localizedDescription)")
        }
        try self.init(data: data, source: url.lastPathComponent)
    }

    public init(data: Data, source: String = "safetensors data") throws {
        func fail(_ message: String) -> SafeTensorsError { SafeTensorsError("\(source): \(message)") }
        guard data.count >= 8 else { throw fail("file is \(data.count) bytes, shorter than the 8-byte header length") }
        var n: UInt64 = 0
        for i in 0..<8 { n |= UInt64(data[data.startIndex + i]) << (8 * UInt64(i)) }
        guard n <= UInt64(SafeTensors.maximumHeaderBytes) else { throw fail("header length \(n) exceeds the \(SafeTensors.maximumHeaderBytes)-byte limit") }
        guard 8 + Int(n) <= data.count else { throw fail("header length \(n) runs past the end of the \(data.count)-byte file") }
        let headerBytes = data.subdata(in: (data.startIndex + 8)..<(data.startIndex + 8 + Int(n)))
        let json: Any
        do { json = try JSONSerialization.jsonObject(with: headerBytes) } catch {
            throw fail("header is not well-formed JSON")
        }
        guard let object = json as? [String: Any] else { throw fail("header JSON is not an object") }
        var metadata: [String: String] = [:]
        var entries: [Entry] = []
        for (name, value) in object {
            if name == "__metadata__" {
                guard let m = value as? [String: Any] else { throw fail("__metadata__ is not an object") }
                for (k, v) in m {
                    guard let s = v as? String else { throw fail("__metadata__ value for \"\(k)\" is not a string") }
                    metadata[k] = s
                }
                continue
            }
            guard let info = value as? [String: Any] else { throw fail("entry \"\(name)\" is not an object") }
            guard let dtypeName = info["dtype"] as? String else { throw fail("entry \"\(name)\" has no dtype") }
            guard let dtype = DType(rawValue: dtypeName) else { throw fail("entry \"\(name)\" has unsupported dtype \(dtypeName) (F32, BF16, F16, U8 only)") }
            guard let shapeAny = info["shape"] as? [Any], let shape = SafeTensors.integers(shapeAny), shape.allSatisfy({ $0 >= 0 }) else {
                throw fail("entry \"\(name)\" has a malformed shape")
            }
            guard let offAny = info["data_offsets"] as? [Any], let off = SafeTensors.integers(offAny), off.count == 2, off[0] >= 0, off[0] <= off[1] else {
                throw fail("entry \"\(name)\" has malformed data_offsets")
            }
            // The byte count of the shape, nil when it overflows (a lying header: [2^40, 2^40]).
            let bytes = shape.contains(0) ? 0 : shape.reduce(Optional(dtype.byteCount)) { b, d in
                guard let b else { return nil }
                let (p, overflow) = b.multipliedReportingOverflow(by: d)
                return overflow ? nil : p
            }
            guard let bytes else {
                throw fail("entry \"\(name)\" has shape \(shape), far larger than any file (its byte count overflows)")
            }
            let count = bytes / dtype.byteCount
            guard off[1] - off[0] == count * dtype.byteCount else {
                throw fail("entry \"\(name)\" has \(off[1] - off[0]) bytes, but shape \(shape) of \(dtypeName) needs \(count * dtype.byteCount)")
            }
            entries.append(Entry(name: name, dtype: dtype, shape: shape, range: off[0]..<off[1]))
        }
        entries.sort { ($0.range.lowerBound, $0.range.upperBound, $0.name) < ($1.range.lowerBound, $1.range.upperBound, $1.name) }
        var expected = 0
        for e in entries {
            guard e.range.lowerBound == expected else {
                throw fail("entry \"\(e.name)\" starts at byte \(e.range.lowerBound), expected \(expected) (data must be contiguous, no gaps or overlaps)")
            }
            expected = e.range.upperBound
        }
        let dataSize = data.count - 8 - Int(n)
        guard expected == dataSize else {
            throw fail("tensors cover \(expected) data bytes but the file holds \(dataSize)")
        }
        self.metadata = metadata
        self.entries = entries
        self.data = data
        self.dataStart = 8 + Int(n)
    }

    private static func integers(_ list: [Any]) -> [Int]? {
        var out: [Int] = []
        for v in list {
            guard let n = v as? NSNumber, Double(n.intValue) == n.doubleValue else { return nil }
            out.append(n.intValue)
        }
        return out
    }

    public func entry(named name: String) -> Entry? { entries.first { $0.name == name } }

    /// The tensor `name` converted to Float; checks the shape if `expectedShape` is given.
    public func floats(_ name: String, expectedShape: [Int]? = nil) throws -> [Float] {
        guard let e = entry(named: name) else { throw SafeTensorsError("tensor \"\(name)\" is missing") }
        if let expectedShape, expectedShape != e.shape {
            throw SafeTensorsError("tensor \"\(name)\" has shape \(e.shape), expected \(expectedShape)")
        }
        var out = [Float](repeating: 0, count: e.count)
        out.withUnsafeMutableBufferPointer { dst in read(e, into: dst) }
        return out
    }

    /// Converts entry `e` into `dst` (dst.count == e.count).
    public func read(_ e: Entry, into dst: UnsafeMutableBufferPointer<Float>) {
        precondition(dst.count == e.count, "destination size differs from tensor \(e.name)")
        data.withUnsafeBytes { raw in
            let src = UnsafeRawBufferPointer(rebasing: raw[(dataStart + e.range.lowerBound)..<(dataStart + e.range.upperBound)])
            switch e.dtype {
            case .f32:
                for i in 0..<e.count { dst[i] = Float(bitPattern: UInt32(littleEndian: src.loadUnaligned(fromByteOffset: 4 * i, as: UInt32.self))) }
            case .bf16:
                for i in 0..<e.count { dst[i] = Float(bitPattern: UInt32(UInt16(littleEndian: src.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self))) << 16) }
            case .f16:
                for i in 0..<e.count { dst[i] = SafeTensors.halfToFloat(UInt16(littleEndian: src.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self))) }
            case .u8:
                for i in 0..<e.count { dst[i] = Float(src[i]) }
            }
        }
    }

    /// The raw little-endian bytes of tensor `name`, whatever its dtype.
    public func bytes(_ name: String) throws -> Data {
        guard let e = entry(named: name) else { throw SafeTensorsError("tensor \"\(name)\" is missing") }
        return data.subdata(in: (data.startIndex + dataStart + e.range.lowerBound)..<(data.startIndex + dataStart + e.range.upperBound))
    }

    /// IEEE binary16 to Float (exact).
    static func halfToFloat(_ h: UInt16) -> Float {
        let sign: Float = h & 0x8000 != 0 ? -1 : 1
        let exp = Int((h >> 10) & 0x1F), frac = Int(h & 0x3FF)
        if exp == 0 { return sign * Float(frac) * 0x1p-24 }
        if exp == 31 { return frac == 0 ? sign * .infinity : .nan }
        return sign * Float(sign: .plus, exponent: exp - 15, significand: 1 + Float(frac) * 0x1p-10)
    }

    /// Float to IEEE binary16, round to nearest even.
    static func floatToHalf(_ f: Float) -> UInt16 {
        #if arch(x86_64) || arch(arm64)
        return Float16(f).bitPattern
        #else
        fatalError("F16 writing needs Float16")
        #endif
    }

    /// One tensor to write: values are converted to `dtype` (bf16 rounds to nearest even),
    /// or raw bytes written as U8.
    public struct Tensor {
        public var name: String
        public var shape: [Int]
        public var dtype: DType
        public var values: UnsafeBufferPointer<Float>
        public var rawBytes: Data?
        public init(name: String, shape: [Int], dtype: DType, values: UnsafeBufferPointer<Float>) {
            self.name = name; self.shape = shape; self.dtype = dtype; self.values = values
        }
        public init(name: String, rawBytes: Data) {
            self.name = name; self.shape = [rawBytes.count]; self.dtype = .u8; self.values = UnsafeBufferPointer(start: nil, count: 0)
            self.rawBytes = rawBytes
        }
        var elementCount: Int { rawBytes?.count ?? values.count }
    }

    /// Serializes tensors (in the given order) and metadata; the header is padded with
    /// spaces to a multiple of 8 bytes so the data section stays aligned.
    public static func serialize(_ tensors: [Tensor], metadata: [String: String] = [:]) -> Data {
        var header = "{"
        var parts: [String] = []
        if !metadata.isEmpty {
            let m = metadata.keys.sorted().map { "\(jsonQuoted($0)):\(jsonQuoted(metadata[$0]!))" }.joined(separator: ",")
            parts.append("\"__metadata__\":{\(m)}")
        }
        var offset = 0
        for t in tensors {
            precondition(t.elementCount == t.shape.reduce(1, *), "tensor \(t.name): \(t.elementCount) values for shape \(t.shape)")
            let bytes = t.elementCount * t.dtype.byteCount
            parts.append("\(jsonQuoted(t.name)):{\"dtype\":\"\(t.dtype.rawValue)\",\"shape\":[\(t.shape.map(String.init).joined(separator: ","))],\"data_offsets\":[\(offset),\(offset + bytes)]}")
            offset += bytes
        }
        header += parts.joined(separator: ",") + "}"
        var headerBytes = Array(header.utf8)
        while headerBytes.count % 8 != 0 { headerBytes.append(0x20) }
        var out = Data(capacity: 8 + headerBytes.count + offset)
        var n = UInt64(headerBytes.count).littleEndian
        withUnsafeBytes(of: &n) { out.append(contentsOf: $0) }
        out.append(contentsOf: headerBytes)
        for t in tensors {
            switch t.dtype {
            case .f32:
                var bits = t.values.map { $0.bitPattern.littleEndian }
                bits.withUnsafeMutableBytes { out.append(contentsOf: $0) }
            case .bf16:
                var bits = [UInt16](repeating: 0, count: t.values.count)
                bits.withUnsafeMutableBufferPointer { BFloat16.round(t.values, into: $0) }
                bits.withUnsafeMutableBytes { out.append(contentsOf: $0) }
            case .f16:
                var bits = t.values.map { floatToHalf($0).littleEndian }
                bits.withUnsafeMutableBytes { out.append(contentsOf: $0) }
            case .u8:
                if let raw = t.rawBytes { out.append(raw) } else { out.append(contentsOf: t.values.map { UInt8(clamping: Int($0)) }) }
            }
        }
        return out
    }

    /// Writes to a temporary name next to `url`, fsyncs, then renames over `url`,
    /// so a crash never leaves a half-written file under the final name.
    public static func write(_ tensors: [Tensor], metadata: [String: String] = [:], to url: URL) throws {
        try writeAtomically(serialize(tensors, metadata: metadata), to: url)
    }

    /// Writes `data` through a temporary file, fsync and rename, then fsyncs the directory,
    /// so a crash leaves either the old file or the whole new one under `url`.
    public static func writeAtomically(_ data: Data, to url: URL) throws {
        let tmp = url.deletingLastPathComponent().appendingPathComponent(".\(url.lastPathComponent).tmp-\(getpid())")
        guard FileManager.default.createFile(atPath: tmp.path, contents: nil) else {
            throw SafeTensorsError("cannot create \(tmp.path)")
        }
        do {
            let handle = try FileHandle(forWritingTo: tmp)
            try handle.write(contentsOf: data)
            try handle.synchronize()
            try handle.close()
        } catch {
            try? FileManager.default.removeItem(at: tmp)
            throw SafeTensorsError("cannot write \(tmp.path): \(error.localizedDescription)")
        }
        guard rename(tmp.path, url.path) == 0 else {
            let cause = String(cString: strerror(errno))
            try? FileManager.default.removeItem(at: tmp)
            throw SafeTensorsError("cannot rename \(tmp.path) to \(url.path): \(cause)")
        }
        let dir = open(url.deletingLastPathComponent().path, O_RDONLY)
        if dir >= 0 { fsync(dir); close(dir) }
    }
}

/// A safetensors problem, described in one line.
public struct SafeTensorsError: Error, CustomStringConvertible, Sendable {
    public let description: String
    public init(_ description: String) { self.description = description }
}
