import Foundation
import Testing
import VTPVocabulary
import VTPJobs
import VTPModel
import VTPTensor
import VTPTestSupport

/// CLIP job parameters and layout, and the errors a worker's executor raises for a shard it cannot
/// run (in a real run these fail the shard; VTPIntegrationTests runs whole jobs).
@Suite struct ClipParameterTests {
    /// One dog.png item for a shard task.
    static func task(_ parameters: JobParameters, output: String, model: String = TinyModel.directory) -> ShardTask {
        ShardTask(jobId: 1, shardIndex: 0, jobType: parameters.jobType, parametersJSON: parameters.json(), modelDirectory: model,
                  outputDirectory: output,
                  items: [JobItem(ordinal: 0, sourceId: "dog.png", location: .file(path: Fixtures.path("images/dog.png")))])
    }

    @Test func embedParametersRoundTripAndRejectBadValues() throws {
        let p = try JobParameters.decode(jobType: .clipEmbed, json: #"{"image_size": 224, "transform": "adm-center-crop", "dtype": "float32"}"#)
        guard case let .clipEmbed(e) = p else { Issue.record("wrong kind"); return }
        #expect(e.preprocessing == ClipPreprocessing(imageSize: 224, transform: .admCenterCrop, normalize: .imagenet, pillow: .pillow12))
        #expect(e.dtype == .float32 && e.text && e.index && e.batchSize == 32)
        #expect(try JobParameters.decode(jobType: .clipEmbed, json: p.json()) == p)
        #expect(try JobParameters.decode(jobType: .clipEmbed, json: "{}")
            == .clipEmbed(ClipEmbedParameters(preprocessing: ClipPreprocessing(pillow: .pillow12))))
        #expect(throws: JobError.invalidParameter(field: "dtype", detail: "embeddings are stored as .npy float16 or float32, not bfloat16")) {
            try JobParameters.decode(jobType: .clipEmbed, json: #"{"dtype": "bfloat16"}"#)
        }
        #expect(throws: JobError.self) { try JobParameters.decode(jobType: .clipEmbed, json: #"{"classes": "imagenet"}"#) }
        #expect(throws: JobError.self) { try JobParameters.decode(jobType: .clipEmbed, json: #"{"transform": "crop"}"#) }
        #expect(try JobType(name: "clip-embed") == .clipEmbed && JobType(name: "clip-score") == .clipScore)
    }

    /// `vtp search` preprocesses queries as the job did: the manifest records the release, and
    /// a manifest from before the key existed means Pillow 12.
    @Test func manifestPreprocessingRecordsPillowAndOldManifestsMeanTwelve() throws {
        let p = ClipPreprocessing(imageSize: 64, transform: .resize, normalize: .half, pillow: .pillow13)
        let entries = p.manifestEntries(modelImageSize: 256)
        #expect(entries == ["transform": "resize", "image_size": "64", "normalize": "half", "pillow": "13"])
        #expect(try ClipPreprocessing(manifest: entries) == p)
        var old = entries
        old["pillow"] = nil
        #expect(try ClipPreprocessing(manifest: old).pillow == .pillow12)
        old["pillow"] = "11"
        #expect(throws: JobError.self) { try ClipPreprocessing(manifest: old) }
    }

