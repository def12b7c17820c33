import ArgumentParser

struct BenchStep: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "step", abstract: "(not yet implemented)")
    func run() throws {
        throw ValidationError("'step' is not implemented yet")
    }
}
