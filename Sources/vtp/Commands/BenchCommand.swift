import ArgumentParser
import Foundation
import VTPBenchmarks
import VTPConcurrency
import VTPJobs
import VTPVocabulary
import VTPImage
import VTPIndex
import VTPModel
import VTPQueue
import VTPTensor
import VTPText

/// `vtp bench ...`: throughput measurements, each with its baseline measured in the same run.
struct BenchCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench",
        abstract: "Measure throughput on this machine.",
        subcommands: [Model.self, Tokenizer.self, Image.self, LedgerCommand.self, IndexCommand.self, Scale.self, Listing.self]
    )

    struct Model: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Images/s of encode, decode and CLIP features, with GFLOP/s against this machine's sgemm.")

        @Option(help: "Checkpoint directory.") var model: String
        @Option(parsing: .unconditional, help: "Images (or texts) per batch.") var batch: Int = 8
        @Option(parsing: .unconditional, help: "Timed iterations per operation (the best is reported).") var iterations: Int = 3
        @Option(parsing: .unconditional, help: "Threads (default: all cores).") var threads: Int?
        @Option(help: "Compute precision: fp32 or bf16 (independent of the checkpoint's stored dtype).")
        var precision: ComputePrecision = .fp32
        @Flag(help: "Print one JSON object.") var json = false

        func run() throws {
            guard batch >= 1 else { throw ValidationError("--batch must be at least 1, got \(batch)") }
            guard iterations >= 1 else { throw ValidationError("--iterations must be at least 1, got \(iterations)") }
            if let threads, threads < 1 { throw ValidationError("--threads must be at least 1, got \(threads)") }
            let vtp = try VTPModel(directory: model, threads: threads, precision: precision)
            let loadedRSS = ModelBenchmark.maxResidentBytes
            let threads = vtp.pool.threads
            let gemm = ModelBenchmark.engineGFlops(engine: vtp.engine, threads: threads)
            let sgemm = ModelBenchmark.sgemmGFlops(threads: threads)
            let results = try ModelBenchmark(batch: batch, iterations: iterations).run(model: vtp)
            let rss = ModelBenchmark.maxResidentBytes
            if json {
                let object: [String: Any] = [
                    "model": model, "precision": precision.rawValue, "batch": batch, "threads": threads,
                    "isa": vtp.engine.isa.rawValue, "blas_core": BLAS.coreName, "gemm_gflops": gemm, "sgemm_gflops": sgemm,
                    "weight_bytes": vtp.weightBytes, "max_rss_bytes": rss, "max_rss_after_load_bytes": loadedRSS,
                    "methods": results.map { ["method": $0.operation, "items_per_second": $0.itemsPerSecond,
                                              "gflops": $0.gflops, "seconds_per_batch": $0.secondsPerBatch] },
                ]
                let data = try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])
                print(String(decoding: data, as: UTF8.self))
                return
            }
            print("model \(model), batch \(batch), \(threads) thread(s), precision \(precision.rawValue)")
            print("kernel path \(vtp.engine.isa.rawValue) (VTP_ISA overrides it); OpenBLAS core \(BLAS.coreName)")
            print(String(format: "engine GEMM 2048x2048x768: %.1f GFLOP/s; OpenBLAS sgemm on the same shape: %.1f GFLOP/s", gemm, sgemm))
            for r in results {
                print(String(format: "%-11@ %8.2f items/s  %7.1f GFLOP/s  (%.0f%% of the engine GEMM)  %.3f s/batch",
                             r.operation as NSString, r.itemsPerSecond, r.gflops, 100 * r.gflops / gemm, r.secondsPerBatch))
            }
            print(String(format: "weights resident: %.1f MiB; peak memory of this process: %.1f MiB (%.1f MiB after loading)",
                         Double(vtp.weightBytes) / 1_048_576, Double(rss) / 1_048_576, Double(loadedRSS) / 1_048_576))
        }
    }

    struct Tokenizer: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Prompts/s of the CLIP tokenizer on one core (caption-like prompts, built deterministically).")

        @Option(parsing: .unconditional, help: "Number of prompts.") var prompts: Int = 100_000
        @Flag(help: "Print JSON.") var json = false

        func run() throws {
            guard prompts >= 1 else { throw ValidationError("--prompts must be at least 1, got \(prompts)") }
            let texts = TokenizerBenchmark.captionPrompts(count: prompts)
            let tokenizer = try CLIPTokenizer.bundled()
            let result = try TokenizerBenchmark.run(prompts: texts, tokenizer: tokenizer)
            let perThousand = 1000 * result.seconds / Double(texts.count)
            if json {
                print("{\"prompts\": \(texts.count), \"seconds\": \(result.seconds), \"prompts_per_second\": \(result.promptsPerSecond), \"ms_per_1000\": \(perThousand * 1000)}")
            } else {
                print(String(format: "%d prompts in %.3f s: %.0f prompts/s, %.2f ms per 1000 prompts (one core)",
                             texts.count, result.seconds, result.promptsPerSecond, perThousand * 1000))
            }
        }
    }

    struct Image: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Milliseconds per image to decode a file and apply adm-center-crop (one core).",
            discussion: "Without --image the built-in sample is used: the 500x375 baseline JPEG of examples/bench/, compiled into vtp so the benchmark runs from any directory.")

        @Option(help: "Image file (default: the built-in 500x375 JPEG sample, examples/bench/coffee_500x375.jpg).") var image: String?
        @Option(parsing: .unconditional, help: "Target size.") var size: Int = 256
        @Option(parsing: .unconditional, help: "Iterations.") var iterations: Int = 200
        @Flag(help: "Print JSON.") var json = false

        func run() throws {
            guard size >= 1 else { throw ValidationError("--size must be at least 1, got \(size)") }
            guard iterations >= 1 else { throw ValidationError("--iterations must be at least 1, got \(iterations)") }
            let data: Data, name: String
            if let image {
                let url = URL(fileURLWithPath: image)
                do { data = try Data(contentsOf: url) } catch {
                    throw CLIError("--image \(image): \(FileErrorText.reason(error, at: url.path))")
                }
                name = image
            } else {
                data = BenchSample.jpeg
                name = BenchSample.name
            }
            let ms = try ImageBenchmark.run(data: data, source: name, iterations: iterations, size: size)
            if json {
                let object: [String: Any] = ["image": name, "image_bytes": data.count, "size": size, "ms_per_image": ms]
                print(String(decoding: try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .withoutEscapingSlashes]),
                             as: UTF8.self))
            } else {
                print(String(format: "decode + adm-center-crop %d of %@: %.2f ms/image (one core)", size, name as NSString, ms))
            }
        }
    }

    struct LedgerCommand: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "ledger",
            abstract: "Claims+completions per second of empty shards against PostgreSQL.",
            discussion: "Without --database a throwaway PostgreSQL is started in a temporary directory (fsync off).")

        @Option(help: "PostgreSQL URL (migrated with vtp db migrate). Default: a temporary private server.")
        var database: String?
        @Option(parsing: .unconditional, help: "One-item shards to claim and complete.") var shards: Int = 5000
        @Option(parsing: .unconditional, help: "Concurrent claiming connections.") var claimers: Int = 4

        func run() async throws {
            guard shards >= 1 else { throw ValidationError("--shards must be at least 1, got \(shards)") }
            guard claimers >= 1 else { throw ValidationError("--claimers must be at least 1, got \(claimers)") }
            var server: EmbeddedPostgres?
            let url: String
            if let database {
                url = database
            } else {
                let temporary = try EmbeddedPostgres.temporary()
                try await temporary.start()
                server = temporary
                url = temporary.connectionURL
                _ = try await Migrator.migrate(database: temporary.databaseURL)
            }
            do {
                let report = try await LedgerBenchmark.run(database: url, shards: shards, claimers: claimers)
                print(report)
            } catch {
                try? await server?.stop()
                throw error
            }
            try await server?.stop()
        }
    }

    struct IndexCommand: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "index",
            abstract: "Out-of-core index build over synthetic clustered embeddings: time, peak memory, recall@10, index size.",
            discussion: """
                Writes --vectors unit vectors (a mixture of Gaussians on the sphere, about 200 per cluster) as float16 .npy \
                shards of 100,000 rows into --data (kept for reruns unless --remove-data), then builds their index into --output \
                exactly as a clip-embed finalizer with --index-memory would: trained on a sample, added shard by shard from the \
                mapped files, split into several index files when one does not fit. 5,000,000 x 768 takes 7.7 GB of disk.
                """)

        @Option(parsing: .unconditional, help: "Vectors in the collection.") var vectors: Int = 1_000_000
        @Option(parsing: .unconditional, help: "Vector dimension.") var dimension: Int = 768
        @Option(name: .customLong("index-memory"), help: "Memory budget of the build, e.g. 2G (binary units).") var indexMemory: String = "2G"
        @Option(name: .customLong("index-encoding"), help: "IVF vector encoding, pq or sq8.") var indexEncoding: String = "sq8"
        @Option(parsing: .unconditional, help: "Inverted lists (default: the builder's choice, a power of two near 4*sqrt(n)).") var lists: Int?
        @Option(parsing: .unconditional, help: "Gaussian clusters (default: vectors / 200).") var clusters: Int?
        @Option(help: "Directory of the synthetic shards.") var data: String = "/tmp/vtp-bench-index/img_emb"
        @Option(help: "Index output directory.") var output: String = "/tmp/vtp-bench-index/index"
        @Flag(name: .customLong("remove-data"), help: "Delete the synthetic shards afterwards.") var removeData = false
        @Flag(help: "Print one JSON object.") var json = false

        func run() throws {
            guard vectors >= 2 else { throw ValidationError("--vectors must be at least 2, got \(vectors)") }
            guard dimension >= 1 else { throw ValidationError("--dimension must be at least 1, got \(dimension)") }
            if let lists, lists < 1 { throw ValidationError("--lists must be at least 1, got \(lists)") }
            if let clusters, clusters < 1 { throw ValidationError("--clusters must be at least 1, got \(clusters)") }
            let budget: Int
            do { budget = try MemorySize.parse(indexMemory, option: "--index-memory") } catch { throw ValidationError("\(error)") }
            guard let encoding = IndexEncodingOption(rawValue: indexEncoding) else {
                throw ValidationError("--index-encoding: expected pq or sq8, got '\(indexEncoding)'")
            }
            var options = IndexOptions()
            options.memoryBudget = budget
            options.encoding = encoding == .sq8 ? .scalar8 : .productQuantizer(dimensionsPerSubquantizer: 2, bitsPerCode: 8)
            options.lists = lists
            let collection = IndexBenchmark.Collection(rows: vectors, dimension: dimension, clusters: clusters)
            let result = try IndexBenchmark.run(collection: collection, dataDirectory: data, indexDirectory: output, options: options)
            if removeData {
                for path in collection.shardPaths(in: data) { try? FileManager.default.removeItem(atPath: path) }
            }
            let info = result.info
            if json {
                let object: [String: Any] = [
                    "vectors": vectors, "dimension": dimension, "clusters": collection.clusters, "index_key": info.indexKey,
                    "index_param": info.indexParam, "nb_indices": info.indexCount ?? 1, "index_bytes": info.sizeInBytes,
                    "budget_bytes": budget, "memory_estimate_bytes": info.memoryEstimate ?? 0, "recall_at_10": info.recallAt10,
                    "recall_queries": info.recallQueries, "build_seconds": result.buildSeconds, "generate_seconds": result.generateSeconds,
                    "max_rss_bytes": result.residentAfterBuild, "max_rss_before_build_bytes": result.residentBeforeBuild,
                    "data_bytes": result.dataBytes,
                ]
                print(String(decoding: try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys]), as: UTF8.self))
                return
            }
            func mib(_ bytes: Int) -> String { String(format: "%.1f MiB", Double(bytes) / 1_048_576) }
            print("\(vectors) x \(dimension) float16 in \(collection.shardPaths(in: data).count) shards (\(mib(result.dataBytes))), "
                  + String(format: "written in %.1f s", result.generateSeconds))
            print("\(info.indexKey), \(info.indexParam), \(info.indexCount ?? 1) index file(s), \(mib(info.sizeInBytes)) in all, "
                  + "trained on \(info.trainingVectors) vectors")
            for part in info.parts ?? [] {
                print("  \(part.indexPath): rows \(part.firstRow)..<\(part.firstRow + part.count), \(mib(part.sizeInBytes))")
            }
            print(String(format: "built in %.1f s; recall@10 %.4f on %d held-out queries (leave-one-out)", result.buildSeconds,
                         info.recallAt10, info.recallQueries))
            print("memory: budget \(mib(budget)), estimate \(mib(info.memoryEstimate ?? 0)), peak resident \(mib(result.residentAfterBuild)) "
                  + "(\(mib(result.residentBeforeBuild)) before the build)")
        }
    }

    struct Listing: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Lists a large JSONL manifest or ImageFolder tree as vtp run does and reports time and peak resident memory.",
            discussion: """
                Writes a synthetic manifest of --lines rows to --manifest unless that file exists (or, with --folder, an \
                ImageFolder tree of --lines empty .jpg files in 1,000 classes unless that directory exists), lists it \
                through the job request (a checking pass, then the items read again) and, with --enqueue, enqueues it into \
                a private PostgreSQL in a temporary directory (shard manifests included). docs/scale.md has measured numbers.
                """)

        @Option(parsing: .unconditional, help: "Rows of the synthetic manifest.") var lines: Int = 10_000_000
        @Option(help: "The manifest (.jsonl); written when it does not exist.") var manifest: String = "/tmp/vtp-bench-listing.jsonl"
        @Option(help: "List this ImageFolder tree instead of a manifest; written when it does not exist.") var folder: String?
        @Flag(help: "Enqueue into a private PostgreSQL instead of only reading the items again.") var enqueue = false
        @Flag(help: "Enqueue --lines generated items (no manifest, no checking pass): the ledger's cost alone.") var synthetic = false
        @Flag(help: "Print one JSON object.") var json = false

        func run() async throws {
            guard lines >= 1 else { throw ValidationError("--lines must be at least 1, got \(lines)") }
            let report = synthetic ? try await ListingBenchmark.runSynthetic(lines: lines)
                : try await ListingBenchmark.run(input: folder ?? manifest, folder: folder != nil, lines: lines, enqueue: enqueue)
            if json {
                print(String(decoding: try JSONSerialization.data(withJSONObject: report.jsonObject, options: [.sortedKeys]), as: UTF8.self))
            } else {
                print(report.table)
            }
        }
    }

    struct Scale: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "A simulated cluster: a real vtp coordinator, PostgreSQL and ZeroMQ, and N model-less workers in this process.",
            discussion: """
                Starts a private PostgreSQL in a temporary directory (durable, as vtp run starts it, unless --fast-writes), \
                enqueues a synthetic job of --items items, runs `vtp coordinator` (this executable) as a child process on a \
                loopback TCP port and --workers simulated workers speaking the worker protocol, each spending --item-ms per \
                item. Reports how busy the coordinator keeps them; docs/scale.md defines every number.
                """)

        @Option(parsing: .unconditional, help: "Simulated workers.") var workers: Int
        @Option(parsing: .unconditional, help: "Items of the synthetic job.") var items: Int
        @Option(name: .customLong("item-ms"), parsing: .unconditional, help: "Milliseconds a worker spends per item.") var itemMilliseconds: Double
        @Option(name: .customLong("shard-size"), parsing: .unconditional, help: "Items per shard (default: limits.shard_size, 256).")
        var shardSize: Int = 256
        @Option(parsing: .unconditional, help: "Shards each worker asks for at once (worker.prefetch).") var prefetch: Int = 2
        @Option(name: .customLong("max-prefetch"), parsing: .unconditional, help: "The coordinator's max_prefetch_per_worker.")
        var maxPrefetch: Int = 4
        @Option(name: .customLong("progress-every"), parsing: .unconditional, help: "Items between progress messages (worker.batch_size).")
        var progressEvery: Int = 8
        @Option(name: .customLong("driver-threads"), parsing: .unconditional, help: "Threads driving the simulated workers (default: one per 250).")
        var driverThreads: Int?
        @Option(parsing: .unconditional, help: "Give up after this many seconds (default: 60 + 5 x the ideal duration).")
        var timeout: Double?
        @Flag(name: .customLong("fast-writes"), help: "PostgreSQL without fsync (as the test servers), instead of durable commits.")
        var fastWrites = false
        @Flag(name: .customLong("keep"), help: "Keep the temporary directory (coordinator log and configuration); its path goes to stderr.")
        var keep = false
        @Flag(help: "Print one JSON object.") var json = false

        func run() async throws {
            let executable = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
            let options = ScaleBenchmark.Options(
                workers: workers, items: items, itemMilliseconds: itemMilliseconds, shardSize: shardSize, prefetch: prefetch,
                maxPrefetchPerWorker: maxPrefetch, progressEvery: progressEvery, durableWrites: !fastWrites,
                coordinatorExecutable: executable, driverThreads: driverThreads, timeoutSeconds: timeout, keepDirectory: keep)
            let report: ScaleBenchmark.Report
            do { report = try await ScaleBenchmark.run(options) } catch let error as ScaleBenchmarkError {
                throw CLIError("\(error)")
            }
            if let kept = report.keptDirectory { FileHandle.standardError.write(Data("kept \(kept)\n".utf8)) }
            if json {
                let data = try JSONSerialization.data(withJSONObject: report.jsonObject, options: [.sortedKeys])
                print(String(decoding: data, as: UTF8.self))
            } else {
                print(report.table)
            }
        }
    }
}
