#include "api/anthropic.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/anthropic_encode.h"
#include "api/anthropic_msg.h"
#include "api/api.h"
#include "canon/chat.h"
#include "core/log.h"
#include "core/buf.h"
#include "gate/gate.h"
#include "json/json.h"
#include "route/route.h"
#include "tok/tok.h"

/* ---- decode ---- */

static enum bt_err decode(struct bt_request *r, enum bt_op op, struct bt_str body,
                          struct bt_arena *arena, bool count_only, char *msg, size_t msgcap,
                          const char **param)
{
    memset(r, 0, sizeof(*r));
    r->api = BT_API_ANTHROPIC;
    r->fe = &bt_fe_anthropic;
    r->op = op;
    r->tok_tools = r->tok_stream_options = r->tok_input = r->tok_messages = r->tok_model = -1;
    r->max_tokens = -1;
    r->body_bytes = (uint32_t)body.len;
    *param = NULL;
    if (op != BT_OP_CHAT) {
        snprintf(msg, msgcap, "The Messages API has no such operation.");
        return BT_EINVAL;
    }
    if (body.len == 0) {
        snprintf(msg, msgcap, "The request body is empty; expected a JSON object.");
        return BT_EPARSE;
    }
    struct bt_json_error jerr;
    enum bt_err err = bt_json_parse(&r->doc, body.p, body.len, arena, NULL, &jerr);
    if (err == BT_ENOMEM) return err;
    if (err) {
        snprintf(msg, msgcap, "The request body is not valid JSON: %s at byte %zu.", jerr.msg,
                 jerr.offset);
        return BT_EPARSE;
    }
    struct bt_chat *c = bt_arena_alloc(arena, sizeof(*c));
    struct bt_chat_error *ce = bt_arena_alloc(arena, sizeof(*ce));
    if (!c || !ce) return BT_ENOMEM;
    err = bt_anthropic_msg_decode(&r->doc, arena, count_only, c, ce);
    if (err == BT_EINVAL) {
        snprintf(msg, msgcap, "%s", ce->message);
        char *p = bt_arena_alloc(arena, sizeof(ce->param));
        if (p && ce->param[0]) {
            memcpy(p, ce->param, sizeof(ce->param));
            *param = p;
        }
    }
    if (err) return err;
    r->chat = c;
    const struct bt_json_doc *d = &r->doc;
    r->tok_model = bt_json_get(d, 0, "model");
    r->tok_messages = bt_json_get(d, 0, "messages");
    int t = bt_json_get(d, 0, "tools");
    if (bt_json_type(d, t) == BT_JSON_ARRAY) r->tok_tools = t;
    if (bt_json_str(d, r->tok_model, arena, &r->model) || !r->model.len) {
        *param = "model";
        snprintf(msg, msgcap, "model: String should have at least 1 character");
        return BT_EINVAL;
    }
    if (!bt_api_name_ok(r->model, "model", msg, msgcap)) {
        *param = "model";
        return BT_EINVAL;
    }
    if (c->given & BT_GIVEN_USER) {
        int u = bt_json_path(d, 0, "metadata", "user_id", NULL);
        if (bt_json_str(d, u, arena, &r->user)) return BT_ENOMEM;
        if (!bt_api_name_ok(r->user, "metadata.user_id", msg, msgcap)) {
            *param = "metadata.user_id";
            return BT_EINVAL;
        }
    }
    r->stream = c->stream;
    r->include_usage = true; /* Anthropic streams always carry usage */
    if (c->given & BT_GIVEN_MAX_TOKENS) r->max_tokens = c->max_tokens;
    return BT_OK;
}

static enum bt_err fe_decode(struct bt_request *r, enum bt_op op, struct bt_str body,
                             struct bt_arena *arena, char *msg, size_t msgcap, const char **param)
{
    return decode(r, op, body, arena, false, msg, msgcap, param);
}

/* ---- errors ---- */

static enum bt_err error_json(struct bt_buf *out, const struct bt_error *e)
{
    struct bt_jw w;
    bt_jw_init(&w, out);
    bt_jw_obj_begin(&w);
    bt_jw_key(&w, "type");
    bt_jw_cstr(&w, "error");
    bt_jw_key(&w, "error");
    bt_jw_obj_begin(&w);
    bt_jw_key(&w, "type");
    if (e->type.len) bt_jw_str(&w, e->type);
    else bt_jw_cstr(&w, bt_anthropic_error_type(e->status, e->cls));
    bt_jw_key(&w, "message");
    bt_jw_str(&w, e->message);
    bt_jw_obj_end(&w);
    bt_jw_key(&w, "request_id");
    bt_jw_null(&w);
    bt_jw_obj_end(&w);
    return w.err;
}

static const char *fe_error_body(struct bt_buf *out, const struct bt_error *e)
{
    (void)error_json(out, e);
    return "application/json";
}

/* `event: error` with the error object; the stream then ends without
 * message_stop. */
