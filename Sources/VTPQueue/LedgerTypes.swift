import Foundation
import VTPVocabulary

/// Ledger-level errors: bad arguments, unknown jobs, schema mismatches, malformed rows.
public enum LedgerError: Error, CustomStringConvertible, Sendable, Equatable {
    /// An argument was out of range; names the field and what was expected.
    case invalidArgument(field: String, expected: String)
    /// No job with this id.
    case jobNotFound(Int64)
    /// The job's state does not allow the operation.
    case invalidJobState(job: Int64, state: String, operation: String)
    /// The database has migrations this binary does not know.
    case schemaTooNew(databaseVersion: Int, binaryVersion: Int)
    /// The database lacks migrations; run `vtp db migrate`.
    case schemaOutdated(databaseVersion: Int, binaryVersion: Int)
    /// An applied migration's SQL differs from the one compiled into this binary.
    case migrationChecksumMismatch(version: Int, name: String)
    /// A row did not decode; names the column and the value's expected type.
    case malformedRow(column: String, expected: String, value: String?)

    public var description: String {
        switch self {
        case .invalidArgument(let field, let expected): "invalid \(field): expected \(expected)"
        case .jobNotFound(let id): "job \(id) does not exist"
        case .invalidJobState(let job, let state, let operation): "cannot \(operation) job \(job) in state \(state)"
        case .schemaTooNew(let db, let bin):
            "database schema version \(db) is newer than this binary's \(bin); upgrade vtp"
        case .schemaOutdated(let db, let bin):
            "database schema version \(db) is older than this binary's \(bin); run `vtp db migrate`"
        case .migrationChecksumMismatch(let version, let name):
            "applied migration \(version) (\(name)) differs from the SQL in this binary"
        case .malformedRow(let column, let expected, let value):
            "column \(column): expected \(expected), got \(value.map { "'\($0)'" } ?? "NULL")"
        }
    }
}

/// Lifecycle of a job.
public enum JobState: String, Sendable, CaseIterable, Codable {
    /// Its enqueue is still writing its shard manifests; nothing of it can be claimed yet.
    case listing
    case pending, running, paused, cancelled, completed
    case completedWithFailures = "completed_with_failures"
    /// Nothing of the job could run (its model does not load, its output is not writable...):
    /// ``JobRecord/error`` says why; its unfinished shards wait, none of its items is failed, and
    /// a retry starts it again.
    case failed

    /// Whether no more work will happen without a retry.
    public var isFinished: Bool { isFinalizable || self == .failed }

    /// Whether the job ended in a way that gets a manifest: completed (with or without failed
    /// items) or cancelled. A failed job gets none; its output is not a dataset yet.
    public var isFinalizable: Bool { self == .cancelled || self == .completed || self == .completedWithFailures }
}

/// Lifecycle of a shard.
public enum ShardState: String, Sendable, CaseIterable, Codable {
    case pending, leased, done, failed, paused, cancelled
}

/// Lifecycle of an item.
public enum ItemState: String, Sendable, CaseIterable, Codable {
    case pending, done, failed
}

/// What to run: everything about a job except its items.
public struct JobSpec: Sendable, Equatable {
    /// Kind of work, e.g. "encode", "features", "clip".
    public var type: String
    /// Free-form parameters as a JSON object text.
    public var parametersJSON: String
    public var model: String?
    public var inputLocation: String
    public var outputLocation: String
    /// Higher runs first.
    public var priority: Int32
    /// Lease attempts per shard before it is marked failed.
    public var maxAttempts: Int32
    /// Items per shard (the last shard may be shorter).
    public var shardSize: Int

    public init(type: String, parametersJSON: String = "{}", model: String? = nil, inputLocation: String,
                outputLocation: String, priority: Int32 = 0, maxAttempts: Int32 = 3, shardSize: Int = 1000) {
        self.type = type
        self.parametersJSON = parametersJSON
        self.model = model
        self.inputLocation = inputLocation
        self.outputLocation = outputLocation
        self.priority = priority
        self.maxAttempts = maxAttempts
        self.shardSize = shardSize
    }

