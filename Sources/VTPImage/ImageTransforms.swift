/// The preprocessing pipelines the VTP reference uses, each equal to its PIL reference.
public enum PreprocessTransform: Sendable, Equatable {
    /// ADM / LightningDiT `center_crop_arr(image, size)`.
    case admCenterCrop(size: Int)
    /// torchvision `Resize((size, size))` on a PIL image: `image.resize((size, size), BILINEAR)`.
    case resize(size: Int)

    /// Side length of the square output.
    public var size: Int {
        switch self {
        case let .admCenterCrop(size), let .resize(size): return size
        }
    }

    /// Applies the transform with the resampling pass order of `compatibility`.
    public func apply(to image: RGBImage, compatibility: PillowCompatibility = .pillow12) throws(ImageError) -> RGBImage {
        switch self {
        case let .admCenterCrop(size):
            return try image.admCenterCrop(size: size, compatibility: compatibility)
        case let .resize(size):
            return try image.resized(width: size, height: size, filter: .bilinear, compatibility: compatibility)
        }
    }
}

extension RGBImage {
    /// `PIL.Image.resize((width, height), filter)`.
    public func resized(
        width: Int, height: Int, filter: ResampleFilter, compatibility: PillowCompatibility = .pillow12
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
    public func admCenterCrop(size: Int, compatibility: PillowCompatibility = .pillow12) throws(ImageError) -> RGBImage {
        guard size > 0 else { throw .invalidArgument("center crop size \(size) must be positive") }
        var image = self
        while min(image.width, image.height) >= 2 * size {
            image = try image.resized(width: image.width / 2, height: image.height / 2, filter: .box,
                                      compatibility: compatibility)
        }
        let scale = Double(size) / Double(min(image.width, image.height))
        let width = Int((Double(image.width) * scale).rounded(.toNearestOrEven))
        let height = Int((Double(image.height) * scale).rounded(.toNearestOrEven))
        guard width >= size, height >= size else {
            throw .invalidArgument("center crop: \(width)x\(height) after scaling is smaller than \(size)")
        }
        let cropX = (width - size) / 2, cropY = (height - size) / 2
        return Resampler.resample(image, width: width, height: height, filter: .bicubic,
                                  xs: cropX..<(cropX + size), ys: cropY..<(cropY + size), compatibility: compatibility)
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
