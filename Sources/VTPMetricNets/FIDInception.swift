import VTPTensor

/// pytorch-fid's `InceptionV3` up to its 2048-wide final average pool (the features FID compares):
/// torchvision's Inception v3 stem with the FID blocks (`FIDInceptionA`/`C`/`E_1`/`E_2`, whose
/// average pools leave padding out and whose last block max-pools), input resized to 299 × 299
/// bilinearly (`align_corners=False`) and mapped from [0, 1] to [-1, 1], as `resize_input` and
/// `normalize_input` do by default.
///
/// Weights: pytorch-fid's `pt_inception-2015-12-05` state dict in safetensors, names as PyTorch has
/// them (`Conv2d_1a_3x3.conv.weight`, `Mixed_5b.branch1x1.bn.running_var`, ...); the `fc` layer is
/// not used. scripts/convert_inception_weights.py converts the released `.pth`.
public final class FIDInception: Sendable {
    /// Width of the features.
    public static let featureCount = 2048
    /// Input side after resizing.
    public static let inputSize = 299

    private let stem: [ConvUnit]
    private let blocksA: [InceptionA]
    private let blockB: InceptionB
    private let blocksC: [InceptionC]
    private let blockD: InceptionD
    private let blocksE: [InceptionE]

    /// Loads the network from a safetensors file.
    public init(weightsAt path: String) throws(MetricNetError) {
        let r = try WeightReader(path: path)
        stem = [
            try r.basicConv("Conv2d_1a_3x3", .conv(3, 32, 3, stride: 2)),
            try r.basicConv("Conv2d_2a_3x3", .conv(32, 32, 3)),
            try r.basicConv("Conv2d_2b_3x3", .conv(32, 64, 3, padding: 1)),
            try r.basicConv("Conv2d_3b_1x1", .conv(64, 80, 1)),
            try r.basicConv("Conv2d_4a_3x3", .conv(80, 192, 3)),
        ]
        blocksA = [try InceptionA(r, "Mixed_5b", 192, pool: 32), try InceptionA(r, "Mixed_5c", 256, pool: 64),
                   try InceptionA(r, "Mixed_5d", 288, pool: 64)]
        blockB = try InceptionB(r, "Mixed_6a", 288)
        blocksC = [try InceptionC(r, "Mixed_6b", 128), try InceptionC(r, "Mixed_6c", 160), try InceptionC(r, "Mixed_6d", 160),
                   try InceptionC(r, "Mixed_6e", 192)]
        blockD = try InceptionD(r, "Mixed_7a", 768)
        blocksE = [try InceptionE(r, "Mixed_7b", 1280, maxPool: false), try InceptionE(r, "Mixed_7c", 2048, maxPool: true)]
    }

    /// The 2048 pool features of one (3, H, W) image with values in [0, 1], into `features`.
    public func features(_ image: UnsafePointer<Float>, height: Int, width: Int, into features: UnsafeMutablePointer<Float>,
                         pool: ComputePool) {
        let s = Self.inputSize
        var x = FeatureMap(channels: 3, height: s, width: s)
        Convolution.resizeBilinear(image, channels: 3, height: height, width: width, outputHeight: s, outputWidth: s,
                                   output: x.mutablePointer, pool: pool)
        let p = x.mutablePointer
        for i in 0..<(3 * s * s) { p[i] = 2 * p[i] - 1 }
        x = stem[0](x, pool: pool)
        x = stem[1](x, pool: pool)
        x = stem[2](x, pool: pool)
        x = Pooling.max(x, kernel: 3, stride: 2, pool: pool)
        x = stem[3](x, pool: pool)
        x = stem[4](x, pool: pool)
        x = Pooling.max(x, kernel: 3, stride: 2, pool: pool)
        for block in blocksA { x = block(x, pool: pool) }
        x = blockB(x, pool: pool)
        for block in blocksC { x = block(x, pool: pool) }
        x = blockD(x, pool: pool)
        for block in blocksE { x = block(x, pool: pool) }
        precondition(x.channels == Self.featureCount, "the last block has 2048 channels")
        // AdaptiveAvgPool2d((1, 1)): the mean of each channel, summed in float as ATen does per channel.
        let plane = x.plane
        for c in 0..<x.channels {
            var sum: Float = 0
            let row = x.pointer + c * plane
            for i in 0..<plane { sum += row[i] }
            features[c] = sum / Float(plane)
        }
    }
}

/// `FIDInceptionA`: 1×1, 5×5, double 3×3 and an average-pool branch.
private struct InceptionA {
    let branch1x1, branch5x5_1, branch5x5_2, branch3x3dbl_1, branch3x3dbl_2, branch3x3dbl_3, branchPool: ConvUnit

