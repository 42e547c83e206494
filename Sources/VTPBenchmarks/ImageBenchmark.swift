import Foundation
import VTPImage

/// Times the per-image preprocessing cost a worker pays.
public enum ImageBenchmark {
    /// Decodes the file at `path` and applies `adm-center-crop` 256, `iterations` times on
    /// the calling thread (file bytes read once, so disk speed is excluded); returns
    /// milliseconds per image.
    public static func run(path: String, iterations: Int, size: Int = 256) throws -> Double {
        guard iterations > 0 else { throw ImageError.invalidArgument("iterations \(iterations) must be positive") }
        let data: Data
        do {
            data = try Data(contentsOf: URL(fileURLWithPath: path))
        } catch {
            throw ImageError.unreadable(source: path, reason: (error as NSError).localizedDescription)
        }
        return try run(data: data, source: path, iterations: iterations, size: size)
    }

    /// ``run(path:iterations:size:)`` on encoded bytes already in memory; `source` names them in errors.
    public static func run(data: Data, source path: String, iterations: Int, size: Int = 256) throws -> Double {
        guard iterations > 0 else { throw ImageError.invalidArgument("iterations \(iterations) must be positive") }
        guard size > 0 else { throw ImageError.invalidArgument("size \(size) must be positive") }
        let decoder = ImageDecoder()
        let transform = PreprocessTransform.admCenterCrop(size: size)
        var checksum = 0
        // One untimed pass warms caches and surfaces decode errors before timing.
        checksum &+= Int(try transform.apply(to: decoder.decode(data, source: path)).pixels[0])
        let start = DispatchTime.now().uptimeNanoseconds
        for _ in 0..<iterations {
            let image = try transform.apply(to: decoder.decode(data, source: path))
            checksum &+= Int(image.pixels[image.pixels.count / 2])
        }
        let elapsed = DispatchTime.now().uptimeNanoseconds - start
        withExtendedLifetime(checksum) {}
        return Double(elapsed) / 1e6 / Double(iterations)
    }
}
