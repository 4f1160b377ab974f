/* The simulated OpenAI-compatible provider. See docs/internals/sim.md.
 *
 * bt_sim_start does all the work up front: it parses the request, renders the
 * complete reply (status, headers, body bytes cut into the pieces a real server
 * would flush: one piece per SSE event, or the whole JSON body) with a due time
 * for each piece, applies the fault, and turns the result into a list of steps
 * (head, data, done). One libuv timer then walks the steps: every step that is
 * due runs in the same timer callback, so a zero-latency simulator costs one
 * loop iteration per reply, and the timer is re-armed for the next due step. */
#include "sim/sim.h"
#include "provider/provider.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/arena.h"
#include "core/buf.h"
#include "json/json.h"
#include "sim/rng.h"
#include "sim/schema.h"

#define SIM_BODY_MAX ((size_t)64 << 20)   /* cap on one rendered reply */
#define SIM_GEN_MAX ((size_t)4 << 20)     /* cap on one generated content / arguments */
#define SIM_ARENA_MAX ((size_t)1 << 30)   /* request parse memory */
#define SIM_MAX_CHOICES 128               /* OpenAI's limit for n */
#define SIM_MAX_DIMS 8192                 /* embedding dimensions */
#define SIM_MAX_INPUTS 2048               /* embedding inputs per request (OpenAI's limit) */
#define SIM_SLOW_BYTE_MS 10.0             /* slow_bytes: one byte every 10 ms */

/* ---- public helpers ---- */

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

struct piece {
    size_t off, len; /* into reply.body */
    double due;      /* ms after the start of the call */
};

struct reply {
    int status;
    bool sse;             /* text/event-stream: one piece per event */
    struct bt_buf body;
    struct piece *pieces; /* malloc'd */
    size_t npieces, cap;
    double head_due;      /* when the head is sent */
    enum bt_err err;      /* first rendering error, sticky */
};

static void reply_piece(struct reply *r, size_t off, size_t len, double due)
{
    if (r->err) return;
    if (r->npieces == r->cap) {
        size_t cap = r->cap ? r->cap * 2 : 16;
        struct piece *p = realloc(r->pieces, cap * sizeof *p);
        if (!p) {
            r->err = BT_ENOMEM;
            return;
        }
        r->pieces = p;
        r->cap = cap;
    }
    r->pieces[r->npieces++] = (struct piece){off, len, due};
}

/* Appends bytes to the body as one piece of their own. */
static void reply_emit(struct reply *r, struct bt_str bytes, double due)
{
    if (r->err) return;
    size_t off = r->body.len;
    enum bt_err e = bt_buf_append_str(&r->body, bytes);
    if (e) {
        r->err = e;
        return;
    }
    reply_piece(r, off, bytes.len, due);
}

/* Replaces whatever was rendered by an OpenAI error body. */
static void reply_error(struct reply *r, int status, struct bt_str msg, const char *type,
                        const char *param, const char *code)
{
    if (r->err == BT_ENOMEM) return;
    r->err = BT_OK;
    r->status = status;
    r->sse = false;
    r->npieces = 0;
    r->head_due = 0;
    bt_buf_reset(&r->body);
    struct bt_jw w;
    bt_jw_init(&w, &r->body);
    bt_openai_write_error(&w, msg, type, param, code);
    if (w.err) {
        r->err = w.err;
        return;
    }
    reply_piece(r, 0, r->body.len, 0);
}

static void reply_invalid(struct reply *r, const char *msg, const char *param, const char *code)
{
    reply_error(r, 400, bt_str_c(msg), "invalid_request_error", param, code);
}

/* A 400 whose message names something from the request. */
static void reply_invalidf(struct reply *r, const char *param, const char *code, const char *fmt,
                           ...) __attribute__((format(printf, 4, 5)));
static void reply_invalidf(struct reply *r, const char *param, const char *code, const char *fmt,
                           ...)
{
    struct bt_buf m;
    bt_buf_init(&m, 4096);
    va_list ap;
    va_start(ap, fmt);
    enum bt_err e = bt_buf_vprintf(&m, fmt, ap);
    va_end(ap);
    if (e == BT_ENOMEM) r->err = BT_ENOMEM;
    else reply_error(r, 400, bt_buf_str(&m), "invalid_request_error", param, code);
    bt_buf_free(&m);
}

static const char *json_type_name(int t)
{
    switch (t) {
    case BT_JSON_OBJECT: return "object";
    case BT_JSON_ARRAY: return "array";
    case BT_JSON_STRING: return "string";
    case BT_JSON_NUMBER: return "number";
    case BT_JSON_TRUE:
    case BT_JSON_FALSE: return "boolean";
    case BT_JSON_NULL: return "null";
    default: return "nothing";
    }
}

static bool is_bool(const struct bt_json_doc *d, int t)
{
    int ty = bt_json_type(d, t);
    return ty == BT_JSON_TRUE || ty == BT_JSON_FALSE;
}

/* ---- chat completions ---- */

enum out_kind { OUT_TEXT, OUT_TOOL, OUT_JSON };
enum tool_mode { TC_AUTO, TC_NONE, TC_REQUIRED, TC_NAMED };
enum rf_kind { RF_TEXT, RF_JSON_OBJECT, RF_JSON_SCHEMA };

struct sim_choice {
    enum out_kind kind;
    struct bt_buf text;   /* content, or the tool call's arguments */
    size_t *ends;         /* malloc'd: end offset of each fragment (token) in text */
    uint32_t nfrag, capfrag;
    const char *finish;   /* "stop", "length", "tool_calls" */
    struct bt_str tool;   /* tool name (OUT_TOOL) */
    char call_id[32];
};

struct chat {
    const struct bt_sim_cfg *cfg;
    struct bt_json_doc doc;
    struct bt_arena *arena;
    struct bt_str model;
    bool stream, include_usage;
    int tools;                /* token or -1 */
    enum tool_mode tool_mode;
    struct bt_str tool_name;  /* TC_NAMED */
    int tool_params;          /* parameters schema of the chosen tool, or -1 */
    struct bt_str chosen_tool;
    enum rf_kind rf;
    int rf_schema;            /* token or -1 */
    int64_t max_tokens;       /* 0 = no cap */
    int64_t n;
    bool last_is_tool;        /* last message has role "tool" */
    uint64_t prompt_tokens;
    uint64_t h;               /* request hash mixed with the seed */
    char id[48], fp[24];
    int64_t created;
    struct sim_choice *choices;
    struct bt_buf scratch;
};

