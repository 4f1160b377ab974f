#!/usr/bin/env bash
# bench/hedge.sh: what a model's `hedge` does to the latency of a group with one
# slow deployment. Method and figures: docs/routing.md#hedging.
#
# One baton (one worker) with two simulated deployments, 20 ms to the first token
# and 8 tokens each. The first of them (weighted first) never answers 5% of its
# calls (the simulator's no_answer fault); its first_byte timeout is 1 s, after
# which the other deployment is tried (no retry key: each once). Two models share
# those deployments: `plain` without a hedge, `hedged` with {after: 100ms}. The
# load generator streams to each in turn, the same number of seconds, in the same
# run (rows alternate, BENCH_HEDGE_ROUNDS times), and prints time to the first
# event and to the end of the stream, p50 and p99, per model.
#
#   BENCH_HEDGE_SECS=S     seconds per row (default 3)
#   BENCH_HEDGE_ROUNDS=N   rounds of the two rows (default 2)
#   BENCH_HEDGE_CONNS=N    concurrent connections (default 16)
#   BENCH_NO_BUILD=1       measure ./baton as it is (no `make baton`)
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
SECS=${BENCH_HEDGE_SECS:-3}
ROUNDS=${BENCH_HEDGE_ROUNDS:-2}
CONNS=${BENCH_HEDGE_CONNS:-16}
DIR=$(mktemp -d /tmp/baton-hedge-bench.XXXXXX)
PID=
cleanup() {
    if [[ -n $PID ]]; then kill "$PID" 2>/dev/null || true; wait "$PID" 2>/dev/null || true; fi
    rm -rf "$DIR"
}
trap cleanup EXIT

if [[ ${BENCH_NO_BUILD:-0} != 1 ]]; then make -s baton >/dev/null; fi
mkdir -p build/bench
cc -std=c17 -D_GNU_SOURCE -Wall -Wextra -Werror -Wshadow -Wvla -Wformat=2 -O2 -g \
    -I/usr/share/include/llhttp -o build/bench/loadgen bench/loadgen.c build/release/libbaton.a -luv

PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat >"$DIR/baton.yaml" <<EOF
server: {listen: "127.0.0.1:$PORT", workers: 1}
log: {level: warn, access: /dev/null}
providers:
  sometimes: {type: sim, ttft: 20ms, reply_tokens: 8, faults: {no_answer: 0.05}, timeouts: {first_byte: 1s}}
  steady: {type: sim, ttft: 20ms, reply_tokens: 8}
models:
  plain:
    deployments: [{provider: sometimes, model: a, weight: 1000000}, {provider: steady, model: b}]
  hedged:
    hedge: {after: 100ms}
    deployments: [{provider: sometimes, model: a, weight: 1000000}, {provider: steady, model: b}]
EOF
for m in plain hedged; do
    sed "s/\"model\":\"gpt-4o-mini\"/\"model\":\"$m\"/; s/\"stream\":false/\"stream\":true/" \
        bench/fixtures/chat_1k5.json >"$DIR/$m.json"
done
./baton serve -c "$DIR/baton.yaml" >"$DIR/baton.log" 2>&1 &
PID=$!
for _ in $(seq 100); do
    curl -sf "http://127.0.0.1:$PORT/health/ready" >/dev/null 2>&1 && break
    sleep 0.05
done

field() { sed -n "s/.* $1=\([0-9.]*\).*/\1/p" <<<" $2"; }
declare -A SUM
printf '%-7s %5s %7s %6s %10s %10s %10s %10s\n' model round streams errors ttfe_p50 ttfe_p99 total_p50 total_p99
for r in $(seq "$ROUNDS"); do
    for m in plain hedged; do
        out=$(build/bench/loadgen --url "http://127.0.0.1:$PORT/v1/chat/completions" \
            --body "$DIR/$m.json" --conns "$CONNS" --duration "$SECS")
        printf '%-7s %5s %7s %6s %8.1fms %8.1fms %8.1fms %8.1fms\n' "$m" "$r" \
            "$(field streams "$out")" "$(field errors "$out")" \
            "$(bc -l <<<"$(field ttfe_p50_us "$out")/1000")" "$(bc -l <<<"$(field ttfe_p99_us "$out")/1000")" \
            "$(bc -l <<<"$(field total_p50_us "$out")/1000")" "$(bc -l <<<"$(field total_p99_us "$out")/1000")"
    done
done
m=$(curl -s "http://127.0.0.1:$PORT/metrics")
printf 'hedges started %s, won %s, hedged out %s\n' \
    "$(grep -E '^baton_deployment_hedges_total\{deployment="steady/b"\}' <<<"$m" | awk '{print $2}')" \
    "$(grep -E '^baton_deployment_hedges_won_total\{deployment="steady/b"\}' <<<"$m" | awk '{print $2}')" \
    "$(grep -E '^baton_deployment_hedged_out_total\{deployment="sometimes/a"\}' <<<"$m" | awk '{print $2}')"
