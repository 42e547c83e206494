import ArgumentParser
import Logging
import VTPMetrics
import VTPVocabulary

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

    /// ArgumentParser's entry point, except that a Foundation file error that reaches the top is
    /// printed in words with its path (``FileErrorText``), never as `NSCocoaErrorDomain Code=512`.
    static func main() async {
        do {
            var command = try parseAsRoot()
            if var asyncCommand = command as? any AsyncParsableCommand {
                try await asyncCommand.run()
            } else {
                try command.run()
            }
        } catch {
            let reported = FileErrorText.isFileSystemError(error) ? CLIError(FileErrorText.describe(error)) : error
            let code = exitCode(for: reported)
            if VTPLogging.installedFormat == .json && code != .success {
                // A collector reads every line as JSON: the last one too, then the same exit status.
                let message = message(for: reported)
                if !message.isEmpty {
                    Logger(label: "vtp").critical("fatal error", metadata: ["event": "fatal_error", "error": .string(message),
                                                                            "exit_code": "\(code.rawValue)"])
                }
                exit(withError: code)
            }
            exit(withError: reported)
        }
    }
}
