import Foundation
import VTPVocabulary
import VTPIndex
import VTPModel
import VTPStorage

/// Turns a job's finished shards into its final artefacts: `latents_stats.pt` (latents jobs), the
/// FAISS index over every image embedding (`clip-embed`), caption-score and zero-shot accuracy
/// sections (`clip-score`) and `manifest.json`. For latents and features it reads only the shard
/// summaries and rewrites its files byte-identically on a re-run; CLIP jobs also read the shards'
/// embeddings or score files (listed by the summaries, so stale files beyond them are ignored), and
/// the index section's build time differs between runs.
public enum JobFinalizer {
    /// File name of LightningDiT's latent statistics.
    public static let statsFileName = "latents_stats.pt"
    /// File name of the run manifest.
    public static let manifestFileName = "manifest.json"

    /// Merges shards `0..<shardCount` of a job.
    ///
    /// Latent stats are merged in shard order from each shard's exact accumulator (over `latents`
    /// only, unbiased std, as LightningDiT computes them); with no latent written at all, no stats
    /// file exists. `listingFailures` are inputs that never became items (e.g. WebDataset samples
    /// without an image) and are reported as failures too. `failedShards` are shards that exhausted
    /// their attempts (by index, with the failures of their items): their summaries are skipped,
    /// their items reported as failed, and any output file an attempt left (one whose result was
    /// rejected) is removed, so the dataset holds no row the manifest counts as failed.
    ///
    /// Before merging, what failed or interrupted writes left is removed: partner files (id
    /// sidecars, metadata, caption embeddings, logits) of shards whose main file does not exist,
    /// and temporary files of the writers (``TemporaryName``) a killed process never renamed.
    @discardableResult
    public static func finalize(jobType: JobType, parametersJSON: String, outputDirectory: String, modelDirectory: String,
                                shardCount: Int, listingFailures: [RunManifest.Failure] = [],
                                failedShards: [Int: [RunManifest.Failure]] = [:]) throws(JobError) -> RunManifest {
        let parameters = try JobParameters.decode(jobType: jobType, json: parametersJSON)
        try removeLeftovers(jobType: jobType, outputDirectory: outputDirectory, shardCount: shardCount,
                            failedShards: Set(failedShards.keys))
        var summaries: [ShardSummary] = []
        for index in 0..<shardCount where failedShards[index] == nil {
            let path = outputDirectory + "/" + ShardSummary.fileName(shard: index)
            let summary = try ShardSummary.read(path)
            guard summary.jobType == jobType, summary.shardIndex == index else {
                throw .badShardSummary(path: path,
                    detail: "belongs to a \(summary.jobType.rawValue) job's shard \(summary.shardIndex), expected \(jobType.rawValue) shard \(index)")
            }
            summaries.append(summary)
        }
        let config: VTPConfig
        do { config = try VTPConfig.load(path: modelDirectory + "/config.json") } catch {
            throw .modelLoadFailed(model: modelDirectory, reason: "\(error)")
        }
        var model = [
            "directory": modelDirectory, "model_type": config.modelType, "patch_size": String(config.visionPatchSize),
            "embed_dim": String(config.visionEmbedDim), "latent_channels": String(config.latentChannels),
            "precision": parameters.precision.rawValue,
        ]

        let statsPath = outputDirectory + "/" + statsFileName
        let format: String, preprocessing: [String: String], dtype: OutputDType
        var extras: [String: Any] = [:]
        let written = summaries.compactMap(\.written)
        var classes = parameters.labelClasses.isEmpty ? nil : parameters.labelClasses
        switch parameters {
        case let .latents(p):
            format = "lightningdit-latents"
            dtype = p.dtype
            preprocessing = [
                "transform": TransformOption.admCenterCrop.rawValue, "image_size": String(p.imageSize),
                "normalize": p.normalize.rawValue,
                "flip": p.flip ? "true" : "false (latents_flip holds the unflipped latents)",
                "unlabeled_label": String(unlabeledLabel), "pillow": p.pillow.rawValue,
            ]
            var stats = LatentStatsAccumulator(channels: config.latentChannels)
            for (summary, index) in zip(summaries, 0...) {
                guard let shardStats = summary.stats else {
                    throw .badShardSummary(path: ShardSummary.fileName(shard: index), detail: "latents shard summary has no stats")
                }
                do { try stats.merge(shardStats) } catch {
                    throw .badShardSummary(path: ShardSummary.fileName(shard: index), detail: "\(error)")
                }
            }
            do {
                if stats.count > 0 {
                    try stats.writeTorchStats(to: statsPath)
                } else if FileManager.default.fileExists(atPath: statsPath) {
                    try FileManager.default.removeItem(atPath: statsPath)
                }
            } catch {
                throw .writeFailed(path: statsPath, reason: FileErrorText.reason(error, at: statsPath))
            }
        case let .features(p):
            format = "features"
            dtype = p.dtype
            preprocessing = [
                "transform": p.transform.rawValue, "image_size": String(p.imageSize), "normalize": p.normalize.rawValue,
                "layers": p.layers.description, "norm": String(p.norm), "pool": p.pool.rawValue,
                "keep_patch_tokens": String(p.keepPatchTokens), "unlabeled_label": String(unlabeledLabel),
                "pillow": p.pillow.rawValue,
            ]
        case let .clipEmbed(p):
            format = "clip-embeddings"
            dtype = p.dtype
            preprocessing = p.preprocessing.manifestEntries(modelImageSize: config.imageSize)
            model.merge(ClipFinalizing.modelEntries(config)) { $1 }
            extras["clip"] = ClipFinalizing.embedLayout(text: p.text)
            if p.index, !written.isEmpty {
                extras["index"] = try ClipFinalizing.buildIndex(shards: written, outputDirectory: outputDirectory,
                                                                exactThreshold: p.indexExactThreshold,
                                                                encoding: p.indexEncoding, memoryBudget: p.indexMemory)
            } else {
                let names = IndexBuilder.indexFileNames(in: outputDirectory + "/" + ClipLayout.indexDirectory)
                for name in Set(names + [IndexBuilder.indexFileName, IndexBuilder.infosFileName]).sorted() {
                    try ClipLayout.remove(ClipLayout.indexDirectory + "/" + name, in: outputDirectory)
                }
            }
        case let .clipScore(p):
            format = "clip-scores"
            dtype = .float32
            preprocessing = p.preprocessing.manifestEntries(modelImageSize: config.imageSize)
            model.merge(ClipFinalizing.modelEntries(config)) { $1 }
            for (key, value) in try ClipFinalizing.scoreSummary(shards: written, parameters: p, outputDirectory: outputDirectory) {
                extras[key] = value
            }
        case let .reconstruction(p):
            format = "reconstruction-metrics"
            dtype = .float32
            preprocessing = [
                "transform": TransformOption.admCenterCrop.rawValue, "image_size": String(p.resolvedImageSize(modelImageSize: config.imageSize)),
                "normalize": NormalizeOption.imagenet.rawValue, "pillow": p.pillow.rawValue,
                "denormalize": "Normalize(-mean/std, 1/std) then clamp(0, 1), as upstream's transform_rev",
            ]
            let indexed = summaries.compactMap { summary in summary.written.map { (index: summary.shardIndex, written: $0) } }
            extras["reconstruction"] = try ReconstructionFinalizing.summary(shards: indexed, parameters: p, outputDirectory: outputDirectory)
        case let .linearProbe(p):
            format = "linear-probe"
            dtype = .float32
            // The features' preprocessing is what the heads saw.
            var entries = ["train_features": p.train, "val_features": p.val]
            if let train = try? RunManifest.read(p.train + "/" + manifestFileName) {
                for (key, value) in train.preprocessing { entries["features_" + key] = value }
                classes = train.classes
            }
            preprocessing = entries
            extras["linear_probe"] = try LinearProbeFinalizing.summary(shards: written, parameters: p, outputDirectory: outputDirectory)
        }

        let shards = written
        let shardFailures = failedShards.sorted { $0.key < $1.key }.flatMap(\.value)
        let failures = summaries.flatMap { $0.failures.map { RunManifest.Failure(sourceId: $0.sourceId, reason: $0.reason) } }
            + shardFailures + listingFailures
        let inputs = summaries.reduce(0) { $0 + $1.inputs } + shardFailures.count + listingFailures.count
        let manifest = RunManifest(format: format, model: model, preprocessing: preprocessing, dtype: dtype,
                                   counts: .init(inputs: inputs, written: shards.reduce(0) { $0 + $1.rows }, failed: failures.count,
                                                 shards: shardCount),
                                   shards: shards, failures: failures,
                                   classes: classes)
        let manifestPath = outputDirectory + "/" + manifestFileName
        do {
            if extras.isEmpty {
                try manifest.write(to: manifestPath)
            } else {
                try ClipFinalizing.write(manifest, extras: extras, to: manifestPath)
            }
        } catch {
            throw .writeFailed(path: manifestPath, reason: FileErrorText.reason(error, at: manifestPath))
        }
        return manifest
    }