static enum bt_err fe_stream_error(struct bt_buf *out, const struct bt_error *e)
{
    size_t start = out->len;
    enum bt_err err = bt_buf_append_c(out, "event: error\ndata: ");
    if (!err) err = error_json(out, e);
    if (!err) err = bt_buf_append_c(out, "\n\n");
    if (err) out->len = start;
    return err;
}

/* ---- translated responses ---- */

static struct bt_anthropic_enc_opts enc_opts(struct bt_str model)
{
    return (struct bt_anthropic_enc_opts){.id = BT_STR("baton"), .model = model};
}

static void fe_stream_begin(void *st, const struct bt_request *r, struct bt_str model)
{
    (void)r;
    struct bt_anthropic_enc_opts o = enc_opts(model);
    bt_anthropic_stream_init(st, &o);
}

static enum bt_err fe_stream_event(void *st, const struct bt_event *ev, struct bt_buf *out)
{
    return bt_anthropic_stream_event(st, ev, out);
}

static enum bt_err fe_stream_end(void *st, const struct bt_error *e, struct bt_buf *out)
{
    if (bt_anthropic_stream_ended(st)) return BT_OK;
    if (!e) return bt_anthropic_stream_event(st, &(struct bt_event){.type = BT_EV_DONE}, out);
    enum bt_err err = fe_stream_error(out, e);
    if (!err) ((struct bt_anthropic_stream *)st)->state = BT_ANS_FAILED;
    return err;
}

static void *fe_reply_new(const struct bt_request *r, struct bt_str model, size_t max)
{
    (void)r;
    struct bt_anthropic_agg *a = malloc(sizeof(*a));
    if (!a) return NULL;
    struct bt_anthropic_enc_opts o = enc_opts(model);
    bt_anthropic_agg_init(a, &o, max);
    return a;
}

static enum bt_err fe_reply_write(void *reply, struct bt_buf *out, int *status)
{
    return bt_anthropic_agg_write(reply, out, status);
}

static void fe_reply_free(void *reply)
{
    if (!reply) return;
    bt_anthropic_agg_free(reply);
    free(reply);
}

/* anthropic-beta features that change what a request means and that no other
 * API can carry (server-side tools, files by id, context editing, skills): a
 * request naming one cannot be translated. Matched by prefix, since betas are
 * dated. Every other beta (caching, token-efficient tools, longer outputs or
 * contexts, interleaved thinking, ...) only tunes how Anthropic serves it and is
 * left out toward another API. */
static const char *const meaning_betas[] = {
    "computer-use-", "code-execution-", "files-api-", "mcp-client-", "context-management-",
    "skills-", "web-fetch-", NULL,
};

static enum bt_err fe_translate_check(const struct bt_request *r, char *msg, size_t msgcap,
                                      const char **param)
{
    for (size_t i = 0; i < r->nheaders; i++) {
        if (!bt_str_caseeq_c(r->headers[i].name, "anthropic-beta")) continue;
        struct bt_str v = r->headers[i].value;
        size_t a = 0;
        while (a < v.len) {
            size_t e = a;
            while (e < v.len && v.p[e] != ',') e++;
            struct bt_str beta = bt_str_trim((struct bt_str){v.p + a, e - a});
            a = e + 1;
            if (!beta.len) continue;
            bool refused = false;
            for (size_t k = 0; meaning_betas[k] && !refused; k++)
                refused = beta.len >= strlen(meaning_betas[k]) &&
                          memcmp(beta.p, meaning_betas[k], strlen(meaning_betas[k])) == 0;
            if (refused) {
                snprintf(msg, msgcap,
                         "anthropic-beta: %.*s: this model is served by a provider of another "
                         "API, which has no counterpart for that beta feature.",
                         (int)(beta.len > 100 ? 100 : beta.len), beta.p);
                *param = "anthropic-beta";
                return BT_EINVAL;
            }
            bt_debug("anthropic-beta %.*s left out: the provider speaks another API",
                     (int)(beta.len > 100 ? 100 : beta.len), beta.p);
        }
    }
    return BT_OK;
}

const struct bt_frontend bt_fe_anthropic = {
    .name = "anthropic",
    .api = BT_API_ANTHROPIC,
    .decode = fe_decode,
    .translate_check = fe_translate_check,
    .error_body = fe_error_body,
    .stream_error = fe_stream_error,
    .models = NULL,
    .stream_size = sizeof(struct bt_anthropic_stream),
    .stream_begin = fe_stream_begin,
    .stream_event = fe_stream_event,
    .stream_end = fe_stream_end,
    .reply_new = fe_reply_new,
    .reply_event = bt_anthropic_agg_cb,
    .reply_write = fe_reply_write,
    .reply_free = fe_reply_free,
};

/* ---- count_tokens ---- */

/* Per message and per tool, what a chat template adds around the text (the
 * figure OpenAI's cookbook uses); per image, Anthropic's figure for a picture
 * of about 1.15 megapixels (width * height / 750), the largest it keeps whole. */
