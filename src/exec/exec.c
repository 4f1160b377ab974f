#include "exec/exec.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "account/access.h"
#include "account/cost.h"
#include "canon/frontend.h"
#include "core/log.h"
#include "core/time.h"
#include "exec/policy.h"
#include "route/health.h"
#include "store/redis.h"
#include "http/sse.h"
#include "store/keys.h"
#include "provider/provider.h"

#define MAX_REPLY_BYTES (64u << 20)    /* a non-stream reply */
#define MAX_ERROR_BYTES (1u << 20)     /* an upstream error body */
#define MAX_SSE_EVENT (8u << 20)       /* one stream event */

enum ex_state {
    EX_WAIT_HEAD = 1, /* request sent, no response head yet */
    EX_BODY,          /* 2xx non-stream reply being buffered */
    EX_ERRBODY,       /* non-2xx reply being buffered */
    EX_STREAM,        /* 2xx stream being relayed: committed */
    EX_BACKOFF,       /* waiting before the next retry (the timer starts it) */
    EX_LIMITS,        /* waiting for Redis to admit the attempt to its deployment's limits */
    EX_DONE,
};

struct failure {
    int status;       /* what the client gets if this is the last failure */
    enum bt_outcome cls;
    bool upstream;    /* a provider failed (not baton, not the client) */
    char code[48];
    char param[64];   /* the provider's `param` for its 4xx, or empty */
    char msg[600];
};

/* set_failure's class for a failure that is not an upstream attempt's (a missing
 * key, a deadline spent before the attempt, shutdown): not counted as one. */
#define NOT_UPSTREAM BT_UPCLASS_COUNT

/* The hedge (models.NAME.hedge): a second attempt that runs beside the current
 * one until either has a 2xx response head. Allocated when a request hedges,
 * freed with the exec (its callbacks' `ud` must stay valid until the call ends).
 * Once promoted it is the current attempt: its fields moved into the exec and
 * its callbacks forward to the exec's. */
struct hedge {
    struct bt_exec *ex;
    const struct bt_provider *prov;
    const struct bt_adapter *ad;
    struct bt_health *health;
    uint32_t idx;                   /* its candidate (index into plan.c) */
    bool added_usage;
    bool promoted;                  /* it is the exec's current attempt now */
    uint64_t attempt_ns;            /* when it started */
    uint64_t total_deadline_ms;     /* its deadlines (loop time), applied once it */
    uint64_t first_byte_ms;         /* runs alone; first_byte_ms 0 = none */
    struct bt_pcall call;
    struct bt_pbody body_up;        /* borrowed by the call */
    struct bt_limits_taken taken;   /* what it took from its deployment's limits */
    char deployment[256];
};

/* An attempt's (or the hedge's) deployment limits asked of Redis (store.redis):
 * the answer continues it, unless the exec is gone meanwhile (ex NULL: what
 * Redis took is given back). */
struct dep_wait {
    struct bt_exec *ex;
    struct bt_redis *redis;
    const struct bt_candidate *c;
    uint32_t idx, tries;            /* the hedge's candidate and the own tries it uses */
    bool hedge;
    int64_t minute;
    struct bt_redis_level lv;
};

struct bt_exec {
    struct bt_exec *prev, *next;    /* the worker's list of live requests */
    struct bt_worker *w;
    struct bt_http_req *hreq;       /* NULL once the response finished or the client left */
    struct bt_config *cfg;          /* our ref */
    struct bt_request *r;           /* in hreq's arena */
    struct bt_plan plan;
    uint32_t own_tries;             /* attempts on the model's own candidates */
    uint32_t fb_next;               /* the next fallback candidate (index into plan.c) */
    uint32_t cur_idx;               /* the current attempt's candidate (index into plan.c) */
    uint32_t auth_skip;             /* own candidates that refused baton's credential */
    const struct bt_candidate *waiting; /* EX_BACKOFF: the candidate to try next */
    char route[384];                /* x-baton-route: how the plan was made, each attempt */
    size_t route_len;
    uint32_t route_n;               /* attempts noted in it */
    uint32_t attempts;
    enum ex_state state;
    const struct bt_provider *prov; /* current attempt's provider */
    const struct bt_adapter *ad;    /* and its adapter */
    struct bt_health *health;       /* its deployment's live state while an attempt runs */
    struct dep_wait *dep_wait;      /* EX_LIMITS: the attempt's question to Redis */
    struct dep_wait *hedge_wait;    /* the hedge's, while Redis answers */
    struct bt_limits_taken dep_taken; /* what the attempt took from its deployment's limits:
                                       the slot given back when it is over, the tokens
                                       settled by charge (or given back when another
                                       attempt follows) */
    uint64_t attempt_ns;            /* when the current attempt started */
    uint64_t head_us;               /* its time to a 2xx response head; 0 = none */
    struct bt_pcall call;
    bool call_live;
    uv_timer_t timer;               /* first-byte / idle / total deadline */
    uint64_t total_deadline_ms;     /* per attempt, loop time (uv_now) */
    uint64_t deadline_ms;           /* the earliest deadline now: the phase's or the total */
    uint64_t timer_due_ms;          /* when the uv timer fires; 0 = stopped */
    struct bt_pbody body_up;        /* body sent upstream: slices of the client's */
    struct bt_buf resp;             /* buffered reply or error body */
    struct bt_buf out;              /* stream bytes written anew, batched per upstream read */
    struct bt_str in;               /* the upstream read being relayed */
    struct span {                   /* what the next chunk to the client is made of: */
        const char *p;              /* a run of `in` (zero-copy), or NULL: */
        size_t off, len;            /* bytes of `out` at `off` */
    } spans[BT_HTTP_MAX_PARTS];
    uint32_t nspans;
    struct bt_sse sse;
    struct bt_arena scratch;        /* JSON tokens of one stream event */
    bool added_usage;               /* we asked for usage; drop its chunk */
    bool translate;                 /* the provider speaks another API than the client:
                                       its events are decoded and the front end encodes
                                       them (fe_st), nothing is relayed as it came */
    void *fe_st;                    /* translate + stream: the front end's stream state */
    bool saw_done, saw_error;
    char ev_err_msg[1024], ev_err_type[64], ev_err_code[64]; /* a provider's in-stream error */
    const char *stream_err;         /* why we stopped relaying */
    int up_status;
    char retry_after[64], retry_after_ms[24];
    struct bt_usage usage;
    bool ev_usage;                  /* the event being decoded carried usage */
    bool replied;                   /* a whole 2xx reply was decoded (finish_body) */
    int64_t reply_tokens;           /* its text counted by baton, when it had no usage */
    bool settled;                   /* settle() ran: usage and cost are final */
    bool cost_known;                /* the deployment has a price and usage is known */
    int64_t cost_pusd;              /* the request's cost in pico-USD (account/cost.h) */
    struct bt_str cur_model;        /* the current attempt's upstream model id */
    struct bt_price price;          /* its deployment's price (source NONE: unknown) */
    uint32_t content_events;        /* stream events with content relayed to the client */
    enum bt_finish finish;
    uint64_t ttft_ns;
    char deployment[256];
    struct failure fail;
    uint64_t hedge_at_ms;           /* when the hedge starts (loop time); 0 = none due */
    bool hedged;                    /* the request's one hedge was started */
    bool hedge_live;                /* it runs beside the current attempt */
    bool hedge_won;                 /* the current attempt is the promoted hedge */
    struct hedge *hg;               /* malloc'd at the first hedge, freed with the exec */
    struct bt_payer payer;          /* who pays (strings in hreq's arena) */
    bool charged;                   /* the cost went to the payer's counters */
    bool shared_back;               /* the payer's slots in Redis were given back */
    bool recorded;                  /* the ledger has the request's record */
};

static void attempt_next(struct bt_exec *ex);
static bool attempt_start(struct bt_exec *ex, const struct bt_candidate *c);

/* ---- lifetime ---- */

static void on_timer_closed(uv_handle_t *h)
{
    struct bt_exec *ex = h->data;
    bt_buf_free(&ex->resp);
    bt_buf_free(&ex->out);
    bt_sse_free(&ex->sse);
    bt_arena_free(&ex->scratch);
    bt_config_unref(ex->cfg);
    free(ex->hg);
    free(ex->fe_st);
    free(ex);
}

/* The current attempt is over for the deployment's health (once per attempt):
 * `counted` false when the client left (nothing learned); `cls` its outcome. */
static void attempt_over(struct bt_exec *ex, bool counted, enum bt_outcome cls)
{
    bt_limits_release_slot(&ex->dep_taken);
    if (!ex->health) return;
    const struct bt_breaker_cfg none = {0};
    const struct bt_breaker_cfg *b = ex->plan.model ? &ex->plan.model->breaker : &none;
    bt_health_end(ex->health, b, counted, cls, ex->head_us, bt_health_now_ms());
    ex->health = NULL;
}

static void hedge_drop(struct bt_exec *ex, bool lost);
static void shared_give_back(struct bt_exec *ex);

/* Releases everything; the exec memory goes when the timer handle has closed. */
static void cleanup(struct bt_exec *ex)
{
    if (ex->state == EX_DONE) return;
    if (ex->hedge_live) hedge_drop(ex, false);
    if (ex->dep_wait) ex->dep_wait->ex = NULL;
    if (ex->hedge_wait) ex->hedge_wait->ex = NULL;
    ex->dep_wait = ex->hedge_wait = NULL;
    attempt_over(ex, false, BT_OUTCOME_OK);
    bt_limits_give_back(&ex->dep_taken);
    bt_limits_give_back(&ex->plan.model_taken);
    shared_give_back(ex);
    ex->state = EX_DONE;
    if (ex->prev) ex->prev->next = ex->next;
    else ex->w->execs = ex->next;
    if (ex->next) ex->next->prev = ex->prev;
    ex->prev = ex->next = NULL;
    if (ex->w->mshard) bt_metrics_inflight_add(ex->w->mshard, -1);
    if (ex->call_live) bt_provider_cancel(&ex->call);
    ex->call_live = false;
    uv_close((uv_handle_t *)&ex->timer, on_timer_closed);
}

/* The usage the request is accounted with, and its cost, once: the provider's
 * figures, or, when a reply reached the client without them (a stream cut short
 * before its usage chunk, a provider that reports none), baton's estimate,
 * marked as such: the prompt counted with the built-in tokenizer, the reply's
 * text counted too (finish_body) or, for a stream, one token per content event,
 * as providers stream about one token per chunk. */
