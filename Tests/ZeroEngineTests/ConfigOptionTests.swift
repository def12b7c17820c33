import Foundation
import Testing
import ZeroEngine

/// The option table: manifest keys, round trips, config-file typing and the docs.
@Suite struct ConfigOptionTests {
    func temporaryFile(_ name: String, _ text: String) throws -> URL {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("zt-cfg-\(getpid())")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        let url = dir.appendingPathComponent(name)
        try Data(text.utf8).write(to: url)
        return url
    }

    func apply(_ json: String) throws -> TrainingConfig {
        var c = TrainingConfig()
        try ConfigFile.apply(try temporaryFile("c.json", json), to: &c)
        return c
    }

    func refusal(_ json: String) -> String? {
        do { _ = try apply(json); return nil } catch { return "\(error)" }
    }

    /// The manifest's config keys are those of the struct before the table existed, plus additions.
    @Test func manifestKeysAreUnchanged() throws {
        var c = TrainingConfig()
        c.globalMicroBatches = 8; c.data = "d"; c.initFrom = "i"; c.save = "s"
        let object = try JSONSerialization.jsonObject(with: c.canonicalJSON()) as! [String: Any]
        let before: Set = ["model", "stage", "steps", "microBatch", "gradAccum", "globalMicroBatches", "seqLen", "lr", "minLR",
                           "warmup", "schedule", "weightDecay", "beta1", "beta2", "eps", "clip", "optimizer", "precision", "data",
                           "initFrom", "seed", "save", "saveEvery", "keep", "maxSkips", "errorIfNonfinite", "timeout", "blasThreads"]
        #expect(before.isSubset(of: Set(object.keys)))
        #expect(Set(object.keys).subtracting(before) == ["logEvery", "l1", "l2", "valFraction", "evalEvery", "evalBatches", "recompute",
                                                            "task", "labelSmoothing", "focalGamma", "focalAlpha", "temperature", "margin", "dropout", "norm",
                                                            "lbfgsHistory", "lineSearch", "lbfgsIterations", "overlap"])
        #expect(object["model"] as? String == "gpt-small" && object["stage"] as? Int == 2 && object["schedule"] as? String == "warmup_cosine")
        // Unset optionals are omitted, as before; a manifest without the added keys still decodes.
        let plain = try JSONSerialization.jsonObject(with: TrainingConfig().canonicalJSON()) as! [String: Any]
        #expect(plain["data"] == nil && plain["globalMicroBatches"] == nil)
        var old = plain
        old["logEvery"] = nil
        old["l1"] = nil
        old["l2"] = nil
        old["lr"] = 0.5
        let decoded = try JSONDecoder().decode(TrainingConfig.self, from: JSONSerialization.data(withJSONObject: old))
        #expect(decoded.lr == 0.5 && decoded.logEvery == 1 && decoded.l1 == 0 && decoded.l2 == 0)
        #expect(try JSONDecoder().decode(TrainingConfig.self, from: c.canonicalJSON()) == c)
    }

    /// Every stored field of TrainingConfig has its table entry (its JSON form comes from the
    /// table, so a field without one would be missing from the manifest and the consensus check).
    @Test func everyFieldIsInTheTable() {
        // deepSpeedSchedule is one structured value (a DeepSpeed scheduler), encoded beside the table.
        let fields = Set(Mirror(reflecting: TrainingConfig()).children.compactMap(\.label)).subtracting(["deepSpeedSchedule"])
        let keys = Set(TrainingOption.all.map(\.manifestKey))
        #expect(fields == keys, "fields without an option: \(fields.subtracting(keys).sorted()); options without a field: \(keys.subtracting(fields).sorted())")
    }

    /// Every option's table entry agrees with the struct: its default passes its own check, and
    /// setting the default's text reproduces it.
    @Test func everyOptionRoundTripsItsDefault() throws {
        let defaults = TrainingConfig()
        try defaults.validate()
        #expect(Set(TrainingOption.all.map(\.flag)).count == TrainingOption.all.count)
        #expect(Set(TrainingOption.all.flatMap(\.configKeys)).count == TrainingOption.all.flatMap(\.configKeys).count)
        for option in TrainingOption.all {
            guard let text = option.value(in: defaults) else { continue }
            var c = defaults
            try option.set(&c, text: text, label: "--\(option.flag)")
            #expect(c == defaults, "--\(option.flag) \(text)")
        }
    }

    /// JSON numbers 0 and 1 are numbers (Foundation on Linux reads NSNumber 0/1 as Booleans).
    @Test func zeroAndOneAreNumbers() throws {
        let c = try apply("""
        {"gradient_clipping": 1.0, "gradient_accumulation_steps": 1, "train_micro_batch_size_per_gpu": 1,
         "zero_optimization": {"stage": 0}, "optimizer": {"type": "AdamW", "params": {"weight_decay": 0.0, "lr": 1}},
         "warmup": 0, "save_every": 0, "max_skips": 1, "seed": 0, "bf16": {"enabled": false}, "blas_threads": 1.0}
        """)
        #expect(c.clip == 1 && c.gradAccum == 1 && c.microBatch == 1 && c.stage == .zero && c.weightDecay == 0 && c.lr == 1)
        #expect(c.warmup == 0 && c.saveEvery == 0 && c.maxSkips == 1 && c.seed == 0 && c.precision == .fp32 && c.blasThreads == 1)
        #expect(try apply(#"{"seed": 18446744073709551615, "error_if_nonfinite": true}"#).seed == UInt64.max)
    }

    /// A value of the wrong type is refused by name, never ignored or truncated.
    @Test func wrongTypesAreRefused() {
        #expect(refusal(#"{"stage": "3"}"#) == #"c.json: 'stage' must be 0, 1, 2 or 3, not "3""#)
        #expect(refusal(#"{"stage": 2.7}"#) == "c.json: 'stage' must be 0, 1, 2 or 3, not 2.7")
        let mb = #""train_micro_batch_size_per_gpu": 1"#
        #expect(refusal(#"{"zero_optimization": {"stage": "3"}, \#(mb)}"#) == #"c.json: 'zero_optimization.stage' must be 0, 1, 2 or 3, not "3""#)
        #expect(refusal(#"{"bf16": {"enabled": "false"}, \#(mb)}"#) == #"c.json: 'bf16.enabled' must be true or false, not "false""#)
        #expect(refusal(#"{"fp16": {"enabled": 0}, \#(mb)}"#) == "c.json: 'fp16.enabled' must be true or false, not 0")
        #expect(refusal(#"{"steps": true}"#) == "c.json: 'steps' must be an integer from 1 to 1000000000, not true")
        #expect(refusal(#"{"micro_batch": 2.5}"#) == "c.json: 'micro_batch' must be an integer from 1 to 1000000, not 2.5")
        #expect(refusal(#"{"seed": -1}"#) == "c.json: 'seed' must be an integer from 0 to 18446744073709551615, not -1")
        #expect(refusal(#"{"lr": "0.1"}"#) == #"c.json: 'lr' must be a finite number > 0, not "0.1""#)
        #expect(refusal(#"{"optimizer": {"type": "AdamW", "params": {"betas": [0.9, 1]}}, \#(mb)}"#)
                == "c.json: 'optimizer.params.betas[1]' must be a number in [0, 1), not 1")
        #expect(refusal(#"{"optimizer": 3}"#)?.hasPrefix("c.json: 'optimizer' must be adamw, adam, sgd") == true)
        #expect(refusal(#"{"train_batch_size": "8"}"#) == #"c.json: 'train_batch_size' must be a whole number >= 1, not "8""#)
        #expect(refusal("[1, 2]")?.hasSuffix("is not a JSON object") == true)
        #expect(refusal("{\"lr\": ")?.hasSuffix("is not valid JSON") == true)
    }

    /// docs/configuration.md carries the table as the code declares it.
    @Test func docsListEveryOption() throws {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let doc = try String(contentsOf: root.appendingPathComponent("docs/configuration.md"), encoding: .utf8)
        let table = TrainingOption.markdownTable()
        if !doc.contains(table) {
            let fresh = FileManager.default.temporaryDirectory.appendingPathComponent("configuration-table.md")
            try? Data(table.utf8).write(to: fresh)
            Issue.record("docs/configuration.md is out of date with TrainingOption.all; the current table is in \(fresh.path)")
        }
    }
}
