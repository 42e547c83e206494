import Foundation
import Synchronization

/// CLIP's byte-level BPE vocabulary: byte symbols, ranked merges and the two special tokens.
struct BytePairVocabulary: Sendable {
    /// Id of the symbol for byte `b` inside a word, and for `b` ending a word (with `</w>`).
    let byteIDs: [Int32]
    let byteEndIDs: [Int32]
    /// Merge of the pair `(a << 32) | b` of symbol ids: its rank and the id of the merged symbol.
    let merges: [UInt64: Merge]
    let startID: Int32
    let endID: Int32
    let count: Int

    struct Merge: Sendable { let rank: Int32; let id: Int32 }

    /// `bytes_to_unicode()`: printable Latin-1 bytes keep their code point, the others move to 256 + n.
    /// The order of this list is also the order of the first 256 vocabulary entries.
    static let byteUnicode: [(byte: UInt8, scalar: UInt32)] = {
        var printable = Array(0x21...0x7E) + Array(0xA1...0xAC) + Array(0xAE...0xFF)
        var scalars = printable.map(UInt32.init)
        var n: UInt32 = 0
        for b in 0..<256 where !printable.contains(b) {
            printable.append(b)
            scalars.append(256 + n)
            n += 1
        }
        return zip(printable, scalars).map { (UInt8($0), $1) }
    }()

    /// Parses the merges file (`bpe_simple_vocab_16e6.txt`) as the reference does: skip the header
    /// line, keep the next 49152 - 256 - 2 lines, vocabulary = bytes, bytes + `</w>`, merges, specials.
    init(mergesText: String, path: String) throws(CLIPTokenizerError) {
        let lines = mergesText.split(separator: "\n", omittingEmptySubsequences: false)
        let mergeLines = lines.dropFirst().prefix(49152 - 256 - 2)
        guard mergeLines.count == 49152 - 256 - 2 else {
            throw .malformedVocabulary(path: path, detail: "expected 48894 merge lines, found \(mergeLines.count)")
        }
        let byteChars = Self.byteUnicode.map { String(Character(Unicode.Scalar($0.scalar)!)) }
        var vocabulary: [String] = byteChars + byteChars.map { $0 + "</w>" }
        var pairs: [(String, String)] = []
        pairs.reserveCapacity(mergeLines.count)
        for (k, line) in mergeLines.enumerated() {
            let parts = line.split(whereSeparator: { $0.isWhitespace })
            guard parts.count == 2 else {
                throw .malformedVocabulary(path: path, detail: "merge line \(k + 2) has \(parts.count) fields, expected 2")
            }
            pairs.append((String(parts[0]), String(parts[1])))
            vocabulary.append(String(parts[0]) + String(parts[1]))
        }
        vocabulary.append("<start_of_text>")
        vocabulary.append("<end_of_text>")
        // dict(zip(vocab, range(...))): a repeated entry keeps its last index.
        var encoder: [String: Int32] = [:]
        encoder.reserveCapacity(vocabulary.count)
        for (id, token) in vocabulary.enumerated() { encoder[token] = Int32(id) }

        var merges: [UInt64: Merge] = [:]
        merges.reserveCapacity(pairs.count)
        for (rank, pair) in pairs.enumerated() {
            guard let a = encoder[pair.0], let b = encoder[pair.1], let merged = encoder[pair.0 + pair.1] else {
                throw .malformedVocabulary(path: path, detail: "merge line \(rank + 2) uses a symbol outside the vocabulary")
            }
            // A later duplicate of a pair overwrites its rank, as in the reference's dict.
            merges[UInt64(UInt32(bitPattern: a)) << 32 | UInt64(UInt32(bitPattern: b))] = Merge(rank: Int32(rank), id: merged)
        }
        var byteIDs = [Int32](repeating: 0, count: 256), byteEndIDs = byteIDs
        for (index, entry) in Self.byteUnicode.enumerated() {
            byteIDs[Int(entry.byte)] = encoder[byteChars[index]]!
            byteEndIDs[Int(entry.byte)] = encoder[byteChars[index] + "</w>"]!
        }
        self.byteIDs = byteIDs
        self.byteEndIDs = byteEndIDs
        self.merges = merges
        self.startID = encoder["<start_of_text>"]!
        self.endID = encoder["<end_of_text>"]!
        self.count = encoder.count
    }

    /// Words up to this many symbols use the direct algorithm; longer ones (e.g. a paragraph of CJK
    /// text, which has no spaces) use the heap version, whose cost grows as n log n instead of n².
    static let directLimit = 48

    /// BPE of one pre-token given as UTF-8 bytes: repeatedly merge every occurrence of the
    /// lowest-ranked adjacent pair until no pair has a rank.
    func encodeWord(_ bytes: [UInt8]) -> [Int32] {
        guard let last = bytes.last else { return [] }
        var word = [Int32]()
        word.reserveCapacity(bytes.count)
        for b in bytes.dropLast() { word.append(byteIDs[Int(b)]) }
        word.append(byteEndIDs[Int(last)])
        return word.count <= Self.directLimit ? mergeDirect(word) : mergeWithHeap(word)
    }

