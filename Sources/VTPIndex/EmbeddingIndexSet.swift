import Foundation

/// The index of a collection as `vtp search` opens it: one faiss file, or several over consecutive
/// row ranges when the build's memory budget split it (listed in `infos.json`), each opened with its
/// inverted lists memory-mapped so only the pages a search touches are read. A search asks every part
/// for its top-k and merges them by score, so hits carry collection rows whichever file they came from.
///
/// Searches block on faiss; call them from a thread you own.
public final class EmbeddingIndexSet: Sendable {
    /// One opened index file and the collection row its label 0 stands for.
    public struct Part: Sendable {
        public let path: String
        public let firstRow: Int
        public let index: EmbeddingIndex
    }

    public let parts: [Part]
    /// Vectors over all parts.
    public let count: Int
    /// Vector dimension.
    public let dimension: Int

    /// Opens the index of `directory` (holding `image.index` or the parts `infos.json` lists), memory-mapped. Blocking.
    /// - Throws: `IndexError.faiss` naming a missing or unreadable file, `.inconsistentIndex` when the
    ///   files disagree with `infos.json` or with each other.
    public convenience init(directory: String) throws {
        let infosPath = (directory as NSString).appendingPathComponent(IndexBuilder.infosFileName)
        var files = [(path: (directory as NSString).appendingPathComponent(IndexBuilder.indexFileName), firstRow: 0, count: Int?.none)]
        if FileManager.default.fileExists(atPath: infosPath) {
            let info: IndexInfo
            do {
                info = try JSONDecoder().decode(IndexInfo.self, from: Data(contentsOf: URL(fileURLWithPath: infosPath)))
            } catch {
                throw IndexError.inconsistentIndex(path: infosPath, detail: "not a readable infos.json: \(error)")
            }
            if let parts = info.parts, !parts.isEmpty {
                files = parts.map { ((directory as NSString).appendingPathComponent($0.indexPath), $0.firstRow, $0.count) }
            }
        }
        try self.init(files: files, infosPath: infosPath)
    }

    init(files: [(path: String, firstRow: Int, count: Int?)], infosPath: String) throws {
        precondition(!files.isEmpty)
        var parts: [Part] = []
        var next = 0
        for file in files {
            let index = try EmbeddingIndex(mappingContentsOf: file.path)
            guard file.firstRow == next else {
                throw IndexError.inconsistentIndex(path: infosPath, detail: "\(file.path) starts at row \(file.firstRow), expected \(next) (parts must be consecutive)")
            }
            if let expected = file.count, expected != index.count {
                throw IndexError.inconsistentIndex(path: file.path, detail: "holds \(index.count) vectors, \(infosPath) says \(expected)")
            }
            if let first = parts.first, first.index.dimension != index.dimension {
                throw IndexError.dimensionMismatch(source: "\(file.path) (\(first.path) has \(first.index.dimension))",
                                                   expected: first.index.dimension, found: index.dimension)
            }
            guard index.isInnerProduct else { throw IndexError.inconsistentIndex(path: file.path, detail: "does not rank by inner product") }
            parts.append(Part(path: file.path, firstRow: next, index: index))
            next += index.count
        }
        self.parts = parts
        count = next
        dimension = parts[0].index.dimension
    }

    /// Whether every part's inverted lists are memory-mapped (false when any part is a flat index, which has none).
    public var listsAreMapped: Bool { parts.allSatisfy(\.index.listsAreMapped) }

    /// The `k` best collection rows for one query of `dimension` values, best first. Blocking.
    public func search(query: [Float], k: Int) throws -> [(score: Float, row: Int)] {
        guard query.count == dimension else { throw IndexError.dimensionMismatch(source: "query", expected: dimension, found: query.count) }
        return try search(queries: query, k: k)[0]
    }

    /// The `k` best collection rows for each row-major query, best first. Blocking.
    public func search(queries: [Float], k: Int) throws -> [[(score: Float, row: Int)]] {
        let raw = try queries.withUnsafeBufferPointer { try rawSearch(queries: $0, k: k) }
        return (0..<raw.queryCount).map { q in
            ((q * k)..<(q * k + k)).compactMap { raw.labels[$0] >= 0 ? (score: raw.scores[$0], row: Int(raw.labels[$0])) : nil }
        }
    }

    /// Every part's top-`k`, labels shifted to collection rows, merged into one top-`k` per query.
    func rawSearch(queries: UnsafeBufferPointer<Float>, k: Int) throws -> EmbeddingIndex.RawResults {
        let results = try parts.map { part in (try part.index.rawSearch(queries: queries, k: k), part.firstRow) }
        return Self.merge(results, k: k)
    }

    /// Merges per-part results (each sorted best first, label -1 for missing) into the best `k` per query.
    /// Ties keep the earlier part first, as a single index over the same rows would rank lower rows first.
    static func merge(_ results: [(EmbeddingIndex.RawResults, firstRow: Int)], k: Int) -> EmbeddingIndex.RawResults {
        guard let first = results.first else { return EmbeddingIndex.RawResults(queryCount: 0, scores: [], labels: []) }
        if results.count == 1 {
            var only = first.0
            if first.firstRow != 0 { for i in only.labels.indices where only.labels[i] >= 0 { only.labels[i] += Int64(first.firstRow) } }
            return only
        }
        let nq = first.0.queryCount
        var scores = [Float](repeating: 0, count: nq * k)
        var labels = [Int64](repeating: -1, count: nq * k)
        var cursors = [Int](repeating: 0, count: results.count)
        for q in 0..<nq {
            for i in cursors.indices { cursors[i] = 0 }
            for slot in 0..<k {
                var best = -1
                var bestScore = -Float.infinity
                for (i, (r, _)) in results.enumerated() where cursors[i] < k {
                    let j = q * k + cursors[i]
                    guard r.labels[j] >= 0 else { continue }
                    if best < 0 || r.scores[j] > bestScore { best = i; bestScore = r.scores[j] }
                }
                guard best >= 0 else { break }
                let j = q * k + cursors[best]
                scores[q * k + slot] = results[best].0.scores[j]
                labels[q * k + slot] = results[best].0.labels[j] + Int64(results[best].firstRow)
                cursors[best] += 1
            }
        }
        return EmbeddingIndex.RawResults(queryCount: nq, scores: scores, labels: labels)
    }
}
