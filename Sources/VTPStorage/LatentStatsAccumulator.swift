import VTPVocabulary
import VTPTensor

/// Exact per-channel mean and standard deviation over latents (N,C,H,W), reduced over N, H and W
/// as LightningDiT's `latents.mean(dim=[0, 2, 3])` / `latents.std(dim=[0, 2, 3])` do, with the
/// unbiased (n − 1) standard deviation that `torch.std` uses by default.
///
/// Every batch is reduced in float64 with two passes (mean, then squared deviations from it) and
/// folded in with Chan et al.'s pairwise update, so there is no sum-of-squares cancellation.
/// Accumulators of different shards merge the same way; merging in shard order makes the result
/// reproducible bit for bit.
///
/// Feed it the `latents` tensors only (not `latents_flip`): LightningDiT computes its stats from
/// `latents` alone (over a random 10,000-image subset; this computes them over every image).
public struct LatentStatsAccumulator: Sendable, Codable, Equatable {
    /// Number of channels C.
    public let channels: Int
    /// Values seen per channel (N·H·W summed over batches).
    public private(set) var count: Int = 0
    /// Running per-channel mean.
    public private(set) var mean: [Double]
    /// Running per-channel sum of squared deviations from the mean.
    public private(set) var m2: [Double]

    public init(channels: Int) {
        precondition(channels > 0, "a latent needs at least one channel")
        self.channels = channels
        mean = [Double](repeating: 0, count: channels)
        m2 = [Double](repeating: 0, count: channels)
    }

    enum CodingKeys: String, CodingKey { case channels, count, mean, m2 }

    /// Decodes a reported accumulator, rejecting inconsistent ones so a bad report cannot crash a merge.
    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        channels = try c.decode(Int.self, forKey: .channels)
        count = try c.decode(Int.self, forKey: .count)
        mean = try c.decode([Double].self, forKey: .mean)
        m2 = try c.decode([Double].self, forKey: .m2)
        guard channels > 0, count >= 0, mean.count == channels, m2.count == channels else {
            throw DecodingError.dataCorrupted(.init(codingPath: [],
                debugDescription: "stats for \(channels) channels need that many means and m2 values and a count >= 0"))
        }
    }

    /// Adds `rows` latents laid out (rows, C, spatial) contiguously.
    ///
    /// With `storedAs` float16 or bfloat16, each value is first rounded as the shard stores it, so
    /// the stats describe exactly the tensors `ImgLatentDataset` will read back.
    public mutating func add(_ latents: UnsafeBufferPointer<Float>, rows: Int, spatial: Int, storedAs dtype: OutputDType = .float32) {
        precondition(latents.count == rows * channels * spatial, "\(latents.count) values is not \(rows)×\(channels)×\(spatial)")
        guard rows > 0, spatial > 0 else { return }
        let n = rows * spatial
        var batch = LatentStatsAccumulator(channels: channels)
        batch.count = n
        let rowStride = channels * spatial
        let value: (Float) -> Double = switch dtype {
        case .float32: { Double($0) }
        case .float16: { Double(Float(Float16($0))) }
        case .bfloat16: { Double(HalfPrecision.roundToBFloat16($0)) }
        }
        for c in 0..<channels {
            var sum = 0.0
            for r in 0..<rows {
                let base = r * rowStride + c * spatial
                for i in base..<(base + spatial) { sum += value(latents[i]) }
            }
            let m = sum / Double(n)
            var sq = 0.0
            for r in 0..<rows {
                let base = r * rowStride + c * spatial
                for i in base..<(base + spatial) {
                    let d = value(latents[i]) - m
                    sq += d * d
                }
            }
            batch.mean[c] = m
            batch.m2[c] = sq
        }
        combine(batch)
    }

    /// Folds in another accumulator (e.g. one a worker reported) over the same channels.
    public mutating func merge(_ other: LatentStatsAccumulator) throws {
        guard other.channels == channels else { throw StatsMergeError(expected: channels, found: other.channels) }
        combine(other)
    }

    private mutating func combine(_ other: LatentStatsAccumulator) {
        guard other.count > 0 else { return }
        guard count > 0 else { self = other; return }
        let na = Double(count), nb = Double(other.count), n = na + nb
        for c in 0..<channels {
            let delta = other.mean[c] - mean[c]
            mean[c] += delta * nb / n
            m2[c] += other.m2[c] + delta * delta * na * nb / n
        }
        count += other.count
    }

    /// Unbiased per-channel variance (NaN with fewer than two values, as torch gives).
    public var variance: [Double] { m2.map { count > 1 ? $0 / Double(count - 1) : .nan } }

    /// Unbiased per-channel standard deviation.
    public var standardDeviation: [Double] { variance.map { $0.squareRoot() } }

    /// Writes `latents_stats.pt`: a PyTorch archive of `{'mean': (1,C,1,1), 'std': (1,C,1,1)}` float32,
    /// the file `ImgLatentDataset.get_latent_stats` loads instead of sampling stats itself.
    public func writeTorchStats(to path: String) throws {
        var writer = TorchZipWriter()
        writer.add("mean", shape: [1, channels, 1, 1], values: mean.map(Float.init))
        writer.add("std", shape: [1, channels, 1, 1], values: standardDeviation.map(Float.init))
        try writer.write(to: path)
    }
}

/// Stats of a different channel count cannot be merged.
public struct StatsMergeError: Error, CustomStringConvertible, Equatable {
    /// Channels of the accumulator merged into.
    public let expected: Int
    /// Channels of the rejected one.
    public let found: Int
    public var description: String { "cannot merge \(found)-channel latent stats into \(expected)-channel stats" }
}
