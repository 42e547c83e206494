import ArgumentParser
import Logging
import VTPMetrics
import VTPSettings

/// `--log-format` and `--log-level` of the long-running commands (`vtp coordinator`,
/// `vtp worker`, `vtp run`); each wins over `logging.format` / `logging.level` of the
/// configuration file. docs/monitoring.md describes the lines and their events.
struct LoggingOptions: ParsableArguments {
    @Option(name: .customLong("log-format"),
            help: "Log lines as text (default), logfmt or json (one object per line); overrides logging.format.")
    var logFormat: String?

    @Option(name: .customLong("log-level"),
            help: "Least severe level logged: trace, debug, info (default), notice, warning, error or critical; overrides logging.level.")
    var logLevel: String?

    func validate() throws {
        _ = try choose(nil)
    }

    /// The options over `settings` (nil: the file could not be read; its problem is reported
    /// after this, in the chosen format).
    func choose(_ settings: ClusterSettings?, source: String? = nil) throws -> (format: LogFormat, level: Logger.Level) {
        do {
            return try VTPLogging.choose(formatOption: logFormat, levelOption: logLevel,
                                         configuredFormat: settings?.logging.format, configuredLevel: settings?.logging.level,
                                         configurationSource: source ?? "configuration")
        } catch {
            throw ValidationError(error.description)
        }
    }

    /// Loads the configuration file at `config` and installs the process's log handler in the
    /// chosen format and level, before anything logs. A configuration problem is thrown only
    /// after that, so with `--log-format json` even it reaches the terminal as a JSON line.
    func start(config: String?) throws -> (settings: ClusterSettings, format: LogFormat, level: Logger.Level) {
        let loaded = Result { try ClusterSetup.settings(config) }
        let choice = try choose(try? loaded.get(), source: config)
        VTPLogging.bootstrap(level: choice.level, format: choice.format)
        return (try loaded.get(), choice.format, choice.level)
    }
}
