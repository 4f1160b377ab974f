#include "api/openai.h"

#include <stdio.h>
#include <string.h>

#include "account/access.h"
#include "core/log.h"
#include "core/time.h"
#include "exec/exec.h"
#include "gate/gate.h"
#include "provider/provider.h"
#include "route/route.h"
#include "canon/worker.h"

void bt_openai_error_json(struct bt_buf *out, const char *message, const char *type,
                          const char *param, const char *code)
{
    struct bt_jw w;
    bt_jw_init(&w, out);
    bt_openai_write_error(&w, bt_str_c(message), type, param, code);
}

const char *bt_openai_error_fmt(struct bt_buf *out, struct bt_str path, int status,
                                const char *type, const char *msg)
{
    (void)path;
    (void)status;
    bt_openai_error_json(out, msg, type, NULL, NULL);
    return "application/json";
}

/* Checks a client-chosen name that can reach a response header, a log line, a
 * metric label or an upstream request: 1 to BT_NAME_MAX bytes, none of them a
 * control character (C0, DEL). On failure writes why into msg, quoting the value
 * with control bytes shown as \xNN. */
bool bt_api_name_ok(struct bt_str v, const char *field, char *msg, size_t msgcap)
{
    size_t bad = v.len;
    for (size_t i = 0; i < v.len; i++) {
        unsigned char ch = (unsigned char)v.p[i];
        if (ch < 0x20 || ch == 0x7f) {
            bad = i;
            break;
        }
    }
    if (v.len && v.len <= BT_NAME_MAX && bad == v.len) return true;
    char shown[100];
    size_t o = 0;
    for (size_t i = 0; i < v.len && o + 5 < sizeof(shown) - 4; i++) {
        unsigned char ch = (unsigned char)v.p[i];
        if (ch < 0x20 || ch == 0x7f) o += (size_t)snprintf(shown + o, sizeof(shown) - o, "\\x%02x", ch);
        else shown[o++] = (char)ch;
    }
    if (o < v.len) {
        memcpy(shown + o, "...", 3);
        o += 3;
    }
    shown[o] = 0;
    if (!v.len)
        snprintf(msg, msgcap, "'%s' must be a non-empty string.", field);
    else if (bad < v.len)
        snprintf(msg, msgcap,
                 "Invalid '%s' \"%s\": it contains a control character (0x%02x at byte %zu); "
                 "it must be printable text of at most %d bytes.",
                 field, shown, (unsigned char)v.p[bad], bad, BT_NAME_MAX);
    else
        snprintf(msg, msgcap, "Invalid '%s' \"%s\": it is %zu bytes long; at most %d are allowed.",
                 field, shown, v.len, BT_NAME_MAX);
    return false;
}

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

/* ---- responses the front end makes itself ---- */

static void respond_json(struct bt_http_req *req, int status, struct bt_str body)
{
    struct bt_http_header hs[2] = {{BT_STR("x-baton-deployment"), BT_STR("none")},
                                   {BT_STR("x-baton-attempts"), BT_STR("0")}};
    /* Finishes the request whatever it returns; a refused head is logged by the server. */
    enum bt_err err = bt_http_respond(req, status, hs, 2, BT_STR("application/json"), body);
    (void)err;
}

static void respond_error(struct bt_http_req *req, int status, const char *type,
                          const char *param, const char *code, const char *msg,
                          struct bt_str model)
{
    struct bt_worker *w = req->ud;
    struct bt_buf b;
    bt_buf_init(&b, 16384);
    bt_openai_error_json(&b, msg, type, param, code);
    struct bt_access_rec rec = {
        .id = req->id,
        .method = req->method,
        .path = req->path,
        .model = model,
        .status = status,
        .latency_ns = bt_now_ns() - req->start_ns,
        .error = msg,
        .metrics = w ? w->mshard : NULL,
    };
    bt_access_write(&rec);
    respond_json(req, status, bt_buf_str(&b));
    bt_buf_free(&b);
}

