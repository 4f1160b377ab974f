/* The simulator's Gemini renderer (sim.h): POST
 * /v1beta/models/{model}:generateContent, and :streamGenerateContent?alt=sse,
 * as Google AI Studio answers them: a GenerateContentResponse, or a stream of
 * them as `data:` events with no end marker (the last one carries the
 * finishReason and the usage). Errors in Google's shape
 * ({"error":{"code","message","status"}}). Content and timing come from the
 * model (model.h): text, a functionCall when functionDeclarations are given
 * (whole, in one chunk, as Gemini sends them), JSON fitting
 * generationConfig.responseJsonSchema. */
#include <stdio.h>
#include <string.h>

#include "sim/model.h"
#include "sim/rng.h"
#include "sim/sim.h"

#define SIM_ARENA_MAX ((size_t)256 << 20)

struct gem_chat {
    struct bt_sim_chat ch;
    char id[32];           /* responseId */
    struct bt_buf scratch; /* one chunk's JSON */
};

/* ---- errors ---- */

static void reply_error(struct bt_sim_reply *r, int status, const char *gstatus,
                        struct bt_str msg)
{
    if (!bt_sim_reply_reset(r, status)) return;
    struct bt_jw w;
    bt_jw_init(&w, &r->body);
    bt_jw_obj_begin(&w);
    bt_jw_key(&w, "error");
    bt_jw_obj_begin(&w);
    bt_jw_key(&w, "code");
    bt_jw_int(&w, status);
    bt_jw_key(&w, "message");
    bt_jw_str(&w, msg);
    bt_jw_key(&w, "status");
    bt_jw_cstr(&w, gstatus);
    bt_jw_obj_end(&w);
    bt_jw_obj_end(&w);
    if (w.err) {
        r->err = w.err;
        return;
    }
    bt_sim_reply_piece(r, 0, r->body.len, 0);
}

static void invalid(struct bt_sim_reply *r, const char *msg)
{
    reply_error(r, 400, "INVALID_ARGUMENT", bt_str_c(msg));
}

static const struct {
    int status;
    const char *gstatus, *message;
} errors[BT_SIM_NERRORS] = {
    [BT_SIM_ERR_RATE_LIMIT] = {429, "RESOURCE_EXHAUSTED",
                               "Resource has been exhausted (e.g. check quota). (simulated)"},
    [BT_SIM_ERR_SERVER] = {500, "INTERNAL", "An internal error has occurred."},
    [BT_SIM_ERR_OVERLOADED] = {503, "UNAVAILABLE", "The model is overloaded. Please try again later."},
    [BT_SIM_ERR_SIMULATED] = {500, "INTERNAL", "simulated error"},
    [BT_SIM_ERR_RENDER] = {500, "INTERNAL", "The simulator could not render this reply."},
    [BT_SIM_ERR_UNKNOWN_URL] = {404, "NOT_FOUND", "The requested URL was not found."},
    [BT_SIM_ERR_BAD_FAULT] = {400, "INVALID_ARGUMENT", "unknown x-sim-fault value"},
};

static void render_error(struct bt_sim_reply *out, enum bt_sim_error e)
{
    if (e < 1 || e >= BT_SIM_NERRORS) e = BT_SIM_ERR_SERVER;
    reply_error(out, errors[e].status, errors[e].gstatus, bt_str_c(errors[e].message));
}

static void render_stream_error(struct bt_sim_reply *out, double due)
{
    bt_sim_reply_emit(out,
                      BT_STR("data: {\"error\":{\"code\":500,\"message\":\"simulated error\","
                             "\"status\":\"INTERNAL\"}}\n\n"),
                      due);
}

/* ---- the request ---- */

