import Foundation
import VTPSafeTensors
import VTPTensor

/// The tensors of a checkpoint directory, looked up by their checkpoint names.
///
/// Holds the memory-mapped safetensors files. Small float32 tensors (norms, biases) are borrowed
/// from the mapping, float16/bfloat16 ones widened once; GEMM weights are packed for the engine
/// (``packedWeight(_:_:n:k:transposed:engine:)``) and their mapped pages released.
/// Every lookup is recorded so that tensors the configuration does not use are reported.
final class WeightStore {
    /// How GEMM weights are packed for this load.
    let engine: MatmulEngine

    /// The engine of the heads (the feature bottleneck and the CLIP projections): always float32
    /// on the same kernel path. They are well under 0.1% of the work, and in bfloat16 their rounding
    /// would reach the outputs undamped: the latents diffusion training reads, and similarity scores,
    /// where unit-vector dot products near zero make every absolute error a large relative one.
    var headEngine: MatmulEngine { MatmulEngine(isa: engine.isa, precision: .fp32) }
    private var files: [String: SafeTensorsFile] = [:]
    private var location: [String: String] = [:]
    private var used: Set<String> = []
    /// Bytes the GEMM weights loaded so far occupy in memory.
    private(set) var gemmWeightBytes = 0
    let directory: String

    init(directory: String, engine: MatmulEngine) throws {
        self.directory = directory
        self.engine = engine
        let fm = FileManager.default
        let single = directory + "/model.safetensors"
        let index = directory + "/model.safetensors.index.json"
        if fm.fileExists(atPath: single) {
            let file = try Self.open(single)
            files[single] = file
            for name in file.names { location[name] = single }
        } else if fm.fileExists(atPath: index) {
            guard let data = fm.contents(atPath: index),
                  let json = try? JSONSerialization.jsonObject(with: data) as? [String: Any],
                  let map = json["weight_map"] as? [String: String]
            else {
                throw VTPModelError.checkpoint(path: index, problem: "not a safetensors index: expected an object with a 'weight_map' of tensor name -> shard file")
            }
            for (name, shard) in map {
                guard !shard.contains("/") else {
                    throw VTPModelError.checkpoint(path: index, problem: "shard '\(shard)' for '\(name)' must be a file name in the same directory")
                }
                let path = directory + "/" + shard
                if files[path] == nil { files[path] = try Self.open(path) }
                guard files[path]!.tensors[name] != nil else {
                    throw VTPModelError.missingTensor(file: path, tensor: name, expectedShape: [])
                }
                location[name] = path
            }
        } else {
            throw VTPModelError.checkpoint(path: directory, problem: "no model.safetensors or model.safetensors.index.json")
        }
    }

    private static func open(_ path: String) throws -> SafeTensorsFile {
        do { return try SafeTensorsFile(path: path) } catch let e as SafeTensorsError {
            throw VTPModelError.checkpoint(path: path, problem: problem(e, at: path))
        }
    }

    /// The error's text without its leading path, which `.checkpoint` prints itself.
    private static func problem(_ error: SafeTensorsError, at path: String) -> String {
        let text = "\(error)"
        return text.hasPrefix(path + ": ") ? String(text.dropFirst(path.count + 2)) : text
    }

    /// Whether the checkpoint has a tensor of that name.
    func contains(_ name: String) -> Bool { location[name] != nil }

    /// The float32 tensor `name`, which must have exactly `shape`.
    func tensor(_ name: String, _ shape: [Int]) throws -> Tensor {
        let (path, file) = try checkedFile(name, shape)
        let tensor: Tensor
        do { tensor = try file.tensor(name).reshaped(shape) } catch let e as SafeTensorsError {
            throw VTPModelError.checkpoint(path: path, problem: Self.problem(e, at: path))
        }
        guard tensor.storage.isReadOnly, tensor.count * 4 <= Self.copiedTensorBytes else { return tensor }
        // Small tensors (norms, biases, LayerScale) are copied out of the mapping and their pages
        // released: read in place, each forward pass faulted them in, and the kernel's fault-around
        // mapped the released weight pages beside them back in with them (100 MB of a B model).
        let copy = Tensor(uninitialized: shape)
        copy.mutablePointer.update(from: tensor.pointer, count: tensor.count)
        files[path]?.releasePages(of: name)
        return copy
    }

    /// Borrowed tensors up to this size are copied at load (see ``tensor(_:_:)``).
    static let copiedTensorBytes = 8 << 20

