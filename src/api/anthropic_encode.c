/* Canonical events -> Anthropic Messages SSE and Message objects
 * (api/anthropic_encode.h). Written by hand like api/openai_encode.c: escaped
 * bodies go between quotes as they are. */
#include "api/anthropic_encode.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json/jout.h"

const char *bt_anthropic_error_type(int status, enum bt_outcome cls)
{
    switch (cls) {
    case BT_OUTCOME_RATE_LIMIT: return "rate_limit_error";
    case BT_OUTCOME_TIMEOUT: return "timeout_error";
    case BT_OUTCOME_CONTEXT_WINDOW:
    case BT_OUTCOME_CONTENT_FILTER:
    case BT_OUTCOME_BAD_REQUEST: return status >= 500 ? "api_error" : "invalid_request_error";
    default: break;
    }
    switch (status) {
    case 401: return "authentication_error";
    case 402: return "billing_error";
    case 403: return "permission_error";
    case 404: return "not_found_error";
    case 413: return "request_too_large";
    case 429: return "rate_limit_error";
    case 504: return "timeout_error";
    case 529: return "overloaded_error";
    default: break;
    }
    if (status >= 500 || status == 0) return "api_error";
    return "invalid_request_error";
}

int bt_anthropic_outcome_status(enum bt_outcome o)
{
    switch (o) {
    case BT_OUTCOME_RATE_LIMIT: return 429;
    case BT_OUTCOME_TIMEOUT: return 504;
    case BT_OUTCOME_CONTEXT_WINDOW:
    case BT_OUTCOME_CONTENT_FILTER:
    case BT_OUTCOME_BAD_REQUEST: return 400;
    default: return 502;
    }
}

static const char *stop_reason(enum bt_finish f, bool called_tools)
{
    switch (f) {
    case BT_FINISH_LENGTH: return "max_tokens";
    case BT_FINISH_TOOL_CALLS: return "tool_use";
    case BT_FINISH_CONTENT_FILTER: return "refusal";
    case BT_FINISH_STOP_SEQUENCE: return "stop_sequence";
    case BT_FINISH_PAUSE_TURN: return "pause_turn";
    case BT_FINISH_NONE: return called_tools ? "tool_use" : "end_turn";
    default: return "end_turn";
    }
}

/* Anthropic's usage: input_tokens excludes cache reads and writes, which the
 * canonical prompt_tokens includes. `full`: the Message's usage object (every
 * member the spec requires); else message_delta's. */
static void put_usage(struct bt_jout *w, const struct bt_usage *u, bool full)
{
    int64_t in = u->prompt_tokens - u->cache_read_tokens - u->cache_write_tokens;
    BT_JOUT_LIT(w, "{\"input_tokens\":");
    bt_jout_int(w, in > 0 ? in : 0);
    BT_JOUT_LIT(w, ",\"output_tokens\":");
    bt_jout_int(w, u->completion_tokens);
    BT_JOUT_LIT(w, ",\"cache_creation_input_tokens\":");
    bt_jout_int(w, u->cache_write_tokens);
    BT_JOUT_LIT(w, ",\"cache_read_input_tokens\":");
    bt_jout_int(w, u->cache_read_tokens);
    BT_JOUT_LIT(w, ",\"server_tool_use\":null");
    if (full) BT_JOUT_LIT(w, ",\"cache_creation\":null,\"inference_geo\":null,\"service_tier\":null");
    BT_JOUT_LIT(w, "}");
}

/* `{"type":"error","error":{"type":..,"message":..}}`; `msg` an escaped body,
 * or `why` (our own text) when not NULL. */
static void put_error_obj(struct bt_jout *w, const char *type, struct bt_str msg, const char *why)
{
    BT_JOUT_LIT(w, "{\"type\":\"error\",\"error\":{\"type\":");
    bt_jout_escaped(w, bt_str_c(type));
    BT_JOUT_LIT(w, ",\"message\":");
    if (why) bt_jout_escaped(w, bt_str_c(why));
    else if (msg.len) bt_jout_quoted(w, msg);
    else BT_JOUT_LIT(w, "\"the provider reported an error\"");
    BT_JOUT_LIT(w, "},\"request_id\":null}");
}

