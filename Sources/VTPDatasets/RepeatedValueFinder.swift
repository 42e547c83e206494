import Foundation
import SystemPackage

/// Finds the 64-bit values that occur more than once in a long stream, in bounded memory: values
/// are buffered up to `runCapacity`, each full buffer is sorted and written to an unlinked scratch
/// file as a run, and ``finish()`` merges the runs. A stream that fits one buffer never touches
/// the disk. Memory is `runCapacity` values plus a block per run; the disk holds 8 bytes a value.
///
/// The manifest listing's duplicate-id check uses it (on id hashes), so a billion-row manifest
/// is checked in about 64 MB of memory and 8 GB of scratch space.
struct RepeatedValueFinder {
    /// Values held before a run is sorted and spilled: 8M (64 MB).
    static let defaultRunCapacity = 8 << 20
    /// Values read from one run at a time while merging.
    private static let blockValues = 1 << 15

    private let runCapacity: Int
    private let scratchDirectory: String
    private var buffer: [UInt64] = []
    private var scratch: ScratchFile?
    private var runs: [(offset: Int64, count: Int)] = []
    private var spilledBytes: Int64 = 0

    /// - Parameter scratchDirectory: where runs go when the values outgrow one buffer
    ///   (`$TMPDIR`, else /tmp).
    init(runCapacity: Int = defaultRunCapacity, scratchDirectory: String = Self.temporaryDirectory) {
        self.runCapacity = max(1, runCapacity)
        self.scratchDirectory = scratchDirectory
    }

    static var temporaryDirectory: String {
        let directory = ProcessInfo.processInfo.environment["TMPDIR"].flatMap { $0.isEmpty ? nil : $0 } ?? "/tmp"
        return directory.count > 1 && directory.hasSuffix("/") ? String(directory.dropLast()) : directory
    }

    mutating func add(_ value: UInt64) throws {
        buffer.append(value)
        if buffer.count >= runCapacity { try spill() }
    }

    /// Repeated values ``finish()`` names at most: enough to confirm a real duplicate among
    /// them (a 64-bit hash collision between different ids is rare), without a manifest that is
    /// all duplicates (`cat a.jsonl a.jsonl`) making the answer as large as the input.
    static let maxRepeated = 4096

    /// The values that were added more than once, each named once, the smallest
    /// ``maxRepeated`` of them when there are more.
    mutating func finish() throws -> Set<UInt64> {
        if runs.isEmpty {
            buffer.sort()
            var repeated = Set<UInt64>()
            for i in buffer.indices.dropFirst() where buffer[i] == buffer[i - 1] {
                repeated.insert(buffer[i])
                if repeated.count >= Self.maxRepeated { break }
            }
            buffer = []
            return repeated
        }
        if !buffer.isEmpty { try spill() }
        buffer = []
        return try mergeRuns()
    }

    private mutating func spill() throws {
        buffer.sort()
        if scratch == nil { scratch = try ScratchFile(directory: scratchDirectory) }
        try scratch!.write(buffer, at: spilledBytes)
        runs.append((spilledBytes, buffer.count))
        spilledBytes += Int64(buffer.count * 8)
        buffer.removeAll(keepingCapacity: true)
    }

    /// A k-way merge of the sorted runs through a heap of their heads; equal neighbours in the
    /// merged order are the repeated values.
    private func mergeRuns() throws -> Set<UInt64> {
        guard let scratch else { return [] }
        var cursors = runs.map { RunCursor(offset: $0.offset, remaining: $0.count) }
        var heap = MinHeap<(value: UInt64, run: Int)> { $0.value < $1.value }
        for run in cursors.indices {
            if let value = try cursors[run].next(scratch, blockValues: Self.blockValues) { heap.push((value, run)) }
        }
        var repeated = Set<UInt64>()
        var previous: UInt64?
        while let (value, run) = heap.pop() {
            if value == previous {
                repeated.insert(value)
                if repeated.count >= Self.maxRepeated { break }
            }
            previous = value
            if let next = try cursors[run].next(scratch, blockValues: Self.blockValues) { heap.push((next, run)) }
        }
        return repeated
    }

    /// Reads one sorted run a block at a time.
    private struct RunCursor {
        var offset: Int64
        var remaining: Int
        var block: [UInt64] = []
        var index = 0

        mutating func next(_ file: ScratchFile, blockValues: Int) throws -> UInt64? {
            if index == block.count {
                guard remaining > 0 else { return nil }
                let count = min(remaining, blockValues)
                block = try file.read(count: count, at: offset)
                offset += Int64(count * 8)
                remaining -= count
                index = 0
            }
            defer { index += 1 }
            return block[index]
        }
    }
}

/// A scratch file, unlinked as soon as it is created so its space goes back when the descriptor
/// closes (in `deinit`, or when the process dies).
private final class ScratchFile {
    private let descriptor: FileDescriptor
    private let directory: String

    init(directory: String) throws {
        self.directory = directory
        let path = directory + "/vtp-scratch-\(UUID().uuidString)"
        do {
            descriptor = try FileDescriptor.open(FilePath(path), .readWrite, options: [.create, .exclusiveCreate, .closeOnExec],
                                                 permissions: [.ownerReadWrite])
        } catch {
            throw DatasetError.scratchSpace(path: directory, reason: ReadOnlyFile.reason(error))
        }
        _ = unlink(path)
    }

    deinit { try? descriptor.close() }

    func write(_ values: [UInt64], at offset: Int64) throws {
        do {
            _ = try values.withUnsafeBytes { try descriptor.writeAll(toAbsoluteOffset: offset, $0) }
        } catch {
            throw DatasetError.scratchSpace(path: directory, reason: ReadOnlyFile.reason(error))
        }
    }

    func read(count: Int, at offset: Int64) throws -> [UInt64] {
        var values = [UInt64](repeating: 0, count: count)
        try values.withUnsafeMutableBytes { bytes in
            var done = 0
            while done < bytes.count {
                let n: Int
                do {
                    n = try descriptor.read(fromAbsoluteOffset: offset + Int64(done),
                                            into: UnsafeMutableRawBufferPointer(rebasing: bytes[done...]), retryOnInterrupt: true)
                } catch {
                    throw DatasetError.scratchSpace(path: directory, reason: ReadOnlyFile.reason(error))
                }
                guard n > 0 else { throw DatasetError.scratchSpace(path: directory, reason: "the scratch file ended early") }
                done += n
            }
        }
        return values
    }
}
