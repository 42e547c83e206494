import Foundation
import VTPVocabulary
import VTPDatasets
import VTPImage
import VTPTensor

/// How items become model input.
struct PreprocessPlan: Sendable {
    var transform: PreprocessTransform
    var normalization: Normalization
    /// Also produce the horizontally mirrored input (latents' `latents_flip`).
    var alsoFlipped: Bool
    var compatibility: PillowCompatibility
    var maxPixels: Int
}

/// One item after the read/decode/preprocess stages.
struct PreparedItem: Sendable {
    enum Result: Sendable {
        /// (3, S, S) normalized CHW input, and its mirror when the plan asks for it.
        case ok(pixels: Tensor, flipped: Tensor?)
        case failed(String)
    }

    var item: JobItem
    var result: Result
    var readSeconds = 0.0
    var decodeSeconds = 0.0
    var preprocessSeconds = 0.0
}

/// Reads, decodes and preprocesses a shard's items on a small pool of its own threads while the
/// caller runs inference, handing items back strictly in order.
///
/// Workers claim item indices in order but may finish out of order; at most `capacity` items
/// beyond the one the consumer waits for are claimed, which bounds memory (a bounded queue
/// between the stages). `@unchecked Sendable`: all mutable state is guarded by `condition`.
final class PreprocessPipeline: @unchecked Sendable {
    private let items: [JobItem]
    private let plan: PreprocessPlan
    private let capacity: Int
    private let condition = NSCondition()
    private var nextToClaim = 0
    private var nextToTake = 0
    private var ready: [Int: PreparedItem] = [:]
    private var cancelled = false
    private var running = 0

    /// Starts `threads` workers over `items`.
    init(items: [JobItem], plan: PreprocessPlan, threads: Int, capacity: Int) {
        self.items = items
        self.plan = plan
        self.capacity = max(1, capacity)
        let count = max(1, min(threads, items.count))
        guard !items.isEmpty else { return }
        running = count
        for i in 0..<count {
            let thread = Thread { [self] in work() }
            thread.name = "vtp-preprocess-\(i)"
            thread.start()
        }
    }

    /// Blocks until item `index` (which must be the next in order) is ready, and returns it.
    func take(_ index: Int) -> PreparedItem {
        condition.lock()
        defer { condition.unlock() }
        precondition(index == nextToTake, "items are taken in order")
        while ready[index] == nil { condition.wait() }
        nextToTake = index + 1
        condition.broadcast()
        return ready.removeValue(forKey: index)!
    }

    /// Items claimed by workers beyond the next one the consumer will take (never more than `capacity`).
    var claimedAhead: Int {
        condition.lock()
        defer { condition.unlock() }
        return nextToClaim - nextToTake
    }

    /// Stops claiming new items and waits until every worker has exited, so no thread outlives
    /// the shard. Safe to call more than once.
    func shutdown() {
        condition.lock()
        cancelled = true
        condition.broadcast()
        while running > 0 { condition.wait() }
        ready.removeAll()
        condition.unlock()
    }

    private func work() {
        while true {
            condition.lock()
            while !cancelled && nextToClaim < items.count && nextToClaim - nextToTake >= capacity { condition.wait() }
            if cancelled || nextToClaim >= items.count {
                running -= 1
                condition.broadcast()
                condition.unlock()
                return
            }
            let index = nextToClaim
            nextToClaim += 1
            condition.unlock()

            let prepared = Self.prepare(items[index], plan: plan)

            condition.lock()
            if !cancelled { ready[index] = prepared }
            condition.broadcast()
            condition.unlock()
        }
    }

    /// The three stages for one item; every failure becomes the item's error text.
    static func prepare(_ item: JobItem, plan: PreprocessPlan) -> PreparedItem {
        var out = PreparedItem(item: item, result: .failed(""))
        let source = "\(item.sourceId) (\(item.location.encoded))"
        var clock = ContinuousClock.now
        func lap() -> Double {
            let now = ContinuousClock.now
            defer { clock = now }
            return (now - clock).seconds
        }
        let bytes: [UInt8]
        do { bytes = try item.location.readBytes() } catch {
            out.readSeconds = lap()
            out.result = .failed("\(source): cannot read: \(error)")
            return out
        }
        out.readSeconds = lap()
        let decoded: RGBImage
        do {
            decoded = try bytes.withUnsafeBytes { (raw) throws(ImageError) -> RGBImage in
                try ImageDecoder(maxPixels: plan.maxPixels).decode(bytes: raw, source: source)
            }
        } catch {
            out.decodeSeconds = lap()
            out.result = .failed("\(error)")
            return out
        }
        out.decodeSeconds = lap()
        do {
            let image = try plan.transform.apply(to: decoded, compatibility: plan.compatibility)
            let shape = [3, image.height, image.width]
            let pixels = Tensor(uninitialized: shape)
            try image.writeCHW(into: UnsafeMutableBufferPointer(start: pixels.mutablePointer, count: pixels.count),
                               normalization: plan.normalization)
            var flipped: Tensor?
            if plan.alsoFlipped {
                let mirror = Tensor(uninitialized: shape)
                try image.writeCHW(into: UnsafeMutableBufferPointer(start: mirror.mutablePointer, count: mirror.count),
                                   normalization: plan.normalization, flipHorizontally: true)
                flipped = mirror
            }
            out.result = .ok(pixels: pixels, flipped: flipped)
        } catch {
            out.result = .failed("\(source): preprocessing failed: \(error)")
        }
        out.preprocessSeconds = lap()
        return out
    }
}

extension Duration {
    /// The duration in seconds as a Double.
    var seconds: Double {
        let (s, atto) = components
        return Double(s) + Double(atto) * 1e-18
    }
}
