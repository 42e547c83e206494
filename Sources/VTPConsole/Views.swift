import Foundation
import VTPQueue

// The JSON shapes of the monitoring commands' `--json` output. Keys are snake_case, sorted, and
// always present (absent values are `null`), so scripts can rely on them; docs/monitoring.md
// lists them. Times are RFC 3339 UTC strings with milliseconds.

/// RFC 3339 UTC timestamps with milliseconds.
public enum Timestamp {
    public static func string(_ date: Date) -> String {
        let totalMillis = Int64((date.timeIntervalSince1970 * 1000).rounded())
        let seconds = totalMillis >= 0 ? totalMillis / 1000 : (totalMillis - 999) / 1000
        var time = time_t(seconds)
        var parts = tm()
        gmtime_r(&time, &parts)
        return String(format: "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", Int(parts.tm_year) + 1900, Int(parts.tm_mon) + 1,
                      Int(parts.tm_mday), Int(parts.tm_hour), Int(parts.tm_min), Int(parts.tm_sec),
                      Int(totalMillis - seconds * 1000))
    }
}

/// Encodes views as stable, pretty-printed JSON.
public enum ConsoleJSON {
    public static func encode<T: Encodable>(_ value: T) throws -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .prettyPrinted, .withoutEscapingSlashes]
        return String(decoding: try encoder.encode(value), as: UTF8.self)
    }
}

/// One job in `vtp jobs --json` (and nested as `job` in status views).
public struct JobSummary: Encodable, Sendable, Equatable {
    public struct Counts: Encodable, Sendable, Equatable {
        public var total: Int64
        public var done: Int64
        public var failed: Int64
        /// Items only: neither done nor failed yet.
        public var pending: Int64?

        public func encode(to encoder: any Encoder) throws {
            var c = encoder.container(keyedBy: CodingKeys.self)
            try c.encode(total, forKey: .total)
            try c.encode(done, forKey: .done)
            try c.encode(failed, forKey: .failed)
            if let pending { try c.encode(pending, forKey: .pending) }
        }
        enum CodingKeys: String, CodingKey { case total, done, failed, pending }
    }

    public var id: Int64
    public var type: String
    public var state: String
    public var priority: Int32
    public var model: String?
    public var input: String
    public var output: String
    public var maxAttempts: Int32
    public var shards: Counts
    public var items: Counts
    public var rejectedCompletions: Int64
    public var createdAt: String
    public var startedAt: String?
    public var finishedAt: String?
    /// Why a failed job failed; null otherwise.
    public var error: String?

    public init(_ job: JobRecord) {
        id = job.id
        type = job.type
        state = job.state.rawValue
        priority = job.priority
        model = job.model
        input = job.inputLocation
        output = job.outputLocation
        maxAttempts = job.maxAttempts
        shards = Counts(total: Int64(job.shardCount), done: Int64(job.shardsDone), failed: Int64(job.shardsFailed))
        items = Counts(total: job.itemCount, done: job.itemsDone, failed: job.itemsFailed,
                       pending: job.itemCount - job.itemsDone - job.itemsFailed)
        rejectedCompletions = job.rejectedCompletions
        createdAt = Timestamp.string(job.createdAt)
        startedAt = job.startedAt.map(Timestamp.string)
        finishedAt = job.finishedAt.map(Timestamp.string)
        error = job.error
    }

    enum CodingKeys: String, CodingKey {
        case id, type, state, priority, model, input, output, shards, items, error
        case maxAttempts = "max_attempts", rejectedCompletions = "rejected_completions"
        case createdAt = "created_at", startedAt = "started_at", finishedAt = "finished_at"
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(id, forKey: .id)
        try c.encode(type, forKey: .type)
        try c.encode(state, forKey: .state)
        try c.encode(priority, forKey: .priority)
        try c.encode(model, forKey: .model)
        try c.encode(input, forKey: .input)
        try c.encode(output, forKey: .output)
        try c.encode(maxAttempts, forKey: .maxAttempts)
        try c.encode(shards, forKey: .shards)
        try c.encode(items, forKey: .items)
        try c.encode(rejectedCompletions, forKey: .rejectedCompletions)
        try c.encode(createdAt, forKey: .createdAt)
        try c.encode(startedAt, forKey: .startedAt)
        try c.encode(finishedAt, forKey: .finishedAt)
        try c.encode(error, forKey: .error)
    }
}

