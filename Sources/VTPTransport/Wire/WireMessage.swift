import VTPVocabulary
/// A 16-byte lease token: proof that a shard result belongs to the current assignment of that shard,
/// so results from a worker whose lease expired can be told apart from the current holder's.
public struct LeaseToken: Hashable, Sendable, CustomStringConvertible {
    public let bytes: [UInt8]

    /// Wraps exactly 16 bytes; `nil` otherwise.
    public init?(bytes: [UInt8]) {
        guard bytes.count == 16 else { return nil }
        self.bytes = bytes
    }

    /// A random token from the system generator.
    public static func random() -> LeaseToken {
        var generator = SystemRandomNumberGenerator()
        return LeaseToken(bytes: (0..<16).map { _ in UInt8.random(in: .min ... .max, using: &generator) })!
    }

    public var description: String { bytes.map { String($0, radix: 16).leftPadded(to: 2) }.joined() }
}

/// What a worker can do, announced in `register`.
public struct WorkerCapabilities: Hashable, Sendable {
    /// Job types the worker runs (e.g. `encode`, `features`, `clip`).
    public var jobTypes: [String]
    /// Compute threads the worker will use.
    public var threads: UInt32
    /// How many shards the worker wants queued ahead (its credit window).
    public var prefetch: UInt32
    /// Memory available to the worker, bytes.
    public var memoryBytes: UInt64

    public init(jobTypes: [String], threads: UInt32, prefetch: UInt32, memoryBytes: UInt64) {
        self.jobTypes = jobTypes
        self.threads = threads
        self.prefetch = prefetch
        self.memoryBytes = memoryBytes
    }
}

/// Worker → coordinator: the first message after (re)connecting.
///
/// `session` tells process lifetimes apart. The worker id (also the socket's routing identity)
/// repeats when a worker restarts under the same `--worker-id`, or when a restarted pod gets the
/// same host name and PID; the session does not. A register from a known identity with a new
/// session means the previous process is gone: the coordinator ends that session at once and
/// releases its leases. The same session again is a reconnect and keeps them.
public struct RegisterMessage: Hashable, Sendable {
    public var workerID: String
    public var host: String
    public var capabilities: WorkerCapabilities
    /// A random non-zero nonce drawn once per worker process (see `newSession()`).
    public var session: UInt64

    public init(workerID: String, host: String, capabilities: WorkerCapabilities, session: UInt64 = RegisterMessage.newSession()) {
        self.workerID = workerID
        self.host = host
        self.capabilities = capabilities
        self.session = session
    }

    /// A fresh session nonce from the system generator (never 0, which the wire reserves as invalid).
    public static func newSession() -> UInt64 {
        var generator = SystemRandomNumberGenerator()
        return UInt64.random(in: 1 ... .max, using: &generator)
    }
}

/// Coordinator → worker: process this shard under this lease.
public struct AssignShardMessage: Hashable, Sendable {
    public var jobID: Int64
    public var shardID: Int64
    public var leaseToken: LeaseToken
    public var jobType: String
    /// The job's parameters as a JSON document (interpreted by the job, not by the transport).
    public var parametersJSON: String
    public var modelPath: String
    public var outputDirectory: String
    /// The shard's unfinished items, with their job-wide ordinals.
    public var items: [JobItem]
    /// Process the items one at a time and wait for the coordinator to acknowledge each item's
    /// `progress` before starting it (``ShardTask/isolated``).
    public var isolated: Bool
    /// Items of the shard not to process, already failed for crashing workers.
    public var excluded: [ExcludedItem]

    public init(jobID: Int64, shardID: Int64, leaseToken: LeaseToken, jobType: String, parametersJSON: String,
                modelPath: String, outputDirectory: String, items: [JobItem], isolated: Bool = false,
                excluded: [ExcludedItem] = []) {
        self.isolated = isolated
        self.excluded = excluded
        self.jobID = jobID
        self.shardID = shardID
        self.leaseToken = leaseToken
        self.jobType = jobType
        self.parametersJSON = parametersJSON
        self.modelPath = modelPath
        self.outputDirectory = outputDirectory
        self.items = items
    }
}

/// Worker → coordinator: the shard finished (items may still have failed individually).
public struct ShardDoneMessage: Hashable, Sendable {
    public var shardID: Int64
    public var leaseToken: LeaseToken
    public var results: [ItemResult]

    public init(shardID: Int64, leaseToken: LeaseToken, results: [ItemResult]) {
        self.shardID = shardID
        self.leaseToken = leaseToken
        self.results = results
    }
}

/// Worker → coordinator: the shard did not finish, and why it matters.
public struct ShardFailedMessage: Hashable, Sendable {
    /// What the coordinator does with the shard.
    public enum Kind: UInt8, Hashable, Sendable, CaseIterable {
        /// The shard failed (e.g. a write error): it is retried until the job's attempts run out.
        case shard = 0
        /// The worker gave the shard up on purpose (it is stopping): it is requeued at once and
        /// spends no attempt.
        case handBack = 1
        /// Nothing of the job can run (its model cannot load, its output cannot be written, its
        /// parameters are invalid): the job fails at once with `error`, no item is failed, and
        /// `vtp job retry` (or re-running `vtp run`) starts it again.
        case job = 2
    }

    public var shardID: Int64
    public var leaseToken: LeaseToken
    public var error: String
    public var kind: Kind