    /// The weight `name` (of exactly `shape`, `n × k` elements) packed for `engine`. bfloat16
    /// checkpoints are packed from their stored bits; once packed, the mapped pages of the original
    /// are released so one copy of each weight stays resident.
    func packedWeight(_ name: String, _ shape: [Int], n: Int, k: Int, transposed: Bool = true, engine: MatmulEngine) throws -> PackedWeight {
        let packed: PackedWeight
        switch transposed ? try packingSource(name, shape, engine: engine) : .float32(try tensor(name, shape)) {
        case let .bfloat16(bits): packed = PackedWeight(bfloat16: bits, n: n, k: k, engine: engine)
        case let .float32(values): packed = PackedWeight(values, n: n, k: k, transposed: transposed, engine: engine)
        }
        if engine.packsWeights, let path = location[name] { files[path]?.releasePages(of: name) }
        // A weight read in place from the mapping still occupies its float32 bytes once touched.
        gemmWeightBytes += packed.residentBytes > 0 ? packed.residentBytes : n * k * 4
        return packed
    }

    /// `n × k` weights packed into one (see ``PackedWeight/Source``): SwiGLU's w1 and w2 interleaved
    /// for gating in the epilogue (`interleaved`), or stacked by rows; nil where the engine cannot.
    func combinedWeight(_ names: [String], n: Int, k: Int, interleaved: Bool, engine: MatmulEngine) throws -> PackedWeight? {
        // Asked before loading: a float16 checkpoint's weights are widened when loaded, and a
        // caller falling back to another layout would load them twice.
        let possible = interleaved ? PackedWeight.canInterleave(n: n, k: k, engine: engine) : PackedWeight.canStack(n: n, engine: engine)
        guard possible else { return nil }
        let sources = try names.map { try packingSource($0, [n, k], engine: engine) }
        let packed = interleaved
            ? PackedWeight(interleavingValue: sources[0], gate: sources[1], n: n, k: k, engine: engine)
            : PackedWeight(stacking: sources, n: n, k: k, engine: engine)
        guard let packed else { return nil }
        for name in names { if let path = location[name] { files[path]?.releasePages(of: name) } }
        gemmWeightBytes += packed.residentBytes
        return packed
    }

    /// What a Linear weight (`shape`, n rows of k) is packed from: its stored bfloat16 bits where the
    /// engine keeps bf16 weights, else float32 values (float16 widened, float32 as stored).
    private func packingSource(_ name: String, _ shape: [Int], engine: MatmulEngine) throws -> PackedWeight.Source {
        if dtype(name) == .bf16, engine.storesBFloat16 {
            let (_, file) = try checkedFile(name, shape)
            return .bfloat16(try file.rawBytes(name).baseAddress!)
        }
        return .float32(try tensor(name, shape))
    }

    /// The file holding `name`, after checking the tensor exists with `shape` (a scalar saved as
    /// shape [] or [1] is the same value); records it as used.
    private func checkedFile(_ name: String, _ shape: [Int]) throws -> (path: String, file: SafeTensorsFile) {
        guard let path = location[name], let file = files[path] else {
            throw VTPModelError.missingTensor(file: directory + "/model.safetensors", tensor: name, expectedShape: shape)
        }
        let info = file.tensors[name]!
        let same = info.shape == shape || (info.elementCount == 1 && shape.reduce(1, *) == 1)
        guard same else { throw VTPModelError.wrongShape(file: path, tensor: name, found: info.shape, expected: shape) }
        used.insert(name)
        return (path, file)
    }

    /// Like ``tensor(_:_:)`` but `nil` when absent.
    func optionalTensor(_ name: String, _ shape: [Int]) throws -> Tensor? {
        contains(name) ? try tensor(name, shape) : nil
    }

    /// The stored dtype of a tensor, if present.
    func dtype(_ name: String) -> SafeTensorsDType? {
        guard let path = location[name] else { return nil }
        return files[path]?.tensors[name]?.dtype
    }

    /// Throws if the checkpoint holds tensors that no layer consumed.
    func checkAllUsed() throws {
        let extra = location.keys.filter { !used.contains($0) }.sorted()
        if !extra.isEmpty {
            throw VTPModelError.unexpectedTensors(file: location[extra[0]]!, tensors: extra)
        }
    }

    /// Number of elements in all tensors whose name starts with `prefix`.
    func parameterCount(prefix: String) -> Int {
        location.keys.filter { $0.hasPrefix(prefix) }.reduce(0) { acc, name in
            // RoPE periods are buffers, not parameters; the upstream count skips them.
            name.hasSuffix("rope_embed.periods") ? acc : acc + (files[location[name]!]!.tensors[name]!.elementCount)
        }
    }
}
