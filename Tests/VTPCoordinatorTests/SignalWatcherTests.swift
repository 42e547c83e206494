import Testing
import VTPRuntimeSupport
#if canImport(Glibc)
import Glibc
#endif

/// `SignalWatcher` streams the signals it watches and, when stopped, gives the process back the
/// handler it had before (so a run embedded in a long-lived process, such as a test runner, does
/// not leave SIGINT/SIGTERM ignored), and a later watcher of the same signal still gets it.
/// SIGUSR1 stands in for them; nothing else here uses it. Signals are sent to the process (`kill`),
/// as a terminal or a supervisor does: libdispatch's threads block them, so a thread-directed
/// `raise` from a cooperative thread would stay pending.
@Suite(.serialized, .timeLimit(.minutes(1))) struct SignalWatcherTests {
    @Test func deliversWatchedSignalsThenRestoresThePreviousHandler() async throws {
        var original = sigaction()
        var mine = sigaction()
        mine.__sigaction_handler.sa_handler = { _ in }
        sigaction(SIGUSR1, &mine, &original)
        defer { sigaction(SIGUSR1, &original, nil) }

        for round in 1...2 {
            let watcher = SignalWatcher([SIGUSR1])
            // libdispatch registers the source asynchronously, so keep signalling until it is heard.
            let received = await withTaskGroup(of: Int32?.self) { group in
                group.addTask {
                    for await number in watcher.signals { return number }
                    return nil
                }
                group.addTask {
                    while !Task.isCancelled {
                        kill(getpid(), SIGUSR1)
                        try? await Task.sleep(for: .milliseconds(50))
                    }
                    return nil
                }
                let first = await group.next() ?? nil
                group.cancelAll()
                return first
            }
            #expect(received == SIGUSR1, "round \(round): the watcher sees the signal")

            watcher.stop()
            for await _ in watcher.signals {}  // finished by stop(), so this ends
            var now = sigaction()
            sigaction(SIGUSR1, nil, &now)
            #expect(unsafeBitCast(now.__sigaction_handler.sa_handler, to: Int.self)
                    == unsafeBitCast(mine.__sigaction_handler.sa_handler, to: Int.self), "round \(round): the old handler is back")
            watcher.stop()  // idempotent
        }
    }
}
