/// The preprocessing pipelines the VTP reference uses, each equal to its PIL reference.
public enum PreprocessTransform: Sendable, Equatable {
    /// ADM / LightningDiT `center_crop_arr(image, size)`.
    case admCenterCrop(size: Int)
    /// torchvision `Resize((size, size))` on a PIL image: `image.resize((size, size), BILINEAR)`.
    case resize(size: Int)
    /// The evaluation transform of DINO-style linear probing (upstream's `make_eval_transform`):
    /// torchvision `Resize(size · 256 / 224, BICUBIC)` (short side, aspect kept) then
    /// `CenterCrop(size)`; 256 then 224 at `size` 224.
    case resizeCenterCrop(size: Int)

    /// Side length of the square output.
    public var size: Int {
        switch self {
        case let .admCenterCrop(size), let .resize(size), let .resizeCenterCrop(size): return size
        }
    }

    /// Applies the transform with the resampling pass order of `compatibility`.
    public func apply(to image: RGBImage, compatibility: PillowCompatibility = .pillow13) throws(ImageError) -> RGBImage {
        switch self {
        case let .admCenterCrop(size):
            return try image.admCenterCrop(size: size, compatibility: compatibility)
        case let .resize(size):
            return try image.resized(width: size, height: size, filter: .bilinear, compatibility: compatibility)
        case let .resizeCenterCrop(size):
            return try image.resizeCenterCrop(size: size, compatibility: compatibility)
        }
    }
}

extension PreprocessTransform {
    /// Peak bytes `apply(to:compatibility:)` allocates for a `width`x`height` input, the input
    /// itself not counted, from the sizes alone (nothing is allocated). Geometry the transform
    /// rejects costs nothing: it fails before allocating.
    public func workingBytes(width: Int, height: Int, compatibility: PillowCompatibility = .pillow13) -> Double {
        guard width > 0, height > 0 else { return 0 }
        switch self {
        case let .resize(size):
            guard size > 0, size != width || size != height else { return 0 }
            return Resampler.workingBytes(inWidth: width, inHeight: height, width: size, height: size, filter: .bilinear,
                                          columns: size, rows: size, compatibility: compatibility)
        case let .admCenterCrop(size):
            guard let geometry = try? CenterCropGeometry(width: width, height: height, size: size) else { return 0 }
            // Each step's input and output coexist; the step before is freed once replaced
            // (the decoded image is the caller's to count).
            var peak = 0.0
            var current = (width: width, height: height, bytes: 0.0)
            for halved in geometry.halvings {
                let step = Resampler.workingBytes(inWidth: current.width, inHeight: current.height, width: halved.width,
                                                  height: halved.height, filter: .box, columns: halved.width,
                                                  rows: halved.height, compatibility: compatibility)
                peak = max(peak, current.bytes + step)
                current = (halved.width, halved.height, Double(halved.width) * Double(halved.height) * 3)
            }
            let last = Resampler.workingBytes(inWidth: current.width, inHeight: current.height, width: geometry.scaledWidth,
                                              height: geometry.scaledHeight, filter: .bicubic, columns: size, rows: size,
                                              compatibility: compatibility)
            return max(peak, current.bytes + last)
        case let .resizeCenterCrop(size):
            guard let geometry = try? ResizeCenterCropGeometry(width: width, height: height, size: size), geometry.resizes else { return 0 }
            return Resampler.workingBytes(inWidth: width, inHeight: height, width: geometry.scaledWidth, height: geometry.scaledHeight,
                                          filter: .bicubic, columns: size, rows: size, compatibility: compatibility)
        }
    }

    /// Whether a `width`x`height` decode of a `fullWidth`x`fullHeight` image still holds every
    /// detail this transform keeps: the output is computed from at least as many source pixels
    /// along each axis as it has, so a reduced decode only averages pixels the transform would
    /// average anyway.
    func isCovered(width: Int, height: Int, fullWidth: Int, fullHeight: Int) -> Bool {
        switch self {
        case let .admCenterCrop(size): return min(width, height) >= size
        case let .resize(size): return width >= min(size, fullWidth) && height >= min(size, fullHeight)
        case let .resizeCenterCrop(size):
            let short = ResizeCenterCropGeometry.resizeSize(crop: size)
            return min(width, height) >= min(short, min(fullWidth, fullHeight))
        }
    }
}

/// torchvision's `Resize(R)` + `CenterCrop(size)` on a PIL image: the short side becomes R and the
/// long side `int(R · long / short)` (truncated, as `_compute_resized_output_size`), an image
/// already that size is not resampled, and the crop's offsets are `int(round((side − size) / 2))`
/// (Python's round, half to even).
struct ResizeCenterCropGeometry {
    var scaledWidth: Int
    var scaledHeight: Int
    var cropX: Int
    var cropY: Int
    /// Whether the resize changes the image (torchvision returns it untouched otherwise).
    var resizes: Bool

    /// The short side the crop is taken from: 256 for 224, as upstream's eval transform.
    static func resizeSize(crop: Int) -> Int { crop * 256 / 224 }

