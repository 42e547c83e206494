import Foundation
import VTPVocabulary
import VTPDatasets
import VTPEvaluation
import VTPImage
import VTPMetricNets
import VTPModel
import VTPStorage
import VTPTensor

/// One line of `metrics/metrics_{i}.jsonl`: an image's reconstruction scores.
public struct ReconstructionRow: Codable, Sendable, Equatable {
    /// Row in this shard's metrics file.
    public var row: Int
    public var ordinal: Int
    public var sourceId: String
    public var path: String
    public var label: Int?
    /// Upstream's `calculate_psnr` in dB; nil when the reconstruction is identical (infinite PSNR,
    /// which JSON cannot hold).
    public var psnr: Double?
    /// torchmetrics' SSIM (data range 1, Gaussian 11×11, σ 1.5) of the pair.
    public var ssim: Double
    /// Upstream's LPIPS of the pair, with `lpips_weights`.
    public var lpips: Double?

    enum CodingKeys: String, CodingKey {
        case row, ordinal, sourceId = "source_id", path, label, psnr, ssim, lpips
    }
}

/// File layout of `reconstruction` outputs, relative to the output directory.
///
/// - `metrics/metrics_{i:05d}.jsonl`: one ``ReconstructionRow`` per image of shard i (the shard's
///   main file and its id sidecar).
/// - with `inception_weights`: `fid/reference_{i:05d}.npy` and `fid/reconstructed_{i:05d}.npy`, the
///   (N, 2048) float32 FID Inception features of the shard's 8-bit images, rows as in the metrics file.
/// - with `save_images`: `reference/ref_{ordinal:06d}.png` and `reconstructed/rec_{ordinal:06d}.png`,
///   upstream's folders and names (its `global_idx` is the item's position in the ImageFolder listing,
///   which is the ordinal), so any FID tool can compare the two folders.
/// - `.reconstruction-staging/`: PNGs of shards being executed. A shard's images are renamed into
///   the two folders only after its metrics file is published, and the finalizer removes what a
///   stopped or killed execution left here, so the folders hold images of written rows only.
public enum ReconstructionLayout {
    public static func metrics(shard: Int) throws(JobError) -> String { "metrics/metrics_\(try ClipLayout.number(shard)).jsonl" }

    /// The two image sets FID compares.
    public enum Side: String, Sendable, CaseIterable {
        case reference, reconstructed
    }

    public static func fidFeatures(_ side: Side, shard: Int) throws(JobError) -> String {
        "fid/\(side.rawValue)_\(try ClipLayout.number(shard)).npy"
    }
    public static let referenceDirectory = "reference"
    public static let reconstructedDirectory = "reconstructed"
    static let stagingDirectory = ".reconstruction-staging"

    public static func referenceImage(ordinal: Int) -> String { referenceDirectory + "/ref_" + ShardNaming.pad(ordinal, 6) + ".png" }
    public static func reconstructedImage(ordinal: Int) -> String { reconstructedDirectory + "/rec_" + ShardNaming.pad(ordinal, 6) + ".png" }
}

/// `reconstruction`: encode, decode and score every image as upstream's reconstruction evaluation
/// does, keeping one row per image; with `save_images`, both images of each pair as PNG.
final class ReconstructionJob: ShardJob {
    /// Upstream's `IMAGENET_DEFAULT_MEAN` / `_STD`, as Python doubles (its `transform_rev` derives
    /// the reversed statistics from them in double before torch rounds them).
    static let mean = [0.485, 0.456, 0.406]
    static let std = [0.229, 0.224, 0.225]

    let parameters: ReconstructionParameters
    let model: VTPModel
    let plan: PreprocessPlan
    let imageSize: Int
    private let outputDirectory: String
    /// This execution's private folder for PNGs, created on the first batch.
    private var staging: String?
    private var rows: [ReconstructionRow] = []
    private let inception: FIDInception?
    private let lpips: LPIPS?
    private var referenceFeatures = RowBuffer(rowElements: FIDInception.featureCount)
    private var reconstructedFeatures = RowBuffer(rowElements: FIDInception.featureCount)

