import Foundation
import Synchronization
import VTPVocabulary
import VTPModel
import VTPTensor

/// Loaded models by directory, so every shard of a job (and every job on the same checkpoint)
/// reuses one set of weights.
/// The cached `VTPModel`s are themselves safe for concurrent reads.
public final class ModelCache: Sendable {
    /// The process-wide cache (models use every core).
    public static let shared = ModelCache()

    private let models = Mutex<[String: VTPModel]>([:])
    /// Cores each loaded model's forward pass uses (nil: all cores of the machine).
    public let threads: Int?

    /// A cache whose models each use `threads` cores (nil: all), so several workers can share a machine.
    public init(threads: Int? = nil) {
        self.threads = threads
    }

    /// The model at `directory`, loading it on first use. Loading happens under the lock so two
    /// shards asking at once load it once; it blocks, so call from a thread you own.
    public func model(at directory: String, precision: ComputePrecisionName = .fp32) throws(JobError) -> VTPModel {
        try lookup(at: directory, precision: precision).model
    }

    /// ``model(at:precision:)``, also saying how long loading took: `loadSeconds` is nil when the
    /// model was already cached (for the workers' model-load metric).
    public func lookup(at directory: String, precision: ComputePrecisionName = .fp32) throws(JobError)
        -> (model: VTPModel, loadSeconds: Double?) {
        let key = URL(fileURLWithPath: directory).standardizedFileURL.path + "#" + precision.rawValue
        return try models.withLock { (models: inout [String: VTPModel]) throws(JobError) -> (model: VTPModel, loadSeconds: Double?) in
            if let cached = models[key] { return (cached, nil) }
            let start = ContinuousClock.now
            do {
                let model = try VTPModel(directory: directory, threads: threads,
                                         precision: ComputePrecision(rawValue: precision.rawValue) ?? .fp32)
                models[key] = model
                return (model, (ContinuousClock.now - start).seconds)
            } catch {
                throw .modelLoadFailed(model: directory, reason: "\(error)")
            }
        }
    }

    /// Drops every cached model (e.g. after a checkpoint was replaced on disk).
    public func removeAll() {
        models.withLock { $0.removeAll() }
    }
}
