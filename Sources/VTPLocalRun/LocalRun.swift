import Foundation
import Logging
import ServiceLifecycle
import Synchronization
import VTPConcurrency
import VTPCoordinator
import VTPDatasets
import VTPQueue
import VTPRuntimeSupport
import VTPTransport
import VTPVocabulary
import VTPWorker
#if canImport(Glibc)
import Glibc
#endif

/// The whole cluster on one machine, as `vtp run` runs it: a private PostgreSQL for the state
/// directory (unless a database is given; where its files live is ``PrivateServerLocation``'s
/// choice), an in-process coordinator on an ipc:// endpoint and a pool of workers, with progress
/// reported until the job is finalized. The product starts worker processes; tests run the same
/// road with in-process workers.
///
/// Re-running the same request resumes its job (or reports it when it already finished). While it
/// runs it holds the state directory's locks (``StateDirectoryLock``), so a second run on the same
/// state directory is refused and monitoring commands know to use its server as it is.
public struct LocalRun: Sendable {
    /// Where the workers run.
    public enum Workers: Sendable {
        /// `count` processes of `executable` started with `arguments` plus `--endpoint` and
        /// `--worker-id` (the `vtp worker` command), logging to the state directory.
        case processes(executable: String, arguments: [String], count: Int, threads: Int)
        /// `count` workers in this process executing shards with `handler`.
        case inProcess(handler: any ShardHandling, count: Int)
    }

    /// What happened, for the caller to render.
    public enum Event: Sendable {
        case resumed(jobID: Int64, done: Int64, total: Int64)
        case alreadyFinished(jobID: Int64)
        /// `--update`: the input changed since the job was created; `change.added` (and
        /// `change.addedSkipped`) became `shards` new shards, `change.missing` were left as they are.
        case updated(jobID: Int64, change: InputChange, shards: Int)
        /// The job had failed (`error`), or finished with failed items: `items` run again.
        case retrying(jobID: Int64, items: Int64, error: String?)
        case enqueued(jobID: Int64, items: Int, shards: Int, skipped: [SkippedSample])
        /// `progress.itemsInProgress` holds the items the workers reported in shards still running.
        case progress(JobProgress)
        case workerReplaced(slot: Int, status: Int32)
        /// A signal arrived: the workers stop after their current batch and hand their shards
        /// back (`signal` SIGINT) or finish them (SIGTERM); another signal stops at once.
        case stopping(signal: Int32)
        /// A second signal: the workers were killed and the run ends now; nothing is lost, the
        /// shards they held are handed back and run again on the next run.
        case stoppingNow
    }

    /// How a run ended.
    public struct Report: Sendable {
        public var jobID: Int64
        public var record: JobRecord
        /// The finalizer's result; nil when the job had finished before this run or it was interrupted.
        public var finalize: CoordinatorNotification.FinalizeResult?
        public var interrupted: Bool
        /// The job's failed items (at most 1000), listing failures included.
        public var failures: [ItemFailure]
    }

    public var request: JobRequest
    public var finalizer: any JobFinalizing
    public var workers: Workers
    public var stateDirectory: String
    /// An existing PostgreSQL to use instead of a private one.
    public var database: DatabaseURL?
    /// Lease and backoff of the private ledger; a killed worker's shards return after the lease.
    public var leasePolicy: LeasePolicy
    public var core: CoordinatorCore.Configuration
    public var maxJobItems: Int
    /// Whether a resumed job whose input gained items takes them in (`--update`); without it a
    /// changed input is an error (``LocalRunError/inputChanged(job:input:change:)``).
    public var update: Bool
    public var logger: Logger

    public init(request: JobRequest, finalizer: any JobFinalizing, workers: Workers, stateDirectory: String,
                database: DatabaseURL? = nil, leasePolicy: LeasePolicy = LeasePolicy(leaseSeconds: 15, backoffBaseSeconds: 1, backoffCapSeconds: 30),
                core: CoordinatorCore.Configuration = CoordinatorCore.Configuration(),
                maxJobItems: Int = .max, update: Bool = false, logger: Logger = Logger(label: "vtp.run")) {
        self.request = request
        self.finalizer = finalizer
        self.workers = workers
        self.stateDirectory = stateDirectory
        self.database = database
        self.leasePolicy = leasePolicy
        self.core = core
        self.maxJobItems = maxJobItems
        self.update = update
        self.logger = logger
    }

