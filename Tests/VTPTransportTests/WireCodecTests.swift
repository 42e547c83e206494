import Testing
import VTPTransportTestSupport
import VTPVocabulary
import VTPRandom
@testable import VTPTransport

extension SerialTransportTests {
    @Suite struct WireCodecTests {
        @Test func everyMessageTypeHasASample() {
            let covered = Set(SampleMessages.all.map(\.type))
            #expect(covered == Set(WireMessageType.allCases))
        }

        @Test(arguments: SampleMessages.all)
        func roundTrips(_ message: WireMessage) throws {
            let frame = try message.encoded()
            #expect(Array(frame.prefix(5)) == Array("VTP".utf8) + [WireMessage.protocolVersion, message.type.rawValue])
            #expect(try WireMessage.decode(frame) == message)
        }

        @Test func fieldsAreLittleEndianWithLengthPrefixes() throws {
            let frame = try WireMessage.progress(shardID: 0x0102_0304_0506_0708, itemsDone: 0x0A0B_0C0D).encoded()
            #expect(frame == Array("VTP".utf8) + [WireMessage.protocolVersion, 0x04, 8, 7, 6, 5, 4, 3, 2, 1, 0x0D, 0x0C, 0x0B, 0x0A])
            let drain = try WireMessage.drain(reason: "ab").encoded()
            #expect(Array(drain.dropFirst(5)) == [2, 0, 0, 0, 0x61, 0x62])
        }

        @Test func everyTruncationOfEveryMessageFails() throws {
            var checked = 0, expected = 0
            for message in SampleMessages.all {
                let frame = try message.encoded()
                expected += frame.count
                for length in 0..<frame.count {
                    #expect(throws: WireDecodeError.self) { try WireMessage.decode(Array(frame.prefix(length))) }
                    checked += 1
                }
            }
            #expect(checked == expected && checked > 900)
        }

        @Test func randomBytesAlwaysFail() {
            var rng = SplitMix64(seed: 0xF00D)
            for _ in 0..<20_000 {
                let count = Int(rng.next() % 300)
                let bytes = (0..<count).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
                #expect(throws: WireDecodeError.self) { try WireMessage.decode(bytes) }
            }
        }

        /// Random payloads behind a valid header reach every field decoder. They may decode by chance (a
        /// credit is any 4 non-zero bytes), but then the encoding must be canonical: re-encoding gives the
        /// same bytes, which proves nothing was silently accepted loosely.
        @Test func randomBodiesBehindValidHeadersNeverCrashAndAreCanonical() throws {
            var rng = SplitMix64(seed: 7)
            var decoded = 0, rejected = 0
            for type in WireMessageType.allCases {
                for _ in 0..<5_000 {
                    let count = Int(rng.next() % 64)
                    let frame = Array("VTP".utf8) + [WireMessage.protocolVersion, type.rawValue] + (0..<count).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
                    do {
                        let message = try WireMessage.decode(frame)
                        #expect(try message.encoded() == frame)
                        decoded += 1
                    } catch {
                        rejected += 1
                    }
                }
            }
            #expect(rejected > decoded)
        }

        /// Flipping bytes of valid frames (including lengths and counts) must never crash either.
        @Test func mutatedValidFramesNeverCrashAndAreCanonical() throws {
            var rng = SplitMix64(seed: 99)
            for message in SampleMessages.all {
                let original = try message.encoded()
                for _ in 0..<2_000 {
                    var frame = original
                    for _ in 0...(rng.next() % 3) {
                        frame[Int(rng.next() % UInt64(frame.count))] = UInt8(truncatingIfNeeded: rng.next())
                    }
                    if let decoded = try? WireMessage.decode(frame) {
                        #expect(try decoded.encoded() == frame)
                    }
                }
            }
        }

        @Test func headerErrorsAreSpecific() throws {
            let valid = try WireMessage.credit(1).encoded()
            var bad = valid
            bad[0] = UInt8(ascii: "X")
            #expect(throws: WireDecodeError.badMagic) { try WireMessage.decode(bad) }
            bad = valid
            bad[3] = 1
            #expect(throws: WireDecodeError.unsupportedVersion(1)) { try WireMessage.decode(bad) }
            bad = valid
            bad[4] = 0x7F
            #expect(throws: WireDecodeError.unknownMessageType(0x7F)) { try WireMessage.decode(bad) }
            #expect(throws: WireDecodeError.trailingBytes(1)) { try WireMessage.decode(valid + [0]) }
            #expect(throws: WireDecodeError.truncated(field: "magic", needed: 3, available: 0)) { try WireMessage.decode([]) }
        }

