import Foundation

/// Reading feature rows and labels from files (`--data` of the classify and contrastive tasks):
/// - `DIR`: `DIR/features.npy` and `DIR/labels.npy`;
/// - `NAME.npy`: the features, with the labels in `NAME.labels.npy` next to it;
/// - `NAME.csv`: one row per line, features then the label in the last column, comma-separated;
///   a first line that is not all numbers is a header and skipped.
/// Features .npy: float32 or float64, shape [n, F] (C order). Labels .npy: any integer dtype
/// of 1, 2, 4 or 8 bytes, shape [n]; labels are class indices 0..<K.
extension FeatureDataset {
    public init(spec: String) throws {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: spec, isDirectory: &isDirectory) else {
            throw TokenDatasetError("\(spec): no such file or directory")
        }
        if isDirectory.boolValue {
            let dir = URL(fileURLWithPath: spec)
            try self.init(features: dir.appendingPathComponent("features.npy"), labels: dir.appendingPathComponent("labels.npy"), source: spec)
        } else if spec.hasSuffix(".npy") {
            let labels = String(spec.dropLast(4)) + ".labels.npy"
            try self.init(features: URL(fileURLWithPath: spec), labels: URL(fileURLWithPath: labels), source: spec)
        } else if spec.hasSuffix(".csv") {
            try self.init(csv: URL(fileURLWithPath: spec))
        } else {
            throw TokenDatasetError("\(spec): feature data must be a directory (features.npy + labels.npy), a .npy file (+ NAME.labels.npy) or a .csv file")
        }
    }

    init(features: URL, labels: URL, source: String) throws {
        let x = try NumpyArray(contentsOf: features), y = try NumpyArray(contentsOf: labels)
        guard x.shape.count == 2, x.kind == "f" else {
            throw TokenDatasetError("\(features.path): features must be a float array of shape [n, F], not \(x.descr) \(x.shape)")
        }
        guard y.shape.count == 1, y.kind == "i" || y.kind == "u" else {
            throw TokenDatasetError("\(labels.path): labels must be an integer array of shape [n], not \(y.descr) \(y.shape)")
        }
        guard x.shape[0] == y.shape[0] else {
            throw TokenDatasetError("\(source): \(x.shape[0]) feature rows but \(y.shape[0]) labels")
        }
        let labelValues = y.integers()
        guard labelValues.allSatisfy({ $0 >= 0 && $0 < Int64(Int32.max) }) else {
            throw TokenDatasetError("\(labels.path): labels must be class indices 0, 1, 2, ...")
        }
        try self.init(features: x.floats(), labels: labelValues.map { Int32($0) }, featureCount: x.shape[1], source: source)
    }

    init(csv url: URL) throws {
        let text: String
        do { text = try String(contentsOf: url, encoding: .utf8) } catch {
            throw TokenDatasetError("\(url.path): cannot read (\(error.localizedDescription))")
        }
        var features: [Float] = [], labels: [Int32] = [], width: Int? = nil
        for (i, line) in text.split(whereSeparator: \.isNewline).enumerated() {
            let fields = line.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }
            if fields.allSatisfy({ $0.isEmpty }) { continue }
            let numbers = fields.map { Double($0) }
            if i == 0 && numbers.contains(where: { $0 == nil }) { continue }   // a header
            guard fields.count >= 2, numbers.allSatisfy({ $0 != nil }) else {
                throw TokenDatasetError("\(url.lastPathComponent) line \(i + 1): need numbers: features, then the label")
            }
            guard width == nil || width == fields.count - 1 else {
                throw TokenDatasetError("\(url.lastPathComponent) line \(i + 1): \(fields.count - 1) features, earlier lines have \(width!)")
            }
            width = fields.count - 1
            guard let label = Int32(exactly: numbers.last!!), label >= 0 else {
                throw TokenDatasetError("\(url.lastPathComponent) line \(i + 1): label '\(fields.last!)' is not a class index 0, 1, 2, ...")
            }
            features.append(contentsOf: numbers.dropLast().map { Float($0!) })
            labels.append(label)
        }
        guard let width else { throw TokenDatasetError("\(url.path): no rows") }
        try self.init(features: features, labels: labels, featureCount: width, source: url.lastPathComponent)
    }
}

