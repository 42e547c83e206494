import ArgumentParser
import VTPTransport

/// `vtp keys ...`: CURVE key management for the coordinator and workers.
struct KeysCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "keys",
        abstract: "Manage CURVE keys that encrypt and authenticate coordinator/worker traffic.",
        subcommands: [Generate.self]
    )

    /// `vtp keys generate --output PREFIX`.
    struct Generate: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Generate a CURVE key pair: PREFIX.key (secret, mode 0600) and PREFIX.pub (public), as Z85 text."
        )

        @Option(name: .long, help: "Path prefix of the key files to write.")
        var output: String

        @Flag(name: .long, help: "Replace existing key files.")
        var force = false

        func run() async throws {
            guard ZMQContext.has("curve") else {
                throw ValidationError("the linked libzmq was built without CURVE support")
            }
            let pair = try CurveKeyPair.generate()
            try pair.write(prefix: output, overwrite: force)
            print("wrote \(output).key (secret, 0600) and \(output).pub")
            print("public key: \(pair.publicKey.z85)")
        }
    }
}
