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
}
