/// Throughput measurement of the CLIP tokenizer (used by the benchmark command and the report).
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
}
