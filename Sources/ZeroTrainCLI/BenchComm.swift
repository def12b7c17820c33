import ArgumentParser

struct BenchComm: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "comm", abstract: "(not yet implemented)")
    func run() throws {
        throw ValidationError("'comm' is not implemented yet")
    }
}