/// One job with its progress: entries of `vtp status --json`, and `vtp job show --json`.
public struct JobStatus: Encodable, Sendable, Equatable {
    public var job: JobSummary
    /// Resolved items (done + failed, and those workers reported done in shards still running)
    /// over all items, 0...1.
    public var progress: Double
    /// Items workers reported done in shards still running (not in the job's counts yet).
    public var itemsInProgress: Int64
    /// Items resolved per second over the last minute.
    public var itemsPerSecond: Double
    /// Seconds to finish at that rate; null when idle or finished.
    public var etaSeconds: Double?
    /// Shard counts by state; states without shards are absent.
    public var shardStates: [String: Int]
    /// The job's parameters as JSON text (only in `vtp job show`).
    public var parameters: String?

    public init(_ progress: JobProgress, includeParameters: Bool = false) {
        job = JobSummary(progress.job)
        let total = progress.job.itemCount
        itemsInProgress = progress.itemsInProgress
        let resolved = min(total, progress.job.itemsDone + progress.job.itemsFailed + progress.itemsInProgress)
        self.progress = total > 0 ? Double(resolved) / Double(total) : 1
        itemsPerSecond = progress.itemsPerSecond
        etaSeconds = progress.etaSeconds
        shardStates = Dictionary(uniqueKeysWithValues: progress.shards.map { ($0.key.rawValue, $0.value) })
        parameters = includeParameters ? progress.job.parametersJSON : nil
    }

    enum CodingKeys: String, CodingKey {
        case job, progress, parameters
        case itemsPerSecond = "items_per_second", etaSeconds = "eta_seconds", shardStates = "shard_states"
        case itemsInProgress = "items_in_progress"
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(job, forKey: .job)
        try c.encode(progress, forKey: .progress)
        try c.encode(itemsInProgress, forKey: .itemsInProgress)
        try c.encode(itemsPerSecond, forKey: .itemsPerSecond)
        try c.encode(etaSeconds, forKey: .etaSeconds)
        try c.encode(shardStates, forKey: .shardStates)
        if let parameters { try c.encode(parameters, forKey: .parameters) }
    }
}

/// One worker in `vtp workers --json`.
public struct WorkerSummary: Encodable, Sendable, Equatable {
    public var id: String
    public var host: String
    public var state: String
    public var currentJob: Int64?
    public var currentShard: Int32?
    /// Seconds since the last heartbeat, by the database clock.
    public var heartbeatAgeSeconds: Double
    public var imagesPerSecond: Double
    public var memoryBytes: Int64
    public var itemsDone: Int64
    public var itemsFailed: Int64
    public var registeredAt: String
    public var lastHeartbeat: String

    /// `now` should be the database clock (`Ledger.databaseTime()`), which stamped the heartbeat.
    public init(_ worker: WorkerRecord, now: Date) {
        let report = worker.report
        id = report.id
        host = report.host
        state = report.state.rawValue
        currentJob = report.currentShard?.jobID
        currentShard = report.currentShard?.index
        heartbeatAgeSeconds = max(0, now.timeIntervalSince(worker.lastHeartbeat))
        imagesPerSecond = report.imagesPerSecond
        memoryBytes = report.memoryBytes
        itemsDone = report.itemsDone
        itemsFailed = report.itemsFailed
        registeredAt = Timestamp.string(worker.registeredAt)
        lastHeartbeat = Timestamp.string(worker.lastHeartbeat)
    }

