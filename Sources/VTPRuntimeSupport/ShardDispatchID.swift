import Foundation
import VTPVocabulary
import VTPTransport

/// The `shardID` a coordinator puts on the wire: the job id in the high 32 bits, the shard's index
/// within the job in the low 32.
///
/// Carrying the job in the id lets any coordinator (including one restarted since the assignment)
/// turn a `shardDone`/`shardFailed` back into the ledger's (job, index) pair; the lease token then
/// proves the result belongs to the live lease.
public struct ShardDispatchID: Hashable, Sendable, CustomStringConvertible {
    public let jobID: Int64
    public let index: Int32

    /// Combines a job id (0...2^31-1) and a shard index (0...2^31-1).
    public init(jobID: Int64, index: Int32) {
        self.jobID = jobID
        self.index = index
    }

    /// Splits a wire id; `nil` when either half is out of range (a forged or corrupt id).
    public init?(wire: Int64) {
        guard wire >= 0 else { return nil }
        let index = wire & 0xFFFF_FFFF
        guard index <= Int64(Int32.max) else { return nil }
        self.jobID = wire >> 32
        self.index = Int32(index)
    }

    /// The wire form; `nil` when the job id does not fit 31 bits or the index is negative.
    public var wire: Int64? {
        guard (0...Int64(Int32.max)).contains(jobID), index >= 0 else { return nil }
        return jobID << 32 | Int64(index)
    }

    public var description: String { "\(jobID)/\(index)" }
}

extension LeaseToken {
    /// The ledger's lease UUID as a wire token.
    public init(uuid: UUID) {
        let u = uuid.uuid
        self.init(bytes: [u.0, u.1, u.2, u.3, u.4, u.5, u.6, u.7, u.8, u.9, u.10, u.11, u.12, u.13, u.14, u.15])!
    }

    /// The token as the ledger's UUID.
    public var uuid: UUID {
        let b = bytes
        return UUID(uuid: (b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15]))
    }
}
