import VTPImage
import VTPIndex
import VTPModel
import VTPStorage
import VTPVocabulary

// The data-plane meaning of the job parameters (which live in the Foundation-only vocabulary so
// the coordinator can carry them without linking image, model or index code).

extension NormalizeOption {
    var normalization: Normalization {
        switch self {
        case .imagenet: .imagenet
        case .half: .half
        }
    }
}

extension PillowOption {
    /// The image layer's name for this release's pass order.
    public var compatibility: PillowCompatibility {
        switch self {
        case .pillow12: .pillow12
        case .pillow13: .pillow13
        }
    }
}

extension TransformOption {
    func transform(size: Int) -> PreprocessTransform {
        switch self {
        case .admCenterCrop: .admCenterCrop(size: size)
        case .resize: .resize(size: size)
        case .resizeCenterCrop: .resizeCenterCrop(size: size)
        }
    }
}

extension ClipPreprocessing {
    func plan(modelImageSize: Int, options: ShardExecutor.Options) -> PreprocessPlan {
        options.plan(transform: transform.transform(size: resolvedImageSize(modelImageSize: modelImageSize)),
                     normalization: normalize.normalization, alsoFlipped: false, pillow: pillow)
    }

    /// Checks the model has a CLIP head and the image size fits its patch grid.
    func check(model: VTPModel) throws(JobError) {
        guard model.config.trainClip, model.logitScale != nil else {
            throw .modelMismatch(model: model.directory, detail: "CLIP jobs need a checkpoint with train_clip true (a text tower and visual_proj)")
        }
        try ModelChecks.imageSize(resolvedImageSize(modelImageSize: model.config.imageSize), model: model)
    }
}

extension IndexEncodingOption {
    var vectorEncoding: VectorEncoding {
        switch self {
        case .pq: .productQuantizer(dimensionsPerSubquantizer: 2, bitsPerCode: 8)
        case .sq8: .scalar8
        }
    }
}

extension ClipEmbedParameters {
    var npyElement: NpyFile.Element { dtype == .float32 ? .float32 : .float16 }
}