static void settle(struct bt_exec *ex)
{
    if (ex->settled) return;
    ex->settled = true;
    bool delivered = ex->state == EX_STREAM ? ex->content_events > 0 : ex->replied;
    if (!ex->usage.present && delivered && ex->r) {
        int64_t prompt = bt_cost_count_prompt(ex->r, ex->cur_model);
        int64_t completion = ex->state == EX_STREAM ? (int64_t)ex->content_events
                                                    : ex->reply_tokens;
        if (prompt < 0) prompt = 0;
        ex->usage = (struct bt_usage){.present = true, .estimated = true,
                                      .prompt_tokens = prompt,
                                      .completion_tokens = completion,
                                      .total_tokens = prompt + completion};
    }
    if (ex->usage.present && ex->attempts && ex->price.source != BT_PRICE_NONE) {
        ex->cost_known = true;
        ex->cost_pusd = bt_cost_pusd(&ex->price, &ex->usage);
    }
}

/* Gives back the concurrency slots the request holds in Redis (its key's,
 * team's, user's, model's), once: with the charge, before the response's last
 * bytes, or when the exec ends without one. */
static void shared_give_back(struct bt_exec *ex)
{
    if (ex->shared_back) return;
    ex->shared_back = true;
    if (ex->payer.nshared && ex->w->redis)
        bt_redis_release(ex->w->redis, ex->payer.shared, ex->payer.nshared);
}

/* Charges the request's cost to its key's budget counters, once: called
 * before the response's last bytes go out, so the caller's next request is
 * judged with it. */
static void charge(struct bt_exec *ex)
{
    settle(ex);
    if (ex->charged) return;
    ex->charged = true;
    /* the estimate taken at admit becomes the usage */
    int64_t used = ex->usage.present ? ex->usage.prompt_tokens + ex->usage.completion_tokens : 0;
    if (ex->payer.nshared && ex->w->redis) /* the other instances see it at once; */
        bt_redis_charge(ex->w->redis, ex->payer.shared, ex->payer.nshared,
                        ex->payer.shared_minute, ex->cost_known ? ex->cost_pusd : 0, used,
                        !ex->shared_back); /* and the slots come back, in one round trip */
    ex->shared_back = true;
    if (ex->cost_known) {
        bt_key_charge(ex->payer.live, ex->cost_pusd);
        bt_key_charge(ex->payer.team_live, ex->cost_pusd);
        bt_key_charge(ex->payer.user_live, ex->cost_pusd);
    }
    for (int i = 0; i < 3; i++)
        if (ex->payer.tpm_lives[i])
            bt_key_correct_tokens(ex->payer.tpm_lives[i], ex->payer.tpm_minute,
                                  used - ex->payer.tpm_tokens);
    bt_limits_settle(&ex->plan.model_taken, used);
    bt_limits_settle(&ex->dep_taken, ex->attempts ? used : 0);
}

/* The request's usage record for the ledger (written by the key service's
 * thread, never here). */
static void record_usage(struct bt_exec *ex, int status)
{
    if (ex->recorded || !ex->w->keys) return;
    ex->recorded = true;
    struct bt_str prov = ex->attempts && ex->prov ? bt_str_c(ex->prov->name) : BT_STR_NULL;
    struct bt_str pm = ex->attempts ? ex->cur_model : BT_STR_NULL;
    struct bt_usage_rec *u =
        bt_usage_rec_new(ex->hreq->id, ex->payer.key_id ? ex->payer.key_id : "master",
                         ex->payer.user, ex->payer.team, ex->r ? ex->r->model : BT_STR_NULL,
                         prov, pm);
    if (!u) {
        bt_error("ledger: out of memory: the usage of request %s is not recorded", ex->hreq->id);
        return;
    }
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    u->ts_ms = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
    const struct bt_usage *us = &ex->usage;
    if (us->present) {
        u->input_tokens = us->prompt_tokens;
        u->cached_tokens = us->cached_tokens;
        u->cache_write_tokens = us->cache_write_tokens;
        u->output_tokens = us->completion_tokens;
        u->reasoning_tokens = us->reasoning_tokens;
        u->estimated = us->estimated;
    }
    u->cost_known = ex->cost_known;
    u->cost_pusd = ex->cost_known ? ex->cost_pusd : 0;
    u->status = status;
    if (ex->cost_known) { /* each was charged that amount (charge) */
        u->live = ex->payer.live;
        u->team_live = ex->payer.team_live;
        u->user_live = ex->payer.user_live;
    }
    bt_keys_record(ex->w->keys, u);
}

static void log_access(struct bt_exec *ex, int status, const char *error)
{
    struct bt_http_req *h = ex->hreq;
    charge(ex);
    record_usage(ex, status);
    struct bt_access_rec rec = {
        .id = h->id,
        .method = h->method,
        .path = h->path,
        .model = ex->r ? ex->r->model : BT_STR_NULL,
        .deployment = ex->attempts ? ex->deployment : NULL,
        .status = status,
        .latency_ns = bt_now_ns() - h->start_ns,
        .ttft_ns = ex->ttft_ns,
        .attempts = ex->attempts,
        .stream = ex->r && ex->r->stream,
        .usage = ex->usage,
        .cost_known = ex->cost_known,
        .cost_pusd = ex->cost_pusd,
        .finish = ex->finish,
        .error = error,
        .key_id = h->caller,
        .metric_model = ex->plan.model ? bt_str_c(ex->plan.model->name) : BT_STR_NULL,
        .metric_deployment = !ex->attempts ? BT_STR_NULL
                             : ex->plan.model ? bt_str_c(ex->deployment)
                                              : bt_str_c(ex->prov->name),
        .metrics = ex->w->mshard,
    };
    bt_access_write(&rec);
}

/* Appends to x-baton-route (cut at its buffer: the header stays bounded). Names
 * in it are config names or checked client ids: header-safe. */
static void route_note(struct bt_exec *ex, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void route_note(struct bt_exec *ex, const char *fmt, ...)
{
    if (ex->route_len >= sizeof(ex->route) - 1) return;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(ex->route + ex->route_len, sizeof(ex->route) - ex->route_len, fmt, ap);
    va_end(ap);
    if (n > 0) ex->route_len += (size_t)n;
    if (ex->route_len >= sizeof(ex->route)) ex->route_len = sizeof(ex->route) - 1;
}

/* The current attempt answers: noted in x-baton-route, and a hedge that does
 * is counted as won (before attempt_over releases the health entry). */
static void note_ok(struct bt_exec *ex)
{
    route_note(ex, "%s%s=ok%s", ex->route_n++ ? ", " : "", ex->deployment,
               ex->hedge_won ? " (hedge won)" : "");
    if (ex->hedge_won) bt_health_hedge(ex->health, BT_HEDGE_WON);
}

/* An attempt at `dep` (health `h`) was cancelled because the other one answered
 * first: released, not a failure (the breaker learns nothing), and noted. */
static void note_hedged_out(struct bt_exec *ex, struct bt_health *h, const char *dep)
{
    bt_health_hedge(h, BT_HEDGE_CANCELLED);
    bt_health_end(h, &ex->plan.model->breaker, false, BT_OUTCOME_OK, 0, 0);
    route_note(ex, "%s%s=hedged_out", ex->route_n++ ? ", " : "", dep);
}

static size_t std_headers(struct bt_exec *ex, struct bt_http_header *hs, char *attempts, size_t cap)
{
    size_t n = 0;
    int an = snprintf(attempts, cap, "%u", ex->attempts);
    hs[n++] = (struct bt_http_header){BT_STR("x-baton-deployment"),
                                      ex->attempts ? bt_str_c(ex->deployment) : BT_STR("none")};
    hs[n++] = (struct bt_http_header){BT_STR("x-baton-attempts"), {attempts, (size_t)an}};
    hs[n++] = (struct bt_http_header){BT_STR("x-baton-route"), {ex->route, ex->route_len}};
    if (ex->payer.budget_warning)
        hs[n++] = (struct bt_http_header){BT_STR("x-baton-budget-warning"),
                                          bt_str_c(ex->payer.budget_warning)};
    return n;
}

/* Sends the recorded failure to the client and finishes. */
static void finish_error(struct bt_exec *ex)
{
    struct failure *f = &ex->fail;
    if (ex->hedge_live) hedge_drop(ex, false); /* its body lives in the request's arena */
    if (!f->status) {
        f->status = 502;
        f->cls = BT_OUTCOME_SERVER_ERROR;
        f->upstream = true;
        snprintf(f->msg, sizeof(f->msg), "no deployment could serve the request");
    }
    struct bt_error e = {
        .status = f->status,
        .cls = f->cls,
        .upstream = f->upstream,
        .message = bt_str_c(f->msg),
        .code = f->code[0] ? f->code : NULL,
        .param = f->param[0] ? f->param : NULL,
    };
    struct bt_buf body;
    bt_buf_init(&body, 8192);
    const char *ctype = ex->r->fe->error_body(&body, &e);
    struct bt_http_header hs[7];
    char attempts[16];
    size_t n = std_headers(ex, hs, attempts, sizeof(attempts));
    if (f->status == 429 && ex->retry_after[0])
        hs[n++] = (struct bt_http_header){BT_STR("retry-after"), bt_str_c(ex->retry_after)};
    if (f->status == 429 && ex->retry_after_ms[0])
        hs[n++] = (struct bt_http_header){BT_STR("retry-after-ms"), bt_str_c(ex->retry_after_ms)};
    log_access(ex, f->status, f->msg);
    /* Finishes the request whatever it returns (a refused head is answered 500
     * by the server and logged there): hreq is gone either way. */
    enum bt_err err = bt_http_respond(ex->hreq, f->status, hs, n, bt_str_c(ctype),
                                      bt_buf_str(&body));
    (void)err;
    ex->hreq = NULL;
    bt_buf_free(&body);
    cleanup(ex);
}

static void count_upstream_error(struct bt_exec *ex, enum bt_metrics_upclass cls)
{
    if (ex->w->mshard && ex->prov)
        bt_metrics_upstream_error(ex->w->mshard, bt_str_c(ex->prov->name), cls);
}

/* Records what the client gets if no later attempt succeeds. Every failed upstream
 * attempt comes through here with its class (NOT_UPSTREAM for the others), so
 * each is counted in baton_upstream_errors_total exactly once, whatever the path. */
static void set_failure(struct bt_exec *ex, enum bt_metrics_upclass cls, enum bt_outcome outcome,
                        bool upstream, int status, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 7, 8)));
