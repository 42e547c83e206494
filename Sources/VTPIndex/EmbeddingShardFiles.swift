import Foundation
import VTPStorage
import VTPTensor

/// The per-shard `.npy` embedding files of a collection (float16 or float32, each `rows × d`), read
/// in place through memory maps so a build never holds more than the rows it is working on.
///
/// Opening reads only the headers. Rows are numbered across the files in the order given.
struct EmbeddingShardFiles {
    struct Shard {
        var path: String
        var firstRow: Int
        var rows: Int
        var layout: NpyFile.Layout
        var fileSize: Int
    }

    let shards: [Shard]
    let dimension: Int
    var count: Int { shards.last.map { $0.firstRow + $0.rows } ?? 0 }

    /// Checks every file's header: a 2-D `<f2`/`<f4` array, all of one width, and (when given) the row
    /// count the caller expects (the manifest's). Files with zero rows are kept; they add nothing.
    /// - Throws: `IndexError.badEmbeddingFile` naming the file, `.dimensionMismatch`, `.empty` when no file has a row.
    init(paths: [String], expectedRows: [Int]? = nil) throws {
        precondition(expectedRows == nil || expectedRows!.count == paths.count)
        var shards: [Shard] = []
        var dimension: Int?
        var firstPath = ""
        var next = 0
        for (i, path) in paths.enumerated() {
            let (layout, size) = try Self.readLayout(path)
            guard layout.shape.count == 2 else {
                throw IndexError.badEmbeddingFile(path: path, detail: "expected a 2-D N x D array, found shape \(layout.shape)")
            }
            if let expected = expectedRows?[i], layout.shape[0] != expected {
                throw IndexError.badEmbeddingFile(path: path, detail: "has \(layout.shape[0]) rows, expected \(expected)")
            }
            if let dimension, layout.shape[1] != dimension {
                throw IndexError.dimensionMismatch(source: "\(path) (\(firstPath) has \(dimension))", expected: dimension, found: layout.shape[1])
            }
            if dimension == nil { dimension = layout.shape[1]; firstPath = path }
            shards.append(Shard(path: path, firstRow: next, rows: layout.shape[0], layout: layout, fileSize: size))
            next += layout.shape[0]
        }
        guard let dimension, next > 0 else { throw IndexError.empty(source: paths.first.map { ($0 as NSString).deletingLastPathComponent + "/*.npy" } ?? "no files") }
        guard dimension > 0 else { throw IndexError.badEmbeddingFile(path: firstPath, detail: "embeddings have dimension 0") }
        self.shards = shards
        self.dimension = dimension
    }

    private static func readLayout(_ path: String) throws -> (NpyFile.Layout, Int) {
        let file = try MappedFile(path: path)
        do {
            return (try NpyFile.layout(UnsafeRawBufferPointer(start: file.base, count: min(file.size, 1 << 20)), fileSize: file.size, path: path),
                    file.size)
        } catch {
            throw IndexError.badEmbeddingFile(path: path, detail: "\(error)")
        }
    }

    /// Copies the listed rows (ascending collection row numbers) into `out` (`rows.count × d` floats),
    /// mapping one file at a time. Blocking.
    func gather(_ rows: [Int], into out: UnsafeMutableBufferPointer<Float>) throws {
        precondition(out.count == rows.count * dimension)
        var cursor = 0
        for shard in shards where cursor < rows.count && rows[cursor] < shard.firstRow + shard.rows {
            let file = try MappedFile(path: shard.path)
            while cursor < rows.count, rows[cursor] < shard.firstRow + shard.rows {
                let local = rows[cursor] - shard.firstRow
                let dst = out.baseAddress! + cursor * dimension
                try widen(shard, file, rows: local..<(local + 1), into: dst)
                if firstNonFinite(UnsafeBufferPointer(start: dst, count: dimension)) != nil {
                    throw IndexError.nonFiniteValue(source: shard.path, row: local)
                }
                cursor += 1
            }
        }
    }

