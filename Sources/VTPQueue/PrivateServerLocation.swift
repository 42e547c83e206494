import Foundation
import VTPVocabulary
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Where the private PostgreSQL of a state directory (`vtp run`'s `<output>/.vtp-state`) keeps
/// its files.
///
/// A process that is not root keeps them in `<state>/postgres`, as vtp always has. PostgreSQL
/// refuses to run as root, so for root the server runs as the `postgres` user, which must be
/// able to reach its directory. An output under `/root`, under any 0700 directory, or made with
/// umask 077 is out of that user's reach, and loosening the permissions of the user's
/// directories is not vtp's to do. Root therefore keeps each server in its own directory under a
/// root-owned, world-searchable server root (``defaultRoot``, or `$VTP_POSTGRES_ROOT`), owned by
/// `postgres`, and writes a pointer file (`<state>/postgres.location`) naming it, so the job's
/// state stays findable from the output directory. A state directory written by an earlier
/// version (`<state>/postgres/data`) keeps its layout and resumes where it is.
public enum PrivateServerLocation {
    /// The pointer file in a state directory that names a server directory kept elsewhere.
    public static let pointerFileName = "postgres.location"
    /// A file in each server directory under the root naming the state directory it serves, so
    /// a copied output is not mistaken for the one it was copied from.
    public static let ownerFileName = "vtp-state-directory"
    /// Environment variable that replaces ``defaultRoot``.
    public static let rootEnvironmentKey = "VTP_POSTGRES_ROOT"
    /// Where root keeps private servers unless `$VTP_POSTGRES_ROOT` says otherwise.
    public static let defaultRoot = "/var/lib/vtp/postgres"
    /// The directory name of the layout every non-root process (and every earlier version) uses.
    public static let inStateDirectoryName = "postgres"

    /// The server directory of `stateDirectory`, creating its place (and, for root, the pointer
    /// file) when it has none yet. The state directory must exist.
    ///
    /// - Parameter runAs: the user the server runs as when this process is root (nil when it
    ///   is not root): it must own the server directory and be able to search the root.
    public static func resolve(stateDirectory: URL, runAs: (uid: uid_t, gid: gid_t, name: String)?,
                               environment: [String: String] = ProcessInfo.processInfo.environment) throws -> URL {
        // One spelling whichever way it was found, so two resolutions compare equal.
        URL(fileURLWithPath: try locate(stateDirectory: stateDirectory, runAs: runAs, environment: environment).path,
            isDirectory: true)
    }

    private static func locate(stateDirectory: URL, runAs: (uid: uid_t, gid: gid_t, name: String)?,
                               environment: [String: String]) throws -> URL {
        let state = try canonical(stateDirectory)
        let inState = state.appendingPathComponent(inStateDirectoryName)
        if hasDataDirectory(inState) { return inState }
        if let named = try pointer(in: state) {
            try checkOwner(of: named, state: state, adopt: true)
            if !FileManager.default.fileExists(atPath: named.path), let runAs {
                // The pointer survives, the server directory does not (e.g. the root was wiped):
                // make a new one in the same place, and the caller starts a fresh ledger there.
                try makeRoot(named.deletingLastPathComponent(), runAs: runAs)
                try makeServerDirectory(named, state: state, runAs: runAs)
            }
            return named
        }
        guard let runAs else { return inState }
        let root = URL(fileURLWithPath: environment[rootEnvironmentKey].flatMap { $0.isEmpty ? nil : $0 } ?? defaultRoot)
            .standardizedFileURL
        try makeRoot(root, runAs: runAs)
        let directory = try claimServerDirectory(in: root, state: state, runAs: runAs)
        try writePointer(in: state, naming: directory)
        return directory
    }

    /// The server directory `stateDirectory` already has, creating nothing; nil when it has none
    /// (a state directory of a run that used an external database, or that never started).
    public static func existing(stateDirectory: URL) throws -> URL? {
        let state = try canonical(stateDirectory)
        let inState = state.appendingPathComponent(inStateDirectoryName)
        if hasDataDirectory(inState) { return URL(fileURLWithPath: inState.path, isDirectory: true) }
        guard let named = try pointer(in: state) else { return nil }
        try checkOwner(of: named, state: state, adopt: false)
        return hasDataDirectory(named) ? URL(fileURLWithPath: named.path, isDirectory: true) : nil
    }

    /// Whether `serverDirectory/data` holds an initialised cluster.
    public static func hasDataDirectory(_ serverDirectory: URL) -> Bool {
        FileManager.default.fileExists(atPath: serverDirectory.appendingPathComponent("data/PG_VERSION").path)
    }

    /// The server directory the pointer file of `state` names, if there is a pointer file.
    static func pointer(in state: URL) throws -> URL? {
        let file = state.appendingPathComponent(pointerFileName)
        guard FileManager.default.fileExists(atPath: file.path) else { return nil }
        let text: String
        do { text = try String(contentsOf: file, encoding: .utf8) } catch {
            throw EmbeddedPostgresError.fileSystem(path: file.path, reason: "cannot read the pointer to the private PostgreSQL: \(FileErrorText.reason(error))")
        }
        guard let line = text.split(separator: "\n").map({ $0.trimmingCharacters(in: .whitespaces) })
            .first(where: { $0.hasPrefix("/") }) else {
            throw EmbeddedPostgresError.fileSystem(path: file.path, reason: "expected the absolute path of the private PostgreSQL's directory on a line of its own; remove the file to start a new ledger")
        }
        return URL(fileURLWithPath: line).standardizedFileURL
    }

    /// Fails when the server directory belongs to another state directory that still points at
    /// it (this one is a copy); when `adopt`, takes over one whose state directory moved here.
    private static func checkOwner(of server: URL, state: URL, adopt: Bool) throws {
        let ownerFile = server.appendingPathComponent(ownerFileName)
        guard let recorded = try? String(contentsOf: ownerFile, encoding: .utf8)
            .trimmingCharacters(in: .whitespacesAndNewlines), !recorded.isEmpty, recorded != state.path else { return }
        let original = URL(fileURLWithPath: recorded)
        if (try? pointer(in: original))?.path == server.path {
            throw EmbeddedPostgresError.fileSystem(
                path: state.appendingPathComponent(pointerFileName).path,
                reason: "names the private PostgreSQL in \(server.path), which belongs to \(recorded) (this state directory looks copied from there); remove \(pointerFileName) here to give this output a new ledger")
        }
        if adopt { try writeOwner(state, in: server) }
    }

    /// Creates the missing directories of `root`, each root-owned and world-searchable (0755,
    /// set explicitly so a umask of 077 cannot make them unreachable), and checks that the server
    /// user can search every existing one.
    private static func makeRoot(_ root: URL, runAs: (uid: uid_t, gid: gid_t, name: String)) throws {
        var path = ""
        for component in root.path.split(separator: "/") {
            path += "/" + component
            var info = stat()
            if stat(path, &info) != 0 {
                guard errno == ENOENT else { throw fileError(path, "cannot inspect") }
                guard mkdir(path, 0o755) == 0 || errno == EEXIST else {
                    throw EmbeddedPostgresError.fileSystem(path: path, reason: "cannot create the private PostgreSQL root: \(String(cString: strerror(errno))); set \(rootEnvironmentKey) to a directory root can create, or pass --database URL")
                }
                guard chmod(path, 0o755) == 0 else { throw fileError(path, "cannot set mode 0755") }
                continue
            }
            guard info.st_mode & S_IFMT == S_IFDIR else {
                throw EmbeddedPostgresError.fileSystem(path: path, reason: "expected a directory (the private PostgreSQL root is \(root.path))")
            }
            let searchable = info.st_uid == runAs.uid ? info.st_mode & 0o100 != 0
                : info.st_gid == runAs.gid ? info.st_mode & 0o010 != 0 : info.st_mode & 0o001 != 0
            guard searchable else {
                throw EmbeddedPostgresError.fileSystem(path: path, reason: "mode \(String(info.st_mode & 0o7777, radix: 8)): the user '\(runAs.name)' that runs the private PostgreSQL cannot enter it; set \(rootEnvironmentKey) to a directory it can reach (every directory above it searchable), or pass --database URL")
            }
        }
    }

    /// A new server directory for `state` under `root`, named after the output so an
    /// administrator can tell them apart, and keyed by a hash of the state directory's path.
    private static func claimServerDirectory(in root: URL, state: URL, runAs: (uid: uid_t, gid: gid_t, name: String)) throws -> URL {
        let base = "\(readableName(state))-\(fnv1a(state.path))"
        for attempt in 1...100 {
            let candidate = root.appendingPathComponent(attempt == 1 ? base : "\(base)-\(attempt)")
            if FileManager.default.fileExists(atPath: candidate.path) {
                let owner = try? String(contentsOf: candidate.appendingPathComponent(ownerFileName), encoding: .utf8)
                    .trimmingCharacters(in: .whitespacesAndNewlines)
                // Made for this state directory, whose pointer file is gone: the output was deleted
                // to start over (the usual way), so its ledger describes files that no longer
                // exist. Resuming from it would count shards as done that have no outputs; a
                // fresh ledger redoes them instead.
                if owner == state.path {
                    try discardOrphan(candidate)
                    try makeServerDirectory(candidate, state: state, runAs: runAs)
                    return candidate
                }
                continue
            }
            try makeServerDirectory(candidate, state: state, runAs: runAs)
            return candidate
        }
        throw EmbeddedPostgresError.fileSystem(path: root.appendingPathComponent(base).path, reason: "100 server directories of that name exist; remove unused ones")
    }

    /// Stops a server a killed run may have left running in `directory` (immediate shutdown: its
    /// data is being thrown away) and removes the directory.
    private static func discardOrphan(_ directory: URL) throws {
        let pidFile = directory.appendingPathComponent("data/postmaster.pid").path
        if let text = try? String(contentsOfFile: pidFile, encoding: .utf8),
           let pid = text.split(separator: "\n").first.flatMap({ pid_t($0.trimmingCharacters(in: .whitespaces)) }), pid > 0,
           kill(pid, SIGQUIT) == 0 {
            for _ in 0..<100 where kill(pid, 0) == 0 { usleep(100_000) }
        }
        do { try FileManager.default.removeItem(at: directory) } catch {
            throw EmbeddedPostgresError.fileSystem(
                path: directory.path,
                reason: "cannot remove the ledger of an earlier output of the same path: \(FileErrorText.reason(error))")
        }
    }

    private static func makeServerDirectory(_ directory: URL, state: URL, runAs: (uid: uid_t, gid: gid_t, name: String)) throws {
        guard mkdir(directory.path, 0o700) == 0 else { throw fileError(directory.path, "cannot create") }
        guard chmod(directory.path, 0o700) == 0, chown(directory.path, runAs.uid, runAs.gid) == 0 else {
            throw fileError(directory.path, "cannot hand to user \(runAs.name)")
        }
        try writeOwner(state, in: directory)
    }

    private static func writeOwner(_ state: URL, in server: URL) throws {
        let file = server.appendingPathComponent(ownerFileName)
        do { try Data((state.path + "\n").utf8).write(to: file, options: .atomic) } catch {
            throw EmbeddedPostgresError.fileSystem(path: file.path, reason: "cannot write: \(FileErrorText.reason(error))")
        }
    }

    private static func writePointer(in state: URL, naming server: URL) throws {
        let file = state.appendingPathComponent(pointerFileName)
        let text = """
            # The private PostgreSQL (job ledger) of this vtp run lives in the directory below. vtp
            # runs it as user postgres (PostgreSQL refuses to run as root), so it is kept where that
            # user can reach it. Removing this file makes the next run start a new ledger (and redo
            # the job); removing the output does not remove that directory.
            \(server.path)

            """
        do { try Data(text.utf8).write(to: file, options: .atomic) } catch {
            throw EmbeddedPostgresError.fileSystem(path: file.path, reason: "cannot write the pointer to the private PostgreSQL: \(FileErrorText.reason(error))")
        }
    }

    /// The state directory with symlinks resolved, so two spellings of one output agree.
    private static func canonical(_ directory: URL) throws -> URL {
        guard let resolved = realpath(directory.path, nil) else {
            throw fileError(directory.path, "cannot resolve the state directory")
        }
        defer { free(resolved) }
        return URL(fileURLWithPath: String(cString: resolved))
    }

    /// The output's name (the state directory's own when it is not `.vtp-state`), reduced to
    /// characters safe in a directory name and short enough for the server's socket path.
    static func readableName(_ state: URL) -> String {
        let named = state.lastPathComponent == ".vtp-state" ? state.deletingLastPathComponent() : state
        let safe = named.lastPathComponent.unicodeScalars.map { scalar -> Character in
            CharacterSet.alphanumerics.contains(scalar) && scalar.isASCII || "-_.".unicodeScalars.contains(scalar)
                ? Character(scalar) : "_"
        }
        let trimmed = String(String(safe).drop(while: { $0 == "." }).prefix(24))
        return trimmed.isEmpty ? "run" : trimmed
    }

    static func fnv1a(_ text: String) -> String {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in text.utf8 { hash = (hash ^ UInt64(byte)) &* 0x100_0000_01b3 }
        let digits = String(hash, radix: 16)
        return String(repeating: "0", count: 16 - digits.count) + digits
    }

    private static func fileError(_ path: String, _ what: String) -> EmbeddedPostgresError {
        .fileSystem(path: path, reason: "\(what): \(String(cString: strerror(errno)))")
    }
}
