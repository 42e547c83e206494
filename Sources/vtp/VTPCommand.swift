import ArgumentParser

/// The `vtp` command line: model tools, dataset jobs, cluster runtime and monitoring.
@main
struct VTPCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "vtp",
        abstract: "Run the VTP visual tokenizer at dataset scale on CPU clusters.",
        version: "0.1.0",
        subcommands: [
            ModelCommand.self,
            TextCommand.self,
            BenchCommand.self,
            KeysCommand.self,
            ImageCommand.self,
            SearchCommand.self,
            DatabaseCommand.self,
            StatusCommand.self,
            WorkersCommand.self,
            TopCommand.self,
            JobsCommand.self,
            JobCommand.self,
            FailuresCommand.self,
            CoordinatorCommand.self,
            WorkerCommand.self,
            RunCommand.self,
            SubmitCommand.self,
        ]
    )
}
