/* libFuzzer target for the gateway's whole answering path: each input becomes
 * one or two HTTP requests sent over real loopback TCP to a bt_http_server whose
 * handler is bt_api_handle, on a struct bt_worker set up as `baton serve` sets
 * up a worker (config snapshot, upstream pools, metrics shard). So a request
 * runs HTTP parsing -> bt_api_handle -> decode -> route -> exec -> the in-process
 * simulated provider (and the upstream client, for one provider nothing listens
 * on) -> the response or stream back to the client, all on this thread's loop.
 *
 * Input layout: 7 control bytes, then the body material.
 *   b0  bits 0-3 path (table `paths`), bits 4-5 method (default/GET/POST/HEAD),
 *       bit 6 HTTP/1.0, bit 7 `Connection: close`
 *   b1  bits 0-1 body mode: 0 raw (the rest is the body), 1 `{"model":M,` +
 *       stream flag + the rest, 2 a whole chat request with the rest as the user
 *       message, 3 a whole embeddings request with the rest as the input;
 *       bit 2 stream, bit 3 tools (mode 2) / base64 (mode 3), bit 4
 *       include_usage, bit 5 no `stream` key (mode 1)
 *   b2  bits 0-4 the model M for modes 1-3 and /v1/models/M (table `models`),
 *       bits 5-7 the worker's round-robin counter (which deployment of a group
 *       goes first), so an input replays alike whatever ran before it
 *   b3  bits 0-3 `x-sim-fault` header (the sim's fault names, then a bogus one,
 *       then none), bits 4-6 `x-baton-timeout`, bit 7 the worker is draining
 *   b4  bits 0-2 how the request bytes are cut into writes, bits 3-4 auth
 *       (Bearer / x-api-key / none / wrong), bit 5 chunked body, bit 6
 *       `x-request-id`, bit 7 close with RST instead of FIN
 *   b5  bits 0-2 when the client closes (0-3 after the whole answer, 4 halfway
 *       through sending, 5 right after sending, 6-7 after b6*8 response bytes),
 *       bit 3 the request is pipelined twice, bit 4 a second connection runs a
 *       request of kind bits 5-6 while the first one is held, bit 7
 *       bt_exec_shutdown_all (a forced stop) while the request runs
 *   b6  the response byte count for close modes 6-7
 *
 * The gateway's in-process sim does not read `x-sim-fault` (only `baton sim
 * --listen` does; provider/openai.c passes fault -1), so faults are chosen by
 * the model: the embedded config has one sim provider per fault, named after
 * it with a fault rate of 1 (`reset_mid/m` addresses one directly), plus groups
 * that fall back from faulty deployments to healthy ones. The header is sent
 * anyway: it is what a client would send. (The `flaky` model's provider draws
 * its faults with a per-thread counter in sim.c, so an input using it may not
 * replay exactly; everything else depends on the input alone.)
 *
 * Invariants checked (a violation prints what was sent and aborts):
 *   - every byte the server sends parses as HTTP/1.1 responses (llhttp), each
 *     with x-request-id (the client's when valid) and, but for /metrics,
 *     x-baton-deployment and x-baton-attempts;
 *   - a JSON body is a JSON object, an error status has OpenAI's error shape; a
 *     200 stream is `data:` events, each a JSON object or the final [DONE], and
 *     ends with [DONE] or with an error event (never a silent clean end);
 *   - every request fully sent is answered (unless an earlier response said
 *     `Connection: close`), within 2 s; a second connection's healthy request
 *     succeeds while the first is held;
 *   - no provider or master key appears in the bytes returned (unless the
 *     request carried that text itself; /metrics is not checked);
 *   - once the client is gone, the server has no connection left and the
 *     worker no request in flight (w->execs is empty) within 2 s.
 * ASan/LSan/UBSan do the rest.
 *
 * Build: see tests/fuzz/run.sh; with -DBT_FUZZ_STANDALONE it replays files given
 * on the command line and tears everything down (the loop must close clean). */
#include <arpa/inet.h>
#include <cjson/cJSON.h>
#include <errno.h>
#include <llhttp.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "api/dispatch.h"
#include "config/config.h"
#include "core/buf.h"
#include "core/log.h"
#include "exec/exec.h"
#include "http/server.h"
#include "obs/metrics.h"
#include "route/health.h"
#include "serve/worker.h"
#include "upstream/upstream.h"

#define MASTER_KEY "fuzz-master-key-0123"
#define PROVIDER_KEY "sk-fuzz-provider-key-4567"
#define ANSWER_MS 2000   /* a request's answer, all attempts included */
#define SETTLE_MS 2000   /* connections and execs gone after the client left */
#define BODY_KEEP (16u << 20)

/* The worker's config. Timeouts are tens of milliseconds so that a stalled or
 * trickling provider costs an input little; `%u` is a port nothing listens on. */
