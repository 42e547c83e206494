import Foundation
import VTPVocabulary
import VTPIndex
import VTPModel
import VTPSafeTensors
import VTPStorage

/// The CLIP parts of ``JobFinalizer``: the index over all image embeddings, score summaries and
/// the manifest's extra sections.
enum ClipFinalizing {
    /// Model facts `vtp search` needs besides the directory.
    static func modelEntries(_ config: VTPConfig) -> [String: String] {
        ["clip_embed_dim": String(config.textEmbedDim), "text_context_length": String(config.textContextLength),
         "image_size": String(config.imageSize)]
    }

    /// The manifest's `clip` section: how the files line up.
    static func embedLayout(text: Bool) -> [String: Any] {
        [
            "image_embeddings": "img_emb/img_emb_{i:05d}.npy",
            "text_embeddings": text ? "text_emb/text_emb_{i:05d}.npy (rows: metadata lines with non-null text_row)" : "none",
            "metadata": "metadata/metadata_{i:05d}.jsonl (one line per img_emb row)",
            "index_rows": "image rows of the shards in manifest order",
            "normalized": true,
        ]
    }

    /// Builds `index/` over the image rows of `shards` (in order) and returns its `infos.json` as a section.
    /// The rows are read from the shards' memory-mapped `.npy` files, never all at once above the exact
    /// threshold, within `memoryBudget` bytes when one is given (see `IndexBuilder.build(shardFiles:...)`).
    static func buildIndex(shards: [WrittenShard], outputDirectory: String, exactThreshold: Int,
                           encoding: IndexEncodingOption, memoryBudget: Int? = nil) throws(JobError) -> [String: Any] {
        let indexDirectory = outputDirectory + "/" + ClipLayout.indexDirectory
        var options = IndexOptions(exactThreshold: exactThreshold)
        options.encoding = encoding.vectorEncoding
        options.memoryBudget = memoryBudget
        do {
            let info = try IndexBuilder.build(shardFiles: shards.map { outputDirectory + "/" + $0.fileName }, expectedRows: shards.map(\.rows),
                                              outputDirectory: indexDirectory, options: options)
            return (try jsonObject(info) as? [String: Any]) ?? [:]
        } catch let error as IndexError {
            if case let .badEmbeddingFile(path, detail) = error { throw .badShardSummary(path: path, detail: "cannot read embeddings: \(detail)") }
            throw .writeFailed(path: indexDirectory, reason: "index build failed: \(error)")
        } catch {
            throw .writeFailed(path: indexDirectory, reason: "index build failed: \(error)")
        }
    }

    /// Caption-score and zero-shot accuracy sections from the shards' score files.
    static func scoreSummary(shards: [WrittenShard], parameters: ClipScoreParameters, outputDirectory: String) throws(JobError) -> [String: Any] {
        var captioned = 0, cosineSum = 0.0, logitSum = 0.0
        var labeled = 0, top1 = 0, top5 = 0, classified = 0
        for shard in shards {
            for row in try readScores(outputDirectory + "/" + shard.fileName) {
                if let cos = row.captionCosine, let logit = row.captionLogit {
                    captioned += 1
                    cosineSum += Double(cos)
                    logitSum += Double(logit)
                }
                guard let top = row.topClasses else { continue }
                classified += 1
                guard let label = row.label else { continue }
                labeled += 1
                if top.first == label { top1 += 1 }
                if top.prefix(5).contains(label) { top5 += 1 }
            }
        }
        var out: [String: Any] = [
            "caption_scores": [
                "count": captioned,
                "mean_cosine": captioned > 0 ? cosineSum / Double(captioned) : NSNull(),
                "mean_logit": captioned > 0 ? logitSum / Double(captioned) : NSNull(),
            ] as [String: Any],
        ]
        if let classes = parameters.classes {
            var zeroShot: [String: Any] = [
                "classes": classes, "templates": parameters.templates ?? "openai", "top_k": parameters.topK,
                "classified": classified, "labeled": labeled,
                "probabilities": "softmax over classes of 100 * cosine",
                "class_embeddings": ClipLayout.zeroShotDirectory + "/" + ZeroShotClassifier.embeddingsFile,
            ]
            if labeled > 0 {
                zeroShot["top1_accuracy"] = Double(top1) / Double(labeled)
                // With top_k below 5 only the stored classes can match, so top-5 is not reported.
                zeroShot["top5_accuracy"] = parameters.topK >= 5 ? Double(top5) / Double(labeled) : NSNull()
                // As upstream's zero-shot script prints them (tools/test_zero_shot_hf.py: correct / n * 100).
                zeroShot["top1_percent"] = Double(top1) / Double(labeled) * 100
                zeroShot["top5_percent"] = parameters.topK >= 5 ? Double(top5) / Double(labeled) * 100 : NSNull()
            }
            out["zero_shot"] = zeroShot
        }
        return out
    }

    static func readScores(_ path: String) throws(JobError) -> [ClipScoreRow] {
        try readJSONLRows(path, as: ClipScoreRow.self, file: "scores file", row: "score row")
    }

    static func jsonObject(_ value: some Encodable) throws -> Any {
        try JSONSerialization.jsonObject(with: try JSONEncoder().encode(value))
    }

    /// Writes the manifest with extra top-level sections. `RunManifest.read` ignores keys it does
    /// not know, so the file stays a valid run manifest for every reader.
    static func write(_ manifest: RunManifest, extras: [String: Any], to path: String) throws {
        guard var object = try jsonObject(manifest) as? [String: Any] else { preconditionFailure("a manifest encodes as an object") }
        for (key, value) in extras { object[key] = value }
        var data = try JSONSerialization.data(withJSONObject: object, options: [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes])
        data.append(0x0A)
        try AtomicFile.write(data, to: path)
    }
}
