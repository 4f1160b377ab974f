/* The simulator's Anthropic renderer (sim.h): POST /v1/messages as Anthropic's
 * servers answer it, a whole Message or a stream of named events
 * (message_start, content_block_start / _delta / _stop, message_delta,
 * message_stop), with errors in Anthropic's shape
 * ({"type":"error","error":{"type","message"},"request_id"}). Content and
 * timing come from the model (model.h): text, a tool_use block when tools are
 * given, JSON fitting output_config.format's schema. */
#include <stdio.h>
#include <string.h>

#include "sim/model.h"
#include "sim/rng.h"
#include "sim/sim.h"

#define SIM_ARENA_MAX ((size_t)256 << 20)

struct ant_chat {
    struct bt_sim_chat ch;
    char id[40];           /* msg_... */
    char req_id[40];       /* req_... */
    struct bt_buf scratch; /* one event's JSON */
};

/* ---- errors ---- */

static void reply_error(struct bt_sim_reply *r, int status, const char *type, struct bt_str msg)
{
    if (!bt_sim_reply_reset(r, status)) return;
    struct bt_jw w;
    bt_jw_init(&w, &r->body);
    bt_jw_obj_begin(&w);
    bt_jw_key(&w, "type");
    bt_jw_cstr(&w, "error");
    bt_jw_key(&w, "error");
    bt_jw_obj_begin(&w);
    bt_jw_key(&w, "type");
    bt_jw_cstr(&w, type);
    bt_jw_key(&w, "message");
    bt_jw_str(&w, msg);
    bt_jw_obj_end(&w);
    bt_jw_key(&w, "request_id");
    bt_jw_cstr(&w, "req_011CSim0000000000000000");
    bt_jw_obj_end(&w);
    if (w.err) {
        r->err = w.err;
        return;
    }
    bt_sim_reply_piece(r, 0, r->body.len, 0);
}

static void invalid(struct bt_sim_reply *r, const char *msg)
{
    reply_error(r, 400, "invalid_request_error", bt_str_c(msg));
}

static const struct {
    int status;
    const char *type, *message;
} errors[BT_SIM_NERRORS] = {
    [BT_SIM_ERR_RATE_LIMIT] = {429, "rate_limit_error",
                               "This request would exceed the rate limit for your organization "
                               "(simulated)."},
    [BT_SIM_ERR_SERVER] = {500, "api_error", "Internal server error"},
    [BT_SIM_ERR_OVERLOADED] = {529, "overloaded_error", "Overloaded"},
    [BT_SIM_ERR_SIMULATED] = {500, "api_error", "simulated error"},
    [BT_SIM_ERR_RENDER] = {500, "api_error", "The simulator could not render this reply."},
    [BT_SIM_ERR_UNKNOWN_URL] = {404, "not_found_error", "Not Found"},
    [BT_SIM_ERR_BAD_FAULT] = {400, "invalid_request_error", "unknown x-sim-fault value"},
};

static void render_error(struct bt_sim_reply *out, enum bt_sim_error e)
{
    if (e < 1 || e >= BT_SIM_NERRORS) e = BT_SIM_ERR_SERVER;
    reply_error(out, errors[e].status, errors[e].type, bt_str_c(errors[e].message));
}

static void render_stream_error(struct bt_sim_reply *out, double due)
{
    bt_sim_reply_emit(out,
                      BT_STR("event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":"
                             "\"overloaded_error\",\"message\":\"Overloaded (simulated)\"},"
                             "\"request_id\":\"req_011CSim0000000000000000\"}\n\n"),
                      due);
}

/* ---- the request ---- */

static uint64_t prompt_estimate(struct bt_str body)
{
    uint64_t t = (body.len + 3) / 4;
    return t ? t : 1;
}

/* Validates what Anthropic requires (model, max_tokens, messages) and reads
 * the tools and the output format. False after rendering the 400. */