/* ---- streaming ---- */

void bt_anthropic_stream_init(struct bt_anthropic_stream *e, const struct bt_anthropic_enc_opts *o)
{
    memset(e, 0, offsetof(struct bt_anthropic_stream, queue));
    e->opts = *o;
}

static void ev_begin(struct bt_jout *w, const char *name)
{
    BT_JOUT_LIT(w, "event: ");
    bt_jout_str(w, bt_str_c(name));
    BT_JOUT_LIT(w, "\ndata: {\"type\":\"");
    bt_jout_str(w, bt_str_c(name));
    BT_JOUT_LIT(w, "\"");
}

static void ev_end(struct bt_jout *w) { BT_JOUT_LIT(w, "}\n\n"); }

/* Copies an escaped value into a fixed field; false when it does not fit. */
static bool set_field(char *dst, size_t cap, size_t *len, struct bt_str v)
{
    if (v.len > cap) return false;
    if (v.len) memcpy(dst, v.p, v.len);
    *len = v.len;
    return true;
}

/* message_start (and a ping), from START's id and model or the options. */
static enum bt_err start_message(struct bt_anthropic_stream *e, struct bt_jout *w,
                                 const struct bt_event *start, char *why, size_t whycap)
{
    struct bt_str id = start ? start->id : BT_STR_NULL;
    struct bt_str model = start ? start->name : BT_STR_NULL;
    struct bt_buf tmp;
    bt_buf_init(&tmp, BT_ANTHROPIC_ENC_MODEL_MAX * 2);
    enum bt_err err = BT_OK;
    /* ids: "msg_" then the provider's id (or ours) */
    memcpy(e->id, "msg_", 4);
    if (!id.len && !(err = bt_json_escape(&tmp, e->opts.id)) && tmp.len >= 2)
        id = (struct bt_str){tmp.p + 1, tmp.len - 2};
    if (!err && bt_str_starts_with(id, BT_STR("msg_"))) id = (struct bt_str){id.p + 4, id.len - 4};
    if (!err && !set_field(e->id + 4, BT_ANTHROPIC_ENC_ID_MAX, &e->id_len, id)) err = BT_ETOOBIG;
    e->id_len += 4;
    bt_buf_reset(&tmp);
    if (!err && !model.len && !(err = bt_json_escape(&tmp, e->opts.model)) && tmp.len >= 2)
        model = (struct bt_str){tmp.p + 1, tmp.len - 2};
    if (!err && !set_field(e->model, sizeof(e->model), &e->model_len, model)) err = BT_ETOOBIG;
    bt_buf_free(&tmp);
    if (err == BT_ETOOBIG) snprintf(why, whycap, "the provider's message id or model is too long");
    if (err) return err == BT_ETOOBIG ? BT_EPROTO : err;
    ev_begin(w, "message_start");
    BT_JOUT_LIT(w, ",\"message\":{\"id\":\"");
    bt_jout_put(w, e->id, e->id_len);
    BT_JOUT_LIT(w, "\",\"type\":\"message\",\"role\":\"assistant\",\"content\":[],\"model\":\"");
    bt_jout_put(w, e->model, e->model_len);
    BT_JOUT_LIT(w, "\",\"stop_reason\":null,\"stop_sequence\":null,\"stop_details\":null,"
           "\"container\":null,\"usage\":");
    struct bt_usage u = e->usage;
    u.completion_tokens = 0;
    put_usage(w, &u, true);
    BT_JOUT_LIT(w, "}");
    ev_end(w);
    BT_JOUT_LIT(w, "event: ping\ndata: {\"type\":\"ping\"}\n\n");
    e->started = true;
    return BT_OK;
}

