import Foundation
import Testing
import ZeroModels

@Suite struct DataTests {
    @Test func embeddedCorpus() throws {
        let data = try TokenDataset.embedded()
        #expect(data.vocabularySize == 256 && data.count > 300_000)
        let start = Array(data.tokens.prefix(16)).map { UInt8($0) }
        #expect(String(decoding: start, as: UTF8.self) == "In the beginning")
    }

    @Test func textAndShardFiles() throws {
        let text = temporaryURL("text.txt")
        try Data("hello world, hello tokens".utf8).write(to: text)
        let bytes = try TokenDataset(contentsOf: text, vocabularySize: 256)
        #expect(bytes.tokens.first == UInt16(UInt8(ascii: "h")) && bytes.count == 25)

        let shard = temporaryURL("shard.bin")
        let tokens: [UInt16] = (0..<100).map { UInt16($0 * 37 % 1000) }
        try TokenDataset.writeShard(tokens, to: shard)
        let loaded = try TokenDataset(contentsOf: shard, vocabularySize: 1000)
        #expect(loaded.tokens == tokens)
    }

    /// Every failure is one clear line naming the problem.
    @Test func errors() throws {
        func message(_ body: () throws -> Void) -> String {
            do { try body(); return "no error" } catch { return "\(error)" }
        }
        let missing = message { _ = try TokenDataset(contentsOf: URL(fileURLWithPath: "/nonexistent/x.txt"), vocabularySize: 256) }
        #expect(missing.contains("no such file"))

        let badMagic = temporaryURL("bad.bin")
        try Data(repeating: 7, count: 2048).write(to: badMagic)
        #expect(message { _ = try TokenDataset(contentsOf: badMagic, vocabularySize: 256) }.contains("bad magic"))

        let badVersion = temporaryURL("v2.bin")
        var header = [Int32](repeating: 0, count: 256)
        header[0] = TokenDataset.shardMagic; header[1] = 2; header[2] = 0
        try header.withUnsafeBytes { try Data($0).write(to: badVersion) }
        #expect(message { _ = try TokenDataset(contentsOf: badVersion, vocabularySize: 256) }.contains("version 2, expected 1"))

        let truncated = temporaryURL("trunc.bin")
        header[1] = 1; header[2] = 50
        try header.withUnsafeBytes { try Data($0).write(to: truncated) }
        #expect(message { _ = try TokenDataset(contentsOf: truncated, vocabularySize: 256) }.contains("header says 50 tokens"))

        let big = temporaryURL("big.bin")
        try TokenDataset.writeShard([1, 2, 300, 4], to: big)
        #expect(message { _ = try TokenDataset(contentsOf: big, vocabularySize: 256) }.contains("token id 300 at position 2"))

        let short = try TokenDataset(tokens: [1, 2, 3], vocabularySize: 256)
        #expect(message { try short.validate(sequenceLength: 3) }.contains("fewer than one sequence of 3"))
        #expect(message { try short.validate(sequenceLength: 2) } == "no error")
        for m in [missing] { #expect(!m.contains("\n")) }
    }

    /// Windows depend only on (seed, step, g, b): the micro-batches a rank reads are the
    /// same whether 1, 2 or 4 ranks share the global batch.
    @Test func positionsIndependentOfRankCount() throws {
        let data = try TokenDataset.embedded()
        let B = 3, T = 16, G = 8, step = 5, seed: UInt64 = 1234
        func batch(_ g: Int) -> ([Int32], [Int32]) {
            var tok = [Int32](repeating: 0, count: B * T), tgt = tok
            tok.withUnsafeMutableBufferPointer { tp in tgt.withUnsafeMutableBufferPointer { gp in
                data.fill(step: step, microBatch: g, seed: seed, batchSize: B, sequenceLength: T, tokens: tp, targets: gp)
            } }
            return (tok, tgt)
        }
        let reference = (0..<G).map(batch)
        for ranks in [1, 2, 4] {
            for rank in 0..<ranks {
                for a in 0..<(G / ranks) {
                    let g = a * ranks + rank
                    let (tok, tgt) = batch(g)
                    #expect(tok == reference[g].0 && tgt == reference[g].1)
                }
            }
        }
        // targets are the next tokens; different g, step or seed give different windows
        #expect(Array(reference[0].0[1..<T]) == Array(reference[0].1[0..<(T - 1)]))
        #expect(reference[0].0 != reference[1].0)
        #expect(data.windowStart(step: 0, microBatch: 0, row: 0, seed: 1, sequenceLength: T)
                != data.windowStart(step: 1, microBatch: 0, row: 0, seed: 1, sequenceLength: T))
    }

    /// A glob or a directory is read in byte order of the paths (10 after 09, "B" before "a")
    /// as one stream; a split keeps the first part for training.
    @Test func streamsAndSplits() throws {
        let dir = temporaryURL("stream-\(UInt32.random(in: 0 ... .max))")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        for (name, text) in [("s09.txt", "cc"), ("s10.txt", "dd"), ("B.txt", "aa"), ("a.txt", "bb"), (".hidden", "zz")] {
            try Data(text.utf8).write(to: dir.appendingPathComponent(name))
        }
        let all = try TokenDataset(spec: dir.path, vocabularySize: 256)
        #expect(String(decoding: all.tokens.map { UInt8($0) }, as: UTF8.self) == "aabbccdd")
        let glob = try TokenDataset(spec: dir.path + "/s*.txt", vocabularySize: 256)
        #expect(String(decoding: glob.tokens.map { UInt8($0) }, as: UTF8.self) == "ccdd")
        let (train, validation) = try all.split(validationFraction: 0.3, sequenceLength: 1)
        #expect(train.count == 6 && validation.count == 2 && validation.tokens == Array(all.tokens.suffix(2)))
        #expect(throws: TokenDatasetError.self) { try all.split(validationFraction: 0.1, sequenceLength: 1) }  // 0 tokens held out
    }
}
