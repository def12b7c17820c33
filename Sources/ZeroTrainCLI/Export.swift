import ArgumentParser
import Foundation
import ZeroEngine
import ZeroModels

/// `zero-train export`: a sharded checkpoint (any rank count) to one Hugging Face
/// GPT-2 safetensors file that `GPT2LMHeadModel.from_pretrained` / safetensors load.
struct Export: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Consolidate a sharded checkpoint into one safetensors file with Hugging Face GPT-2 names.",
        discussion: """
        Example: zero-train export --checkpoint runs/a --out model.safetensors --dtype bf16
        --checkpoint may name a step-* directory or a save root (its newest complete checkpoint).
        """
    )

    @Option(help: "Checkpoint directory (or save root).") var checkpoint: String
    @Option(help: "Output .safetensors file.") var out: String
    @Option(help: "f32 or bf16.") var dtype: String = "f32"

    func run() throws {
        do {
            let dir = try Checkpoint.resolve(URL(fileURLWithPath: checkpoint))
            let reader = try CheckpointReader(dir)
            guard let gpt = GPTConfig.named(reader.manifest.config.model) else {
                throw ConfigError("export writes GPT-2 checkpoints; \(reader.manifest.config.model) has no Hugging Face layout")
            }
            let type: SafeTensors.DType
            switch dtype.lowercased() {
            case "f32", "fp32", "float32": type = .f32
            case "bf16", "bfloat16": type = .bf16
            default: throw ConfigError("--dtype must be f32 or bf16, not '\(dtype)'")
            }
            let units = try (0..<reader.manifest.units.count).map { try reader.master(unit: $0) }
            try withUnitPointers(units) { try saveGPT2(units: $0, config: gpt, to: URL(fileURLWithPath: out), dtype: type) }
            print("wrote \(out) (\(gpt.name), step \(reader.manifest.step), \(dtype))")
        } catch {
            fail(error)
        }
    }
}
