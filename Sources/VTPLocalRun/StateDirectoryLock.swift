import Foundation
import Synchronization
import SystemPackage
#if canImport(Glibc)
import Glibc
#endif

/// An advisory lock (`flock`) on a file in a run's state directory, released by `release()`, by
/// deinit, or by the kernel when the process dies, so a killed run never leaves it held.
///
/// Two locks tell who is using a state directory:
/// - `run.lock`: held exclusively by `vtp run` for its whole life. Held means a run is live.
/// - `server.lock`: held exclusively by whoever starts, uses and stops the private PostgreSQL:
///   the live `vtp run`, or a monitoring command that found no run and started the server for a
///   moment. Whoever holds it may stop the server; nobody else does.
///
public final class StateDirectoryLock: Sendable {
    /// The file name of the lock a live `vtp run` holds.
    public static let runLockName = "run.lock"
    /// The file name of the lock held by whoever runs the private PostgreSQL.
    public static let serverLockName = "server.lock"

    /// The lock file.
    public let path: String
    /// The open lock file; nil once released.
    private let descriptor: Mutex<FileDescriptor?>

    private init(path: String, descriptor: FileDescriptor) {
        self.path = path
        self.descriptor = Mutex(descriptor)
    }

    deinit { release() }

    /// Takes the lock on `path` (creating the file) if nobody holds it; nil when someone does.
    /// `shared` locks coexist with each other, never with an exclusive one.
    public static func attempt(_ path: String, shared: Bool = false) throws -> StateDirectoryLock? {
        // Close-on-exec: a worker or the PostgreSQL server started while the lock is held must not
        // inherit it and keep holding it after this process is gone.
        let descriptor: FileDescriptor
        do {
            descriptor = try FileDescriptor.open(FilePath(path), .readWrite, options: [.create, .closeOnExec],
                                                 permissions: [.ownerReadWrite])
        } catch {
            throw LocalRunError.stateDirectory(path: path, reason: "cannot open the lock file: \(reason(error))")
        }
        do {
            if try descriptor.tryLock(shared: shared) { return StateDirectoryLock(path: path, descriptor: descriptor) }
            try? descriptor.close()
            return nil
        } catch {
            try? descriptor.close()
            throw LocalRunError.stateDirectory(path: path, reason: "cannot lock: \(reason(error))")
        }
    }

    /// strerror's text, as the rest of vtp words a failed system call.
    private static func reason(_ error: any Error) -> String {
        guard let code = error as? Errno else { return "\(error)" }
        return String(cString: strerror(code.rawValue))
    }

    /// Takes the lock, trying again until `timeout` passes; nil if it is still held then.
    public static func acquire(_ path: String, timeout: Duration) async throws -> StateDirectoryLock? {
        let deadline = ContinuousClock.now + timeout
        while true {
            if let lock = try attempt(path) { return lock }
            if ContinuousClock.now >= deadline { return nil }
            try await Task.sleep(for: .milliseconds(50))
        }
    }

    /// Whether someone holds `path` exclusively, tested without waiting. The probe holds a
    /// shared lock for an instant, which is why takers of the exclusive lock retry briefly.
    public static func isHeld(_ path: String) throws -> Bool {
        guard FileManager.default.fileExists(atPath: path) else { return false }
        guard let probe = try attempt(path, shared: true) else { return true }
        probe.release()
        return false
    }

    /// Records this process's id in the file, for messages naming who holds the lock.
    public func recordHolder() {
        descriptor.withLock { descriptor in
            guard let descriptor else { return }
            try? descriptor.resize(to: 0)
            _ = try? descriptor.writeAll(toAbsoluteOffset: 0, "\(getpid())\n".utf8)
        }
    }

    /// The process id the last holder recorded, if any.
    public static func holder(_ path: String) -> String? {
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else { return nil }
        let line = text.trimmingCharacters(in: .whitespacesAndNewlines)
        return line.isEmpty ? nil : line
    }

    /// Lets go of the lock; later calls do nothing.
    public func release() {
        descriptor.withLock { descriptor in
            try? descriptor?.close()
            descriptor = nil
        }
    }
}

extension FileDescriptor {
    /// `flock(2)` without waiting, which swift-system does not wrap: true when the lock was taken,
    /// false when someone else holds it (`EWOULDBLOCK`). A signal interrupting the call is retried.
    func tryLock(shared: Bool) throws(Errno) -> Bool {
        while true {
            if flock(rawValue, (shared ? LOCK_SH : LOCK_EX) | LOCK_NB) == 0 { return true }
            let code = Errno(rawValue: errno)
            switch code {
            case .interrupted: continue
            case .wouldBlock, .resourceTemporarilyUnavailable: return false
            default: throw code
            }
        }
    }
}

/// Problems with a run's state directory that a user can act on.
public enum LocalRunError: Error, CustomStringConvertible, Sendable, Equatable {
    /// A state-directory step failed; names the path.
    case stateDirectory(path: String, reason: String)
    /// Another `vtp run` is using the state directory.
    case stateDirectoryBusy(path: String, holder: String?)
    /// The state directory has no private ledger to read.
    case noPrivateLedger(stateDirectory: String, reason: String)
    /// The input no longer lists what the job was made from (`change` says how), and the run
    /// was not asked to take the changes in.
    case inputChanged(job: Int64, input: String, change: String)
    /// `--update` would renumber labels: the input's class list changed.
    case classesChanged(job: Int64, input: String, detail: String)

    public var description: String {
        switch self {
        case let .stateDirectory(path, reason): "\(path): \(reason)"
        case let .stateDirectoryBusy(path, holder):
            "another vtp run\(holder.map { " (pid \($0))" } ?? "") is using the state directory \(path); "
                + "wait for it to finish, or give this run its own --state-dir"
        case let .noPrivateLedger(directory, reason): "\(directory): \(reason)"
        case let .inputChanged(job, input, change):
            "\(input) changed since job \(job) was created from it: \(change); run the same command with --update "
                + "to add the new items to the same output (missing ones keep their outputs), or give a new --output"
        case let .classesChanged(job, input, detail):
            "\(input): the class list changed since job \(job) was created (\(detail)); the labels of its done items would "
                + "change meaning, so --update cannot add to it: give a new --output"
        }
    }
}