static enum bt_err choice_frag(struct sim_choice *c, size_t end)
{
    if (c->nfrag == c->capfrag) {
        uint32_t cap = c->capfrag ? c->capfrag * 2 : 32;
        size_t *e = realloc(c->ends, cap * sizeof *e);
        if (!e) return BT_ENOMEM;
        c->ends = e;
        c->capfrag = cap;
    }
    c->ends[c->nfrag++] = end;
    return BT_OK;
}

/* Cuts JSON text into 2..6-byte fragments on UTF-8 boundaries, like the tokens a
 * model streams. */
static enum bt_err choice_split(struct sim_choice *c, struct bt_sim_rng *r)
{
    size_t i = 0, n = c->text.len;
    while (i < n) {
        size_t e = i + 2 + bt_sim_rng_below(r, 5);
        if (e > n) e = n;
        while (e < n && ((unsigned char)c->text.p[e] & 0xC0) == 0x80) e++;
        enum bt_err err = choice_frag(c, e);
        if (err) return err;
        i = e;
    }
    return BT_OK;
}

static enum bt_err choice_build(struct chat *ch, struct sim_choice *c, uint32_t index)
{
    struct bt_sim_rng r = {bt_sim_mix64(ch->h ^ bt_sim_mix64(index + 1))};
    enum bt_err err = BT_OK;
    bt_buf_init(&c->text, SIM_GEN_MAX);
    bool call_tool = ch->tools >= 0 && ch->tool_mode != TC_NONE &&
                     !(ch->tool_mode == TC_AUTO && ch->last_is_tool);
    if (call_tool) {
        c->kind = OUT_TOOL;
        c->finish = "tool_calls";
        c->tool = ch->chosen_tool;
        memcpy(c->call_id, "call_", 5);
        bt_sim_id_chars(c->call_id + 5, 24, bt_sim_rng_next(&r));
        if ((err = bt_sim_schema_value(&ch->doc, ch->tool_params, ch->arena, &r, &c->text)))
            return err;
        if (ch->tool_params < 0) {
            /* No parameters schema: an empty argument object, as models send. */
            bt_buf_reset(&c->text);
            if ((err = bt_buf_append_c(&c->text, "{}"))) return err;
        }
        if ((err = choice_split(c, &r))) return err;
    } else if (ch->rf != RF_TEXT) {
        c->kind = OUT_JSON;
        c->finish = "stop";
        if ((err = bt_sim_schema_value(&ch->doc, ch->rf == RF_JSON_SCHEMA ? ch->rf_schema : -1,
                                       ch->arena, &r, &c->text)))
            return err;
        if ((err = choice_split(c, &r))) return err;
    } else {
        c->kind = OUT_TEXT;
        c->finish = "stop";
        uint32_t nw = ch->cfg->reply_tokens;
        for (uint32_t i = 0; i < nw && !err; i++) {
            if (i) err = bt_buf_append_c(&c->text, " ");
            if (!err) err = bt_buf_append_c(&c->text, bt_sim_rng_word(&r));
            if (!err && i + 1 == nw) err = bt_buf_append_c(&c->text, ".");
            if (!err) err = choice_frag(c, c->text.len);
        }
        if (err) return err;
    }
    if (ch->max_tokens > 0 && c->nfrag > (uint64_t)ch->max_tokens) {
        c->nfrag = (uint32_t)ch->max_tokens;
        c->text.len = c->ends[c->nfrag - 1];
        c->finish = "length";
    }
    return BT_OK;
}

static void choices_free(struct chat *ch)
{
    if (!ch->choices) return;
    for (int64_t i = 0; i < ch->n; i++) {
        bt_buf_free(&ch->choices[i].text);
        free(ch->choices[i].ends);
    }
    free(ch->choices);
    ch->choices = NULL;
}

static struct bt_str frag(const struct sim_choice *c, uint32_t k)
{
    size_t start = k ? c->ends[k - 1] : 0;
    return (struct bt_str){c->text.p + start, c->ends[k] - start};
}

/* Adds up the content bytes of the messages: the prompt token estimate. */
static uint64_t prompt_estimate(const struct bt_json_doc *d, int msgs)
{
    uint64_t bytes = 0;
    for (int m = bt_json_first(d, msgs); m >= 0 && m < (int)d->toks[msgs].next;
         m = (int)d->toks[m].next) {
        int c = bt_json_get(d, m, "content");
        if (bt_json_type(d, c) == BT_JSON_STRING) {
            bytes += bt_json_str_raw(d, c).len;
        } else if (bt_json_type(d, c) == BT_JSON_ARRAY) {
            for (int p = bt_json_first(d, c); p >= 0 && p < (int)d->toks[c].next;
                 p = (int)d->toks[p].next) {
                int t = bt_json_get(d, p, "text");
                if (bt_json_type(d, t) == BT_JSON_STRING) bytes += bt_json_str_raw(d, t).len;
            }
        }
    }
    uint64_t t = (bytes + 3) / 4;
    return t ? t : 1;
}

static bool positive_int(const struct bt_json_doc *d, int t, int64_t *out)
{
    return bt_json_type(d, t) == BT_JSON_NUMBER && bt_json_int(d, t, out) == BT_OK;
}

/* Validates the request the way OpenAI does and fills `ch`. Returns false after
 * rendering the 400 into r. */
