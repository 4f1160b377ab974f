#!/usr/bin/env bash
# bench/tok_process.sh: `baton tokens FILE` against a node process that counts
# the same file with npm tiktoken (bench/node_modules, pinned), each run as a
# whole process (start-up, reading, the encoding's tables, counting), wall time,
# best of RUNS. Checks that both counts are equal, then prints the ratio.
#   bash bench/tok_process.sh [FILE] [ENCODING]    (default: bench/fixtures/tok_mixed.txt x10, o200k_base)
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-5}
enc=${2:-o200k_base}
file=${1:-}
if [[ -z $file ]]; then
    file=$(mktemp)
    trap 'rm -f "$file"' EXIT
    for _ in $(seq 10); do cat bench/fixtures/tok_mixed.txt; done >"$file"
fi
[[ -x ./baton ]] || make -s baton
if [[ ! -f bench/node_modules/tiktoken/package.json ]]; then (cd bench && npm ci --no-audit --no-fund >/dev/null); fi
js=$(mktemp --suffix=.mjs)
cat >"$js" <<JS
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
const require = createRequire('$PWD/bench/package.json');
const { get_encoding } = require('tiktoken');
const enc = get_encoding(process.argv[3]);
console.log(enc.encode(readFileSync(process.argv[2], 'utf8'), [], []).length);
enc.free();
JS
best() { # best wall seconds of RUNS runs of "$@"
    local b=999999 s e
    for _ in $(seq "$RUNS"); do
        s=$(date +%s.%N); "$@" >/dev/null; e=$(date +%s.%N)
        b=$(awk -v s="$s" -v e="$e" -v b="$b" 'BEGIN { d = e - s; print (d < b) ? d : b }')
    done
    echo "$b"
}
nb=$(./baton tokens -e "$enc" "$file"); nt=$(node "$js" "$file" "$enc")
[[ $nb == "$nt" ]] || { echo "counts differ: baton $nb, tiktoken $nt"; exit 1; }
tb=$(best ./baton tokens -e "$enc" "$file"); tt=$(best node "$js" "$file" "$enc")
rm -f "$js"
echo "tok_process enc=$enc bytes=$(stat -c %s "$file") tokens=$nb baton_s=$tb tiktoken_s=$tt ratio=$(awk -v a="$tt" -v b="$tb" 'BEGIN { printf "%.1f", a / b }')"
