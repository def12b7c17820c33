import ArgumentParser

struct Memory: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "memory", abstract: "(not yet implemented)")
    func run() throws {
        throw ValidationError("'memory' is not implemented yet")
    }
}
