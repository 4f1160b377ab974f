/* The simulator's OpenAI renderer: the endpoints of an OpenAI-compatible server
 * (chat completions, embeddings, models), its request validation and error
 * object, and every byte of its replies. The contract is in sim.h; what the
 * replies say is the model's (model.h). */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/arena.h"
#include "core/buf.h"
#include "json/json.h"
#include "sim/model.h"
#include "sim/rng.h"
#include "sim/sim.h"

#define SIM_ARENA_MAX ((size_t)1 << 30) /* request parse memory */
#define SIM_MAX_CHOICES 128             /* OpenAI's limit for n */
#define SIM_MAX_DIMS 8192               /* embedding dimensions */
#define SIM_MAX_INPUTS 2048             /* embedding inputs per request (OpenAI's limit) */

/* ---- errors ---- */

/* `"key": value` pairs; kv_cstr writes a NULL value as null. */
static void kv_cstr(struct bt_jw *w, const char *key, const char *value)
{
    bt_jw_key(w, key);
    if (value) bt_jw_cstr(w, value);
    else bt_jw_null(w);
}

static void kv_str(struct bt_jw *w, const char *key, struct bt_str value)
{
    bt_jw_key(w, key);
    bt_jw_str(w, value);
}

static void kv_int(struct bt_jw *w, const char *key, int64_t value)
{
    bt_jw_key(w, key);
    bt_jw_int(w, value);
}

/* Replaces whatever was rendered by OpenAI's error object
 * {"error":{"message","type","param","code"}}. */
static void reply_error(struct bt_sim_reply *r, int status, struct bt_str msg, const char *type,
                        const char *param, const char *code)
{
    if (!bt_sim_reply_reset(r, status)) return;
    struct bt_jw w;
    bt_jw_init(&w, &r->body);
    bt_jw_obj_begin(&w);
    bt_jw_key(&w, "error");
    bt_jw_obj_begin(&w);
    kv_str(&w, "message", msg);
    kv_cstr(&w, "type", type);
    kv_cstr(&w, "param", param);
    kv_cstr(&w, "code", code);
    bt_jw_obj_end(&w);
    bt_jw_obj_end(&w);
    if (w.err) {
        r->err = w.err;
        return;
    }
    bt_sim_reply_piece(r, 0, r->body.len, 0);
}

static void reply_invalid(struct bt_sim_reply *r, const char *msg, const char *param,
                          const char *code)
{
    reply_error(r, 400, bt_str_c(msg), "invalid_request_error", param, code);
}

/* An invalid_request_error whose message names something from the request. */
static void reply_errorf(struct bt_sim_reply *r, int status, const char *param, const char *code,
                         const char *fmt, ...) __attribute__((format(printf, 5, 6)));
static void reply_errorf(struct bt_sim_reply *r, int status, const char *param, const char *code,
                         const char *fmt, ...)
{
    struct bt_buf m;
    bt_buf_init(&m, 4096);
    va_list ap;
    va_start(ap, fmt);
    enum bt_err e = bt_buf_vprintf(&m, fmt, ap);
    va_end(ap);
    if (e == BT_ENOMEM) r->err = BT_ENOMEM;
    else reply_error(r, status, bt_buf_str(&m), "invalid_request_error", param, code);
    bt_buf_free(&m);
}

static const struct {
    int status;
    const char *message, *type, *param, *code;
} errors[BT_SIM_NERRORS] = {
    [BT_SIM_ERR_RATE_LIMIT] = {429, "Rate limit reached for requests (simulated).", "requests",
                               NULL, "rate_limit_exceeded"},
    [BT_SIM_ERR_SERVER] = {500,
                           "The server had an error while processing your request. Sorry about "
                           "that!",
                           "server_error", NULL, NULL},
    [BT_SIM_ERR_OVERLOADED] = {503, "The engine is currently overloaded, please try again later.",
                               "server_error", NULL, NULL},
    [BT_SIM_ERR_SIMULATED] = {500, "simulated error", "server_error", NULL, "sim_error"},
    [BT_SIM_ERR_RENDER] = {500, "The simulator could not render this reply.", "server_error", NULL,
                           NULL},
    [BT_SIM_ERR_UNKNOWN_URL] = {404, "Unknown request URL", "invalid_request_error", NULL,
                                "unknown_url"},
    [BT_SIM_ERR_BAD_FAULT] = {400, "unknown x-sim-fault value", "invalid_request_error",
                              "x-sim-fault", NULL},
};

