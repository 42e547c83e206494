import Foundation
import Synchronization

/// A value kind the registry can hold and expose: counters, gauges and histograms.
///
/// Conforming types are handles onto shared, lock-protected storage, so copies update the same series.
public protocol MetricSeries: Sendable {
    /// The `# TYPE` keyword of the family.
    static var exposedType: String { get }
    /// Appends this series' sample lines; `labels` are the series' label pairs, already validated.
    func appendSamples(name: String, labels: [(name: String, value: String)], to output: inout String)
}

/// A double behind a mutex, shared by every copy of a series handle.
final class LockedDouble: Sendable {
    private let value = Mutex<Double>(0)

    func load() -> Double { value.withLock { $0 } }
    func store(_ newValue: Double) { value.withLock { $0 = newValue } }
    func add(_ delta: Double) { value.withLock { $0 += delta } }
}

/// A monotonically increasing count (Prometheus `counter`). Names conventionally end in `_total`.
public struct Counter: MetricSeries {
    public static let exposedType = "counter"
    let storage = LockedDouble()

    /// Adds `amount`; negative, NaN or infinite amounts are ignored because a counter never goes down.
    public func increment(by amount: Double = 1) {
        guard amount.isFinite, amount >= 0 else { return }
        storage.add(amount)
    }

    /// Adds a whole number; negative amounts are ignored.
    public func increment(by amount: Int) { increment(by: Double(amount)) }

    /// The current total.
    public var value: Double { storage.load() }

    public func appendSamples(name: String, labels: [(name: String, value: String)], to output: inout String) {
        Exposition.appendSample(name: name, labels: labels, value: value, to: &output)
    }
}

/// A value that goes up and down (Prometheus `gauge`).
public struct Gauge: MetricSeries {
    public static let exposedType = "gauge"
    let storage = LockedDouble()

    /// Replaces the value.
    public func set(_ value: Double) { storage.store(value) }
    /// Replaces the value with a whole number.
    public func set(_ value: Int) { storage.store(Double(value)) }
    /// Adds `amount` (may be negative).
    public func increment(by amount: Double = 1) { storage.add(amount) }
    /// Subtracts `amount`.
    public func decrement(by amount: Double = 1) { storage.add(-amount) }

    /// The current value.
    public var value: Double { storage.load() }

    public func appendSamples(name: String, labels: [(name: String, value: String)], to output: inout String) {
        Exposition.appendSample(name: name, labels: labels, value: value, to: &output)
    }
}

/// Observations counted into cumulative buckets (Prometheus `histogram`).
public struct Histogram: MetricSeries {
    public static let exposedType = "histogram"

    /// A consistent view of one histogram.
    public struct Snapshot: Sendable, Equatable {
        /// Finite upper bounds, ascending (the implicit `+Inf` bucket is `count`).
        public var upperBounds: [Double]
        /// Cumulative counts per bound: observations `<=` that bound.
        public var cumulativeCounts: [UInt64]
        public var sum: Double
        public var count: UInt64
    }

    /// Counts, sum and total behind one mutex so a scrape never sees a half-applied observation.
    final class State: Sendable {
        let upperBounds: [Double]
        private let totals: Mutex<(bucketCounts: [UInt64], sum: Double, count: UInt64)>

        init(upperBounds: [Double]) {
            self.upperBounds = upperBounds
            totals = Mutex((bucketCounts: Array(repeating: 0, count: upperBounds.count), sum: 0, count: 0))
        }

        func observe(_ value: Double) {
            // Bucket lists are short (tens of bounds), so a linear scan beats a binary search here.
            let index = upperBounds.firstIndex(where: { value <= $0 })
            totals.withLock { totals in
                if let index { totals.bucketCounts[index] &+= 1 }
                totals.sum += value
                totals.count &+= 1
            }
        }

        func snapshot() -> Snapshot {
            let (counts, total, observations) = totals.withLock { ($0.bucketCounts, $0.sum, $0.count) }
            var cumulative = [UInt64]()
            cumulative.reserveCapacity(counts.count)
            var running: UInt64 = 0
            for c in counts {
                running &+= c
                cumulative.append(running)
            }
            return Snapshot(upperBounds: upperBounds, cumulativeCounts: cumulative, sum: total, count: observations)
        }
    }

    let state: State

    init(upperBounds: [Double]) { state = State(upperBounds: upperBounds) }

    /// Records one observation; NaN is ignored (it would poison `_sum` forever).
    public func observe(_ value: Double) {
        guard !value.isNaN else { return }
        state.observe(value)
    }

    /// Records a duration in seconds.
    public func observe(_ duration: Duration) {
        let (seconds, attoseconds) = duration.components
        observe(Double(seconds) + Double(attoseconds) * 1e-18)
    }

    /// Current counts.
    public var snapshot: Snapshot { state.snapshot() }

    public func appendSamples(name: String, labels: [(name: String, value: String)], to output: inout String) {
        let view = snapshot
        for (bound, count) in zip(view.upperBounds, view.cumulativeCounts) {
            Exposition.appendSample(name: name + "_bucket", labels: labels + [("le", Exposition.format(bound))],
                                    value: Double(count), to: &output)
        }
        Exposition.appendSample(name: name + "_bucket", labels: labels + [("le", "+Inf")],
                                value: Double(view.count), to: &output)
        Exposition.appendSample(name: name + "_sum", labels: labels, value: view.sum, to: &output)
        Exposition.appendSample(name: name + "_count", labels: labels, value: Double(view.count), to: &output)
    }

    /// Bucket bounds suited to per-stage timings, 0.5 ms to 60 s.
    public static let defaultTimingBuckets: [Double] = [
        0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60,
    ]

    /// `count` bounds starting at `start`, each `factor` times the previous.
    public static func exponentialBuckets(start: Double, factor: Double, count: Int) -> [Double] {
        guard count > 0 else { return [] }
        var bounds = [start]
        for _ in 1..<count { bounds.append(bounds[bounds.count - 1] * factor) }
        return bounds
    }
}
