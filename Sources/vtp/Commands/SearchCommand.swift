import ArgumentParser
import Foundation
import VTPConcurrency
import VTPJobs
import VTPVocabulary

/// `vtp search`: nearest images in a `clip-embed` output to a text or image query.
struct SearchCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "search",
        abstract: "Search a clip-embed output's index with a text or an image.",
        discussion: """
            The query is embedded with the model and preprocessing recorded in the output's manifest.json \
            (override the model with --model). Prints rank, score (cosine), source id, path and caption.
            """)

    @Option(help: "A clip-embed output directory (or its index/ subdirectory).") var index: String
    @Option(help: "Text query.") var text: String?
    @Option(help: "Image file query.") var image: String?
    @Option(name: .short, parsing: .unconditional, help: "Number of results.") var k: Int = 10
    @Option(help: "Checkpoint directory (default: the one recorded in the manifest).") var model: String?
    @Flag(help: "Print JSON.") var json = false

    func validate() throws {
        guard (text == nil) != (image == nil) else { throw ValidationError("pass exactly one of --text or --image") }
        guard k >= 1 else { throw ValidationError("-k must be at least 1") }
    }

    func run() async throws {
        let (text, image, k, index, model) = (text, image, k, index, model)
        // Model loading and inference block; run them on a thread of our own, not the cooperative pool.
        let hits = try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<[ClipSearchHit], any Error>) in
            let thread = Thread {
                continuation.resume(with: Result {
                    let search = try ClipSearch(directory: index, modelDirectory: model)
                    if let text { return try search.search(text: text, k: k) }
                    return try search.search(imageAt: image!, k: k)
                })
            }
            thread.name = "vtp-search"
            thread.stackSize = 8 << 20
            thread.start()
        }
        if json {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
            print(String(decoding: try encoder.encode(hits), as: UTF8.self))
            return
        }
        for hit in hits {
            let caption = hit.caption.map { "  \"\($0)\"" } ?? ""
            print(String(format: "%3d  %.4f  ", hit.rank, hit.score) + "\(hit.sourceId)  \(hit.path)" + caption)
        }
    }
}
