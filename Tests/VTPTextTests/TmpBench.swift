import Foundation
import Testing
@testable import VTPText
@Test func tmpBench() throws {
    let adjectives = ["red", "small", "fluffy", "ancient", "shiny", "wooden", "blue", "happy", "rusty", "giant", "tiny", "golden"]
    let nouns = ["dog", "cat", "car", "house", "robot", "tree", "boat", "mountain", "cup", "guitar", "bicycle", "castle"]
    let places = ["on the beach", "in the forest", "at night", "under the rain", "in a city street", "on a table", "in space"]
    let styles = ["", ", oil painting", ", 4k photo", ", watercolor", ", trending on artstation", ", by Claude Monet"]
    var prompts: [String] = []
    for i in 0..<100_000 {
        prompts.append("A photo of a \(adjectives[i % 12]) \(nouns[(i / 12) % 12]) \(places[(i / 144) % 7])\(styles[(i / 1008) % 6]) #\(i)")
    }
    let tok = try CLIPTokenizer(vocabularyPath: CLIPTokenizerTestPaths.vocabulary)
    let cold = try TokenizerBenchmark.run(prompts: prompts, tokenizer: tok)
    let warm = try TokenizerBenchmark.run(prompts: prompts, tokenizer: tok)
    print("BENCH captions cold", cold, "warm", warm)
    let fuzz = try ReferenceCases.extra().map(\.text)
    let url = ReferenceCases.extraPath.deletingLastPathComponent().appendingPathComponent("tokenizer_fuzz_cases.json")
    let f = try JSONDecoder().decode(ReferenceCases.ExtraFile.self, from: Data(contentsOf: url)).cases.map(\.text)
    var hard: [String] = []
    while hard.count < 100_000 { hard += f + fuzz }
    hard = Array(hard.prefix(100_000))
    let tok2 = try CLIPTokenizer(vocabularyPath: CLIPTokenizerTestPaths.vocabulary)
    print("BENCH hard", try TokenizerBenchmark.run(prompts: hard, tokenizer: tok2))
    let t0 = ContinuousClock.now
    _ = try CLIPTokenizer(vocabularyPath: CLIPTokenizerTestPaths.vocabulary)
    print("BENCH load", ContinuousClock.now - t0)
}
