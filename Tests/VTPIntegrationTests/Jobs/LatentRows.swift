import Foundation
import VTPSafeTensors
import VTPStorage
import VTPTensor
import VTPVocabulary

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
