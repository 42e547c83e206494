import Foundation
import Synchronization

/// One shard to execute: what a worker receives from the coordinator (the shard handler's input).
public struct ShardTask: Sendable, Equatable {
    /// The job's ledger id (recorded in the summary, not in file names).
    public var jobId: Int64
    /// Shard index within the job; fixes every output file name, so a re-run overwrites its own files.
    public var shardIndex: Int
    /// What to compute.
    public var jobType: JobType
    /// The job's parameter document (see ``JobParameters``).
    public var parametersJSON: String
    /// Checkpoint directory (`config.json` + `model.safetensors`).
    public var modelDirectory: String
    /// Directory the shard's files go to (created if missing).
    public var outputDirectory: String
    /// Items in row order.
    public var items: [JobItem]
    /// Run the items one at a time, each started only after `progress` reported it (see
    /// ``ShardHandling``): set after a worker ended abnormally while holding this shard, so a
    /// further crash names the item it happened on.
    public var isolated: Bool
    /// Items of the shard not to process: already found to crash workers. They are recorded as the
    /// shard's failures, with these reasons.
    public var excluded: [ExcludedItem]
    /// Raised by the worker when it is interrupted: the executor stops between items (so after
    /// the batch in hand at the latest) and throws ``ShardStopped``; nothing of the shard is written.
    public var stop: ShardStopSignal?

    public init(jobId: Int64, shardIndex: Int, jobType: JobType, parametersJSON: String, modelDirectory: String,
                outputDirectory: String, items: [JobItem], isolated: Bool = false, excluded: [ExcludedItem] = [],
                stop: ShardStopSignal? = nil) {
        self.jobId = jobId
        self.shardIndex = shardIndex
        self.jobType = jobType
        self.parametersJSON = parametersJSON
        self.modelDirectory = modelDirectory
        self.outputDirectory = outputDirectory
        self.items = items
        self.isolated = isolated
        self.excluded = excluded
        self.stop = stop
    }
}

/// A one-way flag the worker raises to stop a running shard early (see ``ShardTask/stop``).
/// Equal only to itself: two tasks are the same task only if they share the signal.
public final class ShardStopSignal: Sendable, Equatable {
    private let raised = Mutex(false)

    public init() {}

    /// Asks the executor to stop at its next item boundary. Idempotent.
    public func raise() { raised.withLock { $0 = true } }

    public var isRaised: Bool { raised.withLock { $0 } }

    public static func == (lhs: ShardStopSignal, rhs: ShardStopSignal) -> Bool { lhs === rhs }
}

/// A shard was stopped through its ``ShardStopSignal`` after `itemsDone` items; its outputs were
/// not written, and it runs again in full elsewhere.
public struct ShardStopped: Error, CustomStringConvertible, Equatable {
    public var itemsDone: Int

    public init(itemsDone: Int) { self.itemsDone = itemsDone }

    public var description: String { "stopped after \(itemsDone) items" }
}

/// An item of a shard that is not processed again: workers ended abnormally (crashed, were killed
/// or stopped responding) twice in a row while it was the item being processed in isolation.
public struct ExcludedItem: Hashable, Sendable {
    /// The item's job-wide ordinal.
    public var ordinal: Int
    public var sourceId: String
    /// Why it failed, as recorded in the ledger.
    public var reason: String

    public init(ordinal: Int, sourceId: String, reason: String) {
        self.ordinal = ordinal
        self.sourceId = sourceId
        self.reason = reason
    }
}

/// Time spent in one processing stage of one item.
public struct StageTiming: Hashable, Sendable, Codable {
    /// `read`, `decode`, `preprocess`, `infer` or `write`.
    public var stage: String
    public var seconds: Double

    public init(stage: String, seconds: Double) {
        self.stage = stage
        self.seconds = seconds
    }
}

/// What became of one item: the one result type the executor returns, the worker sends and the
/// ledger records.
public struct ItemResult: Hashable, Sendable, Codable {
    public enum Status: UInt8, Sendable, Codable { case ok = 0, failed = 1 }

