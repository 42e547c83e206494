import Foundation
import Testing
import VTPVocabulary
import VTPImage
import VTPTestSupport
#if canImport(Glibc)
import Glibc
#endif

/// The chaos run's poison inputs through the shipped `vtp` binary: each fails as an item with its
/// reason while every good image around it is written, the workers stay alive and the job
/// completes. (Before: the 2 x 50,000,000 PNG aborted the worker three times and failed the good
/// images queued behind it; a FIFO named `.jpg` hung its worker for good.)
@Suite(.serialized)
struct PoisonInputTests {
    /// The failed items `vtp run` lists, by source id.
    static func listedFailures(_ stdout: String) -> [String: String] {
        var out: [String: String] = [:]
        guard let start = stdout.range(of: "failed items:\n") else { return out }
        for line in stdout[start.upperBound...].split(separator: "\n") where line.hasPrefix("  ") {
            let text = line.dropFirst(2)
            guard let colon = text.range(of: ": ") else { continue }
            out[String(text[..<colon.lowerBound])] = String(text[colon.upperBound...])
        }
        return out
    }

    @Test(.timeLimit(.minutes(4)))
    func poisonInputsFailAloneAndEveryGoodImageIsWritten() throws {
        let dir = try TemporaryDirectory("e2e-poison")
        defer { RunCommandTests.stopLeftoverServer(dir.file("out")); dir.remove() }
        let expected = try RunCommandTests.makeInput(dir.file("in"), copies: 2)
        // Sorted among the good images of both classes, so shards mix good and poison items.
        try PoisonInputs.writePNG(width: 2, height: 50_000_000, to: dir.file("in/class00/d_tall.png"))
        try PoisonInputs.makeFIFO(at: dir.file("in/class00/f_fifo.jpg"))
        let socket = try PoisonInputs.makeSocket(at: dir.file("in/class01/s_sock.jpg"))
        defer { close(socket) }
        try FileManager.default.createSymbolicLink(atPath: dir.file("in/class01/d_zero.jpg"), withDestinationPath: "/dev/zero")

        let run = try VTPExecutable.run(RunCommandTests.runArguments(input: dir.file("in"), output: dir.file("out"), shardSize: 4))
        #expect(run.status == 1, "stdout: \(run.stdout)\nstderr: \(run.stderr)")
        #expect(run.stdout.contains("job 1 completed_with_failures: 30 items, 26 written, 4 failed"), "\(run.stdout)")
        let failures = Self.listedFailures(run.stdout)
        #expect(Set(failures.keys) == ["class00/d_tall.png", "class00/f_fifo.jpg", "class01/s_sock.jpg", "class01/d_zero.jpg"])
        let tall = failures["class00/d_tall.png"] ?? ""
        #expect(tall.contains("2x50000000 PNG") && tall.contains("more than the decode memory budget of 1073741824 bytes"), "\(tall)")
        #expect(tall.contains("worker.max_decode_bytes"))
        #expect(failures["class00/f_fifo.jpg"]?.contains("not a regular file (FIFO)") == true)
        #expect(failures["class01/s_sock.jpg"]?.contains("not a regular file (socket)") == true)
        #expect(failures["class01/d_zero.jpg"]?.contains("not a regular file (character device)") == true)
        // Every good image once, the workers never replaced.
        let written = try RunCommandTests.writtenIDs(dir.file("out"))
        #expect(written.count == 26 && Set(written) == expected)
        #expect(!run.stderr.contains("starting a new one"), "a worker died: \(run.stderr)")
        let manifest = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: dir.file("out/manifest.json"))))
        let manifestFailures = ((manifest as? [String: Any])?["failures"] as? [[String: Any]]) ?? []
        #expect(Set(manifestFailures.compactMap { $0["source_id"] as? String }) == Set(failures.keys))
        #expect(manifestFailures.allSatisfy { !(($0["reason"] as? String) ?? "").isEmpty })
    }

    /// An item that overruns `worker.item_timeout_seconds` (from the `--config` file the run hands
    /// its workers) fails with the stage it was in; the shard and the job go on.
    @Test(.timeLimit(.minutes(4)))
    func theConfiguredItemTimeLimitFailsOnlyTheSlowItem() throws {
        let dir = try TemporaryDirectory("e2e-slow")
        defer { RunCommandTests.stopLeftoverServer(dir.file("out")); dir.remove() }
        let expected = try RunCommandTests.makeInput(dir.file("in"), copies: 1)
        let row = (0..<30_000).map { UInt8(truncatingIfNeeded: $0 * 7) }
        try PoisonInputs.writePNG(width: 10_000, height: 10_000, row: row, to: dir.file("in/class00/d_huge.png"))
        try "[worker]\nitem_timeout_seconds = 0.5\ndecode_threads = 1\n".write(toFile: dir.file("vtp.toml"), atomically: true, encoding: .utf8)

        let run = try VTPExecutable.run(RunCommandTests.runArguments(input: dir.file("in"), output: dir.file("out"), shardSize: 4,
                                                                      extra: ["--config", dir.file("vtp.toml")]))
        #expect(run.status == 1, "stdout: \(run.stdout)\nstderr: \(run.stderr)")
        #expect(run.stdout.contains("job 1 completed_with_failures: 14 items, 13 written, 1 failed"), "\(run.stdout)")
        let reason = Self.listedFailures(run.stdout)["class00/d_huge.png"] ?? ""
        #expect(reason.contains("took longer than the item time limit of 0.5 s (worker.item_timeout_seconds)"), "\(reason)")
        #expect(Set(try RunCommandTests.writtenIDs(dir.file("out"))) == expected)
        #expect(!run.stderr.contains("starting a new one"), "a worker died: \(run.stderr)")
    }

    /// `vtp image preprocess` runs the same budgeted decode as a worker; its peak resident memory
    /// on the poison images, measured by the kernel (`wait4`'s `ru_maxrss`), stays far below 2 GB.
    @Test(.timeLimit(.minutes(2)))
    func preprocessingThePoisonImagesStaysWithinMemory() throws {
        let dir = try TemporaryDirectory("e2e-poison-rss")
        defer { dir.remove() }
        try PoisonInputs.writePNG(width: 2, height: 50_000_000, to: dir.file("tall.png"))
        let tall = try Self.preprocess(dir.file("tall.png"), output: dir.file("tall-out.png"), logs: dir.file("tall"))
        print("vtp image preprocess, 2 x 50,000,000 PNG: status \(tall.ending), max RSS \(tall.maxRSSKiB) KiB: \(tall.stderr)")
        #expect(tall.ending == .exited(1))
        #expect(tall.stderr.contains("2x50000000 PNG") && tall.stderr.contains("decode memory budget"), "\(tall.stderr)")
        #expect(tall.maxRSSKiB < 2 << 20, "max RSS \(tall.maxRSSKiB) KiB")
        #expect(!FileManager.default.fileExists(atPath: dir.file("tall-out.png")))

        // The 1 x 65500 JPEG (17 KB, used to take 1.2 GB): within the budget, so it is preprocessed.
        let strip = try RGBImage(width: 1, height: 65_500, pixels: (0..<65_500).flatMap { [UInt8($0 % 251), 90, 17] })
        try ImageEncoder.jpeg(strip).write(to: URL(fileURLWithPath: dir.file("strip.jpg")))
        let thin = try Self.preprocess(dir.file("strip.jpg"), output: dir.file("strip-out.png"), logs: dir.file("strip"))
        print("vtp image preprocess, 1 x 65500 JPEG: status \(thin.ending), max RSS \(thin.maxRSSKiB) KiB")
        #expect(thin.ending == .exited(0), "\(thin.stderr)")
        #expect(thin.maxRSSKiB < (1 << 20) + (200 << 10), "max RSS \(thin.maxRSSKiB) KiB: the 1 GiB budget plus the process itself")
    }

    static func preprocess(_ input: String, output: String, logs: String) throws -> (ending: SpawnedProcess.Ending, maxRSSKiB: Int, stderr: String) {
        let process = try SpawnedProcess.start(VTPExecutable.path, ["image", "preprocess", "--transform", "adm-center-crop", "--size", "256",
                                                                    input, "-o", output], stdout: logs + ".out", stderr: logs + ".err")
        var status: Int32 = 0
        var usage = rusage()
        guard wait4(process.pid, &status, 0, &usage) == process.pid else { throw PoisonInputError(message: "wait4 failed") }
        let ending: SpawnedProcess.Ending = status & 0x7f == 0 ? .exited((status >> 8) & 0xff) : .signalled(status & 0x7f)
        return (ending, Int(usage.ru_maxrss), (try? String(contentsOfFile: logs + ".err", encoding: .utf8)) ?? "")
    }
}
