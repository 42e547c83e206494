import Foundation
import VTPVocabulary
import VTPDatasets
import VTPImage
import VTPModel
import VTPStorage
import VTPTensor

/// Reconstruction latents of each image and of its mirror, written as LightningDiT shards.
final class LatentsJob: ShardJob {
    let parameters: LatentsParameters
    let model: VTPModel
    let plan: PreprocessPlan
    let geometry: LatentGeometry
    private var latents: RowBuffer
    private var latentsFlip: RowBuffer

    init(parameters: LatentsParameters, model: VTPModel, options: ShardExecutor.Options) throws(JobError) {
        try ModelChecks.imageSize(parameters.imageSize, model: model)
        self.parameters = parameters
        self.model = model
        let grid = parameters.imageSize / model.config.visionPatchSize
        geometry = LatentGeometry(channels: model.config.latentChannels, height: grid, width: grid)
        plan = options.plan(transform: .admCenterCrop(size: parameters.imageSize), normalization: parameters.normalize.normalization,
                            alsoFlipped: parameters.flip, pillow: parameters.pillow)
        latents = RowBuffer(rowElements: geometry.elementCount)
        latentsFlip = RowBuffer(rowElements: geometry.elementCount)
    }

    var batchSize: Int { parameters.batchSize }

    func consume(_ batch: PreparedBatch) throws {
        let out = try model.reconstructionLatents(batch.pixels)
        try check(out, batch.items.count)
        latents.append(out)
        if let flipped = batch.flipped {
            let outFlip = try model.reconstructionLatents(flipped)
            try check(outFlip, batch.items.count)
            latentsFlip.append(outFlip)
        } else {
            latentsFlip.append(out)
        }
    }

    private func check(_ t: Tensor, _ rows: Int) throws {
        let expected = [rows, geometry.channels, geometry.height, geometry.width]
        guard t.shape == expected else {
            throw JobError.modelMismatch(model: model.directory, detail: "latents have shape \(t.shape), expected \(expected)")
        }
    }

    func write(shard: Int, directory: String, items: [JobItem]) throws -> ShardWriteResult {
        precondition(items.count == latents.rows && items.count == latentsFlip.rows, "rows and items disagree")
        var stats = LatentStatsAccumulator(channels: geometry.channels)
        guard !items.isEmpty else { return ShardWriteResult(written: nil, stats: stats) }
        let spatial = geometry.height * geometry.width
        latents.values.withUnsafeBufferPointer { stats.add($0, rows: items.count, spatial: spatial, storedAs: parameters.dtype) }
        let writer = LatentShardWriter(directory: directory, rank: 0, geometry: geometry, dtype: parameters.dtype)
        let written = try latents.values.withUnsafeBufferPointer { l in
            try latentsFlip.values.withUnsafeBufferPointer { f in
                try writer.write(shard: shard, latents: l, latentsFlip: f,
                                 labels: items.map { $0.label.map(Int64.init) ?? unlabeledLabel }, sourceIds: items.map(\.sourceId),
                                 metadata: items.map(\.metadataFields))
            }
        }
        return ShardWriteResult(written: written, stats: stats)
    }
}
