/// Floating-point element type of written tensors.
public enum OutputDType: String, Sendable, CaseIterable, Codable {
    case float32, float16, bfloat16

    /// `str(tensor.dtype)` in PyTorch, which LightningDiT stores in the `dtype` metadata field.
    public var torchName: String { "torch." + rawValue }

    /// Bytes per element.
    public var byteSize: Int { self == .float32 ? 4 : 2 }
}
