import Foundation
import Testing
import VTPVocabulary
import VTPTestSupport
@testable import VTPDatasets
#if canImport(Glibc)
import Glibc
#endif

/// Reading an item refuses anything that is not a regular file before it can block, and anything
/// larger than the caller allows before reading it. (A FIFO named `x.jpg` used to hang a worker
/// for good: `open` waited for a writer while heartbeats kept renewing the lease.)
@Suite struct NonRegularFileTests {
    private func readError(_ location: ItemLocation, maxBytes: Int = .max) -> DatasetError? {
        do { _ = try location.readBytes(maxBytes: maxBytes); return nil } catch { return error as? DatasetError }
    }

    @Test(.timeLimit(.minutes(1)))
    func fifosSocketsDevicesAndDirectoriesNamedLikeImagesAreRefused() throws {
        let t = try TempDir()
        try PoisonInputs.makeFIFO(at: t.path + "/fifo.jpg")
        let socket = try PoisonInputs.makeSocket(at: t.path + "/socket.png")
        defer { close(socket) }
        try FileManager.default.createSymbolicLink(atPath: t.path + "/zero.jpg", withDestinationPath: "/dev/zero")
        try t.dir("folder.webp")
        for (name, kind) in [("fifo.jpg", "FIFO"), ("socket.png", "socket"), ("zero.jpg", "character device"), ("folder.webp", "directory")] {
            let path = t.path + "/" + name
            let error = readError(.file(path: path))
            #expect(error == .notRegularFile(path: path, kind: kind), "\(name): \(String(describing: error))")
            #expect(error?.description == "\(path): not a regular file (\(kind)), expected an image file")
        }
        // The listing still names them, so each becomes a failed item with that reason.
        let listing = try ImageFolderReader.listImages(root: t.path)
        #expect(listing.items.map(\.sourceId) == ["fifo.jpg", "socket.png", "zero.jpg"])
        // A tar shard or manifest that is a FIFO is refused the same way.
        try PoisonInputs.makeFIFO(at: t.path + "/shard.tar")
        #expect(readError(.tarMember(tarPath: t.path + "/shard.tar", offset: 0, size: 10))
            == .notRegularFile(path: t.path + "/shard.tar", kind: "FIFO"))
        try PoisonInputs.makeFIFO(at: t.path + "/list.jsonl")
        #expect(throws: DatasetError.notRegularFile(path: t.path + "/list.jsonl", kind: "FIFO")) {
            try ManifestReader.list(manifest: t.path + "/list.jsonl")
        }
    }

    @Test func itemsLargerThanTheLimitAreNotRead() throws {
        let t = try TempDir()
        let path = try t.file("big.jpg", [UInt8](repeating: 7, count: 5000))
        #expect(readError(.file(path: path), maxBytes: 4999) == .tooLarge(path: path, size: 5000, limit: 4999))
        #expect(try ItemLocation.file(path: path).readBytes(maxBytes: 5000).count == 5000)
        // A tar member: the range is checked first (a bad range is the more useful error), then the size.
        #expect(readError(.tarMember(tarPath: path, offset: 100, size: 4000), maxBytes: 1000)
            == .tooLarge(path: path + " (member at byte 100)", size: 4000, limit: 1000))
        guard case .badTar? = readError(.tarMember(tarPath: path, offset: 100, size: 6000), maxBytes: 1000) else {
            Issue.record("a range outside the file should be reported as such")
            return
        }
        #expect(try ItemLocation.tarMember(tarPath: path, offset: 100, size: 1000).readBytes(maxBytes: 1000).count == 1000)
    }
}