static void set_failure(struct bt_exec *ex, enum bt_metrics_upclass cls, enum bt_outcome outcome,
                        bool upstream, int status, const char *code, const char *fmt, ...)
{
    if (cls != NOT_UPSTREAM) {
        count_upstream_error(ex, cls);
        attempt_over(ex, true, outcome);
    }
    if (ex->attempts) route_note(ex, "%s%s=%s", ex->route_n++ ? ", " : "", ex->deployment,
                                 bt_outcome_name(outcome));
    struct failure *f = &ex->fail;
    f->status = status;
    f->cls = outcome;
    f->upstream = upstream;
    f->param[0] = 0;
    snprintf(f->code, sizeof(f->code), "%s", code ? code : "");
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(f->msg, sizeof(f->msg), fmt, ap);
    va_end(ap);
}

/* Appends `in` to `out` with every occurrence of `secret` replaced, so a provider
 * that quotes baton's key in an error never hands it to the client or the logs. */
static enum bt_err append_redacted(struct bt_buf *out, struct bt_str in, const char *secret)
{
    size_t klen = secret ? strlen(secret) : 0;
    if (klen < 4) return bt_buf_append_str(out, in);
    while (in.len) {
        const char *hit = memmem(in.p, in.len, secret, klen);
        size_t n = hit ? (size_t)(hit - in.p) : in.len;
        enum bt_err err = bt_buf_append(out, in.p, n);
        if (!err && hit) err = bt_buf_append_c(out, "[redacted]");
        if (err) return err;
        if (!hit) break;
        in.p = hit + klen;
        in.len -= n + klen;
    }
    return BT_OK;
}

/* Same, into a fixed NUL-terminated buffer (redacted first, then truncated). */
static void redact_into(char *dst, size_t cap, struct bt_str in, const char *secret)
{
    struct bt_buf b;
    bt_buf_init(&b, 1u << 16);
    append_redacted(&b, in, secret);
    size_t n = b.len < cap - 1 ? b.len : cap - 1;
    if (n) memcpy(dst, b.p, n);
    dst[n] = 0;
    bt_buf_free(&b);
}

/* ---- deadlines ---- */

static void on_timer(uv_timer_t *t);

/* Sets the deadline: the phase's (first byte, idle) or the attempt's total,
 * whichever is first. The idle deadline moves on every upstream read; the uv
 * timer is only restarted when the deadline comes earlier than it is set for.
 * A timer that fires early re-arms itself (on_timer), so relaying an event
 * costs no timer operation. */
static void arm(struct bt_exec *ex, uint64_t phase_ms)
{
    uint64_t now = uv_now(&ex->w->loop);
    uint64_t d = ex->total_deadline_ms;
    if (phase_ms && now + phase_ms < d) d = now + phase_ms;
    ex->deadline_ms = d;
    if (ex->timer_due_ms && ex->timer_due_ms <= d) return;
    uv_timer_start(&ex->timer, on_timer, d > now ? d - now : 0, 0);
    ex->timer_due_ms = d;
}

static void disarm(struct bt_exec *ex)
{
    uv_timer_stop(&ex->timer);
    ex->timer_due_ms = 0;
}

/* A provider's deadline, shortened (never lengthened) by the client's x-baton-timeout. */
static uint64_t cap_ms(const struct bt_exec *ex, uint64_t ms)
{
    uint64_t c = ex->r->timeout_ms;
    if (!c) return ms;
    return ms && ms < c ? ms : c;
}

static const char *timeout_phase(struct bt_exec *ex)
{
    if (ex->deadline_ms >= ex->total_deadline_ms) return "total";
    return ex->state == EX_WAIT_HEAD ? "first_byte" : "idle";
}

/* ---- streaming relay ---- */

/* ---- the chunk being assembled for the client ----
 * Events that go out unchanged are sent from the upstream's read buffer (`in`);
 * what baton writes itself (error events, events completed across reads) goes
 * through `out`. Spans keep their order; flush_out sends them as one chunk and
 * must run before the read buffer is gone: the upstream keeps it until on_flush
 * (up_flush) or on_done, so the events of a whole read leave in one write, and
 * when the stream ends in that read, with the end of the body too. */

/* Sends the spans as one chunk; `last` ends the stream in the same write. With
 * the client gone (no hreq) they are dropped. */
static void client_lost(struct bt_exec *ex);

static void send_spans(struct bt_exec *ex, bool last)
{
    enum bt_err err = BT_OK;
    if (ex->hreq) {
        struct bt_str parts[BT_HTTP_MAX_PARTS];
        for (uint32_t i = 0; i < ex->nspans; i++) {
            const struct span *sp = &ex->spans[i];
            parts[i] = (struct bt_str){sp->p ? sp->p : ex->out.p + sp->off, sp->len};
        }
        if (last) bt_http_stream_end_with(ex->hreq, parts, ex->nspans);
        else if (ex->nspans) err = bt_http_stream_writev(ex->hreq, parts, ex->nspans);
    }
    ex->nspans = 0;
    bt_buf_reset(&ex->out);
    if (err) client_lost(ex);
}

static void flush_out(struct bt_exec *ex)
{
    send_spans(ex, false);
}

static void add_span(struct bt_exec *ex, const char *p, size_t off, size_t len)
{
    if (!len) return;
    if (ex->nspans) {
        struct span *last = &ex->spans[ex->nspans - 1];
        if (p ? last->p && last->p + last->len == p : !last->p && last->off + last->len == off) {
            last->len += len;
            return;
        }
    }
    /* Only a run of `in` can find the list full: writers of `out` make room first
     * (out_begin), as flushing empties `out`. */
    if (ex->nspans == BT_HTTP_MAX_PARTS) flush_out(ex);
    ex->spans[ex->nspans++] = (struct span){p, off, len};
}

/* Brackets bytes appended to `out`: out_end queues them as the next span. */
static size_t out_begin(struct bt_exec *ex)
{
    if (ex->nspans == BT_HTTP_MAX_PARTS) flush_out(ex);
    return ex->out.len;
}

static void out_end(struct bt_exec *ex, size_t before)
{
    if (ex->out.len > before) add_span(ex, NULL, before, ex->out.len - before);
}

/* Queues an event's bytes unchanged: zero-copy when they lie in the current read. */
static enum bt_err relay_raw(struct bt_exec *ex, struct bt_str raw)
{
    if (ex->in.p && raw.p >= ex->in.p && raw.p + raw.len <= ex->in.p + ex->in.len) {
        add_span(ex, raw.p, 0, raw.len);
        return BT_OK;
    }
    size_t before = out_begin(ex);
    enum bt_err err = bt_buf_append_str(&ex->out, raw);
    out_end(ex, before);
    return err;
}

/* Queues the front end's error event(s) for `e`: the stream then ends without the
 * clean end marker. */
static enum bt_err queue_stream_error(struct bt_exec *ex, const struct bt_error *e)
{
    size_t before = out_begin(ex);
    enum bt_err err = ex->fe_st ? ex->r->fe->stream_end(ex->fe_st, e, &ex->out)
                                : ex->r->fe->stream_error(&ex->out, e);
    out_end(ex, before);
    return err;
}

/* An error of baton's own inside a stream (a broken or stalled provider stream,
 * shutdown): what the client's API says for a provider failure. */
static void stream_error_event(struct bt_exec *ex, const char *msg, const char *code)
{
    struct bt_error e = {.status = 502, .cls = BT_OUTCOME_SERVER_ERROR, .upstream = true,
                         .message = bt_str_c(msg), .code = code};
    queue_stream_error(ex, &e);
}

static void finish_stream(struct bt_exec *ex, const char *error,
                          enum bt_metrics_upclass cls)
{
    if (error) count_upstream_error(ex, cls);
    /* A clean end is a success; a broken stream the deployment's failure; a
     * shutdown (class other) says nothing about it. */
    attempt_over(ex, !error || cls != BT_UPCLASS_OTHER,
                 !error                     ? BT_OUTCOME_OK
                 : cls == BT_UPCLASS_TIMEOUT ? BT_OUTCOME_TIMEOUT
                 : cls == BT_UPCLASS_RESET   ? BT_OUTCOME_CONNECTION
                                             : BT_OUTCOME_SERVER_ERROR);
    if (!ex->hreq) {
        flush_out(ex);
        return;
    }
    log_access(ex, 200, error);
    send_spans(ex, true); /* the last events and the end of the body, one write */
    ex->hreq = NULL;
    cleanup(ex);
}

/* An event's escaped string into dst, unescaped and with the provider's key
 * redacted; `dflt` when it is empty or broken. */
static void unescape_redacted(struct bt_exec *ex, char *dst, size_t cap, struct bt_str raw,
                              const char *dflt)
{
    struct bt_buf b;
    bt_buf_init(&b, 1u << 16);
    if (raw.len && bt_json_unescape(raw, &b) == BT_OK && b.len)
        redact_into(dst, cap, bt_buf_str(&b), ex->prov->api_key);
    else
        snprintf(dst, cap, "%s", dflt);
    bt_buf_free(&b);
}

static void on_event(void *ud, const struct bt_event *ev)
{
    struct bt_exec *ex = ud;
    switch (ev->type) {
    case BT_EV_USAGE:
        ex->usage = ev->usage;
        ex->ev_usage = true;
        break;
    case BT_EV_FINISH: ex->finish = ev->finish; break;
    case BT_EV_ERROR:
        /* A provider may quote baton's key back in an error: kept redacted. */
        ex->saw_error = true;
        unescape_redacted(ex, ex->ev_err_msg, sizeof(ex->ev_err_msg), ev->err_message,
                          "the provider reported an error");
        unescape_redacted(ex, ex->ev_err_type, sizeof(ex->ev_err_type), ev->err_type, "");
        unescape_redacted(ex, ex->ev_err_code, sizeof(ex->ev_err_code), ev->err_code, "");
        break;
    case BT_EV_TEXT:
    case BT_EV_REASONING:
    case BT_EV_TOOL_START:
    case BT_EV_TOOL_ARGS:
        /* Time to first token and what was sent are a stream's; a whole reply's
         * content events only describe it. */
        if (ex->state != EX_STREAM) break;
        if (!ex->ttft_ns) ex->ttft_ns = bt_now_ns() - ex->hreq->start_ns;
        if (ev->text.len) ex->content_events++;
        break;
    default: break;
    }
}

