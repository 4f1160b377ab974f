#include "api/openai.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/api.h"
#include "api/openai_chat.h"
#include "api/openai_encode.h"
#include "core/log.h"
#include "core/time.h"
#include "store/keys.h"

/* The top-level members the gateway reads. Each may appear once: with a key
 * given twice, baton and the provider could each act on a different value (a
 * JSON parser may keep the first or the last), so the request is refused. */
enum req_key {
    K_MODEL, K_MESSAGES, K_STREAM, K_STREAM_OPTIONS, K_TOOLS, K_MAX_COMPLETION_TOKENS,
    K_MAX_TOKENS, K_USER, K_INPUT, K_COUNT
};
static const char *const req_keys[K_COUNT] = {
    "model", "messages", "stream", "stream_options", "tools", "max_completion_tokens",
    "max_tokens", "user", "input",
};

/* Finds the members above in one pass over `obj`; BT_EINVAL with *dup set when
 * one is given twice. */
static enum bt_err find_members(const struct bt_json_doc *d, int obj, const char *const *names,
                                int n, int *toks, const char **dup)
{
    for (int i = 0; i < n; i++) toks[i] = -1;
    uint32_t count = d->toks[obj].size;
    int k = obj + 1;
    for (uint32_t m = 0; m < count; m++) {
        struct bt_str raw = bt_json_str_raw(d, k);
        for (int i = 0; i < n; i++) {
            /* first bytes differ for most pairs: skip bt_json_str_eq's unescape check */
            if (!d->toks[k].escaped && (!raw.len || raw.p[0] != names[i][0])) continue;
            if (!bt_json_str_eq(d, k, names[i])) continue;
            if (toks[i] >= 0) {
                *dup = names[i];
                return BT_EINVAL;
            }
            toks[i] = k + 1;
            break;
        }
        k = (int)d->toks[k + 1].next;
    }
    return BT_OK;
}

enum bt_err bt_openai_decode_request(struct bt_request *r, enum bt_op op, struct bt_str body,
                                     struct bt_arena *arena, char *msg, size_t msgcap,
                                     const char **param)
{
    memset(r, 0, sizeof(*r));
    r->api = BT_API_OPENAI;
    r->op = op;
    r->tok_tools = r->tok_stream_options = r->tok_input = r->tok_messages = -1;
    r->max_tokens = -1;
    r->body_bytes = (uint32_t)body.len;
    *param = NULL;
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
    const struct bt_json_doc *d = &r->doc;
    if (bt_json_type(d, 0) != BT_JSON_OBJECT) {
        snprintf(msg, msgcap, "The request body must be a JSON object.");
        return BT_EINVAL;
    }
    int t[K_COUNT];
    const char *dup = NULL;
    if (find_members(d, 0, req_keys, K_COUNT, t, &dup)) {
        *param = dup;
        snprintf(msg, msgcap, "'%s' is given more than once; each parameter may appear once.", dup);
        return BT_EINVAL;
    }
    r->tok_model = t[K_MODEL];
    if (r->tok_model < 0) {
        *param = "model";
        snprintf(msg, msgcap, "you must provide a model parameter");
        return BT_EINVAL;
    }
    if (bt_json_type(d, r->tok_model) != BT_JSON_STRING ||
        bt_json_str(d, r->tok_model, arena, &r->model) || r->model.len == 0) {
        *param = "model";
        snprintf(msg, msgcap, "'model' must be a non-empty string");
        return BT_EINVAL;
    }
    if (!bt_api_name_ok(r->model, "model", msg, msgcap)) {
        *param = "model";
        return BT_EINVAL;
    }
    int u = t[K_USER];
    if (u >= 0 && bt_json_type(d, u) != BT_JSON_NULL) {
        *param = "user";
        if (bt_json_type(d, u) != BT_JSON_STRING || bt_json_str(d, u, arena, &r->user)) {
            snprintf(msg, msgcap, "'user' must be a string.");
            return BT_EINVAL;
        }
        if (!bt_api_name_ok(r->user, "user", msg, msgcap)) return BT_EINVAL;
        *param = NULL;
    }
    if (op == BT_OP_CHAT) {
        r->tok_messages = t[K_MESSAGES];
        if (r->tok_messages < 0) {
            *param = "messages";
            snprintf(msg, msgcap, "Missing required parameter: 'messages'.");
            return BT_EINVAL;
        }
        if (bt_json_type(d, r->tok_messages) != BT_JSON_ARRAY ||
            d->toks[r->tok_messages].size == 0) {
            *param = "messages";
            snprintf(msg, msgcap, "'messages' must be a non-empty array.");
            return BT_EINVAL;
        }
        int s = t[K_STREAM];
        if (s >= 0 && bt_json_type(d, s) != BT_JSON_NULL) {
            if (bt_json_bool(d, s, &r->stream)) {
                *param = "stream";
                snprintf(msg, msgcap, "'stream' must be a boolean.");
                return BT_EINVAL;
            }
        }
        int so = t[K_STREAM_OPTIONS];
        if (bt_json_type(d, so) == BT_JSON_OBJECT) {
            r->tok_stream_options = so;
            static const char *const so_keys[1] = {"include_usage"};
            int iu;
            if (find_members(d, so, so_keys, 1, &iu, &dup)) {
                *param = "stream_options.include_usage";
                snprintf(msg, msgcap, "'stream_options.include_usage' is given more than once.");
                return BT_EINVAL;
            }
            bool v = false;
            if (iu >= 0 && bt_json_bool(d, iu, &v) == BT_OK) r->include_usage = v;
        }
        if (bt_json_type(d, t[K_TOOLS]) == BT_JSON_ARRAY) r->tok_tools = t[K_TOOLS];
        int mt = t[K_MAX_COMPLETION_TOKENS];
        if (mt < 0) mt = t[K_MAX_TOKENS];
        int64_t v;
        if (mt >= 0 && bt_json_type(d, mt) == BT_JSON_NUMBER && bt_json_int(d, mt, &v) == BT_OK)
            r->max_tokens = v;
    } else {
        r->tok_input = t[K_INPUT];
        if (r->tok_input < 0) {
            *param = "input";
            snprintf(msg, msgcap, "Missing required parameter: 'input'.");
            return BT_EINVAL;
        }
    }
    return BT_OK;
}