static void handle_models(struct bt_http_req *req, const struct bt_config *cfg, struct bt_str id)
{
    struct bt_buf b;
    bt_buf_init(&b, 64u << 20);
    struct bt_jw w;
    bt_jw_init(&w, &b);
    if (id.len) {
        /* A configured name, or a direct `provider/model` id (what chat accepts). */
        const struct bt_model *m = bt_config_model(cfg, id);
        long slash = m ? -1 : bt_str_index(id, '/');
        const struct bt_provider *p =
            slash > 0 && (size_t)slash + 1 < id.len
                ? bt_config_provider(cfg, (struct bt_str){id.p, (size_t)slash})
                : NULL;
        if (!m && !p) {
            bt_buf_free(&b);
            char msg[400];
            snprintf(msg, sizeof(msg), "The model '%.*s' does not exist", BT_STR_FMT(id));
            respond_error(req, 404, "invalid_request_error", "model", "model_not_found", msg, id);
            return;
        }
        if (m) bt_openai_write_model(&w, bt_str_c(m->name), "baton");
        else bt_openai_write_model(&w, id, p->name);
    } else {
        bt_jw_obj_begin(&w);
        bt_jw_key(&w, "object");
        bt_jw_cstr(&w, "list");
        bt_jw_key(&w, "data");
        bt_jw_arr_begin(&w);
        for (size_t i = 0; i < cfg->nmodels; i++)
            bt_openai_write_model(&w, bt_str_c(cfg->models[i].name), "baton");
        bt_jw_arr_end(&w);
        bt_jw_obj_end(&w);
    }
    struct bt_worker *wk = req->ud;
    struct bt_access_rec rec = {
        .id = req->id, .method = req->method, .path = req->path, .status = 200,
        .latency_ns = bt_now_ns() - req->start_ns, .metrics = wk ? wk->mshard : NULL,
    };
    bt_access_write(&rec);
    respond_json(req, 200, bt_buf_str(&b));
    bt_buf_free(&b);
}

static void handle_generate(struct bt_http_req *req, struct bt_worker *w, enum bt_op op)
{
    struct bt_request *r = bt_arena_alloc(req->arena, sizeof(*r));
    if (!r) {
        respond_error(req, 500, "server_error", NULL, NULL, "out of memory", BT_STR_NULL);
        return;
    }
    char msg[300];
    const char *param = NULL;
    enum bt_err err = bt_openai_decode_request(r, op, req->body, req->arena, msg, sizeof(msg), &param);
    if (err) {
        if (err == BT_ENOMEM) respond_error(req, 500, "server_error", NULL, NULL, "out of memory", BT_STR_NULL);
        else respond_error(req, 400, "invalid_request_error", param, NULL, msg, r->model);
        return;
    }
    struct bt_str to = bt_http_header_get(req, "x-baton-timeout");
    if (to.p && (!bt_parse_duration_ms(bt_str_trim(to), &r->timeout_ms) || r->timeout_ms == 0)) {
        respond_error(req, 400, "invalid_request_error", NULL, "invalid_timeout",
                      "x-baton-timeout must be a positive duration such as 500ms, 30s or 2m.",
                      r->model);
        return;
    }
    struct bt_plan plan;
    if (bt_route_plan(w->cfg, r->model, w->rr++, &plan)) {
        char m[400];
        snprintf(m, sizeof(m), "The model '%.*s' does not exist or you do not have access to it.",
                 BT_STR_FMT(r->model));
        respond_error(req, 404, "invalid_request_error", "model", "model_not_found", m, r->model);
        return;
    }
    /* A header some candidate would forward must be safe to pass on: checked for
     * all of them, so the answer does not depend on which one is tried first. */
    r->headers = req->headers;
    r->nheaders = req->nheaders;
    for (uint32_t i = 0; i < plan.n; i++) {
        enum bt_err herr = bt_provider_check_headers(plan.c[i].provider, r, msg, sizeof(msg));
        if (herr) {
            respond_error(req, 400, "invalid_request_error", NULL,
                          herr == BT_ETOOBIG ? "too_many_forwarded_headers"
                                             : "invalid_header_value",
                          msg, r->model);
            return;
        }
    }
    bt_exec_run(w, req, w->cfg, r, &plan);
}

static bool is(struct bt_http_req *req, const char *method, const char *path)
{
    return bt_str_eq_c(req->method, method) && bt_str_eq_c(req->path, path);
}

/* The admin API always needs the master key: without one configured it is off. */
static void handle_admin(struct bt_http_req *req, struct bt_worker *w)
{
    if (!w->cfg->auth.master_key) {
        respond_error(req, 403, "permission_error", NULL, "admin_disabled",
                      "The admin API needs auth.master_key to be set.", BT_STR_NULL);
        return;
    }
    const char *why = NULL;
    if (!bt_gate_check_master(w->cfg, req, &why)) {
        respond_error(req, 401, "invalid_request_error", NULL, "invalid_api_key", why, BT_STR_NULL);
        return;
    }
    if (is(req, "POST", "/admin/reload")) {
        char msg[600];
        if (!w->reload || w->reload(w->reload_ctx, msg, sizeof(msg))) {
            if (!w->reload) snprintf(msg, sizeof(msg), "reload is not available");
            respond_error(req, 422, "invalid_request_error", NULL, "reload_failed", msg,
                          BT_STR_NULL);
            return;
        }
        struct bt_buf b;
        bt_buf_init(&b, 4096);
        struct bt_jw jw;
        bt_jw_init(&jw, &b);
        bt_jw_obj_begin(&jw);
        bt_jw_key(&jw, "status");
        bt_jw_cstr(&jw, "reloaded");
        bt_jw_key(&jw, "message");
        bt_jw_cstr(&jw, msg);
        bt_jw_obj_end(&jw);
        respond_json(req, 200, bt_buf_str(&b));
        bt_buf_free(&b);
        return;
    }
    respond_error(req, 404, "invalid_request_error", NULL, "unknown_url", "Unknown admin URL.",
                  BT_STR_NULL);
}

