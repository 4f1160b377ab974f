#!/usr/bin/env bash
# Runs every unit test binary in BUILD/tests, then every integration test under
# tests/integration, and prints the total as its last line: `N passed, N failed`.
# Integration tests are executables (test_*.sh, *.test.mjs run by node) that print
# their own `N passed, N failed` line; their counts are added up.
set -u
BUILD=${1:-build/release}
export BATON_BIN=${BATON_BIN:-$PWD/baton}
[[ $BATON_BIN = /* ]] || BATON_BIN=$PWD/$BATON_BIN
passed=0; failed=0
count() { # reads a test's output, adds its `N passed, N failed` lines
    local out=$1 rc=$2 name=$3 p f line
    line=$(grep -Eo '[0-9]+ passed, [0-9]+ failed' <<<"$out" | tail -1)
    if [[ -z $line ]]; then
        echo "  $name: no result line (exit $rc): counted as 1 failure; its last lines:"
        tail -n 5 <<<"$out" | sed 's/^/    | /'
        failed=$((failed + 1)); return
    fi
    p=${line%% passed*}; f=${line#*, }; f=${f%% failed*}
    if [[ $rc -ne 0 && $f -eq 0 ]]; then f=1; echo "  $name: exit $rc: counted as 1 failure"; fi
    passed=$((passed + p)); failed=$((failed + f))
}
VG=()
if [[ -n ${BATON_VALGRIND:-} ]]; then
    VG=(valgrind -q --leak-check=full --errors-for-leak-kinds=definite --error-exitcode=99)
fi
for t in "$BUILD"/tests/test_*; do
    [[ -x $t ]] || continue
    out=$("${VG[@]}" "$t" 2>&1); rc=$?
    echo "$out" | grep -E 'FAIL|passed, [0-9]+ failed|ERROR' | sed 's/^/  /'
    count "$out" $rc "$(basename "$t")"
done
if [[ -z ${BATON_UNIT_ONLY:-} ]]; then
    [[ -d node_modules/openai ]] ||
        echo "  (node_modules/openai is missing: the integration tests need the pinned npm test tools; scripts/deps.sh --with-npm installs them)"
    for t in tests/integration/test_*.sh tests/integration/*.test.mjs; do
        [[ -e $t ]] || continue
        if [[ $t == *.mjs ]]; then out=$(timeout 600 node "$t" 2>&1); rc=$?
        else out=$(timeout 600 bash "$t" 2>&1); rc=$?; fi
        echo "$out" | grep -E 'not ok|FAIL|passed, [0-9]+ failed' | sed 's/^/  /'
        count "$out" $rc "$t"
    done
fi
echo "$passed passed, $failed failed"
[[ $failed -eq 0 ]]