/* Queues the provider's in-stream error (decoded by on_event) in the client's
 * API: its type is relayed when the provider speaks the client's API. */
static enum bt_err rewrite_error_event(struct bt_exec *ex)
{
    struct bt_error e = {
        .status = 502,
        .cls = BT_OUTCOME_SERVER_ERROR,
        .upstream = true,
        .message = bt_str_c(ex->ev_err_msg),
        .code = ex->ev_err_code[0] ? ex->ev_err_code : NULL,
        .type = ex->ad->wire == ex->r->api ? bt_str_c(ex->ev_err_type) : BT_STR_NULL,
    };
    return queue_stream_error(ex, &e);
}

/* The client's usage chunk with the cost so far added (x-baton-include-cost:
 * true), written by the front end; relayed as it came when the cost is unknown
 * or the provider speaks another API. */
static enum bt_err relay_with_cost(struct bt_exec *ex, const struct bt_json_doc *doc,
                                   struct bt_str raw)
{
    const struct bt_frontend *fe = ex->r->fe;
    if (ex->price.source == BT_PRICE_NONE || ex->ad->wire != ex->r->api || !fe->stream_usage_cost)
        return relay_raw(ex, raw);
    char cost[BT_DECIMAL_MAX];
    size_t n = bt_cost_format(bt_cost_pusd(&ex->price, &ex->usage), cost, sizeof(cost));
    size_t before = out_begin(ex);
    enum bt_err err = fe->stream_usage_cost(&ex->out, doc, (struct bt_str){cost, n}, &ex->scratch);
    out_end(ex, before);
    return err == BT_EINVAL ? relay_raw(ex, raw) : err;
}

/* The full decode of one event that can change what we account or forward. */
static int decode_event(struct bt_exec *ex, const struct bt_sse_event *ev)
{
    struct bt_json_doc doc;
    if (bt_json_parse(&doc, ev->data.p, ev->data.len, &ex->scratch, NULL, NULL) ||
        bt_json_type(&doc, 0) != BT_JSON_OBJECT) {
        ex->stream_err = "the provider sent an invalid JSON event";
        return 1;
    }
    ex->ev_usage = false;
    ex->ad->decode_event(&doc, on_event, ex);
    if (ex->added_usage && !ex->saw_error && ex->ad->added_usage_event(&doc))
        return 0; /* the usage chunk we asked for, not the client's */
    /* Error events are the one place a provider may quote our key back, possibly
     * escaped: they are decoded and written anew with the key redacted. */
    enum bt_err err = ex->saw_error                                     ? rewrite_error_event(ex)
                      : ex->ev_usage && ex->r->include_cost             ? relay_with_cost(ex, &doc, ev->raw)
                                                                        : relay_raw(ex, ev->raw);
    if (err) {
        ex->stream_err = "stream output buffer full";
        return 1;
    }
    return 0;
}

/* ---- the translate path: provider events -> the client's API ---- */

/* An ERROR event as the client may see it: on_event's copies of its strings,
 * with the provider's key redacted, escaped again into `msg`. */
static const struct bt_event *redacted_error(struct bt_exec *ex, const struct bt_event *ev,
                                             struct bt_event *e2, struct bt_buf *msg)
{
    if (ev->type != BT_EV_ERROR) return ev;
    *e2 = *ev;
    if (bt_json_escape(msg, bt_str_c(ex->ev_err_msg)) == BT_OK && msg->len >= 2)
        e2->err_message = (struct bt_str){msg->p + 1, msg->len - 2};
    e2->err_type = bt_str_c(ex->ev_err_type);
    e2->err_code = bt_str_c(ex->ev_err_code);
    return e2;
}

/* One canonical event into the front end's stream (flushing `out` once when
 * it is full). An ERROR goes out with the message on_event kept, redacted. */
static void fe_stream_feed(struct bt_exec *ex, const struct bt_event *ev)
{
    struct bt_event e2;
    struct bt_buf msg;
    bt_buf_init(&msg, 8 * sizeof(ex->ev_err_msg));
    ev = redacted_error(ex, ev, &e2, &msg);
    for (int tries = 0; tries < 2; tries++) {
        size_t before = out_begin(ex);
        enum bt_err err = ex->r->fe->stream_event(ex->fe_st, ev, &ex->out);
        out_end(ex, before);
        if (err != BT_ETOOBIG && err != BT_ENOMEM) break;
        flush_out(ex);
        if (!ex->hreq) break;
    }
    bt_buf_free(&msg);
}

static void on_translated(void *ud, const struct bt_event *ev)
{
    struct bt_exec *ex = ud;
    on_event(ex, ev);
    if (ev->type == BT_EV_DONE) ex->saw_done = true;
    if (ex->fe_st) fe_stream_feed(ex, ev);
}

/* Every event with data is decoded; comments and keep-alives are dropped
 * (they belong to the provider's wire). */
static int translate_sse(struct bt_exec *ex, const struct bt_sse_event *ev)
{
    switch (ex->ad->classify_event(ev, false, true)) {
    case BT_EVK_RELAY: return 0;
    case BT_EVK_DONE: on_translated(ex, &(struct bt_event){.type = BT_EV_DONE}); return 0;
    case BT_EVK_INVALID: ex->stream_err = "the provider sent an invalid JSON event"; return 1;
    default: break;
    }
    struct bt_json_doc doc;
    int rc = 0;
    if (bt_json_parse(&doc, ev->data.p, ev->data.len, &ex->scratch, NULL, NULL) ||
        bt_json_type(&doc, 0) != BT_JSON_OBJECT) {
        ex->stream_err = "the provider sent an invalid JSON event";
        rc = 1;
    } else {
        ex->ad->decode_event(&doc, on_translated, ex);
    }
    bt_arena_reset(&ex->scratch);
    return rc;
}

static int on_sse(void *ud, const struct bt_sse_event *ev)
{
    struct bt_exec *ex = ud;
    if (ex->state == EX_DONE) return 1;
    if (ex->translate) return translate_sse(ex, ev);
    /* The adapter says which events can change what is accounted or forwarded
     * (the first content, a finish reason, usage, an error): those are decoded;
     * every other one is relayed as it came (provider `stream_check`). */
    switch (ex->ad->classify_event(ev, ex->ttft_ns != 0, ex->prov->stream_check_full)) {
    case BT_EVK_RELAY: relay_raw(ex, ev->raw); return 0;
    case BT_EVK_DONE:
        ex->saw_done = true;
        charge(ex); /* before the end marker reaches the client */
        relay_raw(ex, ev->raw);
        return 0;
    case BT_EVK_INVALID: ex->stream_err = "the provider sent an invalid JSON event"; return 1;
    case BT_EVK_PLAIN:
        ex->content_events++;
        if (relay_raw(ex, ev->raw)) {
            ex->stream_err = "stream output buffer full";
            return 1;
        }
        return 0;
    case BT_EVK_DECODE: break;
    }
    int rc = decode_event(ex, ev);
    /* A stream decodes a handful of events (the first, the last ones): their
     * tokens' memory is given back rather than held for the stream's life. */
    bt_arena_free(&ex->scratch);
    return rc;
}

/* Commits to the stream. False when the client's stream could not be opened:
 * the request is then finished (see bt_http_stream_begin) and so is the exec. */
static bool stream_begin(struct bt_exec *ex)
{
    struct bt_http_header hs[6];
    char attempts[16];
    note_ok(ex);
    size_t n = std_headers(ex, hs, attempts, sizeof(attempts));
    hs[n++] = (struct bt_http_header){BT_STR("cache-control"), BT_STR("no-cache")};
    if (ex->translate) {
        free(ex->fe_st);
        ex->fe_st = malloc(ex->r->fe->stream_size);
        if (!ex->fe_st) {
            set_failure(ex, NOT_UPSTREAM, BT_OUTCOME_SERVER_ERROR, false, 500, NULL,
                        "out of memory");
            finish_error(ex);
            return false;
        }
        ex->r->fe->stream_begin(ex->fe_st, ex->r, ex->r->model);
    }
    ex->state = EX_STREAM;
    if (bt_http_stream_begin(ex->hreq, 200, hs, n, BT_STR("text/event-stream")) == BT_OK)
        return true;
    ex->hreq = NULL;
    cleanup(ex);
    return false;
}

/* ---- upstream callbacks ---- */

static void copy_header(char *dst, size_t cap, struct bt_str v)
{
    size_t n = v.len < cap - 1 ? v.len : cap - 1;
    if (n) memcpy(dst, v.p, n);
    dst[n] = 0;
}

static void up_head(void *ud, int status, const struct bt_http_header *hs, size_t n)
{
    struct bt_exec *ex = ud;
    ex->up_status = status;
    bool sse = false;
    for (size_t i = 0; i < n; i++) {
        if (bt_str_caseeq_c(hs[i].name, "content-type"))
            sse = bt_str_index(hs[i].value, '/') >= 0 &&
                  memmem(hs[i].value.p, hs[i].value.len, "event-stream", 12) != NULL;
        else if (bt_str_caseeq_c(hs[i].name, "retry-after"))
            copy_header(ex->retry_after, sizeof(ex->retry_after), hs[i].value);
        else if (bt_str_caseeq_c(hs[i].name, "retry-after-ms"))
            copy_header(ex->retry_after_ms, sizeof(ex->retry_after_ms), hs[i].value);
    }
    ex->hedge_at_ms = 0; /* an attempt with a head is never hedged */
    if (status >= 200 && status < 300) {
        if (ex->hedge_live) hedge_drop(ex, true); /* the first byte came from here */
        ex->head_us = (bt_now_ns() - ex->attempt_ns) / 1000;
        if (ex->r->stream && sse) {
            if (!stream_begin(ex)) return;
        } else {
            ex->state = EX_BODY;
        }
    } else {
        ex->state = EX_ERRBODY;
        ex->resp.max = MAX_ERROR_BYTES;
    }
    arm(ex, cap_ms(ex, ex->prov->timeouts.idle_ms));
}

