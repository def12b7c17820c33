import Foundation
import Testing
import ZeroModels

/// `--data` / `--val-data` as files, directories and globs of shards; `--val-fraction`;
/// `--eval-every` / `--eval-batches` and the validation loss, through the real binary.
@Suite(.serialized) struct DataCLITests {
    static let base = ["--model", "gpt-tiny", "--micro-batch", "2", "--seq-len", "16", "--global-micro-batches", "4",
                       "--steps", "2", "--lr", "0.01", "--min-lr", "0.001", "--schedule", "constant"]

    static func directory(_ name: String) throws -> URL {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("zt-data-\(name)-\(getpid())")
        try? FileManager.default.removeItem(at: dir)
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        return dir
    }

    /// Token ids below 256 (gpt-tiny's vocabulary), different in every shard.
    static func shardTokens(_ i: Int, count: Int = 300) -> [UInt16] {
        (0 ..< count).map { UInt16(($0 * 7 + i * 31 + ($0 / 5) * 3) % 256) }
    }

    /// The JSON text of `key` in every metrics line that has it (the exact digits, so bits compare).
    static func values(_ key: String, in metrics: URL) throws -> [String] {
        try String(contentsOf: metrics, encoding: .utf8).split(separator: "\n").compactMap { line in
            guard let r = line.range(of: "\"\(key)\": ") else { return nil }
            return String(line[r.upperBound...].prefix { $0 != "," && $0 != "}" })
        }
    }

    static func train(_ args: [String], metrics: URL, simulate: Int = 1) throws -> (stdout: String, sha: String) {
        let r = try runProcess(zeroTrainBinary(), base + args + ["--log-every", "0", "--simulate", "\(simulate)", "--metrics", metrics.path],
                               timeout: .seconds(300))
        #expect(r.status == 0, "\(args): \(r.stderr)")
        return (r.stdout, try values("params_sha256", in: metrics).last ?? "none")
    }

    /// A glob, a directory and the one concatenated shard are the same stream: same weights.
    /// Other file order, other stream.
    @Test func globDirectoryAndConcatenationTrainAlike() throws {
        let dir = try Self.directory("glob")
        defer { try? FileManager.default.removeItem(at: dir) }
        let shards = dir.appendingPathComponent("shards")
        try FileManager.default.createDirectory(at: shards, withIntermediateDirectories: true)
        for i in 0 ..< 3 {
            try TokenDataset.writeShard(Self.shardTokens(i), to: shards.appendingPathComponent("train_00000\(i).bin"))
        }
        let whole = dir.appendingPathComponent("whole.bin")
        try TokenDataset.writeShard((0 ..< 3).flatMap { Self.shardTokens($0) }, to: whole)
        let reordered = dir.appendingPathComponent("reordered.bin")
        try TokenDataset.writeShard([2, 0, 1].flatMap { Self.shardTokens($0) }, to: reordered)
        let m = dir.appendingPathComponent("m.jsonl")

        let one = try Self.train(["--data", whole.path], metrics: m).sha
        let glob = try Self.train(["--data", shards.path + "/train_*.bin"], metrics: m)
        #expect(glob.sha == one)
        #expect(try Self.train(["--data", shards.path], metrics: m).sha == one)
        #expect(try Self.train(["--data", reordered.path], metrics: m).sha != one)
    }

