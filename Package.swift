// swift-tools-version: 6.1
import PackageDescription

/// Settings every Swift target shares: strict Swift 6 plus the upcoming features the style guide asks for.
let strictSettings: [SwiftSetting] = [
    .enableUpcomingFeature("ExistentialAny"),
    .enableUpcomingFeature("MemberImportVisibility"),
]

/// Release-style optimisation without runtime checks, even in debug builds, for the numeric
/// kernels only (VTPTensor): they index buffers whose sizes their callers have already checked,
/// and the tests on the real fixtures must stay fast.
let kernelSettings: [SwiftSetting] = strictSettings + [
    .unsafeFlags(["-Ounchecked"]),
]

/// Optimised but checked: modules that parse untrusted bytes (weights, tokenizer tables, images)
/// or run the model keep every precondition and overflow check, in the product and in the tests.
let optimizedSettings: [SwiftSetting] = strictSettings + [
    .unsafeFlags(["-O"]),
]

let package = Package(
    name: "vtp",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "vtp", targets: ["vtp"]),
        .library(name: "VTPModel", targets: ["VTPModel"]),
        // The parsers of untrusted bytes, for the libFuzzer harnesses in Fuzz/ (a package of its own
        // that depends on this one by path and so drives the shipped code).
        .library(name: "VTPTransport", targets: ["VTPTransport"]),
        .library(name: "VTPSafeTensors", targets: ["VTPSafeTensors"]),
        .library(name: "VTPTensor", targets: ["VTPTensor"]),
        .library(name: "VTPImage", targets: ["VTPImage"]),
        .library(name: "VTPDatasets", targets: ["VTPDatasets"]),
        .library(name: "VTPVocabulary", targets: ["VTPVocabulary"]),
        .library(name: "VTPSettings", targets: ["VTPSettings"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/apple/swift-log", from: "1.6.0"),
        // Metrics: the swift-metrics API, exported by swift-prometheus, served over FlyingFox
        // (an HTTP server on its own non-blocking sockets, with no further dependencies).
        .package(url: "https://github.com/apple/swift-metrics", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.1"),
        .package(url: "https://github.com/swhitty/FlyingFox", from: "0.27.1"),
        // File descriptors with EINTR and short-I/O handling done once.
        .package(url: "https://github.com/apple/swift-system", from: "1.8.1"),
        // Long-running commands as services: signal handling, shutdown order.
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.13.0"),
        // Child processes (the PostgreSQL tools, `vtp run`'s workers), waited for on pidfds. Its
        // Foundation trait is left out: only file descriptors are passed.
        .package(url: "https://github.com/swiftlang/swift-subprocess", from: "1.0.2", traits: []),
        // package-benchmark, for the suites under Benchmarks/ only (no product links it). The explicit trait
        // list leaves out its default RuntimeInterposer, whose extra package is not needed here.
        .package(url: "https://github.com/ordo-one/benchmark", from: "1.38.1", traits: ["MallocInterposer"]),
    ],
    targets: [
        // MARK: C system libraries (module maps + shims), one per library.
        .systemLibrary(name: "COpenBLAS", path: "Sources/CSystem/COpenBLAS", pkgConfig: "openblas",
                       providers: [.apt(["libopenblas-dev"])]),
        .systemLibrary(name: "CZeroMQ", path: "Sources/CSystem/CZeroMQ", pkgConfig: "libzmq",
                       providers: [.apt(["libzmq3-dev"])]),
        .systemLibrary(name: "CLibPQ", path: "Sources/CSystem/CLibPQ", pkgConfig: "libpq",
                       providers: [.apt(["libpq-dev"])]),
        .systemLibrary(name: "CJPEG", path: "Sources/CSystem/CJPEG", pkgConfig: "libjpeg",
                       providers: [.apt(["libjpeg62-turbo-dev"])]),
        .systemLibrary(name: "CPNG", path: "Sources/CSystem/CPNG", pkgConfig: "libpng16",
                       providers: [.apt(["libpng-dev"])]),
        .systemLibrary(name: "CWebP", path: "Sources/CSystem/CWebP", pkgConfig: "libwebp",
                       providers: [.apt(["libwebp-dev"])]),
        .systemLibrary(name: "CZlib", path: "Sources/CSystem/CZlib", pkgConfig: "zlib",
                       providers: [.apt(["zlib1g-dev"])]),
        // Debian's libfaiss.a has no C API, so this C++ target wraps the calls we need behind extern "C".
        // faiss needs BLAS+LAPACK (Debian's OpenBLAS exports both) and OpenMP (libgomp).
        .target(name: "CFaissShim", path: "Sources/CSystem/CFaissShim",
                linkerSettings: [.linkedLibrary("faiss"), .linkedLibrary("openblas"), .linkedLibrary("gomp")]),

        // vtp's own GEMM/attention kernels (AVX2, AVX-512F, AVX512_BF16), selected at run time by CPUID.
        // Always optimized: the tiles are only worth having at -O3, debug builds included. No -m flags:
        // each kernel carries its own target attribute.
        .target(name: "CVTPKernels", path: "Sources/CSystem/CVTPKernels",
                cSettings: [.unsafeFlags(["-O3", "-Wno-psabi"])]),

        // MARK: Shared utilities.
        .target(name: "VTPRandom", dependencies: [], path: "Sources/VTPRandom", swiftSettings: strictSettings),
        // The job vocabulary every side shares (Foundation only): job types and parameters, the
        // item record and result, the shard task, and the handler/finalizer seams.
        // Blocking work off the cooperative pool: a thread per call, or one serial thread.
        .target(name: "VTPConcurrency", dependencies: [], path: "Sources/VTPConcurrency", swiftSettings: strictSettings),
        // The one process spawner (swift-subprocess).
        .target(name: "VTPProcesses", dependencies: [.product(name: "Subprocess", package: "swift-subprocess"),
                                                   .product(name: "SystemPackage", package: "swift-system")],
                path: "Sources/VTPProcesses", swiftSettings: strictSettings),
        .target(name: "VTPVocabulary", dependencies: [], path: "Sources/VTPVocabulary", swiftSettings: strictSettings),

        // MARK: Tensor kernels and model.
        .target(name: "VTPTensor", dependencies: ["COpenBLAS", "CVTPKernels"], path: "Sources/VTPTensor",
                swiftSettings: kernelSettings),
        .target(name: "VTPSafeTensors", dependencies: ["VTPTensor", .product(name: "SystemPackage", package: "swift-system")], path: "Sources/VTPSafeTensors",
                swiftSettings: optimizedSettings),
        .target(name: "VTPModel", dependencies: ["VTPTensor", "VTPSafeTensors", "VTPRandom"], path: "Sources/VTPModel",
                swiftSettings: optimizedSettings),

        // MARK: Inputs.
        .target(name: "VTPText", dependencies: ["CZlib"], path: "Sources/VTPText",
                resources: [.copy("Resources/bpe_simple_vocab_16e6.txt.gz"), .copy("Resources/LICENSE-CLIP.txt")],
                swiftSettings: optimizedSettings, linkerSettings: [.linkedLibrary("z")]),
        .target(name: "CImageShims", dependencies: ["CJPEG", "CPNG"], path: "Sources/CSystem/CImageShims"),
        .target(name: "VTPImage", dependencies: ["CJPEG", "CPNG", "CWebP", "CImageShims", .product(name: "SystemPackage", package: "swift-system")], path: "Sources/VTPImage",
                swiftSettings: optimizedSettings),
        .target(name: "VTPDatasets", dependencies: ["VTPVocabulary", .product(name: "SystemPackage", package: "swift-system")],
                path: "Sources/VTPDatasets", swiftSettings: strictSettings),

        // MARK: Storage, ledger, transport.
        .target(name: "VTPStorage", dependencies: ["VTPSafeTensors", "VTPTensor", "VTPVocabulary",
                                                  .product(name: "SystemPackage", package: "swift-system")], path: "Sources/VTPStorage",
                swiftSettings: strictSettings),
        .target(name: "VTPQueue", dependencies: ["CLibPQ", "VTPVocabulary", "VTPConcurrency", "VTPProcesses", .product(name: "Logging", package: "swift-log")],
                path: "Sources/VTPQueue", swiftSettings: strictSettings),
        .target(name: "VTPTransport", dependencies: ["CZeroMQ", "VTPRandom", "VTPVocabulary", .product(name: "Logging", package: "swift-log"),
                                                    .product(name: "SystemPackage", package: "swift-system")],
                path: "Sources/VTPTransport", swiftSettings: strictSettings),
        .target(name: "VTPIndex", dependencies: ["CFaissShim", "VTPStorage", "VTPSafeTensors", "VTPRandom", "VTPVocabulary", "VTPTensor"], path: "Sources/VTPIndex",
                swiftSettings: strictSettings),

        // Upstream's evaluation metrics (PSNR, SSIM, the Fréchet distance) on plain float images and
        // features: no model, no I/O; optimized even in debug builds, as the job tests score full-size images.
        .target(name: "VTPEvaluation", dependencies: ["VTPTensor", "VTPRandom"], path: "Sources/VTPEvaluation", swiftSettings: optimizedSettings),
        // The metric networks: pytorch-fid's Inception (FID features) and LPIPS' VGG16, on the
        // convolution kernels of VTPTensor, loaded from safetensors.
        .target(name: "VTPMetricNets", dependencies: ["VTPTensor", "VTPSafeTensors"], path: "Sources/VTPMetricNets",
                swiftSettings: optimizedSettings),

        .target(name: "VTPJobs", dependencies: ["VTPVocabulary", "VTPConcurrency", "VTPDatasets", "VTPImage", "VTPModel", "VTPStorage", "VTPTensor", "VTPText", "VTPIndex", "VTPEvaluation", "VTPMetricNets", "VTPSafeTensors"],
                path: "Sources/VTPJobs", swiftSettings: strictSettings),

        // MARK: Observability: Prometheus metrics, structured logs, console rendering.
        .target(name: "VTPMetrics", dependencies: ["VTPVocabulary", .product(name: "Logging", package: "swift-log"),
                                                   .product(name: "CoreMetrics", package: "swift-metrics"),
                                                   .product(name: "Prometheus", package: "swift-prometheus"),
                                                   .product(name: "FlyingFox", package: "FlyingFox"),
                                                   .product(name: "FlyingSocks", package: "FlyingFox")],
                path: "Sources/VTPMetrics", swiftSettings: strictSettings),
        .target(name: "VTPConsole", dependencies: ["VTPQueue"], path: "Sources/VTPConsole", swiftSettings: strictSettings),

        // MARK: Configuration.
        .target(name: "VTPSettings", dependencies: [], path: "Sources/VTPSettings", swiftSettings: strictSettings),

        // MARK: Cluster runtime.
        .target(name: "VTPRuntimeSupport", dependencies: ["VTPTransport", "VTPConcurrency"], path: "Sources/VTPRuntimeSupport",
                swiftSettings: strictSettings),
        .target(name: "VTPCoordinator", dependencies: ["VTPRuntimeSupport", "VTPConcurrency", "VTPQueue", "VTPTransport", "VTPVocabulary", "VTPDatasets",
                                                       .product(name: "Logging", package: "swift-log"),
                                                       .product(name: "ServiceLifecycle", package: "swift-service-lifecycle")],
                path: "Sources/VTPCoordinator", swiftSettings: strictSettings),
        .target(name: "VTPWorker", dependencies: ["VTPRuntimeSupport", "VTPTransport", "VTPVocabulary",
                                                  .product(name: "Logging", package: "swift-log")],
                path: "Sources/VTPWorker", swiftSettings: strictSettings),

        // MARK: `vtp run`'s orchestration (private PostgreSQL, coordinator, worker pool), a library
        // so the job tests drive the shipped road; handler and finalizer are injected.
        .target(name: "VTPLocalRun", dependencies: ["VTPCoordinator", "VTPDatasets", "VTPWorker", "VTPQueue", "VTPTransport", "VTPRuntimeSupport",
                                                    "VTPConcurrency", "VTPProcesses", "VTPVocabulary", .product(name: "Logging", package: "swift-log"),
                                                    .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                                                    .product(name: "SystemPackage", package: "swift-system")],
                path: "Sources/VTPLocalRun", swiftSettings: strictSettings),

        // MARK: Benchmark code, out of the production modules: `vtp bench` and the Benchmarks/ suites both run it.
        // The same-run baseline comparison the suites print, apart so a suite builds only what it measures.
        .target(name: "VTPBenchmarkSupport", dependencies: [], path: "Sources/VTPBenchmarkSupport", swiftSettings: strictSettings),
        .target(name: "VTPBenchmarks", dependencies: ["VTPModel", "VTPTensor", "VTPRandom", "VTPText", "VTPImage", "VTPQueue", "VTPVocabulary", "VTPIndex", "VTPStorage",
                                                      // `vtp bench scale`'s simulated workers: the worker's state machine on raw sockets.
                                                      "VTPWorker", "VTPTransport", "VTPRuntimeSupport", "VTPConcurrency", "CZeroMQ",
                                                      // `vtp bench listing` lists through the job request, as `vtp run` does.
                                                      "VTPCoordinator", "VTPDatasets",
                                                      .product(name: "Logging", package: "swift-log")],
                path: "Sources/VTPBenchmarks", swiftSettings: strictSettings),

        // MARK: The CLI.
        .executableTarget(
            name: "vtp",
            dependencies: [
                "VTPModel", "VTPTensor", "VTPSafeTensors", "VTPText", "VTPImage", "VTPStorage", "VTPQueue", "VTPTransport", "VTPSettings", "VTPJobs", "VTPDatasets", "VTPIndex", "VTPVocabulary", "VTPConcurrency",
                "VTPMetrics", "VTPConsole",
                "VTPCoordinator", "VTPWorker", "VTPRuntimeSupport", "VTPLocalRun", "VTPBenchmarks",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "CoreMetrics", package: "swift-metrics"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
            ],
            path: "Sources/vtp", swiftSettings: strictSettings),

        // MARK: Tests.
        .target(name: "VTPTestSupport", dependencies: ["VTPSafeTensors", "CZlib"], path: "Tests/VTPTestSupport",
                swiftSettings: strictSettings, linkerSettings: [.linkedLibrary("z")]),
        // Sample wire messages shared by the codec tests and the socket tests.
        .target(name: "VTPTransportTestSupport", dependencies: ["VTPVocabulary", "VTPTransport"], path: "Tests/VTPTransportTestSupport",
                swiftSettings: strictSettings),
        // MARK: Unit suites: no servers, processes or sockets; scripts/test.sh runs them in parallel.
        .testTarget(name: "VTPTensorTests", dependencies: ["VTPTensor", "CVTPKernels"], path: "Tests/VTPTensorTests",
                    swiftSettings: strictSettings),
        .testTarget(name: "VTPModelTests", dependencies: ["VTPVocabulary", "VTPModel", "VTPSafeTensors", "VTPTensor", "VTPTestSupport"],
                    path: "Tests/VTPModelTests", swiftSettings: strictSettings),
        .testTarget(name: "VTPTextTests", dependencies: ["VTPVocabulary", "VTPText", "VTPTestSupport"],
                    path: "Tests/VTPTextTests", exclude: ["Fixtures"], swiftSettings: strictSettings),
        .testTarget(name: "VTPImageTests", dependencies: ["VTPVocabulary", "VTPImage", "VTPRandom", "VTPSafeTensors", "VTPTestSupport", "CWebP"],
                    path: "Tests/VTPImageTests", exclude: ["Resources"], swiftSettings: strictSettings),
        .testTarget(name: "VTPStorageTests", dependencies: ["VTPVocabulary", "VTPStorage", "VTPSafeTensors", "VTPTestSupport"],
                    path: "Tests/VTPStorageTests", swiftSettings: strictSettings),
        .testTarget(name: "VTPDatasetsTests", dependencies: ["VTPVocabulary", "VTPDatasets", "VTPTestSupport"],
                    path: "Tests/VTPDatasetsTests", swiftSettings: strictSettings),
        .testTarget(name: "VTPJobsTests", dependencies: ["VTPVocabulary", "VTPJobs", "VTPDatasets", "VTPImage", "VTPModel", "VTPStorage",
                                                         "VTPSafeTensors", "VTPTensor", "VTPTestSupport", "VTPText", "VTPIndex"],
                    path: "Tests/VTPJobsTests", swiftSettings: strictSettings),
        .testTarget(name: "VTPProcessesTests", dependencies: ["VTPProcesses"], path: "Tests/VTPProcessesTests",
                    swiftSettings: strictSettings),
        .testTarget(name: "VTPQueueTests", dependencies: ["VTPVocabulary", "VTPQueue", "VTPTestSupport"],
                    path: "Tests/VTPQueueTests", swiftSettings: strictSettings),
        .testTarget(name: "VTPSettingsTests", dependencies: ["VTPVocabulary", "VTPSettings", "VTPTestSupport"],
                    path: "Tests/VTPSettingsTests", swiftSettings: strictSettings),
        .testTarget(name: "VTPMetricsTests", dependencies: ["VTPVocabulary", "VTPMetrics", "VTPTestSupport", .product(name: "Logging", package: "swift-log"),
                                                           .product(name: "CoreMetrics", package: "swift-metrics")],
                    path: "Tests/VTPMetricsTests", swiftSettings: strictSettings),
        .testTarget(name: "VTPConsoleTests", dependencies: ["VTPVocabulary", "VTPConsole", "VTPQueue", "VTPTestSupport"],
                    path: "Tests/VTPConsoleTests", swiftSettings: strictSettings),
        .testTarget(name: "VTPCoordinatorTests", dependencies: ["VTPVocabulary", "VTPCoordinator", "VTPRuntimeSupport", "VTPQueue", "VTPTransport",
                                                                 "VTPTestSupport"],
                    path: "Tests/VTPCoordinatorTests", swiftSettings: strictSettings),
        .testTarget(name: "VTPWorkerTests", dependencies: ["VTPVocabulary", "VTPWorker", "VTPRuntimeSupport", "VTPTransport", "VTPTestSupport"],
                    path: "Tests/VTPWorkerTests", swiftSettings: strictSettings),
        .testTarget(name: "VTPTransportTests", dependencies: ["VTPVocabulary", "VTPTransport", "VTPRandom", "VTPTestSupport",
                                                              "VTPTransportTestSupport"],
                    path: "Tests/VTPTransportTests", swiftSettings: strictSettings),
        .testTarget(name: "VTPEvaluationTests", dependencies: ["VTPEvaluation", "VTPMetricNets", "VTPSafeTensors", "VTPTensor", "VTPTestSupport"],
                    path: "Tests/VTPEvaluationTests", swiftSettings: strictSettings),
        .testTarget(name: "VTPIndexTests", dependencies: ["VTPVocabulary", "VTPIndex", "VTPStorage", "VTPTestSupport"],
                    path: "Tests/VTPIndexTests", swiftSettings: strictSettings),

        .testTarget(name: "VTPBenchmarksTests", dependencies: ["VTPBenchmarks", "VTPBenchmarkSupport", "VTPImage", "VTPModel", "VTPText",
                                                                "VTPTestSupport"],
                    path: "Tests/VTPBenchmarksTests", swiftSettings: strictSettings),

        // MARK: Integration suites: real PostgreSQL (one shared server, a database per test), `vtp`
        // processes, ZeroMQ sockets with heartbeat timing, and whole jobs through `vtp run`'s
        // orchestration (VTPLocalRun with in-process workers). scripts/test.sh runs them one at a time.
        .testTarget(name: "VTPIntegrationTests",
                    dependencies: ["VTPVocabulary", "VTPQueue", "VTPCoordinator", "VTPWorker", "VTPRuntimeSupport", "VTPTransport",
                                   "VTPLocalRun", "VTPJobs", "VTPConsole", "VTPDatasets", "VTPImage", "VTPModel", "VTPText", "VTPIndex",
                                   "VTPSafeTensors", "VTPStorage", "VTPTensor", "VTPRandom", "CZeroMQ", "VTPMetrics", "VTPBenchmarks",
                                   "VTPTestSupport", "VTPTransportTestSupport", .product(name: "Logging", package: "swift-log")],
                    path: "Tests/VTPIntegrationTests", swiftSettings: strictSettings),

        // MARK: package-benchmark suites (Benchmarks/README.md): `swift package benchmark` runs them,
        // `swift build` only builds them. They sit in this package so they share its build folder.
    ] + [
        ("Model", ["VTPBenchmarks", "VTPModel", "VTPTensor", "VTPRandom"]),
        ("Tokenizer", ["VTPBenchmarks", "VTPText"]),
        ("Image", ["VTPBenchmarks", "VTPImage", "CImageShims"]),
        ("Ledger", ["VTPBenchmarks", "VTPQueue", .product(name: "Logging", package: "swift-log")]),
        ("WireCodec", ["VTPTransport", "VTPVocabulary"]),
    ].map { (suite: String, measured: [Target.Dependency]) in
        .executableTarget(
            name: suite, dependencies: ["VTPBenchmarkSupport", .product(name: "Benchmark", package: "benchmark")] + measured,
            path: "Benchmarks/\(suite)", swiftSettings: strictSettings,
            plugins: [.plugin(name: "BenchmarkPlugin", package: "benchmark")])
    }
)