static void up_data(void *ud, const char *p, size_t n)
{
    struct bt_exec *ex = ud;
    arm(ex, cap_ms(ex, ex->prov->timeouts.idle_ms));
    if (ex->state == EX_STREAM) {
        ex->in = (struct bt_str){p, n};
        enum bt_err err = bt_sse_feed(&ex->sse, p, n);
        if (ex->state == EX_DONE) return; /* the client went away meanwhile */
        if (err == BT_ETOOBIG && !ex->stream_err) ex->stream_err = "a stream event exceeded the size cap";
        if (err) {
            bt_provider_cancel(&ex->call);
            ex->call_live = false;
            stream_error_event(ex, ex->stream_err ? ex->stream_err : "stream relay failed",
                               "upstream_invalid_stream");
            finish_stream(ex, ex->stream_err, BT_UPCLASS_INVALID);
            return;
        }
        if (ex->saw_error && !ex->saw_done) {
            /* An error inside a 200 stream: forward it, then end without the clean end marker. */
            bt_provider_cancel(&ex->call);
            ex->call_live = false;
            finish_stream(ex, "provider reported an error in the stream", BT_UPCLASS_5XX);
            return;
        }
        ex->in = BT_STR_NULL; /* spans stay valid until up_flush or up_done */
        return;
    }
    struct bt_buf *b = &ex->resp;
    if (bt_buf_append(b, p, n)) {
        bt_provider_cancel(&ex->call);
        ex->call_live = false;
        set_failure(ex, BT_UPCLASS_INVALID, BT_OUTCOME_SERVER_ERROR, true, 502,
                    "upstream_too_large",
                    "provider %s sent a reply larger than %u bytes", ex->prov->name,
                    (unsigned)b->max);
        finish_error(ex);
    }
}

/* Turns a provider's non-2xx reply, decoded by its adapter, into the failure the
 * client will see if no other deployment answers. */
static void record_upstream_status(struct bt_exec *ex)
{
    int s = ex->up_status;
    struct bt_arena a;
    bt_arena_init(&a, 4096, 4u << 20);
    struct bt_perror pe;
    ex->ad->decode_error(s, bt_buf_str(&ex->resp), &a, &pe);
    /* What the client gets: a provider's 4xx is about the request and passes
     * through; its own failures are baton's gateway errors. */
    int out = bt_exec_client_status(s, pe.cls);
    bool upstream = out >= 500;
    char upmsg[400] = "", code[48] = "", param[64] = "";
    if (pe.message.len) {
        upmsg[0] = ':';
        upmsg[1] = ' ';
        redact_into(upmsg + 2, sizeof(upmsg) - 2, pe.message, ex->prov->api_key);
    }
    if (pe.code.len) redact_into(code, sizeof(code), pe.code, ex->prov->api_key);
    if (pe.param.len) redact_into(param, sizeof(param), pe.param, ex->prov->api_key);
    bt_arena_free(&a);
    enum bt_metrics_upclass cls = bt_metrics_upclass_from_status(s);
    if (pe.cls == BT_OUTCOME_AUTH)
        set_failure(ex, cls, pe.cls, upstream, out, "upstream_auth",
                    "provider %s rejected baton's credentials (HTTP %d)%s", ex->prov->name, s, upmsg);
    else if (s >= 300 && s < 400)
        set_failure(ex, cls, pe.cls, upstream, out, "upstream_redirect",
                    "provider %s answered with a redirect (HTTP %d), which baton does not follow",
                    ex->prov->name, s);
    else
        set_failure(ex, cls, pe.cls, upstream, out, code[0] ? code : NULL,
                    "provider %s returned HTTP %d%s", ex->prov->name, s, upmsg);
    /* The client's request is what the provider refused: say which parameter. */
    if (out >= 400 && out < 500) memcpy(ex->fail.param, param, sizeof(param));
}

/* Counts the text of a reply that came without usage (its content events). */
static void count_reply_text(void *ud, const struct bt_event *ev)
{
    struct bt_exec *ex = ud;
    if (ev->type != BT_EV_TEXT && ev->type != BT_EV_REASONING && ev->type != BT_EV_TOOL_ARGS &&
        ev->type != BT_EV_REFUSAL)
        return;
    int64_t n = bt_cost_count_text(ev->text, ex->cur_model);
    if (n > 0) ex->reply_tokens += n;
}

struct reply_feed {
    struct bt_exec *ex;
    void *reply;
};

static void on_reply_event(void *ud, const struct bt_event *ev)
{
    struct reply_feed *f = ud;
    on_event(f->ex, ev);
    struct bt_event e2;
    struct bt_buf msg;
    bt_buf_init(&msg, 8 * sizeof(f->ex->ev_err_msg));
    f->ex->r->fe->reply_event(f->reply, redacted_error(f->ex, ev, &e2, &msg));
    bt_buf_free(&msg);
}

/* A whole reply from a provider of another API: encoded by the front end as
 * one reply, or as a stream when the client asked for one (the provider
 * answered with a whole reply anyway). */
static void finish_translated(struct bt_exec *ex, const struct bt_json_doc *doc)
{
    const struct bt_frontend *fe = ex->r->fe;
    if (ex->r->stream) {
        attempt_over(ex, true, BT_OUTCOME_OK);
        if (!stream_begin(ex)) return;
        ex->ad->decode_reply(doc, on_translated, ex);
        if (!ex->saw_done && !ex->saw_error)
            stream_error_event(ex, "the provider's reply was incomplete", "upstream_incomplete");
        finish_stream(ex, ex->saw_error ? "provider reported an error" : NULL, BT_UPCLASS_OTHER);
        return;
    }
    struct reply_feed f = {ex, fe->reply_new(ex->r, ex->r->model, MAX_REPLY_BYTES)};
    struct bt_buf body;
    bt_buf_init(&body, MAX_REPLY_BYTES + 4096);
    int status = 0;
    enum bt_err err = f.reply ? BT_OK : BT_ENOMEM;
    if (!err) {
        ex->ad->decode_reply(doc, on_reply_event, &f);
        err = fe->reply_write(f.reply, &body, &status);
    }
    fe->reply_free(f.reply);
    if (err) {
        bt_buf_free(&body);
        set_failure(ex, BT_UPCLASS_INVALID, BT_OUTCOME_SERVER_ERROR, true, 502,
                    "upstream_invalid_reply",
                    "provider %s returned a reply that cannot be translated (%s)",
                    ex->prov->name, bt_strerror(err));
        attempt_next(ex);
        return;
    }
    ex->replied = true;
    note_ok(ex);
    attempt_over(ex, true, BT_OUTCOME_OK);
    struct bt_http_header hs[7];
    char attempts[16], cost[BT_DECIMAL_MAX];
    size_t n = std_headers(ex, hs, attempts, sizeof(attempts));
    log_access(ex, status, status == 200 ? NULL : ex->ev_err_msg); /* settles usage and cost */
    if (ex->cost_known) {
        size_t cn = bt_cost_format(ex->cost_pusd, cost, sizeof(cost));
        hs[n++] = (struct bt_http_header){BT_STR("x-baton-cost-usd"), {cost, cn}};
    }
    if (ex->usage.estimated)
        hs[n++] = (struct bt_http_header){BT_STR("x-baton-cost-estimated"), BT_STR("true")};
    enum bt_err rerr = bt_http_respond(ex->hreq, status, hs, n, BT_STR("application/json"),
                                       bt_buf_str(&body));
    (void)rerr;
    ex->hreq = NULL;
    bt_buf_free(&body);
    cleanup(ex);
}

static void finish_body(struct bt_exec *ex)
{
    struct bt_arena a;
    bt_arena_init(&a, 16384, 0);
    struct bt_json_doc doc;
    if (bt_json_parse(&doc, ex->resp.p, ex->resp.len, &a, NULL, NULL) ||
        bt_json_type(&doc, 0) != BT_JSON_OBJECT) {
        bt_arena_free(&a);
        set_failure(ex, BT_UPCLASS_INVALID, BT_OUTCOME_SERVER_ERROR, true, 502,
                    "upstream_invalid_json",
                    "provider %s returned a reply that is not valid JSON", ex->prov->name);
        attempt_next(ex);
        return;
    }
    if (ex->translate) {
        finish_translated(ex, &doc);
        bt_arena_free(&a);
        return;
    }
    ex->ad->decode_reply(&doc, on_event, ex);
    ex->replied = true;
    if (!ex->usage.present) ex->ad->decode_reply(&doc, count_reply_text, ex); /* to estimate */
    note_ok(ex);
    attempt_over(ex, true, BT_OUTCOME_OK);
    bt_arena_free(&a);
    struct bt_http_header hs[7];
    char attempts[16], cost[BT_DECIMAL_MAX];
    size_t n = std_headers(ex, hs, attempts, sizeof(attempts));
    log_access(ex, 200, NULL); /* settles usage and cost: the header says what the log does */
    if (ex->cost_known) {
        size_t cn = bt_cost_format(ex->cost_pusd, cost, sizeof(cost));
        hs[n++] = (struct bt_http_header){BT_STR("x-baton-cost-usd"), {cost, cn}};
    }
    if (ex->usage.estimated)
        hs[n++] = (struct bt_http_header){BT_STR("x-baton-cost-estimated"), BT_STR("true")};
    enum bt_err err = bt_http_respond(ex->hreq, 200, hs, n, BT_STR("application/json"),
                                      bt_buf_str(&ex->resp));
    (void)err; /* the request is finished either way (see finish_error) */
    ex->hreq = NULL;
    cleanup(ex);
}

static void transport_failure(struct bt_exec *ex, enum bt_err err, const char *detail)
{
    enum bt_metrics_upclass cls = bt_metrics_upclass_from_err(err);
    if (err == BT_ETIMEDOUT)
        set_failure(ex, cls, BT_OUTCOME_TIMEOUT, true, 504, "upstream_timeout",
                    "provider %s timed out (%s)", ex->prov->name, detail ? detail : "timeout");
    else
        set_failure(ex, cls, BT_OUTCOME_CONNECTION, true, 502, "upstream_unreachable",
                    "provider %s could not be reached: %s", ex->prov->name,
                    detail && strcmp(detail, bt_strerror(err)) != 0 && strcmp(detail, "reset") != 0
                        ? detail
                        : bt_strerror(err));
}

