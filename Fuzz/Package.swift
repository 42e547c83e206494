// swift-tools-version: 6.1
import PackageDescription

/// libFuzzer harnesses for vtp's parsers of untrusted bytes. Each executable exports
/// `LLVMFuzzerTestOneInput` and calls the same public functions the product calls, from the main
/// package's library products (the parent directory), so the fuzzed code is the shipped code.
///
/// Built only by `scripts/fuzz.sh` with `--sanitize=fuzzer --sanitize=address`: libFuzzer supplies
/// `main`, hence `-parse-as-library`. A plain `swift build` here fails to link, by design.
let harnessSettings: [SwiftSetting] = [
    .enableUpcomingFeature("ExistentialAny"),
    .enableUpcomingFeature("MemberImportVisibility"),
    .unsafeFlags(["-parse-as-library"]),
]

/// One executable per fuzz target: the name scripts/fuzz.sh uses, and the main-package products it drives.
let harnesses: [(name: String, products: [String])] = [
    ("fuzz-wire", ["VTPTransport"]),
    ("fuzz-safetensors", ["VTPSafeTensors", "VTPTensor"]),
    ("fuzz-image", ["VTPImage"]),
    ("fuzz-tar", ["VTPDatasets", "VTPVocabulary"]),
    ("fuzz-manifest", ["VTPDatasets", "VTPVocabulary"]),
    ("fuzz-toml", ["VTPSettings"]),
]

let package = Package(
    name: "vtp-fuzz",
    platforms: [.macOS(.v15)],
    products: harnesses.map { .executable(name: $0.name, targets: [$0.name]) },
    dependencies: [
        .package(name: "vtp", path: ".."),
    ],
    targets: [
        .target(name: "FuzzSupport", path: "Sources/FuzzSupport",
                swiftSettings: [.enableUpcomingFeature("ExistentialAny"), .enableUpcomingFeature("MemberImportVisibility")]),
    ] + harnesses.map { harness in
        .executableTarget(
            name: harness.name,
            dependencies: ["FuzzSupport"] + harness.products.map { .product(name: $0, package: "vtp") },
            path: "Sources/\(harness.name)",
            swiftSettings: harnessSettings)
    }
)
