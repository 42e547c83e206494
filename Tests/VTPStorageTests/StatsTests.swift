import Foundation
import Testing
import VTPVocabulary
import VTPTestSupport
@testable import VTPStorage

@Suite struct StatsTests {
    /// mean/std over axes (0, 2, 3) computed the slow, obvious way in float64.
    func reference(_ x: [Float], rows: Int, channels: Int, spatial: Int) -> (mean: [Double], std: [Double]) {
        var mean = [Double](repeating: 0, count: channels), std = mean
        for c in 0..<channels {
            var values: [Double] = []
            for r in 0..<rows { for s in 0..<spatial { values.append(Double(x[(r * channels + c) * spatial + s])) } }
            let m = values.reduce(0, +) / Double(values.count)
            mean[c] = m
            std[c] = (values.map { ($0 - m) * ($0 - m) }.reduce(0, +) / Double(values.count - 1)).squareRoot()
        }
        return (mean, std)
    }

    @Test func handComputedExample() {
        // Channel 0 holds 1,2,3,4 and channel 1 holds 10,10,10,10 over two rows of two pixels.
        let x: [Float] = [1, 2, 10, 10, 3, 4, 10, 10]
        var acc = LatentStatsAccumulator(channels: 2)
        x.withUnsafeBufferPointer { acc.add($0, rows: 2, spatial: 2) }
        #expect(acc.count == 4)
        #expect(acc.mean == [2.5, 10])
        #expect(acc.standardDeviation == [(5.0 / 3.0).squareRoot(), 0])  // unbiased, as torch.std
    }

    @Test func streamingAndMergingMatchTheWholeDataset() throws {
        let channels = 3, spatial = 16
        let shardRows = [7, 1, 12]
        let shards = shardRows.enumerated().map { pseudoRandom(count: $0.element * channels * spatial, seed: UInt64($0.offset + 40), scale: 2, offset: 1000) }
        var perShard: [LatentStatsAccumulator] = []
        for (x, rows) in zip(shards, shardRows) {
            var acc = LatentStatsAccumulator(channels: channels)
            // Feed each shard in two uneven batches.
            let cut = rows / 2 * channels * spatial
            x.withUnsafeBufferPointer { b in
                acc.add(UnsafeBufferPointer(rebasing: b[..<cut]), rows: rows / 2, spatial: spatial)
                acc.add(UnsafeBufferPointer(rebasing: b[cut...]), rows: rows - rows / 2, spatial: spatial)
            }
            perShard.append(acc)
        }
        var merged = LatentStatsAccumulator(channels: channels)
        for acc in perShard { try merged.merge(acc) }
        #expect(throws: StatsMergeError(expected: 3, found: 2)) { try merged.merge(LatentStatsAccumulator(channels: 2)) }
        let ref = reference(shards.flatMap { $0 }, rows: shardRows.reduce(0, +), channels: channels, spatial: spatial)
        #expect(merged.count == 20 * spatial)
        for c in 0..<channels {
            // Offset 1000 with spread 2 would lose ~6 digits to cancellation in a sum-of-squares formula.
            #expect(abs(merged.mean[c] - ref.mean[c]) <= 1e-12 * abs(ref.mean[c]))
            #expect(abs(merged.standardDeviation[c] - ref.std[c]) <= 1e-10 * ref.std[c])
        }
        // Accumulators survive a JSON round trip (workers report them to the coordinator).
        let decoded = try? JSONDecoder().decode(LatentStatsAccumulator.self, from: JSONEncoder().encode(merged))
        #expect(decoded == merged)
        let inconsistent = Data(#"{"channels": 3, "count": 5, "mean": [0, 1], "m2": [0, 0, 0]}"#.utf8)
        #expect(throws: DecodingError.self) { try JSONDecoder().decode(LatentStatsAccumulator.self, from: inconsistent) }
    }

    @Test func statsCanDescribeTheRoundedStoredValues() {
        // 1 + 2^-9 is not a bfloat16: stored, it rounds to 1, so the stored channel is constant.
        let x: [Float] = [1, 1 + 1.0 / 512, 1, 1 + 1.0 / 512]
        var exact = LatentStatsAccumulator(channels: 1), stored = exact
        x.withUnsafeBufferPointer {
            exact.add($0, rows: 4, spatial: 1)
            stored.add($0, rows: 4, spatial: 1, storedAs: .bfloat16)
        }
        #expect(exact.standardDeviation[0] > 0)
        #expect(stored.mean == [1] && stored.standardDeviation == [0])
    }

    @Test func statsFileIsAValidTorchArchive() throws {
        let t = try TempDir()
        var acc = LatentStatsAccumulator(channels: 5)
        let x = pseudoRandom(count: 3 * 5 * 4, seed: 9)
        x.withUnsafeBufferPointer { acc.add($0, rows: 3, spatial: 4) }
        try acc.writeTorchStats(to: t.path + "/latents_stats.pt")
        #expect(try t.names() == ["latents_stats.pt"])

        let bytes = [UInt8](FileManager.default.contents(atPath: t.path + "/latents_stats.pt")!)
        let entries = try readZip(bytes)
        #expect(entries.map(\.name) == ["latents_stats/data.pkl", "latents_stats/.format_version", "latents_stats/.storage_alignment",
                                        "latents_stats/byteorder", "latents_stats/data/0", "latents_stats/data/1",
                                        "latents_stats/version", "latents_stats/.data/serialization_id"])
        #expect(entries.allSatisfy { $0.dataOffset % 64 == 0 })
        let byName = Dictionary(uniqueKeysWithValues: entries.map { ($0.name, $0.data) })
        #expect(byName["latents_stats/version"] == Array("3\n".utf8))
        #expect(byName["latents_stats/byteorder"] == Array("little".utf8))
        #expect(byName["latents_stats/.data/serialization_id"]?.count == 40)

