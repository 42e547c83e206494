import CZlib
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Inputs that have taken workers down: images whose size, not their bytes, is the problem, and
/// files that are not files.
public enum PoisonInputs {
    /// Writes a valid 8-bit RGB PNG of `width`x`height` whose every row is `row` (3 * `width`
    /// bytes; black when nil), compressed as it is produced, so a 2 x 50,000,000 image (350 MB of
    /// raw rows) is made in constant memory and takes about half a megabyte on disk.
    public static func writePNG(width: Int, height: Int, row: [UInt8]? = nil, to path: String) throws {
        let pixels = row ?? [UInt8](repeating: 0, count: width * 3)
        precondition(pixels.count == width * 3, "a row is 3 * width bytes")
        guard let out = fopen(path, "wb") else { throw PoisonInputError(message: "\(path): \(String(cString: strerror(errno)))") }
        defer { fclose(out) }
        func chunk(_ type: String, _ body: [UInt8]) {
            var length = UInt32(body.count).bigEndian
            fwrite(&length, 4, 1, out)
            let typed = Array(type.utf8) + body
            fwrite(typed, 1, typed.count, out)
            var crc = UInt32(crc32(0, typed, UInt32(typed.count))).bigEndian
            fwrite(&crc, 4, 1, out)
        }
        let signature: [UInt8] = [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A]
        fwrite(signature, 1, signature.count, out)
        func be32(_ v: Int) -> [UInt8] { [UInt8(v >> 24 & 0xFF), UInt8(v >> 16 & 0xFF), UInt8(v >> 8 & 0xFF), UInt8(v & 0xFF)] }
        chunk("IHDR", be32(width) + be32(height) + [8, 2, 0, 0, 0])

        var stream = z_stream()
        guard deflateInit_(&stream, 6, ZLIB_VERSION, Int32(MemoryLayout<z_stream>.size)) == Z_OK else {
            throw PoisonInputError(message: "deflateInit failed")
        }
        defer { deflateEnd(&stream) }
        // Many rows per deflate call (filter byte 0, then the pixels) keep the loop cheap.
        let rowsPerBlock = max(1, min(height, (1 << 20) / (pixels.count + 1)))
        var block = [UInt8]()
        block.reserveCapacity(rowsPerBlock * (pixels.count + 1))
        for _ in 0..<rowsPerBlock { block.append(0); block.append(contentsOf: pixels) }
        var compressed = [UInt8](repeating: 0, count: 1 << 20)
        func drain(flush: Int32) {
            repeat {
                compressed.withUnsafeMutableBufferPointer { buffer in
                    stream.next_out = buffer.baseAddress
                    stream.avail_out = UInt32(buffer.count)
                    _ = deflate(&stream, flush)
                }
                let produced = compressed.count - Int(stream.avail_out)
                if produced > 0 { chunk("IDAT", Array(compressed[0..<produced])) }
            } while stream.avail_out == 0
        }
        var remaining = height
        while remaining > 0 {
            let rows = min(rowsPerBlock, remaining)
            block.withUnsafeMutableBufferPointer { buffer in
                stream.next_in = buffer.baseAddress
                stream.avail_in = UInt32(rows * (pixels.count + 1))
                drain(flush: Z_NO_FLUSH)
            }
            remaining -= rows
        }
        stream.next_in = nil
        stream.avail_in = 0
        drain(flush: Z_FINISH)
        chunk("IEND", [])
    }

    /// Creates a FIFO at `path` (nothing ever writes to it: opening it for reading blocks forever).
    public static func makeFIFO(at path: String) throws {
        guard mkfifo(path, 0o644) == 0 else { throw PoisonInputError(message: "mkfifo \(path): \(String(cString: strerror(errno)))") }
    }

    /// Binds a listening unix socket at `path`; the descriptor is returned so the caller can close it.
    public static func makeSocket(at path: String) throws -> Int32 {
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw PoisonInputError(message: "socket: \(String(cString: strerror(errno)))") }
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        guard bytes.count < MemoryLayout.size(ofValue: address.sun_path) else {
            close(fd)
            throw PoisonInputError(message: "\(path): too long for a unix socket")
        }
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            raw.copyBytes(from: bytes)
            raw[bytes.count] = 0
        }
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        guard bound == 0 else {
            close(fd)
            throw PoisonInputError(message: "bind \(path): \(String(cString: strerror(errno)))")
        }
        return fd
    }
}

/// A tmpfs of a fixed size mounted for a test (root only), to make writes fail with ENOSPC.
public final class SizedTmpfs: @unchecked Sendable {
    /// Mount point.
    public let path: String

    /// Whether this process may mount file systems (it runs as root with the capability).
    public static let available: Bool = {
        guard let probe = try? SizedTmpfs(bytes: 1 << 16) else { return false }
        probe.unmount()
        return true
    }()

    /// Mounts a `bytes`-sized tmpfs on a fresh directory.
    public init(bytes: Int) throws {
        path = FileManager.default.temporaryDirectory.appendingPathComponent("vtp-tmpfs-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        guard mount("tmpfs", path, "tmpfs", 0, "size=\(bytes)") == 0 else {
            let reason = String(cString: strerror(errno))
            rmdir(path)
            throw PoisonInputError(message: "mount tmpfs on \(path): \(reason)")
        }
    }

    /// Changes the size in place, keeping the files.
    public func resize(bytes: Int) throws {
        guard mount("tmpfs", path, "tmpfs", UInt(MS_REMOUNT), "size=\(bytes)") == 0 else {
            throw PoisonInputError(message: "remount tmpfs on \(path): \(String(cString: strerror(errno)))")
        }
    }

    /// Unmounts and removes the mount point.
    public func unmount() {
        umount2(path, Int32(MNT_DETACH))
        rmdir(path)
    }

    /// Every entry under the mount (relative paths, hidden ones included), sorted.
    public func entries() -> [String] {
        ((FileManager.default.subpaths(atPath: path)) ?? []).sorted()
    }
}

public struct PoisonInputError: Error, CustomStringConvertible {
    public let message: String
    public init(message: String) { self.message = message }
    public var description: String { message }
}