static bool chat_parse(struct chat *ch, struct reply *r)
{
    const struct bt_json_doc *d = &ch->doc;
    int t;
    if (bt_json_type(d, 0) != BT_JSON_OBJECT) {
        reply_invalid(r, "Invalid type for body: expected an object.", NULL, "invalid_type");
        return false;
    }
    t = bt_json_get(d, 0, "model");
    if (t < 0 || bt_json_type(d, t) == BT_JSON_NULL) {
        reply_invalid(r, "you must provide a model parameter", NULL, NULL);
        return false;
    }
    if (bt_json_type(d, t) != BT_JSON_STRING || bt_json_str(d, t, ch->arena, &ch->model)) {
        reply_invalidf(r, "model", "invalid_type",
                       "Invalid type for 'model': expected a string, but got %s instead.",
                       json_type_name(bt_json_type(d, t)));
        return false;
    }
    int msgs = bt_json_get(d, 0, "messages");
    if (msgs < 0) {
        reply_invalid(r, "Missing required parameter: 'messages'.", "messages",
                      "missing_required_parameter");
        return false;
    }
    if (bt_json_type(d, msgs) != BT_JSON_ARRAY) {
        reply_invalidf(r, "messages", "invalid_type",
                       "Invalid type for 'messages': expected an array of objects, but got %s "
                       "instead.",
                       json_type_name(bt_json_type(d, msgs)));
        return false;
    }
    if (d->toks[msgs].size == 0) {
        reply_invalid(r,
                      "Invalid 'messages': empty array. Expected an array with minimum length 1, "
                      "but got an empty array instead.",
                      "messages", "empty_array");
        return false;
    }
    uint32_t i = 0;
    int last = -1;
    for (int m = bt_json_first(d, msgs); m >= 0 && m < (int)d->toks[msgs].next;
         m = (int)d->toks[m].next, i++) {
        if (bt_json_type(d, m) != BT_JSON_OBJECT) {
            reply_invalidf(r, "messages", "invalid_type",
                           "Invalid type for 'messages[%u]': expected an object, but got %s "
                           "instead.",
                           i, json_type_name(bt_json_type(d, m)));
            return false;
        }
        if (bt_json_type(d, bt_json_get(d, m, "role")) != BT_JSON_STRING) {
            reply_invalidf(r, "messages", "missing_required_parameter",
                           "Missing required parameter: 'messages[%u].role'.", i);
            return false;
        }
        last = m;
    }
    ch->last_is_tool = bt_json_str_eq(d, bt_json_get(d, last, "role"), "tool");
    ch->prompt_tokens = prompt_estimate(d, msgs);

    t = bt_json_get(d, 0, "stream");
    if (t >= 0 && bt_json_type(d, t) != BT_JSON_NULL) {
        if (!is_bool(d, t)) {
            reply_invalidf(r, "stream", "invalid_type",
                           "Invalid type for 'stream': expected a boolean, but got %s instead.",
                           json_type_name(bt_json_type(d, t)));
            return false;
        }
        ch->stream = bt_json_type(d, t) == BT_JSON_TRUE;
    }
    t = bt_json_get(d, 0, "stream_options");
    if (t >= 0 && bt_json_type(d, t) != BT_JSON_NULL) {
        if (!ch->stream) {
            reply_invalid(r,
                          "The 'stream_options' parameter is only allowed when 'stream' is "
                          "enabled.",
                          "stream_options", NULL);
            return false;
        }
        ch->include_usage =
            bt_json_type(d, bt_json_get(d, t, "include_usage")) == BT_JSON_TRUE;
    }
    const char *mt_names[] = {"max_completion_tokens", "max_tokens"};
    for (size_t k = 0; k < 2; k++) {
        t = bt_json_get(d, 0, mt_names[k]);
        if (t < 0 || bt_json_type(d, t) == BT_JSON_NULL) continue;
        int64_t v = 0;
        if (!positive_int(d, t, &v) || v < 1) {
            reply_invalidf(r, mt_names[k], "integer_below_min_value",
                           "Invalid '%s': integer below minimum value. Expected a value >= 1, "
                           "but got %.*s instead.",
                           mt_names[k], BT_STR_FMT(bt_json_raw(d, t)));
            return false;
        }
        if (!ch->max_tokens) ch->max_tokens = v;
    }
    ch->n = 1;
    t = bt_json_get(d, 0, "n");
    if (t >= 0 && bt_json_type(d, t) != BT_JSON_NULL) {
        if (!positive_int(d, t, &ch->n) || ch->n < 1 || ch->n > SIM_MAX_CHOICES) {
            reply_invalidf(r, "n", "invalid_value",
                           "Invalid 'n': expected an integer between 1 and %d.", SIM_MAX_CHOICES);
            return false;
        }
    }

    /* tools and tool_choice */
    ch->tools = -1;
    ch->tool_params = -1;
    t = bt_json_get(d, 0, "tools");
    if (t >= 0 && bt_json_type(d, t) != BT_JSON_NULL) {
        if (bt_json_type(d, t) != BT_JSON_ARRAY) {
            reply_invalidf(r, "tools", "invalid_type",
                           "Invalid type for 'tools': expected an array, but got %s instead.",
                           json_type_name(bt_json_type(d, t)));
            return false;
        }
        i = 0;
        for (int e = bt_json_first(d, t); e >= 0 && e < (int)d->toks[t].next;
             e = (int)d->toks[e].next, i++) {
            int fn = bt_json_get(d, e, "function");
            if (bt_json_type(d, fn) != BT_JSON_OBJECT) {
                reply_invalidf(r, "tools", "missing_required_parameter",
                               "Missing required parameter: 'tools[%u].function'.", i);
                return false;
            }
            if (bt_json_type(d, bt_json_get(d, fn, "name")) != BT_JSON_STRING) {
                reply_invalidf(r, "tools", "missing_required_parameter",
                               "Missing required parameter: 'tools[%u].function.name'.", i);
                return false;
            }
        }
        if (d->toks[t].size > 0) ch->tools = t;
    }
    t = bt_json_get(d, 0, "tool_choice");
    ch->tool_mode = TC_AUTO;
    if (t >= 0 && bt_json_type(d, t) != BT_JSON_NULL) {
        if (bt_json_str_eq(d, t, "none")) {
            ch->tool_mode = TC_NONE;
        } else if (bt_json_str_eq(d, t, "auto")) {
            ch->tool_mode = TC_AUTO;
        } else if (bt_json_str_eq(d, t, "required")) {
            ch->tool_mode = TC_REQUIRED;
        } else if (bt_json_type(d, t) == BT_JSON_OBJECT &&
                   bt_json_type(d, bt_json_path(d, t, "function", "name", NULL)) ==
                       BT_JSON_STRING) {
            ch->tool_mode = TC_NAMED;
            if (bt_json_str(d, bt_json_path(d, t, "function", "name", NULL), ch->arena,
                            &ch->tool_name)) {
                r->err = BT_ENOMEM;
                return false;
            }
        } else {
            reply_invalid(r,
                          "Invalid value for 'tool_choice': expected 'none', 'auto', 'required' "
                          "or a function object.",
                          "tool_choice", "invalid_value");
            return false;
        }
        if (ch->tools < 0 && ch->tool_mode != TC_NONE) {
            reply_invalid(r,
                          "Invalid value for 'tool_choice': 'tool_choice' is only allowed when "
                          "'tools' are specified.",
                          "tool_choice", NULL);
            return false;
        }
    }
    if (ch->tools >= 0) {
        int chosen = -1;
        for (int e = bt_json_first(d, ch->tools); e >= 0 && e < (int)d->toks[ch->tools].next;
             e = (int)d->toks[e].next) {
            int name = bt_json_path(d, e, "function", "name", NULL);
            if (ch->tool_mode != TC_NAMED) {
                chosen = e;
                break;
            }
            struct bt_str nm;
            if (bt_json_str(d, name, ch->arena, &nm) == BT_OK && bt_str_eq(nm, ch->tool_name)) {
                chosen = e;
                break;
            }
        }
        if (chosen < 0) {
            reply_invalidf(r, "tool_choice", NULL,
                           "Tool choice 'function' '%.*s' not found in 'tools' parameter.",
                           BT_STR_FMT(ch->tool_name));
            return false;
        }
        if (bt_json_str(d, bt_json_path(d, chosen, "function", "name", NULL), ch->arena,
                        &ch->chosen_tool)) {
            r->err = BT_ENOMEM;
            return false;
        }
        ch->tool_params = bt_json_path(d, chosen, "function", "parameters", NULL);
        if (bt_json_type(d, ch->tool_params) != BT_JSON_OBJECT) ch->tool_params = -1;
    }

    /* response_format */
    ch->rf = RF_TEXT;
    ch->rf_schema = -1;
    t = bt_json_get(d, 0, "response_format");
    if (t >= 0 && bt_json_type(d, t) != BT_JSON_NULL) {
        int ty = bt_json_get(d, t, "type");
        if (bt_json_str_eq(d, ty, "json_schema")) {
            int js = bt_json_get(d, t, "json_schema");
            if (bt_json_type(d, js) != BT_JSON_OBJECT) {
                reply_invalid(r, "Missing required parameter: 'response_format.json_schema'.",
                              "response_format.json_schema", "missing_required_parameter");
                return false;
            }
            ch->rf = RF_JSON_SCHEMA;
            ch->rf_schema = bt_json_get(d, js, "schema");
            if (bt_json_type(d, ch->rf_schema) != BT_JSON_OBJECT) ch->rf_schema = -1;
        } else if (bt_json_str_eq(d, ty, "json_object")) {
            ch->rf = RF_JSON_OBJECT;
        } else if (!bt_json_str_eq(d, ty, "text")) {
            reply_invalid(r,
                          "Invalid value for 'response_format.type': expected one of 'text', "
                          "'json_object' or 'json_schema'.",
                          "response_format.type", "invalid_value");
            return false;
        }
    }
    return true;
}

