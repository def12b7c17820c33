import Foundation
import Testing
import ZeroEngine

/// Every option of the table, given bad values as a flag and as a config key, through the
/// real binary: one line on stderr, a non-zero exit, never a crash trace. The bad values fail
/// validation, so no run starts and the suite stays fast.
@Suite struct OptionValidationCLITests {
    static let crashMarkers = ["Fatal error", "Stack dump", "Illegal instruction", "Segmentation fault", "failed to allocate"]
    /// A small run, in case a bad value were accepted after all.
    static let base = ["--model", "gpt-tiny", "--steps", "1", "--micro-batch", "1", "--seq-len", "16"]

    static func expectOneLineError(_ args: [String], contains message: String? = nil, environment: [String: String] = [:],
                                   sourceLocation: SourceLocation = #_sourceLocation) throws {
        let r = try runProcess(zeroTrainBinary(), args, environment: environment, timeout: .seconds(60))
        let lines = r.stderr.split(separator: "\n").filter { !$0.isEmpty }
        let shown = args.joined(separator: " ")
        #expect(r.status != 0, "\(shown) exited 0", sourceLocation: sourceLocation)
        #expect(lines.count == 1, "\(shown): stderr \(r.stderr)", sourceLocation: sourceLocation)
        for marker in crashMarkers {
            #expect(!(r.stdout + r.stderr).contains(marker), "\(shown): \(r.stderr)", sourceLocation: sourceLocation)
        }
        if let message { #expect(r.stderr.contains(message), "\(shown): stderr \(r.stderr)", sourceLocation: sourceLocation) }
    }

    /// Text a flag might be given: wrong type, negative, zero, nan, inf, out of range, huge.
    static let candidates = ["-1", "0", "nan", "inf", "-inf", "1e400", "1.5", "2", "99999999999999999999", "abc", ""]
    /// JSON values of the wrong type or out of range for config keys.
    static let jsonCandidates = ["-1", "0", "2.7", "1e300", "\"3\"", "\"false\"", "true", "null", "[1]", "{}"]

    /// The bad ones among `values` for `option`, as the table judges them (each then goes through the binary).
    static func rejected(_ option: TrainingOption, _ values: [String], json: Bool) -> [String] {
        values.filter { text in
            var c = TrainingConfig()
            if json {
                guard let value = ConfigJSON.parse(Data(text.utf8)) else { return true }
                return (try? option.set(&c, json: value, label: "")) == nil
            }
            return (try? option.set(&c, text: text, label: "")) == nil
        }
    }

    @Test func everyOptionRefusesBadFlagValuesInOneLine() throws {
        var cases: [[String]] = []
        for option in TrainingOption.all where !option.isSwitch {
            let bad = Self.rejected(option, Self.candidates, json: false)
            // Every option refuses something from the list (a test that cannot fail is a defect);
            // a path refuses only "" here (what is at the path is checked before the run starts).
            #expect(bad.count >= (option.accepts == "a non-empty path" ? 1 : 2), "--\(option.flag) accepts nearly everything: \(bad)")
            cases += bad.map { Self.base + ["--\(option.flag)", $0] }
        }
        try runAll(cases) { args in try Self.expectOneLineError(args, contains: "\(args[args.count - 2]) must be") }
    }

    @Test func everyConfigKeyRefusesBadValuesInOneLine() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("zt-options-\(getpid())")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        var cases: [[String]] = []
        for option in TrainingOption.all {
            for key in option.configKeys {
                let bad = Self.rejected(option, Self.jsonCandidates, json: true)
                #expect(bad.count >= 4, "'\(key)' accepts nearly everything: \(bad)")
                for (i, value) in bad.enumerated() {
                    let file = dir.appendingPathComponent("\(key)-\(i).json")
                    try Data("{\"\(key)\": \(value)}".utf8).write(to: file)
                    cases.append(Self.base + ["--config", file.path])
                }
            }
        }
        try runAll(cases) { args in
            let key = URL(fileURLWithPath: args.last!).deletingPathExtension().lastPathComponent.split(separator: "-").dropLast().joined(separator: "-")
            try Self.expectOneLineError(args, contains: "'\(key)' must be")
        }
    }

