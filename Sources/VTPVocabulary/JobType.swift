import Foundation

/// The kinds of work a worker can run on a shard.
///
/// Extension point: a new kind (`clip-embed`, `clip-score`) adds a case here, a parameter struct
/// and a case in ``JobParameters``, and an internal `ShardJob` that says how items are
/// preprocessed, run through the model and written; the executor, pipeline, summaries and
/// finalizer are shared.
public enum JobType: String, Sendable, Codable, CaseIterable {
    /// VTP reconstruction latents in LightningDiT's layout (issue 4).
    case latents
    /// Encoder features (class / patch tokens, pooled) of the last or intermediate blocks.
    case features
    /// CLIP image (and caption) embeddings in clip-retrieval's layout, plus a FAISS index (issue 9).
    case clipEmbed = "clip-embed"
    /// Image–caption CLIP scores and zero-shot classification (issue 9).
    case clipScore = "clip-score"
    /// Upstream's reconstruction evaluation: PSNR and SSIM of each image's encode-decode round trip (issue 18).
    case reconstruction
    /// Upstream's linear probing over cached features: a sweep of linear heads (issue 18).
    case linearProbe = "linear-probe"

    /// Parses the ledger / wire name.
    public init(name: String) throws(JobError) {
        guard let type = JobType(rawValue: name) else { throw .unknownJobType(name) }
        self = type
    }
}

/// A job's parameters, typed by job kind; stored in the ledger as ``json()``.
public enum JobParameters: Sendable, Equatable {
    case latents(LatentsParameters)
    case features(FeaturesParameters)
    case clipEmbed(ClipEmbedParameters)
    case clipScore(ClipScoreParameters)
    case reconstruction(ReconstructionParameters)
    case linearProbe(LinearProbeParameters)

    /// The compute precision every shard of the job runs its model in.
    public var precision: ComputePrecisionName {
        switch self {
        case let .latents(p): p.precision
        case let .features(p): p.precision
        case let .clipEmbed(p): p.precision
        case let .clipScore(p): p.precision
        case let .reconstruction(p): p.precision
        // The heads train in float32 on features already computed.
        case .linearProbe: .fp32
        }
    }

    /// Whose resampling every shard of the job reproduces (the job's, never the worker's).
    public var pillow: PillowOption {
        switch self {
        case let .latents(p): p.pillow
        case let .features(p): p.pillow
        case let .clipEmbed(p): p.preprocessing.pillow
        case let .clipScore(p): p.preprocessing.pillow
        case let .reconstruction(p): p.pillow
        // No image is read: the features job that made the input recorded its own.
        case .linearProbe: .newJobDefault
        }
    }

    /// Class names by label (`labelClasses[label]`), JSON key `label_classes`: the classes of an
    /// ImageFolder tree, the `--classes` list, or the sorted class names of a manifest's labels.
    /// Set when the job is enqueued, from its listing, and recorded in the output manifest;
    /// empty when the input names no classes.
    public var labelClasses: [String] {
        get {
            switch self {
            case let .latents(p): p.labelClasses
            case let .features(p): p.labelClasses
            case let .clipEmbed(p): p.labelClasses
            case let .clipScore(p): p.labelClasses
            case let .reconstruction(p): p.labelClasses
            case let .linearProbe(p): p.labelClasses
            }
        }
        set {
            switch self {
            case var .latents(p): p.labelClasses = newValue; self = .latents(p)
            case var .features(p): p.labelClasses = newValue; self = .features(p)
            case var .clipEmbed(p): p.labelClasses = newValue; self = .clipEmbed(p)
            case var .clipScore(p): p.labelClasses = newValue; self = .clipScore(p)
            case var .reconstruction(p): p.labelClasses = newValue; self = .reconstruction(p)
            case var .linearProbe(p): p.labelClasses = newValue; self = .linearProbe(p)
            }
        }
    }

    /// The job kind these parameters belong to.
    public var jobType: JobType {
        switch self {
        case .latents: .latents
        case .features: .features
        case .clipEmbed: .clipEmbed
        case .clipScore: .clipScore
        case .reconstruction: .reconstruction
        case .linearProbe: .linearProbe
        }
    }

    /// Decodes and validates the JSON document of a job of kind `jobType`. Missing keys take
    /// their defaults; unknown keys are rejected so a misspelt option is not silently ignored.
    public static func decode(jobType: JobType, json: String) throws(JobError) -> JobParameters {
        switch jobType {
        case .latents: .latents(try ParameterDecoding.decode(LatentsParameters.self, json: json))
        case .features: .features(try ParameterDecoding.decode(FeaturesParameters.self, json: json))
        case .clipEmbed: .clipEmbed(try ParameterDecoding.decode(ClipEmbedParameters.self, json: json))
        case .clipScore: .clipScore(try ParameterDecoding.decode(ClipScoreParameters.self, json: json))
        case .reconstruction: .reconstruction(try ParameterDecoding.decode(ReconstructionParameters.self, json: json))
        case .linearProbe: .linearProbe(try ParameterDecoding.decode(LinearProbeParameters.self, json: json))
        }
    }

