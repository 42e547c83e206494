import Foundation
import Testing
import VTPVocabulary
import VTPSafeTensors
import VTPTensor
import VTPTestSupport

@Suite struct SafeTensorsTests {
    @Test func readsFixtureHeader() throws {
        let file = try Fixtures.safetensors("vtp-tiny.expected.safetensors")
        let info = try file.info("pixel_values")
        #expect(info.dtype == .f32)
        #expect(info.shape == [3, 3, 256, 256])
        #expect(try file.int64s("text_tokens").count == 6 * 77)
    }

    @Test func roundTripsAllFloatFormats() throws {
        var w = SafeTensorsWriter()
        let t = Tensor(shape: [2, 3], values: [1, -2, 0.5, 3.25, 1e-3, 65504])
        w.add("a", t)
        w.add("h", t, as: .f16)
        w.add("b", t, as: .bf16)
        w.add("ids", shape: [3], int64s: [1, -5, 49407])
        w.metadata["format"] = "pt"
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("rt-\(UUID()).safetensors").path
        defer { try? FileManager.default.removeItem(atPath: path) }
        try w.write(to: path)
        let r = try SafeTensorsFile(path: path)
        #expect(r.metadata["format"] == "pt")
        #expect(try r.tensor("a").toArray() == t.toArray())
        #expect(try r.tensor("h").toArray() == t.toArray().map { Float(Float16($0)) })
        #expect(try r.tensor("b").toArray()[0...3] == [1, -2, 0.5, 3.25])
        #expect(try r.int64s("ids") == [1, -5, 49407])
        #expect(throws: SafeTensorsError.wrongShape(path: path, name: "a", found: [2, 3], expected: [3, 2])) {
            try r.tensor("a", expectedShape: [3, 2])
        }
    }

    @Test func rejectsTruncatedAndGarbageFiles() throws {
        let dir = FileManager.default.temporaryDirectory
        let full = try Data(contentsOf: URL(fileURLWithPath: Fixtures.path("vtp-tiny-ae-only/model.safetensors")))
        let cut = dir.appendingPathComponent("cut-\(UUID()).safetensors").path
        try full.prefix(full.count - 100).write(to: URL(fileURLWithPath: cut))
        defer { try? FileManager.default.removeItem(atPath: cut) }
        #expect {
            try SafeTensorsFile(path: cut)
        } throws: { error in
            guard case SafeTensorsError.truncated(let p, _) = error else { return false }
            return p == cut
        }
        let junk = dir.appendingPathComponent("junk-\(UUID()).safetensors").path
        try Data([8, 0, 0, 0, 0, 0, 0, 0] + Array("not json".utf8)).write(to: URL(fileURLWithPath: junk))
        defer { try? FileManager.default.removeItem(atPath: junk) }
        #expect(throws: SafeTensorsError.badHeader(path: junk, detail: "header is not JSON")) { try SafeTensorsFile(path: junk) }
    }

    /// Found by the safetensors fuzzer (Fuzz/Corpus/safetensors/crash-* and regression-*): these headers
    /// trapped in Int conversions and overflowing products, killing whatever loaded them (a worker's
    /// model load, `vtp model`). Each is now an error naming the file.
    @Test(arguments: [
        // The length prefix with its high bit set, as in any file that is not safetensors.
        ([0, 0, 0, 0, 0, 0, 0, 0x80] + Array("{}".utf8), "header length 9223372036854775808 is not plausible"),
        (headerOnly(#"{"a":{"dtype":"F32","shape":[4611686018427387904,4],"data_offsets":[0,0]}}"#),
         "tensor 'a' has shape [4611686018427387904, 4], too large for any file"),
        (headerOnly(#"{"a":{"dtype":"F32","shape":[4611686018427387904],"data_offsets":[0,0]}}"#),
         "tensor 'a' has shape [4611686018427387904], too large for any file"),
        (headerOnly(#"{"a":{"dtype":"F32","shape":[18446744073709551615],"data_offsets":[0,0]}}"#), "tensor 'a' has a bad shape"),
        (headerOnly(#"{"a":{"dtype":"U8","shape":[1.5],"data_offsets":[0,1]}}"#), "tensor 'a' has a bad shape"),
        (headerOnly(#"{"a":{"dtype":"U8","shape":[9223372036854775807],"data_offsets":[0,9223372036854775807]}}"#),
         "tensor 'a' ends at data offset 9223372036854775807 but the file has 0 bytes of data"),
    ])
    func overflowingHeadersAreErrorsNotTraps(bytes: [UInt8], detail: String) throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("overflow-\(UUID()).safetensors").path
        try Data(bytes).write(to: URL(fileURLWithPath: path))
        defer { try? FileManager.default.removeItem(atPath: path) }
        #expect {
            try SafeTensorsFile(path: path)
        } throws: { error in
            guard let error = error as? SafeTensorsError else { return false }
            return error.description.hasPrefix(path + ": ") && error.description.hasSuffix(detail)
        }
    }
}

/// A file of just the length prefix and `json`, padded with spaces to 8 bytes as the reference writes it.
private func headerOnly(_ json: String) -> [UInt8] {
    var text = Array(json.utf8)
    text += [UInt8](repeating: 0x20, count: (8 - text.count % 8) % 8)
    return withUnsafeBytes(of: UInt64(text.count).littleEndian, Array.init) + text
}

/// Weights borrowed from a read-only mapping cannot be written through the public API: the one
/// mutable accessor traps (an exit test, since a write there would otherwise fault or corrupt).
@Suite struct ReadOnlyWeightTests {
    @Test func mappedWeightsAreReadOnly() throws {
        let file = try SafeTensorsFile(path: Fixtures.path("vtp-tiny/model.safetensors"))
        #expect(try file.tensor("trunk.cls_token").storage.isReadOnly)
        #expect(!Tensor(zeros: [4]).storage.isReadOnly)
    }

    @Test func writingThroughAMappedWeightTraps() async {
        await #expect(processExitsWith: .failure) {
            let file = try SafeTensorsFile(path: Fixtures.path("vtp-tiny/model.safetensors"))
            let weight = try file.tensor("trunk.cls_token")
            weight.mutablePointer[0] = 1
        }
    }
}