/* ---- writing OpenAI's shapes ---- */

static void write_error(struct bt_jw *w, struct bt_str message, struct bt_str type,
                        const char *param, const char *code)
{
    bt_jw_obj_begin(w);
    bt_jw_key(w, "error");
    bt_jw_obj_begin(w);
    bt_jw_key(w, "message");
    bt_jw_str(w, message);
    bt_jw_key(w, "type");
    bt_jw_str(w, type);
    bt_jw_key(w, "param");
    if (param) bt_jw_cstr(w, param);
    else bt_jw_null(w);
    bt_jw_key(w, "code");
    if (code) bt_jw_cstr(w, code);
    else bt_jw_null(w);
    bt_jw_obj_end(w);
    bt_jw_obj_end(w);
}

void bt_openai_error_json(struct bt_buf *out, const char *message, const char *type,
                          const char *param, const char *code)
{
    struct bt_jw w;
    bt_jw_init(&w, out);
    write_error(&w, bt_str_c(message), bt_str_c(type), param, code);
}

/* OpenAI's error `type` for a neutral error: the provider's own when it speaks
 * OpenAI too; for a provider's failure the one table of outcome classes
 * (bt_openai_outcome_error, which the translated streams use too); else from the
 * status. */
static struct bt_str error_type(const struct bt_error *e)
{
    if (e->type.len) return e->type;
    if (e->code && strcmp(e->code, "insufficient_quota") == 0) return BT_STR("insufficient_quota");
    if (e->status == 429 || e->cls == BT_OUTCOME_RATE_LIMIT) return BT_STR("rate_limit_error");
    if (e->cls == BT_OUTCOME_TIMEOUT) return BT_STR("timeout_error");
    if (e->upstream && e->status >= 500) {
        const char *type, *code;
        bt_openai_outcome_error(e->cls, &type, &code);
        return bt_str_c(type);
    }
    if (e->status == 403) return BT_STR("permission_error");
    if (e->status >= 500) return BT_STR("server_error");
    return BT_STR("invalid_request_error");
}

static const char *fe_error_body(struct bt_buf *out, const struct bt_error *e)
{
    struct bt_jw w;
    bt_jw_init(&w, out);
    write_error(&w, e->message, error_type(e), e->param, e->code);
    return "application/json";
}

/* An error inside a stream: one `data:` event with the error object; the stream
 * then ends without `[DONE]`, so no client takes it for a clean finish. */
