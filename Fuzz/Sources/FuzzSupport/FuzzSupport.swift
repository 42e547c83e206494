import Foundation

/// The product's file-based readers (safetensors, tar, manifests, configuration) take a path, so each
/// input is written to a per-process scratch file and the reader opens it exactly as it would in
/// production. One directory per process keeps `-fork`/`-jobs` runs apart; it lives in /dev/shm when
/// there is one, which made the file-based targets five to six times faster than a disk-backed /tmp.
public enum ScratchFile {
    private static let directory: String = {
        let parent = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : NSTemporaryDirectory()
        let dir = parent + "/vtp-fuzz-\(getpid())"
        mkdir(dir, 0o700)
        atexit {
            // The directory holds only the few fixed names below.
            for name in (try? FileManager.default.contentsOfDirectory(atPath: ScratchFile.directory)) ?? [] {
                unlink(ScratchFile.directory + "/" + name)
            }
            rmdir(ScratchFile.directory)
        }
        return dir
    }()

    /// Replaces the scratch file `name` with `bytes` and returns its path.
    public static func write(_ bytes: UnsafeRawBufferPointer, name: String) -> String {
        let path = directory + "/" + name
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        guard fd >= 0 else { fatalError("cannot create scratch file \(path): \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        var done = 0
        while done < bytes.count {
            let n = Foundation.write(fd, bytes.baseAddress! + done, bytes.count - done)
            guard n > 0 else { fatalError("cannot write scratch file \(path): \(String(cString: strerror(errno)))") }
            done += n
        }
        return path
    }
}

/// The input libFuzzer hands to `LLVMFuzzerTestOneInput`, as a buffer (never with a nil base when empty
/// matters to the callee: callers check `count`).
public func fuzzInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> UnsafeRawBufferPointer {
    UnsafeRawBufferPointer(start: data, count: data == nil ? 0 : size)
}

/// An invariant of the code under test. Failing it is a finding: libFuzzer saves the input as a crash.
public func require(_ condition: @autoclosure () -> Bool, _ message: @autoclosure () -> String) {
    if !condition() { fatalError("invariant violated: \(message())") }
}
