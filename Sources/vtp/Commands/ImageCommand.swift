import ArgumentParser
import Foundation
import VTPConcurrency
import VTPJobs
import VTPVocabulary
import VTPImage
import VTPSafeTensors

/// `--pillow 12|13`; `pillow12` and `pillow13` (the spelling `vtp image` first took) still work.
extension PillowOption: ExpressibleByArgument {
    public init?(argument: String) { self.init(name: argument) }
    public static var allValueStrings: [String] { allCases.map(\.rawValue) }
}

/// `vtp image ...`: decode and preprocess images exactly as the reference pipelines do.
struct ImageCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "image",
        abstract: "Decode and preprocess images as the VTP reference pipelines do.",
        subcommands: [Preprocess.self]
    )

    /// Transform names accepted on the command line.
    enum TransformName: String, ExpressibleByArgument, CaseIterable {
        case admCenterCrop = "adm-center-crop"
        case resize
        case resizeCenterCrop = "resize-center-crop"

        func transform(size: Int) -> PreprocessTransform {
            switch self {
            case .admCenterCrop: return .admCenterCrop(size: size)
            case .resize: return .resize(size: size)
            case .resizeCenterCrop: return .resizeCenterCrop(size: size)
            }
        }
    }

    /// `vtp image preprocess`: one image through one transform, written as an 8-bit RGB PNG.
    struct Preprocess: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Apply adm-center-crop, resize or resize-center-crop to an image and write the uint8 RGB result as PNG."
        )

        @Option(help: "adm-center-crop (ADM center_crop_arr) or resize (torchvision Resize((N, N)), bilinear).")
        var transform: TransformName

        @Option(parsing: .unconditional, help: "Output side length in pixels.")
        var size: Int

        @Option(help: "Reproduce the resampling of this Pillow release: 13 (what pip installs today) or 12 (Pillow <= 12).")
        var pillow: PillowOption = .newJobDefault

        @Option(parsing: .unconditional, help: "Refuse images with more pixels than this (decompression-bomb guard).")
        var maxPixels: Int = ImageDecoder.defaultMaxPixels

        @Option(parsing: .unconditional, help: "Refuse images whose decode and preprocessing would take more bytes than this (checked from the header, before allocating).")
        var maxDecodeBytes: Int = DecodeBudget.defaultMaxBytes

        @Argument(help: "Input JPEG, PNG or WebP (format detected from content).")
        var input: String

        @Option(name: .shortAndLong, help: "Output PNG path.")
        var output: String

        func validate() throws {
            guard size > 0 else { throw ValidationError("--size must be positive, got \(size)") }
            guard maxPixels > 0 else { throw ValidationError("--max-pixels must be positive, got \(maxPixels)") }
            guard maxDecodeBytes > 0 else { throw ValidationError("--max-decode-bytes must be positive, got \(maxDecodeBytes)") }
        }

        func run() throws {
            do {
                let steps = transform.transform(size: size)
                let budget = DecodeBudget(maxBytes: maxDecodeBytes, transform: steps, compatibility: pillow.compatibility)
                let image = try ImageDecoder(maxPixels: maxPixels, budget: budget).decode(contentsOf: input)
                let result = try steps.apply(to: image, compatibility: pillow.compatibility)
                try AtomicFile.write(try ImageEncoder.png(result), to: output)
                print("\(input): \(image.width)x\(image.height) -> \(output): \(result.width)x\(result.height)")
            } catch let error as ImageError {
                FileHandle.standardError.write(Data("vtp image preprocess: \(error.description)\n".utf8))
                throw ExitCode.failure
            }
        }
    }
}
