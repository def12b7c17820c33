import ArgumentParser
import Foundation
import ZeroEngine
import ZeroModels

/// `zero-train export`: a sharded checkpoint (any rank count) to Hugging Face GPT-2
/// weights: one safetensors file, or a `save_pretrained` directory (config.json +
/// model.safetensors) that `GPT2LMHeadModel.from_pretrained` loads unedited.
struct Export: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Consolidate a sharded checkpoint into Hugging Face GPT-2 weights (a .safetensors file or a save_pretrained directory).",
        discussion: """
        Examples:
          zero-train export --checkpoint runs/a --out model.safetensors --dtype bf16
          zero-train export --checkpoint runs/a --out hf-model      (config.json + model.safetensors)
        --checkpoint may name a step-* directory or a save root (its newest complete checkpoint).
        An --out path ending in .safetensors is one file; any other path is a directory.
        """
    )

    @Option(help: "Checkpoint directory (or save root).") var checkpoint: String
    @Option(help: "Output: FILE.safetensors, or a directory for GPT2LMHeadModel.from_pretrained.") var out: String
    @Option(help: "fp32 (f32) or bf16.") var dtype: String = "f32"

    func run() throws {
        do {
            let type = try parseDType(dtype)
            let (gpt, units, step) = try gatherCheckpoint(checkpoint)
            let url = URL(fileURLWithPath: out)
            let asDirectory = url.pathExtension.lowercased() != "safetensors"
            try withUnitPointers(units) { pointers in
                if asDirectory {
                    try HuggingFaceGPT2.save(units: pointers, config: gpt, to: url, dtype: type)
                } else {
                    try saveGPT2(units: pointers, config: gpt, to: url, dtype: type)
                }
            }
            print("wrote \(out)\(asDirectory ? "/ (config.json, model.safetensors)" : "") (\(gpt.name), step \(step), \(type == .bf16 ? "bf16" : "fp32"))")
        } catch {
            fail(error)
        }
    }
}

func parseDType(_ text: String) throws -> SafeTensors.DType {
    switch text.lowercased() {
    case "f32", "fp32", "float32": return .f32
    case "bf16", "bfloat16": return .bf16
    default: throw ConfigError("--dtype must be fp32 or bf16, not '\(text)'")
    }
}

/// The consolidated fp32 master weights of a GPT checkpoint (any rank count, any stage):
/// its shape, one array per unit, and its step.
func gatherCheckpoint(_ path: String) throws -> (GPTConfig, [[Float]], Int) {
    let dir = try Checkpoint.resolve(URL(fileURLWithPath: path))
    let reader = try CheckpointReader(dir)
    guard let gpt = GPTConfig.named(reader.manifest.config.model) else {
        throw ConfigError("\(reader.manifest.config.model) is not a GPT model; only GPT checkpoints have a Hugging Face layout")
    }
    let units = try (0..<reader.manifest.units.count).map { try reader.master(unit: $0) }
    return (gpt, units, reader.manifest.step)
}
