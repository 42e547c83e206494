import Foundation
import VTPVocabulary
@testable import VTPQueue

/// A lease policy short enough for tests to watch leases expire.
func quickLeases(_ seconds: Double = 0.4) -> LeasePolicy {
    LeasePolicy(leaseSeconds: seconds, backoffBaseSeconds: 0, backoffCapSeconds: 0)
}

func items(_ count: Int, prefix: String = "img") -> [JobItem] {
    (0..<count).map { JobItem(ordinal: $0, sourceId: "\(prefix)-\($0)", location: .file(path: "/data/\(prefix)/\($0).jpg"), label: $0 % 10) }
}

/// A fresh output folder for a test job: its shard manifests live there (`.vtp/shards`), and two
/// tests' databases both number their first job 1. All of them are under ``scratchRoot``.
func scratchOutput() -> String {
    scratchRoot + "/\(UUID().uuidString)"
}

/// One folder per test process for the test jobs' outputs, removed when the process exits, so
/// the manifests of thousands of test jobs do not pile up in the temporary directory.
private let scratchRoot: String = {
    atexit { try? FileManager.default.removeItem(atPath: scratchRootPath()) }
    return scratchRootPath()
}()

private func scratchRootPath() -> String {
    NSTemporaryDirectory() + "vtp-ledger-tests-\(getpid())"
}

func testJob(shardSize: Int = 10, priority: Int32 = 0, maxAttempts: Int32 = 3) -> JobSpec {
    JobSpec(type: "encode", parametersJSON: #"{"resolution": 256}"#, model: "vtp-tiny", inputLocation: "/data/in",
            outputLocation: scratchOutput(), priority: priority, maxAttempts: maxAttempts, shardSize: shardSize)
}