static void write_usage(struct bt_jw *w, uint64_t prompt, uint64_t completion)
{
    bt_jw_obj_begin(w);
    bt_jw_key(w, "prompt_tokens");
    bt_jw_int(w, (int64_t)prompt);
    bt_jw_key(w, "completion_tokens");
    bt_jw_int(w, (int64_t)completion);
    bt_jw_key(w, "total_tokens");
    bt_jw_int(w, (int64_t)(prompt + completion));
    bt_jw_key(w, "prompt_tokens_details");
    bt_jw_obj_begin(w);
    bt_jw_key(w, "cached_tokens");
    bt_jw_int(w, 0);
    bt_jw_key(w, "audio_tokens");
    bt_jw_int(w, 0);
    bt_jw_obj_end(w);
    bt_jw_key(w, "completion_tokens_details");
    bt_jw_obj_begin(w);
    bt_jw_key(w, "reasoning_tokens");
    bt_jw_int(w, 0);
    bt_jw_key(w, "audio_tokens");
    bt_jw_int(w, 0);
    bt_jw_key(w, "accepted_prediction_tokens");
    bt_jw_int(w, 0);
    bt_jw_key(w, "rejected_prediction_tokens");
    bt_jw_int(w, 0);
    bt_jw_obj_end(w);
    bt_jw_obj_end(w);
}

static uint64_t completion_tokens(const struct chat *ch)
{
    uint64_t n = 0;
    for (int64_t i = 0; i < ch->n; i++) n += ch->choices[i].nfrag;
    return n;
}

static uint32_t max_frags(const struct chat *ch)
{
    uint32_t m = 0;
    for (int64_t i = 0; i < ch->n; i++)
        if (ch->choices[i].nfrag > m) m = ch->choices[i].nfrag;
    return m;
}

static double token_interval(const struct bt_sim_cfg *cfg)
{
    return cfg->tokens_per_sec > 0 ? 1000.0 / cfg->tokens_per_sec : 0;
}

static void write_common(struct chat *ch, struct bt_jw *w, const char *object)
{
    bt_jw_key(w, "id");
    bt_jw_cstr(w, ch->id);
    bt_jw_key(w, "object");
    bt_jw_cstr(w, object);
    bt_jw_key(w, "created");
    bt_jw_int(w, ch->created);
    bt_jw_key(w, "model");
    bt_jw_str(w, ch->model);
    bt_jw_key(w, "service_tier");
    bt_jw_cstr(w, "default");
    bt_jw_key(w, "system_fingerprint");
    bt_jw_cstr(w, ch->fp);
}

