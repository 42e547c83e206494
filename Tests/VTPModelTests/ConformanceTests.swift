import Foundation
import Testing
import VTPVocabulary
import VTPModel
import VTPSafeTensors
import VTPTensor
import VTPTestSupport

/// Every fixture checkpoint against the reference PyTorch outputs, within the fixture tolerance
/// (mean |Δ| / mean |ref| ≤ 1e-4 and max |Δ| / max |ref| ≤ 5e-3).
///
/// `variants/options-*` cover the configuration options the shared fixtures do not (mlp and
/// swiglu32/64/128 FFNs, every norm, LayerScale, QK-norm, no bottleneck, bottleneck for CLIP,
/// pooled CLIP feature, QuickGELU, text LayerScale, projection with bias and none, last/first
/// pooling, no causal mask, logit bias, non-square images, patch size 8). Their checkpoints were
/// written by `vtp model init --config`, and their expected outputs by the official reference
/// (MiniMax-AI/VTP `VTPModel.from_pretrained`, PyTorch 2.15 CPU, transformers 4.57.6, fp32),
/// with the same key names as the shared fixtures.
@Suite struct ConformanceTests {
    static let checkpoints = ["vtp-tiny", "vtp-tiny-fp16", "vtp-tiny-bf16", "vtp-tiny-ae-only",
                              "variants/options-a", "variants/options-b", "variants/options-c"]

    func check(_ name: String, _ ours: Tensor, _ expected: SafeTensorsFile, _ key: String,
               sourceLocation: SourceLocation = #_sourceLocation) throws {
        let ref = try expected.tensor(key)
        #expect(ours.shape == ref.shape, "\(key): shape \(ours.shape) vs \(ref.shape)", sourceLocation: sourceLocation)
        guard ours.shape == ref.shape else { return }
        let report = ToleranceReport(ours: ours.buffer, reference: ref.buffer)
        #expect(report.withinFixtureTolerance, "\(name) \(key): \(report)", sourceLocation: sourceLocation)
    }

    @Test(arguments: checkpoints)
    func reproducesReferenceOutputs(_ name: String) throws {
        let model = try VTPModel(directory: Fixtures.path(name))
        let expected = try Fixtures.safetensors("\(name).expected.safetensors")
        let pixels = try expected.tensor("pixel_values")

        let latents = try model.reconstructionLatents(pixels)
        try check(name, latents, expected, "reconstruction_latents")
        // Decode the reference latents so decoder error is measured on its own.
        try check(name, try model.decode(latents: try expected.tensor("reconstruction_latents")), expected, "decoded_images")

        let last = try model.lastLayerFeatures(pixels)
        try check(name, last.classToken, expected, "last_cls_token")
        try check(name, last.patchTokens, expected, "last_patch_tokens")

        let depthTaken = expected.names.filter { $0.hasPrefix("intermediate_") && $0.hasSuffix("_cls_token") }.count
        let normed = try model.intermediateLayers(pixels, .last(depthTaken), norm: true)
        let raw = try model.intermediateLayers(pixels, .last(depthTaken), norm: false)
        for i in 0..<depthTaken {
            try check(name, normed[i].patchTokens, expected, "intermediate_\(i)_patch_tokens")
            try check(name, normed[i].classToken, expected, "intermediate_\(i)_cls_token")
            try check(name, raw[i].patchTokens, expected, "intermediate_\(i)_patch_tokens_prenorm")
        }

        guard model.config.trainClip else {
            #expect(throws: VTPModelError.self) { try model.clipImageFeatures(pixels) }
            return
        }
        try check(name, try model.clipImageFeatures(pixels), expected, "clip_image_features")
        try check(name, try model.clipImageFeatures(pixels, normalize: false), expected, "clip_image_features_unnormalized")
        let tokenInfo = try expected.info("text_tokens")
        let tokens = try expected.int64s("text_tokens").map { Int32($0) }
        let t = tokenInfo.shape[0]
        try check(name, try model.clipTextFeatures(tokens: tokens, count: t), expected, "clip_text_features")
        try check(name, try model.clipTextFeatures(tokens: tokens, count: t, normalize: false), expected,
                  "clip_text_features_unnormalized")
        try check(name, try model.clipLogits(images: pixels, tokens: tokens, count: t), expected, "clip_logits_per_image")
        try check(name, Tensor(shape: [1], values: [model.logitScaleExp!]), expected, "logit_scale_exp")
    }
}
