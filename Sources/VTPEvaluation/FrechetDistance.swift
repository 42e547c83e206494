import VTPTensor

/// Mean and covariance of a set of feature rows, as pytorch-fid takes them from its activations
/// (`np.mean(act, axis=0)`, `np.cov(act, rowvar=False)`: float64, unbiased).
public struct GaussianStatistics: Sendable, Equatable {
    public let count: Int
    public let dimension: Int
    public let mean: [Double]
    /// Row-major `dimension × dimension`.
    public let covariance: [Double]

    public init(count: Int, dimension: Int, mean: [Double], covariance: [Double]) {
        self.count = count
        self.dimension = dimension
        self.mean = mean
        self.covariance = covariance
    }

    /// The statistics of every row that `eachChunk` hands over, which it is asked for twice (means
    /// first, then the centred products): the rows never need to be in memory together. A chunk
    /// holds whole rows of `dimension` float32 values.
    public static func of(dimension: Int, eachChunk: ((UnsafeBufferPointer<Float>) throws -> Void) throws -> Void) rethrows -> GaussianStatistics {
        var sum = [Double](repeating: 0, count: dimension)
        var count = 0
        try eachChunk { rows in
            precondition(rows.count % dimension == 0, "whole rows")
            let n = rows.count / dimension
            for r in 0..<n {
                for j in 0..<dimension { sum[j] += Double(rows[r * dimension + j]) }
            }
            count += n
        }
        let mean = sum.map { $0 / Double(max(count, 1)) }
        var scatter = [Double](repeating: 0, count: dimension * dimension)
        // Centred rows in blocks, so the products go through one BLAS call per block.
        let block = 256
        var centred = [Double](repeating: 0, count: block * dimension)
        var seen = 0
        try eachChunk { rows in
            let n = rows.count / dimension
            var r = 0
            while r < n {
                let take = min(block, n - r)
                for i in 0..<take {
                    for j in 0..<dimension { centred[i * dimension + j] = Double(rows[(r + i) * dimension + j]) - mean[j] }
                }
                centred.withUnsafeBufferPointer { x in
                    scatter.withUnsafeMutableBufferPointer { LinearAlgebra.addGram(x.baseAddress!, rows: take, n: dimension, into: $0.baseAddress!) }
                }
                r += take
            }
            seen += n
        }
        precondition(seen == count, "the second pass saw \(seen) rows, the first \(count)")
        LinearAlgebra.symmetrizeUpper(&scatter, n: dimension)
        let divisor = Double(max(count - 1, 1))
        return GaussianStatistics(count: count, dimension: dimension, mean: mean, covariance: scatter.map { $0 / divisor })
    }
}

/// Why a Fréchet distance cannot be computed.
public enum FrechetDistanceError: Error, Equatable, CustomStringConvertible {
    case dimensionMismatch(Int, Int)
    /// Fewer than two rows on a side: no covariance.
    case tooFewSamples(Int)
    case eigenvalues(LinearAlgebraError)

    public var description: String {
        switch self {
        case let .dimensionMismatch(a, b): "the feature sets have \(a) and \(b) dimensions"
        case let .tooFewSamples(n): "FID needs at least 2 images on each side, got \(n)"
        case let .eigenvalues(error): "the covariance product's eigenvalues: \(error)"
        }
    }
}

/// The Fréchet distance between two Gaussians, pytorch-fid's `calculate_frechet_distance`:
/// `|μ₁ − μ₂|² + tr Σ₁ + tr Σ₂ − 2 tr √(Σ₁Σ₂)`.
///
/// pytorch-fid takes SciPy's `sqrtm` of the product and the trace of its real part. That trace is
/// the sum of the real parts of the principal square roots of the product's eigenvalues (the
/// diagonal of the triangular Schur factor `sqrtm` builds), which this computes from LAPACK's
/// eigenvalues of the same float64 product; like pytorch-fid, when the product has a non-finite
/// value it retries with 1e-6 added to both diagonals.
public enum FrechetDistance {
    public static func distance(_ a: GaussianStatistics, _ b: GaussianStatistics) throws(FrechetDistanceError) -> Double {
        guard a.dimension == b.dimension else { throw .dimensionMismatch(a.dimension, b.dimension) }
        guard a.count >= 2, b.count >= 2 else { throw .tooFewSamples(min(a.count, b.count)) }
        let d = a.dimension
        var meanTerm = 0.0
        for j in 0..<d { meanTerm += (a.mean[j] - b.mean[j]) * (a.mean[j] - b.mean[j]) }
        var traces = 0.0
        for j in 0..<d { traces += a.covariance[j * d + j] + b.covariance[j * d + j] }
        var product = LinearAlgebra.multiply(a.covariance, b.covariance, m: d, n: d, k: d)
        if product.contains(where: { !$0.isFinite }) {
            var sa = a.covariance, sb = b.covariance
            for j in 0..<d { sa[j * d + j] += 1e-6; sb[j * d + j] += 1e-6 }
            product = LinearAlgebra.multiply(sa, sb, m: d, n: d, k: d)
        }
        let (re, im): ([Double], [Double])
        do { (re, im) = try LinearAlgebra.eigenvalues(product, n: d) } catch { throw .eigenvalues(error) }
        var rootTrace = 0.0
        for i in 0..<d {
            // Re √(x + iy) = √((|z| + x) / 2).
            let modulus = (re[i] * re[i] + im[i] * im[i]).squareRoot()
            rootTrace += ((modulus + re[i]) / 2).squareRoot()
        }
        return meanTerm + traces - 2 * rootTrace
    }
}