    /// Runs the job to its end (finalized, cancelled, or interrupted by SIGINT/SIGTERM).
    ///
    /// The first signal is passed on to the workers: on SIGINT they stop after the batch in hand
    /// and hand their shards back (no attempt spent), on SIGTERM they finish them. A second signal
    /// kills the workers and stops the coordinator without waiting.
    public func run(events: @escaping @Sendable (Event) -> Void = { _ in }) async throws -> Report {
        do {
            try FileManager.default.createDirectory(atPath: stateDirectory, withIntermediateDirectories: true)
        } catch {
            throw LocalRunError.stateDirectory(path: stateDirectory, reason: "cannot create the state directory: \(FileErrorText.reason(error, at: stateDirectory))")
        }
        // Monitoring commands probe the run lock for an instant, hence the short wait.
        let runLockPath = stateDirectory + "/" + StateDirectoryLock.runLockName
        guard let runLock = try await StateDirectoryLock.acquire(runLockPath, timeout: .seconds(2)) else {
            throw LocalRunError.stateDirectoryBusy(path: stateDirectory, holder: StateDirectoryLock.holder(runLockPath))
        }
        runLock.recordHolder()
        defer { runLock.release() }
        if let database { return try await serve(url: database, events: events) }
        // A monitoring command may have started the server to read it; it stops it within seconds.
        let serverLockPath = stateDirectory + "/" + StateDirectoryLock.serverLockName
        guard let serverLock = try await StateDirectoryLock.acquire(serverLockPath, timeout: .seconds(60)) else {
            throw LocalRunError.stateDirectory(
                path: serverLockPath,
                reason: "another vtp command\(StateDirectoryLock.holder(serverLockPath).map { " (pid \($0))" } ?? "") has held the private ledger for a minute")
        }
        serverLock.recordHolder()
        defer { serverLock.release() }
        let state = URL(fileURLWithPath: stateDirectory)
        let hadPointer = FileManager.default.fileExists(atPath: state.appendingPathComponent(PrivateServerLocation.pointerFileName).path)
        let server = try EmbeddedPostgres(stateDirectory: state, logger: logger)
        if hadPointer && !PrivateServerLocation.hasDataDirectory(server.serverDirectory) {
            logger.warning("the job ledger named by \(state.appendingPathComponent(PrivateServerLocation.pointerFileName).path) (\(server.serverDirectory.path)) is gone; starting a new one, so finished shards are done again")
        }
        try await server.start()
        do {
            let report = try await serve(url: server.databaseURL, events: events)
            try? await server.stop()
            return report
        } catch {
            try? await server.stop()
            throw error
        }
    }

