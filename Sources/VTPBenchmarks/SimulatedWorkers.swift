import CZeroMQ
import Foundation
import Synchronization
import VTPRuntimeSupport
import VTPTransport
import VTPVocabulary
import VTPWorker

/// Many workers without a model in one process, for ``ScaleBenchmark``: each is a real
/// `WorkerCore` (the worker's protocol state machine: register, credit, heartbeats, progress,
/// results) on a DEALER socket of its own, and "runs" a shard by waiting `itemSeconds` per item.
///
/// A handful of driver threads share the sockets (one `zmq_poll` over each thread's group), so a
/// thousand workers need neither a thousand threads nor a thousand I/O loops. Each thread has its
/// own ZeroMQ context, which keeps every context below libzmq's default socket cap (1023).
final class SimulatedWorkers: Sendable {
    /// What every simulated worker does.
    struct Options: Sendable {
        var endpoint: String
        var workers: Int
        var itemSeconds: Double
        /// Shards a worker asks for at once (`worker.prefetch`).
        var prefetch: UInt32
        /// Items between two `progress` messages (the real executor reports after each batch).
        var progressEvery: Int
        /// Items of the job, for the exactly-once check.
        var jobItems: Int
        var driverThreads: Int
        var jobType: String
    }

    /// Measurements of one worker, merged at the end.
    struct Record: Sendable {
        /// Seconds (on the monotonic clock) of every shard's execution start and planned end.
        var busy: [(start: Double, end: Double)] = []
        /// Seconds from a credit sent to the assignment that used it.
        var claimLatencies: [Double] = []
        var assignmentTimes: [Double] = []
        var resultTimes: [Double] = []
        /// How late the driver noticed that a shard's time was up (simulator overhead, counted as idle).
        var lateness: [Double] = []
        var reconnects = 0
        var sendFailures = 0
        var undecodable = 0
    }

    /// Merged measurements of every worker.
    struct Summary: Sendable {
        var records: [Record]
        /// Items executed (and reported) more than once, and never.
        var itemsExecutedTwice: Int
        var itemsNeverExecuted: Int
        var itemsReported: Int
    }

    private let options: Options
    private let stopping = Atomic<Bool>(false)
    private let reported = Atomic<Int>(0)
    private let finished: Mutex<[Driver.Result]> = Mutex([])
    private let done = DispatchSemaphore(value: 0)

    init(options: Options) { self.options = options }

    /// Items the workers have reported done so far.
    var itemsReported: Int { reported.load(ordering: .relaxed) }

    /// Creates every socket (connecting starts at once) and starts the driver threads.
    func start() throws {
        let threads = max(1, min(options.driverThreads, options.workers))
        var drivers: [Driver] = []
        for thread in 0..<threads {
            let indices = Array(stride(from: thread, to: options.workers, by: threads))
            drivers.append(try Driver(indices: indices, options: options))
        }
        for (number, driver) in drivers.enumerated() {
            let worker = Thread { [self] in
                let result = driver.run(stopping: stopping, reported: reported)
                finished.withLock { $0.append(result) }
                done.signal()
            }
            worker.name = "vtp-sim-workers-\(number)"
            worker.stackSize = 1 << 20
            worker.start()
        }
        started.withLock { $0 = drivers.count }
    }

    private let started = Mutex(0)

    /// Stops the drivers (sockets closed without lingering) and merges what they measured.
    func stop() -> Summary {
        stopping.store(true, ordering: .relaxed)
        let count = started.withLock { $0 }
        for _ in 0..<count { done.wait() }
        let results = finished.withLock { $0 }
        var executions = [UInt8](repeating: 0, count: options.jobItems)
        var records: [Record] = []
        for result in results {
            records += result.records
            for (index, count) in result.executions.enumerated() where count > 0 {
                executions[index] = executions[index] &+ count
            }
        }
        let twice = executions.reduce(0) { $0 + ($1 > 1 ? 1 : 0) }
        let never = executions.reduce(0) { $0 + ($1 == 0 ? 1 : 0) }
        return Summary(records: records, itemsExecutedTwice: twice, itemsNeverExecuted: never,
                       itemsReported: reported.load(ordering: .relaxed))
    }

    /// Seconds on the monotonic clock (the one `WorkerCore` runs on).
    static func seconds(_ instant: MonotonicInstant) -> Double { Double(instant.nanoseconds) / 1e9 }
}

/// One driver thread and the workers it owns. `@unchecked Sendable`: built on the starting
/// thread, then touched only by its own driver thread (libzmq sockets must stay on one thread).
private final class Driver: @unchecked Sendable {
    struct Result: Sendable {
        var records: [SimulatedWorkers.Record]
        /// How many times each item of the job was executed and reported by these workers.
        var executions: [UInt8]
    }

