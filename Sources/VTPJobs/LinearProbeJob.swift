import Foundation
import VTPEvaluation
import VTPSafeTensors
import VTPStorage
import VTPTensor
import VTPVocabulary

/// Output layout of a `linear-probe` job, relative to its output folder.
///
/// - `probe/results_{i}.jsonl`: one ``LinearProbeHeadResult`` per head of shard `i` that trained.
/// - `probe/heads_{i}.safetensors`: those heads' final `{key}.weight` (classes × input) and
///   `{key}.bias` (classes), float32, as `LinearClassifier.linear` holds them.
/// - `linear_probing_results.json`: upstream's results file (`best_accuracy`, `best_classifier`,
///   `all_accuracies` of the last epoch), written by the finalizer.
public enum LinearProbeLayout {
    public static func results(shard: Int) throws(JobError) -> String { "probe/results_\(try ClipLayout.number(shard)).jsonl" }
    public static func heads(shard: Int) throws(JobError) -> String { "probe/heads_\(try ClipLayout.number(shard)).safetensors" }
    /// The file upstream's script writes, with its keys.
    public static let upstreamResults = "linear_probing_results.json"
}

/// What one head of a sweep measured.
public struct LinearProbeHeadResult: Codable, Sendable, Equatable {
    /// One evaluation on the val features, after an epoch.
    public struct Epoch: Codable, Sendable, Equatable {
        public var epoch: Int
        /// Val rows classified right.
        public var correct: Int
        public var total: Int
        /// `100 · correct / total`, upstream's number.
        public var accuracyPercent: Double
        /// Mean cross-entropy over the epoch's iterations.
        public var trainLoss: Double

        enum CodingKeys: String, CodingKey {
            case epoch, correct, total, accuracyPercent = "accuracy_percent", trainLoss = "train_loss"
        }
    }

    /// The head's position in the sweep (its item ordinal).
    public var ordinal: Int
    public var head: LinearProbeHead
    public var inputDim: Int
    public var epochs: [Epoch]

    enum CodingKeys: String, CodingKey { case ordinal, head, inputDim = "input_dim", epochs }
}

