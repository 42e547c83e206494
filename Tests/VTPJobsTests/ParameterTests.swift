import Foundation
import Testing
import VTPVocabulary
import VTPJobs
import VTPStorage

@Suite struct ParameterTests {
    @Test func defaultsFillMissingKeys() throws {
        #expect(try JobParameters.decode(jobType: .latents, json: "{}") == .latents(LatentsParameters()))
        let p = LatentsParameters()
        #expect(p.imageSize == 256 && p.normalize == .imagenet && p.dtype == .float32 && p.flip)
        #expect(try JobParameters.decode(jobType: .features, json: "{}") == .features(FeaturesParameters()))
    }

    @Test func jsonRoundTripsAndIsCanonical() throws {
        let latents = JobParameters.latents(LatentsParameters(imageSize: 512, normalize: .half, dtype: .bfloat16, batchSize: 8, flip: false))
        #expect(latents.json() == #"{"batch_size":8,"dtype":"bfloat16","flip":false,"image_size":512,"normalize":"half","precision":"fp32"}"#)
        var bf16 = LatentsParameters()
        bf16.precision = .bf16
        #expect(try JobParameters.decode(jobType: .latents, json: #"{"precision": "bf16"}"#) == .latents(bf16))
        #expect(JobParameters.latents(bf16).precision == .bf16)
        #expect(try JobParameters.decode(jobType: .latents, json: latents.json()) == latents)
        let features = JobParameters.features(FeaturesParameters(transform: .admCenterCrop, layers: .intermediate(4), norm: false,
                                                                 pool: .clsMean, keepPatchTokens: true, dtype: .float16))
        #expect(features.json().contains(#""layers":{"intermediate":4}"#))
        #expect(features.json().contains(#""pool":"cls+mean""#))
        #expect(try JobParameters.decode(jobType: .features, json: features.json()) == features)
    }

    @Test(arguments: [
        (JobType.latents, #"{"image_size": 0}"#, "image_size"),
        (.latents, #"{"image_size": "big"}"#, "image_size"),
        (.latents, #"{"batch_size": 0}"#, "batch_size"),
        (.latents, #"{"dtype": "float64"}"#, "dtype"),
        (.latents, #"{"normalize": "imagenet21k"}"#, "normalize"),
        (.latents, #"{"flip": "yes"}"#, "flip"),
        (.latents, #"{"imageSize": 256}"#, "imageSize"),
        (.features, #"{"dtype": "bfloat16"}"#, "dtype"),
        (.features, #"{"layers": "first"}"#, "layers"),
        (.features, #"{"layers": {"intermediate": 0}}"#, "layers"),
        (.features, #"{"pool": "max"}"#, "pool"),
        (.features, #"{"transform": "random-crop"}"#, "transform"),
        (.features, #"{"keep_patch_tokens": 1}"#, "keep_patch_tokens"),
        (.latents, #"{"precision": "fp16"}"#, "precision"),
        (.features, #"{"precision": 16}"#, "precision"),
    ])
    func invalidValuesNameTheField(type: JobType, json: String, field: String) {
        do {
            _ = try JobParameters.decode(jobType: type, json: json)
            Issue.record("\(json) was accepted")
        } catch {
            guard case let .invalidParameter(f, _) = error else { Issue.record("\(error)"); return }
            #expect(f == field, "\(error)")
            #expect(error.description.hasPrefix("parameter '\(field)': "))
        }
    }

    @Test func documentsThatAreNotObjectsAreRejected() {
        #expect(throws: JobError.badParameters(detail: "not valid JSON")) { try JobParameters.decode(jobType: .latents, json: "{") }
        #expect(throws: JobError.badParameters(detail: "expected a JSON object")) { try JobParameters.decode(jobType: .latents, json: "[1]") }
    }

    @Test func jobTypeNames() throws {
        #expect(try JobType(name: "latents") == .latents)
        #expect(try JobType(name: "clip-embed") == .clipEmbed)
        #expect(throws: JobError.unknownJobType("clip_embed")) { try JobType(name: "clip_embed") }
        #expect(JobError.unknownJobType("x").description == "unknown job type 'x' (known: latents, features, clip-embed, clip-score)")
    }
}
