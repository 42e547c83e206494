import Testing
import VTPVocabulary
@testable import VTPIndex

@Suite struct IndexPlanTests {
    @Test func listCountFollowsSquareRootRuleAndTrainingMinimum() {
        #expect(IndexPlan.automaticListCount(100_000) == 1_024)
        #expect(IndexPlan.automaticListCount(1_000_000) == 4_096)
        #expect(IndexPlan.automaticListCount(10_000_000) == 16_384)
        // 4 000 vectors would like 256 lists but only have 39 training points for 102 of them.
        #expect(IndexPlan.automaticListCount(4_000) == 64)
        #expect(IndexPlan.automaticListCount(10) == 1)
    }

    @Test func subquantizersDivideTheDimension() {
        #expect(IndexPlan.largestDivisor(of: 512, atMost: 256) == 256)
        #expect(IndexPlan.largestDivisor(of: 768, atMost: 384) == 384)
        #expect(IndexPlan.largestDivisor(of: 100, atMost: 30) == 25)
        #expect(IndexPlan.largestDivisor(of: 7, atMost: 3) == 1)
    }

    @Test func thresholdChoosesTheKind() {
        let options = IndexOptions()
        #expect(IndexPlan.choose(count: 99_999, dimension: 512, options: options).factoryKey == "Flat")
        let big = IndexPlan.choose(count: 1_000_000, dimension: 512, options: options)
        #expect(big.factoryKey == "IVF4096,SQ8")
        #expect(big.kind == .invertedFile(lists: 4_096, codes: .scalar8, trainingCount: 163_840))
        var compact = options
        compact.encoding = .productQuantizer(dimensionsPerSubquantizer: 4, bitsPerCode: 8)
        #expect(IndexPlan.choose(count: 1_000_000, dimension: 768, options: compact).factoryKey == "IVF4096,PQ192x8")
        // Too few vectors to train 256 PQ centroids: exact even under a zero threshold; SQ8 has no such floor.
        compact.exactThreshold = 0
        #expect(IndexPlan.choose(count: 200, dimension: 64, options: compact).factoryKey == "Flat")
        #expect(IndexPlan.choose(count: 200, dimension: 64, options: IndexOptions(exactThreshold: 0)).factoryKey == "IVF4,SQ8")
    }

    @Test func probeTunerDoublesUntilTargetOrPlateau() {
        var reaching = ProbeTuner(lists: 64, targetRecall: 0.9)
        #expect(reaching.first == .measure(probes: 1))
        #expect(reaching.observe(recall: 0.5) == .measure(probes: 2))
        #expect(reaching.observe(recall: 0.8) == .measure(probes: 4))
        #expect(reaching.observe(recall: 0.93) == .done(probes: 4, recall: 0.93))

        var plateau = ProbeTuner(lists: 64, targetRecall: 0.99)
        _ = plateau.observe(recall: 0.7)
        _ = plateau.observe(recall: 0.85)
        #expect(plateau.observe(recall: 0.851) == .done(probes: 2, recall: 0.85))

        var exhausted = ProbeTuner(lists: 2, targetRecall: 0.99)
        #expect(exhausted.observe(recall: 0.5) == .measure(probes: 2))
        #expect(exhausted.observe(recall: 0.9) == .done(probes: 2, recall: 0.9))
    }

    @Test func samplesAreDistinctSortedAndReproducible() {
        let a = RowSampling.sample(100, of: 1_000, seed: 7)
        #expect(a.count == 100 && Set(a).count == 100)
        #expect(a == a.sorted() && a.allSatisfy { (0..<1_000).contains($0) })
        #expect(a == RowSampling.sample(100, of: 1_000, seed: 7))
        #expect(a != RowSampling.sample(100, of: 1_000, seed: 8))
        #expect(RowSampling.sample(50, of: 20, seed: 1) == Array(0..<20))
    }
}