static void chat_render_full(struct chat *ch, struct reply *r)
{
    struct bt_jw w;
    bt_jw_init(&w, &r->body);
    bt_jw_obj_begin(&w);
    write_common(ch, &w, "chat.completion");
    bt_jw_key(&w, "choices");
    bt_jw_arr_begin(&w);
    for (int64_t i = 0; i < ch->n; i++) {
        const struct sim_choice *c = &ch->choices[i];
        bt_jw_obj_begin(&w);
        bt_jw_key(&w, "index");
        bt_jw_int(&w, i);
        bt_jw_key(&w, "message");
        bt_jw_obj_begin(&w);
        bt_jw_key(&w, "role");
        bt_jw_cstr(&w, "assistant");
        bt_jw_key(&w, "content");
        if (c->kind == OUT_TOOL) bt_jw_null(&w);
        else bt_jw_str(&w, bt_buf_str(&c->text));
        bt_jw_key(&w, "refusal");
        bt_jw_null(&w);
        if (c->kind == OUT_TOOL) {
            bt_jw_key(&w, "tool_calls");
            bt_jw_arr_begin(&w);
            bt_jw_obj_begin(&w);
            bt_jw_key(&w, "id");
            bt_jw_cstr(&w, c->call_id);
            bt_jw_key(&w, "type");
            bt_jw_cstr(&w, "function");
            bt_jw_key(&w, "function");
            bt_jw_obj_begin(&w);
            bt_jw_key(&w, "name");
            bt_jw_str(&w, c->tool);
            bt_jw_key(&w, "arguments");
            bt_jw_str(&w, bt_buf_str(&c->text));
            bt_jw_obj_end(&w);
            bt_jw_obj_end(&w);
            bt_jw_arr_end(&w);
        }
        bt_jw_key(&w, "annotations");
        bt_jw_arr_begin(&w);
        bt_jw_arr_end(&w);
        bt_jw_obj_end(&w);
        bt_jw_key(&w, "logprobs");
        bt_jw_null(&w);
        bt_jw_key(&w, "finish_reason");
        bt_jw_cstr(&w, c->finish);
        bt_jw_obj_end(&w);
    }
    bt_jw_arr_end(&w);
    bt_jw_key(&w, "usage");
    write_usage(&w, ch->prompt_tokens, completion_tokens(ch));
    bt_jw_obj_end(&w);
    if (w.err) {
        r->err = w.err;
        return;
    }
    /* The whole body arrives once the model has generated every token. */
    uint32_t mf = max_frags(ch);
    double due = (double)ch->cfg->ttft_ms + (mf ? mf - 1 : 0) * token_interval(ch->cfg);
    r->head_due = due;
    reply_piece(r, 0, r->body.len, due);
}

/* Chunk framing: the common fields, then the caller's choices, then (with
 * include_usage) "usage":null, and the SSE frame around it. */
static void chunk_begin(struct chat *ch, struct bt_jw *w)
{
    bt_buf_reset(&ch->scratch);
    bt_jw_init(w, &ch->scratch);
    bt_jw_obj_begin(w);
    write_common(ch, w, "chat.completion.chunk");
    bt_jw_key(w, "choices");
    bt_jw_arr_begin(w);
}

static void chunk_end(struct chat *ch, struct bt_jw *w, struct reply *r, double due)
{
    bt_jw_arr_end(w);
    if (ch->include_usage) {
        bt_jw_key(w, "usage");
        bt_jw_null(w);
    }
    bt_jw_obj_end(w);
    if (w->err) {
        if (!r->err) r->err = w->err;
        return;
    }
    if (r->err) return;
    size_t off = r->body.len;
    enum bt_err e = bt_buf_append_c(&r->body, "data: ");
    if (!e) e = bt_buf_append_str(&r->body, bt_buf_str(&ch->scratch));
    if (!e) e = bt_buf_append_c(&r->body, "\n\n");
    if (e) {
        r->err = e;
        return;
    }
    reply_piece(r, off, r->body.len - off, due);
}

static void choice_open(struct bt_jw *w, int64_t index)
{
    bt_jw_obj_begin(w);
    bt_jw_key(w, "index");
    bt_jw_int(w, index);
    bt_jw_key(w, "delta");
    bt_jw_obj_begin(w);
}

static void choice_close(struct bt_jw *w, const char *finish)
{
    bt_jw_obj_end(w); /* delta */
    bt_jw_key(w, "logprobs");
    bt_jw_null(w);
    bt_jw_key(w, "finish_reason");
    if (finish) bt_jw_cstr(w, finish);
    else bt_jw_null(w);
    bt_jw_obj_end(w);
}

static void chat_render_stream(struct chat *ch, struct reply *r)
{
    const double ttft = (double)ch->cfg->ttft_ms, iv = token_interval(ch->cfg);
    struct bt_jw w;
    r->sse = true;
    r->head_due = ttft;
    /* First chunk of each choice: the role (and for a tool call its index, id,
     * type and name), as the SDKs' strict stream helpers require. */
    for (int64_t i = 0; i < ch->n; i++) {
        const struct sim_choice *c = &ch->choices[i];
        chunk_begin(ch, &w);
        choice_open(&w, i);
        bt_jw_key(&w, "role");
        bt_jw_cstr(&w, "assistant");
        bt_jw_key(&w, "content");
        if (c->kind == OUT_TOOL) {
            bt_jw_null(&w);
            bt_jw_key(&w, "tool_calls");
            bt_jw_arr_begin(&w);
            bt_jw_obj_begin(&w);
            bt_jw_key(&w, "index");
            bt_jw_int(&w, 0);
            bt_jw_key(&w, "id");
            bt_jw_cstr(&w, c->call_id);
            bt_jw_key(&w, "type");
            bt_jw_cstr(&w, "function");
            bt_jw_key(&w, "function");
            bt_jw_obj_begin(&w);
            bt_jw_key(&w, "name");
            bt_jw_str(&w, c->tool);
            bt_jw_key(&w, "arguments");
            bt_jw_cstr(&w, "");
            bt_jw_obj_end(&w);
            bt_jw_obj_end(&w);
            bt_jw_arr_end(&w);
        } else {
            bt_jw_cstr(&w, "");
        }
        bt_jw_key(&w, "refusal");
        bt_jw_null(&w);
        choice_close(&w, NULL);
        chunk_end(ch, &w, r, ttft);
    }
    uint32_t mf = max_frags(ch);
    for (uint32_t k = 0; k < mf; k++) {
        double due = ttft + k * iv;
        for (int64_t i = 0; i < ch->n; i++) {
            const struct sim_choice *c = &ch->choices[i];
            if (k >= c->nfrag) continue;
            chunk_begin(ch, &w);
            choice_open(&w, i);
            if (c->kind == OUT_TOOL) {
                bt_jw_key(&w, "tool_calls");
                bt_jw_arr_begin(&w);
                bt_jw_obj_begin(&w);
                bt_jw_key(&w, "index");
                bt_jw_int(&w, 0);
                bt_jw_key(&w, "function");
                bt_jw_obj_begin(&w);
                bt_jw_key(&w, "arguments");
                bt_jw_str(&w, frag(c, k));
                bt_jw_obj_end(&w);
                bt_jw_obj_end(&w);
                bt_jw_arr_end(&w);
            } else {
                bt_jw_key(&w, "content");
                bt_jw_str(&w, frag(c, k));
            }
            choice_close(&w, NULL);
            chunk_end(ch, &w, r, due);
        }
    }
    double end = ttft + (mf ? mf - 1 : 0) * iv;
    for (int64_t i = 0; i < ch->n; i++) {
        chunk_begin(ch, &w);
        choice_open(&w, i);
        choice_close(&w, ch->choices[i].finish);
        chunk_end(ch, &w, r, end);
    }
    if (ch->include_usage) {
        bt_buf_reset(&ch->scratch);
        bt_jw_init(&w, &ch->scratch);
        bt_jw_obj_begin(&w);
        write_common(ch, &w, "chat.completion.chunk");
        bt_jw_key(&w, "choices");
        bt_jw_arr_begin(&w);
        bt_jw_arr_end(&w);
        bt_jw_key(&w, "usage");
        write_usage(&w, ch->prompt_tokens, completion_tokens(ch));
        bt_jw_obj_end(&w);
        if (w.err && !r->err) r->err = w.err;
        if (!r->err) {
            size_t off = r->body.len;
            enum bt_err e = bt_buf_append_c(&r->body, "data: ");
            if (!e) e = bt_buf_append_str(&r->body, bt_buf_str(&ch->scratch));
            if (!e) e = bt_buf_append_c(&r->body, "\n\n");
            if (e) r->err = e;
            else reply_piece(r, off, r->body.len - off, end);
        }
    }
    reply_emit(r, BT_STR("data: [DONE]\n\n"), end);
}

