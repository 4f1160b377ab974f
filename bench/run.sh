#!/usr/bin/env bash
# bench/run.sh: baton's benchmark suite (`make bench`). Method and results:
# docs/performance.md.
#
# Starts everything it measures on 127.0.0.1, ports 30000-30999 (below Linux's
# ephemeral range), measures, stops everything it started, prints a table and
# writes bench/results/bench-<time>.csv and .txt.
#
#   BENCH_QUICK=1          a few seconds per row (smoke run, ~4 minutes)
#   BENCH_DURATION=S       seconds per measured row (default 6; quick 2)
#   BENCH_CONNS="16 64 256" concurrency levels
#   BENCH_WORKERS=N        workers of baton and of the nginx proxy (default 1)
#   BENCH_UPSTREAM_WORKERS=N  workers of the fixed-response nginx (default 2)
#   BENCH_ONLY="load tls stream many micro"  sections to run (default all);
#                          BENCH_ONLY=hold starts the servers and keeps them up (profiling)
#   BENCH_MANY=N           streams in the many-connections test (default 10000)
#   BENCH_MANY_EVENTS / BENCH_MANY_INTERVAL_MS / BENCH_MANY_RAMP  its streams
#   BENCH_MANY_CONTROL=N   control streams straight to the upstream beside them
#                          (default BENCH_MANY / 10)
#   BENCH_NO_PORTKEY=1     skip the Portkey gateway (no npm install)
#   BENCH_NO_STORES=1      skip the full path on PostgreSQL + Redis (no
#                          redis-server, no PostgreSQL started)
#   BENCH_NO_BUILD=1       measure ./baton as it is (no `make baton`)
#   BENCH_REPEAT=N         runs of the target rows (16 connections) and rounds of the
#                          many-streams test, medians kept (default 3; quick 1)
#   BENCH_BATON_B=PATH     a second baton binary (an older commit, say) measured as
#                          contender baton-b beside ./baton, in turn in the same
#                          rows: an A/B in one run (BENCH_BATON_B=./baton gives A/A)
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
ROOT=$PWD

QUICK=${BENCH_QUICK:-0}
if [[ $QUICK = 1 ]]; then DEF_DUR=2; DEF_WARM=1; else DEF_DUR=6; DEF_WARM=1; fi
DUR=${BENCH_DURATION:-$DEF_DUR}
WARM=${BENCH_WARMUP:-$DEF_WARM}
CONCS=${BENCH_CONNS:-"16 64 256"}
WORKERS=${BENCH_WORKERS:-1}
UP_WORKERS=${BENCH_UPSTREAM_WORKERS:-2}
ONLY=${BENCH_ONLY:-"load tls stream many micro"}
MANY=${BENCH_MANY:-10000}
# The many-streams test: each stream is a paced reply from bench/paced_sse.c,
# MANY_EVENTS events MANY_INTERVAL ms apart.
MANY_EVENTS=${BENCH_MANY_EVENTS:-20}
MANY_INTERVAL=${BENCH_MANY_INTERVAL_MS:-500}
MANY_RAMP=${BENCH_MANY_RAMP:-4000}
# A control group of streams goes straight to paced_sse from the same load
# generator in every round, so that the delay a proxy adds is measured against
# streams that met the same machine load at the same moments.
MANY_CTL=${BENCH_MANY_CONTROL:-$(( MANY / 10 ))}
# Runs of each target row (lowest concurrency: direct, nginx, baton), medians kept.
if [[ $QUICK = 1 ]]; then REPEAT=${BENCH_REPEAT:-1}; else REPEAT=${BENCH_REPEAT:-3}; fi

# ---- ports (all on 127.0.0.1) ----
P_UP=30001        # nginx: fixed chat.completion JSON and SSE replies, plain HTTP
P_UP_TLS=30002    # the same over TLS (test CA made here)
P_NGINX=30011     # nginx proxy_pass -> P_UP, keepalive pool
P_NGINX_TLS=30012 # nginx proxy_pass -> P_UP_TLS, keepalive pool
P_BATON=30021     # baton, openai provider -> P_UP / P_UP_TLS
P_BATON_B=30022   # baton-b (BENCH_BATON_B), the same config
P_FULL=30023      # baton-full: group + virtual key + limits + budgets + ledger, SQLite store
P_FULL_RP=30024   # baton-full-rp: the same on PostgreSQL (keys, ledger) + Redis (limits, budgets)
P_REDIS=30051     # redis-server for baton-full-rp
P_PG=30052        # PostgreSQL for baton-full-rp
P_PORTKEY=30031   # Portkey gateway (node), custom host -> P_UP
P_MANY=30042      # baton(s) for the many-streams test -> P_PACED...
P_MANY_NGINX=30043 # nginx proxy_pass for the many-streams test -> P_PACED
P_PACED=30100     # paced_sse: 30100..30100+origins-1 (at most 30227)
# baton's upstream pool holds at most server.upstream_max_connections (256 by
# default) connections per origin and worker, and paced_sse serves many ports
# cheaply, so the many-streams test spreads its streams over one model per origin
# (port), 250 streams per origin, the client rotating models: the defaults apply.
MANY_ORIGINS=$(( (MANY + 249) / 250 ))
(( MANY_ORIGINS > 128 )) && MANY_ORIGINS=128
ALL_PORTS="$P_UP $P_UP_TLS $P_NGINX $P_NGINX_TLS $P_BATON $P_FULL $P_FULL_RP $P_REDIS $P_PG $P_PORTKEY $P_MANY $P_MANY_NGINX $(seq -s ' ' $P_PACED $((P_PACED + MANY_ORIGINS - 1)))"

want() { [[ " $ONLY " == *" $1 "* ]]; }
log() { printf '%s\n' "$*" >&2; }
die() { log "bench: $*"; exit 1; }
# PostgreSQL refuses to run as root: its commands run as the postgres user then.
as_pg() { if [[ $EUID = 0 ]]; then runuser -u postgres -- "$@"; else "$@"; fi; }

for tool in wrk nginx openssl cc curl awk; do
    command -v "$tool" >/dev/null || die "$tool is missing (apt-get install wrk nginx-light openssl curl)"
done
for p in $ALL_PORTS; do
    if ss -ltnH "sport = :$p" 2>/dev/null | grep -q .; then die "port $p is busy"; fi
done

DIR=$(mktemp -d /tmp/baton-bench.XXXXXX) || die "mktemp failed"
chmod 755 "$DIR"
mkdir -p "$DIR/tmp" "$DIR/www" "$ROOT/bench/results"
STAMP=$(date -u +%Y%m%d-%H%M%S)
CSV=$ROOT/bench/results/bench-$STAMP.csv
TXT=$ROOT/bench/results/bench-$STAMP.txt

