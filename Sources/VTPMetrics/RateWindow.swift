/// Events per second over a sliding window, kept in one-second buckets so memory stays constant
/// however many events arrive. A plain value type fed explicit times, so it is tested without clocks.
public struct RateWindow: Sendable {
    /// Length of the window in whole seconds.
    public let windowSeconds: Int
    private var buckets: [Double]
    private var bucketSecond: [Int64]
    private var firstSecond: Int64?

    /// A window of `windowSeconds` (at least 1).
    public init(windowSeconds: Int = 60) {
        self.windowSeconds = max(1, windowSeconds)
        buckets = Array(repeating: 0, count: self.windowSeconds)
        bucketSecond = Array(repeating: .min, count: self.windowSeconds)
    }

    /// Adds `count` events at `time` (seconds on any monotonic clock).
    public mutating func record(_ count: Double, at time: Double) {
        guard count.isFinite, time.isFinite else { return }
        let second = Int64(time.rounded(.down))
        if firstSecond == nil { firstSecond = second }
        let slot = Int(((second % Int64(windowSeconds)) + Int64(windowSeconds)) % Int64(windowSeconds))
        if bucketSecond[slot] != second {
            bucketSecond[slot] = second
            buckets[slot] = 0
        }
        buckets[slot] += count
    }

    /// Events per second over the window ending at `time`; over the time since the first event
    /// when that is shorter, so a fresh window does not under-report.
    public func rate(at time: Double) -> Double {
        guard let firstSecond, time.isFinite else { return 0 }
        let now = Int64(time.rounded(.down))
        var total = 0.0
        for (slot, second) in bucketSecond.enumerated() where second > now - Int64(windowSeconds) && second <= now {
            total += buckets[slot]
        }
        let span = Double(min(Int64(windowSeconds), max(1, now - firstSecond + 1)))
        return total / span
    }
}