    @Test func indexEncodingDefaultsToPQAndAcceptsSQ8() throws {
        guard case let .clipEmbed(defaults) = try JobParameters.decode(jobType: .clipEmbed, json: "{}") else {
            Issue.record("not clip-embed"); return
        }
        #expect(defaults.indexEncoding == .pq)
        guard case let .clipEmbed(sq8) = try JobParameters.decode(jobType: .clipEmbed, json: #"{"index_encoding": "sq8"}"#) else {
            Issue.record("not clip-embed"); return
        }
        #expect(sq8.indexEncoding == .sq8)
        #expect { try JobParameters.decode(jobType: .clipEmbed, json: #"{"index_encoding": "hnsw"}"#) } throws: {
            "\($0)".contains("index_encoding")
        }
    }

    @Test func shardNamesHaveFiveDigits() throws {
        #expect(try ClipLayout.imageEmbeddings(shard: 7) == "img_emb/img_emb_00007.npy")
        #expect(try ClipLayout.textEmbeddings(shard: 99_999) == "text_emb/text_emb_99999.npy")
        #expect(try ClipLayout.metadata(shard: 12) == "metadata/metadata_00012.jsonl")
        #expect(throws: JobError.self) { try ClipLayout.imageEmbeddings(shard: 100_000) }
    }

    /// A checkpoint without the CLIP towers cannot run a CLIP shard; the executor says so before
    /// writing anything.
    @Test func aeOnlyCheckpointIsRejected() async throws {
        let output = try TemporaryDirectory("clip-embed-ae-out")
        defer { output.remove() }
        await #expect(throws: JobError.self) {
            try await ShardExecutor().run(Self.task(.clipEmbed(ClipEmbedParameters()), output: output.path,
                                                    model: Fixtures.path("vtp-tiny-ae-only")))
        }
        #expect(try FileManager.default.contentsOfDirectory(atPath: output.path).isEmpty)
    }

    @Test func imageNetVocabularyShipsTheStandardLists() throws {
        #expect(ImageNetZeroShot.classNames.count == 1000 && ImageNetZeroShot.templates.count == 80)
        #expect(ImageNetZeroShot.classNames.first == "tench" && ImageNetZeroShot.classNames.last == "toilet paper")
        #expect(ImageNetZeroShot.classNames[281] == "tabby cat" && ImageNetZeroShot.classNames[207] == "Golden Retriever")
        #expect(ImageNetZeroShot.templates.allSatisfy { $0.contains("{}") })
        #expect(ImageNetZeroShot.templates.first == "a bad photo of a {}." && ImageNetZeroShot.templates.last == "a tattoo of the {}.")
    }

    /// Bad documents are refused when the job is described (`vtp run` / `vtp submit` decode the
    /// parameters before enqueueing); files the parameters name are read by the worker's executor,
    /// which refuses the shard naming the field.
    @Test func scoreParameterErrorsNameTheField() async throws {
        #expect(throws: JobError.invalidParameter(field: "templates", detail: "templates only apply with classes (zero-shot classification)")) {
            try JobParameters.decode(jobType: .clipScore, json: #"{"templates": "openai"}"#)
        }
        #expect(throws: JobError.self) { try JobParameters.decode(jobType: .clipScore, json: #"{"top_k": 0}"#) }
        #expect(throws: JobError.self) { try JobParameters.decode(jobType: .clipScore, json: #"{"save_logits": true}"#) }
        let p = try JobParameters.decode(jobType: .clipScore, json: #"{"classes": "imagenet", "top_k": 3}"#)
        #expect(try JobParameters.decode(jobType: .clipScore, json: p.json()) == p)

        let input = try InputTree("clip-score-bad")
        let output = try TemporaryDirectory("clip-score-bad-out")
        defer { input.dir.remove(); output.remove() }
        try input.write(Array("no placeholder\n".utf8), to: "templates.txt")
        try input.write(Array("dog\n".utf8), to: "classes.txt")
        let missing = ClipScoreParameters(classes: input.dir.file("nope.txt"))
        await #expect(throws: JobError.self) {
            try await ShardExecutor().run(Self.task(.clipScore(missing), output: output.path))
        }
        let badTemplates = ClipScoreParameters(classes: input.dir.file("classes.txt"), templates: input.dir.file("templates.txt"))
        do {
            _ = try await ShardExecutor().run(Self.task(.clipScore(badTemplates), output: output.path))
            Issue.record("a template without {} was accepted")
        } catch let error as JobError {
            guard case let .invalidParameter(field, detail) = error else { Issue.record("\(error)"); return }
            #expect(field == "templates" && detail.contains("no {} placeholder"))
        }
    }
}

@Suite struct ModelCacheThreadsTests {
    @Test func cachedModelsUseTheConfiguredCores() throws {
        let one = try ModelCache(threads: 1).model(at: TinyModel.directory)
        #expect(one.pool.threads == 1)
        let all = try ModelCache().model(at: TinyModel.directory)
        #expect(all.pool.threads == ProcessInfo.processInfo.activeProcessorCount)
    }
}
