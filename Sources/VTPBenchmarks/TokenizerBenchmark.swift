import VTPText

/// Throughput measurement of the CLIP tokenizer (`vtp bench tokenizer` and the Tokenizer suite under Benchmarks/).
public enum TokenizerBenchmark {
    /// Tokenizes `prompts` once with context length 77 on the calling thread and times it.
    /// The vocabulary is loaded before the clock starts; the BPE cache starts as it is.
    public static func run(prompts: [String], tokenizer: CLIPTokenizer? = nil)
        throws(CLIPTokenizerError) -> (seconds: Double, promptsPerSecond: Double)
    {
        let chosen: CLIPTokenizer
        if let tokenizer { chosen = tokenizer } else { chosen = try CLIPTokenizer.bundled() }
        let clock = ContinuousClock()
        var checksum: Int32 = 0
        let elapsed = clock.measure {
            for prompt in prompts {
                // Keep the result live so the work cannot be optimised away.
                checksum &+= chosen.tokenize(prompt)[1]
            }
        }
        _ = checksum
        let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) * 1e-18
        return (seconds, seconds > 0 ? Double(prompts.count) / seconds : .infinity)
    }

    /// `count` caption-like prompts, built deterministically (style, subject, tail and a number
    /// cycle at different rates), so every run tokenizes the same text and the BPE cache sees
    /// a realistic mix of repeated and new words.
    public static func captionPrompts(count: Int) -> [String] {
        let subjects = ["dog", "cat", "rocket", "cup of coffee", "astronaut", "mountain lake", "red car", "city street",
                        "bowl of ramen", "golden retriever", "violin", "lighthouse", "snowy owl", "bicycle", "sunflower field"]
        let styles = ["a photo of a", "a blurry photo of the", "an illustration of a", "a close-up photo of a",
                      "a painting of the", "a black and white photo of a", "a cropped photo of the", "a 3D render of a"]
        let tails = ["", " at night", " in the rain", ", high resolution", " on a white background", " taken in 1998"]
        return (0..<max(0, count)).map { i in
            "\(styles[i % styles.count]) \(subjects[(i / 8) % subjects.count])\(tails[(i / 3) % tails.count]) #\(i % 997)"
        }
    }
}