    /// --val-fraction F trains on the first 1 - F of the stream and validates on the rest: the
    /// same weights and val_loss as the two parts given as --data and --val-data files.
    @Test func valFractionSplitsTheStream() throws {
        let dir = try Self.directory("split")
        defer { try? FileManager.default.removeItem(at: dir) }
        let letters: [UInt8] = (0 ..< 4000).map { (i: Int) -> UInt8 in UInt8(97 + (i * 7 + i / 13) % 26) }
        let text = String(decoding: letters, as: UTF8.self)
        let all = dir.appendingPathComponent("all.txt"), head = dir.appendingPathComponent("head.txt"), tail = dir.appendingPathComponent("tail.txt")
        try Data(text.utf8).write(to: all)
        try Data(text.utf8.prefix(3000)).write(to: head)
        try Data(text.utf8.suffix(1000)).write(to: tail)
        let m = dir.appendingPathComponent("m.jsonl")
        let eval = ["--eval-every", "1", "--eval-batches", "3"]
        let split = try Self.train(["--data", all.path, "--val-fraction", "0.25"] + eval, metrics: m)
        let splitLoss = try Self.values("val_loss", in: m)
        let parts = try Self.train(["--data", head.path, "--val-data", tail.path] + eval, metrics: m)
        let partsLoss = try Self.values("val_loss", in: m)
        #expect(split.sha == parts.sha)
        #expect(splitLoss.count == 2 && splitLoss == partsLoss, "\(splitLoss) vs \(partsLoss)")
        let plain = try Self.train(["--data", all.path], metrics: m)
        #expect(plain.sha != split.sha)
        #expect(try Self.values("val_loss", in: m).isEmpty)
    }

