#!/usr/bin/env bash
# The project's test command (README): builds everything once, then runs the unit suites in
# parallel, then the integration suites (VTPIntegrationTests) in three test processes, each one
# suite at a time.
# Integration tests share one private PostgreSQL server per test process (started in a temporary
# directory, as the `postgres` user when run as root, a database per test), start `vtp` processes
# and use real loopback/ipc ZeroMQ sockets whose heartbeat timing two busy cores could upset, so
# they never run beside the CPU-heavy unit suites, and one at a time within each test process.
# All runs' output is kept in .build/test-output.txt.
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
# The integration suites spend most of their time waiting (leases expiring, processes restarting,
# heartbeats), not computing, so they run in three test processes side by side, each one suite at
# a time with its own private PostgreSQL: the chaos suite, the suites that drive whole `vtp run`s
# and multi-host clusters, and the rest (about four minutes each, side by side). The first two
# lanes run the test bundle directly (`swift test` holds a lock on .build for as long as it runs)
# and write their own logs, which follow the third's in the output.
bundle="$(swift build --show-bin-path)/vtpPackageTests.xctest"
lanes=(
    'VTPIntegrationTests\.(ChaosTests|SessionIntegrationTests)'
    'VTPIntegrationTests\.(MultiHostTests|RunStateTests|RunCommandTests|RunInterruptTests|RunResumeTests|ScaleTests)'
)
pids=()
for index in "${!lanes[@]}"; do
    "$bundle" --testing-library swift-testing --no-parallel --filter "${lanes[$index]}" \
        > ".build/test-output-lane$index.txt" 2>&1 &
    pids+=($!)
done
skips=()
for lane in "${lanes[@]}"; do skips+=(--skip "$lane"); done
swift test --skip-build --no-parallel --filter VTPIntegrationTests "${skips[@]}" 2>&1 | tee -a .build/test-output.txt || status=$?
for index in "${!lanes[@]}"; do
    lane_status=0
    wait "${pids[$index]}" || lane_status=$?
    tee -a .build/test-output.txt < ".build/test-output-lane$index.txt"
    ((lane_status == 0)) || status=$lane_status
done
exit "$status"
