import Foundation
import Testing
import VTPCoordinator
import VTPDatasets
import VTPQueue
import VTPVocabulary

/// A job as `vtp run` and `vtp submit` enqueue it: its input (manifest, ImageFolder tree) listed
/// once to check and fingerprint it (``JobRequest/list(maxItems:)``), then read again from disk as
/// the ledger cuts shards.
@Suite("Streaming listing into a real PostgreSQL")
struct StreamingListingTests {
    private static func writeManifest(rows: Int, at path: String, renaming renamed: Int? = nil) throws {
        var text = ""
        for i in 0..<rows {
            let id = i == renamed ? "renamed" : "sample-\(i)"
            text += "{\"path\": \"img/\(i).jpg\", \"id\": \"\(id)\", \"label\": \"class-\(i % 3)\", \"caption\": \"photo \(i)\"}\n"
        }
        try text.write(toFile: path, atomically: true, encoding: .utf8)
    }

    private static func request(_ manifest: String, output: String) -> JobRequest {
        JobRequest(parameters: .latents(LatentsParameters()), input: manifest, output: output, model: "/dev/null", shardSize: 100)
    }

    @Test func aManifestIsEnqueuedFromTheFileWithItsShardsLabelsAndDigest() async throws {
        try await withLedgerDatabase { url in
            let output = scratchOutput()
            defer { try? FileManager.default.removeItem(atPath: output) }
            try FileManager.default.createDirectory(atPath: output, withIntermediateDirectories: true)
            let manifest = output + "/list.jsonl"
            try Self.writeManifest(rows: 2_550, at: manifest)
            let request = Self.request(manifest, output: output + "/out")
            let listing = try request.list()
            #expect(listing.itemCount == 2_550)
            #expect(listing.classes == ["class-0", "class-1", "class-2"])
            let collected = try listing.collect()
            #expect(listing.digest == ListingDigest.of(items: collected, skipped: []))

            let ledger = Ledger(database: url, leasePolicy: quickLeases(30))
            let job = try await ledger.enqueue(request.spec(labelClasses: listing.classes), listing: listing)
            let record = try await ledger.job(job)
            #expect(record.itemCount == 2_550 && record.shardCount == 26 && record.state == .pending)
            #expect(record.listingDigest == listing.digest)
            var claimed: [JobItem] = []
            while let shard = try await ledger.claimNextShard(owner: "reader", job: job) { claimed += shard.items }
            #expect(claimed.count == 2_550)
            #expect(claimed.sorted { $0.ordinal < $1.ordinal } == collected)
            #expect(claimed.first { $0.ordinal == 2_549 }?.label == 2_549 % 3)
        }
    }

    @Test func aManifestThatChangedSinceItWasListedFailsTheEnqueueAndLeavesNoJob() async throws {
        try await withLedgerDatabase { url in
            let output = scratchOutput()
            defer { try? FileManager.default.removeItem(atPath: output) }
            try FileManager.default.createDirectory(atPath: output, withIntermediateDirectories: true)
            let manifest = output + "/list.jsonl"
            try Self.writeManifest(rows: 450, at: manifest)
            let request = Self.request(manifest, output: output + "/out")
            let listing = try request.list()
            // Rewritten between the check and the enqueue: same rows, one id changed near the end.
            try Self.writeManifest(rows: 450, at: manifest, renaming: 420)

            let ledger = Ledger(database: url, leasePolicy: quickLeases(30))
            await #expect {
                _ = try await ledger.enqueue(request.spec(labelClasses: listing.classes), listing: listing)
            } throws: { error in
                guard case .changedWhileListed(path: manifest, _)? = error as? DatasetError else { return false }
                return true
            }
            #expect(try await ledger.listJobs().isEmpty)
            let shards = output + "/out/.vtp/shards"
            let left = (try? FileManager.default.contentsOfDirectory(atPath: shards)) ?? []
            #expect(left.isEmpty, "shard manifests left behind: \(left)")
        }
    }

    @Test func anImageFolderIsWalkedAgainAsItIsEnqueuedAndAChangeMeanwhileLeavesNoJob() async throws {
        try await withLedgerDatabase { url in
            let output = scratchOutput()
            defer { try? FileManager.default.removeItem(atPath: output) }
            let input = output + "/in"
            for c in 0..<4 {
                for i in 0..<(60 + c) {
                    let dir = input + "/c\(c)/part\(i % 2)"
                    try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
                    FileManager.default.createFile(atPath: dir + "/\(i).jpg", contents: Data("x".utf8))
                }
            }
            let request = Self.request(input, output: output + "/out")
            let listing = try request.list()
            #expect(listing.itemCount == 246 && listing.classes == ["c0", "c1", "c2", "c3"])
            let collected = try listing.collect()
            #expect(listing.digest == ListingDigest.of(items: collected, skipped: []))
            let ledger = Ledger(database: url, leasePolicy: quickLeases(30))

            // A file added after the check: the enqueue's walk finds it and refuses.
            FileManager.default.createFile(atPath: input + "/c3/late.jpg", contents: Data("x".utf8))
            await #expect {
                _ = try await ledger.enqueue(request.spec(labelClasses: listing.classes), listing: listing)
            } throws: { error in
                guard case .changedWhileListed(path: input, _)? = error as? DatasetError else { return false }
                return true
            }
            #expect(try await ledger.listJobs().isEmpty)

            try FileManager.default.removeItem(atPath: input + "/c3/late.jpg")
            let job = try await ledger.enqueue(request.spec(labelClasses: listing.classes), listing: listing)
            let record = try await ledger.job(job)
            #expect(record.itemCount == 246 && record.shardCount == 3 && record.listingDigest == listing.digest)
            var claimed: [JobItem] = []
            while let shard = try await ledger.claimNextShard(owner: "reader", job: job) { claimed += shard.items }
            #expect(claimed.sorted { $0.ordinal < $1.ordinal } == collected)
            #expect(Set(claimed.map(\.label)) == [0, 1, 2, 3])
        }
    }
}