    init(_ r: WeightReader, _ p: String, _ cin: Int, pool: Int) throws(MetricNetError) {
        branch1x1 = try r.basicConv(p + ".branch1x1", .conv(cin, 64, 1))
        branch5x5_1 = try r.basicConv(p + ".branch5x5_1", .conv(cin, 48, 1))
        branch5x5_2 = try r.basicConv(p + ".branch5x5_2", .conv(48, 64, 5, padding: 2))
        branch3x3dbl_1 = try r.basicConv(p + ".branch3x3dbl_1", .conv(cin, 64, 1))
        branch3x3dbl_2 = try r.basicConv(p + ".branch3x3dbl_2", .conv(64, 96, 3, padding: 1))
        branch3x3dbl_3 = try r.basicConv(p + ".branch3x3dbl_3", .conv(96, 96, 3, padding: 1))
        branchPool = try r.basicConv(p + ".branch_pool", .conv(cin, pool, 1))
    }

    func callAsFunction(_ x: FeatureMap, pool: ComputePool) -> FeatureMap {
        let out = FeatureMap(channels: 64 + 64 + 96 + branchPool.geometry.outChannels, height: x.height, width: x.width)
        branch1x1.apply(x, into: out, channelOffset: 0, pool: pool)
        branch5x5_2.apply(branch5x5_1(x, pool: pool), into: out, channelOffset: 64, pool: pool)
        branch3x3dbl_3.apply(branch3x3dbl_2(branch3x3dbl_1(x, pool: pool), pool: pool), into: out, channelOffset: 128, pool: pool)
        branchPool.apply(Pooling.average3x3(x, pool: pool), into: out, channelOffset: 224, pool: pool)
        return out
    }
}

/// torchvision's `InceptionB` (Mixed_6a): strided 3×3, strided double 3×3 and a strided max pool.
private struct InceptionB {
    let branch3x3, branch3x3dbl_1, branch3x3dbl_2, branch3x3dbl_3: ConvUnit

    init(_ r: WeightReader, _ p: String, _ cin: Int) throws(MetricNetError) {
        branch3x3 = try r.basicConv(p + ".branch3x3", .conv(cin, 384, 3, stride: 2))
        branch3x3dbl_1 = try r.basicConv(p + ".branch3x3dbl_1", .conv(cin, 64, 1))
        branch3x3dbl_2 = try r.basicConv(p + ".branch3x3dbl_2", .conv(64, 96, 3, padding: 1))
        branch3x3dbl_3 = try r.basicConv(p + ".branch3x3dbl_3", .conv(96, 96, 3, stride: 2))
    }

    func callAsFunction(_ x: FeatureMap, pool: ComputePool) -> FeatureMap {
        let (h, w) = branch3x3.outputSize(x)
        let out = FeatureMap(channels: 384 + 96 + x.channels, height: h, width: w)
        branch3x3.apply(x, into: out, channelOffset: 0, pool: pool)
        branch3x3dbl_3.apply(branch3x3dbl_2(branch3x3dbl_1(x, pool: pool), pool: pool), into: out, channelOffset: 384, pool: pool)
        Pooling.copy(Pooling.max(x, kernel: 3, stride: 2, pool: pool), into: out, channelOffset: 480)
        return out
    }
}

/// `FIDInceptionC`: 1×1, factorized 7×7, double factorized 7×7 and an average-pool branch.
private struct InceptionC {
    let branch1x1, b7_1, b7_2, b7_3, b7d_1, b7d_2, b7d_3, b7d_4, b7d_5, branchPool: ConvUnit

    init(_ r: WeightReader, _ p: String, _ c7: Int) throws(MetricNetError) {
        let cin = 768
        branch1x1 = try r.basicConv(p + ".branch1x1", .conv(cin, 192, 1))
        b7_1 = try r.basicConv(p + ".branch7x7_1", .conv(cin, c7, 1))
        b7_2 = try r.basicConv(p + ".branch7x7_2", .conv(c7, c7, (1, 7), padding: (0, 3)))
        b7_3 = try r.basicConv(p + ".branch7x7_3", .conv(c7, 192, (7, 1), padding: (3, 0)))
        b7d_1 = try r.basicConv(p + ".branch7x7dbl_1", .conv(cin, c7, 1))
        b7d_2 = try r.basicConv(p + ".branch7x7dbl_2", .conv(c7, c7, (7, 1), padding: (3, 0)))
        b7d_3 = try r.basicConv(p + ".branch7x7dbl_3", .conv(c7, c7, (1, 7), padding: (0, 3)))
        b7d_4 = try r.basicConv(p + ".branch7x7dbl_4", .conv(c7, c7, (7, 1), padding: (3, 0)))
        b7d_5 = try r.basicConv(p + ".branch7x7dbl_5", .conv(c7, 192, (1, 7), padding: (0, 3)))
        branchPool = try r.basicConv(p + ".branch_pool", .conv(cin, 192, 1))
    }

