import VTPVocabulary
/// Deterministic split of N ordered items into consecutive shards of at most S items.
public struct ShardPlan: Sendable, Equatable {
    /// Total number of items.
    public let itemCount: Int
    /// Items per shard (the last shard may hold fewer).
    public let shardSize: Int

    /// A plan for `itemCount` items in shards of `shardSize`; `shardSize` must be positive.
    public init(itemCount: Int, shardSize: Int) throws {
        guard shardSize > 0 else { throw ShardPlanError.badShardSize(shardSize) }
        guard itemCount >= 0 else { throw ShardPlanError.badItemCount(itemCount) }
        self.itemCount = itemCount
        self.shardSize = shardSize
    }

    /// Number of shards: ceil(N / S).
    public var shardCount: Int { (itemCount + shardSize - 1) / shardSize }

    /// Ordinals of shard `index`: `[index*S, min((index+1)*S, N))`.
    public func range(ofShard index: Int) -> Range<Int> {
        precondition(index >= 0 && index < shardCount, "shard \(index) out of 0..<\(shardCount)")
        return (index * shardSize)..<min((index + 1) * shardSize, itemCount)
    }

    /// Every shard's range, in order.
    public var ranges: [Range<Int>] { (0..<shardCount).map(range(ofShard:)) }

    /// The shard holding `ordinal`.
    public func shard(containing ordinal: Int) -> Int {
        precondition(ordinal >= 0 && ordinal < itemCount, "ordinal \(ordinal) out of 0..<\(itemCount)")
        return ordinal / shardSize
    }
}

/// Invalid shard plan parameters.
public enum ShardPlanError: Error, CustomStringConvertible, Equatable {
    case badShardSize(Int)
    case badItemCount(Int)

    public var description: String {
        switch self {
        case let .badShardSize(s): "shard size must be at least 1, got \(s)"
        case let .badItemCount(n): "item count must not be negative, got \(n)"
        }
    }
}