static void up_done(void *ud, enum bt_err err, const char *detail)
{
    struct bt_exec *ex = ud;
    ex->call_live = false;
    memset(&ex->call, 0, sizeof(ex->call));
    disarm(ex);
    switch (ex->state) {
    case EX_WAIT_HEAD:
        transport_failure(ex, err ? err : BT_EPROTO, detail);
        attempt_next(ex);
        return;
    case EX_BODY:
        if (err) {
            if (err == BT_ETIMEDOUT) transport_failure(ex, err, detail);
            else
                set_failure(ex, bt_metrics_upclass_from_err(err), BT_OUTCOME_CONNECTION, true,
                            502, "upstream_reset",
                            "the reply from provider %s broke off: %s", ex->prov->name,
                            bt_strerror(err));
            attempt_next(ex);
        } else {
            finish_body(ex);
        }
        return;
    case EX_ERRBODY:
        record_upstream_status(ex);
        attempt_next(ex); /* the policy decides: another deployment, a fallback, or the end */
        return;
    case EX_STREAM:
        if (ex->saw_error) {
            finish_stream(ex, "provider reported an error in the stream", BT_UPCLASS_5XX);
        } else if (err) {
            char msg[300];
            snprintf(msg, sizeof(msg), "the stream from provider %s broke off: %s", ex->prov->name,
                     err == BT_ETIMEDOUT && detail ? detail : bt_strerror(err));
            stream_error_event(ex, msg, err == BT_ETIMEDOUT ? "upstream_timeout" : "upstream_reset");
            finish_stream(ex, msg, bt_metrics_upclass_from_err(err));
        } else if (!ex->saw_done || bt_sse_partial(&ex->sse)) {
            stream_error_event(ex, "the provider ended the stream before it was complete",
                               "upstream_incomplete");
            finish_stream(ex, "stream ended early", BT_UPCLASS_RESET);
        } else {
            finish_stream(ex, NULL, BT_UPCLASS_OTHER);
        }
        return;
    case EX_BACKOFF: /* no call is live while waiting */
    case EX_LIMITS:
    case EX_DONE: return;
    }
}

static void hedge_start(struct bt_exec *ex);

static void on_timer(uv_timer_t *t)
{
    struct bt_exec *ex = t->data;
    ex->timer_due_ms = 0;
    uint64_t now = uv_now(&ex->w->loop);
    if (ex->hedge_at_ms && ex->hedge_at_ms <= now) {
        ex->hedge_at_ms = 0;
        hedge_start(ex);
    }
    /* The deadline moved on since the timer was set, or a hedge is due first. */
    uint64_t due = ex->hedge_at_ms && ex->hedge_at_ms < ex->deadline_ms ? ex->hedge_at_ms
                                                                        : ex->deadline_ms;
    if (due > now) {
        uv_timer_start(&ex->timer, on_timer, due - now, 0);
        ex->timer_due_ms = due;
        return;
    }
    if (ex->state == EX_BACKOFF) {
        const struct bt_candidate *c = ex->waiting;
        ex->waiting = NULL;
        if (!attempt_start(ex, c)) attempt_next(ex);
        return;
    }
    const char *phase = timeout_phase(ex);
    if (ex->call_live) bt_provider_cancel(&ex->call);
    ex->call_live = false;
    if (ex->state == EX_STREAM) {
        char msg[200];
        snprintf(msg, sizeof(msg), "the stream from provider %s stalled (%s timeout)",
                 ex->prov->name, phase);
        stream_error_event(ex, msg, "upstream_timeout");
        finish_stream(ex, msg, BT_UPCLASS_TIMEOUT);
        return;
    }
    set_failure(ex, BT_UPCLASS_TIMEOUT, BT_OUTCOME_TIMEOUT, true, 504, "upstream_timeout",
                "provider %s did not answer in time (%s timeout)", ex->prov->name, phase);
    attempt_next(ex);
}

/* The upstream's read is over: what it relayed leaves now, in one chunk. */
static void up_flush(void *ud)
{
    struct bt_exec *ex = ud;
    if (ex->state == EX_STREAM) flush_out(ex);
}

static const struct bt_up_callbacks up_cbs = {up_head, up_data, up_done, up_flush};

/* ---- the hedge's callbacks: its own until promoted, then the exec's ---- */

/* The hedge failed before the first byte (a non-2xx head, or the transport):
 * counted like any failed attempt, noted, and over; the current attempt goes on
 * alone and no other hedge starts. */
static void hedge_failed(struct bt_exec *ex, enum bt_metrics_upclass cls, enum bt_outcome outcome)
{
    struct hedge *hg = ex->hg;
    ex->hedge_live = false;
    bt_limits_give_back(&hg->taken);
    if (ex->w->mshard) bt_metrics_upstream_error(ex->w->mshard, bt_str_c(hg->prov->name), cls);
    bt_health_end(hg->health, &ex->plan.model->breaker, true, outcome, 0, bt_health_now_ms());
    if (outcome == BT_OUTCOME_AUTH) ex->auth_skip |= 1u << hg->idx;
    route_note(ex, "%s%s=%s", ex->route_n++ ? ", " : "", hg->deployment,
               bt_outcome_name(outcome));
}

static void hedge_promote(struct bt_exec *ex);

static void hedge_head(void *ud, int status, const struct bt_http_header *hs, size_t n)
{
    struct hedge *hg = ud;
    struct bt_exec *ex = hg->ex;
    if (hg->promoted) {
        up_head(ex, status, hs, n);
        return;
    }
    if (status >= 200 && status < 300) {
        /* The hedge's first byte came first: the current attempt is cancelled. */
        if (ex->call_live) bt_provider_cancel(&ex->call);
        ex->call_live = false;
        note_hedged_out(ex, ex->health, ex->deployment);
        ex->health = NULL;
        hedge_promote(ex);
        up_head(ex, status, hs, n);
        return;
    }
    /* Its error body is not read: the class its status says is enough, as the
     * current attempt's outcome is what the client will see. */
    bt_provider_cancel(&hg->call);
    struct bt_arena a;
    bt_arena_init(&a, 1024, 1u << 20);
    struct bt_perror pe;
    hg->ad->decode_error(status, BT_STR(""), &a, &pe);
    bt_arena_free(&a);
    hedge_failed(ex, bt_metrics_upclass_from_status(status), pe.cls);
}

static void hedge_data(void *ud, const char *p, size_t n)
{
    struct hedge *hg = ud;
    if (hg->promoted) up_data(hg->ex, p, n); /* unpromoted, it ended at its head */
}

static void hedge_done(void *ud, enum bt_err err, const char *detail)
{
    struct hedge *hg = ud;
    if (hg->promoted) {
        up_done(hg->ex, err, detail);
        return;
    }
    if (!err) err = BT_EPROTO; /* done without a head */
    hedge_failed(hg->ex, bt_metrics_upclass_from_err(err),
                 err == BT_ETIMEDOUT ? BT_OUTCOME_TIMEOUT : BT_OUTCOME_CONNECTION);
}

static void hedge_flush(void *ud)
{
    struct hedge *hg = ud;
    if (hg->promoted) up_flush(hg->ex);
}

static const struct bt_up_callbacks hedge_cbs = {hedge_head, hedge_data, hedge_done, hedge_flush};

/* ---- attempts ---- */

/* The next candidate under the model's policy, or NULL when none is left: its own
 * deployments while the last failure is retryable (each once, or `retry.attempts`
 * attempts in all, cycling, skipping one that refused baton's credential), then
 * its fallback models' while the last failure's class is in `fallback.on`. */
static const struct bt_candidate *next_candidate(struct bt_exec *ex)
{
    const struct bt_plan *p = &ex->plan;
    const struct bt_model *m = p->model;
    bool first = ex->attempts == 0;
    if (!first && ex->cur_idx < p->n_own && ex->fail.cls == BT_OUTCOME_AUTH)
        ex->auth_skip |= 1u << ex->cur_idx;
    uint32_t max_own = m && m->retry.attempts ? m->retry.attempts : p->n_own;
    if (first || bt_exec_retryable(ex->fail.cls)) {
        while (ex->own_tries < max_own && p->n_own) {
            uint32_t i = ex->own_tries++ % p->n_own;
            if (ex->auth_skip & (1u << i)) {
                if (ex->auth_skip == (1u << p->n_own) - 1) break; /* all refused */
                max_own++; /* a skipped one costs no attempt */
                continue;
            }
            ex->cur_idx = i;
            return &p->c[i];
        }
    }
    if (!m || !(m->fallback.on & (1u << ex->fail.cls))) return NULL;
    if (!ex->fb_next) ex->fb_next = p->n_own;
    if (ex->fb_next >= p->n) return NULL;
    ex->cur_idx = ex->fb_next;
    return &p->c[ex->fb_next++];
}

/* The wait before retrying the model's own deployments (only with `retry`):
 * exponential backoff with full jitter, at least the provider's Retry-After, at
 * most max_backoff. 0 for a first attempt and for fallbacks. */
static uint64_t backoff_ms(struct bt_exec *ex)
{
    const struct bt_model *m = ex->plan.model;
    if (!m || !m->retry.attempts || ex->attempts == 0 || ex->cur_idx >= ex->plan.n_own) return 0;
    uint64_t cap = m->retry.backoff_ms;
    for (uint32_t k = 1; k + 1 < ex->own_tries && cap < m->retry.max_backoff_ms; k++) cap *= 2;
    if (cap > m->retry.max_backoff_ms) cap = m->retry.max_backoff_ms;
    uint64_t wait = cap ? (bt_now_ns() * 2654435761u >> 7) % (cap + 1) : 0;
    uint64_t ra = 0;
    if (ex->retry_after_ms[0]) ra = strtoull(ex->retry_after_ms, NULL, 10);
    else if (ex->retry_after[0]) ra = strtoull(ex->retry_after, NULL, 10) * 1000;
    if (ra > wait) wait = ra;
    return wait < m->retry.max_backoff_ms ? wait : m->retry.max_backoff_ms;
}

/* An attempt's total deadline at `p` in ms from now: the provider's, shortened
 * by what is left of the client's x-baton-timeout (which covers all attempts,
 * from the request's start). 0 when the client's time is spent. */
static uint64_t total_ms(struct bt_exec *ex, const struct bt_provider *p)
{
    uint64_t total = cap_ms(ex, p->timeouts.total_ms ? p->timeouts.total_ms : 600000);
    if (ex->r->timeout_ms) {
        uint64_t end = ex->hreq->start_ns + ex->r->timeout_ms * 1000000;
        uint64_t now = bt_now_ns();
        if (end <= now) return 0;
        if ((end - now) / 1000000 < total) total = (end - now) / 1000000 + 1;
    }
    return total;
}

/* Takes an attempt at `c` from its deployment's limits (its estimate of tokens
 * counted only when it has tpm). */
