import FuzzSupport
import VTPTransport

/// The frame decoder both socket ends run on every received frame (`RouterEndpoint`, `DealerEndpoint`).
/// It must never trap, whatever the peer sends; anything it accepts must re-encode (the encoder and
/// decoder enforce the same limits) to a frame that decodes to the same message.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzWire(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    let frame = Array(fuzzInput(data, size))
    let message: WireMessage
    do { message = try WireMessage.decode(frame) } catch {
        require(!error.description.isEmpty, "decode error without a description")
        return 0
    }
    let reencoded: [UInt8]
    do { reencoded = try message.encoded() } catch {
        require(false, "decoded \(message.type) does not re-encode: \(error)")
        return 0
    }
    require(reencoded.count <= frame.count, "re-encoded \(message.type) grew from \(frame.count) to \(reencoded.count) bytes")
    do {
        let again = try WireMessage.decode(reencoded)
        require(again == message, "\(message.type) changed in a decode-encode-decode round trip")
    } catch {
        require(false, "re-encoded \(message.type) does not decode: \(error)")
    }
    // The sockets decode with the direction check; it must agree with the message type's direction.
    let toCoordinator = (try? WireMessage.decode(frame, travelling: .workerToCoordinator)) != nil
    let toWorker = (try? WireMessage.decode(frame, travelling: .coordinatorToWorker)) != nil
    require(toCoordinator || toWorker, "\(message.type) may travel in neither direction")
    return 0
}