/// A .npy array (format versions 1-3, little-endian, C order): its header and raw bytes.
struct NumpyArray {
    let descr: String
    let shape: [Int]
    let body: Data
    /// "f" float, "i" signed, "u" unsigned integer.
    var kind: String { String(descr.dropFirst().prefix(1)) }
    var itemSize: Int { Int(descr.dropFirst(2)) ?? 0 }

    init(contentsOf url: URL) throws {
        let name = url.lastPathComponent
        guard let data = FileManager.default.contents(atPath: url.path) else { throw TokenDatasetError("\(url.path): no such file") }
        guard data.count >= 10, data.prefix(6) == Data([0x93]) + Data("NUMPY".utf8) else {
            throw TokenDatasetError("\(name): not a .npy file (bad magic)")
        }
        let major = data[data.startIndex + 6]
        let lengthBytes = major == 1 ? 2 : 4
        var headerLength = 0
        for k in 0..<lengthBytes { headerLength |= Int(data[data.startIndex + 8 + k]) << (8 * k) }
        let start = 8 + lengthBytes + headerLength
        guard data.count >= start, let header = String(data: data[(8 + lengthBytes) ..< start], encoding: .utf8) else {
            throw TokenDatasetError("\(name): truncated .npy header")
        }
        func field(_ key: String) -> Substring? {
            guard let r = header.range(of: "'\(key)':") else { return nil }
            return header[r.upperBound...].drop { $0 == " " }
        }
        guard let d = field("descr"), d.first == "'", let end = d.dropFirst().firstIndex(of: "'") else {
            throw TokenDatasetError("\(name): .npy header has no dtype")
        }
        descr = String(d[d.index(after: d.startIndex) ..< end])
        guard let fortran = field("fortran_order"), fortran.hasPrefix("False") else {
            throw TokenDatasetError("\(name): only C-order .npy arrays are read")
        }
        guard let s = field("shape"), s.first == "(", let close = s.firstIndex(of: ")") else {
            throw TokenDatasetError("\(name): .npy header has no shape")
        }
        shape = s[s.index(after: s.startIndex) ..< close].split(separator: ",").compactMap { Int($0.trimmingCharacters(in: .whitespaces)) }
        guard ["<", "|"].contains(descr.first), ["f4", "f8", "i1", "i2", "i4", "i8", "u1", "u2", "u4", "u8"].contains(String(descr.dropFirst())) else {
            throw TokenDatasetError("\(name): dtype \(descr) is not read (little-endian float32/64 or integers)")
        }
        let bytes = shape.reduce(1, *) * Int(descr.dropFirst(2))!
        guard data.count - start == bytes else {
            throw TokenDatasetError("\(name): shape \(shape) of \(descr) needs \(bytes) bytes, the file holds \(data.count - start)")
        }
        body = data.subdata(in: (data.startIndex + start) ..< data.endIndex)
    }

    func floats() -> [Float] {
        body.withUnsafeBytes { raw in
            let n = body.count / itemSize
            return itemSize == 4 ? (0..<n).map { raw.loadUnaligned(fromByteOffset: 4 * $0, as: Float.self) }
                : (0..<n).map { Float(raw.loadUnaligned(fromByteOffset: 8 * $0, as: Double.self)) }
        }
    }

    func integers() -> [Int64] {
        body.withUnsafeBytes { raw in
            (0 ..< body.count / itemSize).map { i -> Int64 in
                let o = i * itemSize
                switch (kind, itemSize) {
                case ("i", 1): return Int64(raw.loadUnaligned(fromByteOffset: o, as: Int8.self))
                case ("i", 2): return Int64(Int16(littleEndian: raw.loadUnaligned(fromByteOffset: o, as: Int16.self)))
                case ("i", 4): return Int64(Int32(littleEndian: raw.loadUnaligned(fromByteOffset: o, as: Int32.self)))
                case ("i", _): return Int64(littleEndian: raw.loadUnaligned(fromByteOffset: o, as: Int64.self))
                case (_, 1): return Int64(raw.loadUnaligned(fromByteOffset: o, as: UInt8.self))
                case (_, 2): return Int64(UInt16(littleEndian: raw.loadUnaligned(fromByteOffset: o, as: UInt16.self)))
                case (_, 4): return Int64(UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: o, as: UInt32.self)))
                default: return Int64(truncatingIfNeeded: UInt64(littleEndian: raw.loadUnaligned(fromByteOffset: o, as: UInt64.self)))
                }
            }
        }
    }
}
