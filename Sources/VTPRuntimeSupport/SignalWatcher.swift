import Dispatch
import Synchronization
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Turns SIGTERM/SIGINT into an `AsyncStream` so long-lived components shut down gracefully
/// instead of dying mid-write.
///
/// While the watcher runs, the signals are delivered through `DispatchSource`, which reads them on
/// its own queue (never the cooperative pool): the default disposition of each is replaced by
/// "ignore" (Darwin) or by libdispatch's relay handler (Linux, where libdispatch reads them from a
/// signalfd). `stop()` (or deinit) cancels the sources, puts back the dispositions
/// that were in place before and finishes `signals`, so a process that embeds a run (tests, a
/// long-lived host) gets its own signal handling back afterwards.
public final class SignalWatcher: Sendable {
    /// Each watched signal received, in order; finishes when the watcher stops.
    public let signals: AsyncStream<Int32>
    private let continuation: AsyncStream<Int32>.Continuation
    /// What was installed per signal, and the disposition to put back; nil once stopped.
    private let installed: Mutex<[(number: Int32, previous: sigaction, source: any DispatchSourceSignal)]?>

    /// Starts watching `numbers` (default: SIGTERM and SIGINT).
    public init(_ numbers: [Int32] = [SIGTERM, SIGINT]) {
        let (stream, continuation) = AsyncStream.makeStream(of: Int32.self)
        signals = stream
        self.continuation = continuation
        let queue = DispatchQueue(label: "vtp.signals")
        installed = Mutex(numbers.map { number in
            var previous = sigaction()
            sigaction(number, nil, &previous)
            let current = Self.handler(previous)
            if current != unsafeBitCast(SIG_DFL, to: Int.self), current != unsafeBitCast(SIG_IGN, to: Int.self) {
                // A handler is in place, libdispatch's for another source of this signal (a
                // ServiceGroup's, say): it serves this source too, so leave it and remember it.
                dispatchRelays.withLock { $0[number] = previous }
            } else if var relay = dispatchRelays.withLock({ $0[number] }) {
                // An earlier watcher put the previous handler back; libdispatch will not reinstall its own.
                sigaction(number, &relay, nil)
            } else {
                signal(number, SIG_IGN)
            }
            let source = DispatchSource.makeSignalSource(signal: number, queue: queue)
            source.setEventHandler { continuation.yield(number) }
            source.resume()
            return (number, previous, source)
        })
    }

    /// Stops watching: no more signals are delivered to `signals` (which finishes) and every
    /// watched signal gets back the disposition it had before `init`. Idempotent.
    public func stop() {
        installed.withLock { entries in
            guard let current = entries else { return }
            entries = nil
            for entry in current.reversed() {
                entry.source.cancel()
                var now = sigaction()
                sigaction(entry.number, nil, &now)
                if Self.handler(now) != Self.handler(entry.previous), Self.handler(now) != unsafeBitCast(SIG_IGN, to: Int.self) {
                    dispatchRelays.withLock { $0[entry.number] = now }
                }
                var previous = entry.previous
                sigaction(entry.number, &previous, nil)
            }
        }
        continuation.finish()
    }

    /// A disposition's handler address, for comparisons.
    private static func handler(_ action: sigaction) -> Int {
        #if canImport(Glibc)
        unsafeBitCast(action.__sigaction_handler.sa_handler, to: Int.self)
        #else
        unsafeBitCast(action.__sigaction_u.__sa_handler, to: Int.self)
        #endif
    }

    deinit { stop() }
}

/// On Linux, libdispatch turns a signal into source events through a handler of its own, which it
/// installs the first time any source watches that signal and never again. Each one seen is kept
/// here so a watcher that starts after an earlier one restored the previous handler can put
/// libdispatch's back.
private let dispatchRelays = Mutex<[Int32: sigaction]>([:])
