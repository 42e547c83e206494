import Foundation
import VTPSafeTensors
import VTPStorage
import VTPTensor
import VTPVocabulary

/// The features a `features` job cached, read for linear probing: the pooled class token and mean
/// patch token of each of the last blocks it kept, by row, straight from its memory-mapped shards
/// (a probe's passes over ImageNet-sized sets stay in the page cache, not in the heap).
///
/// Upstream's linear input for `n` blocks (`create_linear_input`) is the class tokens of the last
/// `n` blocks, earliest first, then the mean patch token of the last block; ``gather(_:blocks:into:)``
/// writes rows in the layout of the largest `n`, whose last `(n + 1)·D` columns are the input of
/// every smaller `n`.
final class LinearProbeFeatures {
    /// The folder, for error messages.
    let directory: String
    let manifest: RunManifest
    /// Blocks whose features the folder holds (the last ones of the encoder).
    let blockCount: Int
    /// Token width D.
    let dim: Int
    /// Rows over all shards.
    let rows: Int
    /// Each row's class index.
    let labels: [Int]
    private let shards: [Shard]
    /// First row of each shard.
    private let starts: [Int]

    private struct Shard {
        let file: SafeTensorsFile
        /// Per block, earliest first: the (rows, 2D) pooled tensor's bytes and element type.
        let blocks: [(bytes: UnsafeRawBufferPointer, dtype: SafeTensorsDType)]
        let rows: Int
    }

    /// Opens the output folder of a `features` job; `role` ("train" or "val") names it in errors.
    init(directory: String, role: String) throws(JobError) {
        self.directory = directory
        let manifestPath = directory + "/" + JobFinalizer.manifestFileName
        func refuse(_ detail: String) -> JobError { .badInput(path: directory, detail: "\(role) features: \(detail)") }
        guard FileManager.default.fileExists(atPath: manifestPath) else {
            throw refuse("no manifest.json (expected the output folder of a finished `vtp run features` job)")
        }
        do { manifest = try RunManifest.read(manifestPath) } catch {
            throw .badInput(path: manifestPath, detail: "\(role) features: not a vtp manifest: \(error)")
        }
        guard manifest.format == "features" else {
            throw refuse("manifest.json is of a '\(manifest.format)' job; linear probing reads a features job's output")
        }
        let preprocessing = manifest.preprocessing
        guard preprocessing["pool"] == PoolOption.clsMean.rawValue else {
            throw refuse("pooled as '\(preprocessing["pool"] ?? "?")'; a linear head reads the class token and the mean patch token: extract with --pool cls+mean")
        }
        guard preprocessing["norm"] != "false" else {
            throw refuse("extracted with --no-norm; upstream probes the encoder's normed tokens (get_intermediate_layers_feature, norm=True)")
        }
        let names: [String]
        switch preprocessing["layers"] ?? "" {
        case "last":
            names = ["pooled"]
        case let layers where layers.hasPrefix("intermediate:"):
            guard let n = Int(layers.dropFirst("intermediate:".count)), n >= 1 else { throw refuse("unreadable layers '\(layers)'") }
            names = (0..<n).map { "intermediate_\($0)_pooled" }
        case let layers:
            throw refuse("unreadable layers '\(layers)'")
        }
        blockCount = names.count
        var shards: [Shard] = [], starts: [Int] = [], labels: [Int] = []
        var dim: Int?
        for written in manifest.shards {
            let path = directory + "/" + written.fileName
            let file: SafeTensorsFile
            do { file = try SafeTensorsFile(path: path) } catch { throw .badInput(path: path, detail: "\(role) features: \(error)") }
            var blocks: [(UnsafeRawBufferPointer, SafeTensorsDType)] = []
            for name in names {
                let info: SafeTensorInfo
                do { info = try file.info(name) } catch { throw .badInput(path: path, detail: "\(role) features: \(error)") }
                guard info.shape.count == 2, info.shape[0] == written.rows, info.shape[1] % 2 == 0, info.shape[1] > 0,
                      [.f32, .f16, .bf16].contains(info.dtype) else {
                    throw .badInput(path: path, detail: "\(role) features: \(name) is \(info.dtype.rawValue) \(info.shape), expected F32/F16/BF16 [\(written.rows), 2·D]")
                }
                if let dim, dim != info.shape[1] / 2 {
                    throw .badInput(path: path, detail: "\(role) features: \(name) has width \(info.shape[1]), other blocks \(2 * dim)")
                }
                dim = info.shape[1] / 2
                do { blocks.append((try file.rawBytes(name), info.dtype)) } catch { throw .badInput(path: path, detail: "\(error)") }
            }
            let shardLabels: [Int64]
            do { shardLabels = try file.int64s("labels") } catch { throw .badInput(path: path, detail: "\(role) features: \(error)") }
            guard shardLabels.count == written.rows else {
                throw .badInput(path: path, detail: "\(role) features: \(shardLabels.count) labels for \(written.rows) rows")
            }
            if let row = shardLabels.firstIndex(where: { $0 < 0 }) {
                throw .badInput(path: path, detail: "\(role) features: row \(row) has no label (\(shardLabels[row])); linear probing needs labeled items, e.g. an ImageFolder")
            }
            starts.append(labels.count)
            labels += shardLabels.map { Int($0) }
            shards.append(Shard(file: file, blocks: blocks, rows: written.rows))
        }
        guard let dim, !labels.isEmpty else { throw refuse("no rows were written") }
        self.dim = dim
        self.shards = shards
        self.starts = starts
        self.labels = labels
        rows = labels.count
    }