static void block_stop(struct bt_anthropic_stream *e, struct bt_jout *w)
{
    if (e->open == BT_ANB_NONE) return;
    ev_begin(w, "content_block_stop");
    BT_JOUT_LIT(w, ",\"index\":");
    bt_jout_int(w, e->nblocks - 1);
    ev_end(w);
    if (e->open == BT_ANB_TOOL) e->tools[e->open_tool].state = 2;
    e->open = BT_ANB_NONE;
}

static void block_start_head(struct bt_anthropic_stream *e, struct bt_jout *w)
{
    ev_begin(w, "content_block_start");
    BT_JOUT_LIT(w, ",\"index\":");
    bt_jout_int(w, e->nblocks++);
    BT_JOUT_LIT(w, ",\"content_block\":");
}

static void delta_head(struct bt_anthropic_stream *e, struct bt_jout *w, const char *type)
{
    ev_begin(w, "content_block_delta");
    BT_JOUT_LIT(w, ",\"index\":");
    bt_jout_int(w, e->nblocks - 1);
    BT_JOUT_LIT(w, ",\"delta\":{\"type\":\"");
    bt_jout_str(w, bt_str_c(type));
    BT_JOUT_LIT(w, "\",");
}

/* ---- held tool calls ---- */

enum { Q_ID = 0, Q_NAME, Q_ARGS };

struct qrec {
    uint8_t kind;
    uint32_t slot;
    uint32_t len;
};

static bool q_add(struct bt_anthropic_stream *e, uint8_t kind, uint32_t slot, struct bt_str s)
{
    struct qrec r = {kind, slot, (uint32_t)s.len};
    if (s.len > BT_ANTHROPIC_ENC_QUEUE || sizeof(r) + s.len > BT_ANTHROPIC_ENC_QUEUE - e->qlen)
        return false;
    memcpy(e->queue + e->qlen, &r, sizeof(r));
    if (s.len) memcpy(e->queue + e->qlen + sizeof(r), s.p, s.len);
    e->qlen += sizeof(r) + s.len;
    return true;
}

/* Writes each record of `slot` of `kind` (concatenated). */
static void q_put(const struct bt_anthropic_stream *e, struct bt_jout *w, uint32_t slot, uint8_t kind)
{
    size_t off = 0;
    while (off < e->qlen) {
        struct qrec r;
        memcpy(&r, e->queue + off, sizeof(r));
        if (r.slot == slot && r.kind == kind) bt_jout_put(w, e->queue + off + sizeof(r), r.len);
        off += sizeof(r) + r.len;
    }
}

static bool q_has(const struct bt_anthropic_stream *e, uint32_t slot, uint8_t kind)
{
    size_t off = 0;
    while (off < e->qlen) {
        struct qrec r;
        memcpy(&r, e->queue + off, sizeof(r));
        if (r.slot == slot && r.kind == kind && r.len) return true;
        off += sizeof(r) + r.len;
    }
    return false;
}

/* The content_block_start of a tool_use block (id and name as escaped bodies;
 * a call without an id gets `toolu_<message id>_<slot>`). */
static void tool_block_start(struct bt_anthropic_stream *e, struct bt_jout *w, uint32_t slot,
                             struct bt_str id, struct bt_str name, bool held)
{
    block_start_head(e, w);
    BT_JOUT_LIT(w, "{\"type\":\"tool_use\",\"id\":\"");
    if (held ? q_has(e, slot, Q_ID) : id.len > 0) {
        if (held) q_put(e, w, slot, Q_ID);
        else bt_jout_str(w, id);
    } else {
        BT_JOUT_LIT(w, "toolu_");
        bt_jout_put(w, e->id, e->id_len);
        BT_JOUT_LIT(w, "_");
        bt_jout_int(w, slot);
    }
    BT_JOUT_LIT(w, "\",\"name\":\"");
    if (held) q_put(e, w, slot, Q_NAME);
    else bt_jout_str(w, name);
    BT_JOUT_LIT(w, "\",\"input\":{},\"caller\":{\"type\":\"direct\"}}");
    ev_end(w);
}