#define TOKENS_PER_MESSAGE 3
#define TOKENS_PER_IMAGE 1600

struct counter {
    const struct bt_tok *tok;
    struct bt_buf b; /* unescaped text, counted at the end */
    int64_t extra;   /* tokens counted without text */
    enum bt_err err;
};

static void count_text(struct counter *c, struct bt_str escaped)
{
    if (!c->err && escaped.len) c->err = bt_json_unescape(escaped, &c->b);
    if (!c->err) c->err = bt_buf_append_c(&c->b, "\n");
}

static void count_parts(struct counter *c, const struct bt_chat_part *p, uint32_t n)
{
    for (uint32_t i = 0; i < n; i++) {
        switch (p[i].type) {
        case BT_PART_TEXT:
        case BT_PART_REFUSAL: count_text(c, p[i].text); break;
        case BT_PART_IMAGE: c->extra += TOKENS_PER_IMAGE; break;
        case BT_PART_FILE: c->extra += (int64_t)(p[i].file.data.len * 3 / 4) / 4; break;
        case BT_PART_TOOL_CALL:
            count_text(c, p[i].tool_call.name);
            if (!c->err) c->err = bt_buf_append_str(&c->b, p[i].tool_call.args);
            break;
        case BT_PART_TOOL_RESULT:
            count_parts(c, p[i].tool_result.parts, p[i].tool_result.nparts);
            break;
        case BT_PART_THINKING: count_text(c, p[i].thinking.text); break;
        default: break;
        }
    }
}

void bt_anthropic_count_tokens(struct bt_http_req *req, struct bt_worker *w)
{
    /* The path table identified the caller; the gate's admit step (per-key
     * model rights) needs who it is too, and a count of a model the caller may
     * not use is refused as a chat request would be. */
    struct bt_caller caller;
    const char *why = NULL;
    if (!bt_api_identify(w, req, &bt_fe_anthropic, &caller)) return;
    struct bt_request *r = bt_arena_alloc(req->arena, sizeof(*r));
    if (!r) {
        bt_api_fail(req, &bt_fe_anthropic, 500, NULL, NULL, "out of memory", BT_STR_NULL);
        return;
    }
    char msg[400];
    const char *param = NULL;
    enum bt_err err = decode(r, BT_OP_CHAT, req->body, req->arena, true, msg, sizeof(msg), &param);
    if (err) {
        if (err == BT_ENOMEM)
            bt_api_fail(req, &bt_fe_anthropic, 500, NULL, NULL, "out of memory", BT_STR_NULL);
        else bt_api_fail(req, &bt_fe_anthropic, 400, NULL, param, msg, r->model);
        return;
    }
    int status = 0;
    const char *code = NULL;
    if (!bt_gate_admit(w->cfg, &caller, r, &status, &code, &why)) {
        if (status == 429)
            bt_api_fail_retry(req, &bt_fe_anthropic, status, code, why, r->model, caller.retry_after);
        else
            bt_api_fail(req, &bt_fe_anthropic, status, code, NULL, why, r->model);
        return;
    }
    if (caller.held) bt_key_release(caller.key->live); /* counting holds no slot */
    struct bt_plan plan;
    if (bt_route_plan_for(w->cfg, r->model, r->user, w->rr, &plan)) {
        snprintf(msg, sizeof(msg), "model: %.*s", BT_STR_FMT(r->model));
        bt_api_fail(req, &bt_fe_anthropic, 404, "model_not_found", "model", msg, r->model);
        return;
    }
    struct counter c = {.tok = bt_tok_get(BT_TOK_O200K)};
    bt_buf_init(&c.b, 64u << 20);
    const struct bt_chat *ch = r->chat;
    count_parts(&c, ch->system, ch->nsystem);
    for (uint32_t i = 0; i < ch->nmsgs; i++) {
        c.extra += TOKENS_PER_MESSAGE;
        count_parts(&c, ch->msgs[i].parts, ch->msgs[i].nparts);
    }
    for (uint32_t i = 0; i < ch->ntools; i++) {
        c.extra += TOKENS_PER_MESSAGE;
        count_text(&c, ch->tools[i].name);
        count_text(&c, ch->tools[i].description);
        if (!c.err) c.err = bt_buf_append_str(&c.b, ch->tools[i].parameters);
    }
    size_t n = c.tok && !c.err ? bt_tok_count(c.tok, c.b.p, c.b.len) : SIZE_MAX;
    bt_buf_free(&c.b);
    if (n == SIZE_MAX) {
        bt_api_fail(req, &bt_fe_anthropic, 500, NULL, NULL, "the tokenizer failed", r->model);
        return;
    }
    char body[64];
    int len = snprintf(body, sizeof(body), "{\"input_tokens\":%lld}",
                       (long long)((int64_t)n + c.extra));
    bt_api_json_logged(req, 200, (struct bt_str){body, (size_t)len});
}
