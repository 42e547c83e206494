import Foundation
import Testing
import VTPVocabulary
import VTPImage
import VTPSafeTensors
import VTPTensor
import VTPTestSupport

/// Every fixture image against the PIL goldens in `preprocess.expected.safetensors`, which Pillow
/// <= 12 made: the transforms are asked for that release's pass order.
@Suite struct ConformanceTests {
    let expected: SafeTensorsFile

    init() throws { expected = try Fixtures.safetensors("preprocess.expected.safetensors") }

    @Test(arguments: TestImages.fixtureNames)
    func decodingMatchesPIL(name: String) throws {
        let image = try ImageDecoder().decode(contentsOf: TestImages.fixture(name))
        let info = try expected.info("decoded/\(name)")
        #expect([image.height, image.width, 3] == info.shape)
        let comparison = PixelComparison(image.pixels, try expected.uint8s("decoded/\(name)"))
        #expect(comparison.maxDifference == 0, "\(name): \(comparison)")
    }

    @Test(arguments: TestImages.fixtureNames)
    func admCenterCropMatchesPIL(name: String) throws {
        let image = try ImageDecoder().decode(contentsOf: TestImages.fixture(name))
        let cropped = try PreprocessTransform.admCenterCrop(size: 256).apply(to: image, compatibility: .pillow12)
        #expect(cropped.width == 256 && cropped.height == 256)
        let comparison = PixelComparison(cropped.pixels, try expected.uint8s("adm256/\(name)"))
        #expect(comparison.maxDifference == 0, "\(name): \(comparison)")
    }

    @Test(arguments: TestImages.fixtureNames)
    func resizeMatchesPIL(name: String) throws {
        let image = try ImageDecoder().decode(contentsOf: TestImages.fixture(name))
        let resized = try PreprocessTransform.resize(size: 256).apply(to: image, compatibility: .pillow12)
        let comparison = PixelComparison(resized.pixels, try expected.uint8s("resize256/\(name)"))
        #expect(comparison.maxDifference == 0, "\(name): \(comparison)")
    }

    /// Upstream linear probing's eval transform, Resize(256, BICUBIC) + CenterCrop(224), against
    /// torchvision (`resize-center-crop.expected.safetensors`, scripts/reference/resize_center_crop.py,
    /// made with Pillow 13: landscape, square, upscaled and large inputs).
    @Test(arguments: ["astronaut.png", "astronaut_rgba.png", "camera_gray.png", "chelsea.jpg", "chelsea_tiny.jpg", "hubble_large.jpg", "rocket.jpg"])
    func resizeCenterCropMatchesTorchvision(name: String) throws {
        let golden = try Fixtures.safetensors("resize-center-crop.expected.safetensors")
        #expect(golden.metadata["pillow"]?.hasPrefix("13.") == true)
        let image = try ImageDecoder().decode(contentsOf: TestImages.fixture(name))
        let cropped = try PreprocessTransform.resizeCenterCrop(size: 224).apply(to: image, compatibility: .pillow13)
        #expect(cropped.width == 224 && cropped.height == 224)
        let comparison = PixelComparison(cropped.pixels, try golden.uint8s("resize_center_crop224/\(name)"))
        #expect(comparison.maxDifference == 0, "\(name): \(comparison)")
    }

    /// torchvision's geometry: the long side truncated, offsets rounded half to even, no
    /// resampling when the short side already has the size.
    @Test func resizeCenterCropGeometryFollowsTorchvision() throws {
        // Red is the row, green the column: the crop's corner tells its offsets.
        var pixels = [UInt8](repeating: 0, count: 256 * 301 * 3)
        for y in 0..<301 { for x in 0..<256 { pixels[(y * 256 + x) * 3] = UInt8(y & 255); pixels[(y * 256 + x) * 3 + 1] = UInt8(x) } }
        let image = try RGBImage(width: 256, height: 301, pixels: pixels)
        let cropped = try PreprocessTransform.resizeCenterCrop(size: 224).apply(to: image)
        // (301 - 224) / 2 = 38.5 rounds to 38 (half to even), (256 - 224) / 2 = 16; no resize at short side 256.
        #expect(cropped.width == 224 && cropped.height == 224)
        #expect(cropped.pixels[0] == 38 && cropped.pixels[1] == 16 && cropped.pixels[(223 * 224 + 223) * 3] == UInt8((38 + 223) & 255))
        #expect(throws: ImageError.self) { try PreprocessTransform.resizeCenterCrop(size: 0).apply(to: image) }
    }

    /// The normalized batch the model fixture was fed: README transform for image 0,
    /// ADM crop + ImageNet stats for image 1, ADM crop + 0.5 stats for image 2.
    @Test func tensorConversionMatchesModelFixtureInput() throws {
        let reference = try Fixtures.safetensors("vtp-tiny.expected.safetensors").tensor("pixel_values")
        #expect(reference.shape == [3, 3, 256, 256])
        let decoder = ImageDecoder()
        let samples: [(RGBImage, Normalization)] = [
            (try PreprocessTransform.resize(size: 256).apply(to: decoder.decode(contentsOf: TestImages.fixture("dog.png")), compatibility: .pillow12), .imagenet),
            (try PreprocessTransform.admCenterCrop(size: 256).apply(to: decoder.decode(contentsOf: TestImages.fixture("chelsea.jpg")), compatibility: .pillow12), .imagenet),
            (try PreprocessTransform.admCenterCrop(size: 256).apply(to: decoder.decode(contentsOf: TestImages.fixture("rocket.jpg")), compatibility: .pillow12), .half),
        ]
        let perImage = 3 * 256 * 256
        var batch = [Float](repeating: .nan, count: 3 * perImage)
        try batch.withUnsafeMutableBufferPointer { buffer in
            for (i, (image, normalization)) in samples.enumerated() {
                let slice = UnsafeMutableBufferPointer(rebasing: buffer[(i * perImage)..<((i + 1) * perImage)])
                try image.writeCHW(into: slice, normalization: normalization)
            }
        }
        let referenceValues = reference.toArray()
        var mismatches = 0
        for (a, b) in zip(batch, referenceValues) where a != b { mismatches += 1 }
        #expect(mismatches == 0, "\(mismatches) of \(batch.count) floats differ from torch")
    }
}
