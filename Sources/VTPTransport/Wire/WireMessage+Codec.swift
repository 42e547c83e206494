import VTPVocabulary

extension WireMessage {
    /// The frame for this message. Throws when a field exceeds `WireLimits` (which the peer would reject).
    public func encoded() throws(WireEncodeError) -> [UInt8] {
        var w = WireWriter()
        w.raw(Self.magic)
        w.u8(Self.protocolVersion)
        w.u8(type.rawValue)
        switch self {
        case .register(let m):
            try requireNonEmpty(m.workerID, "register.workerID")
            try w.string(m.workerID, field: "register.workerID", limit: 255)
            try w.string(m.host, field: "register.host", limit: WireLimits.shortText)
            try w.count(m.capabilities.jobTypes.count, field: "register.jobTypes", limit: WireLimits.jobTypes)
            for jobType in m.capabilities.jobTypes {
                try requireNonEmpty(jobType, "register.jobTypes[]")
                try w.string(jobType, field: "register.jobTypes[]", limit: WireLimits.shortText)
            }
            try requirePositive(m.capabilities.threads, "register.threads")
            try requirePositive(m.capabilities.prefetch, "register.prefetch")
            w.u32(m.capabilities.threads)
            w.u32(m.capabilities.prefetch)
            w.u64(m.capabilities.memoryBytes)
            guard m.session != 0 else { throw .invalidValue(field: "register.session", reason: "must be a non-zero random nonce") }
            w.u64(m.session)
        case .credit(let n):
            try requirePositive(n, "credit.n")
            w.u32(n)
        case .assignShard(let m):
            w.i64(m.jobID)
            w.i64(m.shardID)
            w.raw(m.leaseToken.bytes)
            try requireNonEmpty(m.jobType, "assignShard.jobType")
            try w.string(m.jobType, field: "assignShard.jobType", limit: WireLimits.shortText)
            try w.string(m.parametersJSON, field: "assignShard.parametersJSON", limit: WireLimits.parametersJSON)
            try w.string(m.modelPath, field: "assignShard.modelPath", limit: WireLimits.pathText)
            try w.string(m.outputDirectory, field: "assignShard.outputDirectory", limit: WireLimits.pathText)
            try w.count(m.items.count, field: "assignShard.items", limit: WireLimits.itemsPerShard)
            for item in m.items {
                try requireNonNegative(item.ordinal, "assignShard.items[].ordinal")
                w.i64(Int64(item.ordinal))
                try w.string(item.sourceId, field: "assignShard.items[].sourceID", limit: WireLimits.shortText)
                try w.string(item.location.encoded, field: "assignShard.items[].location", limit: WireLimits.pathText)
                if let label = item.label { w.u8(1); w.i64(Int64(label)) } else { w.u8(0) }
                try w.optionalString(item.caption, field: "assignShard.items[].caption", limit: WireLimits.longText)
                try w.optionalString(item.metadata, field: "assignShard.items[].metadata", limit: WireLimits.longText)
            }
            w.u8(m.isolated ? 1 : 0)
            try w.count(m.excluded.count, field: "assignShard.excluded", limit: WireLimits.itemsPerShard)
            for item in m.excluded {
                try requireNonNegative(item.ordinal, "assignShard.excluded[].ordinal")
                w.i64(Int64(item.ordinal))
                try w.string(item.sourceId, field: "assignShard.excluded[].sourceID", limit: WireLimits.shortText)
                try w.string(item.reason, field: "assignShard.excluded[].reason", limit: WireLimits.longText)
            }
        case .progress(let shardID, let itemsDone):
            w.i64(shardID)
            w.u32(itemsDone)
        case .shardDone(let m):
            w.i64(m.shardID)
            w.raw(m.leaseToken.bytes)
            try w.count(m.results.count, field: "shardDone.results", limit: WireLimits.itemsPerShard)
            for result in m.results {
                try requireNonNegative(result.ordinal, "shardDone.results[].ordinal")
                w.i64(Int64(result.ordinal))
                w.u8(result.status.rawValue)
                try w.optionalString(result.outputLocation, field: "shardDone.results[].outputLocation", limit: WireLimits.pathText)
                try w.optionalString(result.error, field: "shardDone.results[].errorText", limit: WireLimits.longText)
                try w.count(result.timings.count, field: "shardDone.results[].timings", limit: WireLimits.stagesPerItem)
                for timing in result.timings {
                    try requireNonEmpty(timing.stage, "shardDone.results[].timings[].stage")
                    try w.string(timing.stage, field: "shardDone.results[].timings[].stage", limit: WireLimits.shortText)
                    try requireNonNegative(timing.seconds, "shardDone.results[].timings[].seconds")
                    w.f64(timing.seconds)
                }
            }
        case .shardFailed(let m):
            w.i64(m.shardID)
            w.raw(m.leaseToken.bytes)
            try w.string(m.error, field: "shardFailed.error", limit: WireLimits.longText)
            w.u8(m.kind.rawValue)
        case .heartbeat(let m):
            w.u64(m.sequence)
            try requireNonNegative(m.imagesPerSecond, "heartbeat.imagesPerSecond")
            w.f64(m.imagesPerSecond)
            w.u64(m.residentMemoryBytes)
            w.u64(m.itemsCompleted)
            try w.count(m.heldShards.count, field: "heartbeat.heldShards", limit: WireLimits.heldShards)
            for (index, shard) in m.heldShards.enumerated() {
                if index > 0, shard <= m.heldShards[index - 1] {
                    throw .invalidValue(field: "heartbeat.heldShards", reason: "must be strictly ascending")
                }
                w.i64(shard)
            }
        case .drain(let reason):
            try w.string(reason, field: "drain.reason", limit: WireLimits.longText)
        case .cancel(let scope, let reason):
            switch scope {
            case .shard(let id): w.u8(0); w.i64(id)
            case .job(let id): w.u8(1); w.i64(id)
            }
            try w.string(reason, field: "cancel.reason", limit: WireLimits.longText)
        case .disconnect(let reason):
            try w.string(reason, field: "disconnect.reason", limit: WireLimits.longText)
        case .crashed(let signal, let reason):
            guard signal > 0, signal < 128 else {
                throw .invalidValue(field: "crashed.signal", reason: "must be a signal number 1...127, got \(signal)")
            }
            w.u32(UInt32(signal))
            try w.string(reason, field: "crashed.reason", limit: WireLimits.longText)
        }
        return w.bytes
    }

