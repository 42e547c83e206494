import Foundation
import Testing
import VTPVocabulary
import VTPModel
import VTPSafeTensors
import VTPTensor
import VTPTestSupport

/// Bad checkpoints and bad inputs fail with errors that name the file, tensor and expected shape.
@Suite struct CheckpointErrorTests {
    /// Copies the ae-only fixture into a temp dir, rewriting its tensors with `edit`.
    func brokenCopy(_ edit: (inout [String: (SafeTensorsDType, [Int], Data)]) -> Void,
                    config: ((inout [String: Any]) -> Void)? = nil) throws -> TemporaryDirectory {
        let dir = try TemporaryDirectory("broken")
        let src = try Fixtures.safetensors("vtp-tiny-ae-only/model.safetensors")
        var tensors: [String: (SafeTensorsDType, [Int], Data)] = [:]
        for name in src.names {
            let info = try src.info(name)
            tensors[name] = (info.dtype, info.shape, Data(try src.rawBytes(name)))
        }
        edit(&tensors)
        var writer = SafeTensorsWriter()
        for (name, t) in tensors.sorted(by: { $0.key < $1.key }) { writer.add(name, dtype: t.0, shape: t.1, bytes: t.2) }
        try writer.write(to: dir.file("model.safetensors"))
        var json = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: Fixtures.path("vtp-tiny-ae-only/config.json")))) as! [String: Any]
        config?(&json)
        try JSONSerialization.data(withJSONObject: json).write(to: URL(fileURLWithPath: dir.file("config.json")))
        return dir
    }

    @Test func missingTensorNamesFileTensorAndShape() throws {
        let dir = try brokenCopy { $0["trunk.norm.weight"] = nil }
        defer { dir.remove() }
        #expect(throws: VTPModelError.missingTensor(file: dir.file("model.safetensors"), tensor: "trunk.norm.weight", expectedShape: [64])) {
            try VTPModel(directory: dir.path)
        }
    }

    @Test func misshapedTensorIsRejected() throws {
        let dir = try brokenCopy { t in
            t["trunk.feature_bottleneck.weight"] = (.f32, [4, 64], Data(count: 4 * 64 * 4))
        }
        defer { dir.remove() }
        #expect(throws: VTPModelError.wrongShape(file: dir.file("model.safetensors"), tensor: "trunk.feature_bottleneck.weight",
                                                 found: [4, 64], expected: [8, 64])) {
            try VTPModel(directory: dir.path)
        }
    }

    @Test func extraTensorIsRejected() throws {
        let dir = try brokenCopy { $0["trunk.blocks.7.attn.qkv.weight"] = (.f32, [2], Data(count: 8)) }
        defer { dir.remove() }
        #expect(throws: VTPModelError.unexpectedTensors(file: dir.file("model.safetensors"), tensors: ["trunk.blocks.7.attn.qkv.weight"])) {
            try VTPModel(directory: dir.path)
        }
    }

    @Test func truncatedWeightsNameTheFile() throws {
        let dir = try TemporaryDirectory("trunc")
        defer { dir.remove() }
        try FileManager.default.copyItem(atPath: Fixtures.path("vtp-tiny-ae-only/config.json"), toPath: dir.file("config.json"))
        let data = try Data(contentsOf: URL(fileURLWithPath: Fixtures.path("vtp-tiny-ae-only/model.safetensors")))
        try data.prefix(data.count / 2).write(to: URL(fileURLWithPath: dir.file("model.safetensors")))
        do {
            _ = try VTPModel(directory: dir.path)
            Issue.record("loading a truncated file succeeded")
        } catch let error as VTPModelError {
            guard case let .checkpoint(path, problem) = error else { Issue.record("wrong error \(error)"); return }
            #expect(path == dir.file("model.safetensors"))
            #expect(problem.contains("truncated"))
        }
    }

    @Test func badHeaderIsRejected() throws {
        let dir = try TemporaryDirectory("header")
        defer { dir.remove() }
        try FileManager.default.copyItem(atPath: Fixtures.path("vtp-tiny-ae-only/config.json"), toPath: dir.file("config.json"))
        var bytes = Data([16, 0, 0, 0, 0, 0, 0, 0])
        bytes.append(Data("{\"a\": {\"dtype\":1".utf8))
        try bytes.write(to: URL(fileURLWithPath: dir.file("model.safetensors")))
        #expect(throws: VTPModelError.self) { try VTPModel(directory: dir.path) }
    }

    @Test func nonVTPAndUnrunnableConfigsAreRejected() throws {
        let other = try brokenCopy({ _ in }, config: { $0["model_type"] = "bert" })
        defer { other.remove() }
        #expect {
            try VTPModel(directory: other.path)
        } throws: { error in
            "\(error)".contains("model_type") && "\(error)".contains("'bert' is not a VTP checkpoint")
        }
        let cls = try brokenCopy({ _ in }, config: { $0["text_embed_cls"] = true; $0["train_clip"] = true })
        defer { cls.remove() }
        #expect {
            try VTPModel(directory: cls.path)
        } throws: { error in "\(error)".contains("text_embed_cls") }
        let ffn = try brokenCopy({ _ in }, config: { $0["vision_ffn_layer"] = "geglu" })
        defer { ffn.remove() }
        #expect { try VTPModel(directory: ffn.path) } throws: { "\($0)".contains("vision_ffn_layer") }
        let typed = try brokenCopy({ _ in }, config: { $0["vision_depth"] = "two" })
        defer { typed.remove() }
        #expect { try VTPModel(directory: typed.path) } throws: { "\($0)".contains("vision_depth") }
    }

    @Test func shardedCheckpointLoadsLikeTheSingleFile() throws {
        let dir = try TemporaryDirectory("sharded")
        defer { dir.remove() }
        let src = try Fixtures.safetensors("vtp-tiny/model.safetensors")
        try FileManager.default.copyItem(atPath: Fixtures.path("vtp-tiny/config.json"), toPath: dir.file("config.json"))
        var shards = [SafeTensorsWriter(), SafeTensorsWriter()]
        var map: [String: String] = [:]
        for (i, name) in src.names.enumerated() {
            let info = try src.info(name)
            shards[i % 2].add(name, dtype: info.dtype, shape: info.shape, bytes: Data(try src.rawBytes(name)))
            map[name] = "model-0000\(i % 2 + 1)-of-00002.safetensors"
        }
        try shards[0].write(to: dir.file("model-00001-of-00002.safetensors"))
        try shards[1].write(to: dir.file("model-00002-of-00002.safetensors"))
        try JSONSerialization.data(withJSONObject: ["metadata": [:], "weight_map": map])
            .write(to: URL(fileURLWithPath: dir.file("model.safetensors.index.json")))
        let sharded = try VTPModel(directory: dir.path)
        let single = try VTPModel(directory: Fixtures.path("vtp-tiny"))
        let pixels = try Fixtures.safetensors("vtp-tiny.expected.safetensors").tensor("pixel_values")
        let a = try sharded.reconstructionLatents(pixels).toArray(), b = try single.reconstructionLatents(pixels).toArray()
        #expect(a == b)
    }

    @Test func badInputsAreRejected() throws {
        let model = try VTPModel(directory: Fixtures.path("vtp-tiny"))
        #expect(throws: VTPModelError.self) { try model.reconstructionLatents(Tensor(zeros: [1, 3, 40, 32])) }
        #expect(throws: VTPModelError.self) { try model.reconstructionLatents(Tensor(zeros: [1, 4, 32, 32])) }
        #expect(throws: VTPModelError.self) { try model.decode(latents: Tensor(zeros: [1, 5, 2, 2])) }
        #expect(throws: VTPModelError.self) { try model.clipTextFeatures(tokens: [Int32](repeating: 0, count: 76), count: 1) }
        #expect(throws: VTPModelError.self) { try model.clipTextFeatures(tokens: [Int32](repeating: 49408, count: 77), count: 1) }
        #expect(throws: VTPModelError.self) { try model.intermediateLayers(Tensor(zeros: [1, 3, 32, 32]), .last(3)) }
        #expect(throws: VTPModelError.self) { try model.intermediateLayers(Tensor(zeros: [1, 3, 32, 32]), .indices([2])) }
    }

    @Test func anyMultipleOfThePatchSizeRuns() throws {
        let model = try VTPModel(directory: Fixtures.path("vtp-tiny"))
        let latents = try model.reconstructionLatents(Tensor(zeros: [2, 3, 48, 80]))
        #expect(latents.shape == [2, 16, 3, 5])
        #expect(try model.decode(latents: latents).shape == [2, 3, 48, 80])
        let picked = try model.intermediateLayers(Tensor(zeros: [1, 3, 32, 16]), .indices([0]), norm: false)
        #expect(picked.count == 1 && picked[0].patchTokens.shape == [1, 2, 96])
    }
}
