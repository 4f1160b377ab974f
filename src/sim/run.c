/* The simulator's call runner (sim.h): faults, the renderer table, and the
 * steps of a call run by one timer. See docs/internals/sim.md.
 *
 * bt_sim_start does all the work up front: it asks the renderer for the whole
 * reply (status, body bytes cut into the pieces a real server would flush: one
 * piece per SSE event, or the whole JSON body, each with a due time), applies
 * the fault, and turns the result into a list of steps (head, data, done). One
 * libuv timer then walks the steps: every step that is due runs in the same
 * timer callback, so a zero-latency simulator costs one loop iteration per
 * reply, and the timer is re-armed for the next due step. */
#include "sim/sim.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sim/rng.h"

#define SIM_SLOW_BYTE_MS 10.0 /* slow_bytes: one byte every 10 ms */

/* The wire formats the simulator speaks: one entry per renderer. */
static const struct bt_sim_renderer *const renderers[] = {
    &bt_sim_openai_renderer,
    &bt_sim_anthropic_renderer,
    &bt_sim_gemini_renderer,
};

const struct bt_sim_renderer *bt_sim_renderer_find(enum bt_api wire)
{
    for (size_t i = 0; i < sizeof renderers / sizeof renderers[0]; i++)
        if (renderers[i]->wire == wire) return renderers[i];
    return NULL;
}

/* ---- faults ---- */

static const char *const fault_names[] = {
    [BT_SIM_FAULT_NONE] = "none",
    [BT_SIM_FAULT_429] = "429",
    [BT_SIM_FAULT_500] = "500",
    [BT_SIM_FAULT_503] = "503",
    [BT_SIM_FAULT_NO_ANSWER] = "no_answer",
    [BT_SIM_FAULT_RESET_BEFORE] = "reset_before",
    [BT_SIM_FAULT_RESET_MID] = "reset_mid",
    [BT_SIM_FAULT_STALL_MID] = "stall_mid",
    [BT_SIM_FAULT_SLOW_BYTES] = "slow_bytes",
    [BT_SIM_FAULT_INVALID_JSON] = "invalid_json",
    [BT_SIM_FAULT_ERROR_EVENT] = "error_event",
};
#define SIM_NFAULTS (int)(sizeof fault_names / sizeof fault_names[0])

int bt_sim_fault_parse(struct bt_str name)
{
    struct bt_str n = bt_str_trim(name);
    for (int i = 0; i < SIM_NFAULTS; i++)
        if (bt_str_caseeq_c(n, fault_names[i])) return i;
    return -1;
}

void bt_sim_cfg_default(struct bt_sim_cfg *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    cfg->seed = 1;
    cfg->reply_tokens = 24;
    cfg->embedding_dims = 16;
    cfg->retry_after_s = 1;
}

/* Per-worker draw counter for fault rates. Drawing only from (seed, request)
 * would give a repeated identical request the same fate every time, so a rate of
 * 0.3 would mean "always" or "never"; mixing in how many draws this thread has
 * made makes rates hold over repeated requests while a single-threaded run (a
 * test, one worker) stays reproducible. Thread-local: it is per-worker runtime
 * state, never shared. */
static _Thread_local uint64_t sim_draws;

static int sim_draw_fault(const struct bt_sim_cfg *cfg, uint64_t h)
{
    const double rates[] = {
        [BT_SIM_FAULT_429] = cfg->fault_429,
        [BT_SIM_FAULT_500] = cfg->fault_500,
        [BT_SIM_FAULT_503] = cfg->fault_503,
        [BT_SIM_FAULT_NO_ANSWER] = cfg->fault_no_answer,
        [BT_SIM_FAULT_RESET_BEFORE] = cfg->fault_reset_before,
        [BT_SIM_FAULT_RESET_MID] = cfg->fault_reset_mid,
        [BT_SIM_FAULT_STALL_MID] = cfg->fault_stall_mid,
        [BT_SIM_FAULT_SLOW_BYTES] = cfg->fault_slow_bytes,
        [BT_SIM_FAULT_INVALID_JSON] = cfg->fault_invalid_json,
        [BT_SIM_FAULT_ERROR_EVENT] = cfg->fault_error_event,
    };
    double total = 0;
    for (int i = 1; i < SIM_NFAULTS; i++)
        if (rates[i] > 0) total += rates[i];
    if (!(total > 0)) return BT_SIM_FAULT_NONE;
    struct bt_sim_rng r = {bt_sim_mix64(cfg->seed ^ 0x5157u) ^ h ^ bt_sim_mix64(++sim_draws)};
    double u = bt_sim_rng_unit(&r), cum = 0;
    for (int i = 1; i < SIM_NFAULTS; i++) {
        if (!(rates[i] > 0)) continue;
        cum += rates[i];
        if (u < cum) return i;
    }
    return BT_SIM_FAULT_NONE;
}