static bool parse(struct gem_chat *gc, struct bt_json_doc *d, struct bt_str body,
                  struct bt_sim_reply *r)
{
    struct bt_sim_chat *ch = &gc->ch;
    if (bt_json_parse(d, body.p ? body.p : "", body.len, ch->arena, NULL, NULL) != BT_OK ||
        bt_json_type(d, 0) != BT_JSON_OBJECT) {
        invalid(r, "Invalid JSON payload received.");
        return false;
    }
    int contents = bt_json_get(d, 0, "contents");
    if (bt_json_type(d, contents) != BT_JSON_ARRAY || d->toks[contents].size == 0) {
        invalid(r, "* GenerateContentRequest.contents: contents is not specified");
        return false;
    }
    bool last_response = false;
    int last = bt_json_at(d, contents, d->toks[contents].size - 1);
    int parts = bt_json_get(d, last, "parts");
    if (bt_json_type(d, parts) != BT_JSON_ARRAY || d->toks[parts].size == 0) {
        invalid(r, "* GenerateContentRequest.contents.parts: contents.parts must not be empty.");
        return false;
    }
    for (int p = bt_json_first(d, parts); p >= 0 && p < (int)d->toks[parts].next;
         p = (int)d->toks[p].next)
        if (bt_json_get(d, p, "functionResponse") >= 0) last_response = true;
    ch->n = 1;
    ch->prompt_tokens = (body.len + 3) / 4 + 1;
    ch->tool_params = -1;
    ch->json_schema = -1;
    int gc_ = bt_json_get(d, 0, "generationConfig");
    int64_t v;
    int t = bt_json_get(d, gc_, "maxOutputTokens");
    if (bt_json_type(d, t) == BT_JSON_NUMBER && bt_json_int(d, t, &v) == BT_OK && v > 0)
        ch->max_tokens = v;
    t = bt_json_get(d, gc_, "candidateCount");
    if (bt_json_type(d, t) == BT_JSON_NUMBER && bt_json_int(d, t, &v) == BT_OK) {
        if (v < 1 || v > 8) {
            invalid(r, "* GenerateContentRequest.generation_config.candidate_count: must be 1 to 8");
            return false;
        }
        ch->n = (uint32_t)v;
    }
    if (bt_json_str_eq(d, bt_json_get(d, gc_, "responseMimeType"), "application/json")) {
        ch->json = true;
        int s = bt_json_get(d, gc_, "responseJsonSchema");
        if (bt_json_type(d, s) == BT_JSON_OBJECT) ch->json_schema = s;
    }
    int mode = bt_json_path(d, 0, "toolConfig", "functionCallingConfig", "mode", NULL);
    bool none = bt_json_str_eq(d, mode, "NONE"), any = bt_json_str_eq(d, mode, "ANY");
    int allowed = bt_json_path(d, 0, "toolConfig", "functionCallingConfig",
                               "allowedFunctionNames", NULL);
    int want = bt_json_at(d, allowed, 0);
    int tools = bt_json_get(d, 0, "tools");
    for (int tl = bt_json_first(d, tools); !none && tl >= 0 && tl < (int)d->toks[tools].next;
         tl = (int)d->toks[tl].next) {
        int decls = bt_json_get(d, tl, "functionDeclarations");
        for (int f = bt_json_first(d, decls); f >= 0 && f < (int)d->toks[decls].next;
             f = (int)d->toks[f].next) {
            int name = bt_json_get(d, f, "name");
            if (bt_json_type(d, name) != BT_JSON_STRING) {
                invalid(r, "* GenerateContentRequest.tools.function_declarations.name: Name "
                           "cannot be empty.");
                return false;
            }
            if (ch->tool.len) continue;
            if (want >= 0 && !bt_str_eq(bt_json_str_raw(d, name), bt_json_str_raw(d, want)))
                continue;
            if (bt_json_str(d, name, ch->arena, &ch->tool)) {
                r->err = BT_ENOMEM;
                return false;
            }
            ch->tool_params = bt_json_get(d, f, "parametersJsonSchema");
            if (bt_json_type(d, ch->tool_params) != BT_JSON_OBJECT)
                ch->tool_params = bt_json_get(d, f, "parameters");
            if (bt_json_type(d, ch->tool_params) != BT_JSON_OBJECT) ch->tool_params = -1;
        }
    }
    ch->call_tool = ch->tool.len && (any || !last_response);
    return true;
}

