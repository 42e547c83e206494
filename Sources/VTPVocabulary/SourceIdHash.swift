/// The 64-bit hash of a sample's source id that listings use: FNV-1a over its UTF-8 bytes, finished
/// with splitmix64's mix so that sums of hashes of similar ids do not cancel. Stable across
/// processes and versions (listing digests stored in ledgers depend on it), unlike `Hasher`.
public enum SourceIdHash {
    /// FNV-1a 64's offset basis.
    public static let standardBasis: UInt64 = 0xcbf2_9ce4_8422_2325

    /// FNV-1a 64 of `id`'s UTF-8 bytes, starting from `basis`.
    public static func fnv1a(_ id: String, basis: UInt64 = standardBasis) -> UInt64 {
        var hash = basis
        for byte in id.utf8 { hash = (hash ^ UInt64(byte)) &* 0x100_0000_01b3 }
        return hash
    }

    /// splitmix64's finalizer.
    public static func mix(_ value: UInt64) -> UInt64 {
        var z = value
        z = (z ^ (z >> 30)) &* 0xbf58_476d_1ce4_e5b9
        z = (z ^ (z >> 27)) &* 0x94d0_49bb_1331_11eb
        return z ^ (z >> 31)
    }

    /// ``fnv1a(_:basis:)`` finished with ``mix(_:)``.
    public static func of(_ id: String) -> UInt64 { mix(fnv1a(id)) }
}
