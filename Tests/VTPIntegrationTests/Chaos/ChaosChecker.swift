import Foundation
import Testing
import VTPQueue
import VTPSafeTensors
import VTPStorage
import VTPTensor
import VTPTestSupport
import VTPVocabulary

/// What a chaos run left behind, measured against its input and a clean run.
struct ChaosFigures: CustomStringConvertible {
    var scenario: String
    var expected: Int
    var written: Int
    var lost: Int
    var duplicated: Int
    /// Rows whose latents differ in any bit from the clean run's.
    var differing: Int
    /// Results the ledger refused (late or duplicate completions).
    var rejected: Int64
    var failedItems: Int64
    var seconds: Double
    var faults: Int

    var description: String {
        "\(scenario): expected \(expected), written \(written), lost \(lost), duplicated \(duplicated), "
            + "differing \(differing), rejected \(rejected), failed \(failedItems), \(faults) faults, \(String(format: "%.1f", seconds)) s"
    }
}

/// Loads every output shard of a latents job and compares it with the input and the clean run.
enum ChaosChecker {
    /// Every row of every shard: source id → latent bits, with the ids in file order (duplicates kept).
    static func rows(_ output: String) throws -> (ids: [String], bits: [String: [UInt32]]) {
        var ids: [String] = []
        var bits: [String: [UInt32]] = [:]
        for name in try FileManager.default.contentsOfDirectory(atPath: output).sorted()
        where name.hasPrefix("latents_") && name.hasSuffix(".safetensors") && name != "latents_stats.safetensors" {
            let sidecar = name.replacingOccurrences(of: "latents_", with: "ids_").replacingOccurrences(of: ".safetensors", with: ".jsonl")
            let rows = try SourceIdSidecar.read(output + "/" + sidecar)
            let latents = try SafeTensorsFile(path: output + "/" + name).tensor("latents")
            guard latents.shape.first == rows.count else {
                throw ChaosError("\(name): \(latents.shape) latents for \(rows.count) ids")
            }
            let per = latents.count / max(1, rows.count)
            for (i, row) in rows.enumerated() {
                ids.append(row.sourceId)
                bits[row.sourceId] = Array(latents.buffer[(i * per)..<((i + 1) * per)]).map(\.bitPattern)
            }
        }
        return (ids, bits)
    }

    /// Files a shard left without its partners, and temporaries left behind: a shard's files
    /// appear together or not at all.
    static func orphans(_ output: String) throws -> [String] {
        let names = Set(try FileManager.default.contentsOfDirectory(atPath: output))
        return names.filter { name in
            // `.vtp` holds the ledger's shard manifests.
            if name.hasPrefix(".") && name != ".vtp-state" && name != ".vtp" { return true }
            if name.hasPrefix("ids_") { return !names.contains(name.replacingOccurrences(of: "ids_", with: "latents_")
                .replacingOccurrences(of: ".jsonl", with: ".safetensors")) }
            if name.hasPrefix("summary_") {
                return !names.contains(name.replacingOccurrences(of: "summary_", with: "latents_").replacingOccurrences(of: ".json", with: ".safetensors"))
            }
            return false
        }.sorted()
    }

    /// Checks exactly-once and bit-identity; `expectedFailures` are inputs that must be recorded
    /// as failed items (poison) instead of written.
    static func check(_ scenario: String, output: String, expected: Set<String>, reference: [String: [UInt32]],
                      job: JobRecord, seconds: Double, faults: Int, expectedFailures: Set<String> = []) throws -> ChaosFigures {
        let (ids, bits) = try rows(output)
        let good = expected.subtracting(expectedFailures)
        let figures = ChaosFigures(
            scenario: scenario, expected: good.count, written: ids.count, lost: good.subtracting(ids).count,
            duplicated: ids.count - Set(ids).count,
            differing: good.filter { reference[$0] != nil && bits[$0] != nil && reference[$0] != bits[$0] }.count,
            rejected: job.rejectedCompletions, failedItems: job.itemsFailed, seconds: seconds, faults: faults)
        #expect(figures.lost == 0, "\(figures)")
        #expect(figures.duplicated == 0, "\(figures)")
        #expect(figures.differing == 0, "\(figures)")
        #expect(Set(ids) == good, "\(scenario): written ids are not the good inputs")
        #expect(job.itemsDone == Int64(good.count) && job.itemsFailed == Int64(expectedFailures.count), "\(figures)")
        let manifestPath = output + "/manifest.json"
        let manifest = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: manifestPath))) as? [String: Any]
        let failureEntries = manifest?["failures"] as? [[String: Any]] ?? []
        let failures = failureEntries.compactMap { $0["source_id"] as? String }
        // The reasons say which fault made an item fail, which the ids alone do not.
        #expect(Set(failures) == expectedFailures, "\(scenario): manifest failures \(failureEntries)")
        let orphaned = try orphans(output)
        #expect(orphaned.isEmpty, "\(scenario): files of no complete shard: \(orphaned)")
        print("chaos figures | \(figures)")
        return figures
    }
}

/// The clean run every scenario is compared with: `vtp run latents` on the same input with other
/// shards and batches (one worker process), made once per test process.
actor ChaosReference {
    static let shared = ChaosReference()
    private var made: [String: [UInt32]]?
    /// Bytes of the clean run's output files (for sizing a too-small disk).
    private(set) var outputBytes: Int?

    func latents(scale: ChaosScale) throws -> [String: [UInt32]] {
        if let made { return made }
        let dir = try TemporaryDirectory("chaos-ref")
        defer { RunCommandTests.stopLeftoverServer(dir.file("out")); dir.remove() }
        let expected = try RunCommandTests.makeInput(dir.file("in"), copies: scale.copies)
        var arguments = RunCommandTests.runArguments(input: dir.file("in"), output: dir.file("out"), shardSize: 7,
                                                     imageSize: scale.imageSize)
        arguments[arguments.firstIndex(of: "--batch-size")! + 1] = "3"
        let run = try VTPExecutable.run(arguments)
        guard run.status == 0 else { throw ChaosError("clean reference run failed: \(run.stderr)") }
        let (ids, bits) = try ChaosChecker.rows(dir.file("out"))
        guard Set(ids) == expected, ids.count == expected.count else { throw ChaosError("clean reference run is incomplete") }
        made = bits
        outputBytes = try FileManager.default.contentsOfDirectory(atPath: dir.file("out")).filter { !$0.hasPrefix(".") }.reduce(0) {
            $0 + ((try FileManager.default.attributesOfItem(atPath: dir.file("out/" + $1))[.size] as? NSNumber)?.intValue ?? 0)
        }
        return bits
    }
}