    private func serve(url: DatabaseURL, events: @escaping @Sendable (Event) -> Void) async throws -> Report {
        _ = try await Migrator.migrate(database: url, logger: logger)
        let policy = leasePolicy
        let ledger = Ledger(database: url, leasePolicy: policy, logger: logger)
        try await ledger.verifySchema()
        // Ledgers from before 0007 keep items as rows until their manifests are written.
        try await ledger.moveItemRowsToManifests()
        // An earlier run of this job that died while enqueueing left a job nothing can claim.
        for stale in try await ledger.listJobs(limit: 1000) where stale.state == .listing && request.matches(stale) {
            try await ledger.discardListingJob(stale.id)
        }

        let jobID: Int64
        let request = request, maxItems = maxJobItems
        let listing = try await BlockingWork.run(name: "vtp-list") { try request.list(maxItems: maxItems) }
        let digest = listing.digest
        if var existing = try await request.existingJob(in: ledger) {
            jobID = existing.id
            if existing.listingDigest != digest {
                existing = try await takeInputChanges(of: existing, listing: listing, digest: digest, ledger: ledger, events: events)
            }
            // A failed job (its model did not load...) or failed items: this run retries them.
            if existing.state == .failed || existing.state == .completedWithFailures {
                let reset = try await ledger.retryFailed(job: jobID)
                if reset > 0 { events(.retrying(jobID: jobID, items: reset, error: existing.error)) }
                existing = try await ledger.job(jobID)
            }
            if existing.state.isFinished, finalizer.isFinalized(outputDirectory: existing.outputLocation) {
                events(.alreadyFinished(jobID: jobID))
                return Report(jobID: jobID, record: existing, finalize: nil, interrupted: false,
                              failures: try await failures(jobID, ledger))
            }
            if existing.state == .paused { try await ledger.resume(job: jobID) }
            events(.resumed(jobID: jobID, done: existing.itemsDone + existing.itemsFailed, total: existing.itemCount))
        } else {
            jobID = try await ledger.enqueue(request.spec(labelClasses: listing.classes), listing: listing)
            events(.enqueued(jobID: jobID, items: listing.itemCount,
                             shards: (listing.itemCount + request.shardSize - 1) / request.shardSize, skipped: listing.skipped))
        }

        let endpoint = Self.ipcEndpoint(stateDirectory: stateDirectory)
        unlink(String(endpoint.dropFirst("ipc://".count)))
        let notifier = WorkNotifier(database: url, logger: logger)
        try await notifier.start()
        let context = try ZMQContext()
        let coordinator = try Coordinator(ledger: Ledger(database: url, leasePolicy: policy, logger: logger), notifier: notifier,
                                          finalizer: finalizer, options: Coordinator.Options(bindEndpoints: [endpoint], core: core),
                                          context: context, logger: logger)
        let pool = WorkerPool(workers, endpoint: endpoint, jobID: jobID, logDirectory: stateDirectory, context: context,
                              logger: logger)
        let outcome = RunOutcome()
        // SIGINT/SIGTERM interrupt the run; the process's own dispositions come back afterwards.
        let signals = SignalWatcher()
        defer { signals.stop() }
        let group = RunServices.group(coordinator: coordinator, pool: pool, signals: signals, outcome: outcome, logger: logger,
                                      events: events) {
            [self] in try await watch(jobID: jobID, ledger: ledger, coordinator: coordinator, pool: pool, events: events)
        }
        try await group.run()
        let result = (finalize: outcome.finalize, signal: outcome.signal)
        // Every worker of this run is gone now; a lease one still held (it was killed, or stopped
        // at once) would only expire and count an attempt. Hand them back instead.
        let orphaned = try await ledger.handBackLeases(job: jobID, ownerPrefix: WorkerPool.workerIDPrefix(jobID: jobID))
        if orphaned > 0 { logger.info("handed back \(orphaned) shard(s) of workers that were stopped") }
        let record = try await ledger.job(jobID)
        // A signal that came as the last shard finished interrupted nothing.
        let interrupted = result.signal != nil && !(record.state.isFinished && finalizer.isFinalized(outputDirectory: record.outputLocation))
        return Report(jobID: jobID, record: record, finalize: result.finalize, interrupted: interrupted,
                      failures: try await failures(jobID, ledger))
    }

