/// Why a job could not be configured, executed or finalized. Each case names the field, file or
/// item involved so an operator can act on it without reading code.
public enum JobError: Error, CustomStringConvertible, Equatable, Sendable {
    /// A parameter has a bad value; `field` is its JSON key.
    case invalidParameter(field: String, detail: String)
    /// The parameter document is not a JSON object of the expected shape.
    case badParameters(detail: String)
    /// A job type name the job layer does not know.
    case unknownJobType(String)
    /// The parameters do not fit the model (patch size, missing towers, too few blocks...).
    case modelMismatch(model: String, detail: String)
    /// The model directory could not be loaded.
    case modelLoadFailed(model: String, reason: String)
    /// The input could not be listed.
    case badInput(path: String, detail: String)
    /// A shard output could not be written (the whole shard failed).
    case writeFailed(path: String, reason: String)
    /// The job's output directory cannot be created or written to at all.
    case outputNotWritable(path: String, reason: String)
    /// A finished shard's summary sidecar is missing or unreadable, so the job cannot be finalized.
    case badShardSummary(path: String, detail: String)
    /// Inference failed for a whole batch (a model-side error, not a bad image).
    case inferenceFailed(shard: Int, detail: String)

    public var description: String {
        switch self {
        case let .invalidParameter(field, detail): "parameter '\(field)': \(detail)"
        case let .badParameters(detail): "job parameters: \(detail)"
        case let .unknownJobType(name): "unknown job type '\(name)' (known: \(JobType.allCases.map(\.rawValue).joined(separator: ", ")))"
        case let .modelMismatch(model, detail): "\(model): \(detail)"
        case let .modelLoadFailed(model, reason): "\(model): cannot load model: \(reason)"
        case let .badInput(path, detail): "\(path): \(detail)"
        case let .writeFailed(path, reason): "\(path): cannot write: \(reason)"
        case let .outputNotWritable(path, reason): "\(path): the output directory is not writable: \(reason)"
        case let .badShardSummary(path, detail): "\(path): \(detail)"
        case let .inferenceFailed(shard, detail): "shard \(shard): inference failed: \(detail)"
        }
    }

    /// Whether no shard of the job can succeed anywhere, so the job should fail at once instead of
    /// spending every shard's attempts on the same error: the model cannot load or does not fit
    /// the parameters, the parameters are invalid, or the output directory cannot be written.
    /// A failed write of one shard's files (a full disk, say) is not: another attempt may succeed.
    public var failsWholeJob: Bool {
        switch self {
        case .invalidParameter, .badParameters, .unknownJobType, .modelMismatch, .modelLoadFailed, .outputNotWritable: true
        case .badInput, .writeFailed, .badShardSummary, .inferenceFailed: false
        }
    }
}