/* Closes the open block, then writes every held call whole, in order. */
static void flush_held(struct bt_anthropic_stream *e, struct bt_jout *w)
{
    block_stop(e, w);
    for (uint32_t k = 0; k < e->ntools; k++) {
        if (e->tools[k].state != 0) continue;
        tool_block_start(e, w, k, BT_STR_NULL, BT_STR_NULL, true);
        if (q_has(e, k, Q_ARGS)) {
            delta_head(e, w, "input_json_delta");
            BT_JOUT_LIT(w, "\"partial_json\":\"");
            q_put(e, w, k, Q_ARGS);
            BT_JOUT_LIT(w, "\"}");
            ev_end(w);
        }
        e->open = BT_ANB_TOOL;
        e->open_tool = k;
        block_stop(e, w);
    }
    e->qlen = 0;
}

static bool any_held(const struct bt_anthropic_stream *e)
{
    for (uint32_t k = 0; k < e->ntools; k++)
        if (e->tools[k].state == 0) return true;
    return false;
}

/* Opens a block of `kind` unless one is open; a tool block open (or held calls)
 * is closed first. */
static void ensure_block(struct bt_anthropic_stream *e, struct bt_jout *w, enum bt_anthropic_block kind)
{
    if (e->open == kind) return;
    if (any_held(e)) flush_held(e, w);
    else block_stop(e, w);
    block_start_head(e, w);
    if (kind == BT_ANB_TEXT) BT_JOUT_LIT(w, "{\"type\":\"text\",\"text\":\"\",\"citations\":null}");
    else BT_JOUT_LIT(w, "{\"type\":\"thinking\",\"thinking\":\"\",\"signature\":\"\"}");
    ev_end(w);
    e->open = kind;
}

static long tool_slot(const struct bt_anthropic_stream *e, uint32_t src)
{
    for (uint32_t k = 0; k < e->ntools; k++)
        if (e->tools[k].src == src) return (long)k;
    return -1;
}

