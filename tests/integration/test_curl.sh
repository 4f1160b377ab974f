#!/usr/bin/env bash
# baton and `baton sim` driven with curl, the way a user tries them from a shell:
# health, plain and streamed chat, keep-alive reuse, a chunked upload, 404/431/413,
# and the standalone sim's x-sim-fault header. Prints `N passed, N failed`.
# Ports come from 20000-29999 (docs/testing.md); everything started is killed on exit.
set -u
BATON_BIN=${BATON_BIN:-$PWD/baton}
PASS=0; FAIL=0
TMP=$(mktemp -d /tmp/baton-curl-XXXXXX)
PIDS=()
cleanup() {
    local p
    for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null; wait "$p" 2>/dev/null; done
    rm -rf "$TMP"
}
trap cleanup EXIT
# stop_all: SIGTERM, up to 10 s to exit, then SIGKILL (cleanup's job).
stop_all() {
    local p i
    for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null; done
    for p in "${PIDS[@]}"; do
        for i in $(seq 1 100); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    done
}
trap 'exit 130' INT TERM

ok()   { PASS=$((PASS + 1)); echo "ok - $1"; }
nok()  { FAIL=$((FAIL + 1)); echo "not ok - $1: $2"; }
check() { # check NAME EXPECTED GOT
    if [[ "$3" == "$2" ]]; then ok "$1"; else nok "$1" "expected '$2', got '$3'"; fi
}

# A port in 20000-29999 that nothing listens on (bash /dev/tcp probe).
free_port() {
    local p i
    for i in $(seq 1 40); do
        p=$(shuf -i 20000-29999 -n 1)
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then echo "$p"; return 0; fi
    done
    echo "no free port in 20000-29999 after 40 tries" >&2; return 1
}

# wait_http URL: until it answers 200 (10 s).
wait_http() {
    local i
    for i in $(seq 1 200); do
        [[ $(curl -s -o /dev/null -w '%{http_code}' "$1") == 200 ]] && return 0
        sleep 0.05
    done
    return 1
}

SIM_PORT=$(free_port) || { echo "0 passed, 1 failed"; exit 1; }
"$BATON_BIN" sim --listen "127.0.0.1:$SIM_PORT" --seed 5 >"$TMP/sim.log" 2>&1 &
PIDS+=($!)
PORT=$(free_port) || { echo "0 passed, 1 failed"; exit 1; }
cat >"$TMP/baton.yaml" <<EOF
server:
  listen: 127.0.0.1:$PORT
  max_body_bytes: 1048576
providers:
  sim: {type: sim, seed: 4}
  up: {type: openai, base_url: "http://127.0.0.1:$SIM_PORT/v1", api_key: "sk-curl-test"}
models:
  demo: {provider: sim}
  via-sim: {provider: up, model: standalone}
EOF
"$BATON_BIN" serve -c "$TMP/baton.yaml" >"$TMP/baton.log" 2>&1 &
PIDS+=($!)
if ! wait_http "http://127.0.0.1:$PORT/health/ready" || ! wait_http "http://127.0.0.1:$SIM_PORT/sim/stats"; then
    echo "not ok - startup: baton or sim not ready; logs:"; tail -5 "$TMP/baton.log" "$TMP/sim.log"
    echo "0 passed, 1 failed"; exit 1
fi
B="http://127.0.0.1:$PORT"
S="http://127.0.0.1:$SIM_PORT"
CHAT='{"model":"demo","messages":[{"role":"user","content":"hello from curl"}]}'

# Node parses JSON for us (jq is not among the CI packages).
json() { node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>{try{const j=JSON.parse(s);console.log(eval(process.argv[1]))}catch(e){console.log("INVALID:"+s.slice(0,120))}})' "$1"; }

check "GET /health/live" 200 "$(curl -s -o /dev/null -w '%{http_code}' "$B/health/live")"

out=$(curl -s -D "$TMP/h1" "$B/v1/chat/completions" -H 'content-type: application/json' -d "$CHAT")
check "plain chat object" chat.completion "$(json j.object <<<"$out")"
check "plain chat x-baton-deployment" "sim/demo" "$(grep -i '^x-baton-deployment:' "$TMP/h1" | cut -d' ' -f2 | tr -d '\r')"

