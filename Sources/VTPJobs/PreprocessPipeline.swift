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
    /// Memory one item's decode and preprocessing may take (``DecodeBudget``), checked from the
    /// header before allocating.
    var maxDecodeBytes: Int = DecodeBudget.defaultMaxBytes
    /// Seconds one item's read, decode and preprocess may take before it fails; 0 for no limit.
    var itemTimeoutSeconds: Double = 0

    /// Bytes of the float tensors one item becomes.
    var tensorBytes: Int { 3 * transform.size * transform.size * MemoryLayout<Float>.stride * (alsoFlipped ? 2 : 1) }
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
///
/// With a per-item time limit, an item still unfinished that long after its worker claimed it is
/// handed back as failed when the consumer reaches it. The blocking call it is stuck in cannot be
/// interrupted, so its thread is abandoned: it no longer counts as running, its result is dropped
/// whenever it returns, and a fresh thread takes its place, so the rest of the shard goes on.
final class PreprocessPipeline: @unchecked Sendable {
    /// Where an item's time goes, named in time-limit failures.
    enum Stage: String, Sendable {
        case reading, decoding, preprocessing
    }

    private let items: [JobItem]
    private let plan: PreprocessPlan
    private let capacity: Int
    /// Claim an item only once the consumer asks for it (``take(_:)``): nothing is read or decoded
    /// ahead, so whatever happens while an item is prepared happens while it is the item asked for.
    private let onDemand: Bool
    // NSCondition, not Mutex: threads sleep on it until another signals (Mutex has no condition variable).
    private let condition = NSCondition()
    /// Items the consumer has asked for (on demand: the limit of what may be claimed).
    private var requested = 0
    private var nextToClaim = 0
    private var nextToTake = 0
    private var ready: [Int: PreparedItem] = [:]
    private var cancelled = false
    private var running = 0
    private var threadsStarted = 0
    /// Claimed items not yet ready: when their worker claimed them and the stage it is in.
    private var inFlight: [Int: (claimed: ContinuousClock.Instant, stage: Stage)] = [:]
    /// Items given up on whose worker thread has not returned yet.
    private var abandoned: Set<Int> = []

    /// Starts `threads` workers over `items`; `onDemand` prepares each item only when it is taken.
    init(items: [JobItem], plan: PreprocessPlan, threads: Int, capacity: Int, onDemand: Bool = false) {
        self.items = items
        self.plan = plan
        self.capacity = max(1, capacity)
        self.onDemand = onDemand
        let count = max(1, min(threads, items.count))
        guard !items.isEmpty else { return }
        condition.lock()
        for _ in 0..<count { startWorker() }
        condition.unlock()
    }

    /// Starts one worker thread; the caller holds `condition`.
    private func startWorker() {
        running += 1
        let thread = Thread { [self] in work() }
        thread.name = "vtp-preprocess-\(threadsStarted)"
        threadsStarted += 1
        thread.start()
    }

    /// Blocks until item `index` (which must be the next in order) is ready, and returns it. With
    /// a time limit, an item that overruns it is returned as failed (see the type's notes).
    func take(_ index: Int) -> PreparedItem {
        condition.lock()
        defer { condition.unlock() }
        precondition(index == nextToTake, "items are taken in order")
        if requested <= index {
            requested = index + 1
            condition.broadcast()
        }
        let limit = plan.itemTimeoutSeconds
        while ready[index] == nil {
            guard limit > 0, let flight = inFlight[index] else {
                condition.wait()
                continue
            }
            let remaining = (flight.claimed + .seconds(limit)) - ContinuousClock.now
            if remaining <= .zero {
                abandon(index, stage: flight.stage)
                break
            }
            _ = condition.wait(until: Date(timeIntervalSinceNow: remaining.seconds))
        }
        nextToTake = index + 1
        condition.broadcast()
        return ready.removeValue(forKey: index)!
    }

