#!/usr/bin/env bash
# Soak test (not in CI): runs `baton serve` for SOAK_SECONDS (default 1800 = 30 min)
# under mixed load and faults, samples the baton process's RSS and open descriptors
# over time, and prints a table and a summary. Used for docs/reliability.md.
#
#   scripts/soak.sh                      # 30 minutes
#   SOAK_SECONDS=120 scripts/soak.sh     # a short run
#
# Load: wrk (2 threads, SOAK_CONNS connections, default 32) posting a rotation of
# chat requests: plain and streamed, to a healthy simulated provider, to one with
# every fault the simulator has (429, 500, 503, reset before/mid, stall, slow bytes,
# invalid JSON, error events) and to a model that falls back from the faulty one
# to the healthy one. Alongside, a chaos client (python3) loops over: 200 idle
# connections held 3 s, 20 slowloris heads, clients that abandon streams halfway,
# oversized/invalid/smuggling requests, a pipelined burst of 200, and a SIGHUP
# reload every 30 s. Samples every SOAK_SAMPLE seconds (default: a 12th of the run,
# at least 5 s). Fails (exit 1) when baton dies, does not stop cleanly on SIGTERM,
# or ends with more descriptors than it started with (+8).
# Needs: ./baton (built with `make baton` when missing), wrk, python3, curl.
set -uo pipefail
cd "$(dirname "$0")/.."
SECS=${SOAK_SECONDS:-1800}
CONNS=${SOAK_CONNS:-32}
SAMPLE=${SOAK_SAMPLE:-$(( SECS / 12 > 5 ? SECS / 12 : 5 ))}
BATON=${BATON_BIN:-./baton}
for t in wrk python3 curl; do command -v $t >/dev/null || { echo "soak: $t is required" >&2; exit 2; }; done
[[ -x $BATON ]] || make -j2 baton >/dev/null || exit 2

dir=$(mktemp -d /tmp/baton-soak.XXXXXX)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
    [[ -n ${BPID:-} ]] && kill "$BPID" 2>/dev/null
    [[ -z ${SOAK_KEEP:-} ]] && rm -rf "$dir"
}
trap cleanup EXIT

# A free loopback port in the test range.
port=
for _ in $(seq 40); do
    p=$(( 20000 + RANDOM % 10000 ))
    if ! (exec 3<>/dev/tcp/127.0.0.1/$p) 2>/dev/null; then port=$p; break; fi
done
[[ -n $port ]] || { echo "soak: no free port" >&2; exit 2; }

cat >"$dir/baton.yaml" <<EOF
server:
  listen: 127.0.0.1:$port
  workers: 2
  header_timeout: 2s
  idle_timeout: 5s
  max_body_bytes: 1MiB
log:
  level: info
  access: $dir/access.log
  file: $dir/baton.log
providers:
  ok: {type: sim, seed: 1, ttft: 5ms, tokens_per_sec: 5000, reply_tokens: 40}
  faulty:
    type: sim
    seed: 2
    ttft: 5ms
    tokens_per_sec: 5000
    retry_after: 1s
    timeouts: {first_byte: 1s, idle: 1s, total: 5s}
    faults: {429: 0.05, 500: 0.05, 503: 0.03, no_answer: 0.01, reset_before: 0.03, reset_mid: 0.05,
             stall_mid: 0.02, slow_bytes: 0.005, invalid_json: 0.03, error_event: 0.03}
models:
  ok: {provider: ok}
  faulty: {provider: faulty}
  mixed:
    deployments:
      - {provider: faulty, model: a}
      - {provider: ok, model: b}
EOF