static const char config_fmt[] =
    "server:\n"
    "  max_body_bytes: 1MiB\n"
    "  max_header_bytes: 16KiB\n"
    "  header_timeout: 5s\n"
    "  idle_timeout: 5s\n"
    "  upstream_max_connections: 4\n"
    "  upstream_max_queued: 8\n"
    "auth:\n"
    "  master_key: " MASTER_KEY "\n"
    "log:\n"
    "  level: error\n"
    "providers:\n"
    "  sim: {type: sim, timeouts: &fast {first_byte: 20ms, idle: 20ms, total: 60ms}}\n"
    "  paced: {type: sim, seed: 7, ttft: 1ms, tokens_per_sec: 20000, reply_tokens: 6,\n"
    "          embedding_dims: 4, stream_check: full, timeouts: *fast}\n"
    "  mixed:\n"
    "    type: sim\n"
    "    seed: 3\n"
    "    timeouts: *fast\n"
    "    faults: {429: 0.08, 500: 0.08, 503: 0.08, no_answer: 0.08, reset_before: 0.08,\n"
    "             reset_mid: 0.08, stall_mid: 0.08, slow_bytes: 0.04, invalid_json: 0.08,\n"
    "             error_event: 0.08}\n"
    "  \"429\": {type: sim, retry_after: 2s, faults: {429: 1}, timeouts: *fast}\n"
    "  \"500\": {type: sim, faults: {500: 1}, timeouts: *fast}\n"
    "  \"503\": {type: sim, faults: {503: 1}, timeouts: *fast}\n"
    "  no_answer: {type: sim, faults: {no_answer: 1}, timeouts: *fast}\n"
    "  reset_before: {type: sim, faults: {reset_before: 1}, timeouts: *fast}\n"
    "  reset_mid: {type: sim, faults: {reset_mid: 1}, timeouts: *fast}\n"
    "  stall_mid: {type: sim, faults: {stall_mid: 1}, timeouts: *fast}\n"
    "  slow_bytes: {type: sim, reply_tokens: 2, faults: {slow_bytes: 1}, timeouts: *fast}\n"
    "  invalid_json: {type: sim, faults: {invalid_json: 1}, timeouts: *fast}\n"
    "  error_event: {type: sim, faults: {error_event: 1}, stream_check: full, timeouts: *fast}\n"
    "  refused: {type: openai, base_url: \"http://127.0.0.1:%u/v1\", api_key: " PROVIDER_KEY ",\n"
    "            timeouts: {connect: 50ms, first_byte: 20ms, idle: 20ms, total: 60ms}}\n"
    "  nokey: {type: openai, base_url: \"http://127.0.0.1:%u/v1\",\n"
    "          api_key: \"${BT_FUZZ_PIPELINE_UNSET_KEY}\"}\n"
    "models:\n"
    "  chat: {provider: sim, model: sim-chat}\n"
    "  paced: {provider: paced}\n"
    "  embed: {provider: sim, model: text-embedding-3-small}\n"
    "  flaky: {provider: mixed, retry: {attempts: 3, backoff: 1ms, max_backoff: 2ms}}\n"
    "  keyless: {provider: nokey}\n"
    "  fallback:\n"
    "    deployments:\n"
    "      - {provider: \"500\", model: first}\n"
    "      - {provider: sim, model: second}\n"
    "  spread:\n"
    "    strategy: least_busy\n"
    "    retry: {attempts: 4, backoff: 1ms, max_backoff: 3ms}\n"
    "    deployments:\n"
    "      - {provider: \"503\", model: a, weight: 2}\n"
    "      - {provider: \"429\", model: b}\n"
    "      - {provider: paced, model: c}\n"
    "  resets:\n"
    "    strategy: round_robin\n"
    "    sticky: user\n"
    "    breaker: {failures: 2, cooldown: 50ms}\n"
    "    hedge: {after: 1ms}\n"
    "    deployments:\n"
    "      - {provider: reset_before, model: a}\n"
    "      - {provider: reset_mid, model: b}\n"
    "      - {provider: sim, model: c}\n"
    "  stalls:\n"
    "    strategy: latency\n"
    "    hedge: {after: 5ms}\n"
    "    deployments:\n"
    "      - {provider: no_answer, model: a}\n"
    "      - {provider: stall_mid, model: b}\n"
    "      - {provider: paced, model: c}\n"
    "  broken:\n"
    "    fallback: {models: [chat], on: [server_error, connection, timeout]}\n"
    "    deployments:\n"
    "      - {provider: invalid_json, model: a}\n"
    "      - {provider: error_event, model: b}\n"
    "      - {provider: slow_bytes, model: c}\n"
    "  refused-then-ok:\n"
    "    deployments:\n"
    "      - {provider: refused, model: a}\n"
    "      - {provider: sim, model: b}\n";

/* Models for body modes 1-3 and /v1/models/M: public names, groups, direct
 * `provider/model` addressing (one per sim fault), unknown names. */
static const char *const models[] = {
    "chat",           "paced",         "embed",           "flaky",
    "fallback",       "spread",        "resets",          "stalls",
    "broken",         "refused-then-ok", "keyless",       "sim/gpt-4o-mini",
    "paced/x",        "429/m",         "500/m",           "503/m",
    "no_answer/m",    "reset_before/m", "reset_mid/m",    "stall_mid/m",
    "slow_bytes/m",   "invalid_json/m", "error_event/m",  "refused/m",
    "nope",           "sim/",          "/chat",           "sim/a/b",
    "chat ",          "CHAT",          "",                "sim/\\u00e9\\t",
};
#define NMODELS (sizeof models / sizeof models[0])