static bool parse(struct ant_chat *ac, struct bt_str body, struct bt_sim_reply *r)
{
    struct bt_sim_chat *ch = &ac->ch;
    const struct bt_json_doc *d = ch->doc;
    if (bt_json_parse((struct bt_json_doc *)d, body.p ? body.p : "", body.len, ch->arena, NULL,
                      NULL) != BT_OK ||
        bt_json_type(d, 0) != BT_JSON_OBJECT) {
        invalid(r, "The request body is not valid JSON.");
        return false;
    }
    int t = bt_json_get(d, 0, "model");
    if (bt_json_type(d, t) != BT_JSON_STRING || bt_json_str(d, t, ch->arena, &ch->model)) {
        invalid(r, "model: Field required");
        return false;
    }
    t = bt_json_get(d, 0, "max_tokens");
    int64_t mt = 0;
    if (bt_json_type(d, t) != BT_JSON_NUMBER || bt_json_int(d, t, &mt) || mt < 1) {
        invalid(r, "max_tokens: Field required");
        return false;
    }
    ch->max_tokens = mt;
    int msgs = bt_json_get(d, 0, "messages");
    if (bt_json_type(d, msgs) != BT_JSON_ARRAY || d->toks[msgs].size == 0) {
        invalid(r, "messages: at least one message is required");
        return false;
    }
    /* the last message: a user turn whose content holds a tool_result? */
    bool last_tool = false;
    int last = bt_json_at(d, msgs, d->toks[msgs].size - 1);
    int content = bt_json_get(d, last, "content");
    if (bt_json_type(d, content) == BT_JSON_ARRAY)
        for (int b = bt_json_first(d, content); b >= 0 && b < (int)d->toks[content].next;
             b = (int)d->toks[b].next)
            if (bt_json_str_eq(d, bt_json_get(d, b, "type"), "tool_result")) last_tool = true;
    t = bt_json_get(d, 0, "stream");
    ch->stream = bt_json_type(d, t) == BT_JSON_TRUE;
    ch->n = 1;
    ch->prompt_tokens = prompt_estimate(body);
    ch->tool_params = -1;
    ch->json_schema = -1;
    int tools = bt_json_get(d, 0, "tools");
    int choice = bt_json_get(d, 0, "tool_choice");
    struct bt_str ctype = BT_STR_NULL, cname = BT_STR_NULL;
    if (bt_json_type(d, choice) == BT_JSON_OBJECT) {
        int ct = bt_json_get(d, choice, "type");
        if (bt_json_type(d, ct) == BT_JSON_STRING) ctype = bt_json_str_raw(d, ct);
        int cn = bt_json_get(d, choice, "name");
        if (bt_json_type(d, cn) == BT_JSON_STRING) cname = bt_json_str_raw(d, cn);
    }
    if (bt_json_type(d, tools) == BT_JSON_ARRAY && d->toks[tools].size > 0 &&
        !bt_str_eq_c(ctype, "none")) {
        for (int e = bt_json_first(d, tools); e >= 0 && e < (int)d->toks[tools].next;
             e = (int)d->toks[e].next) {
            int name = bt_json_get(d, e, "name");
            if (bt_json_type(d, name) != BT_JSON_STRING) {
                invalid(r, "tools: each tool needs a name");
                return false;
            }
            if (ch->tool.len && !(bt_str_eq_c(ctype, "tool") && cname.len)) continue;
            if (bt_str_eq_c(ctype, "tool") && !bt_str_eq(bt_json_str_raw(d, name), cname))
                continue;
            if (bt_json_str(d, name, ch->arena, &ch->tool)) {
                r->err = BT_ENOMEM;
                return false;
            }
            ch->tool_params = bt_json_get(d, e, "input_schema");
            if (bt_json_type(d, ch->tool_params) != BT_JSON_OBJECT) ch->tool_params = -1;
            if (bt_str_eq_c(ctype, "tool")) break;
        }
        if (bt_str_eq_c(ctype, "tool") && !ch->tool.len) {
            invalid(r, "tool_choice: the named tool is not in tools");
            return false;
        }
        /* after a tool's result, auto answers in text, so an agent loop ends */
        ch->call_tool = ch->tool.len && !(last_tool && !bt_str_eq_c(ctype, "any") &&
                                          !bt_str_eq_c(ctype, "tool"));
    }
    int schema = bt_json_path(d, 0, "output_config", "format", "schema", NULL);
    if (bt_json_type(d, schema) == BT_JSON_OBJECT) {
        ch->json = true;
        ch->json_schema = schema;
    }
    return true;
}

