import ArgumentParser
import Foundation
import VTPConcurrency
import VTPJobs
import VTPVocabulary
import VTPModel
import VTPSafeTensors
import VTPTensor

/// `vtp model ...`: inspect, run and create VTP checkpoints.
extension ComputePrecision: ExpressibleByArgument {}

struct ModelCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "model",
        abstract: "Inspect, run and create VTP checkpoints.",
        subcommands: [Inspect.self, Forward.self, Init.self]
    )

    struct Inspect: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Print the architecture and parameter counts of a checkpoint directory.")

        @Argument(help: "Hugging Face VTP directory (config.json + model.safetensors).")
        var directory: String

        @Flag(help: "Print JSON instead of text.")
        var json = false

        func run() throws {
            let model = try VTPModel(directory: directory)
            let c = model.config
            let counts = model.parameterCount
            if json {
                let object: [String: Any] = [
                    "directory": directory,
                    "parameters": ["vision_encoder": counts.vision, "pixel_decoder": counts.decoder, "text_encoder": counts.text],
                    "config": try JSONSerialization.jsonObject(with: JSONEncoder().encode(c)),
                ]
                let data = try JSONSerialization.data(withJSONObject: object, options: [.prettyPrinted, .sortedKeys])
                print(String(decoding: data, as: UTF8.self))
                return
            }
            func m(_ n: Int) -> String { String(format: "%.1fM", Double(n) / 1e6) }
            print("Vision Encoder: \(m(counts.vision))")
            print("Pixel Decoder: \(m(counts.decoder))")
            print("Text Encoder: \(m(counts.text))")
            print("")
            print("vision  : ViT patch \(c.visionPatchSize), dim \(c.visionEmbedDim), depth \(c.visionDepth), heads \(c.visionNumHeads), ffn \(c.visionFfnLayer) ×\(c.visionMlpRatio), norm \(c.visionNormLayer), qk-norm \(c.visionUseQkNorm), layerscale \(c.visionInitValues.map { "\($0)" } ?? "off")")
            print("latents : \(c.latentChannels) channels at 1/\(c.visionPatchSize) resolution (\(c.imageSize / c.visionPatchSize)×\(c.imageSize / c.visionPatchSize) for \(c.imageSize)px), bottleneck for AE only: \(c.visionBottleneckAeOnly)")
            if c.trainReconstruction {
                print("decoder : dim \(c.decoderEmbedDim), depth \(c.decoderDepth), heads \(c.decoderNumHeads), ffn \(c.decoderFfnLayer), norm \(c.decoderNormLayer), pixel shuffle ×16")
            } else {
                print("decoder : none (train_reconstruction false)")
            }
            if c.trainClip {
                print("text    : dim \(c.textEmbedDim), depth \(c.textDepth), heads \(c.textNumHeads), context \(c.textContextLength), vocab \(c.textVocabSize), pool \(c.textPoolType), projection \(c.textProjType ?? "linear")\(c.textProjBias ? "+bias" : ""), \(c.textQuickGelu ? "QuickGELU" : "GELU")")
                print("clip    : image feature from \(c.visionClipFeat), logit scale exp \(model.logitScaleExp.map { String(format: "%.4f", $0) } ?? "-")\(model.logitBias.map { ", logit bias \($0)" } ?? "")")
            } else {
                print("text    : none (train_clip false)")
            }
        }
    }

    struct Forward: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Run every model method on inputs from a safetensors file and write every output.",
            discussion: """
            IN holds `pixel_values` (B,3,H,W) float32 and optionally `text_tokens` (T,L) int64. OUT gets the
            outputs under the key names of the reference fixtures: reconstruction_latents, decoded_images,
            last_cls_token, last_patch_tokens, intermediate_{i}_patch_tokens[_prenorm], intermediate_{i}_cls_token,
            clip_image_features[_unnormalized], clip_text_features[_unnormalized], clip_logits_per_image, logit_scale_exp.
            """)

        @Option(help: "Checkpoint directory.") var model: String
        @Option(help: "Input safetensors file.") var inputs: String
        @Option(help: "Output safetensors file.") var output: String
        @Option(parsing: .unconditional, help: "How many of the last blocks to return as intermediate layers (default: min(4, depth)).")
        var intermediateLayers: Int?
        @Option(help: "Compute precision: fp32 (default, matches the reference) or bf16 (as torch.autocast bfloat16).")
        var precision: ComputePrecision = .fp32

        func run() throws {
            let vtp = try VTPModel(directory: model, precision: precision)
            let input = try SafeTensorsFile(path: inputs)
            let pixels = try input.tensor("pixel_values")
            guard pixels.shape.count == 4 else {
                throw ValidationError("\(inputs): pixel_values must be (B,3,H,W), got \(pixels.shape)")
            }
            var out = SafeTensorsWriter()
            out.add("pixel_values", pixels)
            let latents = try vtp.reconstructionLatents(pixels)
            out.add("reconstruction_latents", latents)
            if vtp.config.trainReconstruction { out.add("decoded_images", try vtp.decode(latents: latents)) }
            let last = try vtp.lastLayerFeatures(pixels)
            out.add("last_cls_token", last.classToken)
            out.add("last_patch_tokens", last.patchTokens)
            let n = intermediateLayers ?? min(4, vtp.config.visionDepth)
            guard n >= 1 else { throw ValidationError("--intermediate-layers must be at least 1, got \(n)") }
            let normed = try vtp.intermediateLayers(pixels, .last(n), norm: true)
            let raw = try vtp.intermediateLayers(pixels, .last(n), norm: false)
            for i in 0..<n {
                out.add("intermediate_\(i)_patch_tokens", normed[i].patchTokens)
                out.add("intermediate_\(i)_cls_token", normed[i].classToken)
                out.add("intermediate_\(i)_patch_tokens_prenorm", raw[i].patchTokens)
            }
            if vtp.config.trainClip {
                let image = try vtp.clipImageFeatures(pixels)
                out.add("clip_image_features", image)
                out.add("clip_image_features_unnormalized", try vtp.clipImageFeatures(pixels, normalize: false))
                out.add("logit_scale_exp", Tensor(shape: [1], values: [vtp.logitScaleExp ?? 1]))
                if input.tensors["text_tokens"] != nil {
                    let info = try input.info("text_tokens")
                    guard info.shape.count == 2 else {
                        throw ValidationError("\(inputs): text_tokens must be (T,L), got \(info.shape)")
                    }
                    let ids = try input.int64s("text_tokens")
                    if let bad = ids.first(where: { $0 < 0 || $0 >= Int64(vtp.config.textVocabSize) }) {
                        throw ValidationError("\(inputs): text_tokens holds id \(bad), outside the vocabulary of \(vtp.config.textVocabSize)")
                    }
                    let tokens = ids.map { Int32($0) }
                    out.add("text_tokens", shape: info.shape, int64s: ids)
                    let text = try vtp.clipTextFeatures(tokens: tokens, count: info.shape[0])
                    out.add("clip_text_features", text)
                    out.add("clip_text_features_unnormalized",
                            try vtp.clipTextFeatures(tokens: tokens, count: info.shape[0], normalize: false))
                    out.add("clip_logits_per_image", vtp.logits(imageFeatures: image, textFeatures: text))
                }
            }
            try out.write(to: output)
        }
    }

    struct Init: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Write a random-weight checkpoint (config.json + model.safetensors) the reference can load.")

        @Option(help: "Architecture: tiny, S, B or L.") var preset: String?
        @Option(help: "Take the architecture from this config.json instead of a preset.") var config: String?
        @Option(help: "Output directory.") var output: String
        @Option(help: "Random seed.") var seed: UInt64 = 0
        @Option(help: "Storage dtype: float32, float16 or bfloat16.") var dtype: String = "float32"

        func validate() throws {
            guard (preset == nil) != (config == nil) else { throw ValidationError("give exactly one of --preset and --config") }
            if let preset, ModelPreset(rawValue: preset) == nil {
                throw ValidationError("--preset must be one of \(ModelPreset.allCases.map(\.rawValue).joined(separator: ", ")), got '\(preset)'")
            }
            guard ["float32", "float16", "bfloat16"].contains(dtype) else {
                throw ValidationError("--dtype must be float32, float16 or bfloat16, got '\(dtype)'")
            }
        }

        func run() throws {
            let storage: SafeTensorsDType = switch dtype { case "float16": .f16; case "bfloat16": .bf16; default: .f32 }
            let architecture = try config.map { try VTPConfig.load(path: $0) } ?? ModelPreset(rawValue: preset!)!.config
            try RandomCheckpoint.write(config: architecture, to: output, seed: seed, dtype: storage)
            let source = preset.map { "preset \($0)" } ?? "config \(config!)"
            print("wrote \(output)/config.json and \(output)/model.safetensors (\(source), seed \(seed), \(dtype))")
        }
    }
}