    /// Class names by label, when the features' input named them (an ImageFolder does).
    var classes: [String]? { manifest.classes }

    /// Writes, for each row in `rows`, the linear input of `blocks` blocks into `destination`
    /// (`(blocks + 1)·dim` floats per row, rows after each other).
    func gather(_ rows: ArraySlice<Int>, blocks: Int, into destination: UnsafeMutablePointer<Float>) {
        precondition(blocks >= 1 && blocks <= blockCount, "asked for \(blocks) of \(blockCount) blocks")
        let width = (blocks + 1) * dim
        for (r, row) in rows.enumerated() {
            var shard = starts.count - 1
            // Binary search for the shard holding `row`.
            var low = 0, high = starts.count - 1
            while low <= high {
                let mid = (low + high) / 2
                if starts[mid] <= row { shard = mid; low = mid + 1 } else { high = mid - 1 }
            }
            let local = row - starts[shard]
            let out = destination + r * width
            let blocksOfShard = shards[shard].blocks
            for k in 0..<blocks {
                let block = blocksOfShard[blockCount - blocks + k]
                Self.widen(block.bytes, block.dtype, element: local * 2 * dim, count: dim, into: out + k * dim)
            }
            let last = blocksOfShard[blockCount - 1]
            Self.widen(last.bytes, last.dtype, element: local * 2 * dim + dim, count: dim, into: out + blocks * dim)
        }
    }

    private static func widen(_ bytes: UnsafeRawBufferPointer, _ dtype: SafeTensorsDType, element: Int, count: Int,
                              into out: UnsafeMutablePointer<Float>) {
        let base = bytes.baseAddress!
        switch dtype {
        case .f16: HalfPrecision.widenFloat16(base + element * 2, count: count, into: out)
        case .bf16: HalfPrecision.widenBFloat16(base + element * 2, count: count, into: out)
        default: UnsafeMutableRawPointer(out).copyMemory(from: base + element * 4, byteCount: count * 4)
        }
    }

    /// Checks that `val` can be scored by heads trained on `train` for `blocks`, and returns the
    /// number of classes (upstream's `len(train_dataset.classes)`).
    static func check(train: LinearProbeFeatures, val: LinearProbeFeatures, blocks: [Int]) throws(JobError) -> Int {
        let needed = blocks.max() ?? 1
        for features in [train, val] where features.blockCount < needed {
            throw .badInput(path: features.directory, detail: """
                features of \(features.blockCount) block(s); heads over the last \(needed) blocks need them: extract with --layers \(needed) (or more)
                """)
        }
        guard train.dim == val.dim else {
            throw .badInput(path: val.directory, detail: "val features are \(val.dim) wide, the train features \(train.dim): not the same model")
        }
        for key in ["transform", "image_size", "normalize"] where train.manifest.preprocessing[key] != val.manifest.preprocessing[key] {
            throw .badInput(path: val.directory, detail: """
                val features were extracted with \(key) \(val.manifest.preprocessing[key] ?? "?"), the train features with \(train.manifest.preprocessing[key] ?? "?")
                """)
        }
        if let a = train.manifest.model["directory"], let b = val.manifest.model["directory"], a != b {
            throw .badInput(path: val.directory, detail: "val features come from model \(b), the train features from \(a)")
        }
        if let trainClasses = train.classes, let valClasses = val.classes, trainClasses != valClasses {
            throw .badInput(path: val.directory, detail: """
                val classes (\(valClasses.count)) differ from the train classes (\(trainClasses.count)): labels would mean different classes
                """)
        }
        let classes = train.classes?.count ?? ((train.labels.max() ?? 0) + 1)
        if let label = val.labels.first(where: { $0 >= classes }) ?? train.labels.first(where: { $0 >= classes }) {
            throw .badInput(path: val.directory, detail: "label \(label) is outside the \(classes) classes of the train features")
        }
        return classes
    }
}

/// What `vtp run linear-probe` checks of its inputs before it starts.
public struct LinearProbeInputs: Sendable {
    /// The model the train features were extracted with, as their manifest records it.
    public var modelDirectory: String?
    /// Classes the heads predict.
    public var classes: Int
    /// Train and val rows.
    public var trainRows: Int, valRows: Int

    /// Opens both feature folders and checks they fit each other and the sweep.
    public static func check(_ parameters: LinearProbeParameters) throws(JobError) -> LinearProbeInputs {
        let train = try LinearProbeFeatures(directory: parameters.train, role: "train")
        let val = try LinearProbeFeatures(directory: parameters.val, role: "val")
        let classes = try LinearProbeFeatures.check(train: train, val: val, blocks: parameters.blocks)
        return LinearProbeInputs(modelDirectory: train.manifest.model["directory"], classes: classes, trainRows: train.rows, valRows: val.rows)
    }
}
