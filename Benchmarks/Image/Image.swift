import Benchmark
import CImageShims
import Foundation
import VTPBenchmarkSupport
import VTPBenchmarks
import VTPImage

// What a worker pays per image before the model: decode the file's bytes and apply
// adm-center-crop 256 (one core, bytes already in memory), on the fixture images of
// Tests/Fixtures/images and `vtp bench image`'s built-in 500x375 JPEG. Baseline for JPEGs,
// measured in the same run: libjpeg alone decoding the same bytes at full size (no colour
// policy, no resize or crop), so the ratio is vtp's own share on top of the codec.
// PNGs have no baseline here.

/// The images the suite decodes: the built-in sample and a spread of the fixtures (baseline,
/// progressive and CMYK JPEG, a large JPEG, RGB and RGBA PNG).
let images: [(name: String, data: Data)] = {
    let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("Tests/Fixtures/images")
    var images = [(name: "built-in coffee 500x375.jpg", data: BenchSample.jpeg)]
    for name in ["chelsea.jpg", "rocket_progressive.jpg", "coffee_cmyk.jpg", "hubble_large.jpg", "dog.png", "astronaut_rgba.png"] {
        let url = fixtures.appendingPathComponent(name)
        guard let data = try? Data(contentsOf: url) else { fatalError("Image suite: cannot read \(url.path)") }
        images.append((name, data))
    }
    return images
}()

/// The NUL-terminated message a shim call wrote.
func text(of message: [CChar]) -> String {
    String(decoding: message.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
}

/// libjpeg's full-size decode of `data` through the same C shim vtp uses, without any of vtp's
/// pixel handling: the floor under vtp's JPEG decode.
func rawJPEGDecode(_ data: Data, into buffer: inout [UInt8]) {
    data.withUnsafeBytes { (bytes: UnsafeRawBufferPointer) in
        var info = vtp_jpeg_info()
        var status = VTP_IMG_OK
        var message = [CChar](repeating: 0, count: Int(VTP_IMG_MESSAGE_CAPACITY))
        guard let decoder = vtp_jpeg_open(bytes.baseAddress!.assumingMemoryBound(to: UInt8.self), bytes.count, &info,
                                          &status, &message) else {
            fatalError("libjpeg refused the benchmark image: \(text(of: message))")
        }
        defer { vtp_jpeg_close(decoder) }
        let size = Int(info.width) * Int(info.height) * Int(info.output_channels)
        if buffer.count < size { buffer = [UInt8](repeating: 0, count: size) }
        let result = buffer.withUnsafeMutableBufferPointer { vtp_jpeg_decode(decoder, $0.baseAddress, size, &message) }
        guard result == VTP_IMG_OK else { fatalError("libjpeg failed on the benchmark image: \(text(of: message))") }
    }
}

let benchmarks: @Sendable () -> Void = {
    let comparisons = SameRunBaselines()
    let decoder = ImageDecoder()
    let transform = PreprocessTransform.admCenterCrop(size: 256)
    for image in images {
        let name = "decode + adm-center-crop 256: \(image.name)"
        let isJPEG = image.name.hasSuffix(".jpg")
        Benchmark(name, configuration: .init(metrics: [.wallClock, .throughput, .mallocCountTotal], warmupIterations: 2,
                                             maxDuration: .seconds(3), maxIterations: 200)) { benchmark in
            let comparison: SameRunBaseline? = isJPEG ? try comparisons.comparison(name) {
                var buffer: [UInt8] = []
                return SameRunBaseline(name, against: "libjpeg's own decode of the same bytes", runs: 10) {
                    rawJPEGDecode(image.data, into: &buffer)
                }
            } : nil
            let decodeAndCrop = { try transform.apply(to: decoder.decode(image.data, source: image.name)) }
            benchmark.startMeasurement()
            let cropped = try comparison.map { try $0.measure(decodeAndCrop) } ?? decodeAndCrop()
            benchmark.stopMeasurement()
            blackHole(cropped.pixels.count)
        } teardown: {
            comparisons.printReport(name)
        }
    }
}
