import Foundation
import Testing
import VTPVocabulary
import VTPImage
import VTPModel
import VTPSafeTensors
import VTPStorage
import VTPTensor
import VTPTestSupport

/// Issue 14, items 8 and 9, through `vtp run` as a user runs it (private PostgreSQL, coordinator,
/// worker processes): manifest labels given as class names, and `--pillow 12|13` carried by the
/// job to the workers that preprocess it.
@Suite(.serialized)
struct LabelsAndPillowTests {
    /// The portrait test image and its Pillow 12 / Pillow 13 goldens (made by
    /// Tests/VTPImageTests/Resources/generate.py with Pillow 13).
    static let transforms = Fixtures.root.deletingLastPathComponent().appendingPathComponent("VTPImageTests/Resources/transforms").path

    static func manifest(_ path: String) throws -> [String: Any] {
        try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: path + "/manifest.json"))) as? [String: Any])
    }

    /// Label of every written row by source id, read from the id sidecars, after checking each
    /// latents shard's `labels` tensor says the same.
    static func labels(_ output: String) throws -> [String: Int64] {
        var out: [String: Int64] = [:]
        for name in try FileManager.default.contentsOfDirectory(atPath: output) where name.hasPrefix("ids_") && name.hasSuffix(".jsonl") {
            let rows = try SourceIdSidecar.read(output + "/" + name)
            let shard = try SafeTensorsFile(path: output + "/" + name.replacingOccurrences(of: "ids_", with: "latents_")
                .replacingOccurrences(of: ".jsonl", with: ".safetensors"))
            #expect(try shard.int64s("labels") == rows.map { $0.label ?? -99 }, "\(name)")
            for row in rows { out[row.sourceId] = row.label }
        }
        return out
    }

    static func runLatents(_ input: String, _ output: String, _ extra: [String] = []) throws -> (status: Int32, stdout: String, stderr: String) {
        try VTPExecutable.run(["run", "latents", "--model", TinyModel.directory, "--input", input, "--output", output,
                               "--workers", "1", "--shard-size", "2", "--image-size", "32", "--batch-size", "2"] + extra)
    }

    @Test(.timeLimit(.minutes(4)))
    func classNameLabelsBecomeIntegersSortedOrByTheClassesFile() throws {
        let dir = try TemporaryDirectory("e2e-labels")
        defer { for o in ["sorted", "listed", "refused"] { RunCommandTests.stopLeftoverServer(dir.file(o)) }; dir.remove() }
        let images = dir.file("data/images")
        try FileManager.default.createDirectory(atPath: images, withIntermediateDirectories: true)
        for name in ["chelsea.jpg", "dog.png", "coffee.jpg", "rocket.jpg", "astronaut.png"] {
            try FileManager.default.copyItem(atPath: Fixtures.path("images/" + name), toPath: images + "/" + name)
        }
        let rows = [#"{"path": "images/chelsea.jpg", "label": "cat"}"#, #"{"path": "images/dog.png", "label": "dog"}"#,
                    #"{"path": "images/coffee.jpg", "label": "coffee"}"#, #"{"path": "images/rocket.jpg"}"#,
                    #"{"path": "images/astronaut.png", "label": "Person"}"#]
        let manifestPath = dir.file("data/items.jsonl")
        try Data((rows.joined(separator: "\n") + "\n").utf8).write(to: URL(fileURLWithPath: manifestPath))

        // No class list: the names sorted by code point, as ImageFolder sorts class folders.
        let sorted = try Self.runLatents(manifestPath, dir.file("sorted"))
        #expect(sorted.status == 0, "stdout: \(sorted.stdout)\nstderr: \(sorted.stderr)")
        #expect(try Self.labels(dir.file("sorted")) == ["images/astronaut.png": 0, "images/chelsea.jpg": 1, "images/coffee.jpg": 2,
                                                         "images/dog.png": 3, "images/rocket.jpg": -1])
        let sortedManifest = try Self.manifest(dir.file("sorted"))
        #expect(sortedManifest["classes"] as? [String] == ["Person", "cat", "coffee", "dog"])
        // The default Pillow release of a job is 13, and the manifest says so.
        #expect((sortedManifest["preprocessing"] as? [String: String])?["pillow"] == "13")

        // --classes FILE: each name is its line in the file, whatever the sort order.
        let classes = dir.file("classes.txt")
        try Data("dog\ncat\nbird\ncoffee\nPerson\n".utf8).write(to: URL(fileURLWithPath: classes))
        let listed = try Self.runLatents(manifestPath, dir.file("listed"), ["--classes", classes])
        #expect(listed.status == 0, "stdout: \(listed.stdout)\nstderr: \(listed.stderr)")
        #expect(try Self.labels(dir.file("listed")) == ["images/astronaut.png": 4, "images/chelsea.jpg": 1, "images/coffee.jpg": 3,
                                                         "images/dog.png": 0, "images/rocket.jpg": -1])
        #expect(try Self.manifest(dir.file("listed"))["classes"] as? [String] == ["dog", "cat", "bird", "coffee", "Person"])

        // A name the file does not list: the run stops before any work, naming the manifest line and the label.
        let short = dir.file("short.txt")
        try Data("dog\ncat\nPerson\n".utf8).write(to: URL(fileURLWithPath: short))
        let refused = try Self.runLatents(manifestPath, dir.file("refused"), ["--classes", short])
        #expect(refused.status != 0)
        #expect(refused.stderr.contains("\(manifestPath):3: label 'coffee' is not one of the 3 classes in \(short)"), "\(refused.stderr)")
        #expect(!FileManager.default.fileExists(atPath: dir.file("refused/manifest.json")))

        // --classes cannot rename an ImageFolder tree's labels (its folders are its classes).
        let tree = try RunCommandTests.makeInput(dir.file("tree"), copies: 1)
        #expect(!tree.isEmpty)
        let folder = try Self.runLatents(dir.file("tree"), dir.file("folder"), ["--classes", classes])
        #expect(folder.status != 0)
        #expect(folder.stderr.contains("--classes names the classes of a manifest's labels"), "\(folder.stderr)")
    }

    /// The model's pooled class token for preprocessed pixels (HWC uint8), as a features job with
    /// `--transform resize --normalize imagenet` computes it.
    static func features(of pixels: [UInt8], size: Int, model: VTPModel) throws -> [Float] {
        let image = try RGBImage(width: size, height: size, pixels: pixels)
        let tensor = Tensor(uninitialized: [1, 3, size, size])
        try image.writeCHW(into: UnsafeMutableBufferPointer(start: tensor.mutablePointer, count: tensor.count), normalization: .imagenet)
        return try model.lastLayerFeatures(tensor).classToken.toArray()
    }

    @Test(.timeLimit(.minutes(4)))
    func pillowChoiceTravelsWithTheJobToItsWorkersAndIsRecorded() throws {
        let dir = try TemporaryDirectory("e2e-pillow")
        defer { for o in ["p12", "p13"] { RunCommandTests.stopLeftoverServer(dir.file(o)) }; dir.remove() }
        try FileManager.default.createDirectory(atPath: dir.file("in"), withIntermediateDirectories: true)
        try FileManager.default.copyItem(atPath: Self.transforms + "/portrait.png", toPath: dir.file("in/portrait.png"))
        let size = 64
        var pooled: [String: [Float]] = [:]
        for (flag, output) in [("12", "p12"), ("13", "p13")] {
            let run = try VTPExecutable.run(["run", "features", "--model", TinyModel.directory, "--input", dir.file("in"),
                                             "--output", dir.file(output), "--workers", "1", "--image-size", String(size),
                                             "--transform", "resize", "--pillow", flag])
            #expect(run.status == 0, "stdout: \(run.stdout)\nstderr: \(run.stderr)")
            #expect((try Self.manifest(dir.file(output))["preprocessing"] as? [String: String])?["pillow"] == flag)
            pooled[flag] = try SafeTensorsFile(path: dir.file(output + "/features_rank00_shard000.safetensors")).tensor("pooled").toArray()
        }
        let model = try VTPModel(directory: TinyModel.directory)
        let goldens = try SafeTensorsFile(path: Self.transforms + "/expected.safetensors")
        let twelve = try Self.features(of: goldens.uint8s("pillow12/resize\(size)/portrait.png"), size: size, model: model)
        let thirteen = try Self.features(of: goldens.uint8s("pillow13/resize\(size)/portrait.png"), size: size, model: model)
        // Each job's worker saw its own release's pixels ...
        let job12 = ToleranceReport(ours: try #require(pooled["12"]), reference: twelve)
        let job13 = ToleranceReport(ours: try #require(pooled["13"]), reference: thirteen)
        #expect(job12.meanRelative < 1e-6, "--pillow 12 against Pillow 12 pixels: \(job12)")
        #expect(job13.meanRelative < 1e-6, "--pillow 13 against Pillow 13 pixels: \(job13)")
        // ... and the two releases really give this image different features.
        let between = ToleranceReport(ours: twelve, reference: thirteen)
        #expect(between.meanRelative > 1e-4, "Pillow 12 and 13 features barely differ: \(between)")
        #expect(ToleranceReport(ours: try #require(pooled["12"]), reference: thirteen).meanRelative > 1e-4)
    }

    /// `vtp image preprocess` takes the same spellings, and a bad one is refused by name.
    @Test(.timeLimit(.minutes(1)))
    func pillowOptionSpellings() throws {
        let dir = try TemporaryDirectory("e2e-pillow-cli")
        defer { dir.remove() }
        let goldens = try SafeTensorsFile(path: Self.transforms + "/expected.safetensors")
        for (flag, release) in [("12", "pillow12"), ("pillow12", "pillow12"), ("13", "pillow13"), ("pillow13", "pillow13"), (nil, "pillow13")] {
            let out = dir.file("\(flag ?? "default").png")
            let run = try VTPExecutable.run(["image", "preprocess", "--transform", "resize", "--size", "64",
                                             Self.transforms + "/portrait.png", "--output", out] + (flag.map { ["--pillow", $0] } ?? []))
            #expect(run.status == 0, "\(run.stderr)")
            let image = try ImageDecoder().decode(contentsOf: out)
            #expect(image.pixels == (try goldens.uint8s("\(release)/resize64/portrait.png")), "--pillow \(flag ?? "(default)")")
        }
        let bad = try VTPExecutable.run(["image", "preprocess", "--transform", "resize", "--size", "64",
                                         Self.transforms + "/portrait.png", "--output", dir.file("x.png"), "--pillow", "14"])
        #expect(bad.status != 0 && bad.stderr.contains("--pillow"), "\(bad.stderr)")
        let job = try VTPExecutable.run(["run", "latents", "--model", TinyModel.directory, "--input", Self.transforms,
                                         "--output", dir.file("never"), "--pillow", "11"])
        #expect(job.status != 0 && job.stderr.contains("--pillow") && job.stderr.contains("'12'"), "\(job.stderr)")
        #expect(!FileManager.default.fileExists(atPath: dir.file("never")))
    }
}