/* ---- the rendered reply ---- */

void bt_sim_reply_init(struct bt_sim_reply *r)
{
    memset(r, 0, sizeof *r);
    r->status = 200;
    bt_buf_init(&r->body, BT_SIM_BODY_MAX);
}

void bt_sim_reply_free(struct bt_sim_reply *r)
{
    bt_buf_free(&r->body);
    free(r->pieces);
    r->pieces = NULL;
    r->npieces = r->cap = 0;
}

void bt_sim_reply_piece(struct bt_sim_reply *r, size_t off, size_t len, double due)
{
    if (r->err) return;
    if (r->npieces == r->cap) {
        size_t cap = r->cap ? r->cap * 2 : 16;
        struct bt_sim_piece *p = realloc(r->pieces, cap * sizeof *p);
        if (!p) {
            r->err = BT_ENOMEM;
            return;
        }
        r->pieces = p;
        r->cap = cap;
    }
    r->pieces[r->npieces++] = (struct bt_sim_piece){off, len, due};
}

void bt_sim_reply_emit(struct bt_sim_reply *r, struct bt_str bytes, double due)
{
    if (r->err) return;
    size_t off = r->body.len;
    enum bt_err e = bt_buf_append_str(&r->body, bytes);
    if (e) {
        r->err = e;
        return;
    }
    bt_sim_reply_piece(r, off, bytes.len, due);
}

void bt_sim_reply_data(struct bt_sim_reply *r, struct bt_str data, double due)
{
    if (r->err) return;
    size_t off = r->body.len;
    enum bt_err e = bt_buf_append_c(&r->body, "data: ");
    if (!e) e = bt_buf_append_str(&r->body, data);
    if (!e) e = bt_buf_append_c(&r->body, "\n\n");
    if (e) {
        r->err = e;
        return;
    }
    bt_sim_reply_piece(r, off, r->body.len - off, due);
}

bool bt_sim_reply_reset(struct bt_sim_reply *r, int status)
{
    if (r->err == BT_ENOMEM) return false;
    r->err = BT_OK;
    r->status = status;
    r->sse = false;
    r->npieces = 0;
    r->head_due = 0;
    bt_buf_reset(&r->body);
    return true;
}

/* ---- the call: steps run by one timer ---- */

enum step_kind { STEP_HEAD, STEP_DATA, STEP_DONE };

struct step {
    uint8_t kind;       /* enum step_kind */
    enum bt_err err;    /* STEP_DONE */
    double due;         /* ms after start */
    size_t off, len;    /* STEP_DATA: into body */
};

#define SIM_MAX_HEADERS 6

struct bt_sim_call {
    uv_loop_t *loop;
    uv_timer_t timer;
    struct bt_up_callbacks cb;
    void *ud;
    uint64_t t0;             /* uv_now at start */
    int status;
    struct bt_http_header headers[SIM_MAX_HEADERS];
    size_t nheaders;
    char retry_after[24], retry_after_ms[24], request_id[40];
    struct bt_buf body;      /* the rendered bytes, owned */
    struct step *steps;      /* malloc'd */
    size_t nsteps, cap, next;
    bool in_cb;              /* inside sim_run: cancel defers the close */
    bool cancelled, finished, closing;
};

static enum bt_err add_step(struct bt_sim_call *c, struct step s)
{
    if (c->nsteps == c->cap) {
        size_t cap = c->cap ? c->cap * 2 : 16;
        struct step *p = realloc(c->steps, cap * sizeof *p);
        if (!p) return BT_ENOMEM;
        c->steps = p;
        c->cap = cap;
    }
    c->steps[c->nsteps++] = s;
    return BT_OK;
}

static void add_header(struct bt_sim_call *c, const char *name, const char *value)
{
    if (c->nheaders < SIM_MAX_HEADERS)
        c->headers[c->nheaders++] = (struct bt_http_header){bt_str_c(name), bt_str_c(value)};
}

/* Keeps the first `keep` pieces (an SSE reply) or the first half of the bytes
 * (a single JSON body) and returns the due time of what was kept. */