        @Test func fieldErrorsNameTheField() throws {
            let header = Array("VTP".utf8) + [WireMessage.protocolVersion]
            // A forged item count far beyond the frame must fail before any allocation.
            var assign = try SampleMessages.assign.encoded()
            // The items, then the isolation flag and an empty excluded list, end the frame.
            let countOffset = assign.count - (try itemsByteCount(SampleMessages.assign)) - 4 - 5
            assign.replaceSubrange(countOffset..<countOffset + 4, with: [0xFF, 0xFF, 0x00, 0x00])
            #expect(throws: WireDecodeError.truncated(field: "assignShard.items", needed: 0xFFFF * 19, available: assign.count - countOffset - 4)) {
                try WireMessage.decode(assign)
            }
            assign.replaceSubrange(countOffset..<countOffset + 4, with: [0xFF, 0xFF, 0xFF, 0xFF])
            #expect(throws: WireDecodeError.tooLong(field: "assignShard.items", length: 0xFFFF_FFFF, limit: WireLimits.itemsPerShard)) {
                try WireMessage.decode(assign)
            }
            // Invalid UTF-8 in a string.
            #expect(throws: WireDecodeError.invalidUTF8(field: "drain.reason")) {
                try WireMessage.decode(header + [0x08, 2, 0, 0, 0, 0xC3, 0x28])
            }
            // String length over its limit.
            #expect(throws: WireDecodeError.tooLong(field: "register.workerID", length: 256, limit: 255)) {
                try WireMessage.decode(header + [0x01, 0, 1, 0, 0] + [UInt8](repeating: 0x41, count: 256))
            }
            // Zero credit is meaningless.
            #expect(throws: WireDecodeError.invalidValue(field: "credit.n", reason: "must be at least 1")) {
                try WireMessage.decode(header + [0x02, 0, 0, 0, 0])
            }
            // Cancel scope outside 0/1.
            #expect(throws: WireDecodeError.self) { try WireMessage.decode(header + [0x09, 2] + [UInt8](repeating: 0, count: 12)) }
            // A boolean byte that is neither 0 nor 1.
            var done = try SampleMessages.done.encoded()
            let statusOffset = 5 + 8 + 16 + 4 + 8
            #expect(done[statusOffset] == 0)
            done[statusOffset] = 9
            #expect(throws: WireDecodeError.invalidValue(field: "shardDone.results[].status", reason: "expected 0 (ok) or 1 (failed), got 9")) {
                try WireMessage.decode(done)
            }
            done[statusOffset] = 0
            done[statusOffset + 1] = 2
            #expect(throws: WireDecodeError.invalidValue(field: "shardDone.results[].outputLocation.present", reason: "boolean byte must be 0 or 1, got 2")) {
                try WireMessage.decode(done)
            }
            // NaN rate in a heartbeat.
            var heartbeat = try WireMessage.heartbeat(HeartbeatMessage(sequence: 1, imagesPerSecond: 1)).encoded()
            withUnsafeBytes(of: Double.nan.bitPattern.littleEndian) { heartbeat.replaceSubrange(13..<21, with: $0) }
            #expect(throws: WireDecodeError.self) { try WireMessage.decode(heartbeat) }
            // Held shards must be listed once each, ascending.
            var held = try WireMessage.heartbeat(HeartbeatMessage(sequence: 1, heldShards: [4, 9])).encoded()
            held.replaceSubrange((held.count - 8)..., with: [4, 0, 0, 0, 0, 0, 0, 0])
            #expect(throws: WireDecodeError.invalidValue(field: "heartbeat.heldShards", reason: "must be strictly ascending")) {
                try WireMessage.decode(held)
            }
            // A register without a session nonce (0) is refused: the coordinator could not tell restarts apart.
            var register = try SampleMessages.register.encoded()
            register.replaceSubrange((register.count - 8)..., with: [UInt8](repeating: 0, count: 8))
            #expect(throws: WireDecodeError.invalidValue(field: "register.session", reason: "must be a non-zero random nonce")) {
                try WireMessage.decode(register)
            }
        }

        @Test func everyRegistrationDrawsItsOwnSession() {
            let capabilities = WorkerCapabilities(jobTypes: [], threads: 1, prefetch: 1, memoryBytes: 0)
            let sessions = (0..<100).map { _ in RegisterMessage(workerID: "w", host: "h", capabilities: capabilities).session }
            #expect(Set(sessions).count == 100 && !sessions.contains(0))
        }

        @Test func directionIsEnforced() throws {
            let assign = try SampleMessages.assign.encoded()
            #expect(throws: WireDecodeError.wrongDirection(.assignShard)) {
                try WireMessage.decode(assign, travelling: .workerToCoordinator)
            }
            #expect(try WireMessage.decode(assign, travelling: .coordinatorToWorker) == SampleMessages.assign)
            let register = try SampleMessages.register.encoded()
            #expect(throws: WireDecodeError.wrongDirection(.register)) {
                try WireMessage.decode(register, travelling: .coordinatorToWorker)
            }
            let heartbeat = try WireMessage.heartbeat(HeartbeatMessage(sequence: 3)).encoded()
            #expect(try WireMessage.decode(heartbeat, travelling: .coordinatorToWorker) == .heartbeat(HeartbeatMessage(sequence: 3)))
            #expect(try WireMessage.decode(heartbeat, travelling: .workerToCoordinator) == .heartbeat(HeartbeatMessage(sequence: 3)))
        }

        @Test func encoderRefusesWhatTheDecoderWouldReject() {
            let longID = String(repeating: "w", count: 256)
            #expect(throws: WireEncodeError.tooLong(field: "register.workerID", length: 256, limit: 255)) {
                try WireMessage.register(RegisterMessage(workerID: longID, host: "h",
                    capabilities: WorkerCapabilities(jobTypes: [], threads: 1, prefetch: 1, memoryBytes: 0))).encoded()
            }
            #expect(throws: WireEncodeError.invalidValue(field: "credit.n", reason: "must be at least 1")) {
                try WireMessage.credit(0).encoded()
            }
            #expect(throws: WireEncodeError.self) {
                try WireMessage.heartbeat(HeartbeatMessage(sequence: 0, imagesPerSecond: -1)).encoded()
            }
            #expect(throws: WireEncodeError.self) {
                try WireMessage.heartbeat(HeartbeatMessage(sequence: 0, heldShards: [2, 1])).encoded()
            }
            #expect(throws: WireEncodeError.self) {
                try WireMessage.register(RegisterMessage(workerID: "w", host: "h",
                    capabilities: WorkerCapabilities(jobTypes: [], threads: 1, prefetch: 1, memoryBytes: 0), session: 0)).encoded()
            }
            #expect(throws: WireEncodeError.self) {
                try WireMessage.register(RegisterMessage(workerID: "", host: "h",
                    capabilities: WorkerCapabilities(jobTypes: [], threads: 1, prefetch: 1, memoryBytes: 0))).encoded()
            }
        }

        @Test func largeShardStaysWithinFrameLimit() throws {
            let items = (0..<10_000).map { JobItem(ordinal: $0, sourceId: "id-\($0)", location: .file(path: "/data/images/\($0).jpg"), caption: "caption \($0)") }
            let message = WireMessage.assignShard(AssignShardMessage(jobID: 1, shardID: 2, leaseToken: .random(), jobType: "encode",
                                                                     parametersJSON: "{}", modelPath: "m", outputDirectory: "o", items: items))
            let start = ContinuousClock.now
            let frame = try message.encoded()
            let encoded = ContinuousClock.now
            #expect(frame.count < WireLimits.maxFrameBytes)
            #expect(try WireMessage.decode(frame) == message)
            print("10k-item shard: \(frame.count) bytes, encode \(encoded - start), decode \(ContinuousClock.now - encoded)")
        }

        @Test func leaseTokenRequiresSixteenBytes() {
            #expect(LeaseToken(bytes: Array(repeating: 0, count: 15)) == nil)
            #expect(LeaseToken.random() != LeaseToken.random())
            #expect(SampleMessages.token.description == "000102030405060708090a0b0c0d0e0f")
        }

        private func itemsByteCount(_ message: WireMessage) throws -> Int {
            guard case .assignShard(var m) = message else { return 0 }
            let full = try message.encoded().count
            m.items = []
            return full - (try WireMessage.assignShard(m).encoded().count)
        }
    }
}