    init(parameters: ReconstructionParameters, model: VTPModel, options: ShardExecutor.Options, outputDirectory: String) throws(JobError) {
        guard model.config.trainReconstruction else {
            throw .modelMismatch(model: model.directory, detail: "reconstruction needs a checkpoint with train_reconstruction true (a pixel decoder)")
        }
        imageSize = parameters.resolvedImageSize(modelImageSize: model.config.imageSize)
        try ModelChecks.imageSize(imageSize, model: model)
        self.parameters = parameters
        self.model = model
        self.outputDirectory = outputDirectory
        plan = options.plan(transform: .admCenterCrop(size: imageSize), normalization: .imagenet, alsoFlipped: false,
                            pillow: parameters.pillow)
        do {
            inception = try parameters.inceptionWeights.map { path throws(MetricNetError) in try FIDInception(weightsAt: path) }
            lpips = try parameters.lpipsWeights.map { path throws(MetricNetError) in try LPIPS(weightsAt: path) }
        } catch {
            throw .invalidParameter(field: "weights", detail: "\(error)")
        }
    }

    deinit {
        // A stopped or failed execution leaves no staged images behind (a killed one leaves them
        // to the finalizer).
        if let staging { try? FileManager.default.removeItem(atPath: staging) }
    }

    var batchSize: Int { parameters.batchSize }

    func consume(_ batch: PreparedBatch) throws {
        let latents = try model.reconstructionLatents(batch.pixels)
        let decoded = try model.decode(latents: latents)
        let b = batch.items.count, s = imageSize
        guard decoded.shape == [b, 3, s, s] else {
            throw JobError.modelMismatch(model: model.directory, detail: "decoded images have shape \(decoded.shape), expected \([b, 3, s, s])")
        }
        let plane = 3 * s * s
        try withExtendedLifetime((batch.pixels, decoded)) {
            for (i, item) in batch.items.enumerated() {
                let original = ReconstructionMetrics.denormalize(UnsafeBufferPointer(rebasing: batch.pixels.buffer[(i * plane)..<((i + 1) * plane)]),
                                                                 channels: 3, mean: Self.mean, std: Self.std)
                let reconstruction = ReconstructionMetrics.denormalize(UnsafeBufferPointer(rebasing: decoded.buffer[(i * plane)..<((i + 1) * plane)]),
                                                                       channels: 3, mean: Self.mean, std: Self.std)
                let (psnr, ssim) = try original.withUnsafeBufferPointer { o in
                    try reconstruction.withUnsafeBufferPointer { r in
                        (try ReconstructionMetrics.psnr(original: o, reconstruction: r),
                         try ReconstructionMetrics.ssim(original: o, reconstruction: r, channels: 3, height: s, width: s))
                    }
                }
                var row = ReconstructionRow(row: rows.count, ordinal: item.ordinal, sourceId: item.sourceId, path: item.location.encoded,
                                            label: item.label, psnr: psnr.isFinite ? psnr : nil, ssim: ssim)
                if let lpips {
                    // Upstream feeds LPIPS the float pair mapped to [-1, 1], not the 8-bit images.
                    let a = original.map { $0 * 2 - 1 }, b = reconstruction.map { $0 * 2 - 1 }
                    row.lpips = lpips.distance(a, b, height: s, width: s, pool: model.pool)
                }
                rows.append(row)
                // The 8-bit pair exists only for what reads it: the FID network and the PNGs.
                guard inception != nil || parameters.saveImages else { continue }
                let referencePixels = Self.rgb8(original, size: s), reconstructedPixels = Self.rgb8(reconstruction, size: s)
                if let inception {
                    referenceFeatures.append(Self.features(inception, referencePixels, size: s, pool: model.pool))
                    reconstructedFeatures.append(Self.features(inception, reconstructedPixels, size: s, pool: model.pool))
                }
                if parameters.saveImages {
                    try stage(referencePixels, as: ReconstructionLayout.referenceImage(ordinal: item.ordinal))
                    try stage(reconstructedPixels, as: ReconstructionLayout.reconstructedImage(ordinal: item.ordinal))
                }
            }
        }
    }

    /// pytorch-fid's view of a saved image: `ToTensor` (the 8-bit values over 255, channel-major)
    /// through the Inception network.
    static func features(_ network: FIDInception, _ rgb: [UInt8], size: Int, pool: ComputePool) -> Tensor {
        let plane = size * size
        var image = [Float](repeating: 0, count: 3 * plane)
        for p in 0..<plane { for c in 0..<3 { image[c * plane + p] = Float(rgb[3 * p + c]) / 255 } }
        let out = Tensor(uninitialized: [1, FIDInception.featureCount])
        image.withUnsafeBufferPointer { network.features($0.baseAddress!, height: size, width: size, into: out.mutablePointer, pool: pool) }
        return out
    }