/* ---- the reply ---- */

static void write_usage(struct bt_jw *w, uint64_t prompt, uint64_t out)
{
    bt_jw_key(w, "usageMetadata");
    bt_jw_obj_begin(w);
    bt_jw_key(w, "promptTokenCount");
    bt_jw_int(w, (int64_t)prompt);
    if (out) {
        bt_jw_key(w, "candidatesTokenCount");
        bt_jw_int(w, (int64_t)out);
    }
    bt_jw_key(w, "totalTokenCount");
    bt_jw_int(w, (int64_t)(prompt + out));
    bt_jw_obj_end(w);
}

/* One candidate with `text` (or the whole function call) and, when `finish`,
 * its finishReason. */
static void write_candidate(struct bt_jw *w, const struct bt_sim_chat *ch, uint32_t i,
                            struct bt_str text, bool call, bool finish)
{
    const struct bt_sim_choice *c = &ch->choices[i];
    bt_jw_obj_begin(w);
    bt_jw_key(w, "content");
    bt_jw_obj_begin(w);
    bt_jw_key(w, "parts");
    bt_jw_arr_begin(w);
    bt_jw_obj_begin(w);
    if (call) {
        bt_jw_key(w, "functionCall");
        bt_jw_obj_begin(w);
        bt_jw_key(w, "name");
        bt_jw_str(w, ch->tool);
        bt_jw_key(w, "args");
        bt_jw_raw(w, c->text.len ? bt_buf_str(&c->text) : BT_STR("{}"));
        bt_jw_obj_end(w);
    } else {
        bt_jw_key(w, "text");
        bt_jw_str(w, text);
    }
    bt_jw_obj_end(w);
    bt_jw_arr_end(w);
    bt_jw_key(w, "role");
    bt_jw_cstr(w, "model");
    bt_jw_obj_end(w);
    if (finish) {
        bt_jw_key(w, "finishReason");
        bt_jw_cstr(w, c->finish == BT_SIM_FINISH_LENGTH ? "MAX_TOKENS" : "STOP");
    }
    bt_jw_key(w, "index");
    bt_jw_int(w, i);
    bt_jw_obj_end(w);
}

static void write_tail(struct bt_jw *w, const struct gem_chat *gc, uint64_t out)
{
    write_usage(w, gc->ch.prompt_tokens, out);
    bt_jw_key(w, "modelVersion");
    bt_jw_str(w, gc->ch.model);
    bt_jw_key(w, "responseId");
    bt_jw_cstr(w, gc->id);
}

static void render_chat(const struct bt_sim_chat *ch, struct bt_sim_reply *out)
{
    const struct gem_chat *gc = ch->wire;
    struct bt_jw w;
    bt_jw_init(&w, &out->body);
    bt_jw_obj_begin(&w);
    bt_jw_key(&w, "candidates");
    bt_jw_arr_begin(&w);
    for (uint32_t i = 0; i < ch->n; i++) {
        const struct bt_sim_choice *c = &ch->choices[i];
        write_candidate(&w, ch, i, bt_buf_str(&c->text), c->kind == BT_SIM_OUT_TOOL, true);
    }
    bt_jw_arr_end(&w);
    write_tail(&w, gc, bt_sim_chat_completion_tokens(ch));
    bt_jw_obj_end(&w);
    if (w.err) out->err = w.err;
}

/* Text streams a chunk per token; a function call comes whole in the chunk
 * that finishes its candidate; the last chunk carries the usage. Nothing marks
 * the end: the stream ends with the connection. */
