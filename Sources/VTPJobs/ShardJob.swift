import VTPVocabulary
import VTPDatasets
import VTPImage
import VTPModel
import VTPStorage
import VTPTensor

/// A batch of successfully preprocessed items, in shard order.
struct PreparedBatch {
    var items: [JobItem]
    /// (B, 3, S, S)
    var pixels: Tensor
    /// (B, 3, S, S) mirrored inputs, when the plan asked for them.
    var flipped: Tensor?
}

/// What a job wrote for a shard.
struct ShardWriteResult {
    /// The tensor shard and its id sidecar, or nil when no row succeeded (nothing is written then).
    var written: WrittenShard?
    /// Job-specific state the finalizer merges (latent stats).
    var stats: LatentStatsAccumulator?
    /// Further files written beside `written` (relative paths), e.g. CLIP caption embeddings.
    var extraFiles: [String] = []
}

/// The per-kind part of executing a shard: how to preprocess, what to run, what to write.
/// One instance serves one shard execution and accumulates its rows.
protocol ShardJob: AnyObject {
    var plan: PreprocessPlan { get }
    var batchSize: Int { get }
    /// Runs the model on a batch and keeps its rows.
    func consume(_ batch: PreparedBatch) throws
    /// Writes the kept rows of shard `shard` (the items in the order consumed) and returns what was written.
    func write(shard: Int, directory: String, items: [JobItem]) throws -> ShardWriteResult
}

extension JobParameters {
    /// The shard job for these parameters on `model`, after checking they fit the model.
    func makeJob(model: VTPModel, options: ShardExecutor.Options, outputDirectory: String) throws(JobError) -> any ShardJob {
        switch self {
        case let .latents(p): try LatentsJob(parameters: p, model: model, options: options)
        case let .features(p): try FeaturesJob(parameters: p, model: model, options: options)
        case let .clipEmbed(p): try ClipEmbedJob(parameters: p, model: model, options: options)
        case let .clipScore(p): try ClipScoreJob(parameters: p, model: model, options: options, outputDirectory: outputDirectory)
        case let .reconstruction(p): try ReconstructionJob(parameters: p, model: model, options: options, outputDirectory: outputDirectory)
        case .linearProbe: throw .badParameters(detail: "a linear-probe shard trains heads on cached features and runs no model (LinearProbeShard)")
        }
    }
}

enum ModelChecks {
    static func imageSize(_ size: Int, model: VTPModel) throws(JobError) {
        let patch = model.config.visionPatchSize
        guard size % patch == 0 else {
            throw .invalidParameter(field: "image_size", detail: "\(size) is not a multiple of the model's patch size \(patch)")
        }
    }
}

/// The label written for items whose source has none: LightningDiT's `labels` tensor is int64
/// with no missing value, and -1 is never a valid class index, so it cannot be mistaken for one.
public let unlabeledLabel: Int64 = -1

/// Growable float storage for rows of one output tensor, appended from model outputs.
struct RowBuffer {
    let rowCount: Int
    private(set) var values: [Float] = []
    private(set) var rows = 0

    init(rowElements: Int) { rowCount = rowElements }

    mutating func append(_ buffer: UnsafeBufferPointer<Float>) {
        precondition(buffer.count % rowCount == 0, "\(buffer.count) values are not whole rows of \(rowCount)")
        values.append(contentsOf: buffer)
        rows += buffer.count / rowCount
    }

    mutating func append(_ tensor: Tensor) {
        withExtendedLifetime(tensor) { append(tensor.buffer) }
    }
}

/// Borrows every array's storage at once for the duration of `body` (several output tensors
/// streamed into one file).
func withFloatBuffers<R>(_ arrays: [[Float]], _ body: ([UnsafeBufferPointer<Float>]) throws -> R) throws -> R {
    func recurse(_ i: Int, _ acc: [UnsafeBufferPointer<Float>]) throws -> R {
        if i == arrays.count { return try body(acc) }
        return try arrays[i].withUnsafeBufferPointer { try recurse(i + 1, acc + [$0]) }
    }
    return try recurse(0, [])
}
