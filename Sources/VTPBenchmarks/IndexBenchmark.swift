import Foundation
import VTPIndex
import VTPRandom
import VTPStorage

/// The out-of-core index build at scale: synthetic clustered unit vectors written as float16 `.npy`
/// shards (as `clip-embed` writes `img_emb/`), then `IndexBuilder.build(shardFiles:...)` within a
/// memory budget. `vtp bench index` runs it.
public enum IndexBenchmark {
    /// A mixture of Gaussians on the sphere: `clusters` random unit centres, each row a centre (chosen
    /// by the row's own random draw) plus isotropic noise of norm about `spread`, renormalized. With
    /// about 200 rows per cluster and spread 0.6 the 10 nearest neighbours of a row are close in score
    /// to the rest of its cluster, so quantization error and probing both show in recall@10.
    public struct Collection: Sendable {
        public var rows: Int
        public var dimension: Int
        public var clusters: Int
        public var spread: Float = 0.6
        public var rowsPerShard: Int = 100_000
        public var seed: UInt64 = 0x5654_5042_656E_6368

        public init(rows: Int, dimension: Int, clusters: Int? = nil) {
            self.rows = rows
            self.dimension = dimension
            self.clusters = clusters ?? max(1, rows / 200)
        }

        var shardCount: Int { (rows + rowsPerShard - 1) / rowsPerShard }

        /// Path of shard `i` in `directory`.
        public func shardPath(_ i: Int, in directory: String) -> String {
            (directory as NSString).appendingPathComponent("img_emb_\(ShardNaming.pad(i, 5)).npy")
        }

        /// Every shard's path in `directory`, in row order.
        public func shardPaths(in directory: String) -> [String] { (0..<shardCount).map { shardPath($0, in: directory) } }

        /// Writes the shards that are missing (or of the wrong size) into `directory`, one shard's rows in
        /// memory at a time; returns how many it wrote. Deterministic: a shard's rows depend only on the seed and its number.
        public func write(to directory: String) throws -> Int {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
            let d = dimension
            var centreSource = SplitMix64(seed: seed)
            var centres = [Float](repeating: 0, count: clusters * d)
            for c in 0..<clusters {
                Self.fillGaussian(&centres, range: (c * d)..<((c + 1) * d), scale: 1, using: &centreSource)
                Self.normalize(&centres, range: (c * d)..<((c + 1) * d))
            }
            var written = 0
            for shard in 0..<shardCount {
                let count = min(rowsPerShard, rows - shard * rowsPerShard)
                let path = shardPath(shard, in: directory)
                if Self.holds(path, shape: [count, d]) { continue }
                var generator = SplitMix64(seed: seed ^ (UInt64(shard + 1) &* 0x9E37_79B9_7F4A_7C15))
                var values = [Float](repeating: 0, count: count * d)
                let noise = spread / Float(d).squareRoot()
                for r in 0..<count {
                    let c = Int(generator.next() % UInt64(clusters))
                    let range = (r * d)..<((r + 1) * d)
                    Self.fillGaussian(&values, range: range, scale: noise, using: &generator)
                    for j in 0..<d { values[r * d + j] += centres[c * d + j] }
                    Self.normalize(&values, range: range)
                }
                try values.withUnsafeBufferPointer { try NpyFile.write(shape: [count, d], values: $0, as: .float16, to: path) }
                written += 1
            }
            return written
        }

        /// Whether `path` already is a float16 `.npy` of `shape` (a rerun reuses the data).
        private static func holds(_ path: String, shape: [Int]) -> Bool {
            guard let handle = FileHandle(forReadingAtPath: path) else { return false }
            defer { try? handle.close() }
            guard let size = try? handle.seekToEnd(), (try? handle.seek(toOffset: 0)) != nil,
                  let head = try? handle.read(upToCount: 4096) else { return false }
            let layout = head.withUnsafeBytes { try? NpyFile.layout($0, fileSize: Int(size), path: path) }
            return layout?.shape == shape && layout?.element == .float16
        }

        private static func fillGaussian(_ out: inout [Float], range: Range<Int>, scale: Float, using generator: inout SplitMix64) {
            var i = range.lowerBound
            while i < range.upperBound {
                // Box-Muller: two normals from two uniforms in (0, 1].
                let u1 = Float(generator.next() >> 40 + 1) / Float(1 << 24)
                let u2 = Float(generator.next() >> 40) / Float(1 << 24)
                let radius = (-2 * Foundation.log(u1)).squareRoot() * scale
                out[i] = radius * Foundation.cos(2 * .pi * u2)
                if i + 1 < range.upperBound { out[i + 1] = radius * Foundation.sin(2 * .pi * u2) }
                i += 2
            }
        }

        private static func normalize(_ out: inout [Float], range: Range<Int>) {
            var sum: Float = 0
            for i in range { sum += out[i] * out[i] }
            let inverse = 1 / max(sum.squareRoot(), .leastNormalMagnitude)
            for i in range { out[i] *= inverse }
        }
    }

    /// What one build measured.
    public struct Result: Sendable {
        public var info: IndexInfo
        public var generateSeconds: Double
        public var buildSeconds: Double
        /// Peak resident memory of this process before the build (after writing the data).
        public var residentBeforeBuild: Int
        /// Peak resident memory of this process after the build.
        public var residentAfterBuild: Int
        /// Total bytes of the shard files.
        public var dataBytes: Int
    }

    /// Writes the collection into `dataDirectory` (missing shards only) and builds its index into
    /// `indexDirectory` with `options`. Blocking.
    public static func run(collection: Collection, dataDirectory: String, indexDirectory: String, options: IndexOptions) throws -> Result {
        let clock = ContinuousClock()
        let t0 = clock.now
        _ = try collection.write(to: dataDirectory)
        let t1 = clock.now
        let before = ModelBenchmark.maxResidentBytes
        let paths = collection.shardPaths(in: dataDirectory)
        let info = try IndexBuilder.build(shardFiles: paths, outputDirectory: indexDirectory, options: options)
        let t2 = clock.now
        let bytes = paths.reduce(0) { $0 + (((try? FileManager.default.attributesOfItem(atPath: $1))?[.size] as? Int) ?? 0) }
        func seconds(_ d: Duration) -> Double { Double(d.components.seconds) + Double(d.components.attoseconds) / 1e18 }
        return Result(info: info, generateSeconds: seconds(t1 - t0), buildSeconds: seconds(t2 - t1), residentBeforeBuild: before,
                      residentAfterBuild: ModelBenchmark.maxResidentBytes, dataBytes: bytes)
    }
}
