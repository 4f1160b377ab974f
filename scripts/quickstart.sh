#!/usr/bin/env bash
# One command from a fresh Debian 12 machine to a running baton: installs what is
# missing, builds, and serves examples/quickstart.yaml on 127.0.0.1:4000 with the
# built-in simulated provider (no keys, no network).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh
make -j"$(nproc)" baton
exec ./baton serve -c examples/quickstart.yaml "$@"