static void render_chat(const struct bt_sim_cfg *cfg, struct bt_str body, uint64_t h,
                        struct reply *r)
{
    struct bt_arena arena;
    bt_arena_init(&arena, 16384, SIM_ARENA_MAX);
    struct chat ch = {.cfg = cfg, .arena = &arena, .h = h};
    bt_buf_init(&ch.scratch, SIM_BODY_MAX);
    struct bt_json_error jerr;
    enum bt_err e = bt_json_parse(&ch.doc, body.p ? body.p : "", body.len, &arena, NULL, &jerr);
    if (e == BT_ENOMEM) {
        r->err = e;
        goto done;
    }
    if (e) {
        reply_invalid(r,
                      "We could not parse the JSON body of your request. (HINT: This likely "
                      "means you aren't using your HTTP library correctly. The OpenAI API "
                      "expects a JSON payload, but what was sent was not valid JSON.)",
                      NULL, NULL);
        goto done;
    }
    if (!chat_parse(&ch, r)) goto done;

    memcpy(ch.id, "chatcmpl-", 9);
    bt_sim_id_chars(ch.id + 9, 29, h);
    /* created is derived from the request, not the clock, so identical
     * requests give identical bytes; it stays a plausible 2025 timestamp. */
    ch.created = 1735689600 + (int64_t)(bt_sim_mix64(h ^ 0xc4ea7edu) % 31536000u);
    snprintf(ch.fp, sizeof ch.fp, "fp_%010llx",
             (unsigned long long)(bt_sim_mix64(cfg->seed) & 0xffffffffffULL));
    ch.choices = calloc((size_t)ch.n, sizeof *ch.choices);
    if (!ch.choices) {
        r->err = BT_ENOMEM;
        goto done;
    }
    for (int64_t i = 0; i < ch.n; i++) {
        if ((e = choice_build(&ch, &ch.choices[i], (uint32_t)i))) {
            r->err = e;
            goto done;
        }
    }
    r->status = 200;
    if (ch.stream) chat_render_stream(&ch, r);
    else chat_render_full(&ch, r);
done:
    choices_free(&ch);
    bt_buf_free(&ch.scratch);
    bt_arena_free(&arena);
}

/* ---- embeddings ---- */

