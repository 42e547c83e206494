import Foundation
import Testing
import VTPVocabulary
import VTPJobs
import VTPStorage
import VTPTestSupport

@Suite struct ClipSearchTests {
    static let images = ["astronaut.png", "chelsea.jpg", "coffee.jpg", "dog.png", "rocket.jpg"]
    static let captions = ["an astronaut in a suit", "a tabby cat", "a cup of coffee", "a dog on grass", "a rocket launch"]

    /// A small captioned folder (float16 embeddings, exact index) and its output.
    func indexedFolder(_ label: String) async throws -> (input: InputTree, output: TemporaryDirectory) {
        let input = try InputTree(label)
        let output = try TemporaryDirectory(label + "-out")
        var rows: [[String: Any]] = []
        for (name, caption) in zip(Self.images, Self.captions) {
            try input.copy(name, to: "images/" + name)
            rows.append(["path": "images/" + name, "id": name, "caption": caption])
        }
        let manifest = try writeManifest(rows, in: input)
        _ = try await JobRun.run(input: manifest, output: output.path, model: TinyModel.directory,
                                 parameters: .clipEmbed(ClipEmbedParameters()), shardSize: 2)
        return (input, output)
    }

    @Test func imageQueryFindsItselfFirst() async throws {
        let (input, output) = try await indexedFolder("clip-search-image")
        defer { input.dir.remove(); output.remove() }
        let search = try ClipSearch(directory: output.path)
        #expect(search.count == 5 && search.modelDirectory == TinyModel.directory)
        for name in Self.images {
            let hits = try search.search(imageAt: input.dir.file("images/" + name), k: 3)
            #expect(hits.count == 3 && hits.map(\.rank) == [1, 2, 3])
            #expect(hits[0].sourceId == name && hits[0].path == input.dir.file("images/" + name))
            #expect(abs(hits[0].score - 1) < 2e-3, "\(name): self score \(hits[0].score)")
            #expect(hits[0].caption == Self.captions[Self.images.firstIndex(of: name)!])
            #expect(hits[0].score >= hits[1].score && hits[1].score >= hits[2].score)
        }
        #expect(throws: JobError.self) { try search.search(imageAt: input.dir.file("images/none.png"), k: 1) }
        // The index/ subdirectory opens the same output, and k beyond the collection is clamped.
        let viaIndex = try ClipSearch(directory: output.file("index"), modelDirectory: TinyModel.directory)
        #expect(try viaIndex.search(imageAt: input.dir.file("images/dog.png"), k: 50).count == 5)
    }

    /// With random weights captions carry no meaning, so the expected answer is computed here:
    /// the item whose stored image embedding has the largest inner product with the query text's embedding.
    @Test func textQueryReturnsTheClosestItem() async throws {
        let (input, output) = try await indexedFolder("clip-search-text")
        defer { input.dir.remove(); output.remove() }
        let search = try ClipSearch(directory: output.path)
        let out = ClipOutput(directory: output.path)
        var stored: [Float] = [], ids: [String] = []
        for shard in 0..<3 {
            stored += try out.npy("img_emb/img_emb_0000\(shard).npy").values
            ids += try out.jsonl("metadata/metadata_0000\(shard).jsonl", as: ClipMetadataRow.self).map(\.sourceId)
        }
        for caption in Self.captions {
            let query = try search.embed(text: caption)
            #expect(query.count == 64 && abs(query.reduce(0) { $0 + $1 * $1 } - 1) < 1e-4)
            let scores = (0..<5).map { dot(query[...], stored[($0 * 64)..<(($0 + 1) * 64)]) }
            let best = scores.indices.max { scores[$0] < scores[$1] }!
            let hits = try search.search(text: caption, k: 5)
            #expect(hits[0].sourceId == ids[best], "\(caption)")
            #expect(abs(hits[0].score - scores[best]) < 1e-4)
            #expect(Set(hits.map(\.sourceId)) == Set(Self.images))
        }
    }

    @Test func commandLinePrintsHits() async throws {
        let (input, output) = try await indexedFolder("clip-search-cli")
        defer { input.dir.remove(); output.remove() }
        let json = try VTPExecutable.run(["search", "--index", output.path, "--image", input.dir.file("images/rocket.jpg"), "-k", "2", "--json"])
        #expect(json.status == 0, "\(json.stderr)")
        let hits = try JSONDecoder().decode([ClipSearchHit].self, from: Data(json.stdout.utf8))
        #expect(hits.count == 2 && hits[0].sourceId == "rocket.jpg" && hits[0].caption == "a rocket launch")
        let text = try VTPExecutable.run(["search", "--index", output.path, "--text", "a dog", "--model", TinyModel.directory])
        #expect(text.status == 0, "\(text.stderr)")
        #expect(text.stdout.split(separator: "\n").count == 5 && text.stdout.hasPrefix("  1  "))
        let both = try VTPExecutable.run(["search", "--index", output.path, "--text", "x", "--image", "y"])
        #expect(both.status != 0 && both.stderr.contains("exactly one of --text or --image"))
        let missing = try VTPExecutable.run(["search", "--index", input.path, "--text", "x"])
        #expect(missing.status != 0 && missing.stderr.contains("manifest.json"))
    }

    @Test func nonClipOutputsAreRejected() async throws {
        let input = try InputTree("clip-search-features")
        let output = try TemporaryDirectory("clip-search-features-out")
        defer { input.dir.remove(); output.remove() }
        try input.copy("dog.png", to: "dog.png")
        _ = try await JobRun.run(input: input.path, output: output.path, model: TinyModel.directory,
                                 parameters: .features(FeaturesParameters()), shardSize: 4)
        #expect(throws: JobError.self) { try ClipSearch(directory: output.path) }
    }
}
