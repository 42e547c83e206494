import VTPSafeTensors
import VTPVocabulary

extension OutputDType {
    /// The safetensors dtype tag.
    public var safeTensorsDType: SafeTensorsDType {
        switch self {
        case .float32: .f32
        case .float16: .f16
        case .bfloat16: .bf16
        }
    }
}
