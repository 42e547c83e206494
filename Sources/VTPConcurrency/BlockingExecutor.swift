import Foundation

/// A dedicated thread that runs blocking libpq calls one at a time, in submission order,
/// so they never occupy Swift's cooperative thread pool.
public final class BlockingExecutor: Sendable {
    private let queue: WorkQueue

    /// Starts the thread, named `name`.
    public init(name: String) {
        queue = WorkQueue()
        let thread = Thread { [queue] in queue.runLoop() }
        thread.name = name
        thread.start()
    }

    deinit { queue.stop() }

    /// Queues `work` to run on the thread.
    public func submit(_ work: @escaping @Sendable () -> Void) { queue.push(work) }

    /// Runs `work` on the thread and suspends the caller until it finishes.
    public func run<T: Sendable>(_ work: @escaping @Sendable () throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { continuation in
            submit { continuation.resume(with: Result { try work() }) }
        }
    }
}

/// The job list shared between submitters and the executor thread.
///
/// `@unchecked Sendable` is safe because every stored property is read and written only while
/// holding `condition`'s lock.
private final class WorkQueue: @unchecked Sendable {
    // NSCondition, not Mutex: threads sleep on it until another signals (Mutex has no condition variable).
    private let condition = NSCondition()
    private var jobs: [@Sendable () -> Void] = []
    private var stopping = false

    func push(_ job: @escaping @Sendable () -> Void) {
        condition.lock()
        jobs.append(job)
        condition.signal()
        condition.unlock()
    }

    func stop() {
        condition.lock()
        stopping = true
        condition.signal()
        condition.unlock()
    }

    /// Runs until stopped, finishing queued work first so no continuation is left hanging.
    func runLoop() {
        while true {
            condition.lock()
            while jobs.isEmpty && !stopping { condition.wait() }
            if jobs.isEmpty && stopping {
                condition.unlock()
                return
            }
            let batch = jobs
            jobs.removeAll()
            condition.unlock()
            for job in batch { job() }
        }
    }
}