/// Executes a shard of a `linear-probe` job: trains its heads on the train features for the
/// whole schedule, evaluating on the val features after every epoch, and writes their results
/// and weights. No model is loaded: the features are already computed.
enum LinearProbeShard {
    /// Runs `task` on `threads` cores (nil: all of them).
    static func execute(_ task: ShardTask, parameters: LinearProbeParameters, threads: Int?,
                        progress: (@Sendable (Int) -> Void)?) throws -> ShardOutcome {
        let start = ContinuousClock.now
        // The engine's rule: OpenBLAS single-threaded inside tasks that one pool spreads.
        BLAS.setThreadCount(1)
        let pool = ComputePool(threads: threads ?? ProcessInfo.processInfo.activeProcessorCount)
        let sweep = parameters.heads
        var position: [String: Int] = [:]
        for (i, head) in sweep.enumerated() { position[head.key] = i }
        var heads: [(item: JobItem, head: LinearProbeHead, sweepIndex: Int)] = []
        for item in task.items {
            guard let i = position[item.sourceId] else {
                throw JobError.badParameters(detail: "shard \(task.shardIndex): item '\(item.sourceId)' is no head of this job's sweep")
            }
            heads.append((item, sweep[i], i))
        }
        let train = try LinearProbeFeatures(directory: parameters.train, role: "train")
        let val = try LinearProbeFeatures(directory: parameters.val, role: "val")
        let classes = try LinearProbeFeatures.check(train: train, val: val, blocks: heads.map(\.head.blocks))
        let widest = heads.map(\.head.blocks).max() ?? 1
        let stride = (widest + 1) * train.dim

        // Heads that read the same blocks share one forward (their weights stacked).
        var groups: [(blocks: Int, members: [Int], heads: LinearHeadGroup)] = []
        for n in Array(Set(heads.map(\.head.blocks))).sorted() {
            let members = heads.indices.filter { heads[$0].head.blocks == n }
            let inputDim = (n + 1) * train.dim
            let initial = members.map {
                LinearProbeRandom.initialWeights(seed: parameters.seed, head: heads[$0].sweepIndex, classes: classes, inputDim: inputDim)
            }
            groups.append((n, members, LinearHeadGroup(inputDim: inputDim, classes: classes, initialWeights: initial, pool: pool)))
        }
        let totalSteps = parameters.epochs * parameters.epochLength
        var schedules = heads.map { CosineAnnealingSchedule(baseRate: $0.head.scaledLearningRate, totalSteps: totalSteps) }
        var results = heads.map { LinearProbeHeadResult(ordinal: $0.item.ordinal, head: $0.head, inputDim: ($0.head.blocks + 1) * train.dim, epochs: []) }

        let batch = parameters.batchSize
        let evalBatch = 2 * batch  // upstream's val loader
        var x = [Float](repeating: 0, count: max(batch, evalBatch) * stride)
        for epoch in 0..<parameters.epochs {
            let order = LinearProbeRandom.trainingOrder(seed: parameters.seed, epoch: epoch, rows: train.rows, count: parameters.epochLength * batch)
            var lossSums = [Double](repeating: 0, count: heads.count)
            for iteration in 0..<parameters.epochLength {
                // Checked per iteration, so a stop waits for at most one step.
                if task.stop?.isRaised == true { throw ShardStopped(itemsDone: 0) }
                let rows = order[(iteration * batch)..<((iteration + 1) * batch)]
                let labels = rows.map { train.labels[$0] }
                x.withUnsafeMutableBufferPointer { buffer in
                    train.gather(rows, blocks: widest, into: buffer.baseAddress!)
                    for group in groups {
                        let input = UnsafePointer(buffer.baseAddress! + (widest - group.blocks) * train.dim)
                        let losses = group.heads.step(input, rows: rows.count, stride: stride, labels: labels,
                                                      rates: group.members.map { schedules[$0].rate })
                        for (k, member) in group.members.enumerated() { lossSums[member] += losses[k] }
                    }
                }
                for i in schedules.indices { schedules[i].advance() }
            }
            var correct = [Int](repeating: 0, count: heads.count)
            var from = 0
            while from < val.rows {
                let rows = Array(from..<min(from + evalBatch, val.rows))[...]
                let labels = rows.map { val.labels[$0] }
                x.withUnsafeMutableBufferPointer { buffer in
                    val.gather(rows, blocks: widest, into: buffer.baseAddress!)
                    for group in groups {
                        let input = UnsafePointer(buffer.baseAddress! + (widest - group.blocks) * train.dim)
                        let hits = group.heads.correct(input, rows: rows.count, stride: stride, labels: labels)
                        for (k, member) in group.members.enumerated() { correct[member] += hits[k] }
                    }
                }
                from += evalBatch
            }
            for i in heads.indices {
                results[i].epochs.append(.init(epoch: epoch, correct: correct[i], total: val.rows,
                                               accuracyPercent: 100.0 * Double(correct[i]) / Double(val.rows),
                                               trainLoss: lossSums[i] / Double(parameters.epochLength)))
            }
        }
        let trained = ContinuousClock.now

        // A head whose loss stopped being finite failed; the others are written. Outcomes follow
        // the task's items, as every shard's do.
        var outcomes: [ItemResult] = []
        var keptResults: [LinearProbeHeadResult] = []
        var weights: [(name: String, shape: [Int], values: [Float])] = []
        let resultsName = try LinearProbeLayout.results(shard: task.shardIndex)
        for (member, head) in heads.enumerated() {
            let group = groups.first { $0.members.contains(member) }!
            let k = group.members.firstIndex(of: member)!
            if let iteration = group.heads.divergedAt[k] {
                outcomes.append(ItemResult(ordinal: head.item.ordinal, status: .failed, error: """
                    training diverged: the loss stopped being finite at iteration \(iteration) (epoch \(iteration / parameters.epochLength)) \
                    at learning rate \(head.head.scaledLearningRate)
                    """))
                continue
            }
            outcomes.append(ItemResult(ordinal: head.item.ordinal, status: .ok, outputLocation: "\(resultsName)#\(keptResults.count)"))
            keptResults.append(results[member])
            let (w, b) = group.heads.parameters(of: k)
            weights.append((head.head.key + ".weight", [classes, group.heads.inputDim], Array(w)))
            weights.append((head.head.key + ".bias", [classes], Array(b)))
        }

        var files: [String] = []
        var written: WrittenShard?
        if keptResults.isEmpty {
            try ShardExecutor.removeStaleOutputs(shard: task.shardIndex, jobType: task.jobType, directory: task.outputDirectory)
        } else {
            let headsName = try LinearProbeLayout.heads(shard: task.shardIndex)
            try ClipLayout.createParent(of: resultsName, in: task.outputDirectory)
            let set = ShardFileSet(directory: task.outputDirectory)
            do {
                try withFloatBuffers(weights.map(\.values)) { buffers in
                    let payloads = zip(weights, buffers).map { TensorPayload.floats($0.0.name, shape: $0.0.shape, $0.1, as: .float32) }
                    try set.stageSafeTensors(payloads, metadata: ["job": "linear-probe", "classes": String(classes)], as: headsName)
                }
                try set.stageJSONL(keptResults, as: resultsName, isMain: true)
                try set.publish()
            } catch let error as JobError {
                throw error
            } catch {
                throw JobError.writeFailed(path: task.outputDirectory + "/" + resultsName, reason: "\(error)")
            }
            written = WrittenShard(fileName: resultsName, sidecarName: headsName, rows: keptResults.count)
            files = [resultsName, headsName]
        }
        files.append(try ShardExecutor.writeSummary(task, outcomes: outcomes, written: written, stats: nil))
        progress?(task.items.count)

        var timings = StageTimings()
        timings.infer = (trained - start).seconds
        timings.wall = (ContinuousClock.now - start).seconds
        timings.write = (ContinuousClock.now - trained).seconds
        // No model ran: no model load and no model batches to report.
        return ShardOutcome(shardIndex: task.shardIndex, items: outcomes, timings: timings, files: files, modelLoadSeconds: nil,
                            batchSizes: [])
    }

}