static const char *const faults[] = {
    "none",      "429",       "500",       "503",          "no_answer",   "reset_before",
    "reset_mid", "stall_mid", "slow_bytes", "invalid_json", "error_event", "bogus",
};
#define NFAULTS (sizeof faults / sizeof faults[0])

enum { P_CHAT, P_EMBED, P_MODELS, P_MODEL_M, P_MODEL_RAW, P_READY, P_LIVE, P_METRICS, P_RELOAD,
       P_ADMIN, P_QUERY, P_V1, P_OTHER };
static const struct {
    int kind;
    const char *path;
    const char *method; /* default method */
} paths[16] = {
    {P_CHAT, "/v1/chat/completions", "POST"}, {P_CHAT, "/v1/chat/completions", "POST"},
    {P_CHAT, "/v1/chat/completions", "POST"}, {P_CHAT, "/v1/chat/completions", "POST"},
    {P_EMBED, "/v1/embeddings", "POST"},      {P_EMBED, "/v1/embeddings", "POST"},
    {P_MODELS, "/v1/models", "GET"},          {P_MODEL_M, "/v1/models/", "GET"},
    {P_MODEL_RAW, "/v1/models/", "GET"},      {P_READY, "/health/ready", "GET"},
    {P_LIVE, "/health/live", "GET"},          {P_METRICS, "/metrics", "GET"},
    {P_RELOAD, "/admin/reload", "POST"},      {P_ADMIN, "/admin/x", "GET"},
    {P_QUERY, "/v1/chat/completions?a=1&b", "POST"}, {P_V1, "/v1", "GET"},
};

static const char *const timeouts[8] = {NULL, NULL, NULL, NULL, "5ms", "1s", "0", " 30 ms "};
static const size_t cuts[8] = {1, 3, 7, 16, 61, 512, 4096, (size_t)-1};

/* ---- the worker ---- */

static struct bt_worker wk;
static struct bt_worker *w = &wk;
static uv_timer_t guard; /* wakes uv_run(ONCE) at least every ms */
static uint16_t port;
static uint16_t dead_port;

static struct bt_config *load_config(void)
{
    static char yaml[sizeof(config_fmt) + 32];
    int n = snprintf(yaml, sizeof(yaml), config_fmt, (unsigned)dead_port, (unsigned)dead_port);
    struct bt_config *c = NULL;
    struct bt_config_diags d = {0};
    enum bt_err err = bt_config_load_string("fuzz_pipeline.yaml", yaml, (size_t)n, &c, &d);
    if (err) bt_config_diags_print(&d, stderr);
    bt_config_diags_free(&d);
    if (err) abort();
    return c;
}

/* POST /admin/reload: a fresh snapshot of the same file replaces the worker's
 * (serve does the swap on the worker's next wake-up; here it happens at once,
 * which is the same for the worker: requests in flight keep their own ref). */
static int reload(void *ctx, char *msg, size_t cap)
{
    (void)ctx;
    struct bt_config *old = w->cfg;
    w->cfg = load_config();
    bt_health_attach(w->cfg); /* as serve does: the deployments share the live state */
    bt_config_unref(old);
    snprintf(msg, cap, "configuration reloaded (%zu models)", w->cfg->nmodels);
    return 0;
}

static int64_t open_connections(void *ud)
{
    (void)ud;
    return (int64_t)bt_http_server_connections(w->http);
}

static void guard_tick(uv_timer_t *t)
{
    (void)t;
}

static uint16_t find_dead_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof(a);
    if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof(a)) ||
        getsockname(fd, (struct sockaddr *)&a, &len))
        abort();
    close(fd); /* nothing listens there now: connections are refused */
    return ntohs(a.sin_port);
}

/* What serve.c's worker_main does for one worker, minus the thread and the
 * wake-up handle (commands come from the harness instead). */
static void setup(void)
{
    bt_log_set_level(BT_LOG_ERROR);
    signal(SIGPIPE, SIG_IGN); /* as serve does: a write to a client that reset is EPIPE */
    if (bt_log_access_open("/dev/null")) abort(); /* the lines are still formatted */
    unsetenv("BT_FUZZ_PIPELINE_UNSET_KEY");
    dead_port = find_dead_port();
    uv_loop_init(&w->loop);
    w->cfg = load_config();
    bt_health_attach(w->cfg); /* as serve does: the deployments share the live state */
    w->reload = reload;
    struct bt_metrics_opts mo = {.shards = 1};
    if (bt_metrics_create(&mo, &w->metrics)) abort();
    bt_metrics_set_connections_fn(w->metrics, open_connections, NULL);
    w->mshard = bt_metrics_shard(w->metrics, 0);
    if (bt_worker_open(w, NULL) || bt_http_server_listen(w->http, "127.0.0.1", 0, false)) abort();
    port = bt_http_server_port(w->http);
    uv_timer_init(&w->loop, &guard);
    uv_timer_start(&guard, guard_tick, 1, 1);
}

static uint64_t ms_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* ---- failure reports ---- */

static struct bt_buf sent_a; /* what connection A sent, for reports */

