import VTPVocabulary
import VTPTransport

/// Shared by the codec tests (VTPTransportTests) and the socket tests (VTPIntegrationTests).
///
/// One or more instances of every message type, exercising optional fields present and absent,
/// non-ASCII text, empty arrays and extreme integers.
public enum SampleMessages {
    public static let token = LeaseToken(bytes: Array(0..<16))!

    public static let register = WireMessage.register(RegisterMessage(
        workerID: "worker-é-01", host: "node17.cluster",
        capabilities: WorkerCapabilities(jobTypes: ["encode", "features", "clip"], threads: 32, prefetch: 4,
                                         memoryBytes: 256 << 30),
        session: 0xFEED_FACE_CAFE_BEEF))

    public static let assign = WireMessage.assignShard(AssignShardMessage(
        jobID: 42, shardID: Int64.max, leaseToken: token, jobType: "encode",
        parametersJSON: #"{"resolution":256,"dtype":"fp16"}"#, modelPath: "/models/vtp-l.safetensors",
        outputDirectory: "/data/out/job42",
        items: [
            JobItem(ordinal: 0, sourceId: "row-1", location: .file(path: "/data/img/1.jpg"), label: 281, caption: "a cat on a mat",
                    metadata: #"{"url":"https://example.org/1.jpg","width":640}"#),
            JobItem(ordinal: 1, sourceId: "", location: .tarMember(tarPath: "/data/00000.tar", offset: 1536, size: 4096)),
            JobItem(ordinal: 1 << 40, sourceId: "row-3", location: .file(path: "s3://b/3.webp"), label: nil, caption: "日本語のキャプション"),
        ]))

    public static let done = WireMessage.shardDone(ShardDoneMessage(
        shardID: 7, leaseToken: token,
        results: [
            ItemResult(ordinal: 0, status: .ok, outputLocation: "/data/out/0.safetensors",
                       timings: [StageTiming(stage: "decode", seconds: 0.012), StageTiming(stage: "encode", seconds: 1.5)]),
            ItemResult(ordinal: 1 << 40, status: .failed, error: "JPEG: premature end of data"),
        ]))

    /// Messages a worker sends.
    public static let workerToCoordinator: [WireMessage] = [
        register,
        .credit(4),
        .progress(shardID: -3, itemsDone: 17),
        done,
        .shardDone(ShardDoneMessage(shardID: 8, leaseToken: token, results: [])),
        .shardFailed(ShardFailedMessage(shardID: 9, leaseToken: token, error: "model file missing")),
        .heartbeat(HeartbeatMessage(sequence: 12, imagesPerSecond: 33.5, residentMemoryBytes: 1 << 33, itemsCompleted: 999,
                                    heldShards: [-7, 3, Int64.max])),
        .drain(reason: "SIGTERM"),
        .disconnect(reason: "shutting down"),
        .crashed(signal: 6, reason: "signal 6, SIGABRT"),
        .shardFailed(.handBack(shardID: 10, leaseToken: token, reason: "worker interrupted after 3 of 8 items")),
        .shardFailed(ShardFailedMessage(shardID: 11, leaseToken: token, error: "/m: cannot load model: truncated", kind: .job)),
    ]

    /// Messages the coordinator sends.
    public static let coordinatorToWorker: [WireMessage] = [
        assign,
        .assignShard(AssignShardMessage(jobID: Int64.min, shardID: 0, leaseToken: token, jobType: "clip",
                                        parametersJSON: "", modelPath: "", outputDirectory: "", items: [])),
        .assignShard(AssignShardMessage(jobID: 3, shardID: 12, leaseToken: token, jobType: "latents",
                                        parametersJSON: "{}", modelPath: "/m", outputDirectory: "/o",
                                        items: [JobItem(ordinal: 5, sourceId: "ok", location: .file(path: "/i/5.png"))], isolated: true,
                                        excluded: [ExcludedItem(ordinal: 4, sourceId: "poison", reason: "crashed workers twice"),
                                                   ExcludedItem(ordinal: 6, sourceId: "", reason: "")])),
        .progress(shardID: 12, itemsDone: 1),
        .cancel(.shard(5), reason: "lease expired"),
        .cancel(.job(6), reason: ""),
        .heartbeat(HeartbeatMessage(sequence: 1)),
        .drain(reason: "rolling upgrade"),
        .disconnect(reason: "coordinator stopping"),
    ]

    public static var all: [WireMessage] { workerToCoordinator + coordinatorToWorker }
}
