import Foundation
import Testing
import VTPCoordinator
import VTPJobs
import VTPQueue
import VTPTestSupport
import VTPVocabulary
#if canImport(Glibc)
import Glibc
#endif

/// Mistakes a user can make with the CLI, made with the built `vtp`: each must be refused with
/// words that name the option or path and what is wrong, and a non-zero exit status.
@Suite(.serialized)
struct UserErrorTests {
    static let tinyModel = Fixtures.path("vtp-tiny")

    static func runArguments(_ job: String = "latents", input: String, output: String, extra: [String] = []) -> [String] {
        ["run", job, "--model", tinyModel, "--input", input, "--output", output, "--workers", "1"]
            + (job == "latents" ? ["--image-size", "64"] : []) + extra
    }

    /// Runs a system tool, e.g. `mount`; its exit status.
    static func tool(_ path: String, _ arguments: [String]) throws -> Int32 {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: path)
        process.arguments = arguments
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        process.waitUntilExit()
        return process.terminationStatus
    }

    /// Nothing Foundation prints raw may reach the user.
    static func expectNoRawError(_ text: String, sourceLocation: SourceLocation = #_sourceLocation) {
        #expect(!text.contains("NSCocoaErrorDomain") && !text.contains("Code=") && !text.contains("(null)"), "\(text)",
                sourceLocation: sourceLocation)
    }

    @Test func outputThatIsAFileIsRefusedInWords() throws {
        let input = try InputTree("err-file-in")
        defer { input.dir.remove() }
        try input.copy("dog.png", to: "img/dog.png")
        let file = input.dir.file("not-a-directory")
        try Data("x".utf8).write(to: URL(fileURLWithPath: file))

        let result = try VTPExecutable.run(Self.runArguments(input: input.dir.file("img"), output: file))
        #expect(result.status != 0)
        #expect(result.stderr.contains("--output \(file): is a file, not a directory"), "\(result.stderr)")
        Self.expectNoRawError(result.stderr)
        // A path below the file fails for the same reason, naming the file in the way.
        let below = try VTPExecutable.run(Self.runArguments(input: input.dir.file("img"), output: file + "/out"))
        #expect(below.status != 0)
        #expect(below.stderr.contains("\(file) is a file, not a directory"), "\(below.stderr)")
        Self.expectNoRawError(below.stderr)
        // The file is left alone.
        #expect(try String(contentsOfFile: file, encoding: .utf8) == "x")
    }

    @Test func outputOnAReadOnlyVolumeIsRefusedInWords() throws {
        let input = try InputTree("err-rofs")
        defer { input.dir.remove() }
        try input.copy("dog.png", to: "img/dog.png")
        let mountPoint = input.dir.file("ro")
        try FileManager.default.createDirectory(atPath: mountPoint, withIntermediateDirectories: true)
        // Needs root (or CAP_SYS_ADMIN); elsewhere there is no read-only volume to try.
        guard FileManager.default.isExecutableFile(atPath: "/bin/mount"),
              try Self.tool("/bin/mount", ["-t", "tmpfs", "-o", "ro", "tmpfs", mountPoint]) == 0 else {
            print("skipped: cannot mount a read-only tmpfs here")
            return
        }
        defer { _ = try? Self.tool("/bin/umount", [mountPoint]) }

        for output in [mountPoint, mountPoint + "/out"] {
            let result = try VTPExecutable.run(Self.runArguments(input: input.dir.file("img"), output: output))
            #expect(result.status != 0)
            #expect(result.stderr.contains("--output \(output): the output directory is not writable (read-only file system)"),
                    "\(result.stderr)")
            Self.expectNoRawError(result.stderr)
        }
    }

    /// The one translation of Foundation file errors, on the errors Foundation really throws.
    @Test func foundationFileErrorsAreDescribedInWords() throws {
        let dir = try TemporaryDirectory("err-words")
        defer { dir.remove() }
        let file = dir.file("plain")
        try Data("x".utf8).write(to: URL(fileURLWithPath: file))
        do {
            try FileManager.default.createDirectory(atPath: file + "/sub/deeper", withIntermediateDirectories: true)
            Issue.record("creating a directory below a file succeeded")
        } catch {
            #expect(FileErrorText.isFileSystemError(error))
            #expect(FileErrorText.describe(error) == "\(file)/sub: cannot write: \(file) is a file, not a directory")
            #expect(FileErrorText.reason(error, at: file + "/sub") == "\(file) is a file, not a directory")
        }
        do {
            _ = try Data(contentsOf: URL(fileURLWithPath: dir.file("missing")))
            Issue.record("reading a missing file succeeded")
        } catch {
            #expect(FileErrorText.describe(error) == "\(dir.file("missing")): cannot read: no such file or directory")
        }
        #expect(FileErrorText.reason(errno: EROFS) == "read-only file system")
        #expect(!FileErrorText.isFileSystemError(JobError.badParameters(detail: "x")))
        #expect(FileErrorText.describe(JobError.badParameters(detail: "x")) == "job parameters: x")
    }

    @Test func negativeNumbersParseAndReachValidation() throws {
        let input = try InputTree("err-negative")
        defer { input.dir.remove() }
        try input.copy("dog.png", to: "img/dog.png")
        let out = input.dir.file("out")
        for (option, message) in [("--workers", "--workers must be at least 1, got -1"), ("--shard-size", "--shard-size must be at least 1, got -1"),
                                  ("--threads", "--threads must be at least 1, got -1")] {
            let result = try VTPExecutable.run(Self.runArguments(input: input.dir.file("img"), output: out, extra: [option, "-1"]))
            #expect(result.status != 0)
            #expect(result.stderr.contains(message), "\(option): \(result.stderr)")
            #expect(!result.stderr.contains("Missing value"), "\(result.stderr)")
        }
        #expect(!FileManager.default.fileExists(atPath: out), "a refused run created its output")
    }

    /// `--priority -1` is a priority, and `vtp db migrate|version --json` print JSON.
    @Test func negativePriorityAndDatabaseCommandsAsJSON() async throws {
        let server = try EmbeddedPostgres.temporary()
        defer { try? server.stopBlocking() }
        try await server.start()
        let db = ["--database", server.connectionURL]

        let migrated = try jsonObject(try vtpOK(["db", "migrate", "--json"] + db))
        let applied = try #require(migrated["applied"] as? [Int], "\(migrated)")
        #expect(!applied.isEmpty && applied == applied.sorted())
        #expect(migrated["version"] as? Int == Migration.latestVersion && migrated["binary_version"] as? Int == Migration.latestVersion)
        #expect((migrated["database"] as? String)?.isEmpty == false)
        let again = try jsonObject(try vtpOK(["db", "migrate", "--json"] + db))
        #expect(again["applied"] as? [Int] == [] && again["version"] as? Int == Migration.latestVersion)
        let version = try jsonObject(try vtpOK(["db", "version", "--json"] + db))
        #expect(version["version"] as? Int == Migration.latestVersion && version["binary_version"] as? Int == Migration.latestVersion)
        // Without --json the same commands still talk to people.
        #expect(try vtpOK(["db", "version"] + db).contains("matching this binary"))

        let input = try InputTree("err-priority")
        defer { input.dir.remove() }
        try input.copy("dog.png", to: "img/dog.png")
        let submitted = try jsonObject(try vtpOK(["submit", "latents", "--model", Self.tinyModel, "--input", input.dir.file("img"),
                                                  "--output", input.dir.file("out"), "--priority", "-1", "--json"] + db))
        let id = try #require((submitted["job_id"] as? NSNumber)?.int64Value)
        let jobs = try jsonObject(try vtpOK(["jobs", "--json"] + db))
        let job = try #require((jobs["jobs"] as? [[String: Any]])?.first { ($0["id"] as? NSNumber)?.int64Value == id })
        #expect(job["priority"] as? Int == -1)
        // An option that takes a number still refuses what is not one, in words.
        let words = try VTPExecutable.run(["failures", String(id), "--limit", "many"] + db)
        #expect(words.status != 0 && words.stderr.contains("many"))
    }

    @Test func imageBenchmarkRunsFromAnyDirectory() throws {
        let elsewhere = try TemporaryDirectory("err-bench")
        defer { elsewhere.remove() }
        let result = try VTPExecutable.run(["bench", "image", "--iterations", "2", "--size", "64", "--json"], directory: elsewhere.path)
        #expect(result.status == 0, "\(result.stderr)")
        let document = try jsonObject(result.stdout)
        #expect((document["ms_per_image"] as? Double).map { $0 > 0 } == true)
        // The built-in sample is the repository's file, byte for byte in size.
        let repository = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().deletingLastPathComponent()
        let sample = try FileManager.default.attributesOfItem(atPath: repository.appendingPathComponent("examples/bench/coffee_500x375.jpg").path)
        #expect((document["image_bytes"] as? NSNumber)?.intValue == (sample[.size] as? NSNumber)?.intValue)
        // A named file that does not exist is refused naming it.
        let missing = try VTPExecutable.run(["bench", "image", "--image", "nope.jpg"], directory: elsewhere.path)
        #expect(missing.status != 0 && missing.stderr.contains("--image nope.jpg: no such file or directory"), "\(missing.stderr)")
    }

    @Test func clipScoreWithNothingToScoreIsRefusedUpFront() throws {
        let input = try InputTree("err-clip-score")
        defer { input.dir.remove() }
        try input.copy("dog.png", to: "img/dog.png")
        try input.copy("rocket.jpg", to: "img/rocket.jpg")
        // An image folder can carry no captions: refused before anything starts.
        let out = input.dir.file("out")
        let folder = try VTPExecutable.run(Self.runArguments("clip-score", input: input.dir.file("img"), output: out))
        #expect(folder.status != 0)
        #expect(folder.stderr.contains("clip-score has nothing to score") && folder.stderr.contains("--classes"), "\(folder.stderr)")
        #expect(!FileManager.default.fileExists(atPath: out))

        // A manifest without captions is refused when it is listed, and one with a caption is not.
        let rows: [[String: Any]] = [["path": "img/dog.png"], ["path": "img/rocket.jpg", "caption": "   "]]
        let manifest = try writeManifest(rows, in: input)
        let request = JobRequest(parameters: .clipScore(ClipScoreParameters()), input: manifest, output: out, model: Self.tinyModel,
                                 shardSize: 4)
        #expect(throws: JobError.self) { _ = try request.listItems() }
        do { _ = try request.listItems() } catch {
            #expect("\(error)".contains("none of the 2 items of \(manifest) has a caption"), "\(error)")
        }
        let captioned = try writeManifest([["path": "img/dog.png", "caption": "a dog"]], in: input, name: "captioned.jsonl")
        let scorable = JobRequest(parameters: .clipScore(ClipScoreParameters()), input: captioned, output: out, model: Self.tinyModel,
                                  shardSize: 4)
        #expect(try scorable.listItems().items.count == 1)
        // With classes, captions are not needed.
        try input.write(Array("dog\nrocket\n".utf8), to: "classes.txt")
        let classified = JobRequest(parameters: .clipScore(ClipScoreParameters(classes: input.dir.file("classes.txt"))), input: manifest,
                                    output: out, model: Self.tinyModel, shardSize: 4)
        #expect(try classified.listItems().items.count == 2)
    }

    /// The ImageNet vocabulary is announced with what it costs, before any work.
    @Test func imagenetClassesAreAnnouncedBeforeEncoding() throws {
        let out = try TemporaryDirectory("err-imagenet")
        defer { out.remove() }
        let status = try ZeroShotPreparation.status(parameters: ClipScoreParameters(classes: "imagenet"),
                                                    modelDirectory: Self.tinyModel, outputDirectory: out.path)
        guard case let .encode(work) = status else { Issue.record("nothing to encode: \(status)"); return }
        #expect(work.classes == 1000 && work.templates == 80 && work.prompts == 80_000)
        #expect(work.classSource == "the 1000 ImageNet classes")
        #expect(work.cacheDirectory == out.file("zero_shot"))
        #expect(try ZeroShotPreparation.status(parameters: ClipScoreParameters(), modelDirectory: Self.tinyModel,
                                               outputDirectory: out.path) == .notNeeded)
        #expect(ZeroShotPreparation.sharedCacheRoot(environment: ["VTP_CACHE_DIR": "/c", "HOME": "/h"]) == "/c")
        #expect(ZeroShotPreparation.sharedCacheRoot(environment: ["HOME": "/h"]) == "/h/.cache/vtp")
        #expect(ZeroShotPreparation.sharedCacheRoot(environment: [:]) == nil)
    }

    /// `vtp run clip-score --classes FILE` encodes the class prompts first, saying so and how far
    /// it got; the workers then read the job's cache, a re-run has nothing left to encode, and a
    /// job into another output takes the embeddings from the shared cache.
    @Test(.timeLimit(.minutes(3)))
    func classPromptsAreEncodedWithProgressBeforeTheWorkersStart() throws {
        let input = try InputTree("err-zero-shot")
        defer {
            for name in ["out", "out2"] { RunCommandTests.stopLeftoverServer(input.dir.file(name)) }
            input.dir.remove()
        }
        try input.copy("dog.png", to: "img/a/dog.png")
        try input.copy("rocket.jpg", to: "img/b/rocket.jpg")
        try input.write(Array("dog\nrocket\ncat\n".utf8), to: "classes.txt")
        let cache = ["VTP_CACHE_DIR": input.dir.file("cache")]
        func arguments(_ output: String) -> [String] {
            Self.runArguments("clip-score", input: input.dir.file("img"), output: input.dir.file(output),
                              extra: ["--classes", input.dir.file("classes.txt"), "--top-k", "2"])
        }
        let first = try VTPExecutable.run(arguments("out"), environment: cache)
        #expect(first.status == 0, "\(first.stdout)\n\(first.stderr)")
        #expect(first.stderr.contains("clip-score: encoding 240 class prompts (\(input.dir.file("classes.txt")) x 80 templates) once for this job"),
                "\(first.stderr)")
        #expect(first.stderr.contains("class prompts: 3/3 classes encoded"), "\(first.stderr)")
        #expect(first.stderr.contains("kept for later jobs in \(input.dir.file("cache"))/zero-shot/"), "\(first.stderr)")
        #expect(FileManager.default.fileExists(atPath: input.dir.file("out/zero_shot/class_embeddings.npy")))
        let scores = try String(contentsOfFile: input.dir.file("out/scores/scores_00000.jsonl"), encoding: .utf8)
        #expect(scores.contains("\"top_names\""), "\(scores)")

        // With the job's cache in place there is nothing left to encode.
        let second = try VTPExecutable.run(arguments("out"), environment: cache)
        #expect(second.status == 0 && !second.stderr.contains("encoding"), "\(second.stderr)")
        // Another output: the shared cache supplies the same embeddings.
        let other = try VTPExecutable.run(arguments("out2"), environment: cache)
        #expect(other.status == 0 && !other.stderr.contains("encoding"), "\(other.stderr)")
        #expect(other.stderr.contains("clip-score: class embeddings taken from the cache in \(input.dir.file("cache"))/zero-shot/"),
                "\(other.stderr)")
        #expect(try Data(contentsOf: URL(fileURLWithPath: input.dir.file("out2/zero_shot/class_embeddings.npy")))
                == Data(contentsOf: URL(fileURLWithPath: input.dir.file("out/zero_shot/class_embeddings.npy"))))
        #expect(try String(contentsOfFile: input.dir.file("out2/scores/scores_00000.jsonl"), encoding: .utf8) == scores)
    }
}