    /// The input listing differs from the one `job` was made from: with ``update`` the new items
    /// join the job as new shards (nothing done runs again; the finalizer then covers
    /// everything), otherwise the run stops with what changed. Returns the job as it is now.
    private func takeInputChanges(of job: JobRecord, listing: JobListing,
                                  digest: String, ledger: Ledger, events: @escaping @Sendable (Event) -> Void) async throws -> JobRecord {
        // The job's ids as 16-byte hashes and the new listing walked from disk, so the
        // comparison's memory is 16 bytes per item of the job, not the two listings.
        let jobIds = try await JobSourceIds.of(job: job.id, ledger: ledger)
        let compared = try await BlockingWork.run(name: "vtp-list") {
            var known = jobIds
            let items = listing.items()
            let change = InputChange(listing: items, skipped: listing.skipped, known: &known)
            try items.check()
            return (change, known)
        }
        var change = compared.0
        let known = compared.1
        change.missingExamples = try await known.firstUnseen(in: job.id, ledger: ledger)
        if change.isEmpty {
            // Same samples (a job from before digests were stored): remember the digest.
            try await ledger.appendItems(job: job.id, items: [], shardSize: request.shardSize, listingDigest: digest)
            return try await ledger.job(job.id)
        }
        guard update else { throw LocalRunError.inputChanged(job: job.id, input: job.inputLocation, change: change.summary()) }
        // Labels are indices into the class list; a different list would renumber the done items.
        let stored = (try? JobParameters.decode(jobType: request.parameters.jobType, json: job.parametersJSON))?.labelClasses ?? []
        if stored != listing.classes {
            let added = Set(listing.classes).subtracting(stored).sorted(), removed = Set(stored).subtracting(listing.classes).sorted()
            throw LocalRunError.classesChanged(job: job.id, input: job.inputLocation,
                                               detail: "new: \(added.isEmpty ? "none" : added.joined(separator: ", ")); "
                                                   + "gone: \(removed.isEmpty ? "none" : removed.joined(separator: ", "))")
        }
        // A second walk of the input hands the new items to the ledger as it writes their shards.
        let shards: Int
        if change.addedCount > 0 {
            let newItems = listing.items()
            shards = try await ledger.appendItems(job: job.id, items: newItems.lazy.filter { [known] in !known.contains($0.sourceId) },
                                                  skipped: change.addedSkipped, shardSize: request.shardSize,
                                                  listingDigest: digest, afterItems: { try newItems.check() })
        } else {
            shards = try await ledger.appendItems(job: job.id, items: [], skipped: change.addedSkipped,
                                                  shardSize: request.shardSize, listingDigest: digest)
        }
        events(.updated(jobID: job.id, change: change, shards: shards))
        return try await ledger.job(job.id)
    }

    /// Follows the job until it is finalized, cancelled or failed, replacing worker processes that
    /// exit; returns the finalizer's result (nil when the job ended without one). A signal ends the
    /// run through the service group, which cancels this.
    private func watch(jobID: Int64, ledger: Ledger, coordinator: Coordinator, pool: WorkerPool,
                       events: @escaping @Sendable (Event) -> Void) async throws -> CoordinatorNotification.FinalizeResult? {
        // One stream of everything the loop waits on, so it never polls a shared flag.
        enum Wake: Sendable { case finalized(Int64, CoordinatorNotification.FinalizeResult), tick }
        let (wakes, wake) = AsyncStream.makeStream(of: Wake.self)
        return try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask {
                for await note in coordinator.notifications {
                    if case let .jobFinalized(id, result) = note { wake.yield(.finalized(id, result)) }
                }
            }
            group.addTask {
                while !Task.isCancelled {
                    try await Task.sleep(for: .milliseconds(500))
                    wake.yield(.tick)
                }
            }
            defer { group.cancelAll() }
            var finalized: CoordinatorNotification.FinalizeResult?
            wake.yield(.tick)
            for await event in wakes {
                switch event {
                case let .finalized(id, result) where id == jobID: finalized = result
                case .finalized: continue
                case .tick: break
                }
                var record = try await ledger.job(jobID)
                if var progress = try? await ledger.progress(job: jobID) {
                    record = progress.job
                    progress.itemsInProgress = Int64(coordinator.itemsInProgress(job: jobID))
                    events(.progress(progress))
                }
                if record.state.isFinished, let finalized { return finalized }
                if record.state == .cancelled || record.state == .failed { return finalized }
                for (slot, status) in try await pool.replaceExited() { events(.workerReplaced(slot: slot, status: status)) }
            }
            return finalized
        }
    }

    private func failures(_ jobID: Int64, _ ledger: Ledger) async throws -> [ItemFailure] {
        var all: [ItemFailure] = []
        var after: Int64 = -1
        while all.count < 1000 {
            let page = try await ledger.failures(job: jobID, limit: 100, afterOrdinal: after)
            guard let last = page.last else { break }
            all += page
            after = last.ordinal
        }
        return all
    }

    /// An ipc endpoint in the state directory, or under /tmp when that path is too long for a
    /// Unix socket name (about 107 bytes).
    public static func ipcEndpoint(stateDirectory: String) -> String {
        let preferred = stateDirectory + "/coordinator.ipc"
        if preferred.utf8.count < 100 { return "ipc://" + preferred }
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in stateDirectory.utf8 { hash = (hash ^ UInt64(byte)) &* 0x100_0000_01b3 }
        return "ipc:///tmp/vtp-\(String(hash, radix: 36)).ipc"
    }
}
