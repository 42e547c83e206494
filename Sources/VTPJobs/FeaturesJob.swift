import Foundation
import VTPVocabulary
import VTPDatasets
import VTPImage
import VTPModel
import VTPStorage
import VTPTensor

/// Encoder features of the last or the last n blocks, pooled, optionally with patch tokens.
final class FeaturesJob: ShardJob {
    let parameters: FeaturesParameters
    let model: VTPModel
    let plan: PreprocessPlan
    /// Output tensors in file order: name, per-row shape and rows so far.
    private var outputs: [(name: String, rowShape: [Int], rows: RowBuffer)] = []
    private let layerCount: Int
    private let dim: Int
    private let tokens: Int

    init(parameters: FeaturesParameters, model: VTPModel, options: ShardExecutor.Options) throws(JobError) {
        try ModelChecks.imageSize(parameters.imageSize, model: model)
        let depth = model.config.visionDepth
        if case let .intermediate(n) = parameters.layers, n > depth {
            throw .invalidParameter(field: "layers", detail: "cannot take the last \(n) blocks of a \(depth)-block encoder")
        }
        self.parameters = parameters
        self.model = model
        plan = options.plan(transform: parameters.transform.transform(size: parameters.imageSize),
                            normalization: parameters.normalize.normalization, alsoFlipped: false, pillow: parameters.pillow)
        dim = model.config.visionEmbedDim
        let grid = parameters.imageSize / model.config.visionPatchSize
        tokens = grid * grid
        let pooledWidth = parameters.pool == .clsMean ? 2 * dim : dim
        switch parameters.layers {
        case .last:
            layerCount = 1
            outputs.append(("pooled", [pooledWidth], RowBuffer(rowElements: pooledWidth)))
            if parameters.keepPatchTokens { outputs.append(("patch_tokens", [tokens, dim], RowBuffer(rowElements: tokens * dim))) }
        case let .intermediate(n):
            layerCount = n
            for i in 0..<n {
                outputs.append(("intermediate_\(i)_pooled", [pooledWidth], RowBuffer(rowElements: pooledWidth)))
                if parameters.keepPatchTokens {
                    outputs.append(("intermediate_\(i)_patch_tokens", [tokens, dim], RowBuffer(rowElements: tokens * dim)))
                }
            }
        }
    }

    var batchSize: Int { parameters.batchSize }

    func consume(_ batch: PreparedBatch) throws {
        let layers: [VTPModel.LayerFeatures]
        switch parameters.layers {
        case .last where parameters.norm: layers = [try model.lastLayerFeatures(batch.pixels)]
        case .last: layers = try model.intermediateLayers(batch.pixels, .last(1), norm: false)
        case let .intermediate(n): layers = try model.intermediateLayers(batch.pixels, .last(n), norm: parameters.norm)
        }
        guard layers.count == layerCount else {
            throw JobError.modelMismatch(model: model.directory, detail: "model returned \(layers.count) layers, expected \(layerCount)")
        }
        let b = batch.items.count
        let perLayer = parameters.keepPatchTokens ? 2 : 1
        for (i, layer) in layers.enumerated() {
            guard layer.classToken.shape == [b, dim], layer.patchTokens.shape == [b, tokens, dim] else {
                throw JobError.modelMismatch(model: model.directory,
                    detail: "features have shapes \(layer.classToken.shape) / \(layer.patchTokens.shape), expected [\(b), \(dim)] / [\(b), \(tokens), \(dim)]")
            }
            let pooled = Self.pool(layer, mode: parameters.pool, batch: b, tokens: tokens, dim: dim)
            outputs[i * perLayer].rows.append(pooled)
            if parameters.keepPatchTokens { outputs[i * perLayer + 1].rows.append(layer.patchTokens) }
        }
    }

    /// Pools one layer's tokens into (B, D) or (B, 2D); the mean is accumulated in float64 so it
    /// does not depend on the token order's rounding.
    static func pool(_ layer: VTPModel.LayerFeatures, mode: PoolOption, batch b: Int, tokens t: Int, dim d: Int) -> Tensor {
        if mode == .cls { return layer.classToken }
        let width = mode == .clsMean ? 2 * d : d
        let out = Tensor(uninitialized: [b, width])
        let dst = UnsafeMutableBufferPointer(start: out.mutablePointer, count: out.count)
        var sums = [Double](repeating: 0, count: d)
        withExtendedLifetime(layer) {
            let cls = layer.classToken.buffer, patches = layer.patchTokens.buffer
            sums.withUnsafeMutableBufferPointer { acc in
                for bi in 0..<b {
                    let row = bi * width
                    var meanStart = row
                    if mode == .clsMean {
                        for i in 0..<d { dst[row + i] = cls[bi * d + i] }
                        meanStart = row + d
                    }
                    for i in 0..<d { acc[i] = 0 }
                    for ti in 0..<t {
                        let base = (bi * t + ti) * d
                        for i in 0..<d { acc[i] += Double(patches[base + i]) }
                    }
                    for i in 0..<d { dst[meanStart + i] = Float(acc[i] / Double(t)) }
                }
            }
        }
        return out
    }

    func write(shard: Int, directory: String, items: [JobItem]) throws -> ShardWriteResult {
        guard !items.isEmpty else { return ShardWriteResult(written: nil, stats: nil) }
        let metadata = [
            "job": "features", "layers": parameters.layers.description, "norm": String(parameters.norm),
            "pool": parameters.pool.rawValue, "transform": parameters.transform.rawValue,
            "image_size": String(parameters.imageSize), "normalize": parameters.normalize.rawValue,
        ]
        let writer = FeatureShardWriter(directory: directory, rank: 0, prefix: "features", dtype: parameters.dtype, metadata: metadata)
        let labels = items.map { $0.label.map(Int64.init) ?? unlabeledLabel }
        let written = try withFloatBuffers(outputs.map(\.rows.values)) { buffers in
            let features = zip(outputs, buffers).map { FeatureShardWriter.Feature(name: $0.0.name, rowShape: $0.0.rowShape, values: $0.1) }
            return try writer.write(shard: shard, features: features, sourceIds: items.map(\.sourceId), labels: labels,
                                    rowMetadata: items.map(\.metadataFields))
        }
        return ShardWriteResult(written: written, stats: nil)
    }
}