/* ---- the reply ---- */

static const char *stop_reason(enum bt_sim_finish f)
{
    switch (f) {
    case BT_SIM_FINISH_LENGTH: return "max_tokens";
    case BT_SIM_FINISH_TOOL: return "tool_use";
    default: return "end_turn";
    }
}

static void write_usage(struct bt_jw *w, uint64_t input, uint64_t output)
{
    bt_jw_key(w, "usage");
    bt_jw_obj_begin(w);
    bt_jw_key(w, "input_tokens");
    bt_jw_int(w, (int64_t)input);
    bt_jw_key(w, "cache_creation_input_tokens");
    bt_jw_int(w, 0);
    bt_jw_key(w, "cache_read_input_tokens");
    bt_jw_int(w, 0);
    bt_jw_key(w, "cache_creation");
    bt_jw_null(w);
    bt_jw_key(w, "output_tokens");
    bt_jw_int(w, (int64_t)output);
    bt_jw_key(w, "server_tool_use");
    bt_jw_null(w);
    bt_jw_key(w, "service_tier");
    bt_jw_cstr(w, "standard");
    bt_jw_key(w, "inference_geo");
    bt_jw_null(w);
    bt_jw_obj_end(w);
}

static void tool_id(const struct bt_sim_choice *c, char *id, size_t cap)
{
    snprintf(id, cap, "toolu_");
    bt_sim_id_chars(id + 6, 24, c->call_seed);
}

/* A content block; `input`: the tool_use's input (raw JSON), or for a stream
 * start NULL ({}). `text`: the text block's text. */
static void write_block(struct bt_jw *w, const struct bt_sim_chat *ch,
                        const struct bt_sim_choice *c, struct bt_str text, bool whole)
{
    bt_jw_obj_begin(w);
    bt_jw_key(w, "type");
    if (c->kind == BT_SIM_OUT_TOOL) {
        char id[40];
        tool_id(c, id, sizeof id);
        bt_jw_cstr(w, "tool_use");
        bt_jw_key(w, "id");
        bt_jw_cstr(w, id);
        bt_jw_key(w, "name");
        bt_jw_str(w, ch->tool);
        bt_jw_key(w, "input");
        bt_jw_raw(w, whole && c->text.len ? bt_buf_str(&c->text) : BT_STR("{}"));
        bt_jw_key(w, "caller");
        bt_jw_raw(w, BT_STR("{\"type\":\"direct\"}"));
    } else {
        bt_jw_cstr(w, "text");
        bt_jw_key(w, "text");
        bt_jw_str(w, text);
        bt_jw_key(w, "citations");
        bt_jw_null(w);
    }
    bt_jw_obj_end(w);
}

/* The Message members before content, for a whole reply or message_start. */
static void message_head(struct bt_jw *w, const struct ant_chat *ac)
{
    bt_jw_key(w, "id");
    bt_jw_cstr(w, ac->id);
    bt_jw_key(w, "type");
    bt_jw_cstr(w, "message");
    bt_jw_key(w, "role");
    bt_jw_cstr(w, "assistant");
    bt_jw_key(w, "model");
    bt_jw_str(w, ac->ch.model);
}