static enum bt_err encode(struct bt_anthropic_stream *e, struct bt_jout *w, const struct bt_event *ev,
                          char *why, size_t whycap)
{
    switch (ev->type) {
    case BT_EV_TEXT:
    case BT_EV_REFUSAL:
        if (!ev->text.len) return BT_OK;
        ensure_block(e, w, BT_ANB_TEXT);
        delta_head(e, w, "text_delta");
        BT_JOUT_LIT(w, "\"text\":");
        bt_jout_quoted(w, ev->text);
        BT_JOUT_LIT(w, "}");
        ev_end(w);
        return BT_OK;
    case BT_EV_REASONING:
        if (ev->redacted) {
            if (any_held(e)) flush_held(e, w);
            else block_stop(e, w);
            block_start_head(e, w);
            BT_JOUT_LIT(w, "{\"type\":\"redacted_thinking\",\"data\":");
            bt_jout_quoted(w, ev->text);
            BT_JOUT_LIT(w, "}");
            ev_end(w);
            e->open = BT_ANB_THINKING; /* closed at once below */
            block_stop(e, w);
            return BT_OK;
        }
        if (!ev->text.len && !ev->signature.len) return BT_OK;
        ensure_block(e, w, BT_ANB_THINKING);
        if (ev->text.len) {
            delta_head(e, w, "thinking_delta");
            BT_JOUT_LIT(w, "\"thinking\":");
            bt_jout_quoted(w, ev->text);
            BT_JOUT_LIT(w, "}");
            ev_end(w);
        }
        if (ev->signature.len) {
            delta_head(e, w, "signature_delta");
            BT_JOUT_LIT(w, "\"signature\":");
            bt_jout_quoted(w, ev->signature);
            BT_JOUT_LIT(w, "}");
            ev_end(w);
        }
        return BT_OK;
    case BT_EV_TOOL_START: {
        if (tool_slot(e, ev->tool_index) >= 0) return BT_OK; /* a repeat */
        if (e->ntools == BT_ANTHROPIC_ENC_MAX_TOOLS) {
            snprintf(why, whycap, "the provider sent more than %d tool calls",
                     BT_ANTHROPIC_ENC_MAX_TOOLS);
            return BT_EPROTO;
        }
        if (!ev->name.len) {
            snprintf(why, whycap, "the provider started a tool call without a name");
            return BT_EPROTO;
        }
        uint32_t k = e->ntools++;
        e->tools[k].src = ev->tool_index;
        if (e->open == BT_ANB_TOOL) { /* hold it until the open call's block closes */
            e->tools[k].state = 0;
            if (!q_add(e, Q_ID, k, ev->id) || !q_add(e, Q_NAME, k, ev->name)) {
                snprintf(why, whycap, "the provider's parallel tool calls are too large to reorder");
                return BT_EPROTO;
            }
            return BT_OK;
        }
        block_stop(e, w);
        tool_block_start(e, w, k, ev->id, ev->name, false);
        e->tools[k].state = 1;
        e->open = BT_ANB_TOOL;
        e->open_tool = k;
        return BT_OK;
    }
    case BT_EV_TOOL_ARGS: {
        long k = tool_slot(e, ev->tool_index);
        if (k < 0) {
            snprintf(why, whycap, "the provider sent arguments for a tool call it never started");
            return BT_EPROTO;
        }
        if (!ev->text.len) return BT_OK;
        if (e->tools[k].state == 0) {
            if (!q_add(e, Q_ARGS, (uint32_t)k, ev->text)) {
                snprintf(why, whycap, "the provider's parallel tool calls are too large to reorder");
                return BT_EPROTO;
            }
            return BT_OK;
        }
        if (e->tools[k].state == 2) {
            snprintf(why, whycap, "the provider sent arguments for a tool call after other content");
            return BT_EPROTO;
        }
        delta_head(e, w, "input_json_delta");
        BT_JOUT_LIT(w, "\"partial_json\":");
        bt_jout_quoted(w, ev->text);
        BT_JOUT_LIT(w, "}");
        ev_end(w);
        return BT_OK;
    }
    case BT_EV_FINISH:
        if (!e->finish) e->finish = ev->finish;
        return BT_OK;
    case BT_EV_DONE:
        flush_held(e, w);
        ev_begin(w, "message_delta");
        BT_JOUT_LIT(w, ",\"delta\":{\"stop_reason\":\"");
        bt_jout_str(w, bt_str_c(stop_reason(e->finish, e->ntools > 0)));
        BT_JOUT_LIT(w, "\",\"stop_sequence\":null,\"stop_details\":null,\"container\":null},\"usage\":");
        put_usage(w, &e->usage, false);
        ev_end(w);
        BT_JOUT_LIT(w, "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n");
        return BT_OK;
    default: return BT_OK;
    }
}

/* Writes `event: error` and ends the stream. */
static enum bt_err fail_stream(struct bt_anthropic_stream *e, struct bt_buf *out,
                               const struct bt_event *ev, const char *why)
{
    struct bt_jout w = {out, BT_OK};
    size_t before = out->len;
    BT_JOUT_LIT(&w, "event: error\ndata: ");
    put_error_obj(&w, why ? "api_error" : bt_anthropic_error_type(502, ev->outcome),
                  ev->err_message, why);
    BT_JOUT_LIT(&w, "\n\n");
    if (w.err) {
        out->len = before;
        return w.err;
    }
    e->state = BT_ANS_FAILED;
    return why ? BT_EPROTO : BT_OK;
}