    /// A shard being "executed".
    struct Running {
        var assignment: AssignShardMessage
        var start: Double
        var end: Double
        var itemsReported = 0
        var nextProgress: Double
    }

    final class SimulatedWorker {
        let identity: [UInt8]
        var socket: ZMQSocket?
        var core: WorkerCore
        var running: Running?
        var nextTick: Double
        /// When each credit still unanswered was sent, oldest first.
        var creditsSent: [Double] = []
        var record = SimulatedWorkers.Record()
        var exited = false

        init(identity: [UInt8], socket: ZMQSocket, core: WorkerCore, nextTick: Double) {
            self.identity = identity
            self.socket = socket
            self.core = core
            self.nextTick = nextTick
        }
    }

    private let context: ZMQContext
    private let options: SimulatedWorkers.Options
    private var workers: [SimulatedWorker] = []
    private var executions: [UInt8]
    private static let tickSeconds = 0.2

    init(indices: [Int], options: SimulatedWorkers.Options) throws {
        self.options = options
        context = try ZMQContext(ioThreads: 1)
        executions = [UInt8](repeating: 0, count: options.jobItems)
        let now = MonotonicInstant.now()
        for index in indices {
            let id = String(format: "sim-%05d", index)
            let registration = RegisterMessage(
                workerID: id, host: "scale-bench",
                capabilities: WorkerCapabilities(jobTypes: [options.jobType], threads: 1, prefetch: options.prefetch, memoryBytes: 0))
            let socket = try Self.connect(context: context, identity: Array(id.utf8), endpoint: options.endpoint)
            let core = WorkerCore(registration: registration, now: now, seed: UInt64(index) &* 0x9E37_79B9_7F4A_7C15 | 1)
            // Spread the ticks so heartbeats do not all leave in the same instant.
            let phase = Self.tickSeconds * Double(index % 97) / 97
            workers.append(SimulatedWorker(identity: Array(id.utf8), socket: socket, core: core,
                                           nextTick: SimulatedWorkers.seconds(now) + phase))
        }
    }

    /// The socket options `DealerEndpoint` sets (no CURVE, no monitor), then connect.
    private static func connect(context: ZMQContext, identity: [UInt8], endpoint: String) throws -> ZMQSocket {
        let socket = try ZMQSocket(context: context, type: .dealer)
        try socket.setOption(ZMQ_LINGER, 0, name: "ZMQ_LINGER")
        try socket.setOption(ZMQ_MAXMSGSIZE, int64: Int64(WireLimits.maxFrameBytes), name: "ZMQ_MAXMSGSIZE")
        try socket.setOption(ZMQ_SNDHWM, 1000, name: "ZMQ_SNDHWM")
        try socket.setOption(ZMQ_RCVHWM, 1000, name: "ZMQ_RCVHWM")
        try socket.setOption(ZMQ_HEARTBEAT_IVL, 1000, name: "ZMQ_HEARTBEAT_IVL")
        try socket.setOption(ZMQ_HEARTBEAT_TIMEOUT, 5000, name: "ZMQ_HEARTBEAT_TIMEOUT")
        try socket.setOption(ZMQ_HEARTBEAT_TTL, 10000, name: "ZMQ_HEARTBEAT_TTL")
        try socket.setOption(ZMQ_ROUTING_ID, bytes: identity, name: "ZMQ_ROUTING_ID")
        try socket.setOption(ZMQ_RECONNECT_IVL, 100, name: "ZMQ_RECONNECT_IVL")
        try socket.setOption(ZMQ_RECONNECT_IVL_MAX, 5000, name: "ZMQ_RECONNECT_IVL_MAX")
        try socket.connect(endpoint)
        return socket
    }

    func run(stopping: borrowing Atomic<Bool>, reported: borrowing Atomic<Int>) -> Result {
        var now = MonotonicInstant.now()
        for worker in workers { handle(worker, .started, at: now, reported: reported) }
        while !stopping.load(ordering: .relaxed) {
            // Rebuilt each turn: a reconnect replaces a worker's socket.
            let polled = workers.filter { $0.socket != nil }
            let sockets = polled.map { $0.socket! }
            let clock = SimulatedWorkers.seconds(now)
            var next = clock + 0.05
            for worker in workers where !worker.exited {
                next = min(next, worker.nextTick)
                if let running = worker.running { next = min(next, running.nextProgress, running.end) }
            }
            let timeout = max(0, Int(((next - clock) * 1000).rounded(.up)))
            let readiness: ZMQPoll.Readiness
            do { readiness = try ZMQPoll.readable(sockets: sockets, timeoutMilliseconds: timeout) } catch { break }
            now = MonotonicInstant.now()
            for (index, readable) in readiness.sockets.enumerated() where readable {
                receive(polled[index], at: now, reported: reported)
            }
            now = MonotonicInstant.now()
            let clockNow = SimulatedWorkers.seconds(now)
            for worker in workers where !worker.exited {
                advance(worker, to: clockNow, at: now, reported: reported)
            }
        }
        let records = workers.map(\.record)
        workers = []
        return Result(records: records, executions: executions)
    }