    /// Removes orphaned partners, the outputs of failed shards and stray temporary files (see
    /// ``finalize(jobType:parametersJSON:outputDirectory:modelDirectory:shardCount:listingFailures:failedShards:)``).
    static func removeLeftovers(jobType: JobType, outputDirectory: String, shardCount: Int, failedShards: Set<Int>) throws(JobError) {
        // Directories that hold shard files, each listed once.
        var listings: [String: Set<String>] = [:]
        func names(in relativeDirectory: String) -> Set<String> {
            if let known = listings[relativeDirectory] { return known }
            let path = relativeDirectory.isEmpty ? outputDirectory : outputDirectory + "/" + relativeDirectory
            let found = Set((try? FileManager.default.contentsOfDirectory(atPath: path)) ?? [])
            listings[relativeDirectory] = found
            return found
        }
        func split(_ relative: String) -> (directory: String, name: String) {
            let directory = (relative as NSString).deletingLastPathComponent
            return (directory, (relative as NSString).lastPathComponent)
        }
        func exists(_ relative: String) -> Bool {
            let (directory, name) = split(relative)
            return names(in: directory).contains(name)
        }
        func remove(_ relative: String) throws(JobError) {
            guard exists(relative) else { return }
            let path = outputDirectory + "/" + relative
            guard unlink(path) == 0 || errno == ENOENT else {
                throw .writeFailed(path: path, reason: "cannot remove a leftover shard file: \(String(cString: strerror(errno)))")
            }
        }
        for shard in 0..<shardCount {
            // Shards past the naming range were refused when written and have no files.
            guard let files = try? ClipLayout.shardFiles(jobType: jobType, shard: shard), let main = files.first else { continue }
            if failedShards.contains(shard) {
                if jobType == .reconstruction { try ReconstructionFinalizing.removeImages(ofFailedShard: shard, outputDirectory: outputDirectory) }
                for file in files { try remove(file) }  // main file first: the shard disappears at once
            } else if !exists(main) {
                for file in files.dropFirst() { try remove(file) }
            }
        }
        if jobType == .reconstruction { try ReconstructionFinalizing.removeStaging(outputDirectory: outputDirectory) }
        let directories = Set(((try? ClipLayout.shardFiles(jobType: jobType, shard: 0)) ?? []).map { split($0).directory })
        for directory in directories.sorted() {
            for name in names(in: directory) where TemporaryName.matches(name) {
                try remove(directory.isEmpty ? name : directory + "/" + name)
            }
        }
    }
}