static void render_error(struct bt_sim_reply *out, enum bt_sim_error e)
{
    if (e < 1 || e >= BT_SIM_NERRORS) e = BT_SIM_ERR_SERVER;
    reply_error(out, errors[e].status, bt_str_c(errors[e].message), errors[e].type,
                errors[e].param, errors[e].code);
}

/* The error_event fault: an error object as one event of a 200 stream. */
static void render_stream_error(struct bt_sim_reply *out, double due)
{
    bt_sim_reply_emit(out,
                      BT_STR("data: {\"error\":{\"message\":\"simulated error\","
                             "\"type\":\"server_error\",\"param\":null,"
                             "\"code\":\"sim_error\"}}\n\n"),
                      due);
}

/* ---- reading requests ---- */

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

static bool positive_int(const struct bt_json_doc *d, int t, int64_t *out)
{
    return bt_json_type(d, t) == BT_JSON_NUMBER && bt_json_int(d, t, out) == BT_OK;
}

/* Parses a request body that must be a JSON object with a `model`; returns the
 * model's token, or -1 after rendering the 400 (or setting BT_ENOMEM). */
static int parse_body(struct bt_str body, struct bt_arena *arena, struct bt_json_doc *d,
                      struct bt_sim_reply *r)
{
    enum bt_err e = bt_json_parse(d, body.p ? body.p : "", body.len, arena, NULL, NULL);
    if (e == BT_ENOMEM) {
        r->err = e;
        return -1;
    }
    if (e) {
        reply_invalid(r,
                      "We could not parse the JSON body of your request. (HINT: This likely "
                      "means you aren't using your HTTP library correctly. The OpenAI API "
                      "expects a JSON payload, but what was sent was not valid JSON.)",
                      NULL, NULL);
        return -1;
    }
    if (bt_json_type(d, 0) != BT_JSON_OBJECT) {
        reply_invalid(r, "Invalid type for body: expected an object.", NULL, "invalid_type");
        return -1;
    }
    int t = bt_json_get(d, 0, "model");
    if (t < 0 || bt_json_type(d, t) == BT_JSON_NULL) {
        reply_invalid(r, "you must provide a model parameter", NULL, NULL);
        return -1;
    }
    return t;
}

/* ---- chat completions: the request ---- */

enum tool_mode { TC_AUTO, TC_NONE, TC_REQUIRED, TC_NAMED };

/* A chat reply as OpenAI renders it: the model's part and OpenAI's own. */
struct oai_chat {
    struct bt_sim_chat ch;
    bool include_usage;     /* stream_options.include_usage */
    char id[48], fp[24];    /* chatcmpl-..., fp_... */
    int64_t created;
    struct bt_buf scratch;  /* one chunk's JSON */
};

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

/* messages: a non-empty array of objects with a role. Sets *last_is_tool when
 * the last one has role "tool". */
