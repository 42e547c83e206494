import ArgumentParser

/// `vtp model ...`: inspect, run and create VTP checkpoints.
struct ModelCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "model",
        abstract: "Inspect, run and create VTP checkpoints.",
        subcommands: []
    )
}