    func validate() throws {
        if type.isEmpty { throw LedgerError.invalidArgument(field: "job.type", expected: "a non-empty string") }
        if shardSize < 1 { throw LedgerError.invalidArgument(field: "job.shardSize", expected: "at least 1") }
        if maxAttempts < 1 { throw LedgerError.invalidArgument(field: "job.maxAttempts", expected: "at least 1") }
        guard let data = parametersJSON.data(using: .utf8),
              (try? JSONSerialization.jsonObject(with: data)) is [String: Any] else {
            throw LedgerError.invalidArgument(field: "job.parametersJSON", expected: "a JSON object")
        }
    }
}

/// Identifies a shard: its job and its index within the job.
public struct ShardRef: Sendable, Hashable, CustomStringConvertible {
    public var jobID: Int64
    public var index: Int32
    public init(jobID: Int64, index: Int32) {
        self.jobID = jobID
        self.index = index
    }
    public var description: String { "\(jobID)/\(index)" }
}

/// The job fields a worker needs to process a shard.
public struct JobDescriptor: Sendable, Equatable {
    public var id: Int64
    public var type: String
    public var parametersJSON: String
    public var model: String?
    public var inputLocation: String
    public var outputLocation: String
}

/// A leased shard: valid while `leaseToken` is unchanged in the ledger.
public struct ClaimedShard: Sendable, Equatable {
    public var shard: ShardRef
    public var job: JobDescriptor
    public var firstItem: Int64
    public var lastItem: Int64
    /// Attempt number of this lease, starting at 1.
    public var attempt: Int32
    public var leaseToken: UUID
    public var leaseExpiresAt: Date
    /// The items to process, with job-wide ordinals, read from the shard's manifest.
    public var items: [JobItem]
    /// A worker ended abnormally while holding this shard: run it one item at a time.
    public var isolated: Bool = false
    /// Items of the shard failed for crashing workers (not to be processed; listed in its summary).
    public var excluded: [ExcludedItem] = []
}

/// Result of trying to complete (or fail) a shard.
public enum CompletionOutcome: String, Sendable, Equatable {
    /// Recorded.
    case applied
    /// This very lease was already completed; nothing changed (counted as rejected).
    case duplicate
    /// The lease expired and was re-issued, or the job was cancelled; nothing changed (counted).
    case leaseLost = "lease_lost"
    /// No such shard.
    case unknownShard = "unknown_shard"
    /// The shard went back to the queue for another attempt (only from `failShard` and `handBackShard`).
    case requeued
    /// The shard used its last attempt and is now failed (only from `failShard`).
    case failed
    /// The whole job failed (only from `failJob`).
    case jobFailed = "job_failed"
}

/// What happened to one expired lease.
public struct ReleasedLease: Sendable, Equatable {
    public var shard: ShardRef
    /// The token the shard was leased under until now.
    public var token: UUID
    /// True when the shard ran out of attempts and is now failed; false when it was requeued.
    public var failed: Bool

    public init(shard: ShardRef, token: UUID, failed: Bool) {
        self.shard = shard
        self.token = token
        self.failed = failed
    }
}

/// A job row.
public struct JobRecord: Sendable, Equatable {
    public var id: Int64
    public var type: String
    public var parametersJSON: String
    public var model: String?
    public var inputLocation: String
    public var outputLocation: String
    public var state: JobState
    public var priority: Int32
    public var maxAttempts: Int32
    public var shardCount: Int
    public var itemCount: Int64
    public var shardsDone: Int
    public var shardsFailed: Int
    public var itemsDone: Int64
    public var itemsFailed: Int64
    public var rejectedCompletions: Int64
    public var createdAt: Date
    public var startedAt: Date?
    public var finishedAt: Date?
    /// Why the job failed (state ``JobState/failed``); nil otherwise.
    public var error: String? = nil
    /// The fingerprint of the input listing the job's items came from (``ListingDigest``); nil
    /// for jobs enqueued without one.
    public var listingDigest: String? = nil
}

/// Progress of one job for the CLI.
public struct JobProgress: Sendable, Equatable {
    public var job: JobRecord
    /// Shard counts by state (states with no shards are absent).
    public var shards: [ShardState: Int]
    public var itemsPending: Int64 { job.itemCount - job.itemsDone - job.itemsFailed }
    /// Items resolved per second over the last minute (or since the job started, if sooner).
    public var itemsPerSecond: Double
    /// Seconds to finish at the current rate; nil when nothing is moving or the job is finished.
    public var etaSeconds: Double?
    /// Items workers reported done in shards still running (not in `job`'s counts yet): from the
    /// workers' rows, which the coordinator refreshes on every heartbeat (`vtp run` takes the
    /// coordinator's own, newer count).
    public var itemsInProgress: Int64 = 0
}

