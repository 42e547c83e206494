import Foundation

/// Runs blocking or CPU-bound work (finalizers, process waits, file scans) on a thread of its own
/// so it never occupies one of the cooperative pool's few threads.
public enum BlockingWork {
    /// Runs `body` on a new thread and resumes the caller with its result.
    public static func run<T: Sendable>(name: String = "vtp-blocking",
                                        _ body: @escaping @Sendable () throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { continuation in
            let thread = Thread {
                do { continuation.resume(returning: try body()) } catch { continuation.resume(throwing: error) }
            }
            thread.name = name
            thread.stackSize = 8 << 20
            thread.start()
        }
    }
}