static void base64_append(struct bt_buf *b, const unsigned char *p, size_t n, enum bt_err *err)
{
    static const char al[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    char q[4];
    for (size_t i = 0; i < n && !*err; i += 3) {
        uint32_t v = (uint32_t)p[i] << 16;
        if (i + 1 < n) v |= (uint32_t)p[i + 1] << 8;
        if (i + 2 < n) v |= p[i + 2];
        q[0] = al[(v >> 18) & 63];
        q[1] = al[(v >> 12) & 63];
        q[2] = i + 1 < n ? al[(v >> 6) & 63] : '=';
        q[3] = i + 2 < n ? al[v & 63] : '=';
        *err = bt_buf_append(b, q, 4);
    }
}

/* A deterministic unit vector for one input: seeded by the cfg seed and the
 * input's own bytes, so the same text embeds the same way in any batch. */
static void embed_vector(float *v, uint32_t dims, uint64_t seed)
{
    struct bt_sim_rng r = {seed};
    double norm = 0;
    for (uint32_t i = 0; i < dims; i++) {
        /* Sum of uniforms: roughly normal, so directions are spread evenly. */
        double x = bt_sim_rng_unit(&r) + bt_sim_rng_unit(&r) + bt_sim_rng_unit(&r) - 1.5;
        v[i] = (float)x;
        norm += x * x;
    }
    norm = sqrt(norm);
    for (uint32_t i = 0; i < dims; i++)
        v[i] = norm > 0 ? (float)(v[i] / norm) : (i == 0 ? 1.0f : 0.0f);
}

static bool all_numbers(const struct bt_json_doc *d, int arr)
{
    for (int e = bt_json_first(d, arr); e >= 0 && e < (int)d->toks[arr].next;
         e = (int)d->toks[e].next) {
        int64_t v;
        if (bt_json_type(d, e) != BT_JSON_NUMBER || bt_json_int(d, e, &v) || v < 0) return false;
    }
    return true;
}

static void render_embeddings(const struct bt_sim_cfg *cfg, struct bt_str body, struct reply *r)
{
    struct bt_arena arena;
    bt_arena_init(&arena, 16384, SIM_ARENA_MAX);
    struct bt_json_doc doc;
    struct bt_json_doc *d = &doc;
    float *vec = NULL;
    enum bt_err e = bt_json_parse(d, body.p ? body.p : "", body.len, &arena, NULL, NULL);
    if (e == BT_ENOMEM) {
        r->err = e;
        goto done;
    }
    if (e) {
        reply_invalid(r,
                      "We could not parse the JSON body of your request. (HINT: This likely "
                      "means you aren't using your HTTP library correctly. The OpenAI API "
                      "expects a JSON payload, but what was sent was not valid JSON.)",
                      NULL, NULL);
        goto done;
    }
    if (bt_json_type(d, 0) != BT_JSON_OBJECT) {
        reply_invalid(r, "Invalid type for body: expected an object.", NULL, "invalid_type");
        goto done;
    }
    int t = bt_json_get(d, 0, "model");
    struct bt_str model;
    if (t < 0 || bt_json_type(d, t) == BT_JSON_NULL) {
        reply_invalid(r, "you must provide a model parameter", NULL, NULL);
        goto done;
    }
    if (bt_json_type(d, t) != BT_JSON_STRING || bt_json_str(d, t, &arena, &model)) {
        reply_invalid(r, "Invalid type for 'model': expected a string.", "model", "invalid_type");
        goto done;
    }
    int input = bt_json_get(d, 0, "input");
    if (input < 0) {
        reply_invalid(r, "Missing required parameter: 'input'.", "input",
                      "missing_required_parameter");
        goto done;
    }
    uint32_t dims = cfg->embedding_dims ? cfg->embedding_dims : 16;
    if (dims > SIM_MAX_DIMS) dims = SIM_MAX_DIMS;
    t = bt_json_get(d, 0, "dimensions");
    if (t >= 0 && bt_json_type(d, t) != BT_JSON_NULL) {
        int64_t v;
        if (!positive_int(d, t, &v) || v < 1 || v > SIM_MAX_DIMS) {
            reply_invalidf(r, "dimensions", "invalid_value",
                           "Invalid 'dimensions': expected an integer between 1 and %d.",
                           SIM_MAX_DIMS);
            goto done;
        }
        dims = (uint32_t)v;
    }
    bool b64 = false;
    t = bt_json_get(d, 0, "encoding_format");
    if (t >= 0 && bt_json_type(d, t) != BT_JSON_NULL) {
        if (bt_json_str_eq(d, t, "base64")) {
            b64 = true;
        } else if (!bt_json_str_eq(d, t, "float")) {
            reply_invalid(r,
                          "Invalid value for 'encoding_format': expected 'float' or 'base64'.",
                          "encoding_format", "invalid_value");
            goto done;
        }
    }
    /* The inputs: one string, one token array, or an array of strings or of
     * token arrays. `items` is the array to walk, `single` a lone input. */
    int single = -1, items = -1;
    int ity = bt_json_type(d, input);
    if (ity == BT_JSON_STRING) {
        single = input;
    } else if (ity == BT_JSON_ARRAY && d->toks[input].size > 0 && all_numbers(d, input)) {
        single = input;
    } else if (ity == BT_JSON_ARRAY && d->toks[input].size > 0) {
        items = input;
        if (d->toks[input].size > SIM_MAX_INPUTS) {
            reply_invalidf(r, "input", "invalid_value",
                           "Invalid 'input': maximum %d inputs per request.", SIM_MAX_INPUTS);
            goto done;
        }
        uint32_t i = 0;
        for (int el = bt_json_first(d, input); el >= 0 && el < (int)d->toks[input].next;
             el = (int)d->toks[el].next, i++) {
            bool ok = (bt_json_type(d, el) == BT_JSON_STRING && bt_json_str_raw(d, el).len > 0) ||
                      (bt_json_type(d, el) == BT_JSON_ARRAY && d->toks[el].size > 0 &&
                       all_numbers(d, el));
            if (!ok) {
                reply_invalidf(r, "input", "invalid_value",
                               "Invalid 'input[%u]': expected a non-empty string or array of "
                               "token ids.",
                               i);
                goto done;
            }
        }
    }
    if ((single < 0 && items < 0) ||
        (single >= 0 && ity == BT_JSON_STRING && bt_json_str_raw(d, single).len == 0)) {
        reply_invalid(r, "'$.input' is invalid. Please check the API reference.", "input",
                      "invalid_value");
        goto done;
    }

    vec = malloc((size_t)dims * sizeof *vec);
    unsigned char *bytes = malloc((size_t)dims * 4);
    if (!vec || !bytes) {
        free(bytes);
        r->err = BT_ENOMEM;
        goto done;
    }
    struct bt_jw w;
    bt_jw_init(&w, &r->body);
    bt_jw_obj_begin(&w);
    bt_jw_key(&w, "object");
    bt_jw_cstr(&w, "list");
    bt_jw_key(&w, "data");
    bt_jw_arr_begin(&w);
    uint64_t tokens = 0;
    uint32_t count = single >= 0 ? 1 : d->toks[items].size;
    for (uint32_t i = 0; i < count && !w.err; i++) {
        int el = single >= 0 ? single : bt_json_at(d, items, i);
        struct bt_str key;
        if (bt_json_type(d, el) == BT_JSON_STRING) {
            if (bt_json_str(d, el, &arena, &key)) {
                w.err = BT_ENOMEM;
                break;
            }
            uint64_t tk = (key.len + 3) / 4;
            tokens += tk ? tk : 1;
        } else {
            key = bt_json_raw(d, el);
            tokens += d->toks[el].size;
        }
        embed_vector(vec, dims, bt_sim_hash(key.p, key.len, cfg->seed ^ 0xe5bedu));
        bt_jw_obj_begin(&w);
        bt_jw_key(&w, "object");
        bt_jw_cstr(&w, "embedding");
        bt_jw_key(&w, "index");
        bt_jw_int(&w, i);
        bt_jw_key(&w, "embedding");
        if (b64) {
            for (uint32_t k = 0; k < dims; k++) {
                uint32_t u;
                memcpy(&u, &vec[k], 4);
                bytes[4 * k] = (unsigned char)u;
                bytes[4 * k + 1] = (unsigned char)(u >> 8);
                bytes[4 * k + 2] = (unsigned char)(u >> 16);
                bytes[4 * k + 3] = (unsigned char)(u >> 24);
            }
            struct bt_buf s64;
            bt_buf_init(&s64, (size_t)dims * 8 + 8);
            enum bt_err be = BT_OK;
            base64_append(&s64, bytes, (size_t)dims * 4, &be);
            if (be) w.err = be;
            else bt_jw_str(&w, bt_buf_str(&s64));
            bt_buf_free(&s64);
        } else {
            bt_jw_arr_begin(&w);
            for (uint32_t k = 0; k < dims; k++) {
                /* 9 significant digits round-trip a float exactly. */
                char num[32];
                int nl = snprintf(num, sizeof num, "%.9g", (double)vec[k]);
                bt_jw_raw(&w, (struct bt_str){num, (size_t)nl});
            }
            bt_jw_arr_end(&w);
        }
        bt_jw_obj_end(&w);
    }
    free(bytes);
    bt_jw_arr_end(&w);
    bt_jw_key(&w, "model");
    bt_jw_str(&w, model);
    bt_jw_key(&w, "usage");
    bt_jw_obj_begin(&w);
    bt_jw_key(&w, "prompt_tokens");
    bt_jw_int(&w, (int64_t)tokens);
    bt_jw_key(&w, "total_tokens");
    bt_jw_int(&w, (int64_t)tokens);
    bt_jw_obj_end(&w);
    bt_jw_obj_end(&w);
    if (w.err) {
        r->err = w.err;
        goto done;
    }
    r->status = 200;
    r->head_due = (double)cfg->ttft_ms;
    reply_piece(r, 0, r->body.len, r->head_due);
done:
    free(vec);
    bt_arena_free(&arena);
}

/* ---- models ---- */

/* GET /models lists "sim" (the simulator does not know which names route to
 * it); GET /models/{id} describes any id, since the sim answers for any model. */
static void render_models(struct bt_str id, bool one, struct reply *r)
{
    struct bt_jw w;
    bt_jw_init(&w, &r->body);
    if (one) {
        bt_openai_write_model(&w, id, "baton-sim");
    } else {
        bt_jw_obj_begin(&w);
        bt_jw_key(&w, "object");
        bt_jw_cstr(&w, "list");
        bt_jw_key(&w, "data");
        bt_jw_arr_begin(&w);
        bt_openai_write_model(&w, BT_STR("sim"), "baton-sim");
        bt_jw_arr_end(&w);
        bt_jw_obj_end(&w);
    }
    if (w.err) {
        r->err = w.err;
        return;
    }
    r->status = 200;
    reply_piece(r, 0, r->body.len, 0);
}

/* Routes the request to its renderer. */
static void render(const struct bt_sim_cfg *cfg, const struct bt_sim_request *req, uint64_t h,
                   struct reply *r)
{
    struct bt_str path = req->path;
    long q = bt_str_index(path, '?');
    if (q >= 0) path.len = (size_t)q;
    while (path.len > 1 && path.p[path.len - 1] == '/') path.len--;
    bool post = bt_str_eq_c(req->method, "POST"), get = bt_str_eq_c(req->method, "GET");
    bool known = true;
    if (bt_str_eq_c(path, "/chat/completions")) {
        if (post) render_chat(cfg, req->body, h, r);
        else known = false;
    } else if (bt_str_eq_c(path, "/embeddings")) {
        if (post) render_embeddings(cfg, req->body, r);
        else known = false;
    } else if (bt_str_eq_c(path, "/models")) {
        if (get) render_models(BT_STR_NULL, false, r);
        else known = false;
    } else if (bt_str_starts_with(path, BT_STR("/models/")) && path.len > 8 &&
               bt_str_index((struct bt_str){path.p + 8, path.len - 8}, '/') < 0) {
        if (get) render_models((struct bt_str){path.p + 8, path.len - 8}, true, r);
        else known = false;
    } else {
        reply_invalidf(r, NULL, NULL, "Invalid URL (%.*s %.*s)", BT_STR_FMT(req->method),
                       BT_STR_FMT(req->path));
        r->status = 404;
        return;
    }
    if (!known) {
        reply_invalidf(r, NULL, NULL, "Invalid method for URL (%.*s %.*s)",
                       BT_STR_FMT(req->method), BT_STR_FMT(req->path));
        r->status = 405;
    }
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
static double truncate_reply(struct reply *r)
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
static enum bt_err build_steps(struct bt_sim_call *c, struct reply *r, int fault,
                               const struct bt_sim_cfg *cfg)
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
            struct piece *p = &r->pieces[r->npieces / 2];
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
            double due = truncate_reply(r);
            static const char ev[] = "data: {\"error\":{\"message\":\"simulated error\","
                                     "\"type\":\"server_error\",\"param\":null,"
                                     "\"code\":\"sim_error\"}}\n\n";
            size_t off = r->body.len;
            if ((e = bt_buf_append(&r->body, ev, sizeof ev - 1))) return e;
            reply_piece(r, off, sizeof ev - 1, due);
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
            const struct piece *p = &r->pieces[i];
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

struct bt_sim_call *bt_sim_start(uv_loop_t *loop, const struct bt_sim_cfg *cfg,
                                 const struct bt_sim_request *req,
                                 const struct bt_up_callbacks *cb, void *ud)
{
    struct bt_sim_call *c = calloc(1, sizeof *c);
    if (!c) return NULL;
    struct reply r = {.status = 200};
    bt_buf_init(&r.body, SIM_BODY_MAX);
    c->loop = loop;
    c->cb = *cb;
    c->ud = ud;

    uint64_t h = bt_sim_hash(req->body.p, req->body.len, cfg->seed);
    h = bt_sim_mix64(h ^ bt_sim_hash(req->path.p, req->path.len, 0));
    int fault = req->fault >= 0 && req->fault < SIM_NFAULTS ? req->fault : sim_draw_fault(cfg, h);

    switch (fault) {
    case BT_SIM_FAULT_429:
        reply_error(&r, 429, BT_STR("Rate limit reached for requests (simulated)."), "requests",
                    NULL, "rate_limit_exceeded");
        break;
    case BT_SIM_FAULT_500:
        reply_error(&r, 500,
                    BT_STR("The server had an error while processing your request. Sorry about "
                           "that!"),
                    "server_error", NULL, NULL);
        break;
    case BT_SIM_FAULT_503:
        reply_error(&r, 503, BT_STR("The engine is currently overloaded, please try again later."),
                    "server_error", NULL, NULL);
        break;
    default:
        render(cfg, req, h, &r);
        /* Without a stream there is no event to break: a failure is a 500. */
        if (fault == BT_SIM_FAULT_ERROR_EVENT && !r.sse && r.err != BT_ENOMEM)
            reply_error(&r, 500, BT_STR("simulated error"), "server_error", NULL, "sim_error");
        break;
    }
    if (r.err && r.err != BT_ENOMEM)
        reply_error(&r, 500, BT_STR("The simulator could not render this reply."),
                    "server_error", NULL, NULL);
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
    add_header(c, "x-request-id", c->request_id);
    if (fault > 0) add_header(c, "x-sim-fault", fault_names[fault]);

    if (build_steps(c, &r, fault, cfg)) goto fail;
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
    bt_buf_free(&r.body);
    free(r.pieces);
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
