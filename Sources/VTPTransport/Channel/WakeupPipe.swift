import SystemPackage
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A non-blocking pipe whose read end an I/O thread polls next to its zmq socket, so any thread can wake
/// it with one `write` without touching the (single-threaded) socket. swift-system's `FileDescriptor`
/// retries the reads and writes a signal interrupts.
///
/// `@unchecked Sendable`: it holds two immutable descriptors; `write(2)` and `read(2)` on a pipe are safe
/// from any thread, and only the I/O thread reads.
final class WakeupPipe: @unchecked Sendable {
    private let readEnd: FileDescriptor
    private let writeEnd: FileDescriptor

    /// The descriptor to poll (zmq_poll takes a plain one).
    var readDescriptor: Int32 { readEnd.rawValue }

    init() throws(ZMQError) {
        do {
            let ends = try FileDescriptor.pipe()
            readEnd = ends.readEnd
            writeEnd = ends.writeEnd
        } catch {
            throw ZMQError(operation: "pipe", code: (error as? Errno)?.rawValue ?? EIO)
        }
        // swift-system sets these flags only at open(2), and pipe2(2)'s options need macOS 27.
        for end in [readEnd, writeEnd] {
            _ = fcntl(end.rawValue, F_SETFL, fcntl(end.rawValue, F_GETFL) | O_NONBLOCK)
            _ = fcntl(end.rawValue, F_SETFD, FD_CLOEXEC)
        }
    }

    deinit {
        try? readEnd.close()
        try? writeEnd.close()
    }

    /// Wakes the poller. A full pipe already guarantees a pending wake-up, so `EAGAIN` is ignored.
    func signal() {
        withUnsafeBytes(of: UInt8(1)) { _ = try? writeEnd.write($0) }
    }

    /// Empties the pipe so the next poll blocks again (until `EAGAIN`, or the write end is gone).
    func drain() {
        var buffer = [UInt8](repeating: 0, count: 64)
        while let count = try? buffer.withUnsafeMutableBytes({ try readEnd.read(into: $0) }), count > 0 {}
    }
}