    public init(shardID: Int64, leaseToken: LeaseToken, error: String, kind: Kind = .shard) {
        self.shardID = shardID
        self.leaseToken = leaseToken
        self.error = error
        self.kind = kind
    }

    /// A shard the worker stopped on purpose (see ``Kind/handBack``).
    public static func handBack(shardID: Int64, leaseToken: LeaseToken, reason: String) -> ShardFailedMessage {
        ShardFailedMessage(shardID: shardID, leaseToken: leaseToken, error: reason, kind: .handBack)
    }

    /// The worker gave the shard up on purpose; nothing about the shard failed.
    public var isHandBack: Bool { kind == .handBack }
}

/// Either side: "I am alive", with the sender's counters (zero where they do not apply).
public struct HeartbeatMessage: Hashable, Sendable {
    /// Increases by one per heartbeat sent; lets the receiver see gaps.
    public var sequence: UInt64
    public var imagesPerSecond: Double
    public var residentMemoryBytes: UInt64
    public var itemsCompleted: UInt64
    /// From a worker: the dispatch ids of every shard it holds (running and queued), ascending. The
    /// coordinator renews exactly these leases, so a lease whose result was lost on the way (or that
    /// the worker never received) runs out instead of being kept alive by an unrelated heartbeat.
    /// Empty from the coordinator.
    public var heldShards: [Int64]

    public init(sequence: UInt64, imagesPerSecond: Double = 0, residentMemoryBytes: UInt64 = 0, itemsCompleted: UInt64 = 0,
                heldShards: [Int64] = []) {
        self.sequence = sequence
        self.imagesPerSecond = imagesPerSecond
        self.residentMemoryBytes = residentMemoryBytes
        self.itemsCompleted = itemsCompleted
        self.heldShards = heldShards
    }
}

/// Coordinator → worker: what to cancel.
public enum CancelScope: Hashable, Sendable {
    case shard(Int64)
    case job(Int64)
}

/// The message types, with their wire codes.
public enum WireMessageType: UInt8, Sendable, CaseIterable {
    case register = 0x01
    case credit = 0x02
    case assignShard = 0x03
    case progress = 0x04
    case shardDone = 0x05
    case shardFailed = 0x06
    case heartbeat = 0x07
    case drain = 0x08
    case cancel = 0x09
    case disconnect = 0x0A
    case crashed = 0x0B

    /// Who may send this type.
    public var direction: WireDirection {
        switch self {
        case .register, .credit, .shardDone, .shardFailed, .crashed: .workerToCoordinator
        case .assignShard, .cancel: .coordinatorToWorker
        // From the coordinator, `progress` acknowledges the worker's (isolated shards wait for it).
        case .heartbeat, .drain, .disconnect, .progress: .both
        }
    }
}

/// Which way a message type may travel.
public enum WireDirection: Sendable {
    case workerToCoordinator, coordinatorToWorker, both

    func allows(_ other: WireDirection) -> Bool { self == .both || self == other }
}

/// Every message of protocol version 5 (2: items carry job-wide 64-bit ordinals and metadata;
/// 3: `register` carries the worker's session nonce, a worker's `heartbeat` the shards it holds;
/// 4: `assignShard` carries the isolation flag and the excluded items, the coordinator echoes
/// `progress` as its acknowledgement, and a dying worker sends `crashed`; 5: `shardFailed` ends
/// with its kind, so a hand-back or a failure of the whole job is a field, not a text prefix).
///
/// Frame layout: `"VTP"` magic, version byte, type byte, then the type's fields in order. Integers are
/// little-endian; strings are a u32 byte length then UTF-8; optionals a 0/1 byte then the value; arrays a
/// u32 count then the elements; doubles their IEEE-754 bit pattern as u64.
public enum WireMessage: Hashable, Sendable {
    /// Worker announces itself (first message after every (re)connect).
    case register(RegisterMessage)
    /// Worker grants `n` more shard slots ("ready").
    case credit(UInt32)
    case assignShard(AssignShardMessage)
    /// Worker reports `itemsDone` items of a shard processed so far (in an isolated shard: it is
    /// about to start item `itemsDone`). The coordinator echoes it back once it has noted it.
    case progress(shardID: Int64, itemsDone: UInt32)
    case shardDone(ShardDoneMessage)
    case shardFailed(ShardFailedMessage)
    case heartbeat(HeartbeatMessage)
    /// Coordinator: finish assigned work, take no more. Worker: announces it is draining.
    case drain(reason: String)
    case cancel(CancelScope, reason: String)
    /// Orderly goodbye from either side.
    case disconnect(reason: String)
    /// Worker's last word: it is dying of fatal signal `signal` (sent from its crash handler).
    case crashed(signal: Int32, reason: String)

    public static let magic: [UInt8] = Array("VTP".utf8)
    public static let protocolVersion: UInt8 = 5
    static let headerBytes = 5

    public var type: WireMessageType {
        switch self {
        case .register: .register
        case .credit: .credit
        case .assignShard: .assignShard
        case .progress: .progress
        case .shardDone: .shardDone
        case .shardFailed: .shardFailed
        case .heartbeat: .heartbeat
        case .drain: .drain
        case .cancel: .cancel
        case .disconnect: .disconnect
        case .crashed: .crashed
        }
    }
}
