import Foundation
import Synchronization
import VTPConcurrency
import VTPCoordinator
import VTPJobs
import VTPVocabulary

/// `vtp run clip-score --classes ...`: encodes the class prompts before the workers start, saying
/// so and showing how far it got, instead of a progress bar that sits at 0 while every worker
/// encodes the same prompts; a later job with the same model and classes takes them from the
/// shared cache (``ZeroShotPreparation``).
enum ZeroShotProgress {
    static func prepare(_ parameters: ClipScoreParameters, request: JobRequest, threads: Int, interactive: Bool) async throws {
        let shared = ZeroShotPreparation.sharedCacheRoot()
        let status = try ZeroShotPreparation.status(parameters: parameters, modelDirectory: request.model,
                                                    outputDirectory: request.output, sharedCache: shared)
        guard case let .encode(work) = status else {
            if case let .restored(entry) = status { printError("clip-score: class embeddings taken from the cache in \(entry)") }
            return
        }
        printError("clip-score: encoding \(work.prompts) class prompts (\(work.classSource) x \(work.templates) templates) "
                   + "once for this job; cached in \(work.cacheDirectory)")
        let start = ContinuousClock.now
        let lastLine = Mutex(ContinuousClock.now - .seconds(60))
        let stored = try await BlockingWork.run(name: "vtp-zero-shot") {
            try ZeroShotPreparation.build(parameters: parameters, modelDirectory: request.model, outputDirectory: request.output,
                                          sharedCache: shared, threads: threads) { done, total in
                let text = "class prompts: \(done)/\(total) classes encoded"
                if interactive {
                    FileHandle.standardError.write(Data("\r\(text)  ".utf8))
                } else if lastLine.withLock({ last in
                    guard ContinuousClock.now - last >= .seconds(5) || done == total else { return false }
                    last = .now
                    return true
                }) {
                    printError(text)
                }
            }
        }
        if interactive { FileHandle.standardError.write(Data("\n".utf8)) }
        let elapsed = ContinuousClock.now - start
        let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
        printError(String(format: "clip-score: class prompts encoded in %.1f s", seconds)
                   + (stored.map { "; kept for later jobs in \($0)" } ?? ""))
    }
}
