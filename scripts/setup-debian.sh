#!/usr/bin/env bash
# Installs the Debian packages vtp builds against and runs with. Idempotent; needs root (or sudo).
set -euo pipefail
SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO=sudo; fi
packages=(
  libopenblas-dev      # GEMMs
  libzmq3-dev          # transport
  libpq-dev            # ledger client
  postgresql           # embedded ledger server (initdb, pg_ctl) and tests
  libjpeg62-turbo-dev libpng-dev libwebp-dev   # image codecs
  libfaiss-dev         # embedding index (static libfaiss.a; BLAS/LAPACK come from OpenBLAS)
  libgcc-12-dev        # libgomp.so link-time symlink: libfaiss.a is built with OpenMP
  zlib1g-dev pkg-config
)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
