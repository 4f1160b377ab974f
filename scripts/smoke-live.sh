#!/usr/bin/env bash
# Live check against real providers, with your own keys: for each provider whose
# API key is in the environment, writes a temporary config, starts baton on a
# free loopback port, sends a one-line chat and a short stream through it with
# curl, and prints a table of what worked. Proxies from the environment
# (HTTPS_PROXY, NO_PROXY) apply as they would in production.
#
#   OPENAI_API_KEY=sk-... GROQ_API_KEY=gsk_... scripts/smoke-live.sh
#
# Models and base URLs can be overridden per provider: SMOKE_MODEL_OPENAI=gpt-4.1-mini,
# SMOKE_URL_OPENAI=https://my-gateway.example/v1, ...
# Not part of CI: with no key set it says so and exits 0. Exits 1 when a
# provider that was tried failed. Needs curl and a built ./baton (or BATON_BIN).
set -u
cd "$(dirname "$0")/.."
BATON=${BATON_BIN:-./baton}

# name | key variable | OpenAI-compatible base URL (from each provider's docs) | default model
PROVIDERS=(
    "openai|OPENAI_API_KEY|https://api.openai.com/v1|gpt-4o-mini"
    "deepseek|DEEPSEEK_API_KEY|https://api.deepseek.com/v1|deepseek-v4-flash"
    "upstage|UPSTAGE_API_KEY|https://api.upstage.ai/v1|solar-mini"
    "groq|GROQ_API_KEY|https://api.groq.com/openai/v1|llama-3.1-8b-instant"
    "together|TOGETHER_API_KEY|https://api.together.ai/v1|meta-llama/Llama-3.3-70B-Instruct-Turbo"
)
# Keys we know of but cannot use yet: baton speaks only the OpenAI wire format
# to providers so far.
UNSUPPORTED=(
    "anthropic|ANTHROPIC_API_KEY|no Anthropic adapter yet"
    "gemini|GEMINI_API_KEY|no Gemini adapter yet"
)

rows=()
tried=()
for p in "${PROVIDERS[@]}"; do
    IFS='|' read -r name var _ _ <<<"$p"
    if [[ -n ${!var:-} ]]; then tried+=("$p"); else rows+=("$name|skipped|skipped|$var not set"); fi
done
for p in "${UNSUPPORTED[@]}"; do
    IFS='|' read -r name var why <<<"$p"
    if [[ -n ${!var:-} ]]; then rows+=("$name|skipped|skipped|$var is set, but $why")
    else rows+=("$name|skipped|skipped|$var not set ($why)"); fi
done

print_table() {
    printf '%-10s %-8s %-8s %s\n' PROVIDER CHAT STREAM NOTE
    for r in "$@"; do
        IFS='|' read -r a b c d <<<"$r"
        printf '%-10s %-8s %-8s %s\n' "$a" "$b" "$c" "$d"
    done
}