enum bt_err bt_anthropic_stream_event(struct bt_anthropic_stream *e, const struct bt_event *ev,
                                      struct bt_buf *out)
{
    if (e->state != BT_ANS_OPEN) return BT_OK;
    if (ev->type == BT_EV_USAGE) {
        bt_usage_merge(&e->usage, &ev->usage);
        return BT_OK;
    }
    if (ev->type == BT_EV_ERROR) return fail_stream(e, out, ev, NULL);
    if (ev->type == BT_EV_BLOCK_STOP) return BT_OK;
    if (ev->type != BT_EV_DONE && ev->choice != 0) return BT_OK; /* one choice */
    /* Undo: everything before the held calls (whose length is in it). */
    char saved[offsetof(struct bt_anthropic_stream, queue)];
    memcpy(saved, e, sizeof(saved));
    size_t before = out->len;
    char why[160] = "";
    struct bt_jout w = {out, BT_OK};
    enum bt_err err = BT_OK;
    if (!e->started && ev->type != BT_EV_FINISH)
        err = start_message(e, &w, ev->type == BT_EV_START ? ev : NULL, why, sizeof(why));
    if (!err) err = encode(e, &w, ev, why, sizeof(why));
    if (err || w.err) {
        memcpy(e, saved, sizeof(saved));
        out->len = before;
        if (err == BT_EPROTO) {
            static const struct bt_event invalid = {.type = BT_EV_ERROR,
                                                    .outcome = BT_OUTCOME_SERVER_ERROR};
            return fail_stream(e, out, &invalid, why);
        }
        return err ? err : w.err;
    }
    if (ev->type == BT_EV_DONE) e->state = BT_ANS_DONE;
    return BT_OK;
}

/* ---- aggregation ---- */

void bt_anthropic_agg_init(struct bt_anthropic_agg *a, const struct bt_anthropic_enc_opts *o,
                           size_t max)
{
    memset(a, 0, sizeof(*a));
    a->opts = *o;
    a->max = max;
}

static enum bt_err keep(struct bt_anthropic_agg *a, struct bt_buf *b, struct bt_str s)
{
    return bt_buf_append_budget(b, s, &a->used, a->max);
}

static struct bt_anthropic_agg_block *new_block(struct bt_anthropic_agg *a,
                                                enum bt_anthropic_block kind)
{
    if (a->nblocks == a->cap) {
        uint32_t cap = a->cap ? a->cap * 2 : 4;
        if (cap > 4 * BT_ANTHROPIC_ENC_MAX_TOOLS) return NULL;
        void *p = realloc(a->blocks, cap * sizeof(*a->blocks));
        if (!p) return NULL;
        a->blocks = p;
        a->cap = cap;
    }
    struct bt_anthropic_agg_block *b = &a->blocks[a->nblocks++];
    memset(b, 0, sizeof(*b));
    b->kind = kind;
    return b;
}

static struct bt_anthropic_agg_block *last_of(struct bt_anthropic_agg *a,
                                              enum bt_anthropic_block kind)
{
    if (a->nblocks && a->blocks[a->nblocks - 1].kind == kind && !a->blocks[a->nblocks - 1].redacted)
        return &a->blocks[a->nblocks - 1];
    return new_block(a, kind);
}

static struct bt_anthropic_agg_block *agg_tool(struct bt_anthropic_agg *a, uint32_t src)
{
    for (uint32_t i = 0; i < a->nblocks; i++)
        if (a->blocks[i].kind == BT_ANB_TOOL && a->blocks[i].src == src) return &a->blocks[i];
    return NULL;
}

