import Foundation
import Testing
import VTPVocabulary
import VTPQueue
import VTPSafeTensors
import VTPStorage
import VTPTensor
import VTPTestSupport
#if canImport(Glibc)
import Glibc
#endif

/// `vtp run` as a user runs it: the built binary, a private PostgreSQL, an in-process coordinator
/// and real worker processes on the tiny fixture model.
@Suite(.serialized)
struct RunCommandTests {
    static let images = ["astronaut.png", "astronaut_rgba.png", "camera_gray.png", "chelsea.jpg", "chelsea_gray.jpg",
                         "chelsea_tiny.jpg", "coffee.jpg", "coffee_cmyk.jpg", "coffee_palette.png", "dog.png", "hubble_large.jpg",
                         "rocket.jpg", "rocket_progressive.jpg"]

    /// An ImageFolder tree: `copies` classes each holding every fixture image; returns the source ids.
    static func makeInput(_ root: String, copies: Int) throws -> Set<String> {
        var ids: Set<String> = []
        for copy in 0..<copies {
            let folder = root + "/class\(String(format: "%02d", copy))"
            try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
            for name in images {
                let target = folder + "/" + name
                // Hard links keep big inputs cheap; fall back to copies across file systems.
                if link(Fixtures.path("images/" + name), target) != 0 {
                    try FileManager.default.copyItem(atPath: Fixtures.path("images/" + name), toPath: target)
                }
                ids.insert("class\(String(format: "%02d", copy))/" + name)
            }
        }
        return ids
    }

    /// Source ids of every row of every latent shard, duplicates kept; checks each shard file opens
    /// and holds as many latents as its sidecar has rows.
    static func writtenIDs(_ output: String) throws -> [String] {
        var ids: [String] = []
        for name in try FileManager.default.contentsOfDirectory(atPath: output).sorted()
        where name.hasPrefix("ids_") && name.hasSuffix(".jsonl") {
            let rows = try SourceIdSidecar.read(output + "/" + name)
            let tensorName = name.replacingOccurrences(of: "ids_", with: "latents_").replacingOccurrences(of: ".jsonl", with: ".safetensors")
            let file = try SafeTensorsFile(path: output + "/" + tensorName)
            let latents = try file.tensor("latents")
            #expect(latents.shape.first == rows.count, "\(tensorName): \(latents.shape) for \(rows.count) ids")
            ids += rows.map(\.sourceId)
        }
        return ids
    }

    /// Kill tests use the model's full 256-pixel input so the job lasts long enough to interrupt.
    static func runArguments(input: String, output: String, shardSize: Int, imageSize: Int = 64, extra: [String] = []) -> [String] {
        ["run", "latents", "--model", Fixtures.path("vtp-tiny"), "--input", input, "--output", output, "--workers", "2",
         "--shard-size", String(shardSize), "--image-size", String(imageSize), "--batch-size", "2"] + extra
    }

    /// The private server directory of the run that wrote `output` (under the server root when
    /// the test runs as root), if it has one.
    static func serverDirectory(_ output: String) -> URL? {
        try? PrivateServerLocation.existing(stateDirectory: URL(fileURLWithPath: output + "/.vtp-state"))
    }

    /// Stops a private server a failed test may have left behind, and removes its files when they
    /// live outside the output (as root), so tests leave nothing under the server root.
    static func stopLeftoverServer(_ output: String) {
        guard let directory = serverDirectory(output) else { return }
        if FileManager.default.fileExists(atPath: directory.appendingPathComponent("data/postmaster.pid").path),
           let server = try? EmbeddedPostgres(serverDirectory: directory) {
            // Adopt the running server so this instance may stop it.
            try? server.startBlocking()
            try? server.stopBlocking()
        }
        if !directory.path.hasPrefix(output + "/") { try? FileManager.default.removeItem(at: directory) }
    }