static void fail(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void fail(const char *fmt, ...)
{
    fprintf(stderr, "\nfuzz_pipeline: invariant violated: ");
    va_list ap;
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\nrequest (%zu bytes, first 2000 shown, escaped):\n", sent_a.len);
    for (size_t i = 0; i < sent_a.len && i < 2000; i++) {
        unsigned char ch = (unsigned char)sent_a.p[i];
        if (ch == '\n') fputs("\\n\n", stderr);
        else if (ch >= 0x20 && ch < 0x7f && ch != '\\') fputc(ch, stderr);
        else fprintf(stderr, "\\x%02x", ch);
    }
    fputc('\n', stderr);
    abort();
}

/* ---- the client side: a response parser with checks ---- */

struct client {
    const char *name;       /* "A" or "B", for reports */
    int fd;                 /* -1 once closed */
    llhttp_t p;
    int kind;               /* path kind (P_*) of its requests */
    bool head;              /* its requests are HEAD: responses carry no body */
    const char *want_rid;   /* the x-request-id every response must carry, or NULL */
    unsigned sent;          /* requests written in full */
    unsigned answered;      /* complete responses */
    bool said_close;        /* a response ended keep-alive: later requests may go unanswered */
    bool server_closed, we_closed;
    size_t got;             /* response bytes received */
    int last_status;
    struct bt_buf all;      /* everything received (capped), for the secret check */
    /* the response being parsed */
    char hname[64], hval[256];
    size_t hname_len, hval_len;
    char ctype[64];
    bool has_rid, rid_ok, has_depl, has_att;
    struct bt_buf body;
    bool body_trunc;
};

static void cl_header(struct client *c)
{
    struct bt_str n = {c->hname, c->hname_len}, v = {c->hval, c->hval_len};
    if (bt_str_caseeq_c(n, "content-type")) {
        size_t k = v.len < sizeof(c->ctype) - 1 ? v.len : sizeof(c->ctype) - 1;
        memcpy(c->ctype, v.p, k);
        c->ctype[k] = 0;
    } else if (bt_str_caseeq_c(n, "x-request-id")) {
        c->has_rid = true;
        c->rid_ok = !c->want_rid || bt_str_eq_c(v, c->want_rid);
    } else if (bt_str_caseeq_c(n, "x-baton-deployment")) {
        c->has_depl = true;
    } else if (bt_str_caseeq_c(n, "x-baton-attempts")) {
        c->has_att = true;
    }
}

static int cl_begin(llhttp_t *p)
{
    struct client *c = p->data;
    c->hname_len = c->hval_len = 0;
    c->ctype[0] = 0;
    c->has_rid = c->rid_ok = c->has_depl = c->has_att = false;
    bt_buf_reset(&c->body);
    c->body_trunc = false;
    return 0;
}

static int cl_field(llhttp_t *p, const char *at, size_t n)
{
    struct client *c = p->data;
    size_t k = sizeof(c->hname) - c->hname_len;
    if (n < k) k = n;
    memcpy(c->hname + c->hname_len, at, k);
    c->hname_len += k;
    return 0;
}

static int cl_value(llhttp_t *p, const char *at, size_t n)
{
    struct client *c = p->data;
    size_t k = sizeof(c->hval) - c->hval_len;
    if (n < k) k = n;
    memcpy(c->hval + c->hval_len, at, k);
    c->hval_len += k;
    return 0;
}

static int cl_value_done(llhttp_t *p)
{
    struct client *c = p->data;
    cl_header(c);
    c->hname_len = c->hval_len = 0;
    return 0;
}

static int cl_headers_done(llhttp_t *p)
{
    struct client *c = p->data;
    return c->head ? 1 : 0; /* a response to HEAD has no body whatever it announces */
}

static int cl_body(llhttp_t *p, const char *at, size_t n)
{
    struct client *c = p->data;
    if (!c->body_trunc && bt_buf_append(&c->body, at, n)) c->body_trunc = true;
    return 0;
}

static bool starts_with(const char *s, const char *prefix)
{
    return strncmp(s, prefix, strlen(prefix)) == 0;
}

static void check_json(struct client *c, int status, const char *b, size_t n)
{
    cJSON *j = cJSON_ParseWithLength(b, n);
    if (!j || !cJSON_IsObject(j))
        fail("%s: %d response with content-type %s is not a JSON object: %.*s", c->name, status,
             c->ctype, (int)(n > 300 ? 300 : n), b);
    if (status >= 400 && c->kind != P_READY) { /* 503 {"status":"draining"} is not an error */
        cJSON *e = cJSON_GetObjectItemCaseSensitive(j, "error");
        if (!cJSON_IsObject(e) || !cJSON_IsString(cJSON_GetObjectItemCaseSensitive(e, "message")) ||
            !cJSON_IsString(cJSON_GetObjectItemCaseSensitive(e, "type")))
            fail("%s: %d response is not an OpenAI error object: %.*s", c->name, status,
                 (int)(n > 300 ? 300 : n), b);
    }
    cJSON_Delete(j);
}

/* A 200 stream: `data: ` events, each a JSON object, ending with [DONE] or with
 * an error event, nothing after either. */
static void check_sse(struct client *c, const char *b, size_t n)
{
    size_t off = 0;
    bool done = false, err = false;
    while (off < n) {
        const char *e = memmem(b + off, n - off, "\n\n", 2);
        if (!e) fail("%s: the stream ends inside an event: %.*s", c->name, (int)(n - off), b + off);
        const char *ev = b + off;
        size_t len = (size_t)(e - ev);
        if (done || err)
            fail("%s: an event after %s: %.*s", c->name, done ? "[DONE]" : "an error event",
                 (int)len, ev);
        if (len < 6 || memcmp(ev, "data: ", 6) != 0 || memchr(ev, '\n', len))
            fail("%s: not a one-line data event: %.*s", c->name, (int)len, ev);
        if (len == 12 && memcmp(ev + 6, "[DONE]", 6) == 0) {
            done = true;
        } else {
            cJSON *j = cJSON_ParseWithLength(ev + 6, len - 6);
            if (!j || !cJSON_IsObject(j))
                fail("%s: a stream event is not a JSON object: %.*s", c->name,
                     (int)(len > 300 ? 300 : len), ev);
            err = cJSON_GetObjectItemCaseSensitive(j, "error") != NULL;
            cJSON_Delete(j);
        }
        off = (size_t)(e - b) + 2;
    }
    if (!done && !err) fail("%s: the stream ended without [DONE] or an error event", c->name);
}

static int cl_complete(llhttp_t *p)
{
    struct client *c = p->data;
    int status = llhttp_get_status_code(p);
    if (llhttp_get_http_major(p) != 1 || llhttp_get_http_minor(p) != 1)
        fail("%s: response is HTTP/%u.%u", c->name, llhttp_get_http_major(p),
             llhttp_get_http_minor(p));
    if (status < 100 || status > 599) fail("%s: status %d", c->name, status);
    if (!c->has_rid || !c->rid_ok)
        fail("%s: %d response %s", c->name, status,
             c->has_rid ? "has another x-request-id than the client's" : "has no x-request-id");
    if (!(c->kind == P_METRICS && status == 200) && !(c->has_depl && c->has_att))
        fail("%s: %d response lacks x-baton-deployment / x-baton-attempts", c->name, status);
    if (!c->head && !c->body_trunc) {
        if (starts_with(c->ctype, "application/json")) {
            check_json(c, status, c->body.p ? c->body.p : "", c->body.len);
        } else if (starts_with(c->ctype, "text/event-stream")) {
            if (status != 200) fail("%s: a %d stream", c->name, status);
            check_sse(c, c->body.p ? c->body.p : "", c->body.len);
        } else if (!(starts_with(c->ctype, "text/plain") && c->kind == P_METRICS)) {
            fail("%s: %d response with content-type '%s'", c->name, status, c->ctype);
        }
    }
    if (!llhttp_should_keep_alive(p)) c->said_close = true;
    c->answered++;
    c->last_status = status;
    if (c->answered > c->sent) fail("%s: %u responses to %u requests", c->name, c->answered, c->sent);
    return 0;
}

static llhttp_settings_t cl_settings;

static void cl_open(struct client *c, const char *name, int kind, bool head, const char *rid)
{
    memset(c, 0, sizeof(*c));
    c->name = name;
    c->kind = kind;
    c->head = head;
    c->want_rid = rid;
    bt_buf_init(&c->body, BODY_KEEP);
    bt_buf_init(&c->all, BODY_KEEP);
    llhttp_init(&c->p, HTTP_RESPONSE, &cl_settings);
    c->p.data = c;
    c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    if (c->fd < 0) abort();
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(c->fd, (struct sockaddr *)&a, sizeof(a)) && errno != EINPROGRESS) abort();
}