    /// Upstream's `(x · 255).astype(uint8)` on a (3, H, W) image in [0, 1]: the product in float32,
    /// truncated toward zero, interleaved as RGB.
    static func rgb8(_ image: [Float], size: Int) -> [UInt8] {
        let plane = size * size
        var out = [UInt8](repeating: 0, count: 3 * plane)
        image.withUnsafeBufferPointer { src in
            out.withUnsafeMutableBufferPointer { dst in
                for p in 0..<plane {
                    for c in 0..<3 { dst[3 * p + c] = UInt8(src[c * plane + p] * Float(255)) }
                }
            }
        }
        return out
    }

    private func stage(_ pixels: [UInt8], as relative: String) throws {
        let directory: String
        if let staging {
            directory = staging
        } else {
            directory = outputDirectory + "/" + ReconstructionLayout.stagingDirectory + "/" + UUID().uuidString
            for sub in [ReconstructionLayout.referenceDirectory, ReconstructionLayout.reconstructedDirectory] {
                let path = directory + "/" + sub
                do { try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true) } catch {
                    throw JobError.writeFailed(path: path, reason: FileErrorText.reason(error, at: path))
                }
            }
            staging = directory
        }
        let png = try ImageEncoder.png(try RGBImage(width: imageSize, height: imageSize, pixels: pixels))
        let path = directory + "/" + relative
        do { try png.write(to: URL(fileURLWithPath: path)) } catch {
            throw JobError.writeFailed(path: path, reason: FileErrorText.reason(error, at: path))
        }
    }

    func write(shard: Int, directory: String, items: [JobItem]) throws -> ShardWriteResult {
        precondition(items.count == rows.count, "rows and items disagree")
        let metricsPath = try ReconstructionLayout.metrics(shard: shard)
        guard !items.isEmpty else { return ShardWriteResult(written: nil, stats: nil) }
        try ClipLayout.createParent(of: metricsPath, in: directory)
        let files = ShardFileSet(directory: directory)
        var extra: [String] = []
        for (side, features) in [(ReconstructionLayout.Side.reference, referenceFeatures), (.reconstructed, reconstructedFeatures)] {
            let path = try ReconstructionLayout.fidFeatures(side, shard: shard)
            if inception != nil {
                precondition(features.rows == rows.count, "feature rows and metric rows disagree")
                try ClipLayout.createParent(of: path, in: directory)
                try features.values.withUnsafeBufferPointer {
                    try files.stageNpy(shape: [features.rows, FIDInception.featureCount], values: $0, element: .float32, as: path)
                }
                extra.append(path)
            } else {
                files.removeOnPublish(path)
            }
        }
        try files.stageJSONL(rows, as: metricsPath, isMain: true)
        try files.publish()
        if parameters.saveImages { try publishImages(into: directory) }
        return ShardWriteResult(written: WrittenShard(fileName: metricsPath, sidecarName: metricsPath, rows: rows.count), stats: nil,
                                extraFiles: extra)
    }

    /// Renames the staged PNGs into the output folders, replacing those of an earlier attempt. It
    /// runs after the metrics file is published: a crash in between leaves the shard unreported,
    /// so it runs again, and a shard that ends failed has its images removed by the finalizer by
    /// the rows of that file.
    private func publishImages(into directory: String) throws {
        guard let staging else { return }
        for sub in [ReconstructionLayout.referenceDirectory, ReconstructionLayout.reconstructedDirectory] {
            try ClipLayout.createParent(of: sub + "/x.png", in: directory)
        }
        for row in rows {
            for relative in [ReconstructionLayout.referenceImage(ordinal: row.ordinal), ReconstructionLayout.reconstructedImage(ordinal: row.ordinal)] {
                let target = directory + "/" + relative
                guard rename(staging + "/" + relative, target) == 0 else {
                    throw JobError.writeFailed(path: target, reason: "cannot move the staged image into place: \(String(cString: strerror(errno)))")
                }
            }
        }
        try? FileManager.default.removeItem(atPath: staging)
        self.staging = nil
    }
}

