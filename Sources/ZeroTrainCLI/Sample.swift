import ArgumentParser
import Foundation
import ZeroEngine
import ZeroModels

/// `zero-train sample`: text (or token ids) generated from a checkpoint of any rank
/// count and stage, gathered as `export` gathers it.
struct Sample: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Generate from a checkpoint: byte-level models print text, token models print token ids.",
        discussion: """
        Example: zero-train sample --checkpoint runs/a --prompt "In the beginning" --tokens 200 --temperature 0.8 --top-k 40
        The same checkpoint, prompt, options and --seed give the same output. Models trained on
        text (the embedded corpus, a text file) are byte-level: --prompt is text and the output
        is decoded as UTF-8. Models trained on llm.c .bin shards read --prompt as token ids
        ("464 3290 318") and print ids; --token-ids forces that mode.
        """
    )

    @Option(help: "Checkpoint directory (or save root).") var checkpoint: String
    @Option(help: "Text to continue (token ids for token models).") var prompt: String
    @Option(help: "Tokens to generate.") var tokens: Int = 64
    @Option(help: "Softmax temperature; 0 is greedy.") var temperature: Double = 1.0
    @Option(help: "Sample from the K most likely tokens only (0: all).") var topK: Int = 0
    @Option(help: "Seed of the draws.") var seed: UInt64 = 1337
    @Flag(help: "Read --prompt as token ids and print ids, whatever the training data was.") var tokenIds = false

    func run() throws {
        do {
            guard tokens >= 0 else { throw ConfigError("--tokens must be >= 0") }
            guard temperature >= 0, temperature.isFinite else { throw ConfigError("--temperature must be >= 0") }
            guard topK >= 0 else { throw ConfigError("--top-k must be >= 0") }
            let dir = try Checkpoint.resolve(URL(fileURLWithPath: checkpoint))
            let training = try Checkpoint.readManifest(dir).config
            let (gpt, units, _) = try gatherCheckpoint(dir.path)
            let bytes = !tokenIds && training.isByteLevel
            let ids = try bytes ? prompt.utf8.map { Int32($0) } : parseTokenIDs(prompt, vocabularySize: gpt.vocabularySize)
            guard !ids.isEmpty else { throw ConfigError("--prompt is empty; give at least one \(bytes ? "character" : "token id")") }
            let options = SamplingOptions(temperature: temperature, topK: topK, seed: seed)
            let out = withUnitPointers(units) { GPT.generate(config: gpt, units: $0, prompt: ids, count: tokens, options: options) }
            print(render(ids + out, bytes: bytes))
        } catch {
            fail(error)
        }
    }
}

func parseTokenIDs(_ text: String, vocabularySize: Int) throws -> [Int32] {
    try text.split(whereSeparator: { $0 == " " || $0 == "," || $0 == "\n" || $0 == "\t" }).map { part in
        guard let v = Int32(part), v >= 0, Int(v) < vocabularySize else {
            throw ConfigError("--prompt: '\(part)' is not a token id in 0..<\(vocabularySize)")
        }
        return v
    }
}

/// Text (invalid UTF-8 shown as U+FFFD) for byte-level models, space-separated ids otherwise.
func render(_ ids: [Int32], bytes: Bool) -> String {
    bytes ? String(decoding: ids.map { UInt8(truncatingIfNeeded: $0) }, as: UTF8.self) : ids.map(String.init).joined(separator: " ")
}
