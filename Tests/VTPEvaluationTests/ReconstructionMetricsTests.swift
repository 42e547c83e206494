import Foundation
import Testing
import VTPEvaluation
import VTPSafeTensors
import VTPTensor
import VTPTestSupport

/// PSNR and SSIM against the reference's own numbers (`Tests/Fixtures/reconstruction-metrics.json`,
/// written by scripts/reference/reconstruction_metrics.py with upstream's `calculate_psnr` and
/// torchmetrics' `StructuralSimilarityIndexMeasure(data_range=1.0)`), on the fixture's inputs and
/// the reference decoder's outputs.
struct ReconstructionMetricsTests {
    struct Golden: Decodable {
        struct Pair: Decodable { var psnr: Double; var ssim: Double }
        var images: [Pair]
        var perturbed: [Pair]
    }

    static let imagenetMean = [0.485, 0.456, 0.406], imagenetStd = [0.229, 0.224, 0.225]

    /// Image `i` of a (B, 3, S, S) tensor, denormalized and clamped as upstream does.
    static func image(_ t: Tensor, _ i: Int) -> [Float] {
        let per = t.shape[1] * t.shape[2] * t.shape[3]
        return withExtendedLifetime(t) {
            ReconstructionMetrics.denormalize(UnsafeBufferPointer(rebasing: t.buffer[i * per..<(i + 1) * per]), channels: 3,
                                              mean: imagenetMean, std: imagenetStd)
        }
    }

    static func relative(_ ours: Double, _ reference: Double) -> Double { abs(ours - reference) / abs(reference) }

    @Test func psnrAndSsimMatchTheReferenceOnTheFixtureImages() throws {
        let golden = try JSONDecoder().decode(Golden.self, from: Data(contentsOf: URL(fileURLWithPath: Fixtures.path("reconstruction-metrics.json"))))
        let expected = try Fixtures.safetensors("vtp-tiny.expected.safetensors")
        let pixels = try expected.tensor("pixel_values"), decoded = try expected.tensor("decoded_images")
        let side = pixels.shape[2]
        #expect(golden.images.count == pixels.shape[0])
        for i in 0..<pixels.shape[0] {
            let original = Self.image(pixels, i), reconstruction = Self.image(decoded, i)
            // The close pair: the original plus a fixed wave, as the generator made it.
            let close = original.indices.map { k in min(1, max(0, original[k] + Float(sin(Double(k) * 0.37) * 0.03))) }
            for (pair, other) in [(golden.images[i], reconstruction), (golden.perturbed[i], close)] {
                let psnr = try original.withUnsafeBufferPointer { a in
                    try other.withUnsafeBufferPointer { b in try ReconstructionMetrics.psnr(original: a, reconstruction: b) }
                }
                let ssim = try original.withUnsafeBufferPointer { a in
                    try other.withUnsafeBufferPointer { b in
                        try ReconstructionMetrics.ssim(original: a, reconstruction: b, channels: 3, height: side, width: side)
                    }
                }
                #expect(Self.relative(psnr, pair.psnr) < 1e-5, "image \(i): PSNR \(psnr), reference \(pair.psnr)")
                #expect(Self.relative(ssim, pair.ssim) < 1e-4, "image \(i): SSIM \(ssim), reference \(pair.ssim)")
            }
        }
    }

    @Test func identicalImagesAndBadShapes() throws {
        let image = (0..<(3 * 8 * 8)).map { Float($0 % 17) / 16 }
        try image.withUnsafeBufferPointer { (a: UnsafeBufferPointer<Float>) throws -> Void in
            let psnr = try ReconstructionMetrics.psnr(original: a, reconstruction: a)
            let ssim = try ReconstructionMetrics.ssim(original: a, reconstruction: a, channels: 3, height: 8, width: 8)
            #expect(psnr == .infinity)
            #expect(abs(ssim - 1) < 1e-12)
            #expect(throws: ImageMetricError.tooSmall(height: 4, width: 16)) {
                try ReconstructionMetrics.ssim(original: a, reconstruction: a, channels: 3, height: 4, width: 16)
            }
            #expect(throws: ImageMetricError.shapeMismatch(expected: 3 * 81, original: 192, reconstruction: 192)) {
                try ReconstructionMetrics.ssim(original: a, reconstruction: a, channels: 3, height: 9, width: 9)
            }
        }
    }
}

/// The Fréchet distance against pytorch-fid's `calculate_frechet_distance` on generated features
/// (`fid_synthetic` of `Tests/Fixtures/reconstruction-eval.json`), and the statistics' streaming.
struct FrechetDistanceTests {
    struct Golden: Decodable {
        struct Synthetic: Decodable { var samples: Int; var dimension: Int; var fid: Double }
        var fid_synthetic: Synthetic
    }

    @Test func fidMatchesPytorchFidOnWellConditionedFeatures() throws {
        let golden = try JSONDecoder().decode(Golden.self, from: Data(contentsOf: URL(fileURLWithPath: Fixtures.path("reconstruction-eval.json"))))
        let n = golden.fid_synthetic.samples, d = golden.fid_synthetic.dimension
        let a = StandInWeights.uniforms("fid-features-a", count: n * d).map { Float($0) }
        let b = StandInWeights.uniforms("fid-features-b", count: n * d).map { Float($0 * $0 + 0.05) }
        // Chunks of uneven size: the result must not depend on how the rows arrive.
        func statistics(_ rows: [Float]) throws -> GaussianStatistics {
            try GaussianStatistics.of(dimension: d) { body in
                var start = 0
                for take in [7, 100, 149] {
                    try rows[(start * d)..<((start + take) * d)].withUnsafeBufferPointer { try body($0) }
                    start += take
                }
            }
        }
        let sa = try statistics(a), sb = try statistics(b)
        #expect(sa.count == n && sa.covariance.count == d * d)
        let fid = try FrechetDistance.distance(sa, sb)
        #expect(abs(fid - golden.fid_synthetic.fid) / golden.fid_synthetic.fid < 1e-6, "FID \(fid) vs pytorch-fid's \(golden.fid_synthetic.fid)")
        let same = try FrechetDistance.distance(sa, sa)
        #expect(abs(same) < 1e-9, "the distance of a set to itself is \(same)")
        #expect(throws: FrechetDistanceError.tooFewSamples(1)) {
            try FrechetDistance.distance(GaussianStatistics(count: 1, dimension: d, mean: sa.mean, covariance: sa.covariance), sb)
        }
    }
}
