import Foundation
import Testing
import VTPVocabulary
import VTPImage
import VTPTestSupport
#if canImport(Glibc)
import Glibc
#endif

/// The decode memory budget: images whose decode and preprocessing would allocate more than it are
/// refused from their header, JPEGs that fit only when reduced are decoded with DCT scaling, and
/// everything that fits is decoded exactly as before.
@Suite struct DecodeBudgetTests {
    private func budget(_ bytes: Int = DecodeBudget.defaultMaxBytes, size: Int = 256) -> DecodeBudget {
        DecodeBudget(maxBytes: bytes, transform: .admCenterCrop(size: size))
    }

    private func error(_ body: () throws(ImageError) -> RGBImage) -> ImageError? {
        do { _ = try body(); return nil } catch { return error }
    }

    /// The chaos run's 2 x 50,000,000 PNG: within the pixel limit, but center-cropping it to 256
    /// resizes it to 256 x 6,400,000,000 first, so the resampler's tables alone would need
    /// hundreds of gigabytes (the worker used to abort allocating them).
    @Test func tallPNGIsRefusedFromItsHeaderWithTheBytesItWouldNeed() throws {
        let dir = try TemporaryDirectory("budget-tall")
        defer { dir.remove() }
        let path = dir.file("tall.png")
        try PoisonInputs.writePNG(width: 2, height: 50_000_000, to: path)
        let refused = error { () throws(ImageError) in try ImageDecoder(budget: budget()).decode(contentsOf: path) }
        guard case let .overBudget(source, format, width, height, needed, limit, _)? = refused else {
            Issue.record("expected the budget to refuse it, got \(String(describing: refused))")
            return
        }
        #expect(source == path && format == .png && width == 2 && height == 50_000_000)
        #expect(limit == 1 << 30)
        #expect(needed > 100_000_000_000, "the 256 x 6.4e9 resize's tables: \(needed)")
        let text = refused!.description
        #expect(text.contains(path) && text.contains("2x50000000 PNG") && text.contains("\(needed) bytes"))
        #expect(text.contains("more than the decode memory budget of 1073741824 bytes (1.0 GiB)"), "\(text)")
    }

    /// A 1 x 16000 JPEG is a few kilobytes, yet its resize to a 256 short side makes a 4,096,000
    /// row axis whose tables take about 150 MB: counted, so a smaller budget refuses it while the
    /// default one decodes it.
    @Test func extremeAspectJPEGCountsTheResizeTables() throws {
        let strip = try RGBImage(width: 1, height: 16000, pixels: (0..<16000).flatMap { [UInt8($0 % 251), 40, 200] })
        let jpeg = try ImageEncoder.jpeg(strip)
        #expect(jpeg.count < 200_000)
        let refused = error { () throws(ImageError) in try ImageDecoder(budget: budget(64 << 20)).decode(jpeg, source: "strip.jpg") }
        guard case let .overBudget(_, _, 1, 16000, needed, _, _)? = refused else {
            Issue.record("expected the budget to refuse it, got \(String(describing: refused))")
            return
        }
        #expect(needed > 64 << 20 && needed < 1 << 30, "\(needed)")
        let decoded = try ImageDecoder(budget: budget()).decode(jpeg, source: "strip.jpg")
        #expect(decoded.width == 1 && decoded.height == 16000)
        #expect(try decoded.admCenterCrop(size: 256).width == 256)
    }