static enum bt_err fe_stream_error(struct bt_buf *out, const struct bt_error *e)
{
    size_t start = out->len;
    enum bt_err err = bt_buf_append_c(out, "data: ");
    if (!err) {
        struct bt_jw w;
        bt_jw_init(&w, out);
        write_error(&w, e->message, error_type(e), e->param, e->code);
        err = w.err;
    }
    if (!err) err = bt_buf_append_c(out, "\n\n");
    if (err) out->len = start;
    return err;
}

/* A relayed chunk with usage: `data: ` + the chunk with usage.cost_usd spliced
 * in, every other byte as the provider sent it. */
static enum bt_err fe_stream_usage_cost(struct bt_buf *out, const struct bt_json_doc *event,
                                        struct bt_str cost_usd, struct bt_arena *arena)
{
    int u = bt_json_get(event, 0, "usage");
    if (u < 0 || bt_json_type(event, u) != BT_JSON_OBJECT) return BT_EINVAL;
    struct bt_json_splice sp;
    bt_json_splice_init(&sp, event, arena);
    enum bt_err err = bt_json_splice_set(&sp, u, "cost_usd", cost_usd);
    if (err) return err;
    size_t start = out->len;
    err = bt_buf_append_c(out, "data: ");
    if (!err) err = bt_json_splice_apply(&sp, out);
    if (!err) err = bt_buf_append_c(out, "\n\n");
    if (err) out->len = start;
    return err;
}

static void write_model(struct bt_jw *w, struct bt_str id, const char *owned_by)
{
    bt_jw_obj_begin(w);
    bt_jw_key(w, "id");
    bt_jw_str(w, id);
    bt_jw_key(w, "object");
    bt_jw_cstr(w, "model");
    bt_jw_key(w, "created");
    bt_jw_int(w, 0);
    bt_jw_key(w, "owned_by");
    bt_jw_cstr(w, owned_by);
    bt_jw_obj_end(w);
}

/* ---- GET /v1/models and /v1/models/ID ---- */

static void model_entry(struct bt_http_req *req, struct bt_worker *wk, struct bt_str id)
{
    /* A configured name, or a direct `provider/model` id (what chat accepts). */
    const struct bt_config *cfg = wk->cfg;
    const struct bt_model *m = bt_config_model(cfg, id);
    long slash = m ? -1 : bt_str_index(id, '/');
    const struct bt_provider *p = slash > 0 && (size_t)slash + 1 < id.len
                                      ? bt_config_provider(cfg, (struct bt_str){id.p, (size_t)slash})
                                      : NULL;
    /* A virtual key limited to some models sees only those (as a missing one). */
    if (wk->caller_key && !bt_key_allows_model(wk->caller_key, id)) m = NULL, p = NULL;
    if (!m && !p) {
        char msg[400];
        snprintf(msg, sizeof(msg), "The model '%.*s' does not exist", BT_STR_FMT(id));
        bt_api_fail(req, &bt_fe_openai, 404, "model_not_found", "model", msg, id);
        return;
    }
    struct bt_buf b;
    bt_buf_init(&b, 1u << 20);
    struct bt_jw w;
    bt_jw_init(&w, &b);
    if (m) write_model(&w, bt_str_c(m->name), "baton");
    else write_model(&w, id, p->name);
    bt_api_json_logged(req, 200, bt_buf_str(&b));
    bt_buf_free(&b);
}

static void fe_models(struct bt_http_req *req, struct bt_worker *wk, struct bt_str raw_id)
{
    if (raw_id.len) {
        /* The SDKs send a model id with '/' as %2F; a literal '/' works too. */
        struct bt_buf idb;
        bt_buf_init(&idb, BT_NAME_MAX + 1);
        enum bt_err derr = bt_buf_append_pct_decoded(&idb, raw_id);
        char m[300];
        if (derr || !bt_api_name_ok(bt_buf_str(&idb), "model", m, sizeof(m))) {
            if (derr == BT_EPARSE)
                snprintf(m, sizeof(m), "The model id in the URL has a broken %%-escape or a "
                                       "control character.");
            else if (derr)
                snprintf(m, sizeof(m), "The model id in the URL is longer than %d bytes.",
                         BT_NAME_MAX);
            bt_buf_free(&idb);
            bt_api_fail(req, &bt_fe_openai, 400, NULL, "model", m, BT_STR_NULL);
            return;
        }
        model_entry(req, wk, bt_buf_str(&idb));
        bt_buf_free(&idb);
        return;
    }
    const struct bt_config *cfg = wk->cfg;
    struct bt_buf b;
    bt_buf_init(&b, 64u << 20);
    struct bt_jw w;
    bt_jw_init(&w, &b);
    bt_jw_obj_begin(&w);
    bt_jw_key(&w, "object");
    bt_jw_cstr(&w, "list");
    bt_jw_key(&w, "data");
    bt_jw_arr_begin(&w);
    for (size_t i = 0; i < cfg->nmodels; i++) {
        struct bt_str name = bt_str_c(cfg->models[i].name);
        if (!wk->caller_key || bt_key_allows_model(wk->caller_key, name))
            write_model(&w, name, "baton");
    }
    bt_jw_arr_end(&w);
    bt_jw_obj_end(&w);
    bt_api_json_logged(req, 200, bt_buf_str(&b));
    bt_buf_free(&b);
}