    /// The cases of the hardening review, each with the line it must print.
    @Test(arguments: [
        (["--min-lr", "-1"], "--min-lr must be a finite number >= 0, not '-1'"),
        (["--lr", "0.001", "--min-lr", "0.01"], "--min-lr (0.01) must be at most --lr (0.001)"),
        (["--beta1", "1.5"], "--beta1 must be a number in [0, 1), not '1.5'"),
        (["--beta2", "2"], "--beta2 must be a number in [0, 1)"),
        (["--beta1", "nan"], "--beta1 must be a number in [0, 1), not 'nan'"),
        (["--eps", "-1"], "--eps must be a finite number > 0"),
        (["--eps", "nan"], "--eps must be a finite number > 0"),
        (["--weight-decay", "-5"], "--weight-decay must be a finite number >= 0"),
        (["--max-skips", "-1"], "--max-skips must be an integer from 0"),
        (["--log-every", "-1"], "--log-every must be an integer from 0"),
        (["--lr", "1e400"], "--lr must be a finite number > 0, not '1e400'"),
        (["--steps", "-1"], "--steps must be an integer from 1 to 1000000000, not '-1'"),
        (["--clip", "inf"], "--clip must be a finite number >= 0, not 'inf'"),
        (["--timeout", "inf"], "--timeout must be a number of seconds > 0 and <= 1e9"),
        (["--timeout", "1e300"], "--timeout must be a number of seconds > 0 and <= 1e9"),
        (["--grad-accum", "1e15"], "--grad-accum must be an integer from 1 to 1000000, not '1e15'"),
        (["--simulate", "4", "--micro-batch", "1000000", "--seq-len", "64"], "needs"),
        (["--simulate", "4", "--micro-batch", "4000", "--model", "gpt2-124m", "--seq-len", "1024"], "lower --micro-batch"),
        (["--simulate", "1", "--model", "mlp", "--micro-batch", "100000", "--seq-len", "1000"], "needs 478.0 GiB for 1 rank on this machine"),
        (["--seq-len", "65"], "--seq-len must be at most gpt-tiny's context length 64"),
        (["--stage", "4"], "--stage must be 0, 1, 2 or 3, not '4'"),
        (["--optimizer", "adamx"], "adafactor"),
        (["--schedule", "linear"], "reduce_on_plateau"),
        (["--simulate", "0"], "--simulate must be an integer from 1 to 1024"),
        (["--simulate", "2", "--save-every", "1"], "--save-every needs --save DIR"),
        (["--no-such-flag"], "Unknown option"),
        (["--task", "classify"], "--task classify needs --model mlp, not gpt-tiny"),
        (["--model", "mlp", "--task", "classify", "--loss", "infonce"], "--loss infonce does not apply to --task classify"),
        (["--model", "mlp", "--task", "contrastive", "--loss", "focal"], "--loss focal does not apply to --task contrastive"),
        (["--label-smoothing", "0.1"], "--label-smoothing applies to --task classify, not lm"),
        (["--model", "mlp", "--task", "classify", "--data", "/nonexistent.npy"], "/nonexistent.npy: no such file"),
        (["--dropout", "0.1"], "--dropout applies to the mlp model; gpt-tiny has no dropout (use --dropout 0)"),
        (["--focal-alpha", "2"], "--focal-alpha must be a number in [0, 1], or -1 for no weighting, not '2'"),
    ])
    func reviewCasesGetOneClearLine(args: [String], message: String) throws {
        try Self.expectOneLineError(Self.base + args, contains: message)
    }