static bool parse_messages(struct oai_chat *oc, struct bt_sim_reply *r, bool *last_is_tool)
{
    const struct bt_json_doc *d = oc->ch.doc;
    int msgs = bt_json_get(d, 0, "messages");
    if (msgs < 0) {
        reply_invalid(r, "Missing required parameter: 'messages'.", "messages",
                      "missing_required_parameter");
        return false;
    }
    if (bt_json_type(d, msgs) != BT_JSON_ARRAY) {
        reply_errorf(r, 400, "messages", "invalid_type",
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
            reply_errorf(r, 400, "messages", "invalid_type",
                         "Invalid type for 'messages[%u]': expected an object, but got %s "
                         "instead.",
                         i, json_type_name(bt_json_type(d, m)));
            return false;
        }
        if (bt_json_type(d, bt_json_get(d, m, "role")) != BT_JSON_STRING) {
            reply_errorf(r, 400, "messages", "missing_required_parameter",
                         "Missing required parameter: 'messages[%u].role'.", i);
            return false;
        }
        last = m;
    }
    *last_is_tool = bt_json_str_eq(d, bt_json_get(d, last, "role"), "tool");
    oc->ch.prompt_tokens = prompt_estimate(d, msgs);
    return true;
}

/* stream, stream_options, max_tokens / max_completion_tokens, n. */
static bool parse_options(struct oai_chat *oc, struct bt_sim_reply *r)
{
    struct bt_sim_chat *ch = &oc->ch;
    const struct bt_json_doc *d = ch->doc;
    int t = bt_json_get(d, 0, "stream");
    if (t >= 0 && bt_json_type(d, t) != BT_JSON_NULL) {
        if (bt_json_type(d, t) != BT_JSON_TRUE && bt_json_type(d, t) != BT_JSON_FALSE) {
            reply_errorf(r, 400, "stream", "invalid_type",
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
        oc->include_usage = bt_json_type(d, bt_json_get(d, t, "include_usage")) == BT_JSON_TRUE;
    }
    const char *mt_names[] = {"max_completion_tokens", "max_tokens"};
    for (size_t k = 0; k < 2; k++) {
        t = bt_json_get(d, 0, mt_names[k]);
        if (t < 0 || bt_json_type(d, t) == BT_JSON_NULL) continue;
        int64_t v = 0;
        if (!positive_int(d, t, &v) || v < 1) {
            reply_errorf(r, 400, mt_names[k], "integer_below_min_value",
                         "Invalid '%s': integer below minimum value. Expected a value >= 1, "
                         "but got %.*s instead.",
                         mt_names[k], BT_STR_FMT(bt_json_raw(d, t)));
            return false;
        }
        if (!ch->max_tokens) ch->max_tokens = v;
    }
    int64_t n = 1;
    t = bt_json_get(d, 0, "n");
    if (t >= 0 && bt_json_type(d, t) != BT_JSON_NULL) {
        if (!positive_int(d, t, &n) || n < 1 || n > SIM_MAX_CHOICES) {
            reply_errorf(r, 400, "n", "invalid_value",
                         "Invalid 'n': expected an integer between 1 and %d.", SIM_MAX_CHOICES);
            return false;
        }
    }
    ch->n = (uint32_t)n;
    return true;
}

/* tools and tool_choice: which tool every choice calls, if any. */
static bool parse_tools(struct oai_chat *oc, struct bt_sim_reply *r, bool last_is_tool)
{
    struct bt_sim_chat *ch = &oc->ch;
    const struct bt_json_doc *d = ch->doc;
    int tools = -1;
    ch->tool_params = -1;
    int t = bt_json_get(d, 0, "tools");
    if (t >= 0 && bt_json_type(d, t) != BT_JSON_NULL) {
        if (bt_json_type(d, t) != BT_JSON_ARRAY) {
            reply_errorf(r, 400, "tools", "invalid_type",
                         "Invalid type for 'tools': expected an array, but got %s instead.",
                         json_type_name(bt_json_type(d, t)));
            return false;
        }
        uint32_t i = 0;
        for (int e = bt_json_first(d, t); e >= 0 && e < (int)d->toks[t].next;
             e = (int)d->toks[e].next, i++) {
            int fn = bt_json_get(d, e, "function");
            if (bt_json_type(d, fn) != BT_JSON_OBJECT) {
                reply_errorf(r, 400, "tools", "missing_required_parameter",
                             "Missing required parameter: 'tools[%u].function'.", i);
                return false;
            }
            if (bt_json_type(d, bt_json_get(d, fn, "name")) != BT_JSON_STRING) {
                reply_errorf(r, 400, "tools", "missing_required_parameter",
                             "Missing required parameter: 'tools[%u].function.name'.", i);
                return false;
            }
        }
        if (d->toks[t].size > 0) tools = t;
    }
    t = bt_json_get(d, 0, "tool_choice");
    enum tool_mode mode = TC_AUTO;
    struct bt_str named = BT_STR_NULL;
    if (t >= 0 && bt_json_type(d, t) != BT_JSON_NULL) {
        int name = bt_json_path(d, t, "function", "name", NULL);
        if (bt_json_str_eq(d, t, "none")) {
            mode = TC_NONE;
        } else if (bt_json_str_eq(d, t, "auto")) {
            mode = TC_AUTO;
        } else if (bt_json_str_eq(d, t, "required")) {
            mode = TC_REQUIRED;
        } else if (bt_json_type(d, t) == BT_JSON_OBJECT &&
                   bt_json_type(d, name) == BT_JSON_STRING) {
            mode = TC_NAMED;
            if (bt_json_str(d, name, ch->arena, &named)) {
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
        if (tools < 0 && mode != TC_NONE) {
            reply_invalid(r,
                          "Invalid value for 'tool_choice': 'tool_choice' is only allowed when "
                          "'tools' are specified.",
                          "tool_choice", NULL);
            return false;
        }
    }
    if (tools < 0) return true;
    /* The named tool, or else the first one. */
    int chosen = -1;
    for (int e = bt_json_first(d, tools); e >= 0 && e < (int)d->toks[tools].next;
         e = (int)d->toks[e].next) {
        int name = bt_json_path(d, e, "function", "name", NULL);
        struct bt_str nm;
        if (mode != TC_NAMED ||
            (bt_json_str(d, name, ch->arena, &nm) == BT_OK && bt_str_eq(nm, named))) {
            chosen = e;
            break;
        }
    }
    if (chosen < 0) {
        reply_errorf(r, 400, "tool_choice", NULL,
                     "Tool choice 'function' '%.*s' not found in 'tools' parameter.",
                     BT_STR_FMT(named));
        return false;
    }
    if (bt_json_str(d, bt_json_path(d, chosen, "function", "name", NULL), ch->arena, &ch->tool)) {
        r->err = BT_ENOMEM;
        return false;
    }
    ch->tool_params = bt_json_path(d, chosen, "function", "parameters", NULL);
    if (bt_json_type(d, ch->tool_params) != BT_JSON_OBJECT) ch->tool_params = -1;
    /* After a tool's result, "auto" answers in text, so an agent loop ends. */
    ch->call_tool = mode != TC_NONE && !(mode == TC_AUTO && last_is_tool);
    return true;
}

/* response_format: text, json_object or json_schema. */
static bool parse_format(struct oai_chat *oc, struct bt_sim_reply *r)
{
    struct bt_sim_chat *ch = &oc->ch;
    const struct bt_json_doc *d = ch->doc;
    ch->json_schema = -1;
    int t = bt_json_get(d, 0, "response_format");
    if (t < 0 || bt_json_type(d, t) == BT_JSON_NULL) return true;
    int ty = bt_json_get(d, t, "type");
    if (bt_json_str_eq(d, ty, "json_schema")) {
        int js = bt_json_get(d, t, "json_schema");
        if (bt_json_type(d, js) != BT_JSON_OBJECT) {
            reply_invalid(r, "Missing required parameter: 'response_format.json_schema'.",
                          "response_format.json_schema", "missing_required_parameter");
            return false;
        }
        ch->json = true;
        ch->json_schema = bt_json_get(d, js, "schema");
        if (bt_json_type(d, ch->json_schema) != BT_JSON_OBJECT) ch->json_schema = -1;
    } else if (bt_json_str_eq(d, ty, "json_object")) {
        ch->json = true;
    } else if (!bt_json_str_eq(d, ty, "text")) {
        reply_invalid(r,
                      "Invalid value for 'response_format.type': expected one of 'text', "
                      "'json_object' or 'json_schema'.",
                      "response_format.type", "invalid_value");
        return false;
    }
    return true;
}

/* Validates the request the way OpenAI does and fills `oc`. Returns false after
 * rendering the 400 into r. */
static bool chat_parse(struct oai_chat *oc, int model, struct bt_sim_reply *r)
{
    struct bt_sim_chat *ch = &oc->ch;
    const struct bt_json_doc *d = ch->doc;
    if (bt_json_type(d, model) != BT_JSON_STRING || bt_json_str(d, model, ch->arena, &ch->model)) {
        reply_errorf(r, 400, "model", "invalid_type",
                     "Invalid type for 'model': expected a string, but got %s instead.",
                     json_type_name(bt_json_type(d, model)));
        return false;
    }
    bool last_is_tool = false;
    return parse_messages(oc, r, &last_is_tool) && parse_options(oc, r) &&
           parse_tools(oc, r, last_is_tool) && parse_format(oc, r);
}

/* ---- chat completions: the reply ---- */

static const char *finish_name(enum bt_sim_finish f)
{
    switch (f) {
    case BT_SIM_FINISH_LENGTH: return "length";
    case BT_SIM_FINISH_TOOL: return "tool_calls";
    default: return "stop";
    }
}

static void write_usage(struct bt_jw *w, uint64_t prompt, uint64_t completion)
{
    bt_jw_obj_begin(w);
    kv_int(w, "prompt_tokens", (int64_t)prompt);
    kv_int(w, "completion_tokens", (int64_t)completion);
    kv_int(w, "total_tokens", (int64_t)(prompt + completion));
    /* The details OpenAI sends, all zero here. */
    bt_jw_key(w, "prompt_tokens_details");
    bt_jw_raw(w, BT_STR("{\"cached_tokens\":0,\"audio_tokens\":0}"));
    bt_jw_key(w, "completion_tokens_details");
    bt_jw_raw(w, BT_STR("{\"reasoning_tokens\":0,\"audio_tokens\":0,"
                        "\"accepted_prediction_tokens\":0,\"rejected_prediction_tokens\":0}"));
    bt_jw_obj_end(w);
}

/* The members every chat.completion and chunk starts with. */
static void write_common(const struct oai_chat *oc, struct bt_jw *w, const char *object)
{
    kv_cstr(w, "id", oc->id);
    kv_cstr(w, "object", object);
    kv_int(w, "created", oc->created);
    kv_str(w, "model", oc->ch.model);
    kv_cstr(w, "service_tier", "default");
    kv_cstr(w, "system_fingerprint", oc->fp);
}

/* The "tool_calls" member of a message (CALL_WHOLE), or of a stream delta: its
 * first chunk (CALL_FIRST: index, id, type, name and empty arguments) or a
 * later one (CALL_MORE: index and a fragment of the arguments). */
enum call_form { CALL_WHOLE, CALL_FIRST, CALL_MORE };

static void write_tool_calls(struct bt_jw *w, const struct bt_sim_chat *ch,
                             const struct bt_sim_choice *c, enum call_form form,
                             struct bt_str args)
{
    bt_jw_key(w, "tool_calls");
    bt_jw_arr_begin(w);
    bt_jw_obj_begin(w);
    if (form != CALL_WHOLE) kv_int(w, "index", 0);
    if (form != CALL_MORE) {
        char id[32] = "call_";
        bt_sim_id_chars(id + 5, 24, c->call_seed);
        kv_cstr(w, "id", id);
        kv_cstr(w, "type", "function");
    }
    bt_jw_key(w, "function");
    bt_jw_obj_begin(w);
    if (form != CALL_MORE) kv_str(w, "name", ch->tool);
    kv_str(w, "arguments", args);
    bt_jw_obj_end(w);
    bt_jw_obj_end(w);
    bt_jw_arr_end(w);
}

static void render_chat(const struct bt_sim_chat *ch, struct bt_sim_reply *out)
{
    const struct oai_chat *oc = ch->wire;
    struct bt_jw w;
    bt_jw_init(&w, &out->body);
    bt_jw_obj_begin(&w);
    write_common(oc, &w, "chat.completion");
    bt_jw_key(&w, "choices");
    bt_jw_arr_begin(&w);
    for (uint32_t i = 0; i < ch->n; i++) {
        const struct bt_sim_choice *c = &ch->choices[i];
        bt_jw_obj_begin(&w);
        kv_int(&w, "index", i);
        bt_jw_key(&w, "message");
        bt_jw_obj_begin(&w);
        kv_cstr(&w, "role", "assistant");
        bt_jw_key(&w, "content");
        if (c->kind == BT_SIM_OUT_TOOL) bt_jw_null(&w);
        else bt_jw_str(&w, bt_buf_str(&c->text));
        kv_cstr(&w, "refusal", NULL);
        if (c->kind == BT_SIM_OUT_TOOL)
            write_tool_calls(&w, ch, c, CALL_WHOLE, bt_buf_str(&c->text));
        bt_jw_key(&w, "annotations");
        bt_jw_raw(&w, BT_STR("[]"));
        bt_jw_obj_end(&w);
        kv_cstr(&w, "logprobs", NULL);
        kv_cstr(&w, "finish_reason", finish_name(c->finish));
        bt_jw_obj_end(&w);
    }
    bt_jw_arr_end(&w);
    bt_jw_key(&w, "usage");
    write_usage(&w, ch->prompt_tokens, bt_sim_chat_completion_tokens(ch));
    bt_jw_obj_end(&w);
    if (w.err) out->err = w.err;
}

/* Chunk framing: the common fields, then the caller's choices (or with
 * `usage`, an empty list and the usage), then with include_usage "usage":null,
 * and the SSE frame around it. */
static void chunk_begin(struct oai_chat *oc, struct bt_jw *w)
{
    bt_buf_reset(&oc->scratch);
    bt_jw_init(w, &oc->scratch);
    bt_jw_obj_begin(w);
    write_common(oc, w, "chat.completion.chunk");
    bt_jw_key(w, "choices");
    bt_jw_arr_begin(w);
}

static void chunk_end(struct oai_chat *oc, struct bt_jw *w, bool usage, struct bt_sim_reply *r,
                      double due)
{
    bt_jw_arr_end(w);
    if (usage) {
        bt_jw_key(w, "usage");
        write_usage(w, oc->ch.prompt_tokens, bt_sim_chat_completion_tokens(&oc->ch));
    } else if (oc->include_usage) {
        kv_cstr(w, "usage", NULL);
    }
    bt_jw_obj_end(w);
    if (w->err && !r->err) r->err = w->err;
    bt_sim_reply_data(r, bt_buf_str(&oc->scratch), due);
}

static void choice_open(struct bt_jw *w, int64_t index)
{
    bt_jw_obj_begin(w);
    kv_int(w, "index", index);
    bt_jw_key(w, "delta");
    bt_jw_obj_begin(w);
}

static void choice_close(struct bt_jw *w, const char *finish)
{
    bt_jw_obj_end(w); /* delta */
    kv_cstr(w, "logprobs", NULL);
    kv_cstr(w, "finish_reason", finish);
    bt_jw_obj_end(w);
}

/* One chunk per step and choice; the first of a choice carries the role (and
 * for a tool call its index, id, type and name), as the SDKs' strict stream
 * helpers require. */
static void render_stream_step(const struct bt_sim_chat *ch, const struct bt_sim_step *st,
                               struct bt_sim_reply *out)
{
    struct oai_chat *oc = ch->wire;
    struct bt_jw w;
    if (st->kind == BT_SIM_STEP_END) {
        bt_sim_reply_emit(out, BT_STR("data: [DONE]\n\n"), st->due);
        return;
    }
    /* A stream starts with the first choice's chunk; usage only when asked. */
    if (st->kind == BT_SIM_STEP_BEGIN || (st->kind == BT_SIM_STEP_USAGE && !oc->include_usage))
        return;
    chunk_begin(oc, &w);
    if (st->kind == BT_SIM_STEP_USAGE) {
        chunk_end(oc, &w, true, out, st->due);
        return;
    }
    const struct bt_sim_choice *c = &ch->choices[st->choice];
    bool tool = c->kind == BT_SIM_OUT_TOOL;
    choice_open(&w, st->choice);
    if (st->kind == BT_SIM_STEP_OPEN) {
        kv_cstr(&w, "role", "assistant");
        kv_cstr(&w, "content", tool ? NULL : "");
        if (tool) write_tool_calls(&w, ch, c, CALL_FIRST, BT_STR(""));
        kv_cstr(&w, "refusal", NULL);
    } else if (st->kind == BT_SIM_STEP_DELTA) {
        struct bt_str token = bt_sim_chat_token(c, st->token);
        if (tool) write_tool_calls(&w, ch, c, CALL_MORE, token);
        else kv_str(&w, "content", token);
    }
    choice_close(&w, st->kind == BT_SIM_STEP_FINISH ? finish_name(c->finish) : NULL);
    chunk_end(oc, &w, false, out, st->due);
}

static void render_chat_reply(const struct bt_sim_cfg *cfg, struct bt_str body, uint64_t h,
                              struct bt_sim_reply *r)
{
    struct bt_arena arena;
    bt_arena_init(&arena, 16384, SIM_ARENA_MAX);
    struct bt_json_doc doc;
    struct oai_chat oc = {.ch = {.cfg = cfg, .doc = &doc, .arena = &arena, .h = h}};
    oc.ch.wire = &oc;
    bt_buf_init(&oc.scratch, BT_SIM_BODY_MAX);
    int model = parse_body(body, &arena, &doc, r);
    if (model < 0 || !chat_parse(&oc, model, r)) goto done;

    memcpy(oc.id, "chatcmpl-", 9);
    bt_sim_id_chars(oc.id + 9, 29, h);
    /* created is derived from the request, not the clock, so identical
     * requests give identical bytes; it stays a plausible 2025 timestamp. */
    oc.created = 1735689600 + (int64_t)(bt_sim_mix64(h ^ 0xc4ea7edu) % 31536000u);
    snprintf(oc.fp, sizeof oc.fp, "fp_%010llx",
             (unsigned long long)(bt_sim_mix64(cfg->seed) & 0xffffffffffULL));
    bt_sim_chat_render(&bt_sim_openai_renderer, &oc.ch, r);
done:
    bt_buf_free(&oc.scratch);
    bt_arena_free(&arena);
}

/* ---- embeddings ---- */

static bool all_numbers(const struct bt_json_doc *d, int arr)
{
    for (int e = bt_json_first(d, arr); e >= 0 && e < (int)d->toks[arr].next;
         e = (int)d->toks[e].next) {
        int64_t v;
        if (bt_json_type(d, e) != BT_JSON_NUMBER || bt_json_int(d, e, &v) || v < 0) return false;
    }
    return true;
}

static void render_embeddings(const struct bt_sim_cfg *cfg, struct bt_str body,
                              struct bt_sim_reply *r)
{
    struct bt_arena arena;
    bt_arena_init(&arena, 16384, SIM_ARENA_MAX);
    struct bt_json_doc doc;
    struct bt_json_doc *d = &doc;
    float *vec = NULL;
    int t = parse_body(body, &arena, d, r);
    if (t < 0) goto done;
    struct bt_str model;
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
            reply_errorf(r, 400, "dimensions", "invalid_value",
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
            reply_errorf(r, 400, "input", "invalid_value",
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
                reply_errorf(r, 400, "input", "invalid_value",
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
    if (!vec) {
        r->err = BT_ENOMEM;
        goto done;
    }
    struct bt_jw w;
    bt_jw_init(&w, &r->body);
    bt_jw_obj_begin(&w);
    kv_cstr(&w, "object", "list");
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
        bt_sim_embed_vector(vec, dims, cfg, key);
        bt_jw_obj_begin(&w);
        kv_cstr(&w, "object", "embedding");
        kv_int(&w, "index", i);
        bt_jw_key(&w, "embedding");
        bt_sim_embed_write(&w, vec, dims, b64);
        bt_jw_obj_end(&w);
    }
    bt_jw_arr_end(&w);
    kv_str(&w, "model", model);
    bt_jw_key(&w, "usage");
    bt_jw_obj_begin(&w);
    kv_int(&w, "prompt_tokens", (int64_t)tokens);
    kv_int(&w, "total_tokens", (int64_t)tokens);
    bt_jw_obj_end(&w);
    bt_jw_obj_end(&w);
    if (w.err) {
        r->err = w.err;
        goto done;
    }
    r->status = 200;
    r->head_due = (double)cfg->ttft_ms;
    bt_sim_reply_piece(r, 0, r->body.len, r->head_due);
done:
    free(vec);
    bt_arena_free(&arena);
}

/* ---- models ---- */

static void write_model(struct bt_jw *w, struct bt_str id)
{
    bt_jw_obj_begin(w);
    kv_str(w, "id", id);
    kv_cstr(w, "object", "model");
    kv_int(w, "created", 0);
    kv_cstr(w, "owned_by", "baton-sim");
    bt_jw_obj_end(w);
}

/* GET /models lists "sim" (the simulator does not know which names route to
 * it); GET /models/{id} describes any id, since the sim answers for any model. */
static void render_models(struct bt_str id, bool one, struct bt_sim_reply *r)
{
    struct bt_jw w;
    bt_jw_init(&w, &r->body);
    if (one) {
        write_model(&w, id);
    } else {
        bt_jw_obj_begin(&w);
        kv_cstr(&w, "object", "list");
        bt_jw_key(&w, "data");
        bt_jw_arr_begin(&w);
        write_model(&w, BT_STR("sim"));
        bt_jw_arr_end(&w);
        bt_jw_obj_end(&w);
    }
    if (w.err) {
        r->err = w.err;
        return;
    }
    r->status = 200;
    bt_sim_reply_piece(r, 0, r->body.len, 0);
}

/* ---- the endpoints ---- */

static void render_reply(const struct bt_sim_cfg *cfg, const struct bt_sim_request *req,
                         uint64_t h, struct bt_sim_reply *r)
{
    struct bt_str path = req->path;
    long q = bt_str_index(path, '?');
    if (q >= 0) path.len = (size_t)q;
    while (path.len > 1 && path.p[path.len - 1] == '/') path.len--;
    bool post = bt_str_eq_c(req->method, "POST"), get = bt_str_eq_c(req->method, "GET");
    bool known = true;
    if (bt_str_eq_c(path, "/chat/completions")) {
        if (post) render_chat_reply(cfg, req->body, h, r);
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
        reply_errorf(r, 404, NULL, NULL, "Invalid URL (%.*s %.*s)", BT_STR_FMT(req->method),
                     BT_STR_FMT(req->path));
        return;
    }
    if (!known)
        reply_errorf(r, 405, NULL, NULL, "Invalid method for URL (%.*s %.*s)",
                     BT_STR_FMT(req->method), BT_STR_FMT(req->path));
}

const struct bt_sim_renderer bt_sim_openai_renderer = {
    .wire = BT_API_OPENAI,
    .request_id_header = "x-request-id",
    .render_reply = render_reply,
    .render_chat = render_chat,
    .render_stream_step = render_stream_step,
    .render_stream_error = render_stream_error,
    .render_error = render_error,
};
