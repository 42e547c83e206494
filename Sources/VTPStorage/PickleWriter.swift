import Foundation
import VTPVocabulary

/// Emits the pickle (protocol 2) that `torch.save` writes for a dict of float32 tensors, opcode for
/// opcode: the same memo numbering, `BINPUT`/`BINGET` reuse of the shared globals and strings,
/// `TUPLE1..3` for short tuples, `SETITEM(S)` batching and `BINPERSID` storage references.
///
/// Hand-written: no Swift package among those available writes pickle at all, and the aim is not
/// any valid pickle but torch.save's own opcode stream, so the files match the reference's byte for
/// byte and load with `weights_only=True` (only the three globals it allows are referenced).
struct TorchPicklePlan {
    struct Entry {
        var key: String
        var shape: [Int]
        var storageKey: String
    }

    private var out = Data()
    private var nextMemo = 0
    private var memo: [String: Int] = [:]

    static func pickle(_ entries: [Entry]) -> Data {
        var p = TorchPicklePlan()
        p.out.append(contentsOf: [0x80, 0x02])  // PROTO 2
        p.out.append(0x7D)                       // EMPTY_DICT
        p.put()
        // Python batches SETITEMS by 1000 and uses SETITEM for a batch of one.
        var start = 0
        while start < entries.count {
            let batch = entries[start..<min(start + 1000, entries.count)]
            if batch.count > 1 { p.out.append(0x28) }  // MARK
            for e in batch {
                p.string(e.key)
                p.tensor(e)
            }
            p.out.append(batch.count > 1 ? 0x75 : 0x73)  // SETITEMS / SETITEM
            start += batch.count
        }
        p.out.append(0x2E)  // STOP
        return p.out
    }

    private mutating func put() {
        if nextMemo < 256 { out.append(contentsOf: [0x71, UInt8(nextMemo)]) } else {
            out.append(0x72)
            out.le32(UInt32(nextMemo))
        }
        nextMemo += 1
    }

    private mutating func get(_ index: Int) {
        if index < 256 { out.append(contentsOf: [0x68, UInt8(index)]) } else {
            out.append(0x6A)
            out.le32(UInt32(index))
        }
    }

    /// A value pickled once and then referenced by memo, like an object torch shares by identity
    /// (module-level globals, the interned 'storage' and 'cpu' strings).
    private mutating func shared(_ id: String, _ emit: (inout TorchPicklePlan) -> Void) {
        if let index = memo[id] { get(index); return }
        emit(&self)
        memo[id] = nextMemo
        put()
    }

    private mutating func global(_ module: String, _ name: String) {
        shared("global:\(module).\(name)") { p in
            p.out.append(0x63)
            p.out.append(Data("\(module)\n\(name)\n".utf8))
        }
    }

    private mutating func string(_ s: String) {
        let bytes = Data(s.utf8)
        out.append(0x58)  // BINUNICODE
        out.le32(UInt32(bytes.count))
        out.append(bytes)
        put()
    }

    private mutating func int(_ v: Int) {
        if v >= 0 && v < 256 { out.append(contentsOf: [0x4B, UInt8(v)]) }
        else if v >= 0 && v < 65536 { out.append(0x4D); out.le16(UInt16(v)) }
        else if v >= Int(Int32.min) && v <= Int(Int32.max) { out.append(0x4A); out.le32(UInt32(bitPattern: Int32(v))) }
        else {
            // LONG1: minimal little-endian two's complement.
            var bytes: [UInt8] = []
            var x = v
            repeat { bytes.append(UInt8(truncatingIfNeeded: x)); x >>= 8 } while !(x == 0 && bytes.last! < 0x80) && !(x == -1 && bytes.last! >= 0x80)
            out.append(contentsOf: [0x8A, UInt8(bytes.count)] + bytes)
        }
    }

    /// A tuple of already-emitted items: `emitItems` writes them.
    private mutating func tuple(count: Int, _ emitItems: (inout TorchPicklePlan) -> Void) {
        if count == 0 { out.append(0x29); return }  // EMPTY_TUPLE is not memoized
        if count > 3 { out.append(0x28) }
        emitItems(&self)
        out.append(count > 3 ? 0x74 : [0x85, 0x86, 0x87][count - 1])
        put()
    }

    private mutating func intTuple(_ values: [Int]) {
        tuple(count: values.count) { p in for v in values { p.int(v) } }
    }

    private mutating func tensor(_ e: Entry) {
        let numel = e.shape.reduce(1, *)
        var strides = [Int](repeating: 1, count: e.shape.count)
        if e.shape.count > 1 {
            for i in stride(from: e.shape.count - 2, through: 0, by: -1) { strides[i] = strides[i + 1] * e.shape[i + 1] }
        }
        global("torch._utils", "_rebuild_tensor_v2")
        tuple(count: 6) { p in
            // Persistent id: ('storage', torch.FloatStorage, key, 'cpu', numel)
            p.tuple(count: 5) { p in
                p.shared("str:storage") { p in p.rawString("storage") }
                p.global("torch", "FloatStorage")
                p.string(e.storageKey)
                p.shared("str:cpu") { p in p.rawString("cpu") }
                p.int(numel)
            }
            p.out.append(0x51)  // BINPERSID
            p.int(0)            // storage offset
            p.intTuple(e.shape)
            p.intTuple(strides)
            p.out.append(0x89)  // NEWFALSE: requires_grad
            p.global("collections", "OrderedDict")  // backward hooks: OrderedDict()
            p.out.append(0x29)
            p.out.append(0x52)  // REDUCE
            p.put()
        }
        out.append(0x52)  // REDUCE
        put()
    }

    /// BINUNICODE without its own memo slot (the caller's `shared` adds it).
    private mutating func rawString(_ s: String) {
        let bytes = Data(s.utf8)
        out.append(0x58)
        out.le32(UInt32(bytes.count))
        out.append(bytes)
    }
}
