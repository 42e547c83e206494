import FuzzSupport
import VTPSafeTensors
import VTPTensor

/// `SafeTensorsFile(path:)` (what `WeightStore` and `vtp model` open) on arbitrary file contents, then
/// every accessor the model loader uses on every tensor the header validation let through. The
/// mapping is outside ASan's view, so the harness checks the validated ranges itself.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzSafeTensors(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    let path = ScratchFile.write(fuzzInput(data, size), name: "input.safetensors")
    let file: SafeTensorsFile
    do { file = try SafeTensorsFile(path: path) } catch {
        require("\(error)".hasPrefix(path + ": "), "error does not name the file: \(error)")
        return 0
    }
    require(file.names.count == file.tensors.count, "\(file.names.count) names for \(file.tensors.count) tensors")
    for name in file.names {
        guard let info = file.tensors[name] else {
            require(false, "name '\(name)' has no tensor")
            return 0
        }
        require(info.offset >= 8 && info.byteCount >= 0 && info.offset <= size - info.byteCount,
                "tensor '\(name)' at \(info.offset)+\(info.byteCount) lies outside the \(size)-byte file")
        require(info.elementCount * info.dtype.byteSize == info.byteCount, "tensor '\(name)' byte count disagrees with its shape")
        do {
            let raw = try file.rawBytes(name)
            require(raw.count == info.byteCount, "rawBytes of '\(name)' has \(raw.count) bytes, expected \(info.byteCount)")
            if info.dtype.isFloatingPoint {
                let tensor = try file.tensor(name, expectedShape: info.shape)
                require(tensor.count == info.elementCount, "tensor '\(name)' has \(tensor.count) elements, expected \(info.elementCount)")
                // Touch every element: a wrong borrowed range would fault here.
                _ = tensor.buffer.reduce(0, +)
            } else if info.dtype == .u8 {
                let values = try file.uint8s(name)
                require(values.count == info.elementCount, "uint8s of '\(name)' has the wrong length")
            } else if info.dtype == .u64 {
                // U64 does not fit Int64; int64s refuses it with an error naming the tensor.
                require((try? file.int64s(name)) == nil, "int64s read U64 tensor '\(name)'")
            } else {
                let values = try file.int64s(name)
                require(values.count == info.elementCount, "int64s of '\(name)' has the wrong length")
            }
        } catch {
            require(false, "validated tensor '\(name)' cannot be read: \(error)")
        }
        file.releasePages(of: name)
    }
    return 0
}