    /// The canonical JSON document (sorted keys, so equal parameters give equal text).
    public func json() -> String {
        switch self {
        case let .latents(p): ParameterDecoding.encode(p)
        case let .features(p): ParameterDecoding.encode(p)
        case let .clipEmbed(p): ParameterDecoding.encode(p)
        case let .clipScore(p): ParameterDecoding.encode(p)
        case let .reconstruction(p): ParameterDecoding.encode(p)
        case let .linearProbe(p): ParameterDecoding.encode(p)
        }
    }

    /// Batch size for inference.
    public var batchSize: Int {
        switch self {
        case let .latents(p): p.batchSize
        case let .features(p): p.batchSize
        case let .clipEmbed(p): p.batchSize
        case let .clipScore(p): p.batchSize
        case let .reconstruction(p): p.batchSize
        case let .linearProbe(p): p.batchSize
        }
    }
}

/// Parameter structs share strict decoding: unknown keys and type errors name the field.
protocol JobParameterSet: Codable, Sendable {
    /// Every JSON key the struct accepts.
    static var allowedKeys: Set<String> { get }
    /// Checks value ranges; throws ``JobError/invalidParameter(field:detail:)``.
    func validate() throws(JobError)
}

enum ParameterDecoding {
    static func decode<P: JobParameterSet>(_ type: P.Type, json: String) throws(JobError) -> P {
        let data = Data(json.utf8)
        let object: Any
        do { object = try JSONSerialization.jsonObject(with: data) } catch {
            throw .badParameters(detail: "not valid JSON")
        }
        guard let dict = object as? [String: Any] else { throw .badParameters(detail: "expected a JSON object") }
        if let unknown = dict.keys.sorted().first(where: { !P.allowedKeys.contains($0) }) {
            throw .invalidParameter(field: unknown, detail: "unknown parameter (known: \(P.allowedKeys.sorted().joined(separator: ", ")))")
        }
        let value: P
        do { value = try JSONDecoder().decode(P.self, from: data) } catch let error as JobError {
            throw error
        } catch let DecodingError.typeMismatch(expected, context) {
            throw .invalidParameter(field: fieldName(context), detail: "expected \(typeName(expected))")
        } catch let DecodingError.valueNotFound(expected, context) {
            throw .invalidParameter(field: fieldName(context), detail: "expected \(typeName(expected)), found null")
        } catch let DecodingError.dataCorrupted(context) {
            throw .invalidParameter(field: fieldName(context), detail: context.debugDescription)
        } catch {
            throw .badParameters(detail: "\(error)")
        }
        try value.validate()
        return value
    }

    static func encode<P: JobParameterSet>(_ value: P) -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        // Encoding plain structs of strings, numbers and bools cannot fail.
        return String(decoding: try! encoder.encode(value), as: UTF8.self)
    }

    private static func fieldName(_ context: DecodingError.Context) -> String {
        let path = context.codingPath.map { $0.intValue.map(String.init) ?? $0.stringValue }
        return path.isEmpty ? "(document)" : path.joined(separator: ".")
    }

    private static func typeName(_ type: Any.Type) -> String {
        switch type {
        case is Int.Type: "an integer"
        case is Bool.Type: "true or false"
        case is String.Type: "a string"
        default: "\(type)"
        }
    }
}

extension KeyedDecodingContainer {
    /// Decodes the optional `pillow` key: a string or number naming the release, absent meaning
    /// ``PillowOption/unrecorded``.
    func pillow(_ key: Key) throws -> PillowOption {
        guard contains(key), !(try decodeNil(forKey: key)) else { return .unrecorded }
        let raw: String
        if let number = try? decode(Int.self, forKey: key) {
            raw = String(number)
        } else if let text = try? decode(String.self, forKey: key) {
            raw = text
        } else {
            throw JobError.invalidParameter(field: key.stringValue, detail: "expected \(PillowOption.accepted)")
        }
        guard let option = PillowOption(name: raw) else {
            throw JobError.invalidParameter(field: key.stringValue, detail: "'\(raw)' is not a Pillow release vtp reproduces; expected \(PillowOption.accepted)")
        }
        return option
    }

    /// Decodes an optional key with a default, turning a bad enum string into an error naming the
    /// key and listing the accepted values.
    func choice<E: RawRepresentable & CaseIterable>(_ type: E.Type, _ key: Key, default value: E) throws -> E
    where E.RawValue == String {
        guard let raw = try decodeIfPresent(String.self, forKey: key) else { return value }
        guard let parsed = E(rawValue: raw) else {
            throw JobError.invalidParameter(field: key.stringValue,
                detail: "'\(raw)' is not one of \(E.allCases.map { $0.rawValue }.joined(separator: ", "))")
        }
        return parsed
    }
}
