import Foundation
import VTPVocabulary
import VTPSafeTensors
import VTPStorage
import VTPTensor
import VTPTestSupport

/// Builds input trees from the fixture images.
struct InputTree {
    let dir: TemporaryDirectory

    init(_ label: String) throws { dir = try TemporaryDirectory(label) }

    var path: String { dir.path }

    /// Copies fixture image `name` to `relative` under the tree.
    func copy(_ name: String, to relative: String) throws {
        let target = dir.file(relative)
        try FileManager.default.createDirectory(atPath: (target as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        try FileManager.default.copyItem(atPath: Fixtures.path("images/" + name), toPath: target)
    }

    /// Writes raw bytes to `relative`.
    func write(_ bytes: [UInt8], to relative: String) throws {
        let target = dir.file(relative)
        try FileManager.default.createDirectory(atPath: (target as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        guard FileManager.default.createFile(atPath: target, contents: Data(bytes)) else {
            throw CocoaError(.fileWriteUnknown)
        }
    }

    /// The first `fraction` of a fixture image's bytes.
    static func truncated(_ name: String, keep fraction: Double) throws -> [UInt8] {
        let bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: Fixtures.path("images/" + name))))
        return Array(bytes.prefix(Int(Double(bytes.count) * fraction)))
    }
}

/// The tiny model and its reference outputs.
enum TinyModel {
    static var directory: String { Fixtures.path("vtp-tiny") }
    static let channels = 16, grid = 16
    static var latentElements: Int { channels * grid * grid }
}

/// Runs `tar` (the real one) in `directory`.
func runTar(_ arguments: [String], in directory: String) throws {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
    process.arguments = ["tar"] + arguments
    process.currentDirectoryURL = URL(fileURLWithPath: directory)
    try process.run()
    process.waitUntilExit()
    guard process.terminationStatus == 0 else { throw CocoaError(.fileWriteUnknown) }
}

/// Every row of every latent shard in `directory`, keyed by source id.
struct LatentRows {
    var latents: [String: [Float]] = [:]
    var flips: [String: [Float]] = [:]
    var labels: [String: Int64] = [:]
    /// Source ids in file order (shard order, then row order), duplicates kept so tests can see them.
    var order: [String] = []
    /// All `latents` values in file order.
    var allLatents: [Float] = []

    init(directory: String) throws {
        let names = try FileManager.default.contentsOfDirectory(atPath: directory).sorted()
        for name in names where name.hasSuffix(".safetensors") {
            let file = try SafeTensorsFile(path: directory + "/" + name)
            let sidecar = name.replacingOccurrences(of: "latents_", with: "ids_").replacingOccurrences(of: ".safetensors", with: ".jsonl")
            let rows = try SourceIdSidecar.read(directory + "/" + sidecar)
            let l = try file.tensor("latents").toArray(), f = try file.tensor("latents_flip").toArray()
            let labelValues = try file.int64s("labels")
            let per = l.count / max(rows.count, 1)
            for (i, row) in rows.enumerated() {
                order.append(row.sourceId)
                latents[row.sourceId] = Array(l[(i * per)..<((i + 1) * per)])
                flips[row.sourceId] = Array(f[(i * per)..<((i + 1) * per)])
                labels[row.sourceId] = labelValues[i]
            }
            allLatents += l
        }
    }
}