    /// Parses one frame. Never traps: anything malformed, truncated, oversized or unknown throws a
    /// `WireDecodeError` naming the field.
    public static func decode(_ frame: [UInt8]) throws(WireDecodeError) -> WireMessage {
        guard frame.count <= WireLimits.maxFrameBytes else {
            throw .tooLong(field: "frame", length: frame.count, limit: WireLimits.maxFrameBytes)
        }
        var r = WireReader(frame)
        guard try r.raw(magic.count, field: "magic") == magic else { throw .badMagic }
        let version = try r.u8("version")
        guard version == protocolVersion else { throw .unsupportedVersion(version) }
        let rawType = try r.u8("type")
        guard let type = WireMessageType(rawValue: rawType) else { throw .unknownMessageType(rawType) }
        let message: WireMessage
        switch type {
        case .register:
            let workerID = try r.nonEmptyString("register.workerID", limit: 255)
            let host = try r.string("register.host", limit: WireLimits.shortText)
            let jobTypeCount = try r.count("register.jobTypes", limit: WireLimits.jobTypes, minimumElementBytes: 4)
            var jobTypes: [String] = []
            jobTypes.reserveCapacity(jobTypeCount)
            for _ in 0..<jobTypeCount {
                jobTypes.append(try r.nonEmptyString("register.jobTypes[]", limit: WireLimits.shortText))
            }
            let threads = try r.u32("register.threads")
            guard threads > 0 else { throw .invalidValue(field: "register.threads", reason: "must be at least 1") }
            let prefetch = try r.u32("register.prefetch")
            guard prefetch > 0 else { throw .invalidValue(field: "register.prefetch", reason: "must be at least 1") }
            let memory = try r.u64("register.memoryBytes")
            let session = try r.u64("register.session")
            guard session != 0 else { throw .invalidValue(field: "register.session", reason: "must be a non-zero random nonce") }
            message = .register(RegisterMessage(
                workerID: workerID, host: host,
                capabilities: WorkerCapabilities(jobTypes: jobTypes, threads: threads, prefetch: prefetch, memoryBytes: memory),
                session: session))
        case .credit:
            let n = try r.u32("credit.n")
            guard n > 0 else { throw .invalidValue(field: "credit.n", reason: "must be at least 1") }
            message = .credit(n)
        case .assignShard:
            let jobID = try r.i64("assignShard.jobID")
            let shardID = try r.i64("assignShard.shardID")
            let token = try leaseToken(&r, "assignShard.leaseToken")
            let jobType = try r.nonEmptyString("assignShard.jobType", limit: WireLimits.shortText)
            let parameters = try r.string("assignShard.parametersJSON", limit: WireLimits.parametersJSON)
            let modelPath = try r.string("assignShard.modelPath", limit: WireLimits.pathText)
            let outputDirectory = try r.string("assignShard.outputDirectory", limit: WireLimits.pathText)
            // Smallest item: ordinal + two empty strings + three absent optionals.
            let itemCount = try r.count("assignShard.items", limit: WireLimits.itemsPerShard, minimumElementBytes: 19)
            var items: [JobItem] = []
            items.reserveCapacity(itemCount)
            for _ in 0..<itemCount {
                let ordinal = try readOrdinal(&r, "assignShard.items[].ordinal")
                let sourceID = try r.string("assignShard.items[].sourceID", limit: WireLimits.shortText)
                let text = try r.nonEmptyString("assignShard.items[].location", limit: WireLimits.pathText)
                let location: ItemLocation
                do { location = try ItemLocation(encoded: text) } catch {
                    throw .invalidValue(field: "assignShard.items[].location", reason: error.detail)
                }
                var label: Int?
                switch try r.u8("assignShard.items[].label") {
                case 0: label = nil
                case 1:
                    let value = try r.i64("assignShard.items[].label")
                    guard let fits = Int(exactly: value) else {
                        throw .invalidValue(field: "assignShard.items[].label", reason: "\(value) does not fit an Int")
                    }
                    label = fits
                case let flag: throw .invalidValue(field: "assignShard.items[].label", reason: "presence flag \(flag), expected 0 or 1")
                }
                let caption = try r.optionalString("assignShard.items[].caption", limit: WireLimits.longText)
                let metadata = try r.optionalString("assignShard.items[].metadata", limit: WireLimits.longText)
                items.append(JobItem(ordinal: ordinal, sourceId: sourceID, location: location, label: label, caption: caption,
                                     metadata: metadata))
            }
            let isolated: Bool
            switch try r.u8("assignShard.isolated") {
            case 0: isolated = false
            case 1: isolated = true
            case let flag: throw .invalidValue(field: "assignShard.isolated", reason: "flag \(flag), expected 0 or 1")
            }
            // Smallest excluded item: ordinal + two empty strings.
            let excludedCount = try r.count("assignShard.excluded", limit: WireLimits.itemsPerShard, minimumElementBytes: 16)
            var excluded: [ExcludedItem] = []
            excluded.reserveCapacity(excludedCount)
            for _ in 0..<excludedCount {
                let ordinal = try readOrdinal(&r, "assignShard.excluded[].ordinal")
                let sourceID = try r.string("assignShard.excluded[].sourceID", limit: WireLimits.shortText)
                let reason = try r.string("assignShard.excluded[].reason", limit: WireLimits.longText)
                excluded.append(ExcludedItem(ordinal: ordinal, sourceId: sourceID, reason: reason))
            }
            message = .assignShard(AssignShardMessage(
                jobID: jobID, shardID: shardID, leaseToken: token, jobType: jobType, parametersJSON: parameters,
                modelPath: modelPath, outputDirectory: outputDirectory, items: items, isolated: isolated, excluded: excluded))
        case .progress:
            let shardID = try r.i64("progress.shardID")
            let done = try r.u32("progress.itemsDone")
            message = .progress(shardID: shardID, itemsDone: done)
        case .shardDone:
            let shardID = try r.i64("shardDone.shardID")
            let token = try leaseToken(&r, "shardDone.leaseToken")
            // Smallest result: ordinal, status, two absent optionals, empty timings.
            let count = try r.count("shardDone.results", limit: WireLimits.itemsPerShard, minimumElementBytes: 15)
            var results: [ItemResult] = []
            results.reserveCapacity(count)
            for _ in 0..<count {
                let ordinal = try readOrdinal(&r, "shardDone.results[].ordinal")
                let rawStatus = try r.u8("shardDone.results[].status")
                guard let status = ItemResult.Status(rawValue: rawStatus) else {
                    throw .invalidValue(field: "shardDone.results[].status", reason: "expected 0 (ok) or 1 (failed), got \(rawStatus)")
                }
                let output = try r.optionalString("shardDone.results[].outputLocation", limit: WireLimits.pathText)
                let errorText = try r.optionalString("shardDone.results[].errorText", limit: WireLimits.longText)
                let timingCount = try r.count("shardDone.results[].timings", limit: WireLimits.stagesPerItem, minimumElementBytes: 12)
                var timings: [StageTiming] = []
                timings.reserveCapacity(timingCount)
                for _ in 0..<timingCount {
                    let stage = try r.nonEmptyString("shardDone.results[].timings[].stage", limit: WireLimits.shortText)
                    let seconds = try r.nonNegativeF64("shardDone.results[].timings[].seconds")
                    timings.append(StageTiming(stage: stage, seconds: seconds))
                }
                results.append(ItemResult(ordinal: ordinal, status: status, outputLocation: output, error: errorText, timings: timings))
            }
            message = .shardDone(ShardDoneMessage(shardID: shardID, leaseToken: token, results: results))
        case .shardFailed:
            let shardID = try r.i64("shardFailed.shardID")
            let token = try leaseToken(&r, "shardFailed.leaseToken")
            let error = try r.string("shardFailed.error", limit: WireLimits.longText)
            let rawKind = try r.u8("shardFailed.kind")
            guard let kind = ShardFailedMessage.Kind(rawValue: rawKind) else {
                throw .invalidValue(field: "shardFailed.kind", reason: "expected 0 (shard), 1 (hand-back) or 2 (job), got \(rawKind)")
            }
            message = .shardFailed(ShardFailedMessage(shardID: shardID, leaseToken: token, error: error, kind: kind))
        case .heartbeat:
            let sequence = try r.u64("heartbeat.sequence")
            let rate = try r.nonNegativeF64("heartbeat.imagesPerSecond")
            let memory = try r.u64("heartbeat.residentMemoryBytes")
            let completed = try r.u64("heartbeat.itemsCompleted")
            let heldCount = try r.count("heartbeat.heldShards", limit: WireLimits.heldShards, minimumElementBytes: 8)
            var held: [Int64] = []
            held.reserveCapacity(heldCount)
            for _ in 0..<heldCount {
                let shard = try r.i64("heartbeat.heldShards[]")
                // One canonical encoding per set, so a receiver never has to reconcile duplicates.
                if let last = held.last, shard <= last {
                    throw .invalidValue(field: "heartbeat.heldShards", reason: "must be strictly ascending")
                }
                held.append(shard)
            }
            message = .heartbeat(HeartbeatMessage(sequence: sequence, imagesPerSecond: rate,
                                                  residentMemoryBytes: memory, itemsCompleted: completed, heldShards: held))
        case .drain:
            message = .drain(reason: try r.string("drain.reason", limit: WireLimits.longText))
        case .cancel:
            let rawScope = try r.u8("cancel.scope")
            let id = try r.i64("cancel.id")
            let scope: CancelScope
            switch rawScope {
            case 0: scope = .shard(id)
            case 1: scope = .job(id)
            default: throw .invalidValue(field: "cancel.scope", reason: "expected 0 (shard) or 1 (job), got \(rawScope)")
            }
            message = .cancel(scope, reason: try r.string("cancel.reason", limit: WireLimits.longText))
        case .disconnect:
            message = .disconnect(reason: try r.string("disconnect.reason", limit: WireLimits.longText))
        case .crashed:
            let signal = try r.u32("crashed.signal")
            guard signal > 0, signal < 128 else {
                throw .invalidValue(field: "crashed.signal", reason: "expected a signal number 1...127, got \(signal)")
            }
            message = .crashed(signal: Int32(signal), reason: try r.string("crashed.reason", limit: WireLimits.longText))
        }
        try r.finish()
        return message
    }