    enum CodingKeys: String, CodingKey {
        case id, host, state
        case currentJob = "current_job", currentShard = "current_shard", heartbeatAgeSeconds = "heartbeat_age_seconds"
        case imagesPerSecond = "images_per_second", memoryBytes = "memory_bytes", itemsDone = "items_done"
        case itemsFailed = "items_failed", registeredAt = "registered_at", lastHeartbeat = "last_heartbeat"
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(id, forKey: .id)
        try c.encode(host, forKey: .host)
        try c.encode(state, forKey: .state)
        try c.encode(currentJob, forKey: .currentJob)
        try c.encode(currentShard, forKey: .currentShard)
        try c.encode(heartbeatAgeSeconds, forKey: .heartbeatAgeSeconds)
        try c.encode(imagesPerSecond, forKey: .imagesPerSecond)
        try c.encode(memoryBytes, forKey: .memoryBytes)
        try c.encode(itemsDone, forKey: .itemsDone)
        try c.encode(itemsFailed, forKey: .itemsFailed)
        try c.encode(registeredAt, forKey: .registeredAt)
        try c.encode(lastHeartbeat, forKey: .lastHeartbeat)
    }
}

/// `vtp workers --json`.
public struct WorkerList: Encodable, Sendable, Equatable {
    public var workers: [WorkerSummary]
    public init(workers: [WorkerSummary]) { self.workers = workers }
}

/// `vtp jobs --json`.
public struct JobList: Encodable, Sendable, Equatable {
    public var jobs: [JobSummary]
    public init(jobs: [JobSummary]) { self.jobs = jobs }
}

/// `vtp status --json`: the jobs shown, worker counts by state and the cluster's recent rate.
public struct ClusterStatus: Encodable, Sendable, Equatable {
    public var generatedAt: String
    public var jobs: [JobStatus]
    /// Worker counts: `total` plus one entry per state (`idle`, `busy`, `draining`, `offline`).
    public var workers: [String: Int]
    /// Items resolved per second across all jobs over the last minute.
    public var itemsPerSecond: Double

    public init(now: Date, jobs: [JobStatus], workers: [WorkerSummary], itemsPerSecond: Double) {
        generatedAt = Timestamp.string(now)
        self.jobs = jobs
        var counts = Dictionary(uniqueKeysWithValues: WorkerState.allCases.map { ($0.rawValue, 0) })
        for worker in workers { counts[worker.state, default: 0] += 1 }
        counts["total"] = workers.count
        self.workers = counts
        self.itemsPerSecond = itemsPerSecond
    }

    enum CodingKeys: String, CodingKey {
        case jobs, workers
        case generatedAt = "generated_at", itemsPerSecond = "items_per_second"
    }
}

/// One page of `vtp failures ID --json`.
public struct FailurePage: Encodable, Sendable, Equatable {
    public struct Entry: Encodable, Sendable, Equatable {
        public var ordinal: Int64
        public var sourceID: String
        public var path: String
        public var error: String
        enum CodingKeys: String, CodingKey { case ordinal, path, error, sourceID = "source_id" }
    }

    public var job: Int64
    public var failures: [Entry]
    /// Pass as `--after` for the next page; null on the last page.
    public var nextAfter: Int64?

    public init(job: Int64, failures: [ItemFailure], nextAfter: Int64?) {
        self.job = job
        self.failures = failures.map { Entry(ordinal: $0.ordinal, sourceID: $0.sourceID, path: $0.path, error: $0.error) }
        self.nextAfter = nextAfter
    }

    enum CodingKeys: String, CodingKey { case job, failures, nextAfter = "next_after" }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(job, forKey: .job)
        try c.encode(failures, forKey: .failures)
        try c.encode(nextAfter, forKey: .nextAfter)
    }
}

/// `vtp job cancel|pause|resume|retry ID --json`.
public struct ControlResult: Encodable, Sendable, Equatable {
    public var job: Int64
    public var action: String
    /// The job's state after the action.
    public var state: String
    /// Items put back in the queue (retry only; null otherwise).
    public var itemsReset: Int64?

    public init(job: Int64, action: String, state: String, itemsReset: Int64? = nil) {
        self.job = job
        self.action = action
        self.state = state
        self.itemsReset = itemsReset
    }

    enum CodingKeys: String, CodingKey { case job, action, state, itemsReset = "items_reset" }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(job, forKey: .job)
        try c.encode(action, forKey: .action)
        try c.encode(state, forKey: .state)
        try c.encode(itemsReset, forKey: .itemsReset)
    }
}
