import Foundation
import Testing
import VTPQueue
import VTPTestSupport

/// Issue 13's acceptance: through the shipped road (`vtp run` → coordinator → ledger → ZeroMQ →
/// worker process → finalizer) a WebDataset sample without an image is a listed failure and every
/// `.json` metadata field reaches the output rows.
@Suite(.serialized)
struct RunMetadataTests {
    @Test(.timeLimit(.minutes(3)))
    func webDatasetMetadataAndSkippedSamplesSurviveTheShippedRoad() async throws {
        let dir = try TemporaryDirectory("e2e-wds-metadata")
        defer { dir.remove() }
        let src = dir.file("src")
        try FileManager.default.createDirectory(atPath: src, withIntermediateDirectories: true)
        try FileManager.default.copyItem(atPath: Fixtures.path("images/chelsea.jpg"), toPath: src + "/000.jpg")
        try Data(#"{"url": "https://example.org/cat.jpg", "width": 451}"#.utf8).write(to: URL(fileURLWithPath: src + "/000.json"))
        try Data("a cat".utf8).write(to: URL(fileURLWithPath: src + "/000.txt"))
        try FileManager.default.copyItem(atPath: Fixtures.path("images/dog.png"), toPath: src + "/001.png")
        try Data(#"{"url": "https://example.org/dog.png", "caption": "a dog"}"#.utf8).write(to: URL(fileURLWithPath: src + "/001.json"))
        try Data(#"{"url": "https://example.org/lost.jpg"}"#.utf8).write(to: URL(fileURLWithPath: src + "/002.json"))
        let tar = Process()
        tar.executableURL = URL(fileURLWithPath: "/usr/bin/tar")
        tar.currentDirectoryURL = URL(fileURLWithPath: src)
        tar.arguments = ["--format=ustar", "-cf", dir.file("data.tar"), "000.jpg", "000.json", "000.txt", "001.png", "001.json", "002.json"]
        try tar.run()
        tar.waitUntilExit()
        try #require(tar.terminationStatus == 0)

        let server = try EmbeddedPostgres.temporary()
        defer { try? server.stopBlocking() }
        try await server.start()
        let output = dir.file("out")
        let run = try VTPExecutable.run(["run", "clip-embed", "--model", Fixtures.path("vtp-tiny"), "--input", dir.file("data.tar"),
                                         "--output", output, "--workers", "1", "--shard-size", "2",
                                         "--database", server.connectionURL])
        // A skipped sample is a failure of the job, so the run reports it and exits 1.
        #expect(run.status == 1, "stdout: \(run.stdout)\nstderr: \(run.stderr)")
        #expect(run.stdout.contains("3 items, 2 written, 1 failed"), "\(run.stdout)")
        #expect(run.stdout.contains("data.tar/002: no image member"), "\(run.stdout)")

        let manifest = try #require(try JSONSerialization.jsonObject(
            with: Data(contentsOf: URL(fileURLWithPath: output + "/manifest.json"))) as? [String: Any])
        let counts = manifest["counts"] as? [String: Int]
        #expect(counts?["inputs"] == 3 && counts?["failed"] == 1 && counts?["written"] == 2)
        let failures = manifest["failures"] as? [[String: String]]
        #expect(failures?.map { $0["source_id"] } == ["data.tar/002"])
        #expect(failures?.first?["reason"]?.contains("no image member") == true)

        let lines = try String(contentsOfFile: output + "/metadata/metadata_00000.jsonl", encoding: .utf8)
            .split(separator: "\n").map { try #require(try JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any]) }
        #expect(lines.map { $0["url"] as? String } == ["https://example.org/cat.jpg", "https://example.org/dog.png"])
        #expect(lines.first?["width"] as? Int == 451)
        #expect(lines.map { $0["caption"] as? String } == ["a cat", "a dog"])

        let listed = try VTPExecutable.run(["failures", "1", "--database", server.connectionURL, "--json"])
        #expect(listed.status == 0, "\(listed.stderr)")
        let page = try #require(try JSONSerialization.jsonObject(with: Data(listed.stdout.utf8)) as? [String: Any])
        let rows = page["failures"] as? [[String: Any]]
        #expect(rows?.map { $0["source_id"] as? String } == ["data.tar/002"])
        #expect((rows?.first?["error"] as? String)?.contains("no image member") == true)
        try await server.stop()
    }
}
