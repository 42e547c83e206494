import Benchmark
import Foundation
import VTPBenchmarkSupport
import VTPTransport
import VTPVocabulary

// Encoding and decoding of the coordinator/worker wire messages, on a small set of its own
// shaped like real traffic: a shard assignment of 256 items, its completion with 256 results,
// and a heartbeat. Baseline, measured in the same run: a plain memcpy of the same number of
// bytes into a new buffer, so the ratio is what the codec costs over just moving the frame.

/// Messages shaped like a real shard's traffic (sizes, optional fields, non-ASCII text).
enum Messages {
    static let token = LeaseToken(bytes: Array(0..<16))!
    static let items = (0..<256).map { i in
        JobItem(ordinal: i, sourceId: "laion/part-00017/\(i)", location: .tarMember(tarPath: "/data/laion/00017.tar", offset: Int64(i) * 65_536,
                                                                                   size: 48_000 + Int64(i)),
                label: i % 1000, caption: i % 3 == 0 ? "a photo of a golden retriever, 日本語 \(i)" : nil,
                metadata: #"{"width":640,"height":480}"#)
    }
    static let all: [(name: String, message: WireMessage)] = [
        ("assign 256 items", .assignShard(AssignShardMessage(
            jobID: 42, shardID: 17, leaseToken: token, jobType: "encode", parametersJSON: #"{"resolution":256,"dtype":"fp16"}"#,
            modelPath: "/models/vtp-l", outputDirectory: "/data/out/job42", items: items))),
        ("done 256 results", .shardDone(ShardDoneMessage(shardID: 17, leaseToken: token, results: (0..<256).map { i in
            ItemResult(ordinal: i, status: .ok, outputLocation: "/data/out/job42/\(i).safetensors",
                       timings: [StageTiming(stage: "decode", seconds: 0.012), StageTiming(stage: "encode", seconds: 0.31)])
        }))),
        ("heartbeat", .heartbeat(HeartbeatMessage(sequence: 12, imagesPerSecond: 33.5, residentMemoryBytes: 1 << 33,
                                                   itemsCompleted: 999, heldShards: [17, 18]))),
    ]
}

/// A copy of `frame` into a buffer of its own: the memcpy baseline.
@inline(never)
func copied(_ frame: [UInt8]) -> [UInt8] {
    [UInt8](unsafeUninitializedCapacity: frame.count) { buffer, count in
        frame.withUnsafeBytes { source in
            if let base = buffer.baseAddress, let from = source.baseAddress { memcpy(base, from, frame.count) }
        }
        count = frame.count
    }
}

let benchmarks: @Sendable () -> Void = {
    let comparisons = SameRunBaselines()
    // Each benchmark iteration runs the operation this many times so one timing is well above
    // the clock's resolution, for the codec and the memcpy alike.
    let repeats = 100
    let configuration = Benchmark.Configuration(metrics: [.wallClock, .throughput, .mallocCountTotal], warmupIterations: 3,
                                                maxDuration: .seconds(2), maxIterations: 1000)
    for (label, message) in Messages.all {
        let frame: [UInt8]
        do { frame = try message.encoded() } catch { fatalError("WireCodec suite: \(label) does not encode: \(error)") }
        let copyBaseline = "memcpy of the same \(frame.count) bytes"

        let encodeName = "encode \(label) (\(frame.count) bytes) x\(repeats)"
        Benchmark(encodeName, configuration: configuration) { benchmark in
            let comparison = try comparisons.comparison(encodeName) {
                SameRunBaseline(encodeName, against: copyBaseline, runs: 50) {
                    for _ in 0..<repeats { blackHole(copied(frame)) }
                }
            }
            benchmark.startMeasurement()
            try comparison.measure {
                for _ in 0..<repeats { blackHole(try message.encoded()) }
            }
            benchmark.stopMeasurement()
        } teardown: {
            comparisons.printReport(encodeName)
        }

        let decodeName = "decode \(label) (\(frame.count) bytes) x\(repeats)"
        Benchmark(decodeName, configuration: configuration) { benchmark in
            let comparison = try comparisons.comparison(decodeName) {
                SameRunBaseline(decodeName, against: copyBaseline, runs: 50) {
                    for _ in 0..<repeats { blackHole(copied(frame)) }
                }
            }
            benchmark.startMeasurement()
            try comparison.measure {
                for _ in 0..<repeats { blackHole(try WireMessage.decode(frame)) }
            }
            benchmark.stopMeasurement()
        } teardown: {
            comparisons.printReport(decodeName)
        }
    }
}
