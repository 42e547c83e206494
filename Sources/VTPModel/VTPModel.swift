import Foundation
import VTPTensor

/// A VTP checkpoint ready for CPU inference: vision encoder, pixel decoder and CLIP text tower.
///
/// One method per reference method of `VTPModel` (`vtp/models/vtp_hf/modeling_vtp.py`). All
/// methods are synchronous, CPU-bound and batched; call them from a thread you own, not from
/// the Swift concurrency cooperative pool. The model is immutable after loading, so several
/// threads may run it at once.
///
/// Images are float32 tensors (B, 3, H, W), already normalized, with H and W multiples of the
/// patch size. Text is token ids (T, context length) from the CLIP tokenizer.
///
/// `@unchecked Sendable`: every stored property is immutable after init and the weight buffers
/// are never written, so concurrent forwards only read shared memory.
public final class VTPModel: @unchecked Sendable {

    /// The checkpoint's configuration.
    public let config: VTPConfig
    /// The directory it was loaded from.
    public let directory: String

    let vision: VisionEncoder
    let decoder: PixelDecoder?
    let text: TextEncoder?
    let visualProjection: Linear?
    /// `logit_scale` as stored (the log of the temperature).
    public let logitScale: Float?
    /// `logit_bias`, if the checkpoint has one.
    public let logitBias: Float?
    private let parameterCounts: [String: Int]

    /// The threads one forward pass spreads its work over.
    public let pool: ComputePool
    /// The kernel path and compute precision of every matrix product.
    public let engine: MatmulEngine
    /// Bytes the matrix weights occupy in memory (bfloat16 on bf16 kernel paths: half of float32).
    public let weightBytes: Int
    /// The blocks' activation buffers, kept between passes (see ``BlockScratch``).
    let blockScratch = BlockScratchCache()

    /// Loads `config.json` and `model.safetensors` (or a sharded index) from `directory`.
    ///
    /// Every tensor is checked against the shape the configuration implies; a missing, extra or
    /// mis-shaped tensor throws a ``VTPModelError`` naming the file, tensor and expected shape.
    ///
    /// `threads` is how many cores one call uses (default: all). The engine parallelizes itself
    /// and keeps OpenBLAS single-threaded, which this initializer sets process-wide.
    ///
    /// `precision` is the compute precision of every matrix product (fp32 by default, which
    /// matches the reference's float32 outputs within the fixture tolerance). `isa` forces a kernel
    /// path; by default `VTP_ISA` or the best the CPU supports.
    public init(directory: String, threads: Int? = nil, precision: ComputePrecision = .fp32, isa: KernelISA? = nil) throws {
        self.directory = directory
        pool = ComputePool(threads: threads ?? ProcessInfo.processInfo.activeProcessorCount)
        BLAS.setThreadCount(1)
        engine = try MatmulEngine.resolve(precision: precision, isa: isa)
        let config = try VTPConfig.load(path: directory + "/config.json")
        self.config = config
        let store = try WeightStore(directory: directory, engine: engine)
        vision = try VisionEncoder(store, config: config)
        decoder = config.trainReconstruction ? try PixelDecoder(store, config: config) : nil
        if config.trainClip {
            text = try TextEncoder(store, config: config)
            let projIn = config.visionBottleneckAeOnly ? config.visionEmbedDim : vision.bottleneckWidth
            visualProjection = try Linear(store, "visual_proj", in: projIn, out: config.textEmbedDim, bias: false,
                                          engine: store.headEngine)
            let shape = config.nonscalarLogitScale ? [1] : []
            logitScale = try store.tensor("logit_scale", shape).toArray()[0]
            logitBias = config.initLogitBias != nil ? try store.tensor("logit_bias", shape).toArray()[0] : nil
        } else {
            text = nil
            visualProjection = nil
            logitScale = nil
            logitBias = nil
        }
        try store.checkAllUsed()
        weightBytes = store.gemmWeightBytes
        parameterCounts = [
            "vision": store.parameterCount(prefix: "trunk."),
            "decoder": store.parameterCount(prefix: "pixel_decoder."),
            "text": store.parameterCount(prefix: "text_transformer."),
        ]
    }

    // MARK: Reconstruction

    /// `get_reconstruction_latents`: bottleneck latents (B, C, H/p, W/p).
    public func reconstructionLatents(_ images: Tensor) throws -> Tensor {
        let (x, gh, gw) = try vision.runBlocks(images, pool: pool, scratch: blockScratch)
        let b = images.shape[0], n = gh * gw + 1, d = vision.dim
        let normed = vision.norm(x, pool: pool)
        let c = vision.bottleneckWidth
        let patches = Tensor(uninitialized: [b, gh * gw, c])
        defer { withExtendedLifetime((x, normed, patches)) {} }
        for bi in 0..<b {
            let src = normed.pointer + (bi * n + 1) * d
            if let bottleneck = vision.bottleneck {
                bottleneck(src, rows: gh * gw, into: patches.mutablePointer + bi * gh * gw * c, pool: pool)
            } else {
                (patches.mutablePointer + bi * gh * gw * c).update(from: src, count: gh * gw * c)
            }
        }
        let latents = Tensor(uninitialized: [b, c, gh, gw])
        transposeLast2(patches.pointer, latents.mutablePointer, batch: b, rows: gh * gw, cols: c)
        return latents
    }

