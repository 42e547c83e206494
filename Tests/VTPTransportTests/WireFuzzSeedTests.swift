import Foundation
import Testing
import VTPTransport
import VTPTransportTestSupport

/// The wire fuzzer (Fuzz/, docs/fuzzing.md) mutates the real encoder's frames. Its seeds are committed;
/// this test fails when the encoding changes and the seeds were not regenerated with
/// `VTP_WRITE_FUZZ_SEEDS=1 swift test --filter WireFuzzSeedTests`.
@Suite struct WireFuzzSeedTests {
    static let corpus = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Fuzz/Corpus/wire")

    /// `NN-type.bin` for every sample message, in `SampleMessages.all` order.
    static var seeds: [(name: String, message: WireMessage)] {
        SampleMessages.all.enumerated().map { index, message in
            (String(format: "%02d-%@.bin", index, "\(message.type)"), message)
        }
    }

    @Test func committedSeedsAreTheEncodersFramesOfEverySampleMessage() throws {
        let write = ProcessInfo.processInfo.environment["VTP_WRITE_FUZZ_SEEDS"] == "1"
        for (name, message) in Self.seeds {
            let frame = try message.encoded()
            let url = Self.corpus.appendingPathComponent(name)
            if write { try Data(frame).write(to: url) }
            let committed = try #require(FileManager.default.contents(atPath: url.path), "missing seed \(url.path)")
            #expect([UInt8](committed) == frame, "\(name) is not the current encoding of \(message.type)")
            #expect(try WireMessage.decode([UInt8](committed)) == message, "\(name)")
        }
    }

    /// Every other file in the corpus (inputs that once crashed the harness) is still refused or decoded
    /// without a trap; the harness's own round-trip invariant holds for those that decode.
    @Test func everyCorpusFileDecodesOrIsRefusedWithAnError() throws {
        let names = try FileManager.default.contentsOfDirectory(atPath: Self.corpus.path)
        #expect(names.count >= Self.seeds.count)
        for name in names {
            let frame = [UInt8](try #require(FileManager.default.contents(atPath: Self.corpus.appendingPathComponent(name).path)))
            guard let message = try? WireMessage.decode(frame) else { continue }
            #expect(try WireMessage.decode(try message.encoded()) == message, "\(name)")
        }
    }
}