static enum bt_err fe_decode(struct bt_request *r, enum bt_op op, struct bt_str body,
                             struct bt_arena *arena, char *msg, size_t msgcap, const char **param)
{
    enum bt_err err = bt_openai_decode_request(r, op, body, arena, msg, msgcap, param);
    r->fe = &bt_fe_openai;
    return err;
}

/* ---- translated responses: the encoders of api/openai_encode.c ---- */

static struct bt_openai_enc_opts enc_opts(const struct bt_request *r, struct bt_str model)
{
    return (struct bt_openai_enc_opts){
        .id = BT_STR("chatcmpl-baton"),
        .model = model,
        .created = bt_unix_time(),
        .include_usage = r->include_usage,
    };
}

static void fe_stream_begin(void *st, const struct bt_request *r, struct bt_str model)
{
    struct bt_openai_enc_opts o = enc_opts(r, model);
    bt_openai_stream_init(st, &o);
}

static enum bt_err fe_stream_event(void *st, const struct bt_event *ev, struct bt_buf *out)
{
    return bt_openai_stream_event(st, ev, out);
}

static enum bt_err fe_stream_end(void *st, const struct bt_error *e, struct bt_buf *out)
{
    if (bt_openai_stream_ended(st)) return BT_OK;
    if (!e) return bt_openai_stream_event(st, &(struct bt_event){.type = BT_EV_DONE}, out);
    /* The encoder takes error text escaped, as decoders give it. */
    struct bt_buf msg;
    bt_buf_init(&msg, 4 * e->message.len + 16);
    enum bt_err err = bt_json_escape(&msg, e->message);
    if (!err) {
        struct bt_event ev = {
            .type = BT_EV_ERROR,
            .outcome = e->cls,
            .err_message = {msg.p + 1, msg.len - 2}, /* without the quotes */
            .err_code = bt_str_c(e->code),
            .err_type = error_type(e),
        };
        err = bt_openai_stream_event(st, &ev, out);
    }
    bt_buf_free(&msg);
    return err;
}

static void *fe_reply_new(const struct bt_request *r, struct bt_str model, size_t max)
{
    struct bt_openai_agg *a = malloc(sizeof(*a));
    if (!a) return NULL;
    struct bt_openai_enc_opts o = enc_opts(r, model);
    bt_openai_agg_init(a, &o, max);
    return a;
}

static enum bt_err fe_reply_write(void *reply, struct bt_buf *out, int *status)
{
    return bt_openai_agg_write(reply, out, status);
}

static void fe_reply_free(void *reply)
{
    if (!reply) return;
    bt_openai_agg_free(reply);
    free(reply);
}

static enum bt_err fe_chat(const struct bt_request *r, struct bt_arena *arena, struct bt_chat *out,
                           struct bt_chat_error *err)
{
    return bt_openai_chat_decode(&r->doc, arena, out, err);
}

const struct bt_frontend bt_fe_openai = {
    .name = "openai",
    .api = BT_API_OPENAI,
    .decode = fe_decode,
    .chat = fe_chat,
    .error_body = fe_error_body,
    .stream_error = fe_stream_error,
    .stream_usage_cost = fe_stream_usage_cost,
    .models = fe_models,
    .stream_size = sizeof(struct bt_openai_stream),
    .stream_begin = fe_stream_begin,
    .stream_event = fe_stream_event,
    .stream_end = fe_stream_end,
    .reply_new = fe_reply_new,
    .reply_event = bt_openai_agg_cb,
    .reply_write = fe_reply_write,
    .reply_free = fe_reply_free,
};
