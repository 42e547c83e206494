import Foundation
import Testing
import VTPVocabulary
@testable import VTPTransport

@Suite struct EndpointAddressTests {
    @Test(arguments: ["tcp://127.0.0.1:5555", "tcp://127.0.0.1:*", "tcp://[::1]:6000", "tcp://localhost:7000",
                      "ipc:///tmp/vtp.sock", "inproc://coordinator"])
    func loopbackEndpointsAreLocal(_ text: String) throws {
        #expect(try EndpointAddress(text).isLocalOnly)
    }

    @Test(arguments: ["tcp://0.0.0.0:5555", "tcp://*:5555", "tcp://10.0.0.5:5555", "tcp://[::]:5555", "tcp://coord.example:1"])
    func networkEndpointsAreNotLocal(_ text: String) throws {
        #expect(try !EndpointAddress(text).isLocalOnly)
    }

    @Test(arguments: ["", "tcp//127.0.0.1:1", "udp://127.0.0.1:1", "tcp://127.0.0.1", "tcp://127.0.0.1:0",
                      "tcp://127.0.0.1:70000", "tcp://:5555", "tcp://::1:5555", "tcp://[::1:5555", "tcp://[::1]5555",
                      "ipc://", "tcp://127.0.0.1:55 55", "tcp://127.0.0.1:abc"])
    func malformedEndpointsAreRejected(_ text: String) {
        #expect(throws: TransportError.self) { try EndpointAddress(text) }
    }

    @Test func partsAreParsed() throws {
        let v6 = try EndpointAddress("tcp://[::1]:6000")
        #expect(v6.host == "::1" && v6.port == 6000 && v6.needsIPv6)
        let ephemeral = try EndpointAddress("tcp://localhost:*")
        #expect(ephemeral.port == nil && !ephemeral.needsIPv6)
        #expect(try EndpointAddress("ipc:///run/vtp/c.sock").path == "/run/vtp/c.sock")
    }

    /// `zmq_bind` takes `localhost` for an interface name and fails with ENODEV; binding resolves it.
    @Test func hostNamesAreResolvedForBindingAndJudgedByTheirAddress() throws {
        let named = try EndpointAddress("tcp://localhost:7000").resolvedForBinding()
        #expect(named.host == "127.0.0.1" && named.port == 7000 && named.description == "tcp://127.0.0.1:7000")
        #expect(named.isLocalOnly && !named.needsIPv6)
        #expect(try EndpointAddress("tcp://localhost:*").resolvedForBinding().description == "tcp://127.0.0.1:*")
        for unchanged in ["tcp://127.0.0.1:5", "tcp://*:5", "tcp://0.0.0.0:5", "tcp://[::1]:6", "ipc:///tmp/x.sock", "inproc://a"] {
            #expect(try EndpointAddress(unchanged).resolvedForBinding().description == unchanged)
        }
        // All of 127.0.0.0/8 is loopback (Debian maps the host name to 127.0.1.1); nothing next to it is.
        #expect(try EndpointAddress("tcp://127.0.1.1:5").isLocalOnly)
        #expect(try !EndpointAddress("tcp://128.0.0.1:5").isLocalOnly)
        #expect(try !EndpointAddress("tcp://[::2]:5").isLocalOnly)
    }
}

@Suite struct CurveKeyTests {
    @Test func generatedPairsAreValidDistinctAndConsistent() throws {
        #expect(ZMQContext.has("curve"))
        let a = try CurveKeyPair.generate()
        let b = try CurveKeyPair.generate()
        #expect(a.publicKey != b.publicKey && a.secretKey != b.secretKey)
        #expect(a.publicKey.z85.utf8.count == 40 && a.publicKey.rawBytes.count == 32)
        #expect(try CurveKeyPair(secretKey: a.secretKey) == a)
        #expect(!a.secretKey.description.contains(a.secretKey.z85))
    }

    @Test func keyFilesRoundTripWithPrivateSecret() throws {
        let dir = try TemporaryDirectory()
        let prefix = dir.path + "/worker1"
        let pair = try CurveKeyPair.generate()
        try pair.write(prefix: prefix)
        let attributes = try FileManager.default.attributesOfItem(atPath: prefix + ".key")
        #expect((attributes[.posixPermissions] as? NSNumber)?.intValue == 0o600)
        #expect(try String(contentsOfFile: prefix + ".pub", encoding: .utf8) == pair.publicKey.z85 + "\n")
        #expect(try CurveKeyPair.load(prefix: prefix) == pair)
        #expect(try CurveKey.load(path: prefix + ".pub") == pair.publicKey)
        // Never silently overwritten.
        #expect(throws: TransportError.keyFile(path: prefix + ".key", reason: "already exists (refusing to overwrite)")) {
            try CurveKeyPair.generate().write(prefix: prefix)
        }
        #expect(try CurveKeyPair.load(prefix: prefix) == pair)
        let replacement = try CurveKeyPair.generate()
        try replacement.write(prefix: prefix, overwrite: true)
        #expect(try CurveKeyPair.load(prefix: prefix) == replacement)
        // A .pub that does not belong to the .key is detected.
        try pair.publicKey.z85.write(toFile: prefix + ".pub", atomically: true, encoding: .utf8)
        #expect(throws: TransportError.self) { try CurveKeyPair.load(prefix: prefix) }
    }

    @Test func malformedKeysAreRejected() {
        #expect(throws: TransportError.invalidKey("expected 40 Z85 characters, got 39")) {
            try CurveKey(z85: String(repeating: "a", count: 39))
        }
        #expect(throws: TransportError.invalidKey("contains characters outside the Z85 alphabet")) {
            try CurveKey(z85: String(repeating: "a", count: 39) + "~")
        }
        #expect(throws: TransportError.keyFile(path: "/nonexistent/key.pub", reason: "cannot open: No such file or directory")) {
            try CurveKey.load(path: "/nonexistent/key.pub")
        }
    }
}

/// A unique temporary directory removed when the value is released.
final class TemporaryDirectory: Sendable {
    let path: String

    init() throws {
        let base = FileManager.default.temporaryDirectory.appendingPathComponent("vtp-transport-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: base, withIntermediateDirectories: true)
        path = base.path
    }

    deinit { try? FileManager.default.removeItem(atPath: path) }
}
