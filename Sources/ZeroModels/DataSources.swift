import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// `--data` and `--val-data` name a file, a directory or a glob of llm.c token shards (or of
/// text files). The files are read in sorted path order as one stream, so the stream, and with
/// it every window the sampler places, depends only on the files' contents and names.
extension TokenDataset {
    /// What a data file holds, read from its first 1 KiB.
    public enum FileKind: Sendable, Equatable { case shard, text }

    /// The files `spec` names, sorted: the file itself; a directory's regular, non-hidden files;
    /// or a glob's matches (`*`, `?`, `[...]`). Throws one line when nothing matches.
    public static func files(for spec: String) throws -> [URL] {
        let fm = FileManager.default
        var isDirectory: ObjCBool = false
        if fm.fileExists(atPath: spec, isDirectory: &isDirectory) {
            guard isDirectory.boolValue else { return [URL(fileURLWithPath: spec)] }
            let names: [String]
            do { names = try fm.contentsOfDirectory(atPath: spec) } catch {
                throw TokenDatasetError("\(spec): cannot list the directory (\(error.localizedDescription))")
            }
            let files = names.filter { !$0.hasPrefix(".") }.sorted().map { URL(fileURLWithPath: spec).appendingPathComponent($0) }
                .filter { isRegularFile($0.path) }
            guard !files.isEmpty else { throw TokenDatasetError("\(spec): the directory holds no data files") }
            return files
        }
        guard spec.contains(where: { "*?[".contains($0) }) else { throw TokenDatasetError("\(spec): no such file") }
        var matches = glob(spec).filter { isRegularFile($0) }
        guard !matches.isEmpty else { throw TokenDatasetError("\(spec): no file matches this pattern") }
        matches.sort { Array($0.utf8).lexicographicallyPrecedes(Array($1.utf8)) }
        return matches.map { URL(fileURLWithPath: $0) }
    }

    /// Checks every file of `spec` from its header alone (no full read): readable, a valid
    /// llm.c shard or a text file, all of one kind. Returns the kind and the file count.
    @discardableResult
    public static func inspect(_ spec: String) throws -> (kind: FileKind, files: [URL]) {
        let files = try files(for: spec)
        var kinds: [(URL, FileKind)] = []
        for url in files {
            guard let handle = FileHandle(forReadingAtPath: url.path) else {
                throw TokenDatasetError("\(url.path): cannot read (permission denied or not a file)")
            }
            defer { try? handle.close() }
            let head = (try? handle.read(upToCount: 1024)) ?? Data()
            let size = (try? FileManager.default.attributesOfItem(atPath: url.path)[.size] as? Int) ?? head.count
            let kind = try classify(head, size: size, name: url.path, isBin: url.pathExtension == "bin")
            kinds.append((url, kind))
            if let (first, firstKind) = kinds.first, firstKind != kind {
                let shard = firstKind == .shard ? first : url, text = firstKind == .shard ? url : first
                throw TokenDatasetError("\(spec) mixes llm.c token shards (\(shard.lastPathComponent)) and text files (\(text.lastPathComponent)); use files of one kind")
            }
        }
        return (kinds[0].1, files)
    }

    /// The stream of every file `spec` names, in sorted order (shards: their tokens; text: bytes).
    public init(spec: String, vocabularySize: Int) throws {
        let (kind, files) = try TokenDataset.inspect(spec)
        if files.count == 1 && files[0].path == spec {
            try self.init(contentsOf: files[0], vocabularySize: vocabularySize)
            return
        }
        var tokens: [UInt16] = []
        for url in files {
            let part = try TokenDataset(contentsOf: url, vocabularySize: kind == .text ? 256 : 65536)
            tokens.append(contentsOf: part.tokens)
        }
        try self.init(tokens: tokens, vocabularySize: vocabularySize,
                      source: "\(spec) (\(files.count) file\(files.count == 1 ? "" : "s"))")
    }

    /// Splits the stream: the last `fraction` of its tokens (rounded down) is validation data,
    /// the rest training data. Both must hold at least one window of `sequenceLength` + 1.
    public func split(validationFraction fraction: Double, sequenceLength: Int) throws -> (train: TokenDataset, validation: TokenDataset) {
        let held = Int((Double(count) * fraction).rounded(.down))
        let percent = String(format: "%g%%", fraction * 100)
        let train = try TokenDataset(tokens: Array(tokens[0 ..< count - held]), vocabularySize: vocabularySize,
                                     source: "\(source) (first \(String(format: "%g%%", 100 - fraction * 100)))")
        let validation = try TokenDataset(tokens: Array(tokens[(count - held)...]), vocabularySize: vocabularySize,
                                          source: "\(source) (last \(percent), --val-fraction)")
        try train.validate(sequenceLength: sequenceLength)
        try validation.validate(sequenceLength: sequenceLength)
        return (train, validation)
    }

    /// A shard by its magic number, else text; a ".bin" file must be a valid shard.
    static func classify(_ head: Data, size: Int, name: String, isBin: Bool) throws -> FileKind {
        let magic: Int32? = head.count >= 4 ? head.withUnsafeBytes { Int32(littleEndian: $0.loadUnaligned(as: Int32.self)) } : nil
        guard magic == shardMagic else {
            if isBin {
                throw TokenDatasetError("\(name): bad magic \(magic.map(String.init) ?? "(file too short)"), expected llm.c shard magic \(shardMagic)")
            }
            return .text
        }
        guard head.count >= 1024 else { throw TokenDatasetError("\(name): llm.c shard header is truncated (\(size) bytes)") }
        let field = { (i: Int) in head.withUnsafeBytes { Int32(littleEndian: $0.loadUnaligned(fromByteOffset: 4 * i, as: Int32.self)) } }
        guard field(1) == shardVersion else { throw TokenDatasetError("\(name): llm.c shard version \(field(1)), expected \(shardVersion)") }
        let n = Int(field(2))
        guard n >= 0, size == 1024 + 2 * n else {
            throw TokenDatasetError("\(name): header says \(n) tokens but the file holds \((size - 1024) / 2)")
        }
        return .shard
    }

    /// A regular file (symbolic links followed); FIFOs and devices are left out of directories and globs.
    private static func isRegularFile(_ path: String) -> Bool {
        var info = stat()
        return stat(path, &info) == 0 && (info.st_mode & S_IFMT) == S_IFREG
    }

    /// glob(3)'s matches (unsorted here; the caller sorts by bytes).
    private static func glob(_ pattern: String) -> [String] {
        var g = glob_t()
        defer { globfree(&g) }
        guard Glibc.glob(pattern, 0, nil, &g) == 0 else { return [] }
        return (0 ..< Int(g.gl_pathc)).compactMap { g.gl_pathv[$0].map { String(cString: $0) } }
    }
}