static void cl_close(struct client *c, bool rst)
{
    if (c->fd < 0) return;
    if (rst) {
        struct linger l = {1, 0};
        setsockopt(c->fd, SOL_SOCKET, SO_LINGER, &l, sizeof(l));
    }
    close(c->fd);
    c->fd = -1;
    if (!c->server_closed) c->we_closed = true;
}

static void cl_free(struct client *c)
{
    cl_close(c, false);
    bt_buf_free(&c->body);
    bt_buf_free(&c->all);
}

/* Reads what has arrived and parses it. */
static void cl_read(struct client *c)
{
    char buf[65536];
    while (c->fd >= 0 && !c->server_closed) {
        ssize_t r = recv(c->fd, buf, sizeof(buf), 0);
        if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) return;
        if (r <= 0) { /* EOF, or a reset from the server */
            c->server_closed = true;
            if (r == 0 && llhttp_message_needs_eof(&c->p)) {
                llhttp_errno_t e = llhttp_finish(&c->p);
                if (e != HPE_OK)
                    fail("%s: response cut off by the close: %s", c->name, llhttp_errno_name(e));
            }
            return;
        }
        c->got += (size_t)r;
        if (!c->we_closed) bt_buf_append(&c->all, buf, (size_t)r);
        llhttp_errno_t e = llhttp_execute(&c->p, buf, (size_t)r);
        if (e != HPE_OK)
            fail("%s: the server's bytes are not HTTP/1.1 responses: %s (%s)", c->name,
                 llhttp_errno_name(e), llhttp_get_error_reason(&c->p));
    }
}

static void spin(void)
{
    uv_run(&w->loop, UV_RUN_ONCE);
}

/* Sends `n` bytes in writes of `cut`, running the loop between them; `ends` are
 * the offsets where each request ends (c->sent counts those passed). Stops early
 * when the server closed. Returns the bytes sent. */