    /// `get_latents_decoded_images`: images (B, 3, 16·H, 16·W) from latents (B, C, H, W).
    public func decode(latents: Tensor) throws -> Tensor {
        guard let decoder else {
            throw VTPModelError.unsupported("\(directory): reconstruction is not enabled (train_reconstruction is false)")
        }
        return try decoder.decode(latents, pool: pool, scratch: blockScratch)
    }

    // MARK: Features

    /// Class and patch tokens of one layer's output.
    public struct LayerFeatures: Sendable {
        /// (B, D)
        public let classToken: Tensor
        /// (B, H'·W', D)
        public let patchTokens: Tensor
    }

    /// `get_last_layer_feature`: normalized class and patch tokens of the last block, without
    /// the bottleneck unless `useBottleneck`.
    public func lastLayerFeatures(_ images: Tensor, useBottleneck: Bool = false) throws -> LayerFeatures {
        let (x, gh, gw) = try vision.runBlocks(images, pool: pool, scratch: blockScratch)
        return finalFeatures(x, batch: images.shape[0], tokens: gh * gw + 1, useBottleneck: useBottleneck)
    }

    private func finalFeatures(_ x: Tensor, batch b: Int, tokens n: Int, useBottleneck: Bool) -> LayerFeatures {
        var normed = vision.norm(x, pool: pool)
        var d = vision.dim
        if useBottleneck, let bottleneck = vision.bottleneck {
            normed = bottleneck(normed.reshaped([b * n, d]), pool: pool).reshaped([b, n, bottleneck.outFeatures])
            d = bottleneck.outFeatures
        }
        return split(normed, batch: b, tokens: n, dim: d)
    }

    /// ``finalFeatures(_:batch:tokens:useBottleneck:)``'s class tokens alone, (batch, d): the
    /// norm and bottleneck are row-local.
    private func classTokenFeatures(_ x: Tensor, batch b: Int, tokens n: Int, useBottleneck: Bool) -> Tensor {
        let d = vision.dim
        let rows = Tensor(uninitialized: [b, d])
        defer { withExtendedLifetime(x) {} }
        for bi in 0..<b { (rows.mutablePointer + bi * d).update(from: x.pointer + bi * n * d, count: d) }
        let normed = vision.norm(rows, pool: pool)
        if useBottleneck, let bottleneck = vision.bottleneck { return bottleneck(normed, pool: pool) }
        return normed
    }

    private func split(_ x: Tensor, batch b: Int, tokens n: Int, dim d: Int) -> LayerFeatures {
        let cls = Tensor(uninitialized: [b, d])
        let patches = Tensor(uninitialized: [b, n - 1, d])
        defer { withExtendedLifetime(x) {} }
        for bi in 0..<b {
            (cls.mutablePointer + bi * d).update(from: x.pointer + bi * n * d, count: d)
            (patches.mutablePointer + bi * (n - 1) * d).update(from: x.pointer + (bi * n + 1) * d, count: (n - 1) * d)
        }
        return LayerFeatures(classToken: cls, patchTokens: patches)
    }

    /// Which blocks `intermediateLayers` returns.
    public enum LayerSelection: Sendable, Equatable {
        /// The last `n` blocks.
        case last(Int)
        /// Blocks by index (0-based), returned in block order.
        case indices([Int])
    }

    /// `get_intermediate_layers_feature`: class and patch tokens after the selected blocks, in
    /// block order, each normalized by the final norm when `norm` is true. No bottleneck.
    public func intermediateLayers(_ images: Tensor, _ selection: LayerSelection = .last(1), norm: Bool = true) throws -> [LayerFeatures] {
        let depth = vision.blocks.count
        let wanted: Set<Int>
        switch selection {
        case let .last(n):
            guard n >= 1, n <= depth else { throw VTPModelError.input("cannot take the last \(n) of \(depth) blocks") }
            wanted = Set((depth - n)..<depth)
        case let .indices(list):
            guard !list.isEmpty, list.allSatisfy({ (0..<depth).contains($0) }) else {
                throw VTPModelError.input("layer indices \(list) must lie in 0..<\(depth)")
            }
            wanted = Set(list)
        }
        var taken: [Tensor] = []
        let (_, gh, gw) = try vision.runBlocks(images, pool: pool, scratch: blockScratch) { i, x in
            if wanted.contains(i) {
                let copy = Tensor(uninitialized: x.shape)
                defer { withExtendedLifetime(x) {} }
                copy.mutablePointer.update(from: x.pointer, count: x.count)
                taken.append(copy)
            }
        }
        let b = images.shape[0], n = gh * gw + 1
        return taken.map { x in split(norm ? vision.norm(x, pool: pool) : x, batch: b, tokens: n, dim: vision.dim) }
    }

