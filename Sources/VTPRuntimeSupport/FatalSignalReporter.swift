import Foundation
import Synchronization
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Lets a process say what is killing it before a fatal signal (SIGSEGV, SIGBUS, SIGILL, SIGFPE,
/// SIGABRT, SIGTRAP: a crash, a failed allocation, a Swift runtime trap) ends it.
///
/// Almost nothing is allowed inside a signal handler, so the handler only writes the signal number
/// to a pipe and waits (with `poll`, at most `grace` seconds) for a reporter thread started at
/// install time to acknowledge it. The reporter runs `report` as ordinary code (it may allocate,
/// lock, send a message), then the handler puts back the disposition that was there before (the
/// Swift runtime's backtracer, or the default action) and raises the signal again, so the process
/// still prints its backtrace and dies of that signal (supervisors and core dumps see the cause).
/// If the crash left the process unable to run the reporter (it died inside `malloc` holding its
/// lock), the wait runs out and the process dies unreported, as it would have anyway.
///
/// SIGKILL cannot be caught: a worker killed from outside (an operator, the OOM killer) reports
/// nothing, which is what tells a kill from a crash.
public enum FatalSignalReporter {
    /// The signals reported.
    public static let signals: [Int32] = [SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGABRT, SIGTRAP]

    private static let installed = Mutex(false)

    /// Installs the handlers once per process (later calls do nothing) and starts the reporter
    /// thread. `report` receives the signal number on that thread.
    public static func install(grace: Double = 2, report: @escaping @Sendable (Int32) -> Void) {
        let first = installed.withLock { done -> Bool in
            defer { done = true }
            return !done
        }
        guard first else { return }
        var signalPipe: [Int32] = [-1, -1], ackPipe: [Int32] = [-1, -1]
        guard pipe(&signalPipe) == 0, pipe(&ackPipe) == 0 else { return }
        FatalSignalState.signalWrite = signalPipe[1]
        FatalSignalState.ackRead = ackPipe[0]
        FatalSignalState.graceMilliseconds = Int32(max(0, min(60, grace)) * 1000)
        let signalRead = signalPipe[0], ackWrite = ackPipe[1]
        let thread = Thread {
            var byte: UInt8 = 0
            // Raw read(2), not swift-system: this pipe's other end is the async-signal-safe handler's, plain calls only.
            while read(signalRead, &byte, 1) < 0 && errno == EINTR {}
            report(Int32(byte))
            _ = write(ackWrite, &byte, 1)
        }
        thread.name = "vtp-crash-report"
        thread.start()
        let previous = UnsafeMutablePointer<sigaction>.allocate(capacity: signals.count)
        let numbers = UnsafeMutablePointer<Int32>.allocate(capacity: signals.count)
        for (index, number) in signals.enumerated() {
            numbers[index] = number
            previous[index] = sigaction()
            sigaction(number, nil, previous + index)
        }
        FatalSignalState.previous = previous
        FatalSignalState.numbers = numbers
        FatalSignalState.count = signals.count
        for number in signals {
            var action = sigaction()
            #if canImport(Glibc)
            action.__sigaction_handler.sa_handler = fatalSignalHandler
            #else
            action.__sigaction_u.__sa_handler = fatalSignalHandler
            #endif
            sigemptyset(&action.sa_mask)
            // Back to the default at once, so a fault inside the handler (or a second crash) kills.
            action.sa_flags = Int32(bitPattern: UInt32(truncatingIfNeeded: SA_RESETHAND))
            sigaction(number, &action, nil)
        }
    }

    /// `SIGSEGV` and the like, for messages.
    public static func name(of signal: Int32) -> String {
        switch signal {
        case SIGSEGV: "SIGSEGV"
        case SIGBUS: "SIGBUS"
        case SIGILL: "SIGILL"
        case SIGFPE: "SIGFPE"
        case SIGABRT: "SIGABRT"
        case SIGTRAP: "SIGTRAP"
        default: "signal \(signal)"
        }
    }
}

/// What the handler reads: set once before the handlers are installed, never changed after.
private enum FatalSignalState {
    nonisolated(unsafe) static var signalWrite: Int32 = -1
    nonisolated(unsafe) static var ackRead: Int32 = -1
    nonisolated(unsafe) static var graceMilliseconds: Int32 = 2000
    /// The dispositions replaced, by position in `numbers` (allocated once, never freed).
    nonisolated(unsafe) static var previous: UnsafeMutablePointer<sigaction>?
    nonisolated(unsafe) static var numbers: UnsafeMutablePointer<Int32>?
    nonisolated(unsafe) static var count = 0
    /// Only the first crashing thread reports; others wait for the process to end.
    static let reporting = Atomic<Bool>(false)
}

/// Async-signal-safe: `write`, `poll`, `sigaction`, `signal` and `raise` only.
private func fatalSignalHandler(_ number: Int32) {
    if !FatalSignalState.reporting.exchange(true, ordering: .relaxed) {
        var byte = UInt8(truncatingIfNeeded: number)
        _ = write(FatalSignalState.signalWrite, &byte, 1)
        var wait = pollfd(fd: FatalSignalState.ackRead, events: Int16(POLLIN), revents: 0)
        _ = poll(&wait, 1, FatalSignalState.graceMilliseconds)
    } else {
        var never = pollfd(fd: -1, events: 0, revents: 0)
        _ = poll(&never, 0, FatalSignalState.graceMilliseconds)
    }
    var restored = false
    if let numbers = FatalSignalState.numbers, let previous = FatalSignalState.previous {
        for index in 0..<FatalSignalState.count where numbers[index] == number {
            restored = sigaction(number, previous + index, nil) == 0
        }
    }
    if !restored { signal(number, SIG_DFL) }
    raise(number)
}