    init(width: Int, height: Int, size: Int) throws(ImageError) {
        guard size > 0, width > 0, height > 0 else { throw .invalidArgument("resize + center crop of \(width)x\(height) to \(size) needs positive sizes") }
        let short = Self.resizeSize(crop: size)
        let long = Int(min(Double(short) * Double(max(width, height)) / Double(min(width, height)), 1e18))
        (scaledWidth, scaledHeight) = width <= height ? (short, long) : (long, short)
        guard scaledWidth >= size, scaledHeight >= size else {
            throw .invalidArgument("resize + center crop: \(scaledWidth)x\(scaledHeight) after resizing is smaller than \(size)")
        }
        resizes = scaledWidth != width || scaledHeight != height
        cropX = Int((Double(scaledWidth - size) / 2).rounded(.toNearestOrEven))
        cropY = Int((Double(scaledHeight - size) / 2).rounded(.toNearestOrEven))
    }
}

/// The resizes ADM `center_crop_arr` performs on an image: BOX halvings while the short side is
/// at least twice the size, then one BICUBIC resize of which a centred square is kept.
struct CenterCropGeometry {
    /// Image size after each halving.
    var halvings: [(width: Int, height: Int)] = []
    /// Size of the BICUBIC resize (short side `size`).
    var scaledWidth: Int
    var scaledHeight: Int
    /// Top-left corner of the kept square in the scaled image.
    var cropX: Int
    var cropY: Int

    init(width: Int, height: Int, size: Int) throws(ImageError) {
        guard size > 0 else { throw .invalidArgument("center crop size \(size) must be positive") }
        var w = width, h = height
        while min(w, h) >= 2 * size {
            w /= 2
            h /= 2
            halvings.append((w, h))
        }
        let scale = Double(size) / Double(min(w, h))
        // Sizes past Int's range cannot be allocated anyway; the clamp only keeps the arithmetic defined.
        func scaled(_ side: Int) -> Int { Int(min((Double(side) * scale).rounded(.toNearestOrEven), 1e18)) }
        scaledWidth = scaled(w)
        scaledHeight = scaled(h)
        guard scaledWidth >= size, scaledHeight >= size else {
            throw .invalidArgument("center crop: \(scaledWidth)x\(scaledHeight) after scaling is smaller than \(size)")
        }
        cropX = (scaledWidth - size) / 2
        cropY = (scaledHeight - size) / 2
    }
}

extension RGBImage {
    /// `PIL.Image.resize((width, height), filter)`.
    public func resized(
        width: Int, height: Int, filter: ResampleFilter, compatibility: PillowCompatibility = .pillow13
    ) throws(ImageError) -> RGBImage {
        guard width > 0, height > 0 else {
            throw .invalidArgument("resize target \(width)x\(height) must be positive")
        }
        if width == self.width && height == self.height { return self }
        return Resampler.resample(self, width: width, height: height, filter: filter, xs: 0..<width, ys: 0..<height,
                                  compatibility: compatibility)
    }

    /// The `width`x`height` region whose top-left pixel is (`x`, `y`).
    public func cropped(x: Int, y: Int, width: Int, height: Int) throws(ImageError) -> RGBImage {
        guard x >= 0, y >= 0, width > 0, height > 0, x + width <= self.width, y + height <= self.height else {
            throw .invalidArgument("crop \(width)x\(height)+\(x)+\(y) outside a \(self.width)x\(self.height) image")
        }
        return Resampler.resample(self, width: self.width, height: self.height, filter: .box,
                                  xs: x..<(x + width), ys: y..<(y + height), compatibility: .pillow12)
    }

    /// ADM `center_crop_arr`: halve with BOX while the short side is at least `2 * size`,
    /// BICUBIC-resize so the short side is `size` (sizes rounded half to even, as Python's
    /// `round`), then take the centred `size`x`size` square (offsets floored). The resize
    /// and crop are fused: only the kept pixels are computed.
    public func admCenterCrop(size: Int, compatibility: PillowCompatibility = .pillow13) throws(ImageError) -> RGBImage {
        let geometry = try CenterCropGeometry(width: width, height: height, size: size)
        var image = self
        for halved in geometry.halvings {
            image = try image.resized(width: halved.width, height: halved.height, filter: .box, compatibility: compatibility)
        }
        return Resampler.resample(image, width: geometry.scaledWidth, height: geometry.scaledHeight, filter: .bicubic,
                                  xs: geometry.cropX..<(geometry.cropX + size), ys: geometry.cropY..<(geometry.cropY + size),
                                  compatibility: compatibility)
    }

    /// torchvision `Resize(size · 256 / 224, BICUBIC)` + `CenterCrop(size)` (see
    /// ``ResizeCenterCropGeometry``), the resize and crop fused: only the kept pixels are computed.
    public func resizeCenterCrop(size: Int, compatibility: PillowCompatibility = .pillow13) throws(ImageError) -> RGBImage {
        let geometry = try ResizeCenterCropGeometry(width: width, height: height, size: size)
        guard geometry.resizes else { return try cropped(x: geometry.cropX, y: geometry.cropY, width: size, height: size) }
        return Resampler.resample(self, width: geometry.scaledWidth, height: geometry.scaledHeight, filter: .bicubic,
                                  xs: geometry.cropX..<(geometry.cropX + size), ys: geometry.cropY..<(geometry.cropY + size),
                                  compatibility: compatibility)
    }

    /// The mirror image (torchvision `RandomHorizontalFlip` when it fires).
    public func horizontallyFlipped() -> RGBImage {
        RGBImage(width: width, height: height) { out in
            withUnsafePixels { source in
                for y in 0..<height {
                    let row = y * rowBytes
                    for x in 0..<width {
                        let from = row + (width - 1 - x) * 3, to = row + x * 3
                        out[to] = source[from]
                        out[to + 1] = source[from + 1]
                        out[to + 2] = source[from + 2]
                    }
                }
            }
        }
    }
}
