/// Why a metric could not be registered or addressed.
public enum MetricsError: Error, CustomStringConvertible, Sendable, Equatable {
    /// A metric name outside `[a-zA-Z_:][a-zA-Z0-9_:]*`.
    case invalidMetricName(String)
    /// A label name outside `[a-zA-Z_][a-zA-Z0-9_]*`, or one starting with the reserved `__`.
    case invalidLabelName(metric: String, label: String)
    /// The same label name twice in one family, or `le` on a histogram.
    case reservedOrDuplicateLabel(metric: String, label: String)
    /// A family with this name is already registered.
    case duplicateMetric(String)
    /// `labels(...)` got a different number of values than the family has label names.
    case labelCountMismatch(metric: String, expected: Int, got: Int)
    /// Histogram bucket bounds must be finite and strictly increasing, and there must be at least one.
    case invalidBuckets(metric: String, reason: String)

    public var description: String {
        switch self {
        case .invalidMetricName(let name):
            "invalid metric name '\(name)': expected [a-zA-Z_:][a-zA-Z0-9_:]*"
        case .invalidLabelName(let metric, let label):
            "metric \(metric): invalid label name '\(label)': expected [a-zA-Z_][a-zA-Z0-9_]* not starting with __"
        case .reservedOrDuplicateLabel(let metric, let label):
            "metric \(metric): label '\(label)' is reserved or listed twice"
        case .duplicateMetric(let name):
            "metric \(name) is already registered"
        case .labelCountMismatch(let metric, let expected, let got):
            "metric \(metric): expected \(expected) label value(s), got \(got)"
        case .invalidBuckets(let metric, let reason):
            "metric \(metric): invalid histogram buckets: \(reason)"
        }
    }
}