    /// Decodes and also checks the message may travel in `direction`.
    public static func decode(_ frame: [UInt8], travelling direction: WireDirection) throws(WireDecodeError) -> WireMessage {
        let message = try decode(frame)
        guard message.type.direction.allows(direction) else { throw .wrongDirection(message.type) }
        return message
    }

    private static func leaseToken(_ r: inout WireReader, _ field: String) throws(WireDecodeError) -> LeaseToken {
        LeaseToken(bytes: try r.raw(16, field: field))!
    }

    /// A job-wide item ordinal: a non-negative 64-bit integer.
    private static func readOrdinal(_ r: inout WireReader, _ field: String) throws(WireDecodeError) -> Int {
        let value = try r.i64(field)
        guard value >= 0, let ordinal = Int(exactly: value) else {
            throw .invalidValue(field: field, reason: "expected a non-negative ordinal, got \(value)")
        }
        return ordinal
    }
}

private func requireNonEmpty(_ value: String, _ field: String) throws(WireEncodeError) {
    guard !value.isEmpty else { throw .invalidValue(field: field, reason: "must not be empty") }
}

private func requirePositive(_ value: UInt32, _ field: String) throws(WireEncodeError) {
    guard value > 0 else { throw .invalidValue(field: field, reason: "must be at least 1") }
}

private func requireNonNegative(_ value: Int, _ field: String) throws(WireEncodeError) {
    guard value >= 0 else { throw .invalidValue(field: field, reason: "must not be negative, got \(value)") }
}

private func requireNonNegative(_ value: Double, _ field: String) throws(WireEncodeError) {
    guard value.isFinite, value >= 0 else {
        throw .invalidValue(field: field, reason: "expected a finite non-negative number, got \(value)")
    }
}
