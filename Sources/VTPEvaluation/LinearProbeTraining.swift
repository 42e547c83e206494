import Foundation
import VTPRandom
import VTPTensor

/// `torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max, eta_min=0)` stepped once per
/// iteration, as upstream's linear probing steps it. PyTorch updates the rate recursively,
/// `lr_t = (1 + cos(π t / T)) / (1 + cos(π (t - 1) / T)) · lr_{t-1}`, not by the closed form, and
/// the two differ in the last bits; this is the recursive one, in the same float64 operations.
public struct CosineAnnealingSchedule: Sendable {
    /// Iterations over which the rate falls from its base to 0 (`T_max`).
    public let totalSteps: Int
    /// The rate the next optimizer step uses.
    public private(set) var rate: Double
    private var steps = 0

    public init(baseRate: Double, totalSteps: Int) {
        precondition(totalSteps >= 1, "a schedule needs at least one step")
        self.totalSteps = totalSteps
        rate = baseRate
    }

    /// `scheduler.step()`.
    public mutating func advance() {
        steps += 1
        let t = Double(steps), total = Double(totalSteps)
        if (steps - 1 - totalSteps) % (2 * totalSteps) == 0 {
            // Past the end, where PyTorch restarts the cosine (never reached by a probe's own schedule).
            rate += rate * (1 - cos(Double.pi / total)) / 2
        } else {
            rate = (1 + cos(Double.pi * t / total)) / (1 + cos(Double.pi * (t - 1) / total)) * rate
        }
    }
}

/// The random draws of a linear probe, from ``SplitMix64`` so that a reader can replay them
/// exactly (the golden script does, in Python):
///
/// - head `h` of the sweep starts from `SplitMix64(seed: seed ^ 0x5EED_0000_0000_0000 ^ h)`: its
///   weight matrix row by row, each entry `Float(nextNormal()) * Float(0.01)` (upstream's
///   `normal_(mean=0, std=0.01)`), bias 0;
/// - epoch `e` reads the training rows as one pass after another over the set, each pass a
///   Fisher–Yates shuffle `for i in (1..<N).reversed() { swap(order[i], order[next() % (i + 1)]) }`
///   of `0..<N` drawn from `SplitMix64(seed: seed ^ (e << 32) ^ pass)`, and its iteration `i`
///   takes rows `i·B ..< (i+1)·B` of that stream: upstream's `InfiniteSampler` over a
///   `RandomSampler`, whose iterator its training loop makes anew every epoch.
public enum LinearProbeRandom {
    /// Upstream's `LinearClassifier` initial weights for head `head`: (classes × inputDim), row-major.
    public static func initialWeights(seed: UInt64, head: Int, classes: Int, inputDim: Int) -> [Float] {
        var generator = SplitMix64(seed: seed ^ 0x5EED_0000_0000_0000 ^ UInt64(head))
        let std: Float = 0.01
        return (0..<(classes * inputDim)).map { _ in generator.nextNormal() * std }
    }

    /// The training rows epoch `epoch` reads, `count` of them, from a set of `rows` rows.
    public static func trainingOrder(seed: UInt64, epoch: Int, rows: Int, count: Int) -> [Int] {
        precondition(rows > 0, "no training rows")
        var order: [Int] = []
        order.reserveCapacity(count)
        var pass: UInt64 = 0
        while order.count < count {
            var generator = SplitMix64(seed: seed ^ (UInt64(epoch) << 32) ^ pass)
            var permutation = Array(0..<rows)
            for i in stride(from: rows - 1, to: 0, by: -1) {
                permutation.swapAt(i, Int(generator.next() % UInt64(i + 1)))
            }
            order += permutation.prefix(count - order.count)
            pass += 1
        }
        return order
    }
}

/// Linear classifiers over the same input, trained together as upstream trains its sweep: one
/// forward for every head at once (their weights stacked), each head's mean cross-entropy,
/// SGD with momentum 0.9 (PyTorch's: the first step's buffer is the gradient, then
/// `buf = 0.9·buf + grad`, `param -= lr·buf`), no weight decay. Heads never interact; a head
/// whose loss stops being finite is frozen and reported, the others go on.
///
/// Float32 throughout, with OpenBLAS products, as upstream trains on float32 features.
public final class LinearHeadGroup {
    public let inputDim: Int
    public let classes: Int
    public let count: Int
    /// (count·classes × inputDim), head after head, each as PyTorch's `Linear.weight`.
    private var weights: [Float]
    private var bias: [Float]
    private var weightMomentum: [Float]
    private var biasMomentum: [Float]
    private var stepped = false
    private var logits: [Float] = []
    private var weightGradient: [Float]
    /// The iteration at which each head's loss stopped being finite, if it did.
    public private(set) var divergedAt: [Int?]
    private var iteration = 0
    private let pool: ComputePool

    /// `initialWeights[h]` is head h's (classes × inputDim) matrix. The products are split over
    /// `pool`'s threads by rows of their outputs (OpenBLAS single-threaded inside each), which
    /// changes no result: no output's sum over the batch or the input is split.
    public init(inputDim: Int, classes: Int, initialWeights: [[Float]], pool: ComputePool = .serial) {
        self.pool = pool
        precondition(initialWeights.allSatisfy { $0.count == classes * inputDim }, "initial weights of the wrong size")
        self.inputDim = inputDim
        self.classes = classes
        count = initialWeights.count
        weights = initialWeights.flatMap { $0 }
        bias = [Float](repeating: 0, count: count * classes)
        weightMomentum = [Float](repeating: 0, count: weights.count)
        biasMomentum = [Float](repeating: 0, count: bias.count)
        weightGradient = [Float](repeating: 0, count: weights.count)
        divergedAt = [Int?](repeating: nil, count: count)
    }