    // MARK: CLIP

    /// `get_clip_image_feature`: projected image embeddings (B, text width), L2-normalized by default.
    public func clipImageFeatures(_ images: Tensor, normalize: Bool = true) throws -> Tensor {
        guard let visualProjection else {
            throw VTPModelError.unsupported("\(directory): CLIP is not enabled (train_clip is false)")
        }
        // The class token's features need only the class token's rows after the last attention.
        let classToken = config.visionClipFeat != "pooled"
        let (x, gh, gw) = try vision.runBlocks(images, pool: pool, scratch: blockScratch, classTokenOnly: classToken)
        let b = images.shape[0], n = gh * gw + 1
        let pooled: Tensor
        if classToken {
            pooled = classTokenFeatures(x, batch: b, tokens: n, useBottleneck: !config.visionBottleneckAeOnly)
        } else {
            let f = finalFeatures(x, batch: b, tokens: n, useBottleneck: !config.visionBottleneckAeOnly)
            let d = f.patchTokens.shape[2], hw = n - 1
            let mean = Tensor(zeros: [b, d])
            defer { withExtendedLifetime(f) {} }
            for bi in 0..<b {
                let dst = mean.mutablePointer + bi * d
                for t in 0..<hw {
                    let src = f.patchTokens.pointer + (bi * hw + t) * d
                    for i in 0..<d { dst[i] += src[i] }
                }
                for i in 0..<d { dst[i] /= Float(hw) }
            }
            pooled = mean
        }
        let out = visualProjection(pooled, pool: pool)
        if normalize { Kernels.l2NormalizeRows(out.mutablePointer, rows: b, n: out.shape[1]) }
        return out
    }

    /// `get_clip_text_feature`: projected text embeddings (T, width) for token ids (T, context length).
    public func clipTextFeatures(tokens: [Int32], count: Int, normalize: Bool = true) throws -> Tensor {
        guard let text else {
            throw VTPModelError.unsupported("\(directory): CLIP is not enabled (train_clip is false)")
        }
        let out = try text.features(tokens: tokens, count: count, pool: pool)
        if normalize { Kernels.l2NormalizeRows(out.mutablePointer, rows: count, n: out.shape[1]) }
        return out
    }

    /// `logit_scale.exp()`.
    public var logitScaleExp: Float? { logitScale.map { expf($0) } }

    /// `get_clip_logits`: (B, T) image-to-text logits, `exp(logit_scale) · img · txtᵀ + logit_bias`.
    public func clipLogits(images: Tensor, tokens: [Int32], count: Int) throws -> Tensor {
        let img = try clipImageFeatures(images)
        let txt = try clipTextFeatures(tokens: tokens, count: count)
        return logits(imageFeatures: img, textFeatures: txt)
    }

    /// Logits from already normalized features (so a caller can reuse embeddings).
    public func logits(imageFeatures img: Tensor, textFeatures txt: Tensor) -> Tensor {
        let b = img.shape[0], t = txt.shape[0], d = img.shape[1]
        let out = Tensor(uninitialized: [b, t])
        defer { withExtendedLifetime((img, txt)) {} }
        pool.gemm(m: b, n: t, k: d, a: img.pointer, b: txt.pointer, transposeB: true, c: out.mutablePointer,
                  alpha: logitScaleExp ?? 1)
        if let logitBias { for i in 0..<(b * t) { out.mutablePointer[i] += logitBias } }
        return out
    }

    // MARK: Introspection

    /// Parameter counts of the vision encoder (`trunk`), pixel decoder and text transformer,
    /// counted as the upstream quick start counts `model.trunk`, `model.pixel_decoder` and
    /// `model.text_transformer` (buffers such as RoPE periods included, as they are stored).
    public var parameterCount: (vision: Int, decoder: Int, text: Int) {
        (parameterCounts["vision"]!, parameterCounts["decoder"]!, parameterCounts["text"]!)
    }

    /// FLOPs (GEMM work) of one encode of `batch` images of the configured size.
    public func encodeFlops(batch: Int, height: Int? = nil, width: Int? = nil) -> Double {
        let p = config.visionPatchSize
        return vision.flops(batch: batch, gridH: (height ?? config.imageSize) / p, gridW: (width ?? config.imageSize) / p)
    }

    /// FLOPs of one decode of `batch` latents of the configured size.
    public func decodeFlops(batch: Int) -> Double {
        let g = config.imageSize / config.visionPatchSize
        return decoder?.flops(batch: batch, gridH: g, gridW: g) ?? 0
    }

    /// FLOPs of encoding `texts` texts.
    public func textFlops(texts: Int) -> Double { text?.flops(texts: texts) ?? 0 }
}
