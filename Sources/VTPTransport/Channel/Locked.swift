import Foundation

/// A value guarded by a lock, shared between callers and an endpoint's I/O thread.
///
/// `@unchecked Sendable`: every access to `state` goes through `withLock`, which holds `lock`, so no two
/// threads ever touch the value at once; `State` itself must be `Sendable` to cross threads.
final class Locked<State: Sendable>: @unchecked Sendable {
    private let lock = NSLock()
    private var state: State

    init(_ state: State) { self.state = state }

    func withLock<R>(_ body: (inout State) throws -> R) rethrows -> R {
        lock.lock()
        defer { lock.unlock() }
        return try body(&state)
    }
}