static bool take_deployment(struct bt_exec *ex, const struct bt_candidate *c,
                            struct bt_limits_taken *t, const char **which, int64_t *retry)
{
    const struct bt_limits *lim = c->limits;
    return bt_health_take_limits(c->health, lim, (int64_t)time(NULL),
                                 lim && lim->tpm ? bt_cost_estimate_tokens(ex->r) : 0, t, which,
                                 retry);
}

static void on_dep_answer(void *ud, enum bt_redis_verdict v, int64_t retry_after, int level);

/* The attempt's deployment is over its limit `which`: nothing was sent, and the
 * next candidate is tried, as after a provider's 429. */
static void deployment_over(struct bt_exec *ex, const char *which)
{
    set_failure(ex, NOT_UPSTREAM, BT_OUTCOME_RATE_LIMIT, true, 429, "rate_limit_exceeded",
                "deployment %s is over its %s limit", ex->deployment, which);
}

/* The hedge's deployment `c` is over its limit `which`: no hedge, noted. */
static void not_hedged(struct bt_exec *ex, const struct bt_candidate *c, const char *which)
{
    route_note(ex, "%s%s/%.*s=not_hedged_over_%s", ex->route_n++ ? ", " : "", c->provider->name,
               BT_STR_FMT(c->model), which);
}

/* Asks Redis to admit an attempt (or the hedge, `hedge`) at `c` to its
 * deployment's limits, when they are counted there (store.redis); the answer
 * (on_dep_answer) continues it. NULL when they are not (or memory ran out):
 * this process counts them. */
static struct dep_wait *dep_ask(struct bt_exec *ex, const struct bt_candidate *c, bool hedge,
                                uint32_t idx, uint32_t tries)
{
    const struct bt_limits *lim = c->limits;
    struct bt_redis_level lv;
    if (!ex->w->redis ||
        !bt_limits_level(lim, lim && lim->tpm ? bt_cost_estimate_tokens(ex->r) : 0, &lv))
        return NULL;
    struct dep_wait *d = malloc(sizeof(*d));
    if (!d) return NULL;
    int64_t now = (int64_t)time(NULL);
    *d = (struct dep_wait){.ex = ex, .redis = ex->w->redis, .c = c, .idx = idx, .tries = tries,
                           .hedge = hedge, .minute = now / 60, .lv = lv};
    snprintf(d->lv.scope, sizeof(d->lv.scope), "deployment:%s/%.*s", c->provider->name,
             BT_STR_FMT(c->model));
    if (hedge) ex->hedge_wait = d;
    else ex->dep_wait = d;
    bt_redis_admit(ex->w->redis, &d->lv, 1, now, on_dep_answer, d);
    return d;
}

static bool attempt_go(struct bt_exec *ex, const struct bt_candidate *c);
static void hedge_go(struct bt_exec *ex, uint32_t idx, uint32_t tries,
                     struct bt_limits_taken *taken);

static void on_dep_answer(void *ud, enum bt_redis_verdict v, int64_t retry_after, int level)
{
    (void)retry_after;
    (void)level;
    struct dep_wait *d = ud;
    struct bt_exec *ex = d->ex;
    if (!ex) { /* the request is over: what Redis took goes back */
        if (v == BT_REDIS_OK) bt_redis_charge(d->redis, &d->lv, 1, d->minute, 0, 0, true);
        free(d);
        return;
    }
    if (d->hedge) ex->hedge_wait = NULL;
    else ex->dep_wait = NULL;
    struct bt_limits_taken t = {0};
    const char *which = NULL;
    int64_t retry = 1;
    bool ok = false;
    if (v == BT_REDIS_OK) {
        ok = bt_limits_taken_shared(&t, d->redis, &d->lv, d->minute);
        which = "memory";
    } else if (v == BT_REDIS_DOWN && !ex->cfg->store.redis_closed) {
        ok = take_deployment(ex, d->c, &t, &which, &retry); /* open: this process counts */
    } else {
        which = v == BT_REDIS_DOWN ? "shared (Redis does not answer)" : bt_redis_verdict_limit(v);
    }
    const struct bt_candidate *c = d->c;
    uint32_t idx = d->idx, tries = d->tries;
    bool hedge = d->hedge;
    free(d);
    if (hedge) {
        if (ok) hedge_go(ex, idx, tries, &t);
        else not_hedged(ex, c, which);
        return;
    }
    if (!ok) {
        deployment_over(ex, which);
        attempt_next(ex);
        return;
    }
    ex->dep_taken = t;
    if (!attempt_go(ex, c)) attempt_next(ex);
}

/* Starts an attempt at `c`. False when it could not start (the failure is
 * recorded): the caller goes on to the next candidate. True when it started,
 * or waits for Redis to admit it to its deployment's limits (EX_LIMITS). */
static bool attempt_start(struct bt_exec *ex, const struct bt_candidate *c)
{
    bt_limits_give_back(&ex->dep_taken); /* an earlier attempt's, which used nothing */
    const struct bt_provider *p = c->provider;
    ex->prov = p;
    ex->ad = bt_adapter_for(p);
    ex->attempts++;
    snprintf(ex->deployment, sizeof(ex->deployment), "%s/%.*s", p->name, BT_STR_FMT(c->model));
    ex->cur_model = c->model;
    ex->price = c->price;
    /* the deployment's own limits: over one, the next candidate is tried, as
     * after a provider's 429 (but nothing was sent) */
    ex->state = EX_LIMITS;
    disarm(ex);
    if (dep_ask(ex, c, false, 0, 0)) return true;
    const char *which = NULL;
    int64_t retry = 1;
    if (!take_deployment(ex, c, &ex->dep_taken, &which, &retry)) {
        deployment_over(ex, which);
        return false;
    }
    return attempt_go(ex, c);
}

/* The attempt at `c`, admitted to its deployment's limits: encoded and sent. */
static bool attempt_go(struct bt_exec *ex, const struct bt_candidate *c)
{
    const struct bt_provider *p = c->provider;
    char why[300];
    if (!bt_provider_ready(p, why, sizeof(why))) {
        set_failure(ex, NOT_UPSTREAM, BT_OUTCOME_AUTH, true, 503, "provider_key_missing", "%s",
                    why);
        return false;
    }
    bt_buf_reset(&ex->resp);
    ex->resp.max = MAX_REPLY_BYTES;
    ex->retry_after[0] = ex->retry_after_ms[0] = 0;
    ex->translate = ex->ad->wire != ex->r->api;
    if (ex->translate && ex->r->fe->translate_check) {
        const char *param = NULL;
        if (ex->r->fe->translate_check(ex->r, why, sizeof(why), &param) == BT_EINVAL) {
            set_failure(ex, NOT_UPSTREAM, BT_OUTCOME_BAD_REQUEST, false, 400, "untranslatable",
                        "%s", why);
            if (param) snprintf(ex->fail.param, sizeof(ex->fail.param), "%s", param);
            return false;
        }
    }
    if (ex->translate && !ex->r->chat && ex->r->fe->chat) {
        /* a provider of another API: the canonical request, decoded once */
        struct bt_chat_error cerr = {{0}, {0}};
        enum bt_err cer = bt_request_chat(ex->r, ex->hreq->arena, &cerr);
        if (cer == BT_EINVAL) {
            set_failure(ex, NOT_UPSTREAM, BT_OUTCOME_BAD_REQUEST, false, 400, "untranslatable",
                        "%s", cerr.message);
            size_t pl = strnlen(cerr.param, sizeof(ex->fail.param) - 1);
            memcpy(ex->fail.param, cerr.param, pl);
            ex->fail.param[pl] = 0;
            return false;
        }
        if (cer) {
            set_failure(ex, NOT_UPSTREAM, BT_OUTCOME_SERVER_ERROR, false, 500, NULL,
                        "could not decode the request: %s", bt_strerror(cer));
            return false;
        }
    }
    enum bt_err err = bt_provider_encode(p, ex->r, c->model, ex->hreq->arena, &ex->body_up,
                                         &ex->added_usage);
    if (err == BT_EINVAL && ex->body_up.refused.message[0]) {
        /* the request has no form in this provider's API: the client's to fix */
        set_failure(ex, NOT_UPSTREAM, BT_OUTCOME_BAD_REQUEST, false, 400, "untranslatable",
                    "%s", ex->body_up.refused.message);
        size_t pl = strnlen(ex->body_up.refused.param, sizeof(ex->fail.param) - 1);
        memcpy(ex->fail.param, ex->body_up.refused.param, pl);
        ex->fail.param[pl] = 0;
        return false;
    }
    if (err) {
        set_failure(ex, NOT_UPSTREAM, BT_OUTCOME_SERVER_ERROR, false, 500, NULL,
                    "could not encode the request: %s", bt_strerror(err));
        return false;
    }
    ex->state = EX_WAIT_HEAD;
    ex->up_status = 0;
    ex->hedge_won = false;
    uint64_t total = total_ms(ex, p);
    if (!total) {
        set_failure(ex, NOT_UPSTREAM, BT_OUTCOME_TIMEOUT, true, 504, "request_timeout",
                    "the request's x-baton-timeout expired before %s could be tried", p->name);
        ex->own_tries = UINT32_MAX / 2; /* no more attempts: the client's time is spent */
        ex->fb_next = ex->plan.n;
        return false;
    }
    ex->total_deadline_ms = uv_now(&ex->w->loop) + total;
    arm(ex, cap_ms(ex, p->timeouts.first_byte_ms));
    err = bt_provider_start(p, &ex->w->loop, ex->w->up, ex->r->op, ex->r->stream, &ex->body_up,
                            &up_cbs, ex, &ex->call);
    if (err) {
        disarm(ex);
        set_failure(ex, NOT_UPSTREAM, BT_OUTCOME_SERVER_ERROR, false, 500, NULL,
                    "could not start the call: %s", bt_strerror(err));
        return false;
    }
    ex->call_live = true;
    ex->health = c->health;
    ex->attempt_ns = bt_now_ns();
    ex->head_us = 0;
    bt_health_begin(ex->health);
    const struct bt_model *m = ex->plan.model;
    if (m && m->hedge.after_ms && !ex->hedged && ex->cur_idx < ex->plan.n_own) {
        /* The same timer brings the hedge (on_timer) unless a head comes first. */
        ex->hedge_at_ms = uv_now(&ex->w->loop) + m->hedge.after_ms;
        if (ex->hedge_at_ms < ex->timer_due_ms) {
            uv_timer_start(&ex->timer, on_timer, m->hedge.after_ms, 0);
            ex->timer_due_ms = ex->hedge_at_ms;
        }
    }
    return true;
}