static enum bt_err agg_event(struct bt_anthropic_agg *a, const struct bt_event *ev)
{
    switch (ev->type) {
    case BT_EV_USAGE: bt_usage_merge(&a->usage, &ev->usage); return BT_OK;
    case BT_EV_ERROR:
        a->failed = true;
        a->outcome = ev->outcome;
        return keep(a, &a->err_message, ev->err_message);
    case BT_EV_DONE:
    case BT_EV_BLOCK_STOP: return BT_OK;
    default: break;
    }
    if (ev->choice != 0) return BT_OK;
    struct bt_anthropic_agg_block *b;
    switch (ev->type) {
    case BT_EV_START: {
        enum bt_err err = BT_OK;
        if (!a->id.len) err = keep(a, &a->id, ev->id);
        if (!err && !a->model.len) err = keep(a, &a->model, ev->name);
        return err;
    }
    case BT_EV_TEXT:
    case BT_EV_REFUSAL:
        if (!ev->text.len) return BT_OK;
        if (!(b = last_of(a, BT_ANB_TEXT))) return BT_ENOMEM;
        return keep(a, &b->text, ev->text);
    case BT_EV_REASONING: {
        if (!ev->text.len && !ev->signature.len) return BT_OK;
        b = ev->redacted ? new_block(a, BT_ANB_THINKING) : last_of(a, BT_ANB_THINKING);
        if (!b) return BT_ENOMEM;
        b->redacted = ev->redacted;
        enum bt_err err = keep(a, &b->text, ev->text);
        if (!err) err = keep(a, &b->sig, ev->signature);
        return err;
    }
    case BT_EV_TOOL_START: {
        if ((b = agg_tool(a, ev->tool_index))) return BT_OK;
        if (!(b = new_block(a, BT_ANB_TOOL))) return BT_EPROTO;
        b->src = ev->tool_index;
        enum bt_err err = keep(a, &b->id, ev->id);
        if (!err) err = keep(a, &b->name, ev->name);
        return err;
    }
    case BT_EV_TOOL_ARGS:
        if (!(b = agg_tool(a, ev->tool_index))) return BT_EPROTO;
        return keep(a, &b->text, ev->text);
    case BT_EV_FINISH:
        if (!a->finish) a->finish = ev->finish;
        return BT_OK;
    default: return BT_OK;
    }
}

enum bt_err bt_anthropic_agg_event(struct bt_anthropic_agg *a, const struct bt_event *ev)
{
    if (!a->err && !a->failed) a->err = agg_event(a, ev);
    return a->err;
}

void bt_anthropic_agg_cb(void *ud, const struct bt_event *ev)
{
    (void)bt_anthropic_agg_event(ud, ev);
}

/* A call's arguments (escaped JSON text) as an `input` object: "{}" when empty;
 * BT_EPROTO when they are not a JSON object. */
static enum bt_err put_input(struct bt_jout *w, const struct bt_buf *args)
{
    if (!args->len) {
        BT_JOUT_LIT(w, "{}");
        return BT_OK;
    }
    struct bt_buf v;
    bt_buf_init(&v, args->len + 1);
    enum bt_err err = bt_json_unescape(bt_buf_str(args), &v);
    struct bt_str s = bt_str_trim(bt_buf_str(&v));
    if (!err && (!s.len || s.p[0] != '{' || bt_json_validate(s.p, s.len, 0, NULL, 0)))
        err = BT_EPROTO;
    if (!err) bt_jout_str(w, s);
    bt_buf_free(&v);
    return err;
}

static bool any_tool(const struct bt_anthropic_agg *a)
{
    for (uint32_t i = 0; i < a->nblocks; i++)
        if (a->blocks[i].kind == BT_ANB_TOOL) return true;
    return false;
}

