import Foundation
import Testing
import VTPVocabulary
import VTPJobs
import VTPStorage

@Suite struct ParameterTests {
    @Test func defaultsFillMissingKeys() throws {
        // A document without `pillow` predates the key and so means Pillow 12; new jobs get 13.
        #expect(try JobParameters.decode(jobType: .latents, json: "{}") == .latents(LatentsParameters(pillow: .pillow12)))
        let p = LatentsParameters()
        #expect(p.imageSize == 256 && p.normalize == .imagenet && p.dtype == .float32 && p.flip && p.pillow == .pillow13)
        #expect(try JobParameters.decode(jobType: .features, json: "{}") == .features(FeaturesParameters(pillow: .pillow12)))
        #expect(FeaturesParameters().pillow == .pillow13)
    }

    @Test func pillowIsReadInEverySpellingAndWrittenAsTheRelease() throws {
        for (json, expected) in [(#"{"pillow": "13"}"#, PillowOption.pillow13), (#"{"pillow": 12}"#, .pillow12),
                                 (#"{"pillow": "pillow13"}"#, .pillow13), (#"{"pillow": " 12 "}"#, .pillow12),
                                 (#"{"pillow": null}"#, .pillow12), ("{}", .pillow12)] {
            // A linear probe reads no image: the features job that made its input chose.
            for type in JobType.allCases where type != .linearProbe {
                #expect(try JobParameters.decode(jobType: type, json: json).pillow == expected, "\(type): \(json)")
            }
        }
        #expect(JobParameters.latents(LatentsParameters()).json().contains(#""pillow":"13""#))
        #expect(JobParameters.features(FeaturesParameters(pillow: .pillow12)).json().contains(#""pillow":"12""#))
        #expect(JobParameters.clipEmbed(ClipEmbedParameters()).json().contains(#""pillow":"13""#))
        #expect(JobParameters.clipScore(ClipScoreParameters()).json().contains(#""pillow":"13""#))
        for bad in [#"{"pillow": "14"}"#, #"{"pillow": 11}"#, #"{"pillow": true}"#, #"{"pillow": "pillow"}"#] {
            #expect { try JobParameters.decode(jobType: .latents, json: bad) } throws: {
                guard case let .invalidParameter(field, detail) = $0 as? JobError else { return false }
                return field == "pillow" && detail.contains("12 or 13")
            }
        }
        #expect(PillowOption(name: "PILLOW12") == .pillow12 && PillowOption(name: "12.0") == nil)
    }

    @Test func labelClassesRoundTripAndStayOutOfDocumentsWithoutThem() throws {
        for type in JobType.allCases {
            // A linear probe's two feature folders have no default.
            var parameters = try JobParameters.decode(jobType: type, json: type == .linearProbe ? #"{"train": "/t", "val": "/v"}"# : "{}")
            #expect(parameters.labelClasses.isEmpty && !parameters.json().contains("label_classes"))
            parameters.labelClasses = ["cat", "dog"]
            #expect(parameters.json().contains(#""label_classes":["cat","dog"]"#))
            let back = try JobParameters.decode(jobType: type, json: parameters.json())
            #expect(back == parameters && back.labelClasses == ["cat", "dog"])
        }
        #expect { try JobParameters.decode(jobType: .latents, json: #"{"label_classes": "cat"}"#) } throws: {
            guard case let .invalidParameter(field, _) = $0 as? JobError else { return false }
            return field == "label_classes"
        }
    }

    @Test func jsonRoundTripsAndIsCanonical() throws {
        let latents = JobParameters.latents(LatentsParameters(imageSize: 512, normalize: .half, dtype: .bfloat16, batchSize: 8, flip: false))
        #expect(latents.json() == #"{"batch_size":8,"dtype":"bfloat16","flip":false,"image_size":512,"normalize":"half","pillow":"13","precision":"fp32"}"#)
        var bf16 = LatentsParameters(pillow: .pillow12)
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
        #expect(JobError.unknownJobType("x").description == "unknown job type 'x' (known: latents, features, clip-embed, clip-score, reconstruction, linear-probe)")
        #expect(try JobType(name: "reconstruction") == .reconstruction)
    }

    @Test func reconstructionParametersDefaultToTheModelSizeAndRoundTrip() throws {
        let defaults = try JobParameters.decode(jobType: .reconstruction, json: "{}")
        #expect(defaults == .reconstruction(ReconstructionParameters(pillow: .pillow12)))
        guard case let .reconstruction(p) = defaults else { return }
        #expect(p.imageSize == nil && p.resolvedImageSize(modelImageSize: 512) == 512 && !p.saveImages && p.batchSize == 32)
        let chosen = JobParameters.reconstruction(ReconstructionParameters(imageSize: 128, batchSize: 5, saveImages: true))
        #expect(try JobParameters.decode(jobType: .reconstruction, json: chosen.json()) == chosen)
        #expect(chosen.json().contains(#""save_images":true"#) && !defaults.json().contains("image_size"))
        // Normalization is upstream's fixed ImageNet statistics, and nothing is stored but scores.
        for key in ["normalize", "dtype", "flip", "transform"] {
            #expect { try JobParameters.decode(jobType: .reconstruction, json: #"{"\#(key)": "x"}"#) } throws: {
                guard case let .invalidParameter(field, detail) = $0 as? JobError else { return false }
                return field == key && detail.contains("unknown parameter")
            }
        }
        #expect(throws: JobError.invalidParameter(field: "image_size", detail: "must lie in 16...4096, got 8")) {
            try JobParameters.decode(jobType: .reconstruction, json: #"{"image_size": 8}"#)
        }
    }

    /// Upstream's sweep: 2 block counts x 13 rates, keyed by the scaled rate printed with 5
    /// decimals, where 1e-5 and 2e-5 (5e-6 and 1e-5 at batch 128) print alike and the later wins.
    @Test func linearProbeSweepKeysHeadsAsUpstream() throws {
        let p = LinearProbeParameters(train: "/t", val: "/v")
        let heads = p.heads
        #expect(heads.count == 24 && heads.filter { $0.blocks == 4 }.count == 12)
        #expect(heads.prefix(12).map { String($0.key.split(separator: "_").last!) } ==
                ["00001", "00003", "00005", "00010", "00025", "00050", "00100", "00250", "00500", "01000", "02500", "05000"])
        #expect(heads[0].key == "classifier_1_blocks_avgpool_True_lr_0_00001" && heads[0].learningRate == 2e-5)
        #expect(heads[23].key == "classifier_4_blocks_avgpool_True_lr_0_05000" && heads[23].scaledLearningRate == 0.05)
        let decoded = try JobParameters.decode(jobType: .linearProbe, json: JobParameters.linearProbe(p).json())
        #expect(decoded == .linearProbe(p))
        #expect(throws: JobError.invalidParameter(field: "val", detail: "required: the validation features' folder (a features job's output)")) {
            try JobParameters.decode(jobType: .linearProbe, json: #"{"train": "/t"}"#)
        }
        for (json, field) in [(#"{"train": "/t", "val": "v"}"#, "val"), (#"{"train": "/t", "val": "/v", "blocks": [1, 1]}"#, "blocks"),
                              (#"{"train": "/t", "val": "/v", "learning_rates": [0]}"#, "learning_rates"),
                              (#"{"train": "/t", "val": "/v", "epochs": 0}"#, "epochs"), (#"{"train": "/t", "val": "/v", "pillow": "13"}"#, "pillow")] {
            #expect { try JobParameters.decode(jobType: .linearProbe, json: json) } throws: {
                guard case let .invalidParameter(f, _) = $0 as? JobError else { return false }
                return f == field
            }
        }
    }
}

