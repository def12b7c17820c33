import ArgumentParser
import Foundation

@main
struct ZeroTrain: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "zero-train",
        abstract: "Distributed ZeRO training on CPUs: sharded mixed-precision AdamW over MPI, bit-reproducible across stages and rank counts.",
        discussion: """
        Run it under mpirun (one process per rank) or simulate N ranks in one process:
          mpirun -n 4 zero-train                 train gpt-small on the embedded corpus
          zero-train --simulate 4 --stage 3      the same, 4 ranks as threads
          zero-train memory --params 7.5e9 --ranks 64
          zero-train bench comm | step | optimizer
        """,
        subcommands: [Train.self, Bench.self, Memory.self, Export.self, Sample.self, Plot.self, SelfTestComm.self],
        defaultSubcommand: Train.self
    )

    /// Argument errors in one line ("zero-train: error: ...", AP's exit code) instead of the
    /// message, the usage and a pointer to --help; --help itself prints as usual.
    static func main() {
        var command: any ParsableCommand
        do {
            command = try parseAsRoot()
        } catch {
            let code = exitCode(for: error)
            if code == .success { exit(withError: error) }
            let message = message(for: error).split(separator: "\n").first.map(String.init) ?? "\(error)"
            FileHandle.standardError.write(Data("zero-train: error: \(message)\n".utf8))
            Foundation.exit(code.rawValue)
        }
        do { try command.run() } catch { exit(withError: error) }
    }
}

struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Measure a hot path next to the limit it chases (memory bandwidth, sgemm, raw MPI).",
        subcommands: [BenchComm.self, BenchStep.self, BenchOptimizer.self, BenchKernels.self]
    )
}
