import FuzzSupport
import VTPSettings

/// `ClusterSettings.load(path:)`, which every `vtp` command runs on `--config`: UTF-8 reading, the
/// TOML subset parser, key mapping and range validation. Every rejection must name the file (and,
/// from the parser, the line) so an operator can fix it.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzTOML(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    let path = ScratchFile.write(fuzzInput(data, size), name: "vtp.toml")
    do {
        let settings = try ClusterSettings.load(path: path, environment: [:])
        // A loaded configuration is a valid one.
        do { try settings.validate(source: path) } catch {
            require(false, "loaded settings fail validation: \(error)")
        }
    } catch {
        require("\(error)".hasPrefix(path + ":"), "configuration error does not name the file: \(error)")
    }
    return 0
}
