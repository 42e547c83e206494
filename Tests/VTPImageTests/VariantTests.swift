import CWebP
import Foundation
import Testing
import VTPVocabulary
import VTPImage
import VTPSafeTensors

/// PNG and WebP variants (bit depths, gray/alpha/palette/tRNS, Adam7) against Pillow's decoding.
@Suite struct VariantTests {
    @Test(arguments: try TestImages.resourceNames())
    func variantMatchesPIL(name: String) throws {
        let expected = try SafeTensorsFile(path: TestImages.resource("expected.safetensors"))
        let image = try ImageDecoder().decode(contentsOf: TestImages.resource(name))
        #expect([image.height, image.width, 3] == (try expected.info(name)).shape)
        let comparison = PixelComparison(image.pixels, try expected.uint8s(name))
        #expect(comparison.maxDifference == 0, "\(name): \(comparison)")
    }

    /// Encode with libwebp's lossless encoder, decode with ours: identical pixels.
    @Test func webpLosslessRoundTrip() throws {
        let source = try ImageDecoder().decode(contentsOf: TestImages.fixture("chelsea_tiny.jpg"))
        let encoded: Data = source.pixels.withUnsafeBufferPointer { pixels in
            var output: UnsafeMutablePointer<UInt8>?
            let size = WebPEncodeLosslessRGB(pixels.baseAddress, Int32(source.width), Int32(source.height),
                                             Int32(source.rowBytes), &output)
            defer { WebPFree(output) }
            return Data(bytes: output!, count: size)
        }
        #expect(encoded.count > 0)
        let decoded = try ImageDecoder().decode(encoded, source: "roundtrip.webp")
        #expect(decoded == source)
    }

    /// 16-bit gray written by our libpng encoder: values below 256 survive, larger ones saturate
    /// (PIL's I;16 -> RGB), in both the progressive (Adam7) and sequential layouts.
    @Test(arguments: [false, true])
    func gray16RoundTrip(interlaced: Bool) throws {
        let width = 19, height = 7
        var samples = [UInt8]()
        var expected = [UInt8]()
        for i in 0..<(width * height) {
            let value = (i * 37) % 600
            samples += [UInt8(value >> 8), UInt8(value & 0xFF)]
            let shown = UInt8(min(value, 255))
            expected += [shown, shown, shown]
        }
        let png = try samples.withUnsafeBytes { raw in
            try ImageEncoder.png(samples: raw, width: width, height: height, layout: .gray16, interlaced: interlaced)
        }
        let decoded = try ImageDecoder().decode(png, source: "gray16.png")
        #expect(decoded.pixels == expected)
    }
}