out=$(curl -sN "$B/v1/chat/completions" -H 'content-type: application/json' \
    -d '{"model":"demo","stream":true,"messages":[{"role":"user","content":"stream"}]}')
check "stream ends with data: [DONE]" "data: [DONE]" "$(grep -v '^$' <<<"$out" | tail -1 | tr -d '\r')"

out=$(curl -sN "$B/v1/chat/completions" -H 'content-type: application/json' \
    -d '{"model":"via-sim","stream":true,"messages":[{"role":"user","content":"through the standalone sim"}]}')
check "stream through an openai provider ends with [DONE]" "data: [DONE]" "$(grep -v '^$' <<<"$out" | tail -1 | tr -d '\r')"

n=$(curl -sv "$B/health/live" "$B/v1/models" "$B/health/ready" 2>&1 | grep -ci 're-using existing connection')
check "curl reuses one keep-alive connection for 3 URLs" 2 "$n"

printf '%s' "$CHAT" >"$TMP/body.json"
out=$(curl -s "$B/v1/chat/completions" -H 'content-type: application/json' -H 'Transfer-Encoding: chunked' --data-binary @"$TMP/body.json")
check "chunked upload accepted" chat.completion "$(json j.object <<<"$out")"

out=$(curl -s -w '\n%{http_code}' "$B/no/such/path")
check "unknown path 404" 404 "$(tail -1 <<<"$out")"
check "404 body is an OpenAI error" string "$(head -1 <<<"$out" | json 'typeof j.error.message')"

big=$(head -c 100000 /dev/zero | tr '\0' 'a')
check "huge header 431" 431 "$(curl -s -o /dev/null -w '%{http_code}' "$B/v1/models" -H "x-huge: $big")"

head -c 1500000 /dev/zero | tr '\0' ' ' >"$TMP/big.json"
check "body over max_body_bytes 413" 413 "$(curl -s -o /dev/null -w '%{http_code}' "$B/v1/chat/completions" -H 'content-type: application/json' --data-binary @"$TMP/big.json")"

check "unknown model 404" 404 "$(curl -s -o /dev/null -w '%{http_code}' "$B/v1/chat/completions" -H 'content-type: application/json' -d '{"model":"nope","messages":[{"role":"user","content":"x"}]}')"

# The standalone sim takes x-sim-fault per request.
code=$(curl -s -D "$TMP/h2" -o /dev/null -w '%{http_code}' "$S/v1/chat/completions" -H 'x-sim-fault: 429' -H 'content-type: application/json' -d "$CHAT")
check "sim x-sim-fault: 429" 429 "$code"
ra=$(grep -i '^retry-after:' "$TMP/h2" | cut -d' ' -f2 | tr -d '\r')
if [[ $ra =~ ^[0-9]+$ ]]; then ok "sim 429 has Retry-After"; else nok "sim 429 has Retry-After" "got '$ra'"; fi
check "sim x-sim-fault: 503" 503 "$(curl -s -o /dev/null -w '%{http_code}' "$S/v1/chat/completions" -H 'x-sim-fault: 503' -H 'content-type: application/json' -d "$CHAT")"
check "sim stats is JSON with connections" number "$(curl -s "$S/sim/stats" | json 'typeof j.connections')"

# baton is still healthy after everything above.
check "baton still ready" 200 "$(curl -s -o /dev/null -w '%{http_code}' "$B/health/ready")"

# Under ASan/UBSan a memory error only shows in the processes' own output.
stop_all
for log in "$TMP/baton.log" "$TMP/sim.log"; do
    if grep -qE 'ERROR: (AddressSanitizer|LeakSanitizer)|runtime error:' "$log"; then
        nok "$(basename "$log" .log) exited cleanly" "$(grep -m1 -E 'ERROR: |runtime error:' "$log")"
    else ok "$(basename "$log" .log) exited cleanly"; fi
done

echo "$PASS passed, $FAIL failed"
[[ $FAIL -eq 0 ]]
