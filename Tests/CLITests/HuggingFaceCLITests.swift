import Foundation
import Testing
import ZeroEngine
import ZeroModels

/// The Hugging Face round trip through the real binary: `--init` a save_pretrained
/// directory of a shape that is no preset (Tests/Fixtures/hf/tiny), train, export a
/// directory, and compare logits with transformers' (fixture in CI; live when
/// .venv-fixtures exists).
@Suite(.serialized) struct HuggingFaceCLITests {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    static let hf = root.appendingPathComponent("Tests/Fixtures/hf")
    static let python = root.appendingPathComponent(".venv-fixtures/bin/python")
    static var hasTransformers: Bool { FileManager.default.isExecutableFile(atPath: python.path) }

    static func scratch(_ name: String) -> URL {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("zt-hfcli-\(getpid())/\(name)")
        try? FileManager.default.removeItem(at: dir)
        try? FileManager.default.createDirectory(at: dir.deletingLastPathComponent(), withIntermediateDirectories: true)
        return dir
    }

    /// Trains from the directory (its shape inferred), exports a directory, and returns it.
    static func trainAndExport(lr: String, dtype: String, name: String) throws -> URL {
        let save = scratch("\(name)-ckpt").path, out = scratch(name)
        let train = try runProcess(zeroTrainBinary(), [
            "--simulate", "2", "--init", hf.appendingPathComponent("tiny").path, "--steps", "2", "--micro-batch", "2",
            "--seq-len", "16", "--stage", "3", "--lr", lr, "--schedule", "constant", "--warmup", "0", "--save", save, "--log-every", "1"], timeout: .seconds(120))
        #expect(train.status == 0, "\(train.stderr)")
        #expect(train.stdout.contains("gpt-L2-H4-C32-T48-V260"), "\(train.stdout)")
        let export = try runProcess(zeroTrainBinary(), ["export", "--checkpoint", save, "--out", out.path, "--dtype", dtype], timeout: .seconds(60))
        #expect(export.status == 0, "\(export.stderr)")
        return out
    }

    /// Our fp32 forward of a directory's weights on the fixture's tokens.
    static func ourLogits(_ dir: URL) throws -> [Float] {
        let config = try HuggingFaceGPT2.config(directory: dir)
        let units = try loadGPT2(safetensorsAt: dir, config: config)
        let tokens = try SafeTensors(contentsOf: hf.appendingPathComponent("tiny_logits.safetensors")).floats("tokens").map { Int32($0) }
        let model = GPT(config: config, batchSize: 2, sequenceLength: 16, ledger: nil)
        return withUnitPointers(units) { pointers -> [Float] in
            let w: [UnsafeBufferPointer<Float>?] = pointers
            tokens.withUnsafeBufferPointer { model.setBatch(tokens: $0, targets: $0, batchSize: 2, sequenceLength: 16) }
            for op in model.opUnits.indices { model.forward(op: op, weights: w) }
            return Array(model.logits)
        }
    }

    static func maxAbsDifference(_ a: [Float], _ b: [Float]) -> Float {
        zip(a, b).reduce(0) { max($0, abs($1.0 - $1.1)) }
    }

    /// With a constant learning rate of 1e-12 the two steps move no fp32 weight of this scale, so the
    /// exported directory must still give transformers' fixture logits (max abs <= 2e-5):
    /// init from a directory and export to one lose nothing.
    @Test func initFromDirectoryThenExportKeepsTransformersLogits() throws {
        let out = try Self.trainAndExport(lr: "1e-12", dtype: "fp32", name: "still")
        let config = try HuggingFaceGPT2.config(directory: out)
        #expect(config.name == "gpt-L2-H4-C32-T48-V260")
        let files = try FileManager.default.contentsOfDirectory(atPath: out.path).sorted()
        #expect(files == ["config.json", "model.safetensors"])
        let expected = try SafeTensors(contentsOf: Self.hf.appendingPathComponent("tiny_logits.safetensors")).floats("logits")
        let d = Self.maxAbsDifference(try Self.ourLogits(out), expected)
        #expect(d <= 2e-5, "max abs \(d)")
    }

    /// A real training run exported as fp32 and bf16 directories loads in
    /// GPT2LMHeadModel.from_pretrained with no missing or unexpected keys, a tied head,
    /// and logits equal to our forward of the same weights (max abs <= 2e-5).
    @Test(.enabled(if: HuggingFaceCLITests.hasTransformers, "needs .venv-fixtures with torch and transformers (Tests/Fixtures/make_venv.sh)"))
    func transformersLoadsTheExportedDirectory() throws {
        for dtype in ["fp32", "bf16"] {
            let out = try Self.trainAndExport(lr: "1e-2", dtype: dtype, name: "trained-\(dtype)")
            let result = Self.scratch("transformers-\(dtype).safetensors")
            let r = try runProcess(Self.python, [Self.root.appendingPathComponent("Tests/Fixtures/make_hf_fixtures.py").path,
                                                 "--check", out.path, result.path], timeout: .seconds(300))
            #expect(r.status == 0, "\(r.stderr.suffix(3000))")
            let file = try SafeTensors(contentsOf: result)
            let report = try JSONSerialization.jsonObject(with: Data(file.metadata["report"]!.utf8)) as! [String: Any]
            #expect((report["missing_keys"] as? [Any])?.isEmpty == true, "\(report)")
            #expect((report["unexpected_keys"] as? [Any])?.isEmpty == true, "\(report)")
            #expect(report["tied"] as? Bool == true && report["n_layer"] as? Int == 2 && report["vocab_size"] as? Int == 260)
            let d = Self.maxAbsDifference(try Self.ourLogits(out), try file.floats("logits"))
            #expect(d <= 2e-5, "\(dtype): max abs \(d)")
        }
    }

    @Test func shapeFlagsAndConflictsThroughTheBinary() throws {
        let ok = try runProcess(zeroTrainBinary(), ["--simulate", "1", "--model", "gpt-tiny", "--n-layer", "3", "--n-embd", "48",
                                                    "--block-size", "32", "--steps", "1", "--micro-batch", "1", "--seq-len", "16"], timeout: .seconds(120))
        #expect(ok.status == 0, "\(ok.stderr)")
        #expect(ok.stdout.contains("gpt-L3-H4-C48-T32-V256"), "\(ok.stdout)")
        let bad = try runProcess(zeroTrainBinary(), ["--simulate", "1", "--model", "gpt-tiny", "--n-embd", "50", "--steps", "1"], timeout: .seconds(60))
        #expect(bad.status != 0 && bad.stderr.contains("not a multiple of n_head") && bad.stderr.split(separator: "\n").count == 1, "\(bad.stderr)")
        let clash = try runProcess(zeroTrainBinary(), ["--simulate", "1", "--model", "gpt-tiny", "--init", Self.hf.appendingPathComponent("tiny").path,
                                                       "--steps", "1"], timeout: .seconds(60))
        #expect(clash.status != 0 && clash.stderr.contains("differs from"), "\(clash.stderr)")
        let typo = try runProcess(zeroTrainBinary(), ["--simulate", "1", "--model", "gpt-L2-H3-C32-T48-V260", "--steps", "1"], timeout: .seconds(60))
        #expect(typo.status != 0 && typo.stderr.contains("not a multiple of n_head"), "\(typo.stderr)")
    }
}
