import CoreMetrics
import Prometheus

/// The swift-metrics backend vtp exports through: swift-prometheus's registry, with the `# HELP`
/// text and histogram buckets of each documented metric.
///
/// swift-prometheus's own `PrometheusMetricsFactory` registers every metric with an empty help
/// text, and its registry refuses a second registration of a name with a different one, so
/// documented metrics could not carry their help lines. This factory looks each label up in
/// `descriptions` and registers it through the registry's public API with its text; anything
/// else (a library's metric) gets none, as it would from the stock factory. Recorders with
/// `aggregate: true` become value histograms with the buckets of `buckets[label]`.
public struct DescribedPrometheusFactory: MetricsFactory {
    /// What a metric is, for its `# HELP` line.
    public var descriptions: [String: String]
    /// Histogram bucket bounds per recorder label; `defaultBuckets` for the rest.
    public var buckets: [String: [Double]]
    public var defaultBuckets: [Double]
    /// Where the metrics live; render it with `emitToString()` or serve it with ``MetricsServer``.
    public let registry: PrometheusCollectorRegistry

    public init(registry: PrometheusCollectorRegistry = PrometheusCollectorRegistry(), descriptions: [String: String] = [:],
                buckets: [String: [Double]] = [:], defaultBuckets: [Double] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10]) {
        self.registry = registry
        self.descriptions = descriptions
        self.buckets = buckets
        self.defaultBuckets = defaultBuckets
    }

    private func help(_ label: String) -> String { descriptions[label] ?? "" }

    public func makeCounter(label: String, dimensions: [(String, String)]) -> any CounterHandler {
        registry.makeCounter(name: label, labels: dimensions, help: help(label))
    }

    public func makeFloatingPointCounter(label: String, dimensions: [(String, String)]) -> any FloatingPointCounterHandler {
        registry.makeCounter(name: label, labels: dimensions, help: help(label))
    }

    public func makeRecorder(label: String, dimensions: [(String, String)], aggregate: Bool) -> any RecorderHandler {
        guard aggregate else { return registry.makeGauge(name: label, labels: dimensions, help: help(label)) }
        return registry.makeValueHistogram(name: label, labels: dimensions, buckets: buckets[label] ?? defaultBuckets,
                                           help: help(label))
    }

    public func makeMeter(label: String, dimensions: [(String, String)]) -> any MeterHandler {
        registry.makeGauge(name: label, labels: dimensions, help: help(label))
    }

    public func makeTimer(label: String, dimensions: [(String, String)]) -> any TimerHandler {
        let bounds = (buckets[label] ?? defaultBuckets).map { Duration.nanoseconds(Int64($0 * 1e9)) }
        return registry.makeDurationHistogram(name: label, labels: dimensions, buckets: bounds, help: help(label))
    }

    public func destroyCounter(_ handler: any CounterHandler) {
        if let counter = handler as? Prometheus.Counter { registry.unregisterCounter(counter) }
    }

    public func destroyFloatingPointCounter(_ handler: any FloatingPointCounterHandler) {
        if let counter = handler as? Prometheus.Counter { registry.unregisterCounter(counter) }
    }

    public func destroyRecorder(_ handler: any RecorderHandler) {
        switch handler {
        case let gauge as Prometheus.Gauge: registry.unregisterGauge(gauge)
        case let histogram as Prometheus.Histogram<Double>: registry.unregisterValueHistogram(histogram)
        default: break
        }
    }

    public func destroyMeter(_ handler: any MeterHandler) {
        if let gauge = handler as? Prometheus.Gauge { registry.unregisterGauge(gauge) }
    }

    public func destroyTimer(_ handler: any TimerHandler) {
        if let histogram = handler as? Prometheus.Histogram<Duration> { registry.unregisterDurationHistogram(histogram) }
    }
}
