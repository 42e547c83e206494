#!/usr/bin/env bash
# The project's test command (README): builds everything once, then runs the unit suites in
# parallel and the integration suites (VTPIntegrationTests) one at a time.
# Integration tests share one private PostgreSQL server per test process (started in a temporary
# directory, as the `postgres` user when run as root, a database per test), start `vtp` processes
# and use real loopback/ipc ZeroMQ sockets whose heartbeat timing two busy cores could upset, so
# they never run beside each other or beside the CPU-heavy unit suites.
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
swift test --skip-build --no-parallel --filter VTPIntegrationTests 2>&1 | tee -a .build/test-output.txt || status=$?
exit "$status"