static double truncate_reply(struct bt_sim_reply *r)
{
    if (r->npieces == 0) return r->head_due;
    if (r->sse && r->npieces > 1) {
        size_t keep = r->npieces / 2;
        if (keep == 0) keep = 1;
        r->npieces = keep;
    } else {
        r->npieces = 1;
        r->pieces[0].len = r->pieces[0].len / 2;
    }
    return r->pieces[r->npieces - 1].due;
}

/* Applies a body-level fault to the rendered reply and turns it into steps.
 * Status-level faults (429/500/503) were rendered as error replies already. */
static enum bt_err build_steps(struct bt_sim_call *c, struct bt_sim_reply *r, int fault,
                               const struct bt_sim_cfg *cfg, const struct bt_sim_renderer *rd)
{
    enum bt_err e = BT_OK;
    double end = r->head_due;
    switch (fault) {
    case BT_SIM_FAULT_NO_ANSWER:
        return BT_OK;
    case BT_SIM_FAULT_RESET_BEFORE:
        return add_step(c, (struct step){.kind = STEP_DONE, .err = BT_ECONNRESET,
                                         .due = (double)cfg->ttft_ms});
    case BT_SIM_FAULT_RESET_MID:
    case BT_SIM_FAULT_STALL_MID:
        truncate_reply(r);
        break;
    case BT_SIM_FAULT_INVALID_JSON:
        r->status = 200;
        if (r->sse && r->npieces >= 3) {
            /* A middle event replaced by a broken data line; the stream
             * otherwise completes, so only a parser that checks every event
             * notices. */
            size_t off = r->body.len;
            if ((e = bt_buf_append_c(&r->body, "data: {broken\n\n"))) return e;
            struct bt_sim_piece *p = &r->pieces[r->npieces / 2];
            p->off = off;
            p->len = r->body.len - off;
        } else if (r->npieces > 0) {
            r->sse = false;
            r->npieces = 1;
            r->pieces[0].len /= 2;
        }
        break;
    case BT_SIM_FAULT_ERROR_EVENT:
        if (r->sse && r->npieces > 1) {
            rd->render_stream_error(r, truncate_reply(r));
            if (r->err) return r->err;
        }
        break;
    default:
        break;
    }

    if ((e = add_step(c, (struct step){.kind = STEP_HEAD, .due = r->head_due}))) return e;
    if (fault == BT_SIM_FAULT_SLOW_BYTES) {
        double due = r->head_due;
        for (size_t i = 0; i < r->npieces && !e; i++)
            for (size_t b = 0; b < r->pieces[i].len && !e; b++) {
                due += SIM_SLOW_BYTE_MS;
                e = add_step(c, (struct step){.kind = STEP_DATA, .due = due,
                                              .off = r->pieces[i].off + b, .len = 1});
            }
        end = due;
    } else {
        for (size_t i = 0; i < r->npieces && !e; i++) {
            const struct bt_sim_piece *p = &r->pieces[i];
            double due = p->due < r->head_due ? r->head_due : p->due;
            if (p->len == 0) continue;
            e = add_step(c, (struct step){.kind = STEP_DATA, .due = due, .off = p->off,
                                          .len = p->len});
            end = due;
        }
    }
    if (e) return e;
    if (fault == BT_SIM_FAULT_STALL_MID) return BT_OK;
    return add_step(c, (struct step){.kind = STEP_DONE,
                                     .err = fault == BT_SIM_FAULT_RESET_MID ? BT_ECONNRESET
                                                                            : BT_OK,
                                     .due = end});
}

static void on_close(uv_handle_t *h)
{
    struct bt_sim_call *c = h->data;
    bt_buf_free(&c->body);
    free(c->steps);
    free(c);
}

static void sim_close(struct bt_sim_call *c)
{
    if (c->closing) return;
    c->closing = true;
    uv_timer_stop(&c->timer);
    uv_close((uv_handle_t *)&c->timer, on_close);
}

static void on_timer(uv_timer_t *t);

