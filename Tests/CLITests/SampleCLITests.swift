import Foundation
import Testing
import ZeroModels

/// `zero-train sample` through the binary, from a trained sharded checkpoint.
@Suite(.serialized) struct SampleCLITests {
    static func scratch(_ name: String) -> URL {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("zt-sample-\(getpid())/\(name)")
        try? FileManager.default.removeItem(at: dir)
        try? FileManager.default.createDirectory(at: dir.deletingLastPathComponent(), withIntermediateDirectories: true)
        return dir
    }

    static func sample(_ args: [String]) throws -> (status: Int32, stdout: String, stderr: String) {
        try runProcess(zeroTrainBinary(), ["sample"] + args, timeout: .seconds(120))
    }

    @Test func byteLevelSamplesAreTextAndDeterministic() throws {
        let save = Self.scratch("bytes").path
        let train = try runProcess(zeroTrainBinary(), ["--simulate", "2", "--model", "gpt-tiny", "--steps", "40", "--micro-batch", "4",
                                                       "--seq-len", "64", "--stage", "3", "--save", save, "--log-every", "0",
                                                       "--sample-every", "20", "--sample-prompt", "And", "--sample-tokens", "16"],
                                   timeout: .seconds(300))
        #expect(train.status == 0, "\(train.stderr)")
        let samples = train.stdout.split(separator: "\n").filter { $0.hasPrefix("sample at step ") }
        #expect(samples.count == 2 && samples[0].hasPrefix("sample at step 20: \"And") && samples[1].hasPrefix("sample at step 40: \"And"), "\(train.stdout)")
        let prompt = "And God said"
        let args = ["--checkpoint", save, "--prompt", prompt, "--tokens", "48", "--temperature", "0.8", "--top-k", "20"]
        let a = try Self.sample(args + ["--seed", "1"]), b = try Self.sample(args + ["--seed", "1"]), c = try Self.sample(args + ["--seed", "2"])
        #expect(a.status == 0 && b.status == 0 && c.status == 0, "\(a.stderr)")
        #expect(a.stdout == b.stdout && a.stdout != c.stdout)
        #expect(a.stdout.hasPrefix(prompt) && a.stdout.count > prompt.count + 10, "\(a.stdout)")
        // After 40 steps on the KJV text the model writes mostly lowercase letters and spaces.
        let letters = a.stdout.dropFirst(prompt.count).filter { $0.isLetter || $0 == " " }.count
        #expect(Double(letters) / Double(a.stdout.count - prompt.count) > 0.7, "\(a.stdout)")
        // Greedy ignores the seed.
        let g1 = try Self.sample(["--checkpoint", save, "--prompt", prompt, "--tokens", "16", "--temperature", "0", "--seed", "1"])
        let g2 = try Self.sample(["--checkpoint", save, "--prompt", prompt, "--tokens", "16", "--temperature", "0", "--seed", "9"])
        #expect(g1.status == 0 && g1.stdout == g2.stdout)

        let empty = try Self.sample(["--checkpoint", save, "--prompt", "", "--tokens", "4"])
        #expect(empty.status != 0 && empty.stderr.contains("--prompt is empty"))
        let missing = try Self.sample(["--checkpoint", Self.scratch("none").path, "--prompt", "x"])
        #expect(missing.status != 0 && missing.stderr.split(separator: "\n").count == 1)
    }

    @Test func tokenModelsPrintTokenIDs() throws {
        let shard = Self.scratch("tokens.bin")
        let tokens: [UInt16] = (0..<4096).map { (i: Int) -> UInt16 in UInt16((i * 7 + i / 13) % 300) }
        try TokenDataset.writeShard(tokens, to: shard)
        let save = Self.scratch("ids").path
        let train = try runProcess(zeroTrainBinary(), ["--simulate", "1", "--model", "gpt-tiny", "--vocab-size", "320", "--data", shard.path,
                                                       "--steps", "2", "--micro-batch", "2", "--seq-len", "32", "--save", save, "--log-every", "0"],
                                   timeout: .seconds(120))
        #expect(train.status == 0, "\(train.stderr)")
        let r = try Self.sample(["--checkpoint", save, "--prompt", "5 12 299", "--tokens", "10", "--seed", "3"])
        #expect(r.status == 0, "\(r.stderr)")
        let ids = r.stdout.split(whereSeparator: \.isWhitespace).compactMap { Int($0) }
        #expect(ids.count == 13 && Array(ids.prefix(3)) == [5, 12, 299] && ids.allSatisfy { (0..<320).contains($0) }, "\(r.stdout)")
        let bad = try Self.sample(["--checkpoint", save, "--prompt", "5 400", "--tokens", "1"])
        #expect(bad.status != 0 && bad.stderr.contains("not a token id"))
    }
}