    /// Files that are not what an option expects are named with what was found.
    @Test func misleadingFilesAreNamed() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("zt-files-\(getpid())")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let fifo = dir.appendingPathComponent("fifo").path
        #expect(mkfifo(fifo, 0o600) == 0)
        let file = dir.appendingPathComponent("file.txt")
        try Data("hello".utf8).write(to: file)
        let empty = dir.appendingPathComponent("empty")
        try FileManager.default.createDirectory(at: empty, withIntermediateDirectories: true)
        try Self.expectOneLineError(Self.base + ["--data", empty.path], contains: "--data \(empty.path): the directory holds no data files")
        try Self.expectOneLineError(Self.base + ["--data", fifo], contains: "found a FIFO")
        try Self.expectOneLineError(Self.base + ["--data", "/dev/null"], contains: "found a character device")
        try Self.expectOneLineError(Self.base + ["--init", dir.path], contains: "\(dir.path): no config.json (expected a save_pretrained directory)")
        try Self.expectOneLineError(Self.base + ["--config", dir.path], contains: "config file \(dir.path) is a directory")
        try Self.expectOneLineError(Self.base + ["--config", "/dev/null"], contains: "config file /dev/null is a character device; expected a JSON file")
        try Self.expectOneLineError(Self.base + ["--config", dir.appendingPathComponent("none.json").path], contains: "config file not found")
        try Self.expectOneLineError(Self.base + ["--save", file.path], contains: "--save \(file.path): expected a directory, found a file")
    }

    /// A safetensors header whose shape cannot exist is refused by name, before anything is allocated.
    @Test func impossibleTensorShapeIsNamed() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("zt-shape-\(getpid())")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let header = #"{"wte.weight":{"dtype":"F32","shape":[1099511627776,1099511627776],"data_offsets":[0,16]}}"#
        var data = Data()
        withUnsafeBytes(of: UInt64(header.utf8.count).littleEndian) { data.append(contentsOf: $0) }
        data.append(contentsOf: Array(header.utf8) + [UInt8](repeating: 0, count: 16))
        let file = dir.appendingPathComponent("huge.safetensors")
        try data.write(to: file)
        try Self.expectOneLineError(Self.base + ["--simulate", "1", "--init", file.path], contains: "\"wte.weight\" has shape [1099511627776, 1099511627776]")
    }

    /// `mpirun -n 2 zero-train --simulate 2` would run two independent jobs into the same files.
    @Test func simulateUnderMPIIsRefused() throws {
        try Self.expectOneLineError(Self.base + ["--simulate", "2"], contains: "--simulate cannot run under mpirun",
                                    environment: ["OMPI_COMM_WORLD_SIZE": "2"])
    }

    /// `--help` names every option of the table and every accepted value of each closed set,
    /// and offers no value flag the table does not know (the table and the @Options agree).
    @Test func helpListsEveryOptionAndValue() throws {
        let r = try runProcess(zeroTrainBinary(), ["train", "--help"], timeout: .seconds(30))
        #expect(r.status == 0)
        let help = r.stdout
        for option in TrainingOption.all {
            #expect(help.contains("--\(option.flag) "), "--\(option.flag) missing from --help")
            for value in option.choices ?? [] {
                #expect(help.contains(value), "--\(option.flag)'s value \(value) missing from --help")
            }
        }
        let flags = Set(help.split(whereSeparator: { $0 == " " || $0 == "\n" || $0 == "[" || $0 == "]" })
            .filter { $0.hasPrefix("--") }.map { String($0.dropFirst(2)).trimmingCharacters(in: .punctuationCharacters) })
        let runOnly: Set = ["resume", "metrics", "config", "simulate", "simulate-link", "allow-config-change", "help", "version", "",
                           "n-layer", "n-head", "n-embd", "block-size", "vocab-size", "sample-every", "sample-prompt", "sample-tokens"]
        let known = Set(TrainingOption.all.map(\.flag)).union(runOnly)
        #expect(flags.subtracting(known).isEmpty, "flags in --help but not in the table: \(flags.subtracting(known).sorted())")
    }

    func runAll(_ cases: [[String]], _ body: @escaping @Sendable ([String]) throws -> Void) throws {
        let errors = ErrorBox()
        DispatchQueue.concurrentPerform(iterations: 4) { worker in
            for i in stride(from: worker, to: cases.count, by: 4) {
                do { try body(cases[i]) } catch { errors.add(error) }
            }
        }
        if let first = errors.first { throw first }
    }
}

/// Sendable because `errors` is touched only under `lock`.
private final class ErrorBox: @unchecked Sendable {
    private let lock = NSLock()
    private var errors: [any Error] = []
    func add(_ e: any Error) { lock.lock(); errors.append(e); lock.unlock() }
    var first: (any Error)? { lock.lock(); defer { lock.unlock() }; return errors.first }
}