static size_t cl_send(struct client *c, const char *p, size_t n, size_t cut, const size_t *ends,
                      size_t nends)
{
    size_t off = 0;
    uint64_t t0 = ms_now();
    while (off < n && c->fd >= 0 && !c->server_closed) {
        size_t k = n - off < cut ? n - off : cut;
        ssize_t r = send(c->fd, p + off, k, MSG_NOSIGNAL);
        /* The server "stopped reading" when it takes nothing for ANSWER_MS: a
         * 45 KB body sent a byte at a time on a loaded machine may take longer
         * than that in all (seen under ASan with the other core busy), and that is
         * not a fault. */
        if (r > 0) {
            off += (size_t)r;
            t0 = ms_now();
        } else if (r < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) break;
        while (c->sent < nends && off >= ends[c->sent]) c->sent++;
        spin();
        cl_read(c);
        if (ms_now() - t0 > ANSWER_MS) fail("%s: the server stopped reading the request", c->name);
    }
    return off;
}

/* Runs until every request sent on `c` is answered, the server closed, or (with
 * limit) `limit` response bytes arrived. */
static void cl_wait(struct client *c, size_t limit)
{
    uint64_t t0 = ms_now();
    while (c->fd >= 0 && !c->server_closed && c->answered < c->sent) {
        if (limit && c->got >= limit) return;
        spin();
        cl_read(c);
        if (ms_now() - t0 > ANSWER_MS) {
            /* Let the server see the client go first: a request left half
             * finished may then trip the sanitizers, which say more. */
            cl_close(c, false);
            for (int i = 0; i < 20; i++) uv_run(&w->loop, UV_RUN_NOWAIT);
            fail("%s: %u of %u requests not answered within %d ms", c->name,
                 c->sent - c->answered, c->sent, ANSWER_MS);
        }
    }
}

/* ---- building requests ---- */

static void json_string(struct bt_buf *b, const uint8_t *p, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    bt_buf_append(b, "\"", 1);
    for (size_t i = 0; i < n; i++) {
        uint8_t ch = p[i];
        if (ch == '"' || ch == '\\') {
            char e[2] = {'\\', (char)ch};
            bt_buf_append(b, e, 2);
        } else if (ch < 0x20) {
            char e[6] = {'\\', 'u', '0', '0', hex[ch >> 4], hex[ch & 15]};
            bt_buf_append(b, e, 6);
        } else {
            bt_buf_append(b, &ch, 1);
        }
    }
    bt_buf_append(b, "\"", 1);
}

/* Bytes as a path segment: printable ASCII kept, the rest %-escaped. */
static void path_segment(struct bt_buf *b, const uint8_t *p, size_t n)
{
    static const char hex[] = "0123456789ABCDEF";
    for (size_t i = 0; i < n; i++) {
        uint8_t ch = p[i];
        if (ch > 0x20 && ch < 0x7f && ch != '?' && ch != '#' && ch != '%') {
            bt_buf_append(b, &ch, 1);
        } else {
            char e[3] = {'%', hex[ch >> 4], hex[ch & 15]};
            bt_buf_append(b, e, 3);
        }
    }
}

static void build_body(struct bt_buf *b, uint8_t mode, const char *model, const uint8_t *rest,
                       size_t n)
{
    int m = mode & 3;
    bool stream = mode & 4, extra = mode & 8, usage = mode & 16, no_stream_key = mode & 32;
    if (m == 0) {
        bt_buf_append(b, rest, n);
        return;
    }
    bt_buf_append_c(b, "{\"model\":\"");
    bt_buf_append_c(b, model);
    bt_buf_append_c(b, "\",");
    if (m == 3) { /* embeddings */
        if (extra) bt_buf_append_c(b, "\"encoding_format\":\"base64\",");
        bt_buf_append_c(b, "\"input\":");
        json_string(b, rest, n);
        bt_buf_append_c(b, "}");
        return;
    }
    if (!(m == 1 && no_stream_key)) bt_buf_append_c(b, stream ? "\"stream\":true," : "\"stream\":false,");
    if (usage) bt_buf_append_c(b, "\"stream_options\":{\"include_usage\":true},");
    if (m == 1) {
        bt_buf_append(b, rest, n);
        return;
    }
    if (extra)
        bt_buf_append_c(b, "\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"lookup\","
                           "\"parameters\":{\"type\":\"object\",\"properties\":{\"q\":{\"type\":"
                           "\"string\"},\"n\":{\"type\":\"integer\"}},\"required\":[\"q\"]}}}],");
    bt_buf_append_c(b, "\"messages\":[{\"role\":\"user\",\"content\":");
    json_string(b, rest, n);
    bt_buf_append_c(b, "}]}");
}

struct reqspec {
    const char *method;
    struct bt_buf target;
    bool v10, conn_close, chunked;
    int auth;               /* 0 Bearer, 1 x-api-key, 2 none, 3 wrong */
    const char *fault;      /* x-sim-fault value or NULL */
    const char *timeout;    /* x-baton-timeout value or NULL */
    const char *rid;        /* x-request-id or NULL */
    struct bt_str body;
};