static void handle_metrics(struct bt_http_req *req, struct bt_worker *w)
{
    if (w->cfg->metrics.require_key) {
        const char *why = NULL;
        if (!bt_gate_check_master(w->cfg, req, &why)) {
            respond_error(req, 401, "invalid_request_error", NULL, "invalid_api_key", why,
                          BT_STR_NULL);
            return;
        }
    }
    struct bt_buf b;
    bt_buf_init(&b, 64u << 20);
    enum bt_err err = w->metrics ? bt_metrics_render(w->metrics, &b) : BT_EINVAL;
    if (err) {
        bt_buf_free(&b);
        respond_error(req, 500, "server_error", NULL, NULL, "metrics could not be rendered",
                      BT_STR_NULL);
        return;
    }
    enum bt_err rerr = bt_http_respond(req, 200, NULL, 0, BT_STR(BT_METRICS_CONTENT_TYPE),
                                       bt_buf_str(&b));
    (void)rerr; /* the request is finished either way */
    bt_buf_free(&b);
}

void bt_api_handle(struct bt_http_req *req, void *ud)
{
    struct bt_worker *w = ud;
    struct bt_str path = req->path;
    req->ud = w;
    if (bt_str_eq_c(path, "/metrics") && bt_str_eq_c(req->method, "GET")) {
        handle_metrics(req, w);
        return;
    }
    if (bt_str_eq_c(path, "/health/live")) {
        respond_json(req, 200, BT_STR("{\"status\":\"ok\"}"));
        return;
    }
    if (bt_str_eq_c(path, "/health/ready")) {
        if (atomic_load(&w->draining)) respond_json(req, 503, BT_STR("{\"status\":\"draining\"}"));
        else respond_json(req, 200, BT_STR("{\"status\":\"ready\"}"));
        return;
    }
    if (bt_str_starts_with(path, BT_STR("/admin/"))) {
        handle_admin(req, w);
        return;
    }
    if (bt_str_starts_with(path, BT_STR("/v1/")) || bt_str_eq_c(path, "/v1")) {
        const char *why = NULL;
        if (!bt_gate_check_master(w->cfg, req, &why)) {
            respond_error(req, 401, "invalid_request_error", NULL, "invalid_api_key", why,
                          BT_STR_NULL);
            return;
        }
        if (is(req, "POST", "/v1/chat/completions")) {
            handle_generate(req, w, BT_OP_CHAT);
            return;
        }
        if (is(req, "POST", "/v1/embeddings")) {
            handle_generate(req, w, BT_OP_EMBED);
            return;
        }
        if (is(req, "GET", "/v1/models")) {
            handle_models(req, w->cfg, BT_STR_NULL);
            return;
        }
        if (bt_str_eq_c(req->method, "GET") && path.len > 11 &&
            bt_str_starts_with(path, BT_STR("/v1/models/"))) {
            /* The SDKs send a model id with '/' as %2F; a literal '/' works too. */
            struct bt_buf idb;
            bt_buf_init(&idb, BT_NAME_MAX + 1);
            enum bt_err derr = bt_buf_append_pct_decoded(&idb, (struct bt_str){path.p + 11, path.len - 11});
            char m[300];
            if (derr || !bt_api_name_ok(bt_buf_str(&idb), "model", m, sizeof(m))) {
                if (derr == BT_EPARSE)
                    snprintf(m, sizeof(m), "The model id in the URL has a broken %%-escape or a "
                                           "control character.");
                else if (derr)
                    snprintf(m, sizeof(m), "The model id in the URL is longer than %d bytes.",
                             BT_NAME_MAX);
                bt_buf_free(&idb);
                respond_error(req, 400, "invalid_request_error", "model", NULL, m, BT_STR_NULL);
                return;
            }
            handle_models(req, w->cfg, bt_buf_str(&idb));
            bt_buf_free(&idb);
            return;
        }
        static const char *known[] = {"/v1/chat/completions", "/v1/embeddings", "/v1/models"};
        for (size_t i = 0; i < 3; i++) {
            if (bt_str_eq_c(path, known[i])) {
                char m[200];
                snprintf(m, sizeof(m), "Method %.*s is not allowed on %s.", BT_STR_FMT(req->method),
                         known[i]);
                respond_error(req, 405, "invalid_request_error", NULL, "method_not_allowed", m,
                              BT_STR_NULL);
                return;
            }
        }
    }
    char m[300];
    snprintf(m, sizeof(m), "Unknown request URL: %.*s %.*s.", BT_STR_FMT(req->method),
             (int)(path.len > 200 ? 200 : path.len), path.p);
    respond_error(req, 404, "invalid_request_error", NULL, "unknown_url", m, BT_STR_NULL);
}
