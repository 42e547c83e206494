import Dispatch
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Turns SIGTERM/SIGINT into an `AsyncStream` so long-lived components shut down gracefully
/// instead of dying mid-write.
///
/// The default disposition of each watched signal is replaced by "ignore" while the watcher lives,
/// and the signals are delivered through `DispatchSource`, which reads them on its own queue
/// (never the cooperative pool).
///
/// `@unchecked Sendable`: `sources` is written once in `init` and afterwards only cancelled in
/// `deinit`; dispatch sources are themselves thread-safe.
public final class SignalWatcher: @unchecked Sendable {
    /// Each watched signal received, in order.
    public let signals: AsyncStream<Int32>
    private let sources: [any DispatchSourceSignal]

    /// Starts watching `numbers` (default: SIGTERM and SIGINT).
    public init(_ numbers: [Int32] = [SIGTERM, SIGINT]) {
        let (stream, continuation) = AsyncStream.makeStream(of: Int32.self)
        signals = stream
        let queue = DispatchQueue(label: "vtp.signals")
        sources = numbers.map { number in
            signal(number, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: number, queue: queue)
            source.setEventHandler { continuation.yield(number) }
            source.resume()
            return source
        }
    }

    deinit { for source in sources { source.cancel() } }
}