    /// Head `h`'s weight matrix and bias.
    public func parameters(of h: Int) -> (weight: ArraySlice<Float>, bias: ArraySlice<Float>) {
        (weights[(h * classes * inputDim)..<((h + 1) * classes * inputDim)], bias[(h * classes)..<((h + 1) * classes)])
    }

    /// `logits = x · Wᵀ + b` for `rows` rows of `x` (row stride `stride`), every head side by side.
    private func forward(_ x: UnsafePointer<Float>, rows: Int, stride: Int) {
        let width = count * classes
        if logits.count < rows * width { logits = [Float](repeating: 0, count: rows * width) }
        weights.withUnsafeBufferPointer { w in
            logits.withUnsafeMutableBufferPointer { out in
                pool.gemm(m: rows, n: width, k: inputDim, a: x, lda: stride, b: w.baseAddress!, transposeB: true, c: out.baseAddress!)
                bias.withUnsafeBufferPointer { b in
                    for r in 0..<rows {
                        let row = out.baseAddress! + r * width
                        for j in 0..<width { row[j] += b[j] }
                    }
                }
            }
        }
    }

    /// One SGD step on a batch: `labels[r]` is row r's class. `rates[h]` is head h's learning rate
    /// for this step. Returns each head's mean cross-entropy before the step (NaN once diverged).
    public func step(_ x: UnsafePointer<Float>, rows: Int, stride: Int, labels: [Int], rates: [Double]) -> [Double] {
        precondition(labels.count == rows && rates.count == count, "labels or rates do not match the batch")
        forward(x, rows: rows, stride: stride)
        let width = count * classes
        var losses = [Double](repeating: 0, count: count)
        let scale = 1 / Float(rows)
        logits.withUnsafeMutableBufferPointer { out in
            // Turn the logits into dLoss/dlogits in place: (softmax − one-hot) / rows.
            for h in 0..<count {
                guard divergedAt[h] == nil else {
                    for r in 0..<rows { (out.baseAddress! + r * width + h * classes).update(repeating: 0, count: classes) }
                    losses[h] = .nan
                    continue
                }
                var total = 0.0
                for r in 0..<rows {
                    let z = out.baseAddress! + r * width + h * classes
                    var peak = -Float.infinity
                    for j in 0..<classes { peak = max(peak, z[j]) }
                    let label = labels[r]
                    // log-softmax as PyTorch takes it: large logits stay finite losses.
                    let shifted = z[label] - peak
                    var sum: Float = 0
                    for j in 0..<classes {
                        let e = Foundation.exp(z[j] - peak)
                        z[j] = e
                        sum += e
                    }
                    total += Double(Foundation.log(sum) - shifted)
                    let inverse = 1 / sum
                    for j in 0..<classes { z[j] = z[j] * inverse * scale }
                    z[label] -= scale
                }
                let loss = total / Double(rows)
                if loss.isFinite {
                    losses[h] = loss
                } else {
                    divergedAt[h] = iteration
                    losses[h] = .nan
                    for r in 0..<rows { (out.baseAddress! + r * width + h * classes).update(repeating: 0, count: classes) }
                }
            }
            weightGradient.withUnsafeMutableBufferPointer { g in
                // dW = Gᵀ · x over the batch, split by rows of dW (columns of G).
                let (gradient, logits) = (g.baseAddress!, out.baseAddress!)
                pool.parallelFor(width, grain: 256) { r in
                    BLAS.gemm(m: r.count, n: inputDim, k: rows, a: logits + r.lowerBound, lda: width, b: x, ldb: stride,
                              transposeB: false, c: gradient + r.lowerBound * inputDim, transposeA: true)
                }
            }
            biasMomentum.withUnsafeMutableBufferPointer { mb in
                bias.withUnsafeMutableBufferPointer { b in
                    for j in 0..<width {
                        var gradient: Float = 0
                        for r in 0..<rows { gradient += out[r * width + j] }
                        let h = j / classes
                        guard divergedAt[h] == nil else { continue }
                        mb[j] = stepped ? mb[j] * 0.9 + gradient : gradient
                        b[j] = b[j].addingProduct(mb[j], -Float(rates[h]))
                    }
                }
            }
        }
        weightGradient.withUnsafeBufferPointer { g in
            weightMomentum.withUnsafeMutableBufferPointer { m in
                weights.withUnsafeMutableBufferPointer { w in
                    let per = classes * inputDim
                    for h in 0..<count where divergedAt[h] == nil {
                        let rate = -Float(rates[h])
                        let g = g.baseAddress! + h * per, m = m.baseAddress! + h * per, w = w.baseAddress! + h * per
                        if stepped {
                            for i in 0..<per {
                                m[i] = m[i] * 0.9 + g[i]
                                w[i] = w[i].addingProduct(m[i], rate)
                            }
                        } else {
                            for i in 0..<per {
                                m[i] = g[i]
                                w[i] = w[i].addingProduct(m[i], rate)
                            }
                        }
                    }
                }
            }
        }
        stepped = true
        iteration += 1
        return losses
    }

    /// How many of `rows` rows each head classifies as `labels` says (arg max, the first on ties,
    /// as `torch.argmax`).
    public func correct(_ x: UnsafePointer<Float>, rows: Int, stride: Int, labels: [Int]) -> [Int] {
        forward(x, rows: rows, stride: stride)
        let width = count * classes
        var hits = [Int](repeating: 0, count: count)
        logits.withUnsafeBufferPointer { out in
            for h in 0..<count {
                for r in 0..<rows {
                    let z = out.baseAddress! + r * width + h * classes
                    var best = 0
                    for j in 1..<classes where z[j] > z[best] { best = j }
                    if best == labels[r] { hits[h] += 1 }
                }
            }
        }
        return hits
    }
}
