import Foundation
import ZeroTensor

/// A token stream to draw training windows from: a text file read as bytes (vocab 256),
/// an llm.c token shard, or the embedded default corpus.
///
/// Windows are placed by `(seed, step, micro-batch, row)` alone, so the same global
/// micro-batch g reads the same tokens whatever the rank count.
public struct TokenDataset: Sendable {
    /// llm.c shard header: 256 int32, [0] = magic, [1] = version, [2] = token count.
    public static let shardMagic: Int32 = 20240520
    public static let shardVersion: Int32 = 1

    public let tokens: [UInt16]
    public let vocabularySize: Int
    /// Where the tokens came from (for messages and logs).
    public let source: String

    public var count: Int { tokens.count }

    /// Tokens already in memory; every id must be below `vocabularySize`.
    public init(tokens: [UInt16], vocabularySize: Int, source: String = "tokens") throws {
        guard vocabularySize >= 1 && vocabularySize <= 65536 else {
            throw TokenDatasetError("\(source): vocabulary size \(vocabularySize) is outside 1...65536")
        }
        if let i = tokens.firstIndex(where: { Int($0) >= vocabularySize }) {
            throw TokenDatasetError("\(source): token id \(tokens[i]) at position \(i) is not below the vocabulary size \(vocabularySize)")
        }
        self.tokens = tokens
        self.vocabularySize = vocabularySize
        self.source = source
    }

    /// Reads an llm.c shard (detected by its magic number) or any other file as bytes.
    /// A ".bin" file must be a valid shard.
    public init(contentsOf url: URL, vocabularySize: Int) throws {
        let name = url.lastPathComponent
        guard FileManager.default.fileExists(atPath: url.path) else {
            throw TokenDatasetError("\(url.path): no such file")
        }
        let data: Data
        do { data = try Data(contentsOf: url) } catch {
            throw TokenDatasetError("\(url.path): cannot read (\(error.localizedDescription))")
        }
        let magic: Int32? = data.count >= 4 ? TokenDataset.int32(data, 0) : nil
        if magic == TokenDataset.shardMagic {
            guard data.count >= 1024 else { throw TokenDatasetError("\(name): llm.c shard header is truncated (\(data.count) bytes)") }
            let version = TokenDataset.int32(data, 1)
            guard version == TokenDataset.shardVersion else {
                throw TokenDatasetError("\(name): llm.c shard version \(version), expected \(TokenDataset.shardVersion)")
            }
            let n = Int(TokenDataset.int32(data, 2))
            guard n >= 0, data.count == 1024 + 2 * n else {
                throw TokenDatasetError("\(name): header says \(n) tokens but the file holds \((data.count - 1024) / 2)")
            }
            let tokens = data.withUnsafeBytes { raw in
                (0..<n).map { UInt16(littleEndian: raw.loadUnaligned(fromByteOffset: 1024 + 2 * $0, as: UInt16.self)) }
            }
            try self.init(tokens: tokens, vocabularySize: vocabularySize, source: name)
        } else if url.pathExtension == "bin" {
            throw TokenDatasetError("\(name): bad magic \(magic.map(String.init) ?? "(file too short)"), expected llm.c shard magic \(TokenDataset.shardMagic)")
        } else {
            try self.init(tokens: data.map { UInt16($0) }, vocabularySize: vocabularySize, source: name)
        }
    }

    /// The embedded default corpus (Genesis and Exodus, KJV; see Corpus/README.md), as bytes.
    public static func embedded() throws -> TokenDataset {
        guard let url = Bundle.module.url(forResource: "kjv-genesis-exodus", withExtension: "txt", subdirectory: "Corpus") else {
            throw TokenDatasetError("embedded corpus is missing from the ZeroModels bundle")
        }
        return try TokenDataset(contentsOf: url, vocabularySize: 256)
    }

    /// Throws unless the stream holds at least one window of `sequenceLength` + 1 tokens.
    public func validate(sequenceLength: Int) throws {
        guard count >= sequenceLength + 1 else {
            throw TokenDatasetError("\(source): \(count) tokens, fewer than one sequence of \(sequenceLength) plus its next-token target")
        }
    }

    /// Start of row b's window for (seed, step, micro-batch g): uniform over 0...(count - T - 1).
    public func windowStart(step: Int, microBatch g: Int, row b: Int, seed: UInt64, sequenceLength: Int) -> Int {
        let positions = UInt64(count - sequenceLength)
        var rng = SeededGenerator(seed: seed, keys: [UInt64(truncatingIfNeeded: step), UInt64(truncatingIfNeeded: g), UInt64(truncatingIfNeeded: b)])
        return Int(rng.next() % positions)
    }

    /// Fills B rows of T tokens and their next-token targets for global micro-batch g of `step`.
    public func fill(step: Int, microBatch g: Int, seed: UInt64, batchSize: Int, sequenceLength: Int,
                     tokens: UnsafeMutableBufferPointer<Int32>, targets: UnsafeMutableBufferPointer<Int32>) {
        let T = sequenceLength
        precondition(count >= T + 1, "\(source): \(count) tokens, fewer than one sequence of \(T) + 1")
        precondition(tokens.count >= batchSize * T && targets.count >= batchSize * T, "batch buffers too small")
        for b in 0..<batchSize {
            let start = windowStart(step: step, microBatch: g, row: b, seed: seed, sequenceLength: T)
            for t in 0..<T {
                tokens[b * T + t] = Int32(self.tokens[start + t])
                targets[b * T + t] = Int32(self.tokens[start + t + 1])
            }
        }
    }

    private static func int32(_ data: Data, _ index: Int) -> Int32 {
        data.withUnsafeBytes { Int32(littleEndian: $0.loadUnaligned(fromByteOffset: 4 * index, as: Int32.self)) }
    }

    /// Writes tokens as an llm.c shard (magic, version 1, count; uint16 tokens).
    public static func writeShard(_ tokens: [UInt16], to url: URL) throws {
        var header = [Int32](repeating: 0, count: 256)
        header[0] = shardMagic; header[1] = shardVersion; header[2] = Int32(tokens.count)
        var data = Data()
        header.withUnsafeBytes { data.append(contentsOf: $0) }
        tokens.withUnsafeBytes { data.append(contentsOf: $0) }
        do { try data.write(to: url, options: .atomic) } catch {
            throw TokenDatasetError("\(url.path): cannot write (\(error.localizedDescription))")
        }
    }
}

/// A data problem, described in one line.
public struct TokenDatasetError: Error, CustomStringConvertible, Sendable {
    public let description: String
    public init(_ description: String) { self.description = description }
}
