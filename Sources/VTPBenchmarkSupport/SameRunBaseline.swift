import Foundation
import Synchronization

/// An operation timed against its baseline in the same process, so the ratio between the two is
/// meaningful on the machine at hand whatever else it is doing (a number from another run or
/// another machine is not).
///
/// The baseline is timed once, when the comparison is made (best of `runs`); the operation is
/// timed by every ``measure(_:)`` call, and ``report`` prints the best of each and their ratio.
/// Best, not mean: the best run is the one least disturbed by other processes, for both sides alike.
public final class SameRunBaseline: Sendable {
    /// What is measured, e.g. "encode bf16".
    public let name: String
    /// What it is compared with, e.g. "encode fp32 of the same batch".
    public let baselineName: String
    /// Best wall time of one baseline run, in seconds.
    public let baselineSeconds: Double
    private let best = Mutex<Double>(.infinity)

    /// Times `baseline` `runs` times after one warm-up run and keeps the best.
    public init(_ name: String, against baselineName: String, runs: Int = 10, baseline: () throws -> Void) rethrows {
        self.name = name
        self.baselineName = baselineName
        try baseline()
        var fastest = Double.infinity
        for _ in 0..<max(1, runs) {
            fastest = min(fastest, try Self.seconds(baseline))
        }
        baselineSeconds = fastest
    }

    /// A comparison with a baseline time derived rather than timed here (e.g. the time a measured
    /// GFLOP/s rate gives for the operation's FLOPs).
    public init(_ name: String, against baselineName: String, baselineSeconds: Double) {
        self.name = name
        self.baselineName = baselineName
        self.baselineSeconds = baselineSeconds
    }

    /// ``init(_:against:runs:baseline:)`` for an async baseline (a database round trip).
    public init(_ name: String, against baselineName: String, runs: Int = 10, baseline: () async throws -> Void) async rethrows {
        self.name = name
        self.baselineName = baselineName
        try await baseline()
        var fastest = Double.infinity
        for _ in 0..<max(1, runs) {
            let start = DispatchTime.now().uptimeNanoseconds
            try await baseline()
            fastest = min(fastest, Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9)
        }
        baselineSeconds = fastest
    }

    /// Runs `body` once, keeps its time if it is the best so far, and returns its result.
    public func measure<T>(_ body: () throws -> T) rethrows -> T {
        let start = DispatchTime.now().uptimeNanoseconds
        let result = try body()
        let elapsed = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
        best.withLock { $0 = min($0, elapsed) }
        return result
    }

    /// ``measure(_:)`` for async operations.
    public func measure<T>(_ body: () async throws -> T) async rethrows -> T {
        let start = DispatchTime.now().uptimeNanoseconds
        let result = try await body()
        let elapsed = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
        best.withLock { $0 = min($0, elapsed) }
        return result
    }

    /// Keeps `seconds`, timed elsewhere for one run of the operation, if it is the best so far
    /// (for operations whose per-run time is derived from a batch, like one claim among many).
    public func record(seconds: Double) {
        best.withLock { $0 = min($0, seconds) }
    }

    /// Best wall time of one measured run so far, in seconds (infinity before the first).
    public var bestSeconds: Double { best.withLock { $0 } }

    /// Best measured time over best baseline time: below 1 means faster than the baseline.
    public var ratio: Double { bestSeconds / baselineSeconds }

    /// One line: both best times and their ratio.
    public var report: String {
        "\(name): best \(Self.format(bestSeconds)) vs \(baselineName) \(Self.format(baselineSeconds)) (same run): "
            + String(format: "%.2fx the baseline's time", ratio)
    }

    static func seconds(_ body: () throws -> Void) rethrows -> Double {
        let start = DispatchTime.now().uptimeNanoseconds
        try body()
        return Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
    }

    static func format(_ seconds: Double) -> String {
        switch seconds {
        case ..<1e-6: String(format: "%.0f ns", seconds * 1e9)
        case ..<1e-3: String(format: "%.2f µs", seconds * 1e6)
        case ..<1: String(format: "%.2f ms", seconds * 1e3)
        default: String(format: "%.2f s", seconds)
        }
    }
}

/// A suite's comparisons by benchmark name, each made on its benchmark's first run: a suite is
/// also started just to list its benchmarks, and that must not time (or load) anything.
public final class SameRunBaselines: Sendable {
    private let made = Mutex<[String: SameRunBaseline]>([:])

    public init() {}

    /// The comparison named `name`, made by `make` the first time it is asked for.
    public func comparison(_ name: String, make: () throws -> SameRunBaseline) throws -> SameRunBaseline {
        if let existing = made.withLock({ $0[name] }) { return existing }
        let comparison = try make()
        made.withLock { $0[name] = comparison }
        return comparison
    }

    /// ``comparison(_:make:)`` with an async `make`.
    public func comparison(_ name: String, make: () async throws -> SameRunBaseline) async throws -> SameRunBaseline {
        if let existing = made.withLock({ $0[name] }) { return existing }
        let comparison = try await make()
        made.withLock { $0[name] = comparison }
        return comparison
    }

    /// Prints the report of the comparison named `name`, if its benchmark ran.
    public func printReport(_ name: String) {
        if let comparison = made.withLock({ $0[name] }) { print(comparison.report) }
    }
}
