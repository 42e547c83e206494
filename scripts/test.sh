#!/usr/bin/env bash
# The project's test command (README): builds everything once, then runs the unit suites in
# parallel and the integration suites (VTPIntegrationTests) one at a time.
# Integration tests share one private PostgreSQL server per test process (started in a temporary
# directory, as the `postgres` user when run as root, a database per test), start `vtp` processes
# and use real loopback/ipc ZeroMQ sockets whose heartbeat timing two busy cores could upset, so
# they never run beside the CPU-heavy unit suites, and one at a time within each test process.
# Both runs' output is kept in .build/test-output.txt.
# The build also compiles the package-benchmark suites (Benchmarks/, executable targets of this
# package), so they cannot rot; nothing here runs them (`swift package benchmark` does).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH=/opt/swift/usr/bin:$PATH
swift build --build-tests
mkdir -p .build
: > .build/test-output.txt
status=0
swift test --skip-build --parallel --skip VTPIntegrationTests 2>&1 | tee -a .build/test-output.txt || status=$?
# The chaos suite (about three minutes, spent mostly waiting for leases to expire and processes
# to restart) runs in a second test process beside the other integration suites, each with its
# own private PostgreSQL; its output follows theirs in the log.
chaos_status=0
# The test bundle is run directly: `swift test` holds a lock on .build for as long as it runs.
"$(swift build --show-bin-path)/vtpPackageTests.xctest" --testing-library swift-testing --no-parallel \
    --filter VTPIntegrationTests.ChaosTests > .build/test-output-chaos.txt 2>&1 &
chaos=$!
swift test --skip-build --no-parallel --filter VTPIntegrationTests --skip VTPIntegrationTests.ChaosTests 2>&1 | tee -a .build/test-output.txt || status=$?
wait "$chaos" || chaos_status=$?
cat .build/test-output-chaos.txt | tee -a .build/test-output.txt
((chaos_status == 0)) || status=$chaos_status
exit "$status"
