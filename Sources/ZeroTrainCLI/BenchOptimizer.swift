import ArgumentParser

struct BenchOptimizer: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "optimizer", abstract: "(not yet implemented)")
    func run() throws {
        throw ValidationError("'optimizer' is not implemented yet")
    }
}