static void build_request(struct bt_buf *out, const struct reqspec *s)
{
    bt_buf_append_c(out, s->method);
    bt_buf_append_c(out, " ");
    bt_buf_append(out, s->target.p, s->target.len);
    bt_buf_append_c(out, s->v10 ? " HTTP/1.0\r\n" : " HTTP/1.1\r\n");
    bt_buf_append_c(out, "Host: 127.0.0.1\r\nUser-Agent: fuzz_pipeline\r\n");
    switch (s->auth) {
    case 0: bt_buf_append_c(out, "Authorization: Bearer " MASTER_KEY "\r\n"); break;
    case 1: bt_buf_append_c(out, "x-api-key: " MASTER_KEY "\r\n"); break;
    case 2: break;
    default: bt_buf_append_c(out, "Authorization: Bearer sk-wrong\r\n"); break;
    }
    if (s->fault) {
        bt_buf_append_c(out, "x-sim-fault: ");
        bt_buf_append_c(out, s->fault);
        bt_buf_append_c(out, "\r\n");
    }
    if (s->timeout) {
        bt_buf_append_c(out, "x-baton-timeout: ");
        bt_buf_append_c(out, s->timeout);
        bt_buf_append_c(out, "\r\n");
    }
    if (s->rid) {
        bt_buf_append_c(out, "x-request-id: ");
        bt_buf_append_c(out, s->rid);
        bt_buf_append_c(out, "\r\n");
    }
    if (s->conn_close) bt_buf_append_c(out, "Connection: close\r\n");
    if (s->body.len || strcmp(s->method, "POST") == 0)
        bt_buf_append_c(out, "Content-Type: application/json\r\n");
    if (s->chunked && !s->v10) {
        bt_buf_append_c(out, "Transfer-Encoding: chunked\r\n\r\n");
        size_t off = 0;
        while (off < s->body.len) { /* chunks of 1000 bytes */
            size_t k = s->body.len - off < 1000 ? s->body.len - off : 1000;
            char sz[24];
            int m = snprintf(sz, sizeof(sz), "%zx\r\n", k);
            bt_buf_append(out, sz, (size_t)m);
            bt_buf_append(out, s->body.p + off, k);
            bt_buf_append_c(out, "\r\n");
            off += k;
        }
        bt_buf_append_c(out, "0\r\n\r\n");
    } else {
        bt_buf_append_c(out, "Content-Length: ");
        bt_buf_append_u64(out, s->body.len);
        bt_buf_append_c(out, "\r\n\r\n");
        bt_buf_append(out, s->body.p, s->body.len);
    }
}

/* The second connection's request: healthy, so it must succeed while A is held. */
static void run_second(int kind)
{
    static const char *const heads[4] = {
        "GET /v1/models HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " MASTER_KEY "\r\n",
        "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " MASTER_KEY
        "\r\nContent-Type: application/json\r\n",
        "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " MASTER_KEY
        "\r\nContent-Type: application/json\r\n",
        "GET /health/ready HTTP/1.1\r\nHost: x\r\n",
    };
    static const char *const bodies[4] = {
        "",
        "{\"model\":\"chat\",\"messages\":[{\"role\":\"user\",\"content\":\"second\"}]}",
        "{\"model\":\"paced\",\"stream\":true,\"messages\":[{\"role\":\"user\",\"content\":\"second\"}]}",
        "",
    };
    static const int kinds[4] = {P_MODELS, P_CHAT, P_CHAT, P_READY};
    char req[1024];
    int n = snprintf(req, sizeof(req), "%sContent-Length: %zu\r\n\r\n%s", heads[kind],
                     strlen(bodies[kind]), bodies[kind]);
    struct client b;
    cl_open(&b, "B", kinds[kind], false, NULL);
    size_t end = (size_t)n;
    cl_send(&b, req, end, (size_t)-1, &end, 1);
    cl_wait(&b, 0);
    int want = kind == 3 && atomic_load(&w->draining) ? 503 : 200;
    if (b.answered != 1 || b.last_status != want)
        fail("B: a healthy request on a second connection got %s %d (expected %d)",
             b.answered ? "status" : "no answer, closed;", b.answered ? b.last_status : 0, want);
    cl_free(&b);
}

