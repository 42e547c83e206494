import Foundation
import VTPSafeTensors
import VTPTensor

/// The tensors of a checkpoint directory, looked up by their checkpoint names.
///
/// Holds the memory-mapped safetensors files; float32 tensors are borrowed from the mapping,
/// float16/bfloat16 ones are widened once into float32, so weights exist in one float32 copy.
/// Every lookup is recorded so that tensors the configuration does not use are reported.
final class WeightStore {
    private var files: [String: SafeTensorsFile] = [:]
    private var location: [String: String] = [:]
    private var used: Set<String> = []
    let directory: String

    init(directory: String) throws {
        self.directory = directory
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
            throw VTPModelError.checkpoint(path: path, problem: "\(e)")
        }
    }

    /// Whether the checkpoint has a tensor of that name.
    func contains(_ name: String) -> Bool { location[name] != nil }

    /// The float32 tensor `name`, which must have exactly `shape`.
    func tensor(_ name: String, _ shape: [Int]) throws -> Tensor {
        guard let path = location[name], let file = files[path] else {
            throw VTPModelError.missingTensor(file: directory + "/model.safetensors", tensor: name, expectedShape: shape)
        }
        let info = file.tensors[name]!
        // A scalar parameter saved as shape [] or [1] is the same value.
        let same = info.shape == shape || (info.elementCount == 1 && shape.reduce(1, *) == 1)
        guard same else { throw VTPModelError.wrongShape(file: path, tensor: name, found: info.shape, expected: shape) }
        used.insert(name)
        do { return try file.tensor(name).reshaped(shape) } catch let e as SafeTensorsError {
            throw VTPModelError.checkpoint(path: path, problem: "\(e)")
        }
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
