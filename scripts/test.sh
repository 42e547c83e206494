#!/usr/bin/env bash
# The project's test command (README): builds everything and runs every test suite.
# Tests that need PostgreSQL start their own server in a temporary directory.
set -euo pipefail
cd "$(dirname "$0")/.."
swift build --build-tests
swift test --skip-build --parallel --num-workers 2 2>&1 | tee .build/test-output.txt
