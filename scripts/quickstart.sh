#!/usr/bin/env bash
# README command 1: install the Debian packages, build vtp, and cache LightningDiT latents of the
# bundled example images with the bundled tiny VTP checkpoint. `vtp run` starts a private
# PostgreSQL under the output directory, a coordinator and local workers, and stops them at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH=/opt/swift/usr/bin:$PATH
bash scripts/setup-debian.sh
swift build -c release
OUTPUT=${1:-/tmp/vtp-quickstart}
.build/release/vtp run latents --model Tests/Fixtures/vtp-tiny --input examples/images --output "$OUTPUT"
echo
echo "Latents written to $OUTPUT:"
ls "$OUTPUT"
