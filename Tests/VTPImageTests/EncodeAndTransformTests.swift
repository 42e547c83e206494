import Foundation
import Testing
import VTPVocabulary
import VTPImage

@Suite struct EncodeAndTransformTests {
    let chelsea: RGBImage

    init() throws { chelsea = try ImageDecoder().decode(contentsOf: TestImages.fixture("chelsea.jpg")) }

    @Test(arguments: [false, true])
    func pngRoundTripIsLossless(interlaced: Bool) throws {
        let data = try ImageEncoder.png(chelsea, interlaced: interlaced, compressionLevel: 1)
        #expect(data.starts(with: [0x89, 0x50, 0x4E, 0x47]))
        #expect(try ImageDecoder().decode(data, source: "roundtrip.png") == chelsea)
    }

    @Test func jpegRoundTripIsClose() throws {
        let high = try ImageEncoder.jpeg(chelsea, quality: 95)
        let low = try ImageEncoder.jpeg(chelsea, quality: 30)
        #expect(low.count < high.count)
        let decoded = try ImageDecoder().decode(high, source: "roundtrip.jpg")
        #expect(decoded.width == chelsea.width && decoded.height == chelsea.height)
        var total = 0
        for (a, b) in zip(decoded.pixels, chelsea.pixels) { total += abs(Int(a) - Int(b)) }
        let meanError = Double(total) / Double(chelsea.pixels.count)
        #expect(meanError < 3, "mean abs error \(meanError)")
        #expect(throws: ImageError.self) { try ImageEncoder.jpeg(chelsea, quality: 0) }
    }

    @Test func flipAndCrop() throws {
        let flipped = chelsea.horizontallyFlipped()
        #expect(flipped[0, 0] == chelsea[chelsea.width - 1, 0])
        #expect(flipped[7, 11] == chelsea[chelsea.width - 8, 11])
        #expect(flipped.horizontallyFlipped() == chelsea)
        let crop = try chelsea.cropped(x: 10, y: 20, width: 30, height: 40)
        #expect(crop.width == 30 && crop.height == 40)
        #expect(crop[0, 0] == chelsea[10, 20])
        #expect(crop[29, 39] == chelsea[39, 59])
        #expect(throws: ImageError.self) { try chelsea.cropped(x: 440, y: 0, width: 20, height: 10) }
    }

    @Test func chwWritesPlanesAndFlips() throws {
        let image = try RGBImage(width: 2, height: 1, pixels: [0, 51, 255, 255, 102, 0])
        var out = [Float](repeating: .nan, count: 6)
        try out.withUnsafeMutableBufferPointer { try image.writeCHW(into: $0, normalization: nil) }
        #expect(out == [0, 1, Float(51) / 255, Float(102) / 255, 1, 0])
        try out.withUnsafeMutableBufferPointer { try image.writeCHW(into: $0, normalization: .half, flipHorizontally: true) }
        #expect(out == [1, -1, (Float(102) / 255 - 0.5) / 0.5, (Float(51) / 255 - 0.5) / 0.5, -1, 1])
        var short = [Float](repeating: 0, count: 5)
        #expect(throws: ImageError.self) {
            try short.withUnsafeMutableBufferPointer { try image.writeCHW(into: $0, normalization: .imagenet) }
        }
    }
}
