#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A dense, row-major float32 tensor.
///
/// Storage is a reference-counted buffer that either owns its memory or borrows it from an
/// owner that must outlive it (a memory-mapped checkpoint). Copies of a `Tensor` share storage;
/// kernels write through ``TensorStorage/pointer`` only into tensors they allocated themselves.
public struct Tensor: @unchecked Sendable {
    /// The extent of each dimension, outermost first.
    public let shape: [Int]
    /// The buffer the elements live in.
    public let storage: TensorStorage

    /// Number of elements.
    public var count: Int { shape.reduce(1, *) }

    /// Allocates a zero-filled tensor.
    public init(zeros shape: [Int]) {
        self.shape = shape
        self.storage = TensorStorage(count: shape.reduce(1, *))
    }

    /// Allocates a tensor whose contents the caller fills before reading.
    public init(uninitialized shape: [Int]) {
        self.shape = shape
        self.storage = TensorStorage(count: shape.reduce(1, *), zeroed: false)
    }

    /// Wraps existing storage with a shape of the same element count.
    public init(shape: [Int], storage: TensorStorage) {
        precondition(shape.reduce(1, *) <= storage.count, "shape \(shape) exceeds storage of \(storage.count)")
        self.shape = shape
        self.storage = storage
    }

    /// Copies an array into a new tensor.
    public init(shape: [Int], values: [Float]) {
        precondition(shape.reduce(1, *) == values.count, "shape \(shape) does not match \(values.count) values")
        self.init(uninitialized: shape)
        values.withUnsafeBufferPointer { src in
            storage.pointer.update(from: src.baseAddress!, count: values.count)
        }
    }

    /// The elements of `parts` one after another, as a new one-dimensional tensor.
    public init(concatenating parts: [Tensor]) {
        self.init(uninitialized: [parts.reduce(0) { $0 + $1.count }])
        var offset = 0
        for part in parts {
            (storage.pointer + offset).update(from: part.pointer, count: part.count)
            offset += part.count
            withExtendedLifetime(part) {}
        }
    }

    /// The same elements seen with another shape of equal size.
    public func reshaped(_ newShape: [Int]) -> Tensor {
        precondition(newShape.reduce(1, *) == count, "cannot reshape \(shape) to \(newShape)")
        return Tensor(shape: newShape, storage: storage)
    }

    /// Read-only pointer to the first element.
    public var pointer: UnsafePointer<Float> { UnsafePointer(storage.pointer) }
    /// Mutable pointer; only for tensors the caller allocated. Weights borrowed from a read-only
    /// mapping trap here instead of faulting somewhere later.
    @inlinable public var mutablePointer: UnsafeMutablePointer<Float> {
        precondition(!storage.isReadOnly, "tensor \(shape) borrows read-only memory (a memory-mapped checkpoint) and cannot be written")
        return storage.pointer
    }

    /// Read-only view of the elements.
    public var buffer: UnsafeBufferPointer<Float> { UnsafeBufferPointer(start: pointer, count: count) }

    /// A copy of the elements as an array (for tests and small outputs, not hot loops).
    public func toArray() -> [Float] { Array(buffer) }

    /// Copies `rows` consecutive rows of the leading dimension, starting at `start`.
    public func rows(_ start: Int, _ rowCount: Int) -> Tensor {
        let inner = shape.dropFirst().reduce(1, *)
        precondition(start >= 0 && start + rowCount <= shape[0], "rows \(start)..<\(start + rowCount) out of \(shape[0])")
        var newShape = shape
        newShape[0] = rowCount
        let out = Tensor(uninitialized: newShape)
        out.mutablePointer.update(from: pointer + start * inner, count: rowCount * inner)
        return out
    }
}

/// Memory behind a ``Tensor``.
///
/// `@unchecked Sendable`: the buffer is written only by the code that allocated it, before the
/// tensor is shared; afterwards it is read-only, so concurrent reads are safe.
public final class TensorStorage: @unchecked Sendable {
    /// First element. Not public: writes go through ``Tensor/mutablePointer``, which refuses
    /// read-only (memory-mapped) storage.
    @usableFromInline let pointer: UnsafeMutablePointer<Float>
    /// True for memory borrowed from an owner that maps it read-only.
    public let isReadOnly: Bool
    /// Element count.
    public let count: Int
    private let owned: Bool
    private let keepAlive: AnyObject?

    /// Allocates `count` floats, 64-byte aligned.
    ///
    /// Buffers of a mebibyte or more (activations) are mapped straight from the kernel and
    /// unmapped when freed: through malloc they would stay in per-thread arenas after the forward
    /// pass that used them, which made a worker's resident memory hundreds of megabytes larger
    /// than its weights.
    public init(count: Int, zeroed: Bool = true) {
        let bytes = max(count, 1) * 4
        if bytes >= Self.mappedThreshold,
           let map = mmap(nil, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0), map != MAP_FAILED {
            pointer = map.bindMemory(to: Float.self, capacity: max(count, 1))  // page-aligned and zero-filled
            mappedBytes = bytes
            // Transparent huge pages where the system offers them on request: a fresh activation
            // buffer then faults in per 2 MiB instead of per 4 KiB (650,000 faults in a few
            // bf16 passes of a B model, several percent of the time).
            if bytes >= Self.hugePageThreshold { _ = madvise(map, bytes, MADV_HUGEPAGE) }
        } else {
            let raw = UnsafeMutableRawPointer.allocate(byteCount: bytes, alignment: 64)
            pointer = raw.bindMemory(to: Float.self, capacity: max(count, 1))
            if zeroed { pointer.initialize(repeating: 0, count: max(count, 1)) }
            mappedBytes = 0
        }
        self.count = count
        self.owned = true
        self.keepAlive = nil
        self.isReadOnly = false
    }

    private static let mappedThreshold = 1 << 20
    private static let hugePageThreshold = 4 << 20
    private let mappedBytes: Int

    /// Borrows read-only memory owned by `owner` (kept alive as long as this storage lives).
    public init(borrowingReadOnly pointer: UnsafePointer<Float>, count: Int, owner: AnyObject) {
        self.pointer = UnsafeMutablePointer(mutating: pointer)
        self.count = count
        self.owned = false
        self.keepAlive = owner
        self.isReadOnly = true
        self.mappedBytes = 0
    }

    deinit {
        guard owned else { return }
        if mappedBytes > 0 { munmap(UnsafeMutableRawPointer(pointer), mappedBytes) } else { UnsafeMutableRawPointer(pointer).deallocate() }
    }
}
