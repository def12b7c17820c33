import Foundation
import Testing
import ZeroEngine
import ZeroModels

/// `zero-train export` turns a sharded checkpoint into one Hugging Face GPT-2 file.
@Suite struct ExportCLITests {
    @Test func exportsTheConsolidatedMasterWithHuggingFaceNames() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("zt-export-\(getpid())")
        try? FileManager.default.removeItem(at: dir)
        let save = dir.appendingPathComponent("ckpt").path
        let train = try runProcess(zeroTrainBinary(), ["--simulate", "2", "--model", "gpt-tiny", "--steps", "2", "--micro-batch", "2",
                                                       "--seq-len", "32", "--stage", "3", "--save", save, "--log-every", "0"],
                                   timeout: .seconds(120))
        #expect(train.status == 0, "\(train.stderr)")
        let f32 = dir.appendingPathComponent("model.safetensors"), bf16 = dir.appendingPathComponent("model-bf16.safetensors")
        for (out, dtype) in [(f32, "f32"), (bf16, "bf16")] {
            let r = try runProcess(zeroTrainBinary(), ["export", "--checkpoint", save, "--out", out.path, "--dtype", dtype], timeout: .seconds(60))
            #expect(r.status == 0, "\(r.stderr)")
        }
        let file = try SafeTensors(contentsOf: f32)
        #expect(file.entry(named: "transformer.wte.weight")?.shape == [256, 64])
        #expect(file.entry(named: "transformer.h.1.attn.c_attn.weight")?.shape == [64, 192])
        #expect(file.entry(named: "lm_head.weight") == nil)   // tied
        #expect(try SafeTensors(contentsOf: bf16).entries.allSatisfy { $0.dtype == .bf16 })

        // The exported values are the checkpoint's fp32 master, bit for bit.
        let reader = try CheckpointReader(Checkpoint.resolve(URL(fileURLWithPath: save)))
        let units = try loadGPT2(safetensorsAt: f32, config: .tiny)
        for u in units.indices {
            #expect(units[u].map(\.bitPattern) == (try reader.master(unit: u)).map(\.bitPattern))
        }

        let bad = try runProcess(zeroTrainBinary(), ["export", "--checkpoint", dir.appendingPathComponent("nope").path, "--out", f32.path],
                                 timeout: .seconds(60))
        #expect(bad.status != 0 && bad.stderr.contains("no checkpoint directory"))
    }
}