    /// Starts `vtp` in its own process group with output to `logs.out` / `logs.err`.
    static func spawn(_ arguments: [String], logs: String) throws -> SpawnedProcess {
        try SpawnedProcess.start(VTPExecutable.path, arguments, stdout: logs + ".out", stderr: logs + ".err")
    }

    static func summaries(_ output: String) -> [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: output)) ?? []).filter { $0.hasPrefix("summary_") }.sorted()
    }

    /// Processes whose parent is `parent` and whose command line contains `needle`.
    static func children(of parent: Int32, containing needle: String) -> [Int32] {
        let entries = (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []
        return entries.compactMap { Int32($0) }.filter { pid in
            guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
                  let close = stat.lastIndex(of: ")") else { return false }
            let fields = stat[stat.index(after: close)...].split(separator: " ")
            guard fields.count > 2, Int32(fields[1]) == parent,
                  let cmdline = FileManager.default.contents(atPath: "/proc/\(pid)/cmdline") else { return false }
            return String(decoding: cmdline.map { $0 == 0 ? 32 : $0 }, as: UTF8.self).contains(needle)
        }
    }

    static func waitUntil(_ seconds: Double, _ condition: () -> Bool) async throws -> Bool {
        let deadline = ContinuousClock.now + .milliseconds(Int64(seconds * 1000))
        while ContinuousClock.now < deadline {
            if condition() { return true }
            try await Task.sleep(for: .milliseconds(100))
        }
        return condition()
    }

    @Test(.timeLimit(.minutes(3)))
    func runCompletesListsTheCorruptFileAndFailsOnlyBecauseOfIt() throws {
        let dir = try TemporaryDirectory("e2e-run")
        defer { Self.stopLeftoverServer(dir.file("out")); Self.stopLeftoverServer(dir.file("out2")); dir.remove() }
        let expected = try Self.makeInput(dir.file("in"), copies: 1)

        // Clean input: success.
        let clean = try VTPExecutable.run(Self.runArguments(input: dir.file("in"), output: dir.file("out"), shardSize: 3))
        #expect(clean.status == 0, "stdout: \(clean.stdout)\nstderr: \(clean.stderr)")
        #expect(clean.stdout.contains("job 1 completed: 13 items, 13 written, 0 failed"))
        #expect(try Self.writtenIDs(dir.file("out")).sorted() == expected.sorted())
        #expect(FileManager.default.fileExists(atPath: dir.file("out/latents_stats.pt")))
        #expect(FileManager.default.fileExists(atPath: dir.file("out/manifest.json")))

        // One corrupt file: everything else still written, the failure listed, exit status 1.
        let truncated = try Data(contentsOf: URL(fileURLWithPath: Fixtures.path("images/coffee.jpg"))).prefix(3000)
        try truncated.write(to: URL(fileURLWithPath: dir.file("in/class00/zz_broken.jpg")))
        let broken = try VTPExecutable.run(Self.runArguments(input: dir.file("in"), output: dir.file("out2"), shardSize: 3))
        #expect(broken.status == 1, "stdout: \(broken.stdout)\nstderr: \(broken.stderr)")
        #expect(broken.stdout.contains("14 items, 13 written, 1 failed"))
        #expect(broken.stdout.contains("failed items:"))
        #expect(broken.stdout.contains("class00/zz_broken.jpg:"))
        #expect(broken.stdout.contains("output: " + dir.file("out2")))
        #expect(try Self.writtenIDs(dir.file("out2")).sorted() == expected.sorted())
        let manifest = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: dir.file("out2/manifest.json"))))
        let failures = (manifest as? [String: Any])?["failures"] as? [[String: Any]]
        #expect(failures?.map { $0["source_id"] as? String } == ["class00/zz_broken.jpg"])

        // The private PostgreSQL was stopped on exit.
        let server = try #require(Self.serverDirectory(dir.file("out2")))
        #expect(PrivateServerLocation.hasDataDirectory(server))
        #expect(!FileManager.default.fileExists(atPath: server.appendingPathComponent("data/postmaster.pid").path))
    }

    /// Latents of every written row, keyed by source id, as raw float32 bits.
    static func latentBits(_ output: String) throws -> [String: [UInt32]] {
        var out: [String: [UInt32]] = [:]
        for name in try FileManager.default.contentsOfDirectory(atPath: output) where name.hasPrefix("ids_") && name.hasSuffix(".jsonl") {
            let rows = try SourceIdSidecar.read(output + "/" + name)
            let file = try SafeTensorsFile(path: output + "/" + name.replacingOccurrences(of: "ids_", with: "latents_")
                .replacingOccurrences(of: ".jsonl", with: ".safetensors"))
            let latents = try file.tensor("latents")
            let per = latents.count / max(1, rows.count)
            for (i, row) in rows.enumerated() { out[row.sourceId] = Array(latents.buffer[(i * per)..<((i + 1) * per)]).map(\.bitPattern) }
        }
        return out
    }

    @Test(.timeLimit(.minutes(4)))
    func bf16LatentsJobRecordsItsPrecisionAndIsBitIdenticalWhateverTheBatches() throws {
        let dir = try TemporaryDirectory("e2e-bf16")
        defer { for o in ["a", "b", "fp32"] { Self.stopLeftoverServer(dir.file(o)) }; dir.remove() }
        let expected = try Self.makeInput(dir.file("in"), copies: 1)
        // Same job, formed into different shards and batches: 3-item shards of 2-image batches
        // against one 13-item shard of 5-image batches.
        let a = try VTPExecutable.run(Self.runArguments(input: dir.file("in"), output: dir.file("a"), shardSize: 3,
                                                        extra: ["--precision", "bf16"]))
        #expect(a.status == 0, "stdout: \(a.stdout)\nstderr: \(a.stderr)")
        var second = Self.runArguments(input: dir.file("in"), output: dir.file("b"), shardSize: 13, extra: ["--precision", "bf16"])
        second[second.firstIndex(of: "--batch-size")! + 1] = "5"
        let b = try VTPExecutable.run(second)
        #expect(b.status == 0, "stdout: \(b.stdout)\nstderr: \(b.stderr)")
        let fp32 = try VTPExecutable.run(Self.runArguments(input: dir.file("in"), output: dir.file("fp32"), shardSize: 13))
        #expect(fp32.status == 0, "stdout: \(fp32.stdout)\nstderr: \(fp32.stderr)")

        let manifest = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: dir.file("a/manifest.json")))) as? [String: Any]
        #expect((manifest?["model"] as? [String: Any])?["precision"] as? String == "bf16")
        let fp32Manifest = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: dir.file("fp32/manifest.json")))) as? [String: Any]
        #expect((fp32Manifest?["model"] as? [String: Any])?["precision"] as? String == "fp32")

        let bitsA = try Self.latentBits(dir.file("a")), bitsB = try Self.latentBits(dir.file("b")), bitsF = try Self.latentBits(dir.file("fp32"))
        #expect(Set(bitsA.keys) == expected && Set(bitsB.keys) == expected)
        for id in expected { #expect(bitsA[id] == bitsB[id], "\(id): bf16 latents differ between batchings") }
        // bf16 is close to fp32, and not the same computation.
        var diff = 0.0, magnitude = 0.0, identical = true
        for id in expected {
            let x = bitsA[id]!.map { Double(Float(bitPattern: $0)) }, y = bitsF[id]!.map { Double(Float(bitPattern: $0)) }
            for (u, v) in zip(x, y) { diff += abs(u - v); magnitude += abs(v) }
            identical = identical && bitsA[id] == bitsF[id]
        }
        #expect(!identical)
        #expect(diff / magnitude < 2e-2, "bf16 vs fp32 mean relative difference \(diff / magnitude)")
    }

    @Test(.timeLimit(.minutes(5)))
    func jobCompletesExactlyOnceAfterAWorkerIsKilled() async throws {
        let dir = try TemporaryDirectory("e2e-kill")
        defer { Self.stopLeftoverServer(dir.file("out")); dir.remove() }
        let expected = try Self.makeInput(dir.file("in"), copies: 20)  // 260 items in 130 shards
        let run = try Self.spawn(Self.runArguments(input: dir.file("in"), output: dir.file("out"), shardSize: 2,
                                                   imageSize: 256, extra: ["--lease-seconds", "3"]), logs: dir.file("run"))
        #expect(try await Self.waitUntil(120) { Self.summaries(dir.file("out")).count >= 6 })
        let workers = Self.children(of: run.pid, containing: " worker ")
        #expect(workers.count == 2)
        let victim = try #require(workers.first)
        kill(victim, SIGKILL)
        let doneAtKill = Self.summaries(dir.file("out")).count
        #expect(doneAtKill < 100, "the job was nearly over before the kill (\(doneAtKill) shards)")

        let ending = try await run.wait(seconds: 240)
        let stdout = (try? String(contentsOfFile: dir.file("run.out"), encoding: .utf8)) ?? ""
        let stderr = (try? String(contentsOfFile: dir.file("run.err"), encoding: .utf8)) ?? ""
        #expect(ending == .exited(0), "stdout: \(stdout)\nstderr: \(stderr)")
        #expect(stdout.contains("260 items, 260 written, 0 failed"))
        #expect(stderr.contains("starting a new one"), "the run should report the replaced worker")
        let written = try Self.writtenIDs(dir.file("out"))
        #expect(written.count == 260)
        #expect(Set(written) == expected)
    }

    @Test(.timeLimit(.minutes(6)))
    func rerunAfterKillingTheWholeRunResumesTheSameJob() async throws {
        let dir = try TemporaryDirectory("e2e-resume")
        defer { Self.stopLeftoverServer(dir.file("out")); dir.remove() }
        let expected = try Self.makeInput(dir.file("in"), copies: 20)
        let arguments = Self.runArguments(input: dir.file("in"), output: dir.file("out"), shardSize: 2, imageSize: 256,
                                          extra: ["--lease-seconds", "3"])
        let run = try Self.spawn(arguments, logs: dir.file("first"))
        #expect(try await Self.waitUntil(120) { Self.summaries(dir.file("out")).count >= 6 })

        // Shards whose summary exists a full second before the kill were recorded in the ledger.
        var before: [String: (inode: UInt64, modified: Date)] = [:]
        for name in Self.summaries(dir.file("out")) {
            let attributes = try FileManager.default.attributesOfItem(atPath: dir.file("out/" + name))
            before[name] = ((attributes[.systemFileNumber] as? NSNumber)?.uint64Value ?? 0, attributes[.modificationDate] as? Date ?? .distantPast)
        }
        try await Task.sleep(for: .seconds(1))
        let workers = Self.children(of: run.pid, containing: " worker ")
        #expect(workers.count == 2)
        kill(-run.pid, SIGKILL)  // the whole process group of `vtp run`
        #expect(try await run.wait(seconds: 10) == .signalled(SIGKILL))
        #expect(before.count < 120, "the job was nearly over before the kill")
        // The orphaned workers notice and stop on their own.
        #expect(try await Self.waitUntil(10) { workers.allSatisfy { kill($0, 0) != 0 } })

        let again = try VTPExecutable.run(arguments)
        #expect(again.status == 0, "stdout: \(again.stdout)\nstderr: \(again.stderr)")
        #expect(again.stderr.contains("resuming job 1:"))
        #expect(again.stdout.contains("job 1 completed: 260 items, 260 written, 0 failed"))
        for (name, old) in before {
            let attributes = try FileManager.default.attributesOfItem(atPath: dir.file("out/" + name))
            let inode = (attributes[.systemFileNumber] as? NSNumber)?.uint64Value ?? 0
            #expect(inode == old.inode && attributes[.modificationDate] as? Date == old.modified, "\(name) was redone")
        }
        let written = try Self.writtenIDs(dir.file("out"))
        #expect(written.count == 260)
        #expect(Set(written) == expected)
    }
}