/* Waits until the server has no connection and the worker no request left. */
static void settle(void)
{
    uint64_t t0 = ms_now();
    while (bt_http_server_connections(w->http) || w->execs) {
        spin();
        if (ms_now() - t0 > SETTLE_MS)
            fail("%zu connections and %s left %d ms after the client went away",
                 bt_http_server_connections(w->http),
                 w->execs ? "requests in flight (w->execs not empty)" : "no request in flight",
                 SETTLE_MS);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!w->http) {
        setup();
        llhttp_settings_init(&cl_settings);
        cl_settings.on_message_begin = cl_begin;
        cl_settings.on_header_field = cl_field;
        cl_settings.on_header_value = cl_value;
        cl_settings.on_header_value_complete = cl_value_done;
        cl_settings.on_headers_complete = cl_headers_done;
        cl_settings.on_body = cl_body;
        cl_settings.on_message_complete = cl_complete;
    }
    if (size < 7) return 0;
    uint8_t b0 = data[0], b1 = data[1], b2 = data[2], b3 = data[3], b4 = data[4], b5 = data[5],
            b6 = data[6];
    const uint8_t *rest = data + 7;
    size_t nrest = size - 7;
    if (nrest > 65536) nrest = 65536;

    int pi = b0 & 15;
    int kind = paths[pi].kind;
    static const char *const methods[4] = {NULL, "GET", "POST", "HEAD"};
    struct reqspec s = {0};
    s.method = methods[(b0 >> 4) & 3] ? methods[(b0 >> 4) & 3] : paths[pi].method;
    s.v10 = b0 & 64;
    s.conn_close = b0 & 128;
    const char *model = models[(b2 & 31) % NMODELS];
    w->rr = b2 >> 5;
    unsigned fi = b3 & 15;
    s.fault = fi && fi < NFAULTS ? faults[fi] : NULL;
    s.timeout = timeouts[(b3 >> 4) & 7];
    atomic_store(&w->draining, (b3 & 128) != 0);
    size_t cut = cuts[b4 & 7];
    s.auth = (b4 >> 3) & 3;
    s.chunked = b4 & 32;
    s.rid = b4 & 64 ? "pipeline.fuzz-1" : NULL;
    bool rst = b4 & 128;
    int close_mode = b5 & 7;
    bool pipeline = b5 & 8, second = b5 & 16, shutdown = b5 & 128;
    int second_kind = (b5 >> 5) & 3;

    bt_buf_init(&s.target, 1u << 20);
    bt_buf_append_c(&s.target, paths[pi].path);
    if (kind == P_MODEL_M) path_segment(&s.target, (const uint8_t *)model, strlen(model));
    if (kind == P_MODEL_RAW) path_segment(&s.target, rest, nrest < 200 ? nrest : 200);
    struct bt_buf body;
    bt_buf_init(&body, 1u << 20);
    if (kind != P_MODEL_RAW) build_body(&body, b1, model, rest, nrest);
    s.body = (struct bt_str){body.p ? body.p : "", body.len};
    bt_buf_init(&sent_a, 4u << 20);
    build_request(&sent_a, &s);
    if (pipeline) build_request(&sent_a, &s);
    size_t one_len = pipeline ? sent_a.len / 2 : sent_a.len;
    /* The secret check only means something when the client did not send the
     * text itself. /metrics is left out: with direct addressing the model id is
     * the client's text in the `deployment` label (docs/internals/metrics.md), so
     * what an earlier input sent may show there. */
    bool check_secrets = kind != P_METRICS && !memmem(s.body.p, s.body.len, "fuzz-", 5) &&
                         !memmem(s.target.p, s.target.len, "fuzz-", 5);

    struct client a;
    cl_open(&a, "A", kind, strcmp(s.method, "HEAD") == 0, s.rid);
    size_t ends[2] = {one_len, sent_a.len};
    cl_send(&a, sent_a.p, close_mode == 4 ? sent_a.len / 2 : sent_a.len, cut, ends,
            pipeline ? 2 : 1);
    if (close_mode == 4 || close_mode == 5) cl_close(&a, rst);
    if (shutdown && a.fd >= 0) {
        for (int i = 0; i < (b6 & 7); i++) spin();
        bt_exec_shutdown_all(w);
    }
    if (second) run_second(second_kind);
    if (a.fd >= 0) {
        cl_wait(&a, close_mode >= 6 ? (size_t)b6 * 8 + 1 : 0);
        if (close_mode >= 6 && a.got >= (size_t)b6 * 8 + 1) cl_close(&a, rst);
    }
    if (!a.we_closed && a.answered < a.sent && !a.said_close)
        fail("A: the server closed the connection with %u of %u requests unanswered",
             a.sent - a.answered, a.sent);
    if (check_secrets && a.all.len &&
        (memmem(a.all.p, a.all.len, PROVIDER_KEY, strlen(PROVIDER_KEY)) ||
         memmem(a.all.p, a.all.len, MASTER_KEY, strlen(MASTER_KEY))))
        fail("A: a key appears in the response");
    cl_close(&a, rst);
    settle();
    cl_free(&a);
    bt_buf_free(&sent_a);
    bt_buf_free(&body);
    bt_buf_free(&s.target);
    atomic_store(&w->draining, false);
    return 0;
}

#ifdef BT_FUZZ_STANDALONE
static void close_walk(uv_handle_t *h, void *arg)
{
    (void)arg;
    if (!uv_is_closing(h)) {
        fprintf(stderr, "fuzz_pipeline: a handle of type %s was left open\n",
                uv_handle_type_name(h->type));
        uv_close(h, NULL);
    }
}

/* Replays inputs (files) without libFuzzer, then closes everything as serve.c
 * does at the end of a worker, so valgrind or LSan can check for leaks. */
int main(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        FILE *f = fopen(argv[i], "rb");
        if (!f) continue;
        static uint8_t buf[1 << 20];
        size_t n = fread(buf, 1, sizeof(buf), f);
        fclose(f);
        LLVMFuzzerTestOneInput(buf, n);
    }
    int rc = 0;
    if (w->http) {
        bt_worker_close(w);
        uv_close((uv_handle_t *)&guard, NULL);
        uv_run(&w->loop, UV_RUN_DEFAULT);
        uv_walk(&w->loop, close_walk, NULL);
        uv_run(&w->loop, UV_RUN_DEFAULT);
        if (uv_loop_close(&w->loop)) {
            fprintf(stderr, "fuzz_pipeline: the loop did not close clean\n");
            rc = 1;
        }
        bt_config_unref(w->cfg);
        bt_metrics_free(w->metrics);
        bt_log_access_open(NULL);
    }
    printf("%d inputs\n", argc - 1);
    return rc;
}
#endif
