import Foundation
import Testing
import VTPModel
import VTPSafeTensors
import VTPTensor
import VTPTestSupport

/// An image's outputs are the same bits whatever batch it shares and however many threads run it,
/// on every kernel path and precision, so a shard retried in other batches reproduces a clean run.
@Suite struct BatchInvarianceTests {
    static let kernelPaths = KernelISA.allCases.filter { $0.isSupported && $0 != .blas }

    @Test(arguments: kernelPaths, ComputePrecision.allCases)
    func imagesEncodeToTheSameBitsAloneAndInBatches(_ isa: KernelISA, _ precision: ComputePrecision) throws {
        let expected = try Fixtures.safetensors("vtp-tiny.expected.safetensors")
        let pixels = try expected.tensor("pixel_values")            // 3 images
        let perImage = pixels.count / pixels.shape[0]
        // Batches of 3 and 8 built from the fixture images; image 1 sits at different positions.
        func batch(_ order: [Int]) -> Tensor {
            let out = Tensor(uninitialized: [order.count] + Array(pixels.shape.dropFirst()))
            for (slot, image) in order.enumerated() {
                (out.mutablePointer + slot * perImage).update(from: pixels.pointer + image * perImage, count: perImage)
            }
            return out
        }
        var reference: [UInt32]?
        for threads in [1, 2] {
            let model = try VTPModel(directory: Fixtures.path("vtp-tiny"), threads: threads, precision: precision, isa: isa)
            for (order, slot) in [([1], 0), ([0, 1, 2], 1), ([2, 2, 0, 0, 2, 0, 1, 2], 6)] {
                let latents = try model.reconstructionLatents(batch(order))
                let per = latents.count / order.count
                let bits = Array(latents.buffer[(slot * per)..<((slot + 1) * per)]).map(\.bitPattern)
                let features = try model.clipImageFeatures(batch(order))
                let width = features.shape[1]
                let clip = Array(features.buffer[(slot * width)..<((slot + 1) * width)]).map(\.bitPattern)
                if let reference {
                    #expect(bits + clip == reference, "\(isa) \(precision): batch \(order) at \(threads) threads differs")
                } else {
                    reference = bits + clip
                }
            }
        }
    }

    /// Texts too: the text tower's last block runs only the pooled rows, and a text's features do
    /// not depend on the texts beside it.
    @Test(arguments: kernelPaths, ComputePrecision.allCases)
    func textsEmbedToTheSameBitsAloneAndInBatches(_ isa: KernelISA, _ precision: ComputePrecision) throws {
        let expected = try Fixtures.safetensors("vtp-tiny.expected.safetensors")
        let ids = try expected.int64s("text_tokens").map { Int32($0) }
        let shape = try expected.info("text_tokens").shape
        let texts = shape[0], length = shape[1]
        func batch(_ order: [Int]) -> [Int32] { order.flatMap { ids[($0 * length)..<(($0 + 1) * length)] } }
        var reference: [UInt32]?
        for threads in [1, 2] {
            let model = try VTPModel(directory: Fixtures.path("vtp-tiny"), threads: threads, precision: precision, isa: isa)
            let last = texts - 1
            for (order, slot) in [([last], 0), (Array(0..<texts), last), ([0, last, 0, 0, last, 0, 0, 0], 4)] {
                let features = try model.clipTextFeatures(tokens: batch(order), count: order.count, normalize: false)
                let width = features.shape[1]
                let bits = Array(features.buffer[(slot * width)..<((slot + 1) * width)]).map(\.bitPattern)
                if let reference {
                    #expect(bits == reference, "\(isa) \(precision): texts \(order) at \(threads) threads differ")
                } else {
                    reference = bits
                }
            }
        }
    }
}