        let (value, opcodes) = try PickleVM.run(byName["latents_stats/data.pkl"]!)
        #expect(opcodes.filter { $0 == 0x51 }.count == 2)  // one BINPERSID per storage
        let expectTensor = { (key: String) in
            PickledTensor(storageType: "torch.FloatStorage", storageKey: key, location: "cpu", numel: 5,
                          storageOffset: 0, shape: [1, 5, 1, 1], stride: [5, 1, 1, 1], requiresGrad: false)
        }
        #expect(value == .dict(["mean": .tensor(expectTensor("0")), "std": .tensor(expectTensor("1"))]))

        func floats(_ b: [UInt8]) -> [Float] { stride(from: 0, to: b.count, by: 4).map { Float(bitPattern: UInt32(b.u32($0))) } }
        #expect(floats(byName["latents_stats/data/0"]!) == acc.mean.map(Float.init))
        #expect(floats(byName["latents_stats/data/1"]!) == acc.standardDeviation.map(Float.init))
    }

    @Test func pickleMatchesTorchSaveByteForByte() {
        // data.pkl of torch.save({'mean': t, 'std': t}) with t of shape (1,4,1,1) float32, taken from
        // PyTorch 2.15's output: protocol 2, memoized globals/strings, MARK+TUPLE for 4+ items.
        let torchBytes = [
            "80027d71002858040000006d65616e710163746f7263682e5f7574696c730a5f72656275696c645f74656e736f725f76",
            "320a71022828580700000073746f72616765710363746f7263680a466c6f617453746f726167650a7104580100000030",
            "7105580300000063707571064b04747107514b00284b014b044b014b01747108284b044b014b014b017471098963636f",
            "6c6c656374696f6e730a4f726465726564446963740a710a2952710b74710c52710d5803000000737464710e68022828",
            "68036804580100000031710f68064b04747110514b00284b014b044b014b01747111284b044b014b014b017471128968",
            "0a29527113747114527115752e",
        ].joined()
        let pickle = TorchPicklePlan.pickle([.init(key: "mean", shape: [1, 4, 1, 1], storageKey: "0"),
                                             .init(key: "std", shape: [1, 4, 1, 1], storageKey: "1")])
        #expect(pickle.map { String(format: "%02x", $0) }.joined() == torchBytes)
    }

    @Test func shortTuplesAndLargeIntegersUseProtocol2Opcodes() throws {
        var w = TorchZipWriter()
        w.add("v", shape: [300], values: [Float](repeating: 1, count: 300))
        w.add("m", shape: [2, 70000], values: [Float](repeating: 0, count: 140000))
        w.add("s", shape: [], values: [42])
        let entries = try readZip([UInt8](w.serialized()))
        #expect(entries.first?.name == "archive/data.pkl")
        let (value, _) = try PickleVM.run(entries[0].data)
        guard case let .dict(d) = value, case let .tensor(v) = d["v"], case let .tensor(m) = d["m"], case let .tensor(s) = d["s"] else {
            Issue.record("unexpected pickle \(value)"); return
        }
        #expect(v.shape == [300] && v.stride == [1] && v.numel == 300)
        #expect(m.shape == [2, 70000] && m.stride == [70000, 1] && m.numel == 140000)
        #expect(s.shape == [] && s.stride == [] && s.numel == 1)
        #expect(entries.first { $0.name == "archive/data/2" }?.data == Array(withUnsafeBytes(of: Float(42)) { Array($0) }))
    }
}