    /// The item's job-wide ordinal (``JobItem/ordinal``).
    public var ordinal: Int
    public var status: Status
    /// For ok items: `<file>#<row>`, the shard file (relative to the output directory) and row.
    public var outputLocation: String?
    /// For failed items: why, naming the input.
    public var error: String?
    /// Seconds this item spent per stage.
    public var timings: [StageTiming]

    public init(ordinal: Int, status: Status, outputLocation: String? = nil, error: String? = nil,
                timings: [StageTiming] = []) {
        self.ordinal = ordinal
        self.status = status
        self.outputLocation = outputLocation
        self.error = error
        self.timings = timings
    }

    /// A processed item and where its outputs went.
    public static func success(_ ordinal: Int, output: String?) -> ItemResult {
        ItemResult(ordinal: ordinal, status: .ok, outputLocation: output)
    }

    /// An item that could not be processed; the shard still completes.
    public static func failure(_ ordinal: Int, error: String) -> ItemResult {
        ItemResult(ordinal: ordinal, status: .failed, error: error)
    }

    public var ok: Bool { status == .ok }

    /// Seconds recorded for `stage` (0 when absent).
    public func seconds(_ stage: String) -> Double { timings.first { $0.stage == stage }?.seconds ?? 0 }
}

/// Runs one shard and reports per-item results: what a worker is given, so the worker itself
/// links no model, image or index code (`JobShardHandler` in VTPJobs is the real one).
public protocol ShardHandling: Sendable {
    /// Executes `task` off the cooperative pool. Per-item problems are failed ``ItemResult``s; a
    /// thrown error fails the whole shard. `progress` receives items done so far.
    ///
    /// An ``ShardTask/isolated`` task processes one item at a time and calls `progress(n)` before it
    /// starts item `n` (of `task.items`), on the executing thread; the call may block until the
    /// coordinator has acknowledged it, so that whoever is told the worker died knows which item
    /// was being processed.
    func run(_ task: ShardTask, progress: @escaping @Sendable (Int) -> Void) async throws -> [ItemResult]
}

/// An input that became no output, for the manifest's failure list.
public struct FailedInput: Sendable, Hashable, Codable {
    public var sourceId: String
    public var reason: String

    public init(sourceId: String, reason: String) {
        self.sourceId = sourceId
        self.reason = reason
    }

    enum CodingKeys: String, CodingKey {
        case sourceId = "source_id"
        case reason
    }
}

/// A finished job's totals as its manifest states them.
public struct JobCounts: Codable, Sendable, Equatable {
    public var inputs: Int
    public var written: Int
    public var failed: Int
    public var shards: Int

    public init(inputs: Int, written: Int, failed: Int, shards: Int) {
        self.inputs = inputs
        self.written = written
        self.failed = failed
        self.shards = shards
    }
}

/// Everything a finalizer needs about a finished job, as the ledger knows it.
public struct FinalizeRequest: Sendable, Equatable {
    public var jobId: Int64
    public var jobType: String
    public var parametersJSON: String
    public var modelDirectory: String
    public var outputDirectory: String
    public var shardCount: Int
    /// Samples the listing could not turn into items (recorded by the ledger as failed items).
    public var listingFailures: [FailedInput]
    /// Shards that exhausted their attempts, by index, with the failures of their items.
    public var failedShards: [Int: [FailedInput]]

    public init(jobId: Int64, jobType: String, parametersJSON: String, modelDirectory: String, outputDirectory: String,
                shardCount: Int, listingFailures: [FailedInput] = [], failedShards: [Int: [FailedInput]] = [:]) {
        self.jobId = jobId
        self.jobType = jobType
        self.parametersJSON = parametersJSON
        self.modelDirectory = modelDirectory
        self.outputDirectory = outputDirectory
        self.shardCount = shardCount
        self.listingFailures = listingFailures
        self.failedShards = failedShards
    }
}

/// Turns a finished job's shards into its final artefacts; injected into the coordinator so the
/// control plane links no model, image or index code (`ManifestFinalizer` in VTPJobs is the real one).
public protocol JobFinalizing: Sendable {
    /// Whether `outputDirectory` already holds a finalized job (a restarted coordinator finalizes the others).
    func isFinalized(outputDirectory: String) -> Bool
    /// Finalizes the job off the cooperative pool and returns its counts.
    func finalize(_ request: FinalizeRequest) async throws -> JobCounts
}
