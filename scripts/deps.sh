#!/usr/bin/env bash
# Installs the Debian packages baton needs to build, run and test (skipping what
# is already there), then the pinned npm test tools. Needs root (or sudo).
set -euo pipefail
cd "$(dirname "$0")/.."
PKGS=(build-essential clang lld libclang-rt-14-dev pkg-config
      libuv1-dev node-llhttp libssl-dev libfyaml-dev libsqlite3-dev libpq-dev libhiredis-dev
      libpcre2-dev libcjson-dev valgrind
      nginx libnginx-mod-http-echo wrk redis-server postgresql
      tinyproxy prometheus openssl ca-certificates curl python3)
missing=()
for p in "${PKGS[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
SUDO=()
[[ $(id -u) -eq 0 ]] || SUDO=(sudo)
if ((${#missing[@]})); then
    echo "installing: ${missing[*]}"
    "${SUDO[@]}" apt-get update -qq
    DEBIAN_FRONTEND=noninteractive "${SUDO[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# Services installed from packages may start system instances; tests start their own.
if [[ ${1:-} == --with-npm ]]; then
    if [[ ! -d node_modules/openai ]] || [[ package-lock.json -nt node_modules/.package-lock.json ]]; then
        npm ci --no-audit --no-fund --loglevel=error
    fi
fi