cat >"$dir/load.lua" <<'EOF'
local bodies = {}
for _, m in ipairs({"ok", "faulty", "mixed"}) do
  for _, s in ipairs({"false", "true"}) do
    bodies[#bodies + 1] = '{"model":"' .. m .. '","stream":' .. s ..
      ',"messages":[{"role":"user","content":"soak test message with a few words"}]}'
  end
end
local i = 0
request = function()
  i = i + 1
  return wrk.format("POST", "/v1/chat/completions", {["Content-Type"] = "application/json"},
                    bodies[(i % #bodies) + 1])
end
EOF

cat >"$dir/chaos.py" <<'EOF'
import socket, sys, time, os, signal, random
port, bpid, end = int(sys.argv[1]), int(sys.argv[2]), time.time() + float(sys.argv[3])
def conn():
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    return s
def send(data, read=True):
    try:
        s = conn(); s.sendall(data)
        if read:
            try: s.recv(65536)
            except OSError: pass
        s.close()
    except OSError: pass
chat = b'{"model":"ok","messages":[{"role":"user","content":"x"}]}'
def post(body, extra=b""):
    return b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n" + extra + \
        b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body
last_hup = time.time()
rounds = 0
while time.time() < end:
    rounds += 1
    # 200 idle connections held for 3 s
    idle = []
    for _ in range(200):
        try: idle.append(conn())
        except OSError: break
    # 20 slowloris heads trickled during those 3 s
    slow = []
    for _ in range(20):
        try: s = conn(); s.sendall(b"GET /health/live HTTP/1.1\r\nHost: x\r\n"); slow.append(s)
        except OSError: pass
    t0 = time.time()
    while time.time() - t0 < 3:
        for s in slow:
            try: s.sendall(b"X-a: b\r\n")
            except OSError: pass
        time.sleep(0.3)
    for s in idle + slow: s.close()
    # clients that abandon a stream halfway
    for _ in range(10):
        try:
            s = conn()
            s.sendall(post(b'{"model":"ok","stream":true,"messages":[{"role":"user","content":"x"}]}'))
            s.recv(300); s.close()
        except OSError: pass
    # hostile requests
    send(post(b'{"model":"ok","messages":[' * 5000))
    send(post(b'{"model":"ok","messages":[{"role":"user","content":"\xff\xfe"}]}'))
    send(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /v1/models HTTP/1.1\r\n\r\n")
    send(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 5000000\r\n\r\n" + b"x" * 1000)
    send(b"GET / HTTP/1.1\r\n" + b"X: " + b"a" * 100000 + b"\r\n\r\n")
    # a pipelined burst of 200, read fully
    try:
        s = conn(); s.settimeout(10)
        s.sendall(post(chat) * 200)
        got = b""
        while got.count(b"HTTP/1.1 ") < 200:
            d = s.recv(1 << 20)
            if not d: break
            got += d
        s.close()
    except OSError: pass
    if time.time() - last_hup >= 30:
        os.kill(bpid, signal.SIGHUP); last_hup = time.time()
print(f"chaos rounds: {rounds}")
EOF

"$BATON" serve -c "$dir/baton.yaml" >"$dir/stdout" 2>"$dir/stderr" &
BPID=$!
for _ in $(seq 100); do curl -fs "http://127.0.0.1:$port/health/ready" >/dev/null && break; sleep 0.1; done
curl -fs "http://127.0.0.1:$port/health/ready" >/dev/null || { echo "soak: baton did not start"; cat "$dir/stderr"; exit 1; }

sample() { # elapsed rss_kib fds threads requests
    local st rss thr fds
    st=$(cat /proc/$BPID/status 2>/dev/null) || return 1
    rss=$(awk '/^VmRSS/ {print $2}' <<<"$st"); thr=$(awk '/^Threads/ {print $2}' <<<"$st")
    fds=$(ls /proc/$BPID/fd 2>/dev/null | wc -l)
    local n; n=$(wc -l <"$dir/access.log" 2>/dev/null || echo 0)
    : >"$dir/access.log" # keep the disk use flat; baton appends (O_APPEND)
    reqs=$((reqs + n))
    printf '%8s %10s %6s %7s %10s\n' "$1" "$((rss / 1024)).$(( (rss % 1024) * 10 / 1024 ))" "$fds" "$thr" "$reqs"
    echo "$1 $rss $fds" >>"$dir/samples"
}
reqs=0
echo "soak: baton pid $BPID on 127.0.0.1:$port for ${SECS}s, $CONNS wrk connections + chaos, sample every ${SAMPLE}s"
printf '%8s %10s %6s %7s %10s\n' elapsed rss_MiB fds threads requests
sleep 1
sample 0s
wrk -t2 -c"$CONNS" -d"${SECS}s" --timeout 10s -s "$dir/load.lua" "http://127.0.0.1:$port" >"$dir/wrk.out" 2>&1 &
pids+=($!); WRK=$!
python3 "$dir/chaos.py" "$port" "$BPID" "$SECS" >"$dir/chaos.out" 2>&1 &
pids+=($!); CHAOS=$!
t0=$SECONDS
dead=0
while (( SECONDS - t0 < SECS )); do
    sleep "$SAMPLE"
    kill -0 $BPID 2>/dev/null || { dead=1; break; }
    sample "$((SECONDS - t0))s"
done
wait $WRK 2>/dev/null; wait $CHAOS 2>/dev/null
sleep 6 # idle_timeout 5s: every client connection is gone
if (( !dead )) && kill -0 $BPID 2>/dev/null; then sample "idle"; else dead=1; fi
rc=0
if (( dead )); then
    echo "soak: FAIL: baton died"; tail -20 "$dir/stderr"; rc=1
else
    kill -TERM $BPID; wait $BPID; code=$?; BPID=
    [[ $code -eq 0 ]] || { echo "soak: FAIL: baton exited $code after SIGTERM"; rc=1; }
fi
echo
grep -E 'Requests/sec|requests in|Non-2xx|Socket errors|Latency' "$dir/wrk.out" | sed 's/^/wrk: /'
sed 's/^/chaos: /' "$dir/chaos.out"
grep -ciE 'AddressSanitizer|runtime error|fatal|panic' "$dir/stderr" "$dir/baton.log" 2>/dev/null | grep -v ':0$' | sed 's/^/problems: /'
read -r _ rss0 fd0 < <(sed -n 1p "$dir/samples")
read -r _ rss1 fd1 < <(tail -1 "$dir/samples")
peak=$(awk 'BEGIN{m=0} {if ($2>m) m=$2} END{print m}' "$dir/samples")
fdmax=$(awk 'BEGIN{m=0} {if ($3>m) m=$3} END{print m}' "$dir/samples")
echo "summary: rss ${rss0} KiB at start, ${peak} KiB peak, ${rss1} KiB when idle at the end; fds ${fd0} at start, ${fdmax} max, ${fd1} at the end"
if [[ -n ${fd1:-} && -n ${fd0:-} ]] && (( fd1 > fd0 + 8 )); then echo "soak: FAIL: descriptors grew from $fd0 to $fd1"; rc=1; fi
(( rc == 0 )) && echo "soak: ok"
exit $rc
