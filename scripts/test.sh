#!/usr/bin/env bash
# One command from a fresh Debian 12 machine to every test: installs what is
# missing (Debian packages, pinned npm test tools), builds, runs the unit and
# integration suites. The last line is `N passed, N failed`.
set -uo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh --with-npm || { echo "0 passed, 1 failed"; exit 1; }
mkdir -p build; make -j"$(nproc)" baton unit >build/build.log 2>&1 || { tail -50 build/build.log; echo "0 passed, 1 failed"; exit 1; }
make --no-print-directory test