enum bt_err bt_anthropic_agg_write(const struct bt_anthropic_agg *a, struct bt_buf *out,
                                   int *status)
{
    if (a->err) return a->err;
    size_t before = out->len;
    struct bt_jout w = {out, BT_OK};
    if (a->failed) {
        *status = bt_anthropic_outcome_status(a->outcome);
        put_error_obj(&w, bt_anthropic_error_type(*status, a->outcome), bt_buf_str(&a->err_message),
                      NULL);
        if (w.err) out->len = before;
        return w.err;
    }
    *status = 200;
    BT_JOUT_LIT(&w, "{\"id\":\"msg_");
    struct bt_str id = bt_buf_str(&a->id);
    if (bt_str_starts_with(id, BT_STR("msg_"))) id = (struct bt_str){id.p + 4, id.len - 4};
    if (id.len) bt_jout_str(&w, id);
    else if (!w.err) {
        size_t q = out->len;
        w.err = bt_json_escape(out, a->opts.id);
        if (!w.err) { /* drop the quotes */
            memmove(out->p + q, out->p + q + 1, out->len - q - 2);
            out->len -= 2;
        }
    }
    BT_JOUT_LIT(&w, "\",\"type\":\"message\",\"role\":\"assistant\",\"model\":");
    if (a->model.len) bt_jout_quoted(&w, bt_buf_str(&a->model));
    else bt_jout_escaped(&w, a->opts.model);
    BT_JOUT_LIT(&w, ",\"content\":[");
    enum bt_err err = BT_OK;
    for (uint32_t i = 0; i < a->nblocks && !err; i++) {
        const struct bt_anthropic_agg_block *b = &a->blocks[i];
        if (i) BT_JOUT_LIT(&w, ",");
        switch (b->kind) {
        case BT_ANB_TEXT:
            BT_JOUT_LIT(&w, "{\"type\":\"text\",\"text\":");
            bt_jout_quoted(&w, bt_buf_str(&b->text));
            BT_JOUT_LIT(&w, ",\"citations\":null}");
            break;
        case BT_ANB_THINKING:
            if (b->redacted) {
                BT_JOUT_LIT(&w, "{\"type\":\"redacted_thinking\",\"data\":");
                bt_jout_quoted(&w, bt_buf_str(&b->text));
            } else {
                BT_JOUT_LIT(&w, "{\"type\":\"thinking\",\"thinking\":");
                bt_jout_quoted(&w, bt_buf_str(&b->text));
                BT_JOUT_LIT(&w, ",\"signature\":");
                bt_jout_quoted(&w, bt_buf_str(&b->sig));
            }
            BT_JOUT_LIT(&w, "}");
            break;
        case BT_ANB_TOOL:
            BT_JOUT_LIT(&w, "{\"type\":\"tool_use\",\"id\":");
            if (b->id.len) bt_jout_quoted(&w, bt_buf_str(&b->id));
            else {
                BT_JOUT_LIT(&w, "\"toolu_");
                bt_jout_int(&w, i);
                BT_JOUT_LIT(&w, "\"");
            }
            BT_JOUT_LIT(&w, ",\"name\":");
            bt_jout_quoted(&w, bt_buf_str(&b->name));
            BT_JOUT_LIT(&w, ",\"input\":");
            if (!w.err) err = put_input(&w, &b->text);
            BT_JOUT_LIT(&w, ",\"caller\":{\"type\":\"direct\"}}");
            break;
        default: break;
        }
    }
    BT_JOUT_LIT(&w, "],\"stop_reason\":\"");
    bt_jout_str(&w, bt_str_c(stop_reason(a->finish, any_tool(a))));
    BT_JOUT_LIT(&w, "\",\"stop_sequence\":null,\"stop_details\":null,\"container\":null,\"usage\":");
    put_usage(&w, &a->usage, true);
    BT_JOUT_LIT(&w, "}");
    if (err || w.err) {
        out->len = before;
        return err ? err : w.err;
    }
    return BT_OK;
}

void bt_anthropic_agg_free(struct bt_anthropic_agg *a)
{
    for (uint32_t i = 0; i < a->nblocks; i++) {
        struct bt_anthropic_agg_block *b = &a->blocks[i];
        bt_buf_free(&b->text);
        bt_buf_free(&b->sig);
        bt_buf_free(&b->id);
        bt_buf_free(&b->name);
    }
    free(a->blocks);
    bt_buf_free(&a->id);
    bt_buf_free(&a->model);
    bt_buf_free(&a->err_message);
    memset(a, 0, sizeof(*a));
}