static void message_tail(struct bt_jw *w, const char *stop, uint64_t in, uint64_t out)
{
    bt_jw_key(w, "stop_reason");
    if (stop) bt_jw_cstr(w, stop);
    else bt_jw_null(w);
    bt_jw_key(w, "stop_sequence");
    bt_jw_null(w);
    bt_jw_key(w, "stop_details");
    bt_jw_null(w);
    bt_jw_key(w, "container");
    bt_jw_null(w);
    write_usage(w, in, out);
}

static void render_chat(const struct bt_sim_chat *ch, struct bt_sim_reply *out)
{
    const struct ant_chat *ac = ch->wire;
    const struct bt_sim_choice *c = &ch->choices[0];
    struct bt_jw w;
    bt_jw_init(&w, &out->body);
    bt_jw_obj_begin(&w);
    message_head(&w, ac);
    bt_jw_key(&w, "content");
    bt_jw_arr_begin(&w);
    write_block(&w, ch, c, bt_buf_str(&c->text), true);
    bt_jw_arr_end(&w);
    message_tail(&w, stop_reason(c->finish), ch->prompt_tokens, bt_sim_chat_completion_tokens(ch));
    bt_jw_obj_end(&w);
    if (w.err) out->err = w.err;
}

/* `event: NAME\ndata: JSON\n\n` from the scratch JSON. */
static void emit_event(struct ant_chat *ac, struct bt_jw *w, const char *name,
                       struct bt_sim_reply *r, double due)
{
    if (w->err && !r->err) r->err = w->err;
    struct bt_buf ev;
    bt_buf_init(&ev, BT_SIM_BODY_MAX);
    if (bt_buf_printf(&ev, "event: %s\ndata: ", name) ||
        bt_buf_append_str(&ev, bt_buf_str(&ac->scratch)) || bt_buf_append(&ev, "\n\n", 2)) {
        if (!r->err) r->err = BT_ETOOBIG;
    } else {
        bt_sim_reply_emit(r, bt_buf_str(&ev), due);
    }
    bt_buf_free(&ev);
}

static void event_begin(struct ant_chat *ac, struct bt_jw *w, const char *type)
{
    bt_buf_reset(&ac->scratch);
    bt_jw_init(w, &ac->scratch);
    bt_jw_obj_begin(w);
    bt_jw_key(w, "type");
    bt_jw_cstr(w, type);
}