/* The hedge's candidate: the next of the model's own deployments in the
 * policy's order that is not the current attempt's nor refused baton's
 * credential, within retry's attempts (the hedge is one of them). Sets *idx
 * and the own tries it uses up; false when there is none. */
static bool hedge_pick(const struct bt_exec *ex, uint32_t *idx, uint32_t *tries)
{
    const struct bt_plan *p = &ex->plan;
    if (p->n_own < 2 || ex->cur_idx >= p->n_own) return false;
    uint32_t max_own = p->model->retry.attempts ? p->model->retry.attempts : p->n_own;
    for (uint32_t t = ex->own_tries; t < ex->own_tries + p->n_own && t < max_own; t++) {
        uint32_t i = t % p->n_own;
        if (i == ex->cur_idx || (ex->auth_skip & (1u << i))) continue;
        *idx = i;
        *tries = t + 1;
        return true;
    }
    return false;
}

/* `after` passed without a head: starts the request's one hedge beside the
 * current attempt. When it cannot start (no candidate, no key, the client's time
 * spent) the current attempt goes on alone, as without a hedge. */
static void hedge_start(struct bt_exec *ex)
{
    uint32_t idx, tries;
    if (ex->state != EX_WAIT_HEAD || ex->hedged || ex->hedge_live || !ex->hreq ||
        !hedge_pick(ex, &idx, &tries))
        return;
    ex->hedged = true;
    const struct bt_candidate *c = &ex->plan.c[idx];
    const struct bt_provider *p = c->provider;
    char why[300];
    uint64_t total = total_ms(ex, p);
    if (!total || !bt_provider_ready(p, why, sizeof(why))) return;
    /* a hedge counts against its deployment's limits like any attempt: over one,
     * no hedge */
    if (dep_ask(ex, c, true, idx, tries)) return; /* Redis answers: on_dep_answer */
    struct bt_limits_taken t;
    const char *which = NULL;
    int64_t retry = 1;
    if (!take_deployment(ex, c, &t, &which, &retry)) {
        not_hedged(ex, c, which);
        return;
    }
    hedge_go(ex, idx, tries, &t);
}

/* Starts the hedge at candidate idx, admitted to its deployment's limits
 * (*taken, given back when it cannot start, or when the request moved on
 * while Redis answered). */
static void hedge_go(struct bt_exec *ex, uint32_t idx, uint32_t tries,
                     struct bt_limits_taken *taken)
{
    const struct bt_candidate *c = &ex->plan.c[idx];
    const struct bt_provider *p = c->provider;
    uint64_t total = ex->hreq ? total_ms(ex, p) : 0;
    if (ex->state != EX_WAIT_HEAD || ex->hedge_live || !total ||
        (!ex->hg && !(ex->hg = calloc(1, sizeof(*ex->hg))))) {
        bt_limits_give_back(taken);
        return;
    }
    struct hedge *hg = ex->hg;
    *hg = (struct hedge){.ex = ex, .prov = p, .ad = bt_adapter_for(p), .health = c->health,
                         .idx = idx, .taken = *taken};
    if (bt_provider_encode(p, ex->r, c->model, ex->hreq->arena, &hg->body_up, &hg->added_usage) ||
        bt_provider_start(p, &ex->w->loop, ex->w->up, ex->r->op, ex->r->stream, &hg->body_up,
                          &hedge_cbs, hg, &hg->call)) {
        bt_limits_give_back(&hg->taken);
        return;
    }
    snprintf(hg->deployment, sizeof(hg->deployment), "%s/%.*s", p->name, BT_STR_FMT(c->model));
    uint64_t now = uv_now(&ex->w->loop), fb = cap_ms(ex, p->timeouts.first_byte_ms);
    hg->total_deadline_ms = now + total;
    hg->first_byte_ms = fb ? now + fb : 0;
    hg->attempt_ns = bt_now_ns();
    ex->own_tries = tries;
    ex->attempts++;
    ex->hedge_live = true;
    bt_health_begin(hg->health);
    bt_health_hedge(hg->health, BT_HEDGE_STARTED);
}

/* The hedge becomes the current attempt: it answered first (hedge_head), or
 * the current attempt failed while it ran (attempt_next). */
static void hedge_promote(struct bt_exec *ex)
{
    struct hedge *hg = ex->hg;
    ex->hedge_live = false;
    ex->hedge_won = true;
    hg->promoted = true;
    bt_limits_give_back(&ex->dep_taken); /* the attempt it replaces, cancelled or failed */
    ex->dep_taken = hg->taken;
    hg->taken = (struct bt_limits_taken){0};
    ex->prov = hg->prov;
    ex->ad = hg->ad;
    ex->added_usage = hg->added_usage;
    ex->call = hg->call;
    ex->call_live = true;
    ex->health = hg->health;
    ex->attempt_ns = hg->attempt_ns;
    ex->head_us = 0;
    ex->cur_idx = hg->idx;
    memcpy(ex->deployment, hg->deployment, sizeof(ex->deployment));
    ex->state = EX_WAIT_HEAD;
    ex->up_status = 0;
    bt_buf_reset(&ex->resp);
    ex->resp.max = MAX_REPLY_BYTES;
    ex->retry_after[0] = ex->retry_after_ms[0] = 0;
    ex->total_deadline_ms = hg->total_deadline_ms;
}

/* Ends a live hedge: `lost` when the current attempt answered first (counted
 * and noted as hedged out); otherwise the request is ending (nothing learned). */
static void hedge_drop(struct bt_exec *ex, bool lost)
{
    struct hedge *hg = ex->hg;
    ex->hedge_live = false;
    bt_limits_give_back(&hg->taken);
    bt_provider_cancel(&hg->call);
    if (lost) note_hedged_out(ex, hg->health, hg->deployment);
    else bt_health_end(hg->health, &ex->plan.model->breaker, false, BT_OUTCOME_OK, 0, 0);
}

static void attempt_next(struct bt_exec *ex)
{
    const struct bt_candidate *c;
    ex->hedge_at_ms = 0;
    if (ex->hedge_live && ex->hreq) {
        /* The current attempt failed before its first byte: the hedge goes on
         * alone, under its own deadlines from now. */
        hedge_promote(ex);
        uint64_t now = uv_now(&ex->w->loop), fb = ex->hg->first_byte_ms;
        disarm(ex);
        arm(ex, fb ? (fb > now ? fb - now : 1) : 0);
        return;
    }
    while (ex->hreq && (c = next_candidate(ex)) != NULL) {
        uint64_t wait = backoff_ms(ex);
        if (wait) {
            /* The timer brings the exec back (on_timer) to start `c`. */
            ex->waiting = c;
            ex->state = EX_BACKOFF;
            disarm(ex);
            ex->deadline_ms = uv_now(&ex->w->loop) + wait;
            ex->timer_due_ms = ex->deadline_ms;
            uv_timer_start(&ex->timer, on_timer, wait, 0);
            return;
        }
        if (attempt_start(ex, c)) return;
    }
    if (ex->hreq) finish_error(ex);
}

static void on_abort(struct bt_http_req *req, void *ud)
{
    struct bt_exec *ex = ud;
    if (ex->hreq) log_access(ex, 499, "client closed the connection");
    ex->hreq = NULL;
    cleanup(ex);
}

/* A write to the client failed (its connection broke): the same as the client
 * leaving, found by us instead of the server. The request is finished here. */
static void client_lost(struct bt_exec *ex)
{
    if (!ex->hreq) return;
    log_access(ex, 499, "the client's connection failed");
    bt_http_reset(ex->hreq);
    ex->hreq = NULL;
    cleanup(ex);
}

void bt_exec_run(struct bt_worker *w, struct bt_http_req *hreq, struct bt_config *cfg,
                 struct bt_request *r, const struct bt_plan *plan, const struct bt_payer *payer)
{
    struct bt_exec *ex = calloc(1, sizeof(*ex));
    if (!ex) {
        struct bt_limits_taken t = plan->model_taken;
        bt_limits_give_back(&t);
        if (payer && payer->nshared && w->redis)
            bt_redis_release(w->redis, payer->shared, payer->nshared);
        bt_http_reset(hreq);
        return;
    }
    ex->w = w;
    ex->hreq = hreq;
    ex->cfg = bt_config_ref(cfg);
    ex->r = r;
    ex->plan = *plan;
    if (payer) ex->payer = *payer;
    bt_buf_init(&ex->resp, MAX_REPLY_BYTES);
    bt_buf_init(&ex->out, MAX_SSE_EVENT * 2);
    bt_sse_init(&ex->sse, MAX_SSE_EVENT, on_sse, ex);
    bt_arena_init(&ex->scratch, 4096, 64u << 20);
    uv_timer_init(&w->loop, &ex->timer);
    ex->timer.data = ex;
    bt_http_on_abort(hreq, on_abort, ex);
    ex->next = w->execs;
    if (w->execs) w->execs->prev = ex;
    w->execs = ex;
    if (w->mshard) bt_metrics_inflight_add(w->mshard, 1);
    static const char *const strategies[] = {"weighted", "round_robin", "least_busy", "latency",
                                             "cost"};
    if (plan->model)
        route_note(ex, "%s%s (%s%s%s): ", plan->why, plan->model->name,
                   (unsigned)plan->model->strategy < 5 ? strategies[plan->model->strategy] : "?",
                   plan->model->hedge.after_ms ? ", hedge" : "",
                   plan->n > plan->n_own ? ", fallback" : "");
    else
        route_note(ex, "direct: ");
    attempt_next(ex);
}

void bt_exec_shutdown_all(struct bt_worker *w)
{
    while (w->execs) {
        struct bt_exec *ex = w->execs;
        if (ex->call_live) bt_provider_cancel(&ex->call);
        ex->call_live = false;
        disarm(ex);
        if (ex->state == EX_STREAM) {
            stream_error_event(ex, "baton is shutting down: the stream was cut short",
                               "server_shutdown");
            finish_stream(ex, "shutdown", BT_UPCLASS_OTHER);
        } else {
            set_failure(ex, NOT_UPSTREAM, BT_OUTCOME_SERVER_ERROR, false, 503, "server_shutdown",
                        "baton is shutting down; retry the request");
            finish_error(ex);
        }
        if (w->execs == ex) cleanup(ex); /* the response could not be finished */
    }
}
