import Foundation
import VTPVocabulary
#if canImport(Glibc)
import Glibc
#endif

/// A child started with `posix_spawn` in its own process group and reaped with `waitpid` by the
/// test itself. (Foundation's `Process` learns of a child's death through a descriptor the child
/// inherits; a PostgreSQL server that outlives a killed `vtp run` would keep it open, so the test
/// could never observe the exit.)
struct SpawnedProcess {
    let pid: pid_t

    /// How the child ended.
    enum Ending: Equatable {
        case exited(Int32)
        case signalled(Int32)
    }

    struct SpawnError: Error, CustomStringConvertible {
        let code: Int32
        var description: String { "posix_spawn failed: \(String(cString: strerror(code)))" }
    }

    /// Runs `path` with `arguments`, stdout and stderr to files, stdin from /dev/null.
    static func start(_ path: String, _ arguments: [String], stdout: String, stderr: String) throws -> SpawnedProcess {
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, stdout, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        posix_spawn_file_actions_addopen(&actions, 2, stderr, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETPGROUP))
        posix_spawnattr_setpgroup(&attributes, 0)
        let argv: [UnsafeMutablePointer<CChar>?] = ([path] + arguments).map { strdup($0) } + [nil]
        defer { for pointer in argv { free(pointer) } }
        var pid: pid_t = 0
        let code = posix_spawn(&pid, path, &actions, &attributes, argv, environ)
        guard code == 0 else { throw SpawnError(code: code) }
        return SpawnedProcess(pid: pid)
    }

    /// The ending, once the child has ended (reaping it); nil while it runs.
    func poll() -> Ending? {
        var status: Int32 = 0
        guard waitpid(pid, &status, WNOHANG) == pid else { return nil }
        return status & 0x7f == 0 ? .exited((status >> 8) & 0xff) : .signalled(status & 0x7f)
    }

    /// Waits up to `seconds` for the child to end.
    func wait(seconds: Double) async throws -> Ending? {
        let deadline = ContinuousClock.now + .milliseconds(Int64(seconds * 1000))
        while ContinuousClock.now < deadline {
            if let ending = poll() { return ending }
            try await Task.sleep(for: .milliseconds(100))
        }
        return poll()
    }
}