/// Items resolved in one time bucket, across all jobs.
public struct ThroughputSample: Sendable, Equatable {
    public var bucketStart: Date
    public var items: Int64
    public var shards: Int
}

/// A failed item for `vtp jobs failures`.
public struct ItemFailure: Sendable, Equatable {
    public var ordinal: Int64
    public var sourceID: String
    public var path: String
    public var error: String
}

/// States a worker reports.
public enum WorkerState: String, Sendable, CaseIterable, Codable {
    case idle, busy, draining, offline
}

/// A worker's self-report, upserted on every heartbeat.
public struct WorkerReport: Sendable, Equatable {
    public var id: String
    public var host: String
    public var capabilitiesJSON: String
    public var state: WorkerState
    public var currentShard: ShardRef?
    public var itemsDone: Int64
    public var itemsFailed: Int64
    public var imagesPerSecond: Double
    public var memoryBytes: Int64
    /// Items the worker reported done in `currentShard`, not recorded yet (the shard is running).
    public var itemsInProgress: Int64

    public init(id: String, host: String, capabilitiesJSON: String = "{}", state: WorkerState = .idle,
                currentShard: ShardRef? = nil, itemsDone: Int64 = 0, itemsFailed: Int64 = 0,
                imagesPerSecond: Double = 0, memoryBytes: Int64 = 0, itemsInProgress: Int64 = 0) {
        self.id = id
        self.host = host
        self.capabilitiesJSON = capabilitiesJSON
        self.state = state
        self.currentShard = currentShard
        self.itemsDone = itemsDone
        self.itemsFailed = itemsFailed
        self.imagesPerSecond = imagesPerSecond
        self.memoryBytes = memoryBytes
        self.itemsInProgress = itemsInProgress
    }
}

/// A worker row as listed.
public struct WorkerRecord: Sendable, Equatable {
    public var report: WorkerReport
    public var registeredAt: Date
    public var lastHeartbeat: Date
}

/// Lease and retry timing.
public struct LeasePolicy: Sendable, Equatable {
    /// How long a claim or heartbeat keeps a shard.
    public var leaseSeconds: Double
    /// First backoff after a lost lease; doubles per attempt.
    public var backoffBaseSeconds: Double
    /// Longest backoff.
    public var backoffCapSeconds: Double

    public init(leaseSeconds: Double = 300, backoffBaseSeconds: Double = 5, backoffCapSeconds: Double = 600) {
        self.leaseSeconds = leaseSeconds
        self.backoffBaseSeconds = backoffBaseSeconds
        self.backoffCapSeconds = backoffCapSeconds
    }
}

/// A lease whose worker session ended, to hand back with `Ledger.releaseLeases(_:reason:)`.
public struct SessionLease: Sendable, Equatable {
    public var shard: ShardRef
    public var token: UUID
    /// For an isolated run: the ordinal of the item it was processing when the session ended.
    public var itemInHand: Int?

    public init(shard: ShardRef, token: UUID, itemInHand: Int? = nil) {
        self.shard = shard
        self.token = token
        self.itemInHand = itemInHand
    }
}

/// What a streaming listing knows only after its last item (see `Ledger.enqueue(_:listing:end:)`).
public struct ListingEnd: Sendable, Equatable {
    /// Samples the listing could not turn into items, in listing order.
    public var skipped: [SkippedSample]
    /// The listing's fingerprint (`ListingDigest` in VTPCoordinator), or nil.
    public var listingDigest: String?

    public init(skipped: [SkippedSample] = [], listingDigest: String? = nil) {
        self.skipped = skipped
        self.listingDigest = listingDigest
    }
}

/// Moves a value its owner sent away (a `sending` parameter) into a `@Sendable` closure that
/// runs on one other thread. `@unchecked` is sound only because nothing else keeps the value.
struct UncheckedTransfer<Value>: @unchecked Sendable {
    var value: Value
    init(_ value: Value) { self.value = value }
}
