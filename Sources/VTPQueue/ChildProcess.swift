import Foundation
import VTPVocabulary
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// posix_spawn + waitpid for the PostgreSQL server tools. Foundation's `Process.waitUntilExit`
/// can miss a child's exit when several are spawned concurrently on Linux; a direct `waitpid`
/// on the child's pid cannot.
enum ChildProcess {
    /// Runs `argv` with stdin from /dev/null and stdout+stderr appended to `outputPath`;
    /// blocks until it exits and returns its exit status (128+signal when killed).
    static func run(_ argv: [String], environment: [String: String], directory: String,
                    outputPath: String) throws -> Int32 {
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, outputPath, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        posix_spawn_file_actions_adddup2(&actions, 1, 2)
        // `env -C` sets the working directory (posix_spawn_file_actions_addchdir_np is not
        // visible to Swift); tools run as another user need a directory they can access.
        let argv = ["/usr/bin/env", "-C", directory] + argv
        let arguments = argv.map { strdup($0) } + [nil]
        let variables = environment.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer {
            arguments.forEach { free($0) }
            variables.forEach { free($0) }
        }
        var pid: pid_t = 0
        let spawned = posix_spawn(&pid, argv[0], &actions, nil, arguments, variables)
        guard spawned == 0 else {
            throw EmbeddedPostgresError.commandFailed(command: argv[0], status: -1,
                                                      output: "cannot start: \(String(cString: strerror(spawned)))")
        }
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 {
            guard errno == EINTR else {
                throw EmbeddedPostgresError.commandFailed(command: argv[0], status: -1,
                                                          output: "waitpid failed: \(String(cString: strerror(errno)))")
            }
        }
        // WIFEXITED / WEXITSTATUS / WTERMSIG spelled out: the macros do not import into Swift.
        let signal = status & 0x7f
        return signal == 0 ? (status >> 8) & 0xff : 128 + signal
    }

    /// The stdout of a short command, or nil if it fails.
    static func output(of argv: [String]) -> String? {
        let path = NSTemporaryDirectory() + "vtp-child-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: path) }
        guard let status = try? run(argv, environment: ProcessInfo.processInfo.environment,
                                    directory: FileManager.default.currentDirectoryPath, outputPath: path),
              status == 0 else { return nil }
        return try? String(contentsOfFile: path, encoding: .utf8)
    }
}