    /// Calls `body(firstRow, rows)` for consecutive pieces of at most `chunkRows` rows covering `range`,
    /// widened to float32 in one reused buffer; a piece never spans two files. Each file is mapped only
    /// while its rows are read, and the pages of a piece are released from this process once it is
    /// done, so resident memory stays at one piece however large the files are. Blocking.
    func forEachChunk(of range: Range<Int>, chunkRows: Int, _ body: (Int, UnsafeBufferPointer<Float>) throws -> Void) throws {
        let buffer = UnsafeMutableBufferPointer<Float>.allocate(capacity: chunkRows * dimension)
        defer { buffer.deallocate() }
        for shard in shards {
            let lower = max(range.lowerBound, shard.firstRow), upper = min(range.upperBound, shard.firstRow + shard.rows)
            guard lower < upper else { continue }
            let file = try MappedFile(path: shard.path)
            var row = lower
            while row < upper {
                let end = min(upper, row + chunkRows)
                let local = (row - shard.firstRow)..<(end - shard.firstRow)
                try widen(shard, file, rows: local, into: buffer.baseAddress!)
                let piece = UnsafeBufferPointer(start: buffer.baseAddress, count: local.count * dimension)
                if let bad = firstNonFinite(piece) {
                    throw IndexError.nonFiniteValue(source: shard.path, row: local.lowerBound + bad)
                }
                try body(row, piece)
                row = end
            }
        }
    }

    private func widen(_ shard: Shard, _ file: MappedFile, rows: Range<Int>, into dst: UnsafeMutablePointer<Float>) throws {
        let size = shard.layout.elementSize
        let start = shard.layout.dataOffset + rows.lowerBound * dimension * size
        let count = rows.count * dimension
        precondition(start + count * size <= file.size)
        let src = file.base + start
        switch shard.layout.element {
        case .float32: UnsafeMutableRawPointer(dst).copyMemory(from: src, byteCount: count * 4)
        case .float16: HalfPrecision.widenFloat16(src, count: count, into: dst)
        }
        file.release(start..<(start + count * size))
    }

    private func firstNonFinite(_ values: UnsafeBufferPointer<Float>) -> Int? {
        for i in 0..<values.count where !values[i].isFinite { return i / dimension }
        return nil
    }
}

/// A read-only memory map of a whole file, unmapped when released.
final class MappedFile {
    let base: UnsafeRawPointer
    let size: Int

    init(path: String) throws {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw IndexError.badEmbeddingFile(path: path, detail: "cannot open: \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw IndexError.badEmbeddingFile(path: path, detail: "cannot stat: \(String(cString: strerror(errno)))") }
        guard (st.st_mode & S_IFMT) == S_IFREG else { throw IndexError.badEmbeddingFile(path: path, detail: "not a regular file") }
        let size = Int(st.st_size)
        guard size > 0 else { throw IndexError.badEmbeddingFile(path: path, detail: "file is empty, not a .npy file") }
        guard let map = mmap(nil, size, PROT_READ, MAP_SHARED, fd, 0), map != MAP_FAILED else {
            throw IndexError.badEmbeddingFile(path: path, detail: "cannot map: \(String(cString: strerror(errno)))")
        }
        madvise(map, size, MADV_SEQUENTIAL)
        base = UnsafeRawPointer(map)
        self.size = size
    }

    /// Drops the pages covering `bytes` from this process (they stay in the page cache), so rows
    /// already read stop counting as its resident memory.
    func release(_ bytes: Range<Int>) {
        let page = Int(sysconf(Int32(_SC_PAGESIZE)))
        let lower = bytes.lowerBound / page * page
        let upper = min(size, (bytes.upperBound + page - 1) / page * page)
        guard lower < upper else { return }
        madvise(UnsafeMutableRawPointer(mutating: base + lower), upper - lower, MADV_DONTNEED)
    }

    deinit { munmap(UnsafeMutableRawPointer(mutating: base), size) }
}
