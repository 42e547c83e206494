import Foundation
import Synchronization

/// A set of metric families that renders as one Prometheus text exposition (format 0.0.4).
///
/// Registration validates names once; updating a metric afterwards never throws and takes one
/// short lock, so it is cheap enough for per-shard hot paths.
public final class MetricsRegistry: Sendable {
    /// Families by name, and the names in registration order.
    private let registered = Mutex<(families: [String: any ExposableFamily], order: [String])>((families: [:], order: []))

    public init() {}

    /// Registers a counter family with labels.
    public func counterFamily(_ name: String, help: String, labelNames: [String]) throws -> MetricFamily<Counter> {
        try register(MetricFamily(name: name, help: help, labelNames: try validated(name, labelNames)) { Counter() })
    }

    /// Registers a gauge family with labels.
    public func gaugeFamily(_ name: String, help: String, labelNames: [String]) throws -> MetricFamily<Gauge> {
        try register(MetricFamily(name: name, help: help, labelNames: try validated(name, labelNames)) { Gauge() })
    }

    /// Registers a histogram family with labels; `buckets` are finite, strictly increasing upper bounds
    /// (`+Inf` is implicit).
    public func histogramFamily(_ name: String, help: String, labelNames: [String],
                                buckets: [Double] = Histogram.defaultTimingBuckets) throws -> MetricFamily<Histogram> {
        let labels = try validated(name, labelNames)
        if labels.contains("le") { throw MetricsError.reservedOrDuplicateLabel(metric: name, label: "le") }
        guard !buckets.isEmpty else { throw MetricsError.invalidBuckets(metric: name, reason: "no bounds") }
        guard buckets.allSatisfy(\.isFinite) else {
            throw MetricsError.invalidBuckets(metric: name, reason: "bounds must be finite (+Inf is implicit)")
        }
        guard zip(buckets, buckets.dropFirst()).allSatisfy({ $0 < $1 }) else {
            throw MetricsError.invalidBuckets(metric: name, reason: "bounds must be strictly increasing")
        }
        return try register(MetricFamily(name: name, help: help, labelNames: labels) { Histogram(upperBounds: buckets) })
    }

    /// Registers an unlabelled counter.
    public func counter(_ name: String, help: String) throws -> Counter {
        try counterFamily(name, help: help, labelNames: []).labels([])
    }

    /// Registers an unlabelled gauge.
    public func gauge(_ name: String, help: String) throws -> Gauge {
        try gaugeFamily(name, help: help, labelNames: []).labels([])
    }

    /// Registers an unlabelled histogram.
    public func histogram(_ name: String, help: String,
                          buckets: [Double] = Histogram.defaultTimingBuckets) throws -> Histogram {
        try histogramFamily(name, help: help, labelNames: [], buckets: buckets).labels([])
    }

    /// Every family in registration order, as the body of a scrape response.
    public func render() -> String {
        let snapshot = registered.withLock { state in state.order.map { state.families[$0]! } }
        var output = ""
        for family in snapshot { family.appendExposition(to: &output) }
        return output
    }

    private func validated(_ name: String, _ labelNames: [String]) throws -> [String] {
        guard Exposition.isValidMetricName(name) else { throw MetricsError.invalidMetricName(name) }
        var seen = Set<String>()
        for label in labelNames {
            guard Exposition.isValidLabelName(label) else {
                throw MetricsError.invalidLabelName(metric: name, label: label)
            }
            guard seen.insert(label).inserted else { throw MetricsError.reservedOrDuplicateLabel(metric: name, label: label) }
        }
        return labelNames
    }

    private func register<Series>(_ family: MetricFamily<Series>) throws -> MetricFamily<Series> {
        try registered.withLock { state throws(MetricsError) in
            guard state.families[family.name] == nil else { throw MetricsError.duplicateMetric(family.name) }
            state.families[family.name] = family
            state.order.append(family.name)
        }
        return family
    }
}