/// The finalizer's part of a linear probe: upstream's choice of the best head over the shards'
/// results, and its results file.
enum LinearProbeFinalizing {
    /// Upstream's selection: after each epoch, the best head of that epoch (the first in sweep
    /// order on a tie) replaces the best so far only when strictly better; `all_accuracies` are
    /// the last epoch's. Heads that failed are not candidates.
    static func summary(shards: [WrittenShard], parameters: LinearProbeParameters, outputDirectory: String) throws(JobError) -> [String: Any] {
        var results: [LinearProbeHeadResult] = []
        for shard in shards {
            results += try readJSONLRows(outputDirectory + "/" + shard.fileName, as: LinearProbeHeadResult.self,
                                         file: "linear-probe results", row: "linear-probe head result")
        }
        results.sort { $0.ordinal < $1.ordinal }
        var best = 0.0, bestKey = ""
        var perEpoch: [[String: Any]] = []
        for epoch in 0..<parameters.epochs {
            var epochBest = -Double.infinity, epochKey = ""
            for result in results where epoch < result.epochs.count && result.epochs[epoch].accuracyPercent > epochBest {
                epochBest = result.epochs[epoch].accuracyPercent
                epochKey = result.head.key
            }
            guard !epochKey.isEmpty else { continue }
            if epochBest > best { best = epochBest; bestKey = epochKey }
            perEpoch.append(["epoch": epoch, "best_accuracy": epochBest, "best_classifier": epochKey])
        }
        var last: [String: Double] = [:]
        for result in results { if let final = result.epochs.last { last[result.head.key] = final.accuracyPercent } }
        let upstream: [String: Any] = ["best_accuracy": best, "best_classifier": bestKey, "all_accuracies": last]
        let path = outputDirectory + "/" + LinearProbeLayout.upstreamResults
        do {
            let data = try JSONSerialization.data(withJSONObject: upstream, options: [.prettyPrinted, .sortedKeys])
            try AtomicFile.write(data + Data("\n".utf8), to: path)
        } catch {
            throw .writeFailed(path: path, reason: FileErrorText.reason(error, at: path))
        }
        return [
            "best_accuracy": best, "best_classifier": bestKey, "all_accuracies": last, "epochs": perEpoch,
            "heads": results.count, "val_rows": results.first?.epochs.first?.total ?? 0,
            "protocol": [
                "blocks": parameters.blocks, "learning_rates": parameters.learningRates, "batch_size": parameters.batchSize,
                "epochs": parameters.epochs, "epoch_length": parameters.epochLength, "seed": parameters.seed,
                "optimizer": "SGD momentum 0.9, weight decay 0, lr scaled by batch_size/256, CosineAnnealingLR over epochs·epoch_length",
                "augmentation": "none: heads train on cached features (upstream trains on RandomResizedCrop + flip views)",
            ] as [String: Any],
        ]
    }
}