enum ReconstructionFinalizing {
    /// The manifest's `reconstruction` section: per-image means over every written row, in shard
    /// order, summed in double (upstream's `np.mean` of its per-image PSNRs; its SSIM is a mean of
    /// per-batch means, which equals this one when every batch is full).
    static func summary(shards: [(index: Int, written: WrittenShard)], parameters: ReconstructionParameters,
                        outputDirectory: String) throws(JobError) -> [String: Any] {
        var images = 0, identical = 0, psnrSum = 0.0, ssimSum = 0.0, lpipsSum = 0.0, lpipsCount = 0
        for shard in shards {
            for row in try readMetrics(outputDirectory + "/" + shard.written.fileName) {
                images += 1
                ssimSum += row.ssim
                if let psnr = row.psnr { psnrSum += psnr } else { identical += 1 }
                if let lpips = row.lpips { lpipsSum += lpips; lpipsCount += 1 }
            }
        }
        let mean: (Double) -> Any = { images > 0 ? $0 / Double(images) : NSNull() }
        var section: [String: Any] = [
            "images": images,
            // One identical pair makes upstream's mean infinite; JSON has no infinity.
            "psnr": identical > 0 ? NSNull() : mean(psnrSum),
            "psnr_finite_mean": images > identical ? psnrSum / Double(images - identical) : NSNull(),
            "identical_images": identical,
            "ssim": mean(ssimSum),
            "psnr_definition": "per image on [0, 255]: 20 log10(255 / sqrt(MSE)), then averaged (upstream calculate_psnr)",
            "ssim_definition": "per image: torchmetrics StructuralSimilarityIndexMeasure(data_range=1.0), Gaussian 11x11, sigma 1.5, then averaged",
            "images_saved": parameters.saveImages
                ? ["reference": ReconstructionLayout.referenceDirectory + "/ref_{ordinal:06d}.png",
                   "reconstructed": ReconstructionLayout.reconstructedDirectory + "/rec_{ordinal:06d}.png"] as Any
                : NSNull(),
        ]
        if let weights = parameters.lpipsWeights {
            section["lpips"] = lpipsCount > 0 ? lpipsSum / Double(lpipsCount) : NSNull()
            section["lpips_weights"] = weights
            section["lpips_definition"] = "per image: upstream's LPIPS (VGG16) on the denormalized pair mapped to [-1, 1], then averaged"
        }
        if let weights = parameters.inceptionWeights {
            section["inception_weights"] = weights
            section["fid_features"] = "fid/{reference,reconstructed}_{i:05d}.npy (rows as in the metrics files)"
            do {
                section["fid"] = try fid(shards: shards, outputDirectory: outputDirectory)
            } catch let error as JobError {
                throw error
            } catch {
                // Too few images for a covariance is an answer, not a failed job.
                section["fid"] = NSNull()
                section["fid_error"] = "\(error)"
            }
        }
        return section
    }

    /// pytorch-fid's FID between the reference and reconstructed feature sets of every written
    /// shard, streamed from the shards' files one at a time (two passes per set).
    static func fid(shards: [(index: Int, written: WrittenShard)], outputDirectory: String) throws -> Double {
        func statistics(_ side: ReconstructionLayout.Side) throws -> GaussianStatistics {
            try GaussianStatistics.of(dimension: FIDInception.featureCount) { body in
                for (index, shard) in shards {
                    let path = outputDirectory + "/" + (try ReconstructionLayout.fidFeatures(side, shard: index))
                    let array: NpyFile.Array
                    do { array = try NpyFile.read(path) } catch {
                        throw JobError.badShardSummary(path: path, detail: "cannot read FID features: \(error)")
                    }
                    guard array.shape == [shard.rows, FIDInception.featureCount] else {
                        throw JobError.badShardSummary(path: path, detail: "FID features have shape \(array.shape), expected [\(shard.rows), \(FIDInception.featureCount)]")
                    }
                    try array.values.withUnsafeBufferPointer { try body($0) }
                }
            }
        }
        return try FrechetDistance.distance(try statistics(.reference), try statistics(.reconstructed))
    }

    static func readMetrics(_ path: String) throws(JobError) -> [ReconstructionRow] {
        try readJSONLRows(path, as: ReconstructionRow.self, file: "metrics file", row: "metrics row")
    }

    /// Before a failed shard's metrics file is removed: the images its rows name, so none of a
    /// shard the manifest counts as failed stays in the folders.
    static func removeImages(ofFailedShard shard: Int, outputDirectory: String) throws(JobError) {
        let path = outputDirectory + "/" + (try ReconstructionLayout.metrics(shard: shard))
        guard FileManager.default.fileExists(atPath: path) else { return }
        for row in (try? readMetrics(path)) ?? [] {
            for relative in [ReconstructionLayout.referenceImage(ordinal: row.ordinal), ReconstructionLayout.reconstructedImage(ordinal: row.ordinal)] {
                let image = outputDirectory + "/" + relative
                guard unlink(image) == 0 || errno == ENOENT else {
                    throw .writeFailed(path: image, reason: "cannot remove an image of a failed shard: \(String(cString: strerror(errno)))")
                }
            }
        }
    }

    /// What killed executions staged and never published.
    static func removeStaging(outputDirectory: String) throws(JobError) {
        try ClipLayout.remove(ReconstructionLayout.stagingDirectory, in: outputDirectory)
    }
}
