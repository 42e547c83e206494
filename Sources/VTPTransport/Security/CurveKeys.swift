import CZeroMQ
import SystemPackage
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A CURVE key (public or secret) in its 40-character Z85 text form.
public struct CurveKey: Hashable, Sendable, CustomStringConvertible {
    /// The Z85 text (40 characters), as stored in key files and given to `ZMQ_CURVE_*` options.
    public let z85: String

    private static let alphabet = Set("0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.-:+=^!/*?&<>()[]{}@%$#".utf8)

    /// Validates that `z85` is 40 characters of the Z85 alphabet (surrounding whitespace is trimmed, so
    /// key files may end in a newline).
    public init(z85 text: String) throws(TransportError) {
        let trimmed = text.trimmingASCIIWhitespace()
        guard trimmed.utf8.count == 40 else {
            throw .invalidKey("expected 40 Z85 characters, got \(trimmed.utf8.count)")
        }
        guard trimmed.utf8.allSatisfy(Self.alphabet.contains) else {
            throw .invalidKey("contains characters outside the Z85 alphabet")
        }
        self.z85 = trimmed
    }

    /// The 32 raw key bytes.
    public var rawBytes: [UInt8] {
        var out = [UInt8](repeating: 0, count: 32)
        _ = zmq_z85_decode(&out, z85)
        return out
    }

    /// Prints only a prefix so secret keys never end up whole in logs.
    public var description: String { String(z85.prefix(8)) + "…" }

    /// Reads a Z85 key from a text file.
    public static func load(path: String) throws(TransportError) -> CurveKey {
        try CurveKey(z85: try readSmallTextFile(path))
    }
}

/// A CURVE public/secret key pair.
public struct CurveKeyPair: Sendable, Equatable {
    public let publicKey: CurveKey
    public let secretKey: CurveKey

    public init(publicKey: CurveKey, secretKey: CurveKey) {
        self.publicKey = publicKey
        self.secretKey = secretKey
    }

    /// A fresh key pair from `zmq_curve_keypair`.
    public static func generate() throws(TransportError) -> CurveKeyPair {
        var publicText = [CChar](repeating: 0, count: 41)
        var secretText = [CChar](repeating: 0, count: 41)
        do { try zmqCheck(zmq_curve_keypair(&publicText, &secretText), "zmq_curve_keypair") } catch { throw .zmq(error) }
        return CurveKeyPair(publicKey: try CurveKey(z85: zmqKeyText(publicText)),
                            secretKey: try CurveKey(z85: zmqKeyText(secretText)))
    }

    /// The pair for a secret key, deriving the public half with `zmq_curve_public`.
    public init(secretKey: CurveKey) throws(TransportError) {
        var publicText = [CChar](repeating: 0, count: 41)
        do { try zmqCheck(zmq_curve_public(&publicText, secretKey.z85), "zmq_curve_public") } catch { throw .zmq(error) }
        self.init(publicKey: try CurveKey(z85: zmqKeyText(publicText)), secretKey: secretKey)
    }

    /// Loads `PREFIX.key` (the secret key) and checks `PREFIX.pub`, when present, matches it.
    public static func load(prefix: String) throws(TransportError) -> CurveKeyPair {
        let pair = try CurveKeyPair(secretKey: try CurveKey.load(path: prefix + ".key"))
        if access(prefix + ".pub", F_OK) == 0 {
            let stored = try CurveKey.load(path: prefix + ".pub")
            guard stored == pair.publicKey else {
                throw .invalidKey("\(prefix).pub does not match the public key of \(prefix).key")
            }
        }
        return pair
    }

    /// Writes `PREFIX.key` (mode 0600, created exclusively so it is never readable by others even
    /// briefly) and `PREFIX.pub` (mode 0644). Refuses to overwrite existing files unless `overwrite`.
    public func write(prefix: String, overwrite: Bool = false) throws(TransportError) {
        if !overwrite {
            // Check both first so a refusal never leaves half a pair behind.
            for path in [prefix + ".key", prefix + ".pub"] where access(path, F_OK) == 0 {
                throw .keyFile(path: path, reason: "already exists (refusing to overwrite)")
            }
        }
        try writeKeyFile(prefix + ".key", contents: secretKey.z85 + "\n", mode: 0o600, overwrite: overwrite)
        try writeKeyFile(prefix + ".pub", contents: publicKey.z85 + "\n", mode: 0o644, overwrite: overwrite)
    }
}

/// The Z85 text libzmq wrote into a 41-byte NUL-terminated buffer.
private func zmqKeyText(_ buffer: [CChar]) -> String {
    String(decoding: buffer.prefix(while: { $0 != 0 }).map { UInt8(bitPattern: $0) }, as: UTF8.self)
}

private func writeKeyFile(_ path: String, contents: String, mode: mode_t, overwrite: Bool) throws(TransportError) {
    if overwrite { unlink(path) }
    let descriptor: FileDescriptor
    do {
        descriptor = try FileDescriptor.open(FilePath(path), .writeOnly, options: [.create, .exclusiveCreate, .closeOnExec],
                                             permissions: FilePermissions(rawValue: mode))
    } catch {
        throw .keyFile(path: path, reason: "cannot create: \(systemReason(error))")
    }
    defer { try? descriptor.close() }
    // umask may have cleared bits of `mode`; the secret file must end up exactly 0600 (no fchmod in swift-system).
    fchmod(descriptor.rawValue, mode)
    do { try descriptor.writeAll(contents.utf8) } catch {
        throw .keyFile(path: path, reason: "cannot write: \(systemReason(error))")
    }
}

private func readSmallTextFile(_ path: String) throws(TransportError) -> String {
    let descriptor: FileDescriptor
    do { descriptor = try FileDescriptor.open(FilePath(path), .readOnly, options: [.closeOnExec]) } catch {
        throw .keyFile(path: path, reason: "cannot open: \(systemReason(error))")
    }
    defer { try? descriptor.close() }
    var bytes: [UInt8] = []
    var buffer = [UInt8](repeating: 0, count: 256)
    do {
        // To the end of the file: a key file is 41 bytes, so anything reaching 256 is not one.
        while bytes.count < 256 {
            let count = try buffer.withUnsafeMutableBytes { try descriptor.read(into: $0) }
            if count == 0 { break }
            bytes += buffer[..<count]
        }
    } catch {
        throw .keyFile(path: path, reason: "cannot read: \(systemReason(error))")
    }
    guard bytes.count < 256 else { throw .keyFile(path: path, reason: "too large to be a Z85 key file") }
    return String(decoding: bytes, as: UTF8.self)
}

/// strerror's text of a failed call, as the rest of vtp words it.
private func systemReason(_ error: any Error) -> String {
    guard let code = error as? Errno else { return "\(error)" }
    return String(cString: strerror(code.rawValue))
}

extension String {
    func trimmingASCIIWhitespace() -> String {
        let scalars = unicodeScalars
        let isSpace: (Unicode.Scalar) -> Bool = { $0 == " " || $0 == "\n" || $0 == "\r" || $0 == "\t" }
        guard let first = scalars.firstIndex(where: { !isSpace($0) }),
              let last = scalars.lastIndex(where: { !isSpace($0) }) else { return "" }
        return String(scalars[first...last])
    }
}