    /// Under a budget the full-size decode does not fit, a JPEG is decoded at the smallest DCT
    /// scale that still covers the crop; with room to spare it is the same full-size, PIL-equal decode.
    @Test func jpegThatFitsOnlyReducedIsDecodedWithDCTScaling() throws {
        let jpeg = try Data(contentsOf: URL(fileURLWithPath: TestImages.fixture("hubble_large.jpg")))  // 1000 x 872
        let full = try ImageDecoder().decode(jpeg, source: "hubble.jpg")
        let roomy = try ImageDecoder(budget: budget(size: 64)).decode(jpeg, source: "hubble.jpg")
        #expect(roomy == full, "images that fit are decoded bit for bit as before")

        let reduced = try ImageDecoder(budget: budget(3 << 20, size: 64)).decode(jpeg, source: "hubble.jpg")
        #expect(reduced.width == 125 && reduced.height == 109, "1/8 scale: \(reduced.width)x\(reduced.height)")
        // DCT scaling is block averaging: the reduced image is close to the full one box-averaged.
        let crop = try reduced.admCenterCrop(size: 64), reference = try full.admCenterCrop(size: 64)
        let comparison = PixelComparison(crop.pixels, reference.pixels)
        #expect(comparison.maxDifference < 64, "\(comparison)")
        var total = 0
        for (a, b) in zip(crop.pixels, reference.pixels) { total += abs(Int(a) - Int(b)) }
        #expect(Double(total) / Double(crop.pixels.count) < 6, "mean difference \(Double(total) / Double(crop.pixels.count))")

        // A crop larger than the 1/8 image needs a larger scale: 2/8 gives 250 x 218.
        let wider = try ImageDecoder(budget: DecodeBudget(maxBytes: 3 << 20, transform: .admCenterCrop(size: 200))).decode(jpeg, source: "h")
        #expect(wider.width == 250 && wider.height == 218)

        // PNGs have no reduced decode: the same kind of budget refuses them.
        let png = try Data(contentsOf: URL(fileURLWithPath: TestImages.fixture("dog.png")))  // 256 x 256
        let pngError = error { () throws(ImageError) in try ImageDecoder(budget: budget(150_000, size: 64)).decode(png, source: "dog.png") }
        guard case .overBudget(source: "dog.png", format: .png, width: 256, height: 256, _, budgetBytes: 150_000, _)? = pngError else {
            Issue.record("expected a refusal, got \(String(describing: pngError))")
            return
        }
    }

    /// A progressive JPEG keeps every DCT coefficient in memory whatever the output scale, so a
    /// budget below that refuses it even at 1/8, and says so.
    @Test func progressiveCoefficientsCountAtEveryScale() throws {
        let jpeg = try Data(contentsOf: URL(fileURLWithPath: TestImages.fixture("rocket_progressive.jpg")))  // 640 x 427
        let refused = error { () throws(ImageError) in
            try ImageDecoder(budget: budget(1_200_000, size: 32)).decode(jpeg, source: "rocket.jpg")
        }
        guard case let .overBudget(_, .jpeg, 640, 427, needed, 1_200_000, detail)? = refused else {
            Issue.record("expected a refusal, got \(String(describing: refused))")
            return
        }
        #expect(detail.contains("1/8"), "\(detail)")
        #expect(needed > 1_200_000)
        // The same file under the default budget decodes exactly as without one.
        #expect(try ImageDecoder(budget: budget(size: 32)).decode(jpeg, source: "r") == ImageDecoder().decode(jpeg, source: "r"))
    }

    /// Reading refuses what is not a regular file, at once (a FIFO with no writer used to block
    /// forever), and a file larger than the whole budget before reading it.
    @Test(.timeLimit(.minutes(1)))
    func nonRegularAndOversizedFilesAreRefusedBeforeReading() throws {
        let dir = try TemporaryDirectory("budget-files")
        defer { dir.remove() }
        try PoisonInputs.makeFIFO(at: dir.file("fifo.jpg"))
        #expect(error { () throws(ImageError) in try ImageDecoder().decode(contentsOf: dir.file("fifo.jpg")) }
            == .notRegularFile(source: dir.file("fifo.jpg"), kind: "FIFO"))
        try FileManager.default.createDirectory(atPath: dir.file("folder.png"), withIntermediateDirectories: false)
        #expect(error { () throws(ImageError) in try ImageDecoder().decode(contentsOf: dir.file("folder.png")) }
            == .notRegularFile(source: dir.file("folder.png"), kind: "directory"))
        try Data(count: 3 << 20).write(to: URL(fileURLWithPath: dir.file("big.jpg")))
        let big = error { () throws(ImageError) in try ImageDecoder(budget: budget(2 << 20)).decode(contentsOf: dir.file("big.jpg")) }
        guard case let .unreadable(source, reason)? = big else { Issue.record("\(String(describing: big))"); return }
        #expect(source == dir.file("big.jpg") && reason.contains("3145728 bytes") && reason.contains("decode memory budget"))
    }
}