/* Runs every step that is due, then re-arms the timer for the next one. */
static void sim_run(struct bt_sim_call *c)
{
    double elapsed = (double)(uv_now(c->loop) - c->t0);
    c->in_cb = true;
    while (c->next < c->nsteps && !c->cancelled) {
        const struct step *s = &c->steps[c->next];
        if (s->due > elapsed) break;
        c->next++;
        if (s->kind == STEP_HEAD) {
            if (c->cb.on_head) c->cb.on_head(c->ud, c->status, c->headers, c->nheaders);
        } else if (s->kind == STEP_DATA) {
            if (c->cb.on_data) c->cb.on_data(c->ud, c->body.p + s->off, s->len);
            if (c->cb.on_flush && !c->cancelled) c->cb.on_flush(c->ud);
        } else {
            c->finished = true;
            if (c->cb.on_done) c->cb.on_done(c->ud, s->err, s->err ? "reset" : NULL);
            break;
        }
    }
    c->in_cb = false;
    if (c->cancelled || c->finished) {
        sim_close(c);
        return;
    }
    if (c->next < c->nsteps) {
        double wait = c->steps[c->next].due - elapsed;
        uv_timer_start(&c->timer, on_timer, wait > 0 ? (uint64_t)ceil(wait) : 0, 0);
    }
    /* Otherwise the call stalls (no_answer, stall_mid) until cancelled. */
}

static void on_timer(uv_timer_t *t)
{
    sim_run(t->data);
}

/* The error reply of each status-level fault. */
static const enum bt_sim_error fault_errors[] = {
    [BT_SIM_FAULT_429] = BT_SIM_ERR_RATE_LIMIT,
    [BT_SIM_FAULT_500] = BT_SIM_ERR_SERVER,
    [BT_SIM_FAULT_503] = BT_SIM_ERR_OVERLOADED,
};

struct bt_sim_call *bt_sim_start(uv_loop_t *loop, enum bt_api wire, const struct bt_sim_cfg *cfg,
                                 const struct bt_sim_request *req,
                                 const struct bt_up_callbacks *cb, void *ud)
{
    const struct bt_sim_renderer *rd = bt_sim_renderer_find(wire);
    if (!rd) return NULL;
    struct bt_sim_call *c = calloc(1, sizeof *c);
    if (!c) return NULL;
    struct bt_sim_reply r;
    bt_sim_reply_init(&r);
    c->loop = loop;
    c->cb = *cb;
    c->ud = ud;

    uint64_t h = bt_sim_hash(req->body.p, req->body.len, cfg->seed);
    h = bt_sim_mix64(h ^ bt_sim_hash(req->path.p, req->path.len, 0));
    int fault = req->fault >= 0 && req->fault < SIM_NFAULTS ? req->fault : sim_draw_fault(cfg, h);

    if (fault < (int)(sizeof fault_errors / sizeof fault_errors[0]) && fault_errors[fault]) {
        rd->render_error(&r, fault_errors[fault]);
    } else {
        rd->render_reply(cfg, req, h, &r);
        /* Without a stream there is no event to break: a failure is a 500. */
        if (fault == BT_SIM_FAULT_ERROR_EVENT && !r.sse && r.err != BT_ENOMEM)
            rd->render_error(&r, BT_SIM_ERR_SIMULATED);
    }
    if (r.err && r.err != BT_ENOMEM) rd->render_error(&r, BT_SIM_ERR_RENDER);
    if (r.err) goto fail;

    c->status = r.status;
    add_header(c, "content-type", r.sse ? "text/event-stream; charset=utf-8" : "application/json");
    if (r.sse) add_header(c, "cache-control", "no-cache");
    if (r.status == 429) {
        snprintf(c->retry_after, sizeof c->retry_after, "%llu",
                 (unsigned long long)cfg->retry_after_s);
        snprintf(c->retry_after_ms, sizeof c->retry_after_ms, "%llu",
                 (unsigned long long)cfg->retry_after_s * 1000);
        add_header(c, "retry-after", c->retry_after);
        add_header(c, "retry-after-ms", c->retry_after_ms);
    }
    snprintf(c->request_id, sizeof c->request_id, "req_%016llx", (unsigned long long)h);
    add_header(c, rd->request_id_header, c->request_id);
    if (fault > 0) add_header(c, "x-sim-fault", fault_names[fault]);

    if (build_steps(c, &r, fault, cfg, rd)) goto fail;
    free(r.pieces);
    c->body = r.body; /* header values point into c, never into the body */

    uv_timer_init(loop, &c->timer);
    c->timer.data = c;
    c->t0 = uv_now(loop);
    if (c->nsteps > 0) {
        double first = c->steps[0].due;
        uv_timer_start(&c->timer, on_timer, first > 0 ? (uint64_t)ceil(first) : 0, 0);
    }
    return c;
fail:
    bt_sim_reply_free(&r);
    free(c->steps);
    free(c);
    return NULL;
}

void bt_sim_cancel(struct bt_sim_call *call)
{
    if (!call || call->cancelled) return;
    call->cancelled = true;
    if (call->in_cb) return; /* sim_run closes once the callback returns */
    sim_close(call);
}
