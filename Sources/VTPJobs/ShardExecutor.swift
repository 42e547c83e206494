import Foundation
import VTPDatasets
import VTPImage
import VTPModel
import VTPStorage
import VTPTensor
import VTPConcurrency
import VTPVocabulary

/// Executes one shard: preprocessing on a small thread pool overlapping inference on the calling
/// thread, batching, writing the outputs and the shard summary.
///
/// Item-level problems (missing file, corrupt image) become failed ``ItemResult``s and the other
/// items are still written; only shard-level problems (bad parameters, model load, inference or
/// write errors) throw. File names depend only on the shard index, and a shard's files are
/// published together (``ShardFileSet``: partners first, main file last, nothing left behind by a
/// failed write), so re-running a shard replaces its outputs and never duplicates them.
public struct ShardExecutor: Sendable {
    /// Tuning that does not change results.
    public struct Options: Sendable {
        /// Threads reading, decoding and preprocessing (they run while the model computes).
        public var preprocessThreads: Int
        /// Items preprocessed ahead of inference at most (the bounded queue); nil: two batches.
        public var queueCapacity: Int?
        /// Decompression-bomb guard.
        public var maxPixels: Int
        /// Memory one item's decode and preprocessing may take; larger items fail (``DecodeBudget``).
        public var maxDecodeBytes: Int
        /// Seconds one item's read, decode and preprocess may take before it fails and its thread
        /// is abandoned; 0 for no limit.
        public var itemTimeoutSeconds: Double

        public init(preprocessThreads: Int = 2, queueCapacity: Int? = nil,
                    maxPixels: Int = ImageDecoder.defaultMaxPixels, maxDecodeBytes: Int = DecodeBudget.defaultMaxBytes,
                    itemTimeoutSeconds: Double = 0) {
            self.preprocessThreads = preprocessThreads
            self.queueCapacity = queueCapacity
            self.maxPixels = maxPixels
            self.maxDecodeBytes = maxDecodeBytes
            self.itemTimeoutSeconds = itemTimeoutSeconds
        }

        /// A preprocessing plan with these limits. The Pillow release is the job's, not the
        /// worker's, so every shard of a job resamples alike wherever it runs.
        func plan(transform: PreprocessTransform, normalization: Normalization, alsoFlipped: Bool,
                  pillow: PillowOption) -> PreprocessPlan {
            PreprocessPlan(transform: transform, normalization: normalization, alsoFlipped: alsoFlipped,
                           compatibility: pillow.compatibility, maxPixels: maxPixels, maxDecodeBytes: maxDecodeBytes,
                           itemTimeoutSeconds: itemTimeoutSeconds)
        }
    }

    public let options: Options
    public let models: ModelCache

    public init(options: Options = Options(), models: ModelCache = .shared) {
        self.options = options
        self.models = models
    }

    /// Runs `task` to completion. Blocking and CPU-bound: call it from a thread you own (or use
    /// ``run(_:progress:)``). `progress` receives the number of items done (written or failed),
    /// on the executing thread, after each batch.
    ///
    /// An isolated task runs one item at a time (batches of one, nothing prepared ahead) and calls
    /// `progress(n)` before item `n` starts, so a crash happens while the item last reported is
    /// the one in hand. Results do not depend on batching, so its outputs are the same bits.
    /// Excluded items are not touched; they are the shard's failures with their recorded reasons.
    ///
    /// Once `task.stop` is raised, the next item boundary throws ``ShardStopped`` and nothing is written.
    public func execute(_ task: ShardTask, progress: (@Sendable (Int) -> Void)? = nil) throws -> ShardOutcome {
        let start = ContinuousClock.now
        let parameters = try JobParameters.decode(jobType: task.jobType, json: task.parametersJSON)
        if case let .linearProbe(probe) = parameters {
            try Self.prepareOutput(task.outputDirectory)
            return try LinearProbeShard.execute(task, parameters: probe, threads: models.threads, progress: progress)
        }
        let (model, modelLoadSeconds) = try models.lookup(at: task.modelDirectory, precision: parameters.precision)
        try Self.prepareOutput(task.outputDirectory)
        let job = try parameters.makeJob(model: model, options: options, outputDirectory: task.outputDirectory)

        var timings = StageTimings()
        var batchSizes: [Int] = []
        var outcomes: [ItemResult] = []
        outcomes.reserveCapacity(task.items.count)
        var kept: [JobItem] = []
        var keptOutcome: [Int] = []  // outcome index of each kept row
        let batchSize = task.isolated ? 1 : job.batchSize
        let pipeline = task.isolated
            ? PreprocessPipeline(items: task.items, plan: job.plan, threads: 1, capacity: 1, onDemand: true)
            : PreprocessPipeline(items: task.items, plan: job.plan, threads: options.preprocessThreads,
                                 capacity: options.queueCapacity ?? 2 * batchSize)
        defer { pipeline.shutdown() }

        var pending: [(item: JobItem, pixels: Tensor, flipped: Tensor?)] = []
        var pendingOutcome: [Int] = []
        // Isolated: item n starts only after progress(n) was reported, item 0 included.
        var reported = task.isolated ? -1 : 0
        func flush(done: Int) throws {
            defer {
                if done > reported { reported = done; progress?(done) }
            }
            guard !pending.isEmpty else { return }
            let batch = Self.stack(pending)
            batchSizes.append(pending.count)
            let t0 = ContinuousClock.now
            do { try job.consume(batch) } catch {
                throw JobError.inferenceFailed(shard: task.shardIndex, detail: "\(error)")
            }
            timings.infer += (ContinuousClock.now - t0).seconds
            kept += batch.items
            keptOutcome += pendingOutcome
            pending.removeAll(keepingCapacity: true)
            pendingOutcome.removeAll(keepingCapacity: true)
        }
        for index in task.items.indices {
            // Checked per item, so a stop waits for at most the batch being inferred.
            if task.stop?.isRaised == true { throw ShardStopped(itemsDone: max(reported, 0)) }
            if task.isolated, index > reported {
                reported = index
                progress?(index)
            }
            let prepared = pipeline.take(index)
            timings.read += prepared.readSeconds
            timings.decode += prepared.decodeSeconds
            timings.preprocess += prepared.preprocessSeconds
            var outcome = ItemResult(ordinal: prepared.item.ordinal, status: .ok,
                                     timings: [StageTiming(stage: "read", seconds: prepared.readSeconds),
                                               StageTiming(stage: "decode", seconds: prepared.decodeSeconds),
                                               StageTiming(stage: "preprocess", seconds: prepared.preprocessSeconds)])
            switch prepared.result {
            case let .ok(pixels, flipped):
                pending.append((prepared.item, pixels, flipped))
                pendingOutcome.append(outcomes.count)
            case let .failed(reason):
                outcome.status = .failed
                outcome.error = reason
            }
            outcomes.append(outcome)
            if pending.count == batchSize { try flush(done: index + 1) }
        }
        try flush(done: task.items.count)
        pipeline.shutdown()

        let t0 = ContinuousClock.now
        let result: ShardWriteResult
        do { result = try job.write(shard: task.shardIndex, directory: task.outputDirectory, items: kept) } catch let e as JobError {
            throw e
        } catch {
            throw JobError.writeFailed(path: task.outputDirectory, reason: "\(error)")
        }
        var files: [String] = []
        if let written = result.written {
            files = [written.fileName] + (written.sidecarName == written.fileName ? [] : [written.sidecarName]) + result.extraFiles
            for (row, i) in keptOutcome.enumerated() { outcomes[i].outputLocation = "\(written.fileName)#\(row)" }
        } else {
            try Self.removeStaleOutputs(shard: task.shardIndex, jobType: task.jobType, directory: task.outputDirectory)
        }
        files.append(try Self.writeSummary(task, outcomes: outcomes, written: result.written, stats: result.stats))
        timings.write = (ContinuousClock.now - t0).seconds
        timings.wall = (ContinuousClock.now - start).seconds
        return ShardOutcome(shardIndex: task.shardIndex, items: outcomes, timings: timings, files: files,
                            modelLoadSeconds: modelLoadSeconds, batchSizes: batchSizes)
    }