static void render_stream_step(const struct bt_sim_chat *ch, const struct bt_sim_step *st,
                               struct bt_sim_reply *out)
{
    struct ant_chat *ac = ch->wire;
    const struct bt_sim_choice *c = &ch->choices[0];
    struct bt_jw w;
    if (st->choice != 0) return; /* one choice: Anthropic has no n */
    switch (st->kind) {
    case BT_SIM_STEP_BEGIN:
        event_begin(ac, &w, "message_start");
        bt_jw_key(&w, "message");
        bt_jw_obj_begin(&w);
        message_head(&w, ac);
        bt_jw_key(&w, "content");
        bt_jw_raw(&w, BT_STR("[]"));
        message_tail(&w, NULL, ch->prompt_tokens, 1);
        bt_jw_obj_end(&w);
        bt_jw_obj_end(&w);
        emit_event(ac, &w, "message_start", out, st->due);
        return;
    case BT_SIM_STEP_OPEN:
        event_begin(ac, &w, "content_block_start");
        bt_jw_key(&w, "index");
        bt_jw_int(&w, 0);
        bt_jw_key(&w, "content_block");
        write_block(&w, ch, c, BT_STR(""), false);
        bt_jw_obj_end(&w);
        emit_event(ac, &w, "content_block_start", out, st->due);
        return;
    case BT_SIM_STEP_DELTA:
        event_begin(ac, &w, "content_block_delta");
        bt_jw_key(&w, "index");
        bt_jw_int(&w, 0);
        bt_jw_key(&w, "delta");
        bt_jw_obj_begin(&w);
        bt_jw_key(&w, "type");
        if (c->kind == BT_SIM_OUT_TOOL) {
            bt_jw_cstr(&w, "input_json_delta");
            bt_jw_key(&w, "partial_json");
        } else {
            bt_jw_cstr(&w, "text_delta");
            bt_jw_key(&w, "text");
        }
        bt_jw_str(&w, bt_sim_chat_token(c, st->token));
        bt_jw_obj_end(&w);
        bt_jw_obj_end(&w);
        emit_event(ac, &w, "content_block_delta", out, st->due);
        return;
    case BT_SIM_STEP_FINISH:
        event_begin(ac, &w, "content_block_stop");
        bt_jw_key(&w, "index");
        bt_jw_int(&w, 0);
        bt_jw_obj_end(&w);
        emit_event(ac, &w, "content_block_stop", out, st->due);
        return;
    case BT_SIM_STEP_USAGE:
        event_begin(ac, &w, "message_delta");
        bt_jw_key(&w, "delta");
        bt_jw_obj_begin(&w);
        bt_jw_key(&w, "stop_reason");
        bt_jw_cstr(&w, stop_reason(c->finish));
        bt_jw_key(&w, "stop_sequence");
        bt_jw_null(&w);
        bt_jw_key(&w, "stop_details");
        bt_jw_null(&w);
        bt_jw_key(&w, "container");
        bt_jw_null(&w);
        bt_jw_obj_end(&w);
        bt_jw_key(&w, "usage");
        bt_jw_obj_begin(&w);
        bt_jw_key(&w, "input_tokens");
        bt_jw_int(&w, (int64_t)ch->prompt_tokens);
        bt_jw_key(&w, "cache_creation_input_tokens");
        bt_jw_int(&w, 0);
        bt_jw_key(&w, "cache_read_input_tokens");
        bt_jw_int(&w, 0);
        bt_jw_key(&w, "output_tokens");
        bt_jw_int(&w, (int64_t)bt_sim_chat_completion_tokens(ch));
        bt_jw_key(&w, "server_tool_use");
        bt_jw_null(&w);
        bt_jw_obj_end(&w);
        bt_jw_obj_end(&w);
        emit_event(ac, &w, "message_delta", out, st->due);
        return;
    case BT_SIM_STEP_END:
        bt_sim_reply_emit(out, BT_STR("event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n"),
                          st->due);
        return;
    }
}

static void render_reply(const struct bt_sim_cfg *cfg, const struct bt_sim_request *req,
                         uint64_t h, struct bt_sim_reply *r)
{
    struct bt_str path = req->path;
    long q = bt_str_index(path, '?');
    if (q >= 0) path.len = (size_t)q; /* ?beta=true */
    if (!bt_str_eq_c(path, "/v1/messages")) {
        render_error(r, BT_SIM_ERR_UNKNOWN_URL);
        return;
    }
    if (!bt_str_eq_c(req->method, "POST")) {
        reply_error(r, 405, "invalid_request_error", BT_STR("Method Not Allowed"));
        return;
    }
    struct bt_arena arena;
    bt_arena_init(&arena, 16384, SIM_ARENA_MAX);
    struct bt_json_doc doc;
    struct ant_chat ac = {.ch = {.cfg = cfg, .doc = &doc, .arena = &arena, .h = h}};
    ac.ch.wire = &ac;
    bt_buf_init(&ac.scratch, BT_SIM_BODY_MAX);
    if (parse(&ac, req->body, r)) {
        memcpy(ac.id, "msg_01", 6);
        bt_sim_id_chars(ac.id + 6, 22, h);
        bt_sim_chat_render(&bt_sim_anthropic_renderer, &ac.ch, r);
    }
    bt_buf_free(&ac.scratch);
    bt_arena_free(&arena);
}

const struct bt_sim_renderer bt_sim_anthropic_renderer = {
    .wire = BT_API_ANTHROPIC,
    .request_id_header = "request-id",
    .render_reply = render_reply,
    .render_chat = render_chat,
    .render_stream_step = render_stream_step,
    .render_stream_error = render_stream_error,
    .render_error = render_error,
};