    /// Fails item `index` for overrunning the time limit and replaces its stuck worker; the caller holds `condition`.
    private func abandon(_ index: Int, stage: Stage) {
        let limit = plan.itemTimeoutSeconds
        var failed = PreparedItem(item: items[index], result: .failed(
            "\(Self.sourceName(items[index])): \(stage.rawValue) took longer than the item time limit of "
                + "\(Self.secondsText(limit)) (worker.item_timeout_seconds); the item was abandoned"))
        switch stage {
        case .reading: failed.readSeconds = limit
        case .decoding: failed.decodeSeconds = limit
        case .preprocessing: failed.preprocessSeconds = limit
        }
        ready[index] = failed
        inFlight[index] = nil
        abandoned.insert(index)
        running -= 1
        if !cancelled { startWorker() }
    }

    private static func secondsText(_ seconds: Double) -> String {
        seconds == seconds.rounded() && seconds < 1e15 ? "\(Int(seconds)) s" : "\(seconds) s"
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
            while !cancelled && nextToClaim < items.count
                    && (nextToClaim - nextToTake >= capacity || (onDemand && nextToClaim >= requested)) { condition.wait() }
            if cancelled || nextToClaim >= items.count {
                running -= 1
                condition.broadcast()
                condition.unlock()
                return
            }
            let index = nextToClaim
            nextToClaim += 1
            inFlight[index] = (ContinuousClock.now, .reading)
            // A consumer already waiting for this item starts its time-limit clock now.
            if plan.itemTimeoutSeconds > 0 { condition.broadcast() }
            condition.unlock()

            let prepared = Self.prepare(items[index], plan: plan) { stage in
                self.condition.lock()
                if self.inFlight[index] != nil { self.inFlight[index]?.stage = stage }
                self.condition.unlock()
            }

            condition.lock()
            if abandoned.remove(index) != nil {
                // Given up on while this thread was stuck; a replacement already took its place.
                condition.unlock()
                return
            }
            inFlight[index] = nil
            if !cancelled { ready[index] = prepared }
            condition.broadcast()
            condition.unlock()
        }
    }

    /// How an item is named in its error messages.
    static func sourceName(_ item: JobItem) -> String { "\(item.sourceId) (\(item.location.encoded))" }

    /// The three stages for one item; every failure becomes the item's error text. `entering` is
    /// told when the decoding and preprocessing stages begin.
    static func prepare(_ item: JobItem, plan: PreprocessPlan, entering: (Stage) -> Void = { _ in }) -> PreparedItem {
        var out = PreparedItem(item: item, result: .failed(""))
        let source = sourceName(item)
        var clock = ContinuousClock.now
        func lap() -> Double {
            let now = ContinuousClock.now
            defer { clock = now }
            return (now - clock).seconds
        }
        let budgetHint = " (worker.max_decode_bytes)"
        let bytes: [UInt8]
        do { bytes = try item.location.readBytes(maxBytes: plan.maxDecodeBytes) } catch {
            out.readSeconds = lap()
            let hint = if case .tooLarge? = error as? DatasetError { budgetHint } else { "" }
            out.result = .failed("\(source): cannot read: \(error)\(hint)")
            return out
        }
        out.readSeconds = lap()
        entering(.decoding)
        let decoded: RGBImage
        do {
            // Everything this item holds besides the decode counts: its encoded bytes and its tensors.
            let budget = DecodeBudget(maxBytes: plan.maxDecodeBytes, transform: plan.transform, compatibility: plan.compatibility,
                                      heldBytes: bytes.count + plan.tensorBytes)
            decoded = try bytes.withUnsafeBytes { (raw) throws(ImageError) -> RGBImage in
                try ImageDecoder(maxPixels: plan.maxPixels, budget: budget).decode(bytes: raw, source: source)
            }
        } catch {
            out.decodeSeconds = lap()
            let hint = if case .overBudget? = error as? ImageError { budgetHint } else { "" }
            out.result = .failed("\(error)\(hint)")
            return out
        }
        out.decodeSeconds = lap()
        entering(.preprocessing)
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
