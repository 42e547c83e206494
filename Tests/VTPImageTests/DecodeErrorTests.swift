import Foundation
import Testing
import VTPVocabulary
import VTPImage

/// Bad inputs give typed errors naming the source, never a crash.
@Suite struct DecodeErrorTests {
    private func bytes(_ path: String) throws -> Data { try Data(contentsOf: URL(fileURLWithPath: path)) }

    private func decodeError(_ data: Data, source: String, maxPixels: Int = ImageDecoder.defaultMaxPixels) -> ImageError? {
        do {
            _ = try ImageDecoder(maxPixels: maxPixels).decode(data, source: source)
            return nil
        } catch {
            return error
        }
    }

    @Test func zeroSizeFileOnDisk() throws {
        let directory = try TestImages.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let path = directory.appendingPathComponent("empty.jpg").path
        #expect(FileManager.default.createFile(atPath: path, contents: Data()))
        #expect(throws: ImageError.empty(source: path)) { try ImageDecoder().decode(contentsOf: path) }
    }

    @Test func missingFileIsUnreadable() {
        #expect {
            try ImageDecoder().decode(contentsOf: "/nonexistent/nope.png")
        } throws: { error in
            guard case let .unreadable(source, _) = error as? ImageError else { return false }
            return source == "/nonexistent/nope.png"
        }
    }

    @Test func unknownAndUnsupportedFormats() {
        #expect(decodeError(Data("hello, not an image".utf8), source: "a.jpg") == .unknownFormat(source: "a.jpg", detected: nil))
        #expect(decodeError(Data("GIF89a\u{1}\u{0}\u{1}\u{0}".utf8), source: "b.png") == .unknownFormat(source: "b.png", detected: "GIF"))
        let error = decodeError(Data("BM????".utf8), source: "c.webp")
        #expect(error == .unknownFormat(source: "c.webp", detected: "BMP"))
        #expect(error?.description.contains("c.webp") == true)
    }

    /// The format comes from the content: a PNG named .jpg decodes as PNG.
    @Test func formatIsSniffedNotTakenFromTheName() throws {
        let data = try bytes(TestImages.fixture("dog.png"))
        let image = try ImageDecoder().decode(data, source: "misnamed.jpg")
        #expect(image.width == 256 && image.height == 256)
    }

    @Test(arguments: ["chelsea.jpg", "rocket_progressive.jpg", "coffee_cmyk.jpg", "dog.png", "coffee_palette.png"])
    func truncatedFiles(name: String) throws {
        let data = try bytes(TestImages.fixture(name))
        for fraction in [0.02, 0.5, 0.9] {
            let cut = data.prefix(Int(Double(data.count) * fraction))
            let error = decodeError(cut, source: "cut-\(name)")
            guard case let .truncated(source, _, _)? = error else {
                Issue.record("\(name) cut at \(fraction): expected truncated, got \(String(describing: error))")
                continue
            }
            #expect(source == "cut-\(name)")
        }
    }

    @Test func truncatedWebP() throws {
        let data = try bytes(TestImages.resource("lossy.webp"))
        let error = decodeError(data.prefix(data.count / 2), source: "half.webp")
        guard case .truncated(source: "half.webp", format: .webp, _)? = error else {
            Issue.record("expected truncated WebP, got \(String(describing: error))")
            return
        }
    }

    /// Found by the image fuzzer (Fuzz/Corpus/image/regression-ztxt-bomb.png): a small file whose
    /// zTXt chunk announces 1.97 GB. It is refused from the chunk table, naming the chunk, before
    /// libpng allocates and zeroes that much (5 s under the fuzzer).
    @Test func aChunkLongerThanTheFileIsTruncatedBeforeLibpngAllocatesIt() throws {
        var data = Data([0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A, 0, 0, 0, 13])
        data.append(contentsOf: Array("IHDR".utf8) + [0, 0, 0, 37, 0, 0, 0, 23, 8, 2, 0, 0, 0, 0x03, 0x4E, 0x11, 0xF2])
        // A 36-byte tEXt, then the zTXt at byte 81 with 9 of its bytes present.
        data.append(contentsOf: [0, 0, 0, 36] + Array("tEXt".utf8) + Array("Comment\u{0}".utf8) + [UInt8](repeating: 0x61, count: 28) + [0, 0, 0, 0])
        data.append(contentsOf: [0x75, 0x75, 0x75, 0x75] + Array("zTXt".utf8) + Array("Title\u{0}\u{0}".utf8) + [0x78, 0x9C])
        let error = decodeError(data, source: "bomb.png")
        guard case let .truncated(source: "bomb.png", format: .png, detail)? = error else {
            Issue.record("expected truncated PNG, got \(String(describing: error))")
            return
        }
        #expect(detail.contains("chunk 'zTXt' at byte 81 declares 1970632053 bytes of data, but the file has 5 left"), "\(detail)")
        // A well-formed file with ancillary chunks before IDAT still decodes.
        let good = try ImageDecoder().decode(try bytes(TestImages.fixture("dog.png")), source: "dog.png")
        #expect(good.width == 256)
    }

    @Test func corruptData() throws {
        // JPEG: valid SOI marker, then garbage where the tables and frame header should be.
        var jpeg = try bytes(TestImages.fixture("chelsea.jpg"))
        jpeg.replaceSubrange(4..<700, with: [UInt8](repeating: 0x5A, count: 696))
        let jpegError = decodeError(jpeg, source: "bad.jpg")
        guard case .corrupt(source: "bad.jpg", format: .jpeg, _)? = jpegError else {
            Issue.record("expected corrupt JPEG, got \(String(describing: jpegError))")
            return
        }
        // PNG: a flipped bit in the IHDR checksum.
        var png = try bytes(TestImages.fixture("dog.png"))
        png[30] ^= 0x01
        let pngError = decodeError(png, source: "bad.png")
        guard case .corrupt(source: "bad.png", format: .png, _)? = pngError else {
            Issue.record("expected corrupt PNG, got \(String(describing: pngError))")
            return
        }
        // WebP: RIFF/WEBP signature followed by garbage.
        var webp = Data("RIFF".utf8) + Data([200, 0, 0, 0]) + Data("WEBPVP8 ".utf8)
        webp.append(Data([UInt8](repeating: 0x33, count: 200)))
        let webpError = decodeError(webp, source: "bad.webp")
        guard case .corrupt(source: "bad.webp", format: .webp, _)? = webpError else {
            Issue.record("expected corrupt WebP, got \(String(describing: webpError))")
            return
        }
    }

    @Test func pixelLimitIsCheckedFromTheHeader() throws {
        let jpeg = try bytes(TestImages.fixture("chelsea.jpg"))  // 451 x 300
        #expect(decodeError(jpeg, source: "big.jpg", maxPixels: 451 * 300 - 1)
            == .tooManyPixels(source: "big.jpg", width: 451, height: 300, limit: 451 * 300 - 1))
        #expect(decodeError(jpeg, source: "ok.jpg", maxPixels: 451 * 300) == nil)
        let png = try bytes(TestImages.fixture("dog.png"))
        #expect(decodeError(png, source: "big.png", maxPixels: 1000)
            == .tooManyPixels(source: "big.png", width: 256, height: 256, limit: 1000))
        let webp = try bytes(TestImages.resource("lossy.webp"))
        #expect(decodeError(webp, source: "big.webp", maxPixels: 100)
            == .tooManyPixels(source: "big.webp", width: 37, height: 23, limit: 100))
    }

    /// A 100000 x 100000 PNG header with no image data: refused by the limit, so nothing
    /// near 30 GB is ever allocated.
    @Test func decompressionBombHeaderIsRejectedBeforeAllocation() throws {
        var ihdr = Data("IHDR".utf8)
        ihdr.append(contentsOf: [0x00, 0x01, 0x86, 0xA0, 0x00, 0x01, 0x86, 0xA0, 8, 2, 0, 0, 0])
        var png = Data([0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A, 0, 0, 0, 13])
        png.append(ihdr)
        let crc = ihdr.reduce(into: UInt32(0xFFFF_FFFF)) { crc, byte in
            crc ^= UInt32(byte)
            for _ in 0..<8 { crc = crc & 1 == 1 ? (crc >> 1) ^ 0xEDB8_8320 : crc >> 1 }
        } ^ 0xFFFF_FFFF
        png.append(contentsOf: [UInt8(crc >> 24), UInt8((crc >> 16) & 0xFF), UInt8((crc >> 8) & 0xFF), UInt8(crc & 0xFF)])
        #expect(decodeError(png, source: "bomb.png")
            == .tooManyPixels(source: "bomb.png", width: 100_000, height: 100_000, limit: 100_000_000))
    }

    /// Found by the image fuzzer (Fuzz/Corpus/image/crash-png-4g-by-4g.png): an IHDR of 2^32-1 x 2^32-1
    /// was refused correctly, but the error's text multiplied the sides and trapped, killing the worker
    /// that logged it.
    @Test func pixelCountBeyondIntIsReportedWithoutOverflow() throws {
        var png = Data([0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A, 0, 0, 0, 13])
        png.append(contentsOf: Array("IHDR".utf8) + [0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 8, 2, 0, 0, 0])
        let error = decodeError(png, source: "huge.png")
        #expect(error == .tooManyPixels(source: "huge.png", width: 4_294_967_295, height: 4_294_967_295, limit: 100_000_000))
        #expect(error?.description == "huge.png: 4294967295x4294967295 = more than \(Int.max) pixels exceeds the limit of 100000000")
    }
}