static void render_stream_step(const struct bt_sim_chat *ch, const struct bt_sim_step *st,
                               struct bt_sim_reply *out)
{
    struct gem_chat *gc = ch->wire;
    if (st->kind != BT_SIM_STEP_DELTA && st->kind != BT_SIM_STEP_FINISH) return;
    const struct bt_sim_choice *c = &ch->choices[st->choice];
    bool call = c->kind == BT_SIM_OUT_TOOL;
    if (call && st->kind == BT_SIM_STEP_DELTA) return;
    bool finish = st->kind == BT_SIM_STEP_FINISH;
    bool last = finish && st->choice + 1 == ch->n;
    bt_buf_reset(&gc->scratch);
    struct bt_jw w;
    bt_jw_init(&w, &gc->scratch);
    bt_jw_obj_begin(&w);
    bt_jw_key(&w, "candidates");
    bt_jw_arr_begin(&w);
    write_candidate(&w, ch, st->choice,
                    finish ? BT_STR("") : bt_sim_chat_token(c, st->token), call, finish);
    bt_jw_arr_end(&w);
    write_tail(&w, gc, last ? bt_sim_chat_completion_tokens(ch) : 0);
    bt_jw_obj_end(&w);
    if (w.err && !out->err) out->err = w.err;
    bt_sim_reply_data(out, bt_buf_str(&gc->scratch), st->due);
}

/* /v1beta/models/{model}:generateContent or :streamGenerateContent (alt=sse). */
static void render_reply(const struct bt_sim_cfg *cfg, const struct bt_sim_request *req,
                         uint64_t h, struct bt_sim_reply *r)
{
    struct bt_str path = req->path, query = BT_STR_NULL;
    long q = bt_str_index(path, '?');
    if (q >= 0) {
        query = (struct bt_str){path.p + q + 1, path.len - (size_t)q - 1};
        path.len = (size_t)q;
    }
    static const char prefix[] = "/v1beta/models/";
    long colon = bt_str_index(path, ':');
    if (!bt_str_starts_with(path, BT_STR(prefix)) || colon <= (long)sizeof prefix - 1) {
        render_error(r, BT_SIM_ERR_UNKNOWN_URL);
        return;
    }
    struct bt_str model = {path.p + sizeof prefix - 1, (size_t)colon - (sizeof prefix - 1)};
    struct bt_str method = {path.p + colon + 1, path.len - (size_t)colon - 1};
    bool stream = bt_str_eq_c(method, "streamGenerateContent");
    if (!stream && !bt_str_eq_c(method, "generateContent")) {
        render_error(r, BT_SIM_ERR_UNKNOWN_URL);
        return;
    }
    if (!bt_str_eq_c(req->method, "POST")) {
        reply_error(r, 405, "INVALID_ARGUMENT", BT_STR("Method Not Allowed"));
        return;
    }
    if (stream && !bt_str_eq_c(query, "alt=sse")) {
        invalid(r, "the simulator streams as server-sent events only: add ?alt=sse");
        return;
    }
    struct bt_arena arena;
    bt_arena_init(&arena, 16384, SIM_ARENA_MAX);
    struct bt_json_doc doc;
    struct gem_chat gc = {.ch = {.cfg = cfg, .doc = &doc, .arena = &arena, .h = h}};
    gc.ch.wire = &gc;
    gc.ch.model = bt_arena_strdup(&arena, model);
    gc.ch.stream = stream;
    bt_buf_init(&gc.scratch, BT_SIM_BODY_MAX);
    if (gc.ch.model.p && parse(&gc, &doc, req->body, r)) {
        bt_sim_id_chars(gc.id, 22, h);
        bt_sim_chat_render(&bt_sim_gemini_renderer, &gc.ch, r);
    } else if (!gc.ch.model.p) {
        r->err = BT_ENOMEM;
    }
    bt_buf_free(&gc.scratch);
    bt_arena_free(&arena);
}

const struct bt_sim_renderer bt_sim_gemini_renderer = {
    .wire = BT_API_GEMINI,
    .request_id_header = "x-goog-request-id",
    .render_reply = render_reply,
    .render_chat = render_chat,
    .render_stream_step = render_stream_step,
    .render_stream_error = render_stream_error,
    .render_error = render_error,
};
