import Foundation

/// Parameters of a `linear-probe` job: upstream's linear probing (`tools/test_linear_probing_hf.py`)
/// over features a `features` job cached. The job's input is the training features' output folder;
/// `val` is the validation features' folder. Every head of the sweep (``heads``) is one item, so
/// shards are groups of heads, trained and evaluated where a worker runs them, and the finalizer
/// picks the best head as the script does.
///
/// JSON keys: `train` (absolute path of the job's input, required), `val` (absolute path, required), `blocks` ([1, 4]: the numbers of last blocks whose
/// class tokens a head reads, beside the last block's mean patch token), `learning_rates`
/// (upstream's 13, 1e-5 … 0.1, each scaled by `batch_size / 256`), `batch_size` (128), `epochs`
/// (10), `epoch_length` (1250 iterations), `seed` (0: the training order and initial weights; see
/// the job's documentation) and `label_classes` (see ``JobParameters/labelClasses``).
public struct LinearProbeParameters: Sendable, Equatable, JobParameterSet {
    /// Upstream's `DEFAULT_LEARNING_RATES`.
    public static let upstreamLearningRates: [Double] = [1e-5, 2e-5, 5e-5, 1e-4, 2e-4, 5e-4, 1e-3, 2e-3, 5e-3, 1e-2, 2e-2, 5e-2, 0.1]

    /// The training features' folder, the job's input (recorded here too, for the finalizer).
    public var train: String
    /// The validation features' folder (a `features` job's output).
    public var val: String
    public var blocks: [Int]
    public var learningRates: [Double]
    public var batchSize: Int
    public var epochs: Int
    public var epochLength: Int
    public var seed: UInt64
    /// Class names by label, recorded in the output manifest; empty when the features name none.
    public var labelClasses: [String] = []

    public init(train: String, val: String, blocks: [Int] = [1, 4], learningRates: [Double] = Self.upstreamLearningRates, batchSize: Int = 128,
                epochs: Int = 10, epochLength: Int = 1250, seed: UInt64 = 0) {
        self.train = train
        self.val = val
        self.blocks = blocks
        self.learningRates = learningRates
        self.batchSize = batchSize
        self.epochs = epochs
        self.epochLength = epochLength
        self.seed = seed
    }

    enum CodingKeys: String, CodingKey, CaseIterable {
        case train, val, blocks, learningRates = "learning_rates", batchSize = "batch_size", epochs, epochLength = "epoch_length", seed
        case labelClasses = "label_classes"
    }

    static let allowedKeys = Set(CodingKeys.allCases.map(\.rawValue))

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        let d = LinearProbeParameters(train: "", val: "")
        guard let train = try c.decodeIfPresent(String.self, forKey: .train) else {
            throw JobError.invalidParameter(field: "train", detail: "required: the training features' folder (a features job's output)")
        }
        guard let val = try c.decodeIfPresent(String.self, forKey: .val) else {
            throw JobError.invalidParameter(field: "val", detail: "required: the validation features' folder (a features job's output)")
        }
        self.train = train
        self.val = val
        blocks = try c.decodeIfPresent([Int].self, forKey: .blocks) ?? d.blocks
        learningRates = try c.decodeIfPresent([Double].self, forKey: .learningRates) ?? d.learningRates
        batchSize = try c.decodeIfPresent(Int.self, forKey: .batchSize) ?? d.batchSize
        epochs = try c.decodeIfPresent(Int.self, forKey: .epochs) ?? d.epochs
        epochLength = try c.decodeIfPresent(Int.self, forKey: .epochLength) ?? d.epochLength
        seed = try c.decodeIfPresent(UInt64.self, forKey: .seed) ?? d.seed
        labelClasses = try c.decodeIfPresent([String].self, forKey: .labelClasses) ?? []
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(train, forKey: .train)
        try c.encode(val, forKey: .val)
        try c.encode(blocks, forKey: .blocks)
        try c.encode(learningRates, forKey: .learningRates)
        try c.encode(batchSize, forKey: .batchSize)
        try c.encode(epochs, forKey: .epochs)
        try c.encode(epochLength, forKey: .epochLength)
        try c.encode(seed, forKey: .seed)
        if !labelClasses.isEmpty { try c.encode(labelClasses, forKey: .labelClasses) }
    }

    public func validate() throws(JobError) {
        for (field, path) in [("train", train), ("val", val)] where path.isEmpty || !path.hasPrefix("/") {
            throw .invalidParameter(field: field, detail: "expected an absolute path to a features job's output folder, got '\(path)'")
        }
        guard !blocks.isEmpty, blocks.allSatisfy({ (1...64).contains($0) }), Set(blocks).count == blocks.count else {
            throw .invalidParameter(field: "blocks", detail: "expected distinct block counts in 1...64, got \(blocks)")
        }
        guard !learningRates.isEmpty, learningRates.allSatisfy({ $0.isFinite && $0 > 0 }) else {
            throw .invalidParameter(field: "learning_rates", detail: "expected positive finite learning rates, got \(learningRates)")
        }
        try ParameterRanges.batchSize(batchSize)
        guard (1...10_000).contains(epochs) else { throw .invalidParameter(field: "epochs", detail: "must lie in 1...10000, got \(epochs)") }
        guard (1...100_000_000).contains(epochLength) else {
            throw .invalidParameter(field: "epoch_length", detail: "must lie in 1...100000000 iterations, got \(epochLength)")
        }
    }

    /// The heads of the sweep in upstream's order (block counts outer, learning rates inner), keyed
    /// as upstream keys them: `classifier_{n}_blocks_avgpool_True_lr_{scaled lr:.5f}` with dots
    /// made underscores. Two learning rates whose scaled values print alike share a key; upstream's
    /// `ModuleDict` then keeps the later classifier at the earlier one's place (the earlier one is
    /// never called, so it never trains), and so does this list: with the defaults and batch 128,
    /// 1e-5 and 2e-5 both print `0_00001`, leaving 12 heads per block count.
    public var heads: [LinearProbeHead] {
        var heads: [LinearProbeHead] = []
        var position: [String: Int] = [:]
        for n in blocks {
            for lr in learningRates {
                let scaled = lr * Double(batchSize) / 256.0
                let key = "classifier_\(n)_blocks_avgpool_True_lr_" + String(format: "%.5f", scaled).replacingOccurrences(of: ".", with: "_")
                let head = LinearProbeHead(key: key, blocks: n, learningRate: lr, scaledLearningRate: scaled)
                if let at = position[key] { heads[at] = head } else { position[key] = heads.count; heads.append(head) }
            }
        }
        return heads
    }
}

/// One linear classifier of a linear-probe sweep.
public struct LinearProbeHead: Sendable, Equatable, Codable {
    /// Upstream's classifier name, e.g. `classifier_4_blocks_avgpool_True_lr_0_00050`.
    public var key: String
    /// Last blocks whose class tokens the head reads (with the last block's mean patch token).
    public var blocks: Int
    /// The learning rate as given (before scaling).
    public var learningRate: Double
    /// `learningRate · batch_size / 256`, what SGD uses.
    public var scaledLearningRate: Double

    enum CodingKeys: String, CodingKey {
        case key, blocks, learningRate = "learning_rate", scaledLearningRate = "scaled_learning_rate"
    }
}