    private func receive(_ worker: SimulatedWorker, at now: MonotonicInstant, reported: borrowing Atomic<Int>) {
        for _ in 0..<64 {
            let message: ReceivedMessage?
            guard let socket = worker.socket else { return }
            do { message = try socket.receive(dontWait: true) } catch { return }
            guard let message else { return }
            guard message.frames.count == 1,
                  let decoded = try? WireMessage.decode(message.frames[0], travelling: .coordinatorToWorker) else {
                worker.record.undecodable += 1
                continue
            }
            if case .assignShard = decoded {
                let clock = SimulatedWorkers.seconds(now)
                worker.record.assignmentTimes.append(clock)
                if !worker.creditsSent.isEmpty { worker.record.claimLatencies.append(clock - worker.creditsSent.removeFirst()) }
            }
            handle(worker, .received(decoded), at: now, reported: reported)
        }
    }

    /// Progress, the end of the running shard, and the liveness tick, whichever are due.
    private func advance(_ worker: SimulatedWorker, to clock: Double, at now: MonotonicInstant, reported: borrowing Atomic<Int>) {
        while let running = worker.running, clock >= min(running.nextProgress, running.end) {
            let shard = running.assignment
            if clock >= running.end {
                worker.running = nil
                worker.record.busy.append((running.start, running.end))
                worker.record.lateness.append(clock - running.end)
                worker.record.resultTimes.append(clock)
                for item in shard.items where item.ordinal >= 0 && item.ordinal < executions.count {
                    executions[item.ordinal] &+= 1
                }
                reported.add(shard.items.count, ordering: .relaxed)
                let results = shard.items.map { ItemResult.success($0.ordinal, output: nil) }
                handle(worker, .shardFinished(shardID: shard.shardID, token: shard.leaseToken, .done(results),
                                              seconds: running.end - running.start), at: now, reported: reported)
            } else {
                let step = max(1, options.progressEvery)
                let done = min(shard.items.count, running.itemsReported + step)
                worker.running!.itemsReported = done
                worker.running!.nextProgress = done >= shard.items.count ? .infinity
                    : running.start + Double(done + step) * options.itemSeconds
                handle(worker, .progress(shardID: shard.shardID, itemsDone: UInt32(done)), at: now, reported: reported)
            }
        }
        if clock >= worker.nextTick {
            worker.nextTick = clock + Self.tickSeconds
            handle(worker, .tick, at: now, reported: reported)
        }
    }

    private func handle(_ worker: SimulatedWorker, _ event: WorkerCore.Event, at now: MonotonicInstant, reported: borrowing Atomic<Int>) {
        for action in worker.core.handle(event, at: now) {
            switch action {
            case let .send(message):
                if case let .credit(slots) = message {
                    let clock = SimulatedWorkers.seconds(now)
                    worker.creditsSent += Array(repeating: clock, count: Int(slots))
                }
                if case .register = message { worker.creditsSent = [] }
                do {
                    guard let socket = worker.socket, try socket.send([try message.encoded()], dontWait: true) else {
                        worker.record.sendFailures += 1
                        continue
                    }
                } catch {
                    worker.record.sendFailures += 1
                }
            case let .execute(assignment):
                let start = SimulatedWorkers.seconds(now)
                let step = max(1, options.progressEvery)
                let count = assignment.items.count
                worker.running = Running(assignment: assignment, start: start, end: start + Double(count) * options.itemSeconds,
                                         nextProgress: count > step ? start + Double(step) * options.itemSeconds : .infinity)
            case .acknowledge, .stop:
                // Isolated shards are not waited on item by item here, and nothing is ever interrupted.
                break
            case .reconnect:
                worker.record.reconnects += 1
                // The old socket goes first, so its routing id is free for the new one.
                worker.socket = nil
                worker.socket = try? Self.connect(context: context, identity: worker.identity, endpoint: options.endpoint)
            case .exit:
                worker.exited = true
            }
        }
    }
}