    /// The reference's loop as written: find the best pair, rewrite the word merging it everywhere.
    func mergeDirect(_ symbols: [Int32]) -> [Int32] {
        var word = symbols
        var next = [Int32]()
        next.reserveCapacity(word.count)
        while word.count > 1 {
            var best = Merge(rank: .max, id: 0)
            var first: Int32 = 0, second: Int32 = 0
            for k in 0..<(word.count - 1) {
                if let m = merges[Self.key(word[k], word[k + 1])], m.rank < best.rank {
                    best = m; first = word[k]; second = word[k + 1]
                }
            }
            if best.rank == .max { break }
            next.removeAll(keepingCapacity: true)
            var i = 0
            while i < word.count {
                if i + 1 < word.count && word[i] == first && word[i + 1] == second {
                    next.append(best.id); i += 2
                } else {
                    next.append(word[i]); i += 1
                }
            }
            swap(&word, &next)
        }
        return word
    }

    /// The same passes with a linked list and a min-heap of (rank, left position): each pass takes
    /// every live occurrence of the lowest-ranked pair and merges them left to right, skipping an
    /// occurrence whose left symbol the previous merge consumed, exactly as the rewrite loop does.
    func mergeWithHeap(_ symbols: [Int32]) -> [Int32] {
        var sym = symbols
        let n = sym.count
        var next = (0..<n).map { $0 + 1 }
        var prev = (0..<n).map { $0 - 1 }
        next[n - 1] = -1
        var alive = [Bool](repeating: true, count: n)
        var heap = MinHeap()
        func rank(_ left: Int) -> Merge? {
            let right = next[left]
            return right < 0 ? nil : merges[Self.key(sym[left], sym[right])]
        }
        for left in 0..<(n - 1) {
            if let m = rank(left) { heap.push(UInt64(m.rank) << 40 | UInt64(left)) }
        }
        var pass: [Int] = []
        while let top = heap.pop() {
            let passRank = Int32(top >> 40)
            pass.removeAll(keepingCapacity: true)
            pass.append(Int(top & 0xFF_FFFF_FFFF))
            while let peek = heap.peek(), Int32(peek >> 40) == passRank {
                pass.append(Int(heap.pop()! & 0xFF_FFFF_FFFF))
            }
            pass.sort()
            for left in pass {
                guard alive[left], let m = rank(left), m.rank == passRank else { continue }
                let right = next[left]
                sym[left] = m.id
                alive[right] = false
                next[left] = next[right]
                if next[right] >= 0 { prev[next[right]] = left }
                if prev[left] >= 0, let p = rank(prev[left]) { heap.push(UInt64(p.rank) << 40 | UInt64(prev[left])) }
                if let q = rank(left) { heap.push(UInt64(q.rank) << 40 | UInt64(left)) }
            }
        }
        var out = [Int32]()
        var k = 0
        while k >= 0 { out.append(sym[k]); k = next[k] }
        return out
    }

    @inline(__always) static func key(_ a: Int32, _ b: Int32) -> UInt64 {
        UInt64(UInt32(bitPattern: a)) << 32 | UInt64(UInt32(bitPattern: b))
    }
}

/// A binary min-heap of packed (rank << 40 | position) keys.
struct MinHeap {
    private var items: [UInt64] = []

    func peek() -> UInt64? { items.first }

    mutating func push(_ value: UInt64) {
        items.append(value)
        var child = items.count - 1
        while child > 0 {
            let parent = (child - 1) / 2
            if items[parent] <= items[child] { break }
            items.swapAt(parent, child)
            child = parent
        }
    }

    mutating func pop() -> UInt64? {
        guard let first = items.first else { return nil }
        let last = items.removeLast()
        if !items.isEmpty {
            items[0] = last
            var parent = 0
            while true {
                let left = 2 * parent + 1, right = left + 1
                var smallest = parent
                if left < items.count && items[left] < items[smallest] { smallest = left }
                if right < items.count && items[right] < items[smallest] { smallest = right }
                if smallest == parent { break }
                items.swapAt(parent, smallest)
                parent = smallest
            }
        }
        return first
    }
}

/// Memo of BPE results per pre-token, shared by every thread using one tokenizer.
final class BytePairCache: Sendable {
    private let entries = Mutex<[[UInt8]: [Int32]]>([:])
    /// Bounds memory on dataset-scale runs; the reference's cache is unbounded, which changes nothing
    /// about the ids, only how often a word is recomputed.
    private let limit: Int

    init(limit: Int = 262_144) { self.limit = limit }

    func value(for key: [UInt8]) -> [Int32]? { entries.withLock { $0[key] } }

    func store(_ value: [Int32], for key: [UInt8]) {
        entries.withLock { entries in
            if entries.count >= limit { entries.removeAll(keepingCapacity: true) }
            entries[key] = value
        }
    }

    var count: Int { entries.withLock { $0.count } }
}