    func callAsFunction(_ x: FeatureMap, pool: ComputePool) -> FeatureMap {
        let out = FeatureMap(channels: 768, height: x.height, width: x.width)
        branch1x1.apply(x, into: out, channelOffset: 0, pool: pool)
        b7_3.apply(b7_2(b7_1(x, pool: pool), pool: pool), into: out, channelOffset: 192, pool: pool)
        b7d_5.apply(b7d_4(b7d_3(b7d_2(b7d_1(x, pool: pool), pool: pool), pool: pool), pool: pool), into: out, channelOffset: 384, pool: pool)
        branchPool.apply(Pooling.average3x3(x, pool: pool), into: out, channelOffset: 576, pool: pool)
        return out
    }
}

/// torchvision's `InceptionD` (Mixed_7a): strided 3×3, strided factorized 7×7 then 3×3, strided max pool.
private struct InceptionD {
    let b3_1, b3_2, b7_1, b7_2, b7_3, b7_4: ConvUnit

    init(_ r: WeightReader, _ p: String, _ cin: Int) throws(MetricNetError) {
        b3_1 = try r.basicConv(p + ".branch3x3_1", .conv(cin, 192, 1))
        b3_2 = try r.basicConv(p + ".branch3x3_2", .conv(192, 320, 3, stride: 2))
        b7_1 = try r.basicConv(p + ".branch7x7x3_1", .conv(cin, 192, 1))
        b7_2 = try r.basicConv(p + ".branch7x7x3_2", .conv(192, 192, (1, 7), padding: (0, 3)))
        b7_3 = try r.basicConv(p + ".branch7x7x3_3", .conv(192, 192, (7, 1), padding: (3, 0)))
        b7_4 = try r.basicConv(p + ".branch7x7x3_4", .conv(192, 192, 3, stride: 2))
    }

    func callAsFunction(_ x: FeatureMap, pool: ComputePool) -> FeatureMap {
        let first = b3_1(x, pool: pool)
        let (h, w) = b3_2.outputSize(first)
        let out = FeatureMap(channels: 320 + 192 + x.channels, height: h, width: w)
        b3_2.apply(first, into: out, channelOffset: 0, pool: pool)
        b7_4.apply(b7_3(b7_2(b7_1(x, pool: pool), pool: pool), pool: pool), into: out, channelOffset: 320, pool: pool)
        Pooling.copy(Pooling.max(x, kernel: 3, stride: 2, pool: pool), into: out, channelOffset: 512)
        return out
    }
}

/// `FIDInceptionE_1` (average pool) and `FIDInceptionE_2` (max pool): 1×1, split 3×3, double split 3×3, pool.
private struct InceptionE {
    let branch1x1, b3_1, b3_2a, b3_2b, b3d_1, b3d_2, b3d_3a, b3d_3b, branchPool: ConvUnit
    let maxPool: Bool

    init(_ r: WeightReader, _ p: String, _ cin: Int, maxPool: Bool) throws(MetricNetError) {
        self.maxPool = maxPool
        branch1x1 = try r.basicConv(p + ".branch1x1", .conv(cin, 320, 1))
        b3_1 = try r.basicConv(p + ".branch3x3_1", .conv(cin, 384, 1))
        b3_2a = try r.basicConv(p + ".branch3x3_2a", .conv(384, 384, (1, 3), padding: (0, 1)))
        b3_2b = try r.basicConv(p + ".branch3x3_2b", .conv(384, 384, (3, 1), padding: (1, 0)))
        b3d_1 = try r.basicConv(p + ".branch3x3dbl_1", .conv(cin, 448, 1))
        b3d_2 = try r.basicConv(p + ".branch3x3dbl_2", .conv(448, 384, 3, padding: 1))
        b3d_3a = try r.basicConv(p + ".branch3x3dbl_3a", .conv(384, 384, (1, 3), padding: (0, 1)))
        b3d_3b = try r.basicConv(p + ".branch3x3dbl_3b", .conv(384, 384, (3, 1), padding: (1, 0)))
        branchPool = try r.basicConv(p + ".branch_pool", .conv(cin, 192, 1))
    }

    func callAsFunction(_ x: FeatureMap, pool: ComputePool) -> FeatureMap {
        let out = FeatureMap(channels: 2048, height: x.height, width: x.width)
        branch1x1.apply(x, into: out, channelOffset: 0, pool: pool)
        let split = b3_1(x, pool: pool)
        b3_2a.apply(split, into: out, channelOffset: 320, pool: pool)
        b3_2b.apply(split, into: out, channelOffset: 704, pool: pool)
        let double = b3d_2(b3d_1(x, pool: pool), pool: pool)
        b3d_3a.apply(double, into: out, channelOffset: 1088, pool: pool)
        b3d_3b.apply(double, into: out, channelOffset: 1472, pool: pool)
        let pooled = maxPool ? Pooling.max(x, kernel: 3, stride: 1, padding: 1, pool: pool) : Pooling.average3x3(x, pool: pool)
        branchPool.apply(pooled, into: out, channelOffset: 1856, pool: pool)
        return out
    }
}