# ---- process bookkeeping: everything started here is stopped here ----
PIDS=()
PG_DATA='' # set once PostgreSQL is started (pg_ctl stops it)
cleanup() {
    local p
    for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null; done
    [[ -n $PG_DATA ]] && as_pg "$PG_BIN/pg_ctl" -D "$PG_DATA" -m immediate -w stop >/dev/null 2>&1
    for p in "${PIDS[@]}"; do
        for _ in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$p" 2>/dev/null
        wait "$p" 2>/dev/null
    done
    rm -rf "$DIR"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

wait_port() { # port [seconds]
    local i
    for i in $(seq $((${2:-10} * 20))); do
        ss -ltnH "sport = :$1" 2>/dev/null | grep -q . && return 0
        sleep 0.05
    done
    return 1
}

# More descriptors for 10,000 streams; the hard limit may be lower here.
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null
NOFILE=$(ulimit -n)

# ---- builds ----
# Measure the tree as it is (`make bench` has just done this; a no-op then).
if [[ ${BENCH_NO_BUILD:-0} != 1 ]]; then make -s baton >/dev/null || die "make baton failed"; fi
[[ -x ./baton && -f build/release/libbaton.a ]] || die "./baton or build/release/libbaton.a missing"
CFLAGS_B=(-std=c17 -D_GNU_SOURCE -Wall -Wextra -Werror -Wshadow -Wvla -Wformat=2 -O2 -g)
BLD=$ROOT/build/bench
mkdir -p "$BLD"
cc "${CFLAGS_B[@]}" -I/usr/share/include/llhttp -o "$BLD/loadgen" bench/loadgen.c \
    build/release/libbaton.a -luv || die "building bench/loadgen.c failed"
cc "${CFLAGS_B[@]}" -I/usr/share/include/llhttp -o "$BLD/paced_sse" bench/paced_sse.c \
    build/release/libbaton.a -luv || die "building bench/paced_sse.c failed"
cc "${CFLAGS_B[@]}" -Isrc -o "$BLD/micro_json" bench/micro_json.c build/release/libbaton.a \
    -luv -lfyaml -lsqlite3 -lpq -lhiredis -lssl -lcrypto -lm -pthread || die "building bench/micro_json.c failed"
cc "${CFLAGS_B[@]}" -Isrc -o "$BLD/micro_route" bench/micro_route.c build/release/libbaton.a \
    -luv -lfyaml -lsqlite3 -lpq -lhiredis -lssl -lcrypto -lm -pthread || die "building bench/micro_route.c failed"
cc "${CFLAGS_B[@]}" -Isrc -o "$BLD/micro_router" bench/micro_router.c build/release/libbaton.a \
    -luv -lfyaml -lsqlite3 -lpq -lhiredis -lssl -lcrypto -lm -pthread || die "building bench/micro_router.c failed"
cc "${CFLAGS_B[@]}" -Isrc -o "$BLD/micro_rules" bench/micro_rules.c build/release/libbaton.a \
    -luv -lfyaml -lsqlite3 -lpq -lhiredis -lssl -lcrypto -lm -pthread || die "building bench/micro_rules.c failed"
cc "${CFLAGS_B[@]}" -Isrc -o "$BLD/micro_tok" bench/micro_tok.c build/release/libbaton.a \
    -luv -lfyaml -lsqlite3 -lpq -lhiredis -lssl -lcrypto -lm -pthread || die "building bench/micro_tok.c failed"
cc "${CFLAGS_B[@]}" -Isrc -o "$BLD/micro_relay" bench/micro_relay.c build/release/libbaton.a \
    -luv -lfyaml -lsqlite3 -lpq -lhiredis -lssl -lcrypto -lm -pthread || die "building bench/micro_relay.c failed"
LOADGEN=$BLD/loadgen
BATON=$ROOT/baton

# ---- fixtures: request bodies per model and stream flag ----
cp bench/fixtures/completion.json bench/fixtures/stream.sse "$DIR/www/"
chmod 644 "$DIR/www/"*
# chat_*.json: OpenAI chat requests; messages_*.json: the same conversations as
# Anthropic Messages requests (for POST /v1/messages).
body() { # size(1k5|50k) mode(json|sse) model [fixture(chat|messages)] -> path
    local fx=${4:-chat}
    local f="$DIR/body-$fx-$1-$2-$3.json"
    if [[ ! -f $f ]]; then
        local s='s/"stream":false/"stream":false/'
        [[ $2 = sse ]] && s='s/"stream":false/"stream":true/'
        sed "s/\"model\":\"gpt-4o-mini\"/\"model\":\"$3\"/; $s" "bench/fixtures/${fx}_$1.json" > "$f"
    fi
    echo "$f"
}
fixture_of() { [[ $1 == */v1/messages ]] && echo messages || echo chat; } # url -> fixture

# ---- TLS test certificates ----
(
    cd "$DIR" || exit 1
    openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.pem -days 2 \
        -subj "/CN=baton bench CA" -addext "basicConstraints=critical,CA:true" \
        -addext "keyUsage=critical,keyCertSign,cRLSign"
    openssl req -newkey rsa:2048 -nodes -keyout up.key -out up.csr -subj "/CN=localhost" \
        -addext "subjectAltName=DNS:localhost,IP:127.0.0.1"
    openssl x509 -req -in up.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out up.pem \
        -days 2 -copy_extensions copy
    chmod 644 up.key up.pem ca.pem
) >"$DIR/openssl.log" 2>&1 || { cat "$DIR/openssl.log" >&2; die "could not make test certificates"; }

NGINX_COMMON="
    access_log off;
    client_body_temp_path $DIR/tmp/body;
    proxy_temp_path $DIR/tmp/proxy;
    fastcgi_temp_path $DIR/tmp/fastcgi;
    uwsgi_temp_path $DIR/tmp/uwsgi;
    scgi_temp_path $DIR/tmp/scgi;
    client_max_body_size 64m;
    client_body_buffer_size 128k;
    keepalive_requests 1000000;
    keepalive_timeout 300s;"

# ---- upstream: nginx answering every POST with a fixed file ----
# The request path picks the reply: /json/v1/chat/completions -> chat.completion,
# /sse/v1/chat/completions -> a 200-event stream. The location has no file, so
# the 404 is turned into the reply by an internal GET (nginx's static module
# refuses POST); open_file_cache keeps both lookups in memory.
UP_LOCATIONS="
        root $DIR/www;
        log_not_found off;
        open_file_cache max=64 inactive=1h;
        open_file_cache_valid 1h;
        open_file_cache_errors on;
        location = /json/v1/chat/completions { error_page 404 =200 /completion.json; }
        location = /sse/v1/chat/completions { error_page 404 =200 /stream.sse; }
        location = /completion.json { internal; default_type application/json; }
        location = /stream.sse { internal; default_type text/event-stream; }"
mkdir -p "$DIR/up"
cat > "$DIR/up/nginx.conf" <<EOF
daemon off;
worker_processes $UP_WORKERS;
worker_rlimit_nofile $NOFILE;
pid $DIR/up/nginx.pid;
error_log $DIR/up/error.log error;
events { worker_connections $((NOFILE / 2)); }
http {
    $NGINX_COMMON
    server {
        listen 127.0.0.1:$P_UP reuseport backlog=4096;
        $UP_LOCATIONS
    }
    server {
        listen 127.0.0.1:$P_UP_TLS ssl reuseport backlog=4096;
        ssl_certificate $DIR/up.pem;
        ssl_certificate_key $DIR/up.key;
        ssl_protocols TLSv1.2 TLSv1.3;
        ssl_session_cache shared:UPSSL:4m;
        $UP_LOCATIONS
    }
}
EOF

# ---- nginx proxy: the floor for any proxy ----
mkdir -p "$DIR/proxy"
cat > "$DIR/proxy/nginx.conf" <<EOF
daemon off;
worker_processes $WORKERS;
worker_rlimit_nofile $NOFILE;
pid $DIR/proxy/nginx.pid;
error_log $DIR/proxy/error.log error;
events { worker_connections $((NOFILE / 2)); }
http {
    $NGINX_COMMON
    # like baton's access log: one line per request, formatted and written
    access_log /dev/null;
    upstream up_plain { server 127.0.0.1:$P_UP; keepalive 1024; keepalive_requests 1000000; }
    upstream up_tls { server 127.0.0.1:$P_UP_TLS; keepalive 1024; keepalive_requests 1000000; }
    proxy_http_version 1.1;
    proxy_set_header Connection "";
    proxy_buffering off;          # stream events as they arrive, as a gateway must
    proxy_buffer_size 16k;
    proxy_buffers 8 16k;
    proxy_read_timeout 300s;
    server {
        listen 127.0.0.1:$P_NGINX backlog=4096;
        location / { proxy_pass http://up_plain; }
    }
    server {
        listen 127.0.0.1:$P_NGINX_TLS backlog=4096;
        location / {
            proxy_pass https://up_tls;
            proxy_ssl_verify on;
            proxy_ssl_trusted_certificate $DIR/ca.pem;
            proxy_ssl_name localhost;
            proxy_ssl_session_reuse on;
        }
    }
}
EOF

# ---- baton ----
baton_config() { # file listen-port upstream-base(http://host:port) workers [extra providers/models]
    cat > "$1" <<EOF
server:
  listen: 127.0.0.1:$2
  workers: $4
  max_connections: 100000
log:
  level: warn
  access: /dev/null
providers:
  up-json: {type: openai, base_url: "$3/json/v1"}
  up-sse: {type: openai, base_url: "$3/sse/v1"}
  up-json-tls: {type: openai, base_url: "https://localhost:$P_UP_TLS/json/v1"}
  up-sse-tls: {type: openai, base_url: "https://localhost:$P_UP_TLS/sse/v1"}
models:
  bench-json: {provider: up-json, model: gpt-4o-mini}
  bench-sse: {provider: up-sse, model: gpt-4o-mini}
  bench-json-tls: {provider: up-json-tls, model: gpt-4o-mini}
  bench-sse-tls: {provider: up-sse-tls, model: gpt-4o-mini}
EOF
}
# The full path: each model a group of two deployments (two providers, the same
# upstream) with prices, a master key (for the admin API that makes the virtual
# key and the team), and a store that holds keys, budgets and the usage ledger.
full_config() { # file listen-port workers store(YAML flow mapping)
    cat > "$1" <<EOF
server:
  listen: 127.0.0.1:$2
  workers: $3
  max_connections: 100000
auth:
  master_key: $MASTER_KEY
log:
  level: warn
  access: /dev/null
store: $4
providers:
  up-json-a: {type: openai, base_url: "http://127.0.0.1:$P_UP/json/v1"}
  up-json-b: {type: openai, base_url: "http://127.0.0.1:$P_UP/json/v1"}
  up-sse-a: {type: openai, base_url: "http://127.0.0.1:$P_UP/sse/v1"}
  up-sse-b: {type: openai, base_url: "http://127.0.0.1:$P_UP/sse/v1"}
models:
  bench-json:
    strategy: round_robin
    deployments:
      - {provider: up-json-a, model: gpt-4o-mini, price: {input: 0.15, output: 0.60}}
      - {provider: up-json-b, model: gpt-4o-mini, price: {input: 0.15, output: 0.60}}
  bench-sse:
    strategy: round_robin
    deployments:
      - {provider: up-sse-a, model: gpt-4o-mini, price: {input: 0.15, output: 0.60}}
      - {provider: up-sse-b, model: gpt-4o-mini, price: {input: 0.15, output: 0.60}}
EOF
}
# Through the admin API of the baton on port $1: a team with a budget, and a
# virtual key of that team with limits and a budget none of the load reaches.
# Prints the key.
full_key() { # port
    local auth=(-s --max-time 10 -H "Authorization: Bearer $MASTER_KEY" -H 'content-type: application/json') out
    out=$(curl "${auth[@]}" -X PUT "http://127.0.0.1:$1/admin/teams/bench" \
        -d '{"budget_usd":1000000,"budget_period":"month"}') || return 1
    [[ $out == *'"object":"team"'* ]] || { log "bench: PUT /admin/teams/bench: $out"; return 1; }
    out=$(curl "${auth[@]}" "http://127.0.0.1:$1/admin/keys" \
        -d '{"user":"bench-user","team":"bench","rpm":100000000,"tpm":1000000000,"concurrency":100000,"budget_usd":1000000,"budget_period":"month"}') || return 1
    sed -n 's/.*"key":"\(sk-bt-[^"]*\)".*/\1/p' <<<"$out" | grep . || { log "bench: POST /admin/keys: $out"; return 1; }
}
# The ledger of the full path: the records of the team in the store. GET
# /admin/usage first writes what the instance has queued (waiting at most 5 s).
ledger_count() { # port -> requests of team bench in the ledger
    curl -s --max-time 30 -H "Authorization: Bearer $MASTER_KEY" "http://127.0.0.1:$1/admin/usage?team=bench" |
        sed -n 's/.*"requests":\([0-9]*\).*/\1/p'
}
# The ledger is written off the request path, so a store slower than the load
# leaves records queued when wrk stops. Waits (at most 300 s) until the count
# stands still, i.e. every record is written; prints the seconds it took.
ledger_settle() { # port
    local t0 prev='' cur i
    t0=$(date +%s.%N)
    for i in $(seq 300); do
        cur=$(ledger_count "$1")
        [[ -n $cur && $cur = "$prev" ]] && break
        prev=$cur
        sleep 0.5
    done
    awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN{printf "%.1f", b - a}'
}
many_config() { # file workers: models bench-many-I -> paced_sse origin I
    local i
    {
        # few idle upstream connections kept: between rounds, paced_sse's
        # descriptors go to the next contender's streams
        printf 'server:\n  listen: 127.0.0.1:%s\n  workers: %s\n  max_connections: 100000\n  upstream_max_idle: 8\n' "$P_MANY" "$2"
        printf 'log:\n  level: warn\n  access: /dev/null\nproviders:\n'
        for i in $(seq 0 $((MANY_ORIGINS - 1))); do
            printf '  paced%d: {type: openai, base_url: "http://127.0.0.1:%d/v1"}\n' "$i" $((P_PACED + i))
        done
        printf 'models:\n'
        for i in $(seq 0 $((MANY_ORIGINS - 1))); do
            printf '  bench-many-%d: {provider: paced%d, model: gpt-4o-mini}\n' "$i" "$i"
        done
    } >"$1"
}

start_bg() { # name logfile cmd... ; sets LAST_PID
    "${@:3}" >"$2" 2>&1 &
    LAST_PID=$!
    PIDS+=("$LAST_PID")
}

# ---- /proc readings ----
cpu_ticks() { # pids... -> utime+stime in clock ticks, summed
    local t=0 p v
    for p in "$@"; do
        v=$(sed 's/^.*) //' "/proc/$p/stat" 2>/dev/null | awk '{print $12 + $13}')
        t=$((t + ${v:-0}))
    done
    echo "$t"
}
rss_kb() { # pids... -> VmRSS summed
    local t=0 p v
    for p in "$@"; do
        v=$(awk '/^VmRSS:/{print $2}' "/proc/$p/status" 2>/dev/null)
        t=$((t + ${v:-0}))
    done
    echo "$t"
}
hwm_kb() {
    local t=0 p v
    for p in "$@"; do
        v=$(awk '/^VmHWM:/{print $2}' "/proc/$p/status" 2>/dev/null)
        t=$((t + ${v:-0}))
    done
    echo "$t"
}
mkv() { sed -n "s/.*\\b$2=\\(-\\{0,1\\}[0-9.]*\\).*/\\1/p" <<<"$1"; } # "k=v k=v" key -> v
us_diff() { awk -v a="$1" -v b="$2" 'BEGIN{printf "%d", a - b}'; } # a - b, whole µs
# The many-streams test's added delay of one round: the contender's steady trip
# p99 less the control group's (or its steady trip p99 when there was none).
many_added() { us_diff "$(mkv "$1" steady_trip_p99_us)" "$(mkv "$1" ctl_steady_trip_p99_us)"; }
nginx_pids() { echo "$1 $(pgrep -P "$1" | tr '\n' ' ')"; } # master + its workers
CLK_TCK=$(getconf CLK_TCK)

# ---- start the servers ----
log "bench: temp dir $DIR; quick=$QUICK duration=${DUR}s workers=$WORKERS upstream-workers=$UP_WORKERS nofile=$NOFILE"
start_bg up "$DIR/up/stderr" nginx -p "$DIR/up" -c "$DIR/up/nginx.conf"
UP_MASTER=$LAST_PID
start_bg proxy "$DIR/proxy/stderr" nginx -p "$DIR/proxy" -c "$DIR/proxy/nginx.conf"
PROXY_MASTER=$LAST_PID
baton_config "$DIR/baton.yaml" "$P_BATON" "http://127.0.0.1:$P_UP" "$WORKERS"
SSL_CERT_FILE=$DIR/ca.pem start_bg baton "$DIR/baton.log" "$BATON" serve -c "$DIR/baton.yaml"
BATON_PID=$LAST_PID
BATON_B=${BENCH_BATON_B:-} BATON_B_PID=''
if [[ -n $BATON_B ]]; then
    [[ -x $BATON_B ]] || die "BENCH_BATON_B=$BATON_B is not an executable"
    baton_config "$DIR/baton-b.yaml" "$P_BATON_B" "http://127.0.0.1:$P_UP" "$WORKERS"
    SSL_CERT_FILE=$DIR/ca.pem start_bg baton-b "$DIR/baton-b.log" "$BATON_B" serve -c "$DIR/baton-b.yaml"
    BATON_B_PID=$LAST_PID
    wait_port "$P_BATON_B" || { cat "$DIR/baton-b.log" >&2; die "baton-b did not start"; }
fi
wait_port "$P_UP" && wait_port "$P_UP_TLS" || { cat "$DIR/up/stderr" "$DIR/up/error.log" >&2; die "upstream nginx did not start"; }
wait_port "$P_NGINX" || { cat "$DIR/proxy/stderr" >&2; die "nginx proxy did not start"; }
wait_port "$P_BATON" || { cat "$DIR/baton.log" >&2; die "baton did not start"; }
sleep 0.3
UP_PIDS=$(nginx_pids "$UP_MASTER")
PROXY_PIDS=$(nginx_pids "$PROXY_MASTER")
BATON_IDLE_KB=$(rss_kb "$BATON_PID")

# ---- the full path: virtual key, limits, budgets, ledger; SQLite, and PostgreSQL + Redis ----
MASTER_KEY=bench-master-$(od -An -tx1 -N16 /dev/urandom | tr -d ' \n')
FULL_PID='' FULL_KEY='' FULL_NA='' FULL_RP_PID='' FULL_RP_KEY='' FULL_RP_NA='' REDIS_PID='' PG_PID=''
if want load || want hold; then
    full_config "$DIR/full.yaml" "$P_FULL" "$WORKERS" "{sqlite: \"$DIR/full.db\"}"
    start_bg baton-full "$DIR/full.log" "$BATON" serve -c "$DIR/full.yaml"
    FULL_PID=$LAST_PID
    if ! wait_port "$P_FULL"; then FULL_NA="n/a (did not start: $(tail -1 "$DIR/full.log" | cut -c1-80))"
    elif ! FULL_KEY=$(full_key "$P_FULL"); then FULL_NA="n/a (admin API refused the key or team)"; fi
    PG_BIN=$(printf '%s\n' /usr/lib/postgresql/*/bin | sort -V | tail -1)
    [[ -x $PG_BIN/initdb ]] || PG_BIN=''
    if [[ ${BENCH_NO_STORES:-0} = 1 ]]; then FULL_RP_NA="n/a (BENCH_NO_STORES=1)"
    elif ! command -v redis-server >/dev/null; then FULL_RP_NA="n/a (redis-server missing: apt-get install redis-server)"
    elif [[ -z $PG_BIN ]]; then FULL_RP_NA="n/a (PostgreSQL missing: apt-get install postgresql)"
    else
        start_bg redis "$DIR/redis.log" redis-server --port "$P_REDIS" --bind 127.0.0.1 --save '' \
            --appendonly no --daemonize no
        REDIS_PID=$LAST_PID
        # A throwaway cluster, owned by the postgres user when this runs as root.
        mkdir -p "$DIR/pg"
        [[ $EUID = 0 ]] && chown postgres: "$DIR/pg"
        if ! as_pg "$PG_BIN/initdb" -D "$DIR/pg/data" -A trust -U postgres --no-sync >"$DIR/pg-initdb.log" 2>&1; then
            FULL_RP_NA="n/a (initdb failed: $(tail -1 "$DIR/pg-initdb.log" | cut -c1-80))"
        else
            PG_DATA=$DIR/pg/data
            if ! as_pg "$PG_BIN/pg_ctl" -D "$PG_DATA" -l "$DIR/pg/log" -w -t 30 \
                -o "-p $P_PG -k $DIR/pg -c listen_addresses=127.0.0.1" start >"$DIR/pg-start.log" 2>&1; then
                FULL_RP_NA="n/a (PostgreSQL did not start: $(tail -1 "$DIR/pg/log" | cut -c1-80))"
            fi
            PG_PID=$(head -1 "$PG_DATA/postmaster.pid" 2>/dev/null)
        fi
        wait_port "$P_REDIS" || FULL_RP_NA="n/a (redis-server did not start)"
    fi
    if [[ -z $FULL_RP_NA ]]; then
        full_config "$DIR/full-rp.yaml" "$P_FULL_RP" "$WORKERS" \
            "{postgres: \"postgresql://postgres@127.0.0.1:$P_PG/postgres\", redis: \"redis://127.0.0.1:$P_REDIS/0\"}"
        start_bg baton-full-rp "$DIR/full-rp.log" "$BATON" serve -c "$DIR/full-rp.yaml"
        FULL_RP_PID=$LAST_PID
        if ! wait_port "$P_FULL_RP"; then FULL_RP_NA="n/a (did not start: $(tail -1 "$DIR/full-rp.log" | cut -c1-80))"
        elif ! FULL_RP_KEY=$(full_key "$P_FULL_RP"); then FULL_RP_NA="n/a (admin API refused the key or team)"; fi
    fi
fi
# PostgreSQL's processes: the postmaster and its children (a backend per
# connection baton holds, the writer, the WAL writer...), read at each row.
pg_pids() { [[ -n $PG_PID ]] && echo "$PG_PID $(pgrep -P "$PG_PID" | tr '\n' ' ')"; }

PORTKEY_PID='' PORTKEY_NA=''
if [[ ${BENCH_NO_PORTKEY:-0} = 1 ]]; then
    PORTKEY_NA="n/a (BENCH_NO_PORTKEY=1)"
elif ! command -v node >/dev/null || ! command -v npm >/dev/null; then
    PORTKEY_NA="n/a (node/npm missing)"
else
    if [[ ! -f bench/node_modules/@portkey-ai/gateway/build/start-server.js ]]; then
        log "bench: installing @portkey-ai/gateway into bench/node_modules (npm ci)"
        (cd bench && npm ci --no-audit --no-fund >"$DIR/npm.log" 2>&1) || true
    fi
    if [[ -f bench/node_modules/@portkey-ai/gateway/build/start-server.js ]]; then
        NODE_ENV=production start_bg portkey "$DIR/portkey.log" node bench/portkey.mjs --port=$P_PORTKEY --headless
        PORTKEY_PID=$LAST_PID
        wait_port "$P_PORTKEY" 20 || { PORTKEY_NA="n/a (did not start)"; tail -5 "$DIR/portkey.log" >&2; }
    else
        PORTKEY_NA="n/a (npm install failed)"
        tail -5 "$DIR/npm.log" >&2
    fi
fi
PORTKEY_VERSION=$(node -p 'require("./bench/node_modules/@portkey-ai/gateway/package.json").version' 2>/dev/null || echo "?")

# ---- contenders ----
# url CONTENDER MODE(json|sse) TLS(0|1) -> "URL|MODEL|HEADERS" or "n/a (why)"
target() {
    local c=$1 m=$2 tls=$3
    case $c in
        direct)
            if [[ $tls = 1 ]]; then echo "https://127.0.0.1:$P_UP_TLS/$m/v1/chat/completions|bench-$m|"
            else echo "http://127.0.0.1:$P_UP/$m/v1/chat/completions|bench-$m|"; fi ;;
        nginx)
            if [[ $tls = 1 ]]; then echo "http://127.0.0.1:$P_NGINX_TLS/$m/v1/chat/completions|bench-$m|"
            else echo "http://127.0.0.1:$P_NGINX/$m/v1/chat/completions|bench-$m|"; fi ;;
        baton)
            if [[ $tls = 1 ]]; then
                [[ -n ${BATON_TLS_NA:-} ]] && { echo "$BATON_TLS_NA"; return; }
                echo "http://127.0.0.1:$P_BATON/v1/chat/completions|bench-$m-tls|"
            else echo "http://127.0.0.1:$P_BATON/v1/chat/completions|bench-$m|"; fi ;;
        baton-b)
            [[ -z $BATON_B ]] && { echo "n/a (BENCH_BATON_B not set)"; return; }
            [[ $tls = 1 ]] && { echo "n/a (A/B rows are plain HTTP)"; return; }
            echo "http://127.0.0.1:$P_BATON_B/v1/chat/completions|bench-$m|" ;;
        portkey)
            [[ $tls = 1 ]] && { echo "n/a (not measured over TLS)"; return; }
            [[ -n $PORTKEY_NA ]] && { echo "$PORTKEY_NA"; return; }
            echo "http://127.0.0.1:$P_PORTKEY/v1/chat/completions|bench-$m|x-portkey-provider: openai|x-portkey-custom-host: http://127.0.0.1:$P_UP/$m/v1" ;;
        # The full path: a virtual key of a team, both with budgets, the key with
        # rpm/tpm/concurrency limits, a two-deployment group with prices, the ledger.
        baton-full|baton-full-rp)
            [[ $tls = 1 ]] && { echo "n/a (not measured over TLS)"; return; }
            if [[ $c = baton-full ]]; then
                [[ -n $FULL_NA ]] && { echo "$FULL_NA"; return; }
                echo "http://127.0.0.1:$P_FULL/v1/chat/completions|bench-$m|Authorization: Bearer $FULL_KEY"
            else
                [[ -n $FULL_RP_NA ]] && { echo "$FULL_RP_NA"; return; }
                echo "http://127.0.0.1:$P_FULL_RP/v1/chat/completions|bench-$m|Authorization: Bearer $FULL_RP_KEY"
            fi ;;
        # Anthropic's Messages API in front, the OpenAI provider behind: the
        # request and the reply (or every event) translated.
        baton-anthropic)
            [[ $tls = 1 ]] && { echo "n/a (not measured over TLS)"; return; }
            echo "http://127.0.0.1:$P_BATON/v1/messages|bench-$m|anthropic-version: 2023-06-01" ;;
        *) echo "n/a (unknown contender)" ;;
    esac
}
contender_pids() {
    case $1 in
        direct) echo "$UP_PIDS" ;;
        nginx) echo "$PROXY_PIDS" ;;
        baton|baton-anthropic) echo "$BATON_PID" ;;
        baton-b) echo "$BATON_B_PID" ;;
        baton-full) echo "$FULL_PID" ;;
        baton-full-rp) echo "$FULL_RP_PID" ;;
        portkey) echo "$PORTKEY_PID" ;;
    esac
}
# The stores a contender talks to, measured apart from its own processes.
redis_pids() { [[ $1 = baton-full-rp ]] && echo "$REDIS_PID"; }
postgres_pids() { [[ $1 = baton-full-rp ]] && pg_pids; }

# Checks that a contender answers correctly before it is measured.
check() { # contender mode tls -> 0 when the reply is right
    local t url model hdrs body args=() out
    t=$(target "$1" "$2" "$3")
    [[ $t == n/a* ]] && return 0
    IFS='|' read -r url model hdrs <<<"$t"
    body=$(body 1k5 "$2" "$model" "$(fixture_of "$url")")
    args=(-s -k --max-time 10 -H 'content-type: application/json')
    local h rest=${t#*|*|}
    # the contender's own Authorization replaces the default, as in bench/wrk/post.lua
    [[ ${rest,,} == *authorization:* ]] || args+=(-H 'authorization: Bearer bench')
    IFS='|' read -ra hs <<<"$rest"
    for h in "${hs[@]}"; do [[ -n $h ]] && args+=(-H "$h"); done
    out=$(curl "${args[@]}" --data-binary "@$body" "$url")
    printf '%s\n' "$out" >"$DIR/check-$1-$2-$3.out"
    if [[ $(fixture_of "$url") = messages ]]; then
        # translated back: Anthropic's message, or its event stream with one
        # text delta per upstream content event and the usage at the end
        if [[ $2 = sse ]]; then
            [[ $out == *'event: message_stop'* && $out == *'"output_tokens":197'* &&
                $(grep -c '^event: content_block_delta' <<<"$out") -ge 190 ]]
        else
            [[ $out == *'"type":"message"'* && $out == *'"stop_reason":"end_turn"'* && $out == *'"output_tokens":40'* ]]
        fi
    elif [[ $2 = sse ]]; then
        [[ $out == *'data: [DONE]'* && $(grep -c '^data: ' <<<"$out") -ge 200 ]]
    else
        [[ $out == *'"object":"chat.completion"'* ]]
    fi
}

# ---- result table ----
echo "section,contender,upstream,body,mode,conns,rps,p50_us,p99_us,cpu_us_per_req,rss_kb,errors,requests,upstream_cpu_pct,ttfe_p50_us,ttfe_p99_us,gap_p99_us,note" >"$CSV"
declare -A R # key "section|contender|up|body|mode|conns|field" -> value
row_csv() { echo "$1" >>"$CSV"; }

# One wrk measurement: section contender tls body mode conns
run_wrk() {
    local sec=$1 c=$2 tls=$3 b=$4 m=$5 n=$6 t url model rest hdrs bodyf up=plain
    [[ $tls = 1 ]] && up=tls
    local key="$sec|$c|$up|$b|$m|$n"
    t=$(target "$c" "$m" "$tls")
    if [[ $t == n/a* ]]; then
        R[$key|note]=$t
        row_csv "$sec,$c,$up,$b,$m,$n,,,,,,,,,,,,$t"
        return
    fi
    IFS='|' read -r url model rest <<<"$t"
    hdrs=${t#*|*|}
    bodyf=$(body "$b" "$m" "$model" "$(fixture_of "$url")")
    local threads=2
    ((n < 2)) && threads=1
    local pids up_pids c0 c1 u0 u1 out rd_pids pg_ps r0 r1 g0 g1
    pids=$(contender_pids "$c")
    up_pids=$UP_PIDS
    BENCH_BODY=$bodyf BENCH_HEADERS=$hdrs wrk -t$threads -c"$n" -d"${WARM}s" --timeout 10s \
        -s bench/wrk/post.lua "$url" >/dev/null 2>&1
    # after the warm-up: PostgreSQL's backends are all there
    rd_pids=$(redis_pids "$c"); pg_ps=$(postgres_pids "$c")
    # shellcheck disable=SC2086
    { c0=$(cpu_ticks $pids); u0=$(cpu_ticks $up_pids); r0=$(cpu_ticks $rd_pids); g0=$(cpu_ticks $pg_ps); }
    out=$(BENCH_BODY=$bodyf BENCH_HEADERS=$hdrs wrk -t$threads -c"$n" -d"${DUR}s" --timeout 10s \
        -s bench/wrk/post.lua "$url" 2>&1)
    # The full path's CPU counts the ledger's writes of the row's requests: the
    # readings wait until the store has them all (the time it took is reported).
    local settle=''
    case $c in
        baton-full) settle=$(ledger_settle "$P_FULL") ;;
        baton-full-rp) settle=$(ledger_settle "$P_FULL_RP") ;;
    esac
    # shellcheck disable=SC2086
    { c1=$(cpu_ticks $pids); u1=$(cpu_ticks $up_pids); r1=$(cpu_ticks $rd_pids); g1=$(cpu_ticks $pg_ps); }
    local line
    line=$(grep '^BENCHRESULT' <<<"$out")
    if [[ -z $line ]]; then
        R[$key|note]="wrk failed"
        row_csv "$sec,$c,$up,$b,$m,$n,,,,,,,,,,,,wrk failed"
        log "bench: wrk failed: $out"
        return
    fi
    local reqs dur_us p50 p99 errs rps cpu rss upct
    reqs=$(sed 's/.*requests=\([0-9]*\).*/\1/' <<<"$line")
    dur_us=$(sed 's/.*duration_us=\([0-9]*\).*/\1/' <<<"$line")
    p50=$(sed 's/.*p50_us=\([0-9]*\).*/\1/' <<<"$line")
    p99=$(sed 's/.*p99_us=\([0-9]*\).*/\1/' <<<"$line")
    errs=$(awk '{s=0; for(i=1;i<=NF;i++) if ($i ~ /^err_/) {split($i,a,"="); s+=a[2]} print s}' <<<"$line")
    rps=$(awk -v r="$reqs" -v d="$dur_us" 'BEGIN{printf "%.0f", d ? r * 1e6 / d : 0}')
    cpu=$(awk -v t=$((c1 - c0)) -v r="$reqs" -v hz="$CLK_TCK" 'BEGIN{printf "%.1f", r ? t / hz * 1e6 / r : 0}')
    # shellcheck disable=SC2086
    rss=$(rss_kb $pids)
    upct=$(awk -v t=$((u1 - u0)) -v d="$dur_us" -v hz="$CLK_TCK" 'BEGIN{printf "%.0f", d ? t / hz * 100 / (d / 1e6) : 0}')
    [[ $c = direct ]] && upct=""
    R[$key|rps]=$rps R[$key|p50]=$p50 R[$key|p99]=$p99 R[$key|cpu]=$cpu R[$key|rss]=$rss
    R[$key|err]=$errs R[$key|upct]=$upct
    local note="" stores=""
    if [[ -n $settle ]]; then
        R[$key|settle]=$settle
        note="ledger_settle_s=$settle"
        stores=" ledger settled ${settle}s after the load"
    fi
    if [[ -n $rd_pids$pg_ps ]]; then
        # The stores' CPU per request, apart from the contender's own.
        local rcpu gcpu
        rcpu=$(awk -v t=$((r1 - r0)) -v r="$reqs" -v hz="$CLK_TCK" 'BEGIN{printf "%.1f", r ? t / hz * 1e6 / r : 0}')
        gcpu=$(awk -v t=$((g1 - g0)) -v r="$reqs" -v hz="$CLK_TCK" 'BEGIN{printf "%.1f", r ? t / hz * 1e6 / r : 0}')
        R[$key|rcpu]=$rcpu R[$key|gcpu]=$gcpu
        note="$note redis_cpu_us_per_req=$rcpu postgres_cpu_us_per_req=$gcpu"
        stores="$stores redis=${rcpu}us/req postgres=${gcpu}us/req"
    fi
    row_csv "$sec,$c,$up,$b,$m,$n,$rps,$p50,$p99,$cpu,$rss,$errs,$reqs,$upct,,,,$note"
    log "  $(printf '%-8s %-5s %-4s %-4s c=%-4s' "$c" "$up" "$b" "$m" "$n") rps=$rps p50=${p50}us p99=${p99}us cpu=${cpu}us/req rss=$((rss / 1024))MB err=$errs up_cpu=${upct}%$stores"
}

median() { tr ' ' '\n' | grep -v '^$' | sort -g | awk '{v[NR]=$1} END{if (NR) print v[int((NR + 1) / 2)]}'; }
# run_wrk REPEAT times over the given contenders in turn (A B C A B C ...): the
# machine's noise moves minutes-apart rows by 10-20%, interleaving and medians
# keep the ratios honest. Every run is a CSV row; R holds the medians (errors:
# the sum).
run_wrk_rep() { # section body mode conns contenders...
    local sec=$1 b=$2 m=$3 n=$4 i c f key
    shift 4
    declare -A acc=()
    for i in $(seq "$REPEAT"); do
        for c in "$@"; do
            run_wrk "$sec" "$c" 0 "$b" "$m" "$n"
            key="$sec|$c|plain|$b|$m|$n"
            for f in rps p50 p99 cpu rss err upct rcpu gcpu settle; do acc[$c|$f]+="${R[$key|$f]:-} "; done
        done
    done
    for c in "$@"; do
        key="$sec|$c|plain|$b|$m|$n"
        for f in rps p50 p99 cpu rss upct rcpu gcpu settle; do R[$key|$f]=$(median <<<"${acc[$c|$f]}"); done
        R[$key|err]=$(tr ' ' '\n' <<<"${acc[$c|err]}" | awk '{s+=$1} END{print s+0}')
        R[$key|reps]=$REPEAT
    done
}

# One streaming-latency measurement with the loadgen (keep-alive, back to back).
run_stream() { # contender conns
    local c=$1 n=$2 t url model hdrs bodyf args=() key="stream|$1|plain|1k5|sse|$2"
    t=$(target "$c" sse 0)
    if [[ $t == n/a* ]]; then
        R[$key|note]=$t
        row_csv "stream,$c,plain,1k5,sse,$n,,,,,,,,,,,,$t"
        return
    fi
    IFS='|' read -r url model _ <<<"$t"
    hdrs=${t#*|*|}
    IFS='|' read -ra hs <<<"$hdrs"
    local h
    for h in "${hs[@]}"; do [[ -n $h ]] && args+=(-H "$h"); done
    bodyf=$(body 1k5 sse "$model")
    "$LOADGEN" --url "$url" --body "$bodyf" --conns "$n" --duration "$WARM" "${args[@]}" >/dev/null 2>&1
    local pids c0 c1 out
    pids=$(contender_pids "$c")
    # shellcheck disable=SC2086
    c0=$(cpu_ticks $pids)
    out=$("$LOADGEN" --url "$url" --body "$bodyf" --conns "$n" --duration "$DUR" "${args[@]}" 2>"$DIR/loadgen.err")
    # shellcheck disable=SC2086
    c1=$(cpu_ticks $pids)
    local streams errs rps ttfe50 ttfe99 gap99 cpu
    streams=$(mkv "$out" streams); errs=$(( $(mkv "$out" errors) + $(mkv "$out" bad_status) ))
    rps=$(mkv "$out" rps); ttfe50=$(mkv "$out" ttfe_p50_us); ttfe99=$(mkv "$out" ttfe_p99_us)
    gap99=$(mkv "$out" gap_p99_us)
    cpu=$(awk -v t=$((c1 - c0)) -v r="$streams" -v hz="$CLK_TCK" 'BEGIN{printf "%.1f", r ? t / hz * 1e6 / r : 0}')
    R[$key|rps]=$rps R[$key|ttfe50]=$ttfe50 R[$key|ttfe99]=$ttfe99 R[$key|gap99]=$gap99 R[$key|err]=$errs R[$key|cpu]=$cpu
    row_csv "stream,$c,plain,1k5,sse,$n,$rps,,,$cpu,,$errs,$streams,,$ttfe50,$ttfe99,$gap99,"
    log "  $(printf '%-8s c=%-4s' "$c" "$n") streams/s=$rps ttfe p50=${ttfe50}us p99=${ttfe99}us gap p99=${gap99}us cpu=${cpu}us/stream err=$errs"
}

# ---- sanity: every contender answers correctly ----
BATON_TLS_NA=
CHECKED="direct nginx baton baton-b portkey"
want load && CHECKED="$CHECKED baton-full baton-full-rp baton-anthropic"
for c in $CHECKED; do
    for m in json sse; do
        check "$c" "$m" 0 || { head -c 600 "$DIR/check-$c-$m-0.out" >&2; die "$c ($m) did not answer correctly"; }
    done
done
for c in direct nginx; do
    for m in json sse; do check "$c" "$m" 1 || die "$c over TLS ($m) did not answer correctly"; done
done
if ! check baton json 1 || ! check baton sse 1; then
    BATON_TLS_NA="n/a (baton to a TLS upstream failed: $(tail -1 "$DIR/baton.log" | cut -c1-80))"
fi

CONTENDERS="direct nginx baton portkey"
AB=""; [[ -n $BATON_B ]] && { CONTENDERS="direct nginx baton baton-b portkey"; AB=baton-b; }
# For profiling: keep every server up until Ctrl-C (BENCH_ONLY=hold).
if want hold; then
    log "bench: holding: upstream $P_UP (tls $P_UP_TLS), nginx proxy $P_NGINX, baton $P_BATON (pid $BATON_PID),"
    log "       portkey ${PORTKEY_PID:+$P_PORTKEY}; request bodies in $DIR; Ctrl-C stops everything"
    log "       baton-full $P_FULL (pid $FULL_PID, key $FULL_KEY), baton-full-rp ${FULL_RP_PID:+$P_FULL_RP (pid $FULL_RP_PID, key $FULL_RP_KEY; redis $P_REDIS, postgres $P_PG)}"
    for m in json sse; do for b in 1k5 50k; do
        body "$b" "$m" "bench-$m" >/dev/null; body "$b" "$m" "bench-$m" messages >/dev/null
    done; done
    while :; do sleep 3600 & wait $!; done # wait: a trap runs at once, not after the sleep
fi

if want load; then
    log "bench: load (wrk, ${DUR}s per row, plain HTTP upstream)"
    for b in 1k5 50k; do
        for m in json sse; do
            for n in $CONCS; do
                if [[ $n = "$(awk '{print $1}' <<<"$CONCS")" && $REPEAT -gt 1 ]]; then
                    # The rows the targets read: direct, nginx, baton and the
                    # full path measured REPEAT times in turn, each figure the
                    # median of its runs.
                    # shellcheck disable=SC2086
                    run_wrk_rep load "$b" "$m" "$n" direct nginx baton $AB baton-full baton-full-rp
                    for c in $CONTENDERS; do
                        [[ $c = direct || $c = nginx || $c = baton || $c = baton-b ]] || run_wrk load "$c" 0 "$b" "$m" "$n"
                    done
                elif [[ $n = "$(awk '{print $1}' <<<"$CONCS")" ]]; then
                    for c in $CONTENDERS baton-full baton-full-rp; do run_wrk load "$c" 0 "$b" "$m" "$n"; done
                else
                    for c in $CONTENDERS; do run_wrk load "$c" 0 "$b" "$m" "$n"; done
                fi
                # Translation (informative): once, at the lowest concurrency.
                if [[ $n = "$(awk '{print $1}' <<<"$CONCS")" ]]; then run_wrk load baton-anthropic 0 "$b" "$m" "$n"; fi
            done
        done
    done
fi
FULL_LEDGER='' FULL_RP_LEDGER=''
if want load; then
    [[ -z $FULL_NA ]] && FULL_LEDGER=$(ledger_count "$P_FULL")
    [[ -z $FULL_RP_NA ]] && FULL_RP_LEDGER=$(ledger_count "$P_FULL_RP")
fi
# The full path's servers are done: the sections after this one get the machine.
for p in $FULL_PID $FULL_RP_PID $REDIS_PID; do kill -TERM "$p" 2>/dev/null; done
if [[ -n $PG_DATA ]]; then
    as_pg "$PG_BIN/pg_ctl" -D "$PG_DATA" -m fast -w stop >/dev/null 2>&1 && PG_DATA=''
fi
TLS_CONCS=$(awk '{print $1, $NF}' <<<"$CONCS")
[[ $QUICK = 1 ]] && TLS_CONCS=$(awk '{print $1}' <<<"$CONCS")
if want tls; then
    log "bench: load over a TLS upstream (wrk, ${DUR}s per row)"
    for m in json sse; do
        for n in $TLS_CONCS; do
            for c in direct nginx baton; do run_wrk tls "$c" 1 1k5 "$m" "$n"; done
        done
    done
fi
if want stream; then
    log "bench: streaming latency (loadgen, ${DUR}s per row, 200-event SSE)"
    for n in $CONCS; do
        for c in $CONTENDERS; do run_stream "$c" "$n"; done
    done
fi

# ---- many streams ----
# Three contenders in turn, BENCH_REPEAT rounds: direct to paced_sse, nginx
# proxy_pass (the floor for any proxy, as many worker processes as baton has
# event loops) and baton. paced_sse stamps every event with the time it wrote
# it, so the load generator times each event's trip. Beside the contender's
# streams, every round runs MANY_CTL control streams straight to paced_sse from
# the same load generator: the delay a proxy adds is its streams' trip p99 less
# the control streams' in the same round (in the direct round both groups go
# direct, which shows the method's own error). Per contender the round with the
# median added delay is kept (every round is in the CSV).
MANY_NOTE=""
if want many; then
    log "bench: $MANY concurrent streams ($MANY_EVENTS events ${MANY_INTERVAL} ms apart, $MANY_ORIGINS upstream origins, $REPEAT rounds)"
    start_bg paced "$DIR/paced.log" "$BLD/paced_sse" --port "$P_PACED" --ports "$MANY_ORIGINS" \
        --events "$MANY_EVENTS" --interval-ms "$MANY_INTERVAL"
    PACED_PID=$LAST_PID
    wait_port $((P_PACED + MANY_ORIGINS - 1)) || die "paced_sse did not start"
    manybodies=()
    for i in $(seq 0 $((MANY_ORIGINS - 1))); do manybodies+=(--body "$(body 1k5 sse "bench-many-$i")"); done
    MANY_T=$(( MANY_EVENTS * MANY_INTERVAL / 1000 + (MANY + MANY_CTL) / MANY_RAMP + 60 ))
    (( MANY + MANY_CTL + 200 > NOFILE )) && die "the many-streams test needs ulimit -n >= $(( MANY + MANY_CTL + 200 )) (have $NOFILE)"
    # One baton holds a client and an upstream socket per stream; when the
    # descriptor limit cannot cover that, several baton processes share the port
    # (SO_REUSEPORT) and their memory is added up.
    NPROC=1
    while (( (2 * MANY) / NPROC + 300 > NOFILE )); do NPROC=$((NPROC + 1)); done
    MANY_LOOPS=$(( WORKERS > NPROC ? WORKERS : NPROC ))
    MANY_PIDS=()
    for i in $(seq "$NPROC"); do
        many_config "$DIR/many$i.yaml" "$(( MANY_LOOPS / NPROC ))"
        start_bg many "$DIR/many$i.log" "$BATON" serve -c "$DIR/many$i.yaml"
        MANY_PIDS+=("$LAST_PID")
        wait_port "$P_MANY" || { cat "$DIR/many$i.log" >&2; die "baton (many) did not start"; }
    done
    mkdir -p "$DIR/many-nginx"
    cat > "$DIR/many-nginx/nginx.conf" <<EOF
daemon off;
worker_processes $MANY_LOOPS;
worker_rlimit_nofile $NOFILE;
pid $DIR/many-nginx/nginx.pid;
error_log $DIR/many-nginx/error.log error;
events { worker_connections $(( NOFILE - 200 )); }
http {
    $NGINX_COMMON
    access_log /dev/null;
    upstream paced { server 127.0.0.1:$P_PACED; keepalive 8; keepalive_requests 1000000; }
    proxy_http_version 1.1;
    proxy_set_header Connection "";
    proxy_buffering off;
    proxy_read_timeout 300s;
    server {
        listen 127.0.0.1:$P_MANY_NGINX reuseport backlog=4096;
        location / { proxy_pass http://paced; }
    }
}
EOF
    start_bg many-nginx "$DIR/many-nginx/stderr" nginx -p "$DIR/many-nginx" -c "$DIR/many-nginx/nginx.conf"
    MANY_NGX_PID=$LAST_PID
    wait_port "$P_MANY_NGINX" || { cat "$DIR/many-nginx/stderr" >&2; die "nginx (many) did not start"; }
    sleep 0.5
    MANY_IDLE_KB=$(rss_kb "${MANY_PIDS[@]}")
    declare -A MANY_RUNS=()
    MANY_BATON_TICKS=0
    MANY_BATON_EVENTS=0
    for round in $(seq "$REPEAT"); do
        for who in direct nginx baton; do
            case $who in
                direct) port=$P_PACED ;;
                nginx) port=$P_MANY_NGINX ;;
                baton) port=$P_MANY ;;
            esac
            c0=$(cpu_ticks "${MANY_PIDS[@]}")
            ctl=()
            (( MANY_CTL > 0 )) && ctl=(--control-url "http://127.0.0.1:$P_PACED/v1/chat/completions" --control-conns "$MANY_CTL")
            out=$("$LOADGEN" --url "http://127.0.0.1:$port/v1/chat/completions" "${manybodies[@]}" \
                --conns "$MANY" "${ctl[@]}" --once --ramp "$MANY_RAMP" --timeout "$MANY_T" 2>"$DIR/many-$who.err")
            out="$out added_p99_us=$(many_added "$out")"
            if [[ $who = baton ]]; then
                c1=$(cpu_ticks "${MANY_PIDS[@]}")
                MANY_BATON_TICKS=$((MANY_BATON_TICKS + c1 - c0))
                MANY_BATON_EVENTS=$((MANY_BATON_EVENTS + $(mkv "$out" events)))
            fi
            log "  $who (round $round): $(mkv "$out" streams) streams, steady trip p50 $(mkv "$out" steady_trip_p50_us) us, p99 $(mkv "$out" steady_trip_p99_us) us; control p99 $(mkv "$out" ctl_steady_trip_p99_us) us; added $(mkv "$out" added_p99_us) us"
            MANY_RUNS[$who|$round]=$out
            row_csv "many,$who,paced,1k5,sse,$MANY,,,,,,$(( $(mkv "$out" errors) + $(mkv "$out" bad_status) )),$(mkv "$out" streams),,$(mkv "$out" ttfe_p50_us),$(mkv "$out" ttfe_p99_us),$(mkv "$out" gap_p99_us),round=$round max_open=$(mkv "$out" max_open) steady_trip_p50_us=$(mkv "$out" steady_trip_p50_us) steady_trip_p99_us=$(mkv "$out" steady_trip_p99_us) steady_trip_p999_us=$(mkv "$out" steady_trip_p999_us) trip_p99_us=$(mkv "$out" trip_p99_us) ctl_conns=$(mkv "$out" ctl_conns) ctl_steady_trips=$(mkv "$out" ctl_steady_trips) ctl_steady_trip_p50_us=$(mkv "$out" ctl_steady_trip_p50_us) ctl_steady_trip_p99_us=$(mkv "$out" ctl_steady_trip_p99_us) added_p99_us=$(mkv "$out" added_p99_us)"
        done
    done
    for who in direct nginx baton; do
        picked=$(for round in $(seq "$REPEAT"); do
            echo "$(mkv "${MANY_RUNS[$who|$round]}" added_p99_us) $round"
        done | sort -n | awk -v m=$(( (REPEAT + 1) / 2 )) 'NR == m {print $2}')
        printf -v "MANY_${who^^}" '%s' "${MANY_RUNS[$who|$picked]}"
    done
    MANY_BATON_CPU_S=$(awk -v t="$MANY_BATON_TICKS" -v hz="$CLK_TCK" -v r="$REPEAT" 'BEGIN{printf "%.1f", t / hz / r}')
    MANY_BATON_CPU_EV=$(awk -v t="$MANY_BATON_TICKS" -v hz="$CLK_TCK" -v e="$MANY_BATON_EVENTS" 'BEGIN{printf "%.1f", e ? t / hz * 1e6 / e : 0}')
    MANY_PEAK_KB=$(hwm_kb "${MANY_PIDS[@]}")
    MANY_NOTE="baton: $MANY_ORIGINS models, one upstream origin each; nginx: $MANY_LOOPS worker processes"
    [[ $NPROC -gt 1 ]] && MANY_NOTE="$MANY_NOTE; $NPROC baton processes share the port (descriptor limit $NOFILE < 2 x $MANY + 300), RSS summed"
    for p in "${MANY_PIDS[@]}" "$MANY_NGX_PID" "$PACED_PID"; do kill -TERM "$p" 2>/dev/null; done
    for p in "${MANY_PIDS[@]}" "$MANY_NGX_PID" "$PACED_PID"; do wait "$p" 2>/dev/null; done
    row_csv "many,baton,paced,1k5,sse,$MANY,,,,,$MANY_PEAK_KB,,,,,,,peak RSS over all rounds; idle_kb=$MANY_IDLE_KB cpu_us_per_event=$MANY_BATON_CPU_EV"
fi

# ---- micro ----
if want micro; then
    log "bench: micro benchmarks"
    MS=1; [[ $QUICK = 1 ]] && MS=0.3
    MICRO_JSON=$(MICRO_SECS=$MS "$BLD/micro_json" bench/fixtures/chat_1k5.json bench/fixtures/chat_50k.json)
    MICRO_ROUTE=$(MICRO_SECS=$MS "$BLD/micro_route" 1000; MICRO_SECS=$MS "$BLD/micro_route" 10)
    log "$MICRO_JSON"
    log "$MICRO_ROUTE"
    while read -r line; do
        row_csv "micro,json,,$(sed -n 's/.*file=chat_\([0-9a-z]*\)\.json.*/\1/p' <<<"$line"),,,,,,,,,,,,,,$(cut -d' ' -f2- <<<"$line")"
    done <<<"$MICRO_JSON"
    while read -r line; do row_csv "micro,route,,,,,,,,,,,,,,,,$(cut -d' ' -f2- <<<"$line")"; done <<<"$MICRO_ROUTE"
    # The learned router's decision (docs/routing.md), on a synthetic router file.
    MICRO_ROUTER=$(MICRO_SECS=$MS "$BLD/micro_router")
    log "$MICRO_ROUTER"
    while read -r line; do row_csv "micro,router,,,,,,,,,,,,,,,,$(cut -d' ' -f2- <<<"$line")"; done <<<"$MICRO_ROUTER"
    # Rules (docs/routing.md): reading the prompt of a 1.5 KB request, then the decision.
    MICRO_RULES=$(MICRO_SECS=$MS "$BLD/micro_rules" bench/fixtures/chat_1k5.json)
    log "$MICRO_RULES"
    while read -r line; do row_csv "micro,rules,,,,,,,,,,,,,,,,$(cut -d' ' -f2- <<<"$line")"; done <<<"$MICRO_RULES"
    # The stream relay's per-event check, and the same plus stripping "usage":null
    # (the choice not to strip it is in docs/internals/exec.md).
    MICRO_RELAY=$(MICRO_SECS=$MS "$BLD/micro_relay" bench/fixtures/stream.sse)
    log "$MICRO_RELAY"
    row_csv "micro,relay,,,,,,,,,,,,,,,,$(cut -d' ' -f2- <<<"$MICRO_RELAY")"
    # Tokenizer: bt_tok_count / bt_tok_encode vs npm tiktoken's encode on the same
    # mixed-language file, same repetitions, best repetition in CPU time each.
    TOK_FIXTURE=bench/fixtures/tok_mixed.txt
    TR=50; [[ $QUICK = 1 ]] && TR=10
    MICRO_TOK=$(TOK_REPS=$TR "$BLD/micro_tok" "$TOK_FIXTURE")
    log "$MICRO_TOK"
    while read -r line; do row_csv "micro,tokenizer,,,,,,,,,,,,,,,,$line"; done <<<"$MICRO_TOK"
    TIKTOKEN_NA=""
    if ! command -v node >/dev/null; then TIKTOKEN_NA="n/a (node missing)"
    else
        if [[ ! -f bench/node_modules/tiktoken/package.json ]]; then
            log "bench: installing bench/node_modules (npm ci) for tiktoken"
            (cd bench && npm ci --no-audit --no-fund >"$DIR/npm-tiktoken.log" 2>&1) || true
        fi
        if [[ -f bench/node_modules/tiktoken/package.json ]]; then
            TIKTOKEN_VERSION=$(node -p 'require("./bench/node_modules/tiktoken/package.json").version')
            MICRO_TIKTOKEN=$(TOK_REPS=$TR node bench/tok_tiktoken.mjs "$TOK_FIXTURE") || TIKTOKEN_NA="n/a (bench/tok_tiktoken.mjs failed)"
        else TIKTOKEN_NA="n/a (npm install of tiktoken failed)"; fi
    fi
    if [[ -z $TIKTOKEN_NA ]]; then
        log "$MICRO_TIKTOKEN"
        while read -r line; do row_csv "micro,tokenizer,,,,,,,,,,,,,,,,$line tiktoken=$TIKTOKEN_VERSION"; done <<<"$MICRO_TIKTOKEN"
    else
        row_csv "micro,tokenizer,,,,,,,,,,,,,,,,tok_tiktoken $TIKTOKEN_NA"
    fi
fi

# ---- report ----
report() {
    local fmtn='%-16s %-5s %-4s %-4s %5s %9s %9s %9s %10s %8s %6s %7s  %s\n'
    num() { [[ -n ${R[$1]:-} ]] && echo "${R[$1]}" || echo "-"; }
    ms() { [[ -n ${R[$1]:-} ]] && awk -v v="${R[$1]}" 'BEGIN{printf "%.2f", v / 1000}' || echo "-"; }
    mb() { [[ -n ${R[$1]:-} ]] && awk -v v="${R[$1]}" 'BEGIN{printf "%.1f", v / 1024}' || echo "-"; }
    ratio() { # a b -> a/b
        [[ -n ${R[$1]:-} && -n ${R[$2]:-} ]] && awk -v a="${R[$1]}" -v b="${R[$2]}" 'BEGIN{if (b > 0) printf "%.2fx", a / b; else print "-"}' || echo "-"
    }
    echo "baton benchmark $(date -u '+%Y-%m-%d %H:%M UTC'), $(git rev-parse --short HEAD 2>/dev/null)$(git diff --quiet 2>/dev/null || echo '+dirty')"
    echo "machine: $(nproc) cores, $(awk -F': ' '/model name/{print $2; exit}' /proc/cpuinfo), $(awk '/MemTotal/{printf "%.0f GB", $2/1048576}' /proc/meminfo), $(uname -sr)"
    echo "baton: $("$BATON" version 2>&1 | head -1), built $(date -u -r "$BATON" '+%Y-%m-%d %H:%M UTC')"
    echo "tools: $(nginx -v 2>&1 | sed 's/.*: //'), wrk $(wrk -v 2>&1 | awk 'NR==1{print $2}'), node $(node --version 2>/dev/null || echo '-'), @portkey-ai/gateway $PORTKEY_VERSION"
    echo "setup: baton and nginx proxy $WORKERS worker(s); upstream nginx $UP_WORKERS workers; ${DUR}s per row after ${WARM}s warm-up; wrk -t2; loopback"
    echo
    for sec in load tls; do
        want "$sec" || continue
        if [[ $sec = load ]]; then echo "== Load: wrk POST /v1/chat/completions, upstream over plain HTTP"
        else echo "== Load over a TLS upstream (nginx with a test CA; 1.5 KB requests)"; fi
        echo "   cpu = user+system time of the contender's processes per request; up% = upstream nginx CPU (100 = one core)"
        if [[ $sec = load ]]; then
            echo "   baton-full: two-deployment group, virtual key with limits and budget, team budget, ledger (SQLite); baton-full-rp: the same on PostgreSQL + Redis, whose CPU is given apart"
            echo "   (the full path's cpu is read once the ledger holds every record of the row: 'ledger written N s after' the load); baton-anthropic: POST /v1/messages translated to the OpenAI provider and back"
        fi
        [[ $REPEAT -gt 1 ]] && echo "   rows of direct, nginx, baton and the full path at $(awk '{print $1}' <<<"$CONCS") connections: median of $REPEAT runs taken in turn (every run is in the CSV)"
        # shellcheck disable=SC2059
        printf "$fmtn" contender up body mode conns rps p50_ms p99_ms cpu_us/req rss_MB errors up% "vs nginx: cpu p50 p99"
        local bs="1k5 50k" up=plain cs=$CONCS
        [[ $sec = tls ]] && { bs="1k5"; up=tls; cs=$TLS_CONCS; }
        for b in $bs; do for m in json sse; do for n in $cs; do
            for c in direct nginx baton baton-b portkey baton-full baton-full-rp baton-anthropic; do
                local k="$sec|$c|$up|$b|$m|$n"
                [[ -z ${R[$k|rps]:-} && -z ${R[$k|note]:-} ]] && continue
                [[ $c = baton-b && -z $BATON_B ]] && continue
                local vs=""
                if [[ $c != direct && $c != nginx ]] && [[ -n ${R[$k|rps]:-} ]]; then
                    local nk="$sec|nginx|$up|$b|$m|$n"
                    vs="$(ratio "$k|cpu" "$nk|cpu") $(ratio "$k|p50" "$nk|p50") $(ratio "$k|p99" "$nk|p99")"
                    [[ -n ${R[$k|rcpu]:-} ]] && vs="$vs; +redis ${R[$k|rcpu]} +postgres ${R[$k|gcpu]} us/req"
                    [[ -n ${R[$k|settle]:-} ]] && vs="$vs; ledger written ${R[$k|settle]} s after"
                fi
                if [[ -n ${R[$k|note]:-} ]]; then
                    # shellcheck disable=SC2059
                    printf "$fmtn" "$c" "$up" "$b" "$m" "$n" - - - - - - - "${R[$k|note]}"
                else
                    # shellcheck disable=SC2059
                    printf "$fmtn" "$c" "$up" "$b" "$m" "$n" "$(num "$k|rps")" "$(ms "$k|p50")" "$(ms "$k|p99")" \
                        "$(num "$k|cpu")" "$(mb "$k|rss")" "$(num "$k|err")" "$(num "$k|upct")" "$vs"
                fi
            done
        done; done; done
        echo
    done
    if [[ -n $BATON_B ]] && want load; then
        echo "== A/B: baton ($(git rev-parse --short HEAD 2>/dev/null)) against baton-b ($BATON_B), the same rows in turn"
        echo "   baton / baton-b: cpu per request, p50, p99 (1.00x = the same; medians where the rows were repeated)"
        for b in 1k5 50k; do for m in json sse; do for n in $CONCS; do
            local k="load|baton|plain|$b|$m|$n" bk="load|baton-b|plain|$b|$m|$n"
            [[ -n ${R[$k|rps]:-} && -n ${R[$bk|rps]:-} ]] || continue
            printf '   %-4s %-4s c=%-4s cpu %s (%s vs %s us)  p50 %s  p99 %s\n' "$b" "$m" "$n" \
                "$(ratio "$k|cpu" "$bk|cpu")" "${R[$k|cpu]}" "${R[$bk|cpu]}" "$(ratio "$k|p50" "$bk|p50")" "$(ratio "$k|p99" "$bk|p99")"
        done; done; done
        echo
    fi
    if want stream; then
        echo "== Streaming: loadgen, 1.5 KB request, 200-event SSE reply, back-to-back streams per connection"
        echo "   ttfe = request sent -> first complete event; gap = between two events of one stream; added = minus direct"
        local fs='%-10s %5s %9s %11s %11s %10s %12s %12s %11s %6s\n'
        # shellcheck disable=SC2059
        printf "$fs" contender conns streams/s ttfe_p50_us ttfe_p99_us gap_p99_us added_ttfe50 added_gap99 cpu_us/str errors
        for n in $CONCS; do for c in $CONTENDERS; do
            local k="stream|$c|plain|1k5|sse|$n" d="stream|direct|plain|1k5|sse|$n"
            if [[ -n ${R[$k|note]:-} ]]; then
                # shellcheck disable=SC2059
                printf "$fs" "$c" "$n" - - - - - - - "${R[$k|note]}"
                continue
            fi
            [[ -z ${R[$k|rps]:-} ]] && continue
            local a1 a2
            a1=$(awk -v a="${R[$k|ttfe50]}" -v b="${R[$d|ttfe50]:-0}" 'BEGIN{printf "%+d", a - b}')
            a2=$(awk -v a="${R[$k|gap99]}" -v b="${R[$d|gap99]:-0}" 'BEGIN{printf "%+d", a - b}')
            [[ $c = direct ]] && { a1=-; a2=-; }
            # shellcheck disable=SC2059
            printf "$fs" "$c" "$n" "${R[$k|rps]}" "${R[$k|ttfe50]}" "${R[$k|ttfe99]}" "${R[$k|gap99]}" "$a1" "$a2" "${R[$k|cpu]}" "${R[$k|err]}"
        done; done
        echo
    fi
    if want many; then
        echo "== $MANY concurrent streams: loadgen -> (direct | nginx | baton) -> paced_sse, $MANY_EVENTS events ${MANY_INTERVAL} ms apart, ramp $MANY_RAMP connections/s, median of $REPEAT rounds"
        [[ -n $MANY_NOTE ]] && echo "   note: $MANY_NOTE"
        echo "   trip: the upstream's write of an event -> its arrival at the client (stamped events); steady: while all $MANY streams (and the $MANY_CTL control streams) are open"
        echo "   added: steady trip p99 less that of the $MANY_CTL control streams sent straight to the upstream in the same round (for direct: the method's own error)"
        for who in direct nginx baton; do
            local v=MANY_${who^^}
            local o=${!v}
            printf '   %-7s streams_ok=%s errors=%s max_open=%s ttfe_p50=%sus ttfe_p99=%sus whole run: trip_p50=%sus trip_p99=%sus gap_p99=%sus\n' \
                "$who" "$(mkv "$o" streams)" "$(( $(mkv "$o" errors) + $(mkv "$o" bad_status) ))" "$(mkv "$o" max_open)" \
                "$(mkv "$o" ttfe_p50_us)" "$(mkv "$o" ttfe_p99_us)" "$(mkv "$o" trip_p50_us)" "$(mkv "$o" trip_p99_us)" "$(mkv "$o" gap_p99_us)"
            printf '   %-7s steady: %s events, trip p50=%sus p99=%sus p999=%sus; gap p99=%sus\n' "" "$(mkv "$o" steady_trips)" \
                "$(mkv "$o" steady_trip_p50_us)" "$(mkv "$o" steady_trip_p99_us)" "$(mkv "$o" steady_trip_p999_us)" "$(mkv "$o" steady_gap_p99_us)"
            printf '   %-7s control: %s events, trip p50=%sus p99=%sus; added p99=%sus\n' "" "$(mkv "$o" ctl_steady_trips)" \
                "$(mkv "$o" ctl_steady_trip_p50_us)" "$(mkv "$o" ctl_steady_trip_p99_us)" "$(mkv "$o" added_p99_us)"
        done
        printf '   added p99 per round (us):'
        for who in direct nginx baton; do
            printf ' %s' "$who"
            for round in $(seq "$REPEAT"); do printf ' %s' "$(mkv "${MANY_RUNS[$who|$round]}" added_p99_us)"; done
            [[ $who != baton ]] && printf ';'
        done
        echo
        echo "   baton CPU per round ${MANY_BATON_CPU_S} s = ${MANY_BATON_CPU_EV} us per event forwarded"
        echo "   baton RSS: idle $(awk -v v="$MANY_IDLE_KB" 'BEGIN{printf "%.1f", v/1024}') MB, peak with $MANY streams $(awk -v v="$MANY_PEAK_KB" 'BEGIN{printf "%.1f", v/1024}') MB"
        echo
    fi
    if want micro; then
        echo "== Micro"
        sed 's/^/   /' <<<"$MICRO_JSON"
        sed 's/^/   /' <<<"$MICRO_ROUTE"
        sed 's/^/   /' <<<"$MICRO_TOK"
        if [[ -z $TIKTOKEN_NA ]]; then
            sed 's/^/   /' <<<"$MICRO_TIKTOKEN"
            for e in cl100k_base o200k_base; do
                echo "   tokenizer $e: baton count $(tokv "$MICRO_TOK" "$e" count_mb_s) MB/s, encode $(tokv "$MICRO_TOK" "$e" encode_mb_s) MB/s; npm tiktoken $TIKTOKEN_VERSION encode $(tokv "$MICRO_TIKTOKEN" "$e" encode_mb_s) MB/s"
            done
        else
            echo "   tokenizer vs npm tiktoken: $TIKTOKEN_NA"
        fi
        echo
    fi
    targets
}

# ---- targets from issue 12, measured as ratios in this run ----
tokv() { # lines encoding key -> value of key=... on the line with enc=encoding
    awk -v e="enc=$2" -v k="$3=" '{ if (index($0, e " ")) for (i = 1; i <= NF; i++) if (index($i, k) == 1) print substr($i, length(k) + 1) }' <<<"$1" | head -1
}
mark() { # condition-result(0/1) text
    if [[ $1 = na ]]; then printf '  [ n/a ] %s\n' "$2"
    elif [[ $1 = 1 ]]; then printf '  [ PASS] %s\n' "$2"
    else printf '  [ FAIL] %s\n' "$2"; fi
}
ratio_of() { awk -v a="$1" -v b="$2" 'BEGIN{printf "%.2f", (b > 0 ? a / b : 99)}'; } # a b -> a/b
cmp_le() { # a b -> 1 when a <= b, 0 otherwise or when a value is missing
    [[ -n $1 && -n $2 ]] || { echo 0; return; }
    awk -v a="$1" -v b="$2" 'BEGIN{print ((a + 0 <= b + 0) ? 1 : 0)}'
}
targets() {
    echo "== Targets (issue 12; ratios from this run, 16 connections unless said)"
    local n16 k nk b m r
    n16=$(awk '{print $1}' <<<"$CONCS")
    if want load; then
        for b in 1k5 50k; do for m in json sse; do
            k="load|baton|plain|$b|$m|$n16"; nk="load|nginx|plain|$b|$m|$n16"
            [[ -z ${R[$k|rps]:-} || -z ${R[$nk|rps]:-} ]] && continue
            r=$(awk -v a="${R[$k|cpu]}" -v b="${R[$nk|cpu]}" 'BEGIN{printf "%.2f", (b > 0 ? a / b : 99)}')
            mark "$(cmp_le "$r" 1.5)" "baton CPU/request <= 1.5x nginx ($b $m, c=$n16): ${r}x (${R[$k|cpu]} vs ${R[$nk|cpu]} us; goal <= 1.0x)"
            r=$(awk -v a="${R[$k|p50]}" -v b="${R[$nk|p50]}" 'BEGIN{printf "%.2f", (b > 0 ? a / b : 99)}')
            mark "$(cmp_le "$r" 1.5)" "baton p50 <= 1.5x nginx ($b $m, c=$n16): ${r}x"
            r=$(awk -v a="${R[$k|p99]}" -v b="${R[$nk|p99]}" 'BEGIN{printf "%.2f", (b > 0 ? a / b : 99)}')
            mark "$(cmp_le "$r" 2)" "baton p99 <= 2x nginx ($b $m, c=$n16): ${r}x"
        done; done
        local errs=0 any=0
        for key in "${!R[@]}"; do
            [[ $key == load\|baton\|*\|err || $key == tls\|baton\|*\|err ]] || continue
            any=1; errs=$((errs + ${R[$key]}))
        done
        [[ $any = 1 ]] && mark "$([[ $errs = 0 ]] && echo 1 || echo 0)" "baton zero errors over all load rows: $errs"
        if [[ -z $PORTKEY_NA ]]; then
            for b in 1k5 50k; do for m in json sse; do for n in $CONCS; do
                k="load|baton|plain|$b|$m|$n"; nk="load|portkey|plain|$b|$m|$n"
                [[ -z ${R[$k|rps]:-} || -z ${R[$nk|rps]:-} ]] && continue
                r=$(awk -v a="${R[$k|rps]}" -v b="${R[$nk|rps]}" 'BEGIN{printf "%.1f", (b > 0 ? a / b : 999)}')
                local ok=0
                [[ $(cmp_le 10 "$r") = 1 && ${R[$k|p99]} -lt ${R[$nk|p99]} ]] && ok=1
                mark "$ok" "baton >= 10x Portkey throughput with lower p99 ($b $m, c=$n): ${r}x, p99 $(awk -v v="${R[$k|p99]}" 'BEGIN{printf "%.2f", v/1000}') vs $(awk -v v="${R[$nk|p99]}" 'BEGIN{printf "%.2f", v/1000}') ms"
            done; done; done
        else
            mark na "baton >= 10x Portkey throughput: Portkey $PORTKEY_NA"
        fi
        k="load|direct|plain|1k5|json|$n16"
        if [[ -n ${R[$k|rps]:-} && -n ${R["load|baton|plain|1k5|json|$n16|rps"]:-} ]]; then
            echo "  [ info] upstream headroom: direct ${R[$k|rps]} rps vs baton ${R["load|baton|plain|1k5|json|$n16|rps"]} rps (1k5 json, c=$n16); upstream CPU during the baton row ${R["load|baton|plain|1k5|json|$n16|upct"]}% of one core of $UP_WORKERS"
        fi
    fi
    if want load; then
        # The full path: a two-deployment group, a virtual key with rpm, tpm,
        # concurrency and a budget, its team's budget, the cost and the ledger.
        # The target reads baton's own processes; with PostgreSQL + Redis the
        # stores' CPU is given beside it, and a ratio that counts it.
        local c what fk tot
        for c in baton-full baton-full-rp; do
            what="SQLite"; [[ $c = baton-full-rp ]] && what="PostgreSQL + Redis"
            for m in json sse; do
                k="load|$c|plain|1k5|$m|$n16"; nk="load|nginx|plain|1k5|$m|$n16"; fk="load|baton|plain|1k5|$m|$n16"
                if [[ -z ${R[$k|rps]:-} ]]; then
                    [[ -n ${R[$k|note]:-} ]] && mark na "full path on $what: CPU/request <= 2.5x nginx (1k5 $m, c=$n16): ${R[$k|note]}"
                    continue
                fi
                [[ -z ${R[$nk|rps]:-} ]] && continue
                r=$(ratio_of "${R[$k|cpu]}" "${R[$nk|cpu]}")
                mark "$(cmp_le "$r" 2.5)" "full path on $what ($c): CPU/request <= 2.5x nginx (1k5 $m, c=$n16): ${r}x (${R[$k|cpu]} vs ${R[$nk|cpu]} us)"
                if [[ -n ${R[$k|rcpu]:-} ]]; then
                    tot=$(awk -v a="${R[$k|cpu]}" -v b="${R[$k|rcpu]}" -v c="${R[$k|gcpu]}" 'BEGIN{printf "%.1f", a + b + c}')
                    echo "  [ info] the same with the stores' CPU (1k5 $m): $(ratio_of "$tot" "${R[$nk|cpu]}")x nginx (baton ${R[$k|cpu]} + redis ${R[$k|rcpu]} + postgres ${R[$k|gcpu]} = $tot us)"
                fi
                [[ -n ${R[$fk|rps]:-} ]] && echo "  [ info] $c against the fast path (1k5 $m): $(ratio_of "${R[$k|cpu]}" "${R[$fk|cpu]}")x (${R[$k|cpu]} vs ${R[$fk|cpu]} us; goal within 1.5x); p50 $(ratio_of "${R[$k|p50]}" "${R[$fk|p50]}")x, p99 $(ratio_of "${R[$k|p99]}" "${R[$fk|p99]}")x"
            done
        done
        errs=0 any=0
        for key in "${!R[@]}"; do
            [[ $key == load\|baton-full\|*\|err || $key == load\|baton-full-rp\|*\|err || $key == load\|baton-anthropic\|*\|err ]] || continue
            any=1; errs=$((errs + ${R[$key]}))
        done
        [[ $any = 1 ]] && mark "$([[ $errs = 0 ]] && echo 1 || echo 0)" "full path and Anthropic translation: zero errors (no 429, no refusal): $errs"
        [[ -n $FULL_LEDGER$FULL_RP_LEDGER ]] && echo "  [ info] usage ledger after the load, records of the key's team: SQLite ${FULL_LEDGER:--}, PostgreSQL ${FULL_RP_LEDGER:--} (warm-ups and checks included)"
        for b in 1k5 50k; do for m in json sse; do
            k="load|baton-anthropic|plain|$b|$m|$n16"; nk="load|nginx|plain|$b|$m|$n16"; fk="load|baton|plain|$b|$m|$n16"
            [[ -z ${R[$k|rps]:-} || -z ${R[$nk|rps]:-} || -z ${R[$fk|rps]:-} ]] && continue
            echo "  [ info] Anthropic front end translated to the OpenAI provider ($b $m, c=$n16): CPU/request $(ratio_of "${R[$k|cpu]}" "${R[$nk|cpu]}")x nginx, $(ratio_of "${R[$k|cpu]}" "${R[$fk|cpu]}")x the fast path (${R[$k|cpu]} vs ${R[$nk|cpu]} and ${R[$fk|cpu]} us)"
        done; done
    fi
    mark "$(cmp_le "$BATON_IDLE_KB" 20480)" "baton idle RSS < 20 MB: $(awk -v v="$BATON_IDLE_KB" 'BEGIN{printf "%.1f", v/1024}') MB"
    if want many; then
        local ok_n
        ok_n=$(mkv "$MANY_BATON" streams)
        local all_open=0
        local ctl_ok
        ctl_ok=$(mkv "$MANY_BATON" ctl_streams)
        [[ $(mkv "$MANY_BATON" max_open) = "$((MANY + MANY_CTL))" && $ok_n = "$MANY" && ${ctl_ok:-0} = "$MANY_CTL" ]] && all_open=1
        [[ $all_open = 1 ]] || echo "  (not every stream was open at once and completed: the two checks below fail)"
        mark "$([[ $all_open = 1 ]] && cmp_le "$MANY_PEAK_KB" 204800 || echo 0)" "RSS < 200 MB with $MANY open streams: $(awk -v v="$MANY_PEAK_KB" 'BEGIN{printf "%.1f", v/1024}') MB (max open at once $(mkv "$MANY_BATON" max_open) with the $MANY_CTL control streams, completed $ok_n)"
        # "At that load": events that arrived while all the streams were open,
        # timed from the upstream's write (the stamp) to the client's read; the
        # delay added is baton's p99 less the control streams' of the same round.
        # nginx's is shown beside it, and the comparison with the separate
        # direct round too.
        local added added_ngx added_seq added_all
        added=$(mkv "$MANY_BATON" added_p99_us)
        added_ngx=$(mkv "$MANY_NGINX" added_p99_us)
        added_seq=$(us_diff "$(mkv "$MANY_BATON" steady_trip_p99_us)" "$(mkv "$MANY_DIRECT" steady_trip_p99_us)")
        added_all=$(us_diff "$(mkv "$MANY_BATON" trip_p99_us)" "$(mkv "$MANY_DIRECT" trip_p99_us)")
        mark "$([[ $all_open = 1 && $(mkv "$MANY_BATON" steady_trips) -gt 0 && $(mkv "$MANY_BATON" ctl_steady_trips) -gt 0 ]] && cmp_le "$added" 1000 || echo 0)" "added delay per event p99 < 1 ms with $MANY streams open: ${added} us (steady trip p99 $(mkv "$MANY_BATON" steady_trip_p99_us) via baton vs $(mkv "$MANY_BATON" ctl_steady_trip_p99_us) for the control streams beside it; nginx adds ${added_ngx} us; the method's own error (direct vs control) $(mkv "$MANY_DIRECT" added_p99_us) us; against the separate direct round baton adds ${added_seq} us, and over the whole run, opening included, ${added_all} us)"
    fi
    if want micro; then
        local worst
        worst=$(awk '{for(i=1;i<=NF;i++) if ($i ~ /^ns=/) {split($i,a,"="); if (a[2] > m) m = a[2]}} END{printf "%.0f", m}' <<<"$MICRO_ROUTE")
        mark "$(cmp_le "$worst" 100000)" "router decision < 100 us: worst case ${worst} ns"
        if [[ -n $TIKTOKEN_NA ]]; then
            mark na "tokenizer >= 5x npm tiktoken: $TIKTOKEN_NA"
        else
            for e in cl100k_base o200k_base; do
                r=$(awk -v a="$(tokv "$MICRO_TOK" "$e" count_mb_s)" -v b="$(tokv "$MICRO_TIKTOKEN" "$e" encode_mb_s)" 'BEGIN{if (b > 0) printf "%.1f", a / b}')
                mark "$([[ -n $r ]] && awk -v r="$r" 'BEGIN{print (r >= 5) ? 1 : 0}' || echo 0)" "tokenizer >= 5x npm tiktoken ($e, bt_tok_count vs encode, MB/s): ${r:-?}x ($(tokv "$MICRO_TOK" "$e" count_mb_s) vs $(tokv "$MICRO_TIKTOKEN" "$e" encode_mb_s))"
            done
        fi
    fi
}

report | tee "$TXT"
echo "results: $CSV" >&2
