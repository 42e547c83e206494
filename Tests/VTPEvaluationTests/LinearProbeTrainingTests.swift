import Foundation
import Testing
import VTPEvaluation

@Suite struct LinearProbeTrainingTests {
    /// PyTorch's recursive cosine stays on the closed form to rounding and reaches 0 at T_max.
    @Test func cosineScheduleFollowsTheClosedForm() {
        var schedule = CosineAnnealingSchedule(baseRate: 0.05, totalSteps: 12_500)
        #expect(schedule.rate == 0.05)
        for t in 1...12_500 {
            schedule.advance()
            let closed = 0.05 * (1 + cos(Double.pi * Double(t) / 12_500)) / 2
            #expect(abs(schedule.rate - closed) <= 1e-12, "step \(t): \(schedule.rate) vs \(closed)")
            if abs(schedule.rate - closed) > 1e-12 { break }
        }
        #expect(abs(schedule.rate) < 1e-15)
    }

    /// Each epoch reads whole shuffled passes, every row once per pass, and the draws are fixed by the seed.
    @Test func trainingOrderIsPassesOfPermutations() {
        let order = LinearProbeRandom.trainingOrder(seed: 3, epoch: 1, rows: 10, count: 25)
        #expect(order.count == 25)
        #expect(Set(order.prefix(10)) == Set(0..<10) && Set(order[10..<20]) == Set(0..<10))
        #expect(order.prefix(10) != order[10..<20])
        #expect(order == LinearProbeRandom.trainingOrder(seed: 3, epoch: 1, rows: 10, count: 25))
        #expect(order != LinearProbeRandom.trainingOrder(seed: 3, epoch: 2, rows: 10, count: 25))
        let weights = LinearProbeRandom.initialWeights(seed: 0, head: 1, classes: 10, inputDim: 100)
        let mean = weights.reduce(0, +) / 1000, variance = weights.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / 1000
        #expect(abs(mean) < 2e-3 && abs(variance.squareRoot() - 0.01) < 1.5e-3, "\(mean) \(variance.squareRoot())")
    }

    /// Two heads on a separable problem: both learn it, and a head whose rate overflows is frozen
    /// and reported without disturbing the other.
    @Test func headsLearnAndADivergedHeadIsIsolated() {
        let inputDim = 4, classes = 2, rows = 8
        // Class 1 when the first feature is positive.
        var x = [Float](repeating: 0, count: rows * inputDim)
        var labels: [Int] = []
        for r in 0..<rows {
            let sign: Float = r % 2 == 0 ? 1 : -1
            x[r * inputDim] = sign
            x[r * inputDim + 1] = Float(r) / 8
            labels.append(sign > 0 ? 1 : 0)
        }
        let group = LinearHeadGroup(inputDim: inputDim, classes: classes, initialWeights: [
            LinearProbeRandom.initialWeights(seed: 1, head: 0, classes: classes, inputDim: inputDim),
            LinearProbeRandom.initialWeights(seed: 1, head: 1, classes: classes, inputDim: inputDim),
        ])
        var first: [Double] = [], last: [Double] = []
        x.withUnsafeBufferPointer { p in
            for step in 0..<50 {
                let losses = group.step(p.baseAddress!, rows: rows, stride: inputDim, labels: labels, rates: [0.5, 3e38])
                if step == 0 { first = losses }
                last = losses
            }
            #expect(group.correct(p.baseAddress!, rows: rows, stride: inputDim, labels: labels)[0] == rows)
        }
        #expect(first[0] > 0.6 && last[0] < 0.05, "\(first) \(last)")
        #expect(group.divergedAt[0] == nil && group.divergedAt[1] != nil && last[1].isNaN)
    }
}