    /// Writes the summary of shard `task` (its failures from `outcomes`, one per task item in task
    /// order, and from the excluded items) and returns its file name.
    static func writeSummary(_ task: ShardTask, outcomes: [ItemResult], written: WrittenShard?,
                             stats: LatentStatsAccumulator?) throws(JobError) -> String {
        precondition(outcomes.count == task.items.count, "one outcome per item")
        let failures = zip(task.items, outcomes).filter { $0.1.status == .failed }.map {
            ShardSummary.Failure(ordinal: $0.1.ordinal, sourceId: $0.0.sourceId, reason: $0.1.error ?? "")
        } + task.excluded.map { ShardSummary.Failure(ordinal: $0.ordinal, sourceId: $0.sourceId, reason: $0.reason) }
        let summary = ShardSummary(jobType: task.jobType, jobId: task.jobId, shardIndex: task.shardIndex,
                                   inputs: task.items.count + task.excluded.count, written: written,
                                   failures: failures.sorted { $0.ordinal < $1.ordinal }, stats: stats)
        let name = ShardSummary.fileName(shard: task.shardIndex)
        try summary.write(to: task.outputDirectory + "/" + name)
        return name
    }

    /// Creates the output directory and checks it is writable.
    private static func prepareOutput(_ directory: String) throws(JobError) {
        do { try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true) } catch {
            throw JobError.outputNotWritable(path: directory, reason: FileErrorText.reason(error, at: directory))
        }
        // An existing directory the worker may not write to would fail every shard alike at its write.
        if access(directory, W_OK | X_OK) != 0 {
            let code = errno
            throw JobError.outputNotWritable(path: directory, reason: String(cString: strerror(code)))
        }
    }

    /// ``execute(_:progress:)`` on a dedicated thread, so async callers never block the
    /// cooperative pool with inference.
    public func run(_ task: ShardTask, progress: (@Sendable (Int) -> Void)? = nil) async throws -> ShardOutcome {
        try await BlockingWork.run(name: "vtp-shard") { try execute(task, progress: progress) }
    }

    /// Copies batch rows into (B, 3, S, S) tensors.
    private static func stack(_ rows: [(item: JobItem, pixels: Tensor, flipped: Tensor?)]) -> PreparedBatch {
        let shape = rows[0].pixels.shape
        let per = rows[0].pixels.count
        let pixels = Tensor(uninitialized: [rows.count] + shape)
        let flipped = rows[0].flipped.map { _ in Tensor(uninitialized: [rows.count] + shape) }
        for (i, row) in rows.enumerated() {
            withExtendedLifetime(row) {
                (pixels.mutablePointer + i * per).update(from: row.pixels.pointer, count: per)
                if let flipped, let f = row.flipped { (flipped.mutablePointer + i * per).update(from: f.pointer, count: per) }
            }
        }
        return PreparedBatch(items: rows.map(\.item), pixels: pixels, flipped: flipped)
    }

    /// A shard whose every item failed writes no tensor file; one left by an earlier run of the
    /// same shard must not survive, or the dataset would hold rows the ledger says failed.
    static func removeStaleOutputs(shard: Int, jobType: JobType, directory: String) throws {
        for name in try ClipLayout.shardFiles(jobType: jobType, shard: shard) { try ClipLayout.remove(name, in: directory) }
    }
}
