import Foundation
import Testing
import VTPVocabulary
import VTPRandom
import VTPImage
import VTPSafeTensors

/// Portrait images, where Pillow releases order the resampling passes differently.
@Suite struct PillowCompatibilityTests {
    @Test(arguments: PillowCompatibility.allCases, ["portrait.png", "tall.png"])
    func transformsMatchTheChosenPillow(compatibility: PillowCompatibility, name: String) throws {
        let goldens = try SafeTensorsFile(path: TestImages.resource("transforms/expected.safetensors"))
        let image = try ImageDecoder().decode(contentsOf: TestImages.resource("transforms/\(name)"))
        #expect(image.height > image.width)
        for size in [64, 128] {
            let transforms: [(String, PreprocessTransform)] = [("adm", .admCenterCrop(size: size)), ("resize", .resize(size: size))]
            for (label, transform) in transforms {
                let key = "\(compatibility.rawValue)/\(label)\(size)/\(name)"
                let ours = try transform.apply(to: image, compatibility: compatibility)
                let comparison = PixelComparison(ours.pixels, try goldens.uint8s(key))
                #expect(comparison.maxDifference == 0, "\(key): \(comparison)")
            }
        }
    }

    /// The two orders really differ here, so the test above tells them apart.
    @Test func passOrdersDisagreeOnPortraitResize() throws {
        let image = try ImageDecoder().decode(contentsOf: TestImages.resource("transforms/portrait.png"))
        let old = try image.resized(width: 64, height: 64, filter: .bilinear, compatibility: .pillow12)
        let new = try image.resized(width: 64, height: 64, filter: .bilinear, compatibility: .pillow13)
        #expect(old != new)
        #expect(PixelComparison(old.pixels, new.pixels).maxDifference == 1)
    }
}

/// Random byte damage never crashes the process: every decode returns an image of the
/// announced size or throws an `ImageError` that names the source.
@Suite struct RobustnessTests {
    @Test(arguments: ["chelsea_tiny.jpg", "rocket_progressive.jpg", "coffee_cmyk.jpg", "chelsea_gray.jpg",
                      "coffee_palette.png", "astronaut_rgba.png"])
    func mutatedFixturesFailCleanly(name: String) throws {
        try fuzz(Data(contentsOf: URL(fileURLWithPath: TestImages.fixture(name))), label: name)
    }

    @Test(arguments: ["lossy.webp", "lossless_alpha.webp", "rgb16_interlaced.png", "palette4_trns.png"])
    func mutatedVariantsFailCleanly(name: String) throws {
        try fuzz(Data(contentsOf: URL(fileURLWithPath: TestImages.resource(name))), label: name)
    }

    private func fuzz(_ original: Data, label: String) throws {
        var random = SplitMix64(seed: label.utf8.reduce(UInt64(original.count)) { $0 &* 31 &+ UInt64($1) })
        var failures = 0
        for round in 0..<40 {
            var data = original
            for _ in 0..<(1 + round % 8) {
                let index = Int.random(in: 0..<data.count, using: &random)
                data[index] = UInt8.random(in: 0...255, using: &random)
            }
            if round % 5 == 4 { data = data.prefix(Int.random(in: 0..<data.count, using: &random)) }
            let source = "\(label)#\(round)"
            do {
                let image = try ImageDecoder(maxPixels: 4_000_000).decode(data, source: source)
                #expect(image.pixels.count == image.width * image.height * 3)
            } catch {
                failures += 1
                #expect(error.description.hasPrefix(source), "\(error)")
            }
        }
        #expect(failures > 0, "\(label): 40 damaged copies all decoded, the damage is not reaching the codec")
    }
}
