#!/usr/bin/env bash
# Builds every libFuzzer target (tests/fuzz/fuzz_*.c) with clang, ASan and UBSan,
# and runs each on a copy of its seed corpus (tests/fuzz/corpus/<name>/).
#   smoke: FUZZ_SECONDS (default 15) per target — what CI runs
#   long:  FUZZ_SECONDS (default 600) per target — `make fuzz`
#   FUZZ_ONLY="json sse"  only these targets (names without fuzz_)
# Prints `N passed, N failed` (one per target).
set -uo pipefail
cd "$(dirname "$0")/../.."
mode=${1:-smoke}
secs=${FUZZ_SECONDS:-$([[ $mode == long ]] && echo 600 || echo 15)}
B=build/fuzz
mkdir -p build
SAN="-fsanitize=address,undefined -fno-sanitize-recover=undefined"
make --no-print-directory -j"$(nproc)" BUILD=$B CC=clang OPT="-O1 -g" \
    SAN="$SAN -fsanitize=fuzzer-no-link" $B/libbaton.a >$B.log 2>&1 || { tail -30 $B.log; echo "0 passed, 1 failed"; exit 1; }
passed=0; failed=0
for src in tests/fuzz/fuzz_*.c; do
    [[ -e $src ]] || continue
    name=$(basename "$src" .c); short=${name#fuzz_}
    [[ -n ${FUZZ_ONLY:-} && " $FUZZ_ONLY " != *" $short "* ]] && continue
    bin=$B/$name
    if ! clang -std=c17 -D_GNU_SOURCE -Wall -Wextra -Werror -Wno-unused-parameter -O1 -g $SAN -fsanitize=fuzzer -Isrc -I/usr/share/include/llhttp \
        -o "$bin" "$src" $B/libbaton.a -luv -lfyaml -lsqlite3 -lpq -lhiredis -lssl -lcrypto -lm -pthread -lcjson 2>"$bin.log"; then
        echo "not ok - $name: build failed"; cat "$bin.log"; failed=$((failed + 1)); continue
    fi
    work=$(mktemp -d)
    [[ -d tests/fuzz/corpus/$short ]] && cp -r tests/fuzz/corpus/$short/. "$work/" 2>/dev/null
    mkdir -p tests/fuzz/artifacts
    if "$bin" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
        -artifact_prefix=tests/fuzz/artifacts/$name- "$work" >"$bin.run.log" 2>&1; then
        echo "ok - $name ($secs s, $(grep -Eo 'stat::number_of_executed_units: [0-9]+' "$bin.run.log" | grep -Eo '[0-9]+' || echo '?') runs)"
        passed=$((passed + 1))
    else
        echo "not ok - $name"; tail -40 "$bin.run.log"; failed=$((failed + 1))
    fi
    rm -rf "$work"
done
echo "$passed passed, $failed failed"
[[ $failed -eq 0 ]]