    /// val_loss has the same bits for stages 0-3 and 1, 2, 4 ranks (5 validation micro-batches:
    /// not a multiple of the rank count), is in the metrics and the progress line, and is fixed
    /// across the run (it falls as the model learns the same windows).
    @Test func validationLossIsIdenticalForEveryStageAndRankCount() throws {
        let dir = try Self.directory("eval")
        defer { try? FileManager.default.removeItem(at: dir) }
        let m = dir.appendingPathComponent("m.jsonl")
        let args = ["--val-fraction", "0.1", "--eval-every", "2", "--eval-batches", "5", "--steps", "4", "--lr", "0.003"]
        var seen: [String: [String]] = [:]
        for stage in 0 ... 3 {
            for ranks in [1, 2, 4] {
                let r = try Self.train(args + ["--stage", "\(stage)"], metrics: m, simulate: ranks)
                let losses = try Self.values("val_loss", in: m)
                #expect(losses.count == 2, "stage \(stage) ranks \(ranks): \(losses)")
                seen["stage \(stage) x \(ranks) ranks", default: []] = losses + [r.sha]
            }
        }
        // mpirun -n 4, stage 3: the same bits as the simulated ranks.
        let mpi = try runProcess(URL(fileURLWithPath: "/usr/bin/env"),
                                 TrainCLITests.mpirun + [zeroTrainBinary().path] + Self.base + args
                                 + ["--stage", "3", "--log-every", "0", "--metrics", m.path], timeout: .seconds(300))
        #expect(mpi.status == 0, "mpirun failed: \(mpi.stderr)")
        seen["stage 3 x mpirun -n 4"] = try Self.values("val_loss", in: m) + [Self.values("params_sha256", in: m).last ?? "none"]
        let reference = seen["stage 0 x 1 ranks"]!
        for (run, values) in seen { #expect(values == reference, "\(run): \(values) vs \(reference)") }
        #expect(Double(reference[1])! < Double(reference[0])!)

        let shown = try runProcess(zeroTrainBinary(), Self.base + args + ["--log-every", "4", "--simulate", "2"],
                                   timeout: .seconds(120))
        #expect(shown.status == 0, "\(shown.stderr)")
        #expect(shown.stdout.contains("step     2/4 | val_loss "), "\(shown.stdout)")
        #expect(shown.stdout.contains("step     4/4 | loss ") && shown.stdout.contains(" | val_loss "), "\(shown.stdout)")
    }

    /// A checkpoint of a sharded run refuses a resume on changed shards, continues on the same ones.
    @Test func resumeFingerprintsEveryShard() throws {
        let dir = try Self.directory("resume")
        defer { try? FileManager.default.removeItem(at: dir) }
        let shards = dir.appendingPathComponent("shards")
        try FileManager.default.createDirectory(at: shards, withIntermediateDirectories: true)
        for i in 0 ..< 2 { try TokenDataset.writeShard(Self.shardTokens(i), to: shards.appendingPathComponent("s\(i).bin")) }
        let save = dir.appendingPathComponent("ckpt").path
        let m = dir.appendingPathComponent("m.jsonl")
        _ = try Self.train(["--data", shards.path + "/*.bin", "--save", save], metrics: m)
        let same = try runProcess(zeroTrainBinary(), ["--resume", save, "--steps", "3", "--simulate", "1", "--log-every", "0"], timeout: .seconds(120))
        #expect(same.status == 0, "\(same.stderr)")
        // The second shard changes after its first MiB would not matter; here its content changes.
        try TokenDataset.writeShard(Self.shardTokens(5), to: shards.appendingPathComponent("s1.bin"))
        let changed = try runProcess(zeroTrainBinary(), ["--resume", save, "--steps", "4", "--simulate", "1"], timeout: .seconds(60))
        #expect(changed.status != 0)
        #expect(changed.stderr.contains("data \(shards.path)/*.bin (2 files, "), "\(changed.stderr)")
        #expect(changed.stderr.split(separator: "\n").count == 1)
    }

    /// Bad data is one line naming the file and the problem, before anything trains.
    @Test func badDataIsOneLine() throws {
        let dir = try Self.directory("bad")
        defer { try? FileManager.default.removeItem(at: dir) }
        try TokenDataset.writeShard(Self.shardTokens(0), to: dir.appendingPathComponent("a.bin"))
        try Data("plain text".utf8).write(to: dir.appendingPathComponent("b.txt"))
        let truncated = dir.appendingPathComponent("t")
        try FileManager.default.createDirectory(at: truncated, withIntermediateDirectories: true)
        try TokenDataset.writeShard(Self.shardTokens(0), to: truncated.appendingPathComponent("x.bin"))
        var bytes = try Data(contentsOf: truncated.appendingPathComponent("x.bin"))
        bytes.removeLast(10)
        try bytes.write(to: truncated.appendingPathComponent("y.bin"))
        let unreadable = dir.appendingPathComponent("u")
        try FileManager.default.createDirectory(at: unreadable, withIntermediateDirectories: true)
        try TokenDataset.writeShard(Self.shardTokens(0), to: unreadable.appendingPathComponent("z.bin"))
        chmod(unreadable.appendingPathComponent("z.bin").path, 0)
        let cases: [([String], String)] = [
            (["--data", dir.path + "/none_*.bin"], "--data \(dir.path)/none_*.bin: no file matches this pattern"),
            (["--data", dir.path], "--data \(dir.path) mixes llm.c token shards (a.bin) and text files (b.txt); use files of one kind"),
            (["--val-data", truncated.path + "/*.bin", "--eval-every", "1"], "--val-data \(truncated.path)/y.bin: header says 300 tokens but the file holds 295"),
            (["--val-data", dir.path + "/a.bin"], ""),  // fine on its own: no --eval-every needed
            (["--eval-every", "2"], "--eval-every needs validation data: --val-data PATH or --val-fraction F"),
            (["--val-fraction", "0.1", "--val-data", dir.path + "/a.bin"], "--val-data and --val-fraction both name validation data"),
            (["--val-fraction", "1"], "--val-fraction must be a number in [0, 1), not '1'"),
            (["--data", dir.path + "/b.txt", "--val-fraction", "0.5"], "b.txt (first 50%): 5 tokens, fewer than one sequence of 16"),
        ] + (getuid() == 0 ? [] : [(["--data", unreadable.path], "--data \(unreadable.path)/z.bin: cannot read")])
        for (args, message) in cases {
            let r = try runProcess(zeroTrainBinary(), Self.base + args + ["--simulate", "1"], timeout: .seconds(60))
            if message.isEmpty { #expect(r.status == 0, "\(args): \(r.stderr)"); continue }
            #expect(r.status != 0, "\(args)")
            #expect(r.stderr.hasPrefix("zero-train: error: ") && r.stderr.contains(message), "\(args): \(r.stderr)")
            #expect(r.stderr.split(separator: "\n").count == 1, "\(args): \(r.stderr)")
        }
    }
}
