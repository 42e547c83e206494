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
    /// their attempts (by index, with the failures of their items): they wrote no summary and no
    /// output, so they are skipped and their items reported as failed.
    @discardableResult
    public static func finalize(jobType: JobType, parametersJSON: String, outputDirectory: String, modelDirectory: String,
                                shardCount: Int, listingFailures: [RunManifest.Failure] = [],
                                failedShards: [Int: [RunManifest.Failure]] = [:]) throws(JobError) -> RunManifest {
        let parameters = try JobParameters.decode(jobType: jobType, json: parametersJSON)
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
        switch parameters {
        case let .latents(p):
            format = "lightningdit-latents"
            dtype = p.dtype
            preprocessing = [
                "transform": TransformOption.admCenterCrop.rawValue, "image_size": String(p.imageSize),
                "normalize": p.normalize.rawValue,
                "flip": p.flip ? "true" : "false (latents_flip holds the unflipped latents)",
                "unlabeled_label": String(unlabeledLabel),
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
                throw .writeFailed(path: statsPath, reason: "\(error)")
            }
        case let .features(p):
            format = "features"
            dtype = p.dtype
            preprocessing = [
                "transform": p.transform.rawValue, "image_size": String(p.imageSize), "normalize": p.normalize.rawValue,
                "layers": p.layers.description, "norm": String(p.norm), "pool": p.pool.rawValue,
                "keep_patch_tokens": String(p.keepPatchTokens), "unlabeled_label": String(unlabeledLabel),
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
                                                                encoding: p.indexEncoding)
            } else {
                for name in [IndexBuilder.indexFileName, IndexBuilder.infosFileName] {
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
        }

        let shards = written
        let shardFailures = failedShards.sorted { $0.key < $1.key }.flatMap(\.value)
        let failures = summaries.flatMap { $0.failures.map { RunManifest.Failure(sourceId: $0.sourceId, reason: $0.reason) } }
            + shardFailures + listingFailures
        let inputs = summaries.reduce(0) { $0 + $1.inputs } + shardFailures.count + listingFailures.count
        let manifest = RunManifest(format: format, model: model, preprocessing: preprocessing, dtype: dtype,
                                   counts: .init(inputs: inputs, written: shards.reduce(0) { $0 + $1.rows }, failed: failures.count,
                                                 shards: shardCount),
                                   shards: shards, failures: failures)
        let manifestPath = outputDirectory + "/" + manifestFileName
        do {
            if extras.isEmpty {
                try manifest.write(to: manifestPath)
            } else {
                try ClipFinalizing.write(manifest, extras: extras, to: manifestPath)
            }
        } catch {
            throw .writeFailed(path: manifestPath, reason: "\(error)")
        }
        return manifest
    }
}