if [[ ${#tried[@]} -eq 0 ]]; then
    echo "smoke-live: no provider API key is set; skipped everything."
    print_table "${rows[@]}"
    exit 0
fi
command -v curl >/dev/null || { echo "smoke-live: curl is required"; exit 2; }
[[ -x $BATON ]] || { echo "smoke-live: $BATON not found; run make first (or set BATON_BIN)"; exit 2; }

DIR=$(mktemp -d /tmp/baton-smoke.XXXXXX)
BATON_PID=
cleanup() {
    if [[ -n $BATON_PID ]]; then kill "$BATON_PID" 2>/dev/null; wait "$BATON_PID" 2>/dev/null; fi
    rm -rf "$DIR"
}
trap cleanup EXIT

port=0
for _ in $(seq 50); do
    p=$((20000 + RANDOM % 10000))
    if ! ss -ltnH "sport = :$p" 2>/dev/null | grep -q .; then port=$p; break; fi
done
[[ $port != 0 ]] || { echo "smoke-live: no free port in 20000-29999"; exit 2; }

# The keys stay in the environment: the config refers to them by name.
{
    echo "server: {listen: \"127.0.0.1:$port\"}"
    echo "providers:"
    for p in "${tried[@]}"; do
        IFS='|' read -r name var url _ <<<"$p"
        ou="SMOKE_URL_${name^^}"
        url=${!ou:-$url}
        echo "  $name: {type: openai, base_url: \"$url\", api_key: \"\${$var}\", timeouts: {connect: 10s, first_byte: 60s, total: 2m}}"
    done
    echo "models:"
    for p in "${tried[@]}"; do
        IFS='|' read -r name _ _ model <<<"$p"
        ov="SMOKE_MODEL_${name^^}"
        echo "  live-$name: {provider: $name, model: \"${!ov:-$model}\"}"
    done
} >"$DIR/baton.yaml"

"$BATON" serve -c "$DIR/baton.yaml" 2>"$DIR/baton.log" &
BATON_PID=$!
for _ in $(seq 100); do
    curl -s -o /dev/null "http://127.0.0.1:$port/health/ready" && break
    kill -0 "$BATON_PID" 2>/dev/null || break
    sleep 0.1
done
if ! curl -s -o /dev/null "http://127.0.0.1:$port/health/ready"; then
    echo "smoke-live: baton did not start:"; tail -20 "$DIR/baton.log"; exit 2
fi

# The "message" of an OpenAI error object, or the start of the body.
why() { local m; m=$(grep -o '"message": *"[^"]*"' <<<"$1" | head -1 | sed 's/^"message": *//');
        if [[ -n $m ]]; then echo "$m"; else echo "${1:0:120}"; fi; }

failed=0
done_rows=()
for p in "${tried[@]}"; do
    IFS='|' read -r name _ _ _ <<<"$p"
    model="live-$name"
    chat=FAIL stream=FAIL note=
    t0=$(date +%s%N)
    body=$(curl -s -m 90 -w '\n%{http_code}' "http://127.0.0.1:$port/v1/chat/completions" \
        -H 'content-type: application/json' \
        -d "{\"model\":\"$model\",\"messages\":[{\"role\":\"user\",\"content\":\"Reply with the single word: pong\"}],\"max_tokens\":16}")
    code=${body##*$'\n'}; body=${body%$'\n'*}
    ms=$(( ($(date +%s%N) - t0) / 1000000 ))
    if [[ $code == 200 ]] && grep -q '"choices"' <<<"$body"; then
        chat=ok
        note="chat ${ms}ms: $(grep -o '"content": *"[^"]*"' <<<"$body" | head -1 | cut -c1-40)"
    else
        note="chat HTTP $code: $(why "$body")"
    fi
    t0=$(date +%s%N)
    sbody=$(curl -sN -m 90 "http://127.0.0.1:$port/v1/chat/completions" -H 'content-type: application/json' \
        -d "{\"model\":\"$model\",\"stream\":true,\"messages\":[{\"role\":\"user\",\"content\":\"Count from 1 to 5.\"}],\"max_tokens\":32}")
    ms=$(( ($(date +%s%N) - t0) / 1000000 ))
    nchunks=$(grep -c '^data: {' <<<"$sbody")
    if grep -q '^data: \[DONE\]' <<<"$sbody" && ! grep -q '"error"' <<<"$sbody" && [[ $nchunks -gt 0 ]]; then
        stream=ok; note="$note; stream ${nchunks} chunks ${ms}ms"
    else
        note="$note; stream: $(why "$sbody")"
    fi
    [[ $chat == ok && $stream == ok ]] || failed=1
    done_rows+=("$name|$chat|$stream|$note")
done

print_table "${done_rows[@]}" "${rows[@]}"
if [[ $failed = 1 ]]; then
    echo "smoke-live: some providers failed; the end of baton's log:"
    tail -5 "$DIR/baton.log"
    exit 1
fi
exit 0
