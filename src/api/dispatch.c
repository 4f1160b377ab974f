#include "api/dispatch.h"

#include <stdio.h>
#include <string.h>

#include "account/access.h"
#include "api/anthropic.h"
#include "api/api.h"
#include "api/openai.h"
#include "api/pipeline.h"
#include "core/time.h"
#include "gate/gate.h"
#include "route/choose.h"
#include "route/health.h"

/* ---- answering without a deployment ---- */

const struct bt_http_header bt_api_no_deployment[2] = {
    {{"x-baton-deployment", 18}, {"none", 4}}, {{"x-baton-attempts", 16}, {"0", 1}}};

void bt_api_json(struct bt_http_req *req, int status, struct bt_str body)
{
    /* Finishes the request whatever it returns; a refused head is logged by the server. */
    enum bt_err err =
        bt_http_respond(req, status, bt_api_no_deployment, 2, BT_STR("application/json"), body);
    (void)err;
}

static void log_line(struct bt_http_req *req, int status, struct bt_str model, const char *error)
{
    struct bt_worker *w = req->ud;
    struct bt_access_rec rec = {
        .id = req->id,
        .method = req->method,
        .path = req->path,
        .model = model,
        .status = status,
        .latency_ns = bt_now_ns() - req->start_ns,
        .error = error,
        .key_id = req->caller,
        .metrics = w ? w->mshard : NULL,
    };
    bt_access_write(&rec);
}

void bt_api_json_logged(struct bt_http_req *req, int status, struct bt_str body)
{
    log_line(req, status, BT_STR_NULL, NULL);
    bt_api_json(req, status, body);
}

/* bt_api_error with a Retry-After header when retry_after_s > 0. */
static void error_retry(struct bt_http_req *req, const struct bt_frontend *fe,
                        const struct bt_error *e, struct bt_str model, int64_t retry_after_s)
{
    struct bt_buf b;
    bt_buf_init(&b, 16384);
    const char *ctype = fe->error_body(&b, e);
    char msg[1024], ra[24];
    snprintf(msg, sizeof(msg), "%.*s", BT_STR_FMT(e->message));
    log_line(req, e->status, model, msg);
    struct bt_http_header hs[4] = {bt_api_no_deployment[0], bt_api_no_deployment[1]};
    size_t n = 2;
    if (retry_after_s > 0) {
        snprintf(ra, sizeof(ra), "%lld", (long long)retry_after_s);
        hs[n++] = (struct bt_http_header){BT_STR("retry-after"), bt_str_c(ra)};
    }
    /* A spent budget comes back only with the next period: the OpenAI SDKs,
     * which retry a 429 by default, are told not to. */
    if (e->code && strcmp(e->code, "insufficient_quota") == 0)
        hs[n++] = (struct bt_http_header){BT_STR("x-should-retry"), BT_STR("false")};
    enum bt_err err = bt_http_respond(req, e->status, hs, n, bt_str_c(ctype), bt_buf_str(&b));
    (void)err; /* the request is finished either way */
    bt_buf_free(&b);
}

void bt_api_error(struct bt_http_req *req, const struct bt_frontend *fe, const struct bt_error *e,
                  struct bt_str model)
{
    error_retry(req, fe, e, model, 0);
}

void bt_api_fail_retry(struct bt_http_req *req, const struct bt_frontend *fe, int status,
                       const char *code, const char *msg, struct bt_str model, int64_t retry_after_s)
{
    struct bt_error e = {.status = status, .code = code, .message = bt_str_c(msg)};
    error_retry(req, fe, &e, model, retry_after_s);
}

void bt_api_fail(struct bt_http_req *req, const struct bt_frontend *fe, int status,
                 const char *code, const char *param, const char *msg, struct bt_str model)
{
    struct bt_error e = {.status = status, .code = code, .param = param, .message = bt_str_c(msg)};
    bt_api_error(req, fe, &e, model);
}

/* ---- what baton answers itself: health, metrics, admin ---- */

static void h_live(struct bt_http_req *req, struct bt_worker *w)
{
    (void)w;
    bt_api_json(req, 200, BT_STR("{\"status\":\"ok\"}"));
}

static void h_ready(struct bt_http_req *req, struct bt_worker *w)
{
    if (atomic_load(&w->draining)) bt_api_json(req, 503, BT_STR("{\"status\":\"draining\"}"));
    else bt_api_json(req, 200, BT_STR("{\"status\":\"ready\"}"));
}

static void h_metrics(struct bt_http_req *req, struct bt_worker *w)
{
    const struct bt_frontend *fe = bt_api_frontend_for(req->path);
    if (w->cfg->metrics.require_key) {
        const char *why = NULL;
        if (!bt_gate_check_master(w->cfg, req, &why)) {
            bt_api_fail(req, fe, 401, "invalid_api_key", NULL, why, BT_STR_NULL);
            return;
        }
    }
    struct bt_buf b;
    bt_buf_init(&b, 64u << 20);
    enum bt_err err = w->metrics ? bt_metrics_render(w->metrics, &b) : BT_EINVAL;
    if (!err) err = bt_health_render(&b); /* per-deployment state (route/health.h) */
    if (!err) err = bt_route_render_choices(w->cfg, &b); /* rules and routers (route/choose.h) */
    if (err) {
        bt_buf_free(&b);
        bt_api_fail(req, fe, 500, NULL, NULL, "metrics could not be rendered", BT_STR_NULL);
        return;
    }
    enum bt_err rerr = bt_http_respond(req, 200, NULL, 0, BT_STR(BT_METRICS_CONTENT_TYPE),
                                       bt_buf_str(&b));
    (void)rerr; /* the request is finished either way */
    bt_buf_free(&b);
}

/* The admin API always needs the master key: without one configured it is off. */
static void h_admin(struct bt_http_req *req, struct bt_worker *w)
{
    const struct bt_frontend *fe = bt_api_frontend_for(req->path);
    if (!w->cfg->auth.master_key) {
        struct bt_error e = {.status = 403, .code = "admin_disabled",
                             .message = BT_STR("The admin API needs auth.master_key to be set.")};
        bt_api_error(req, fe, &e, BT_STR_NULL);
        return;
    }
    const char *why = NULL;
    if (!bt_gate_check_master(w->cfg, req, &why)) {
        /* A valid virtual key is known but not allowed here: 403, not 401. */
        struct bt_caller c;
        const char *why2 = NULL;
        const struct bt_keytab *keys = bt_keys_current(w->keys, &w->keytab, &w->keys_gen);
        if (keys && bt_gate_identify(w->cfg, keys, req, &c, &why2) && c.key)
            bt_api_fail(req, fe, 403, "admin_forbidden", NULL,
                        "The admin API needs the master key; a virtual key cannot use it.",
                        BT_STR_NULL);
        else
            bt_api_fail(req, fe, 401, "invalid_api_key", NULL, why, BT_STR_NULL);
        return;
    }
    if (bt_str_eq_c(req->path, "/admin/teams") ||
        bt_str_starts_with(req->path, BT_STR("/admin/teams/"))) {
        bt_api_admin_owners(req, w, fe, BT_OWNER_TEAM);
        return;
    }
    if (bt_str_eq_c(req->path, "/admin/users") ||
        bt_str_starts_with(req->path, BT_STR("/admin/users/"))) {
        bt_api_admin_owners(req, w, fe, BT_OWNER_USER);
        return;
    }
    if (bt_str_eq_c(req->path, "/admin/usage")) {
        bt_api_admin_usage(req, w, fe);
        return;
    }
    if (bt_str_eq_c(req->path, "/admin/keys") ||
        bt_str_starts_with(req->path, BT_STR("/admin/keys/"))) {
        bt_api_admin_keys(req, w, fe);
        return;
    }
    if (bt_str_eq_c(req->method, "POST") && bt_str_eq_c(req->path, "/admin/reload")) {
        char msg[600];
        if (!w->reload || w->reload(w->reload_ctx, msg, sizeof(msg))) {
            if (!w->reload) snprintf(msg, sizeof(msg), "reload is not available");
            bt_api_fail(req, fe, 422, "reload_failed", NULL, msg, BT_STR_NULL);
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
        bt_api_json(req, 200, bt_buf_str(&b));
        bt_buf_free(&b);
        return;
    }
    bt_api_fail(req, fe, 404, "unknown_url", NULL, "Unknown admin URL.", BT_STR_NULL);
}

/* ---- the table ---- */

enum kind {
    K_PLAIN,    /* fn(req, w) */
    K_GENERATE, /* the pipeline, for front end `fe` and operation `op` */
    K_MODELS,   /* fe->models; with `prefix`, the rest of the path is the model id */
};

struct route {
    const char *method; /* NULL: any method */
    const char *path;
    bool prefix;        /* `path` is a prefix (the rest must not be empty) */
    bool keyed;         /* the caller must be identified first (the pipeline does its own) */
    enum kind kind;
    void (*fn)(struct bt_http_req *req, struct bt_worker *w);
    const struct bt_frontend *fe;
    enum bt_op op;
};

static const struct route routes[] = {
    {"GET", "/metrics", false, false, K_PLAIN, h_metrics, NULL, 0},
    {NULL, "/health/live", false, false, K_PLAIN, h_live, NULL, 0},
    {NULL, "/health/ready", false, false, K_PLAIN, h_ready, NULL, 0},
    {NULL, "/admin/", true, false, K_PLAIN, h_admin, NULL, 0},
    {"POST", "/v1/chat/completions", false, false, K_GENERATE, NULL, &bt_fe_openai, BT_OP_CHAT},
    {"POST", "/v1/embeddings", false, false, K_GENERATE, NULL, &bt_fe_openai, BT_OP_EMBED},
    {"POST", "/v1/messages", false, false, K_GENERATE, NULL, &bt_fe_anthropic, BT_OP_CHAT},
    {"POST", "/v1/messages/count_tokens", false, true, K_PLAIN, bt_anthropic_count_tokens,
     &bt_fe_anthropic, 0},
    {"GET", "/v1/models", false, true, K_MODELS, NULL, &bt_fe_openai, 0},
    {"GET", "/v1/models/", true, true, K_MODELS, NULL, &bt_fe_openai, 0},
};
#define NROUTES (sizeof(routes) / sizeof(routes[0]))

static bool path_matches(const struct route *rt, struct bt_str path)
{
    if (!rt->prefix) return bt_str_eq_c(path, rt->path);
    struct bt_str p = bt_str_c(rt->path);
    return path.len > p.len && bt_str_starts_with(path, p);
}

const struct bt_frontend *bt_api_frontend_for(struct bt_str path)
{
    /* Anthropic's SDKs append /v1/messages to the base URL */
    if (bt_str_eq_c(path, "/v1/messages") || bt_str_starts_with(path, BT_STR("/v1/messages/")))
        return &bt_fe_anthropic;
    return &bt_fe_openai;
}

const char *bt_api_server_error(struct bt_buf *out, struct bt_str path, int status,
                                const char *msg)
{
    struct bt_error e = {.status = status, .message = bt_str_c(msg)};
    return bt_api_frontend_for(path)->error_body(out, &e);
}

bool bt_api_identify(struct bt_worker *w, struct bt_http_req *req, const struct bt_frontend *fe,
                     struct bt_caller *caller)
{
    const char *why = NULL;
    const struct bt_keytab *keys = bt_keys_current(w->keys, &w->keytab, &w->keys_gen);
    if (!bt_gate_identify(w->cfg, keys, req, caller, &why)) {
        bt_api_fail(req, fe, 401, "invalid_api_key", NULL, why, BT_STR_NULL);
        return false;
    }
    if (caller->key) {
        /* A copy: the table may be swapped before the request's last log line. */
        struct bt_str id = bt_arena_strdup(req->arena, bt_str_c(caller->key->id));
        req->caller = id.p;
    }
    return true;
}

static bool identified(struct bt_http_req *req, struct bt_worker *w, const struct bt_frontend *fe)
{
    struct bt_caller caller;
    return bt_api_identify(w, req, fe, &caller);
}

void bt_api_handle(struct bt_http_req *req, void *ud)
{
    struct bt_worker *w = ud;
    req->ud = w;
    struct bt_str path = req->path;
    const struct route *wrong_method = NULL;
    for (size_t i = 0; i < NROUTES; i++) {
        const struct route *rt = &routes[i];
        if (!path_matches(rt, path)) continue;
        if (rt->method && !bt_str_eq_c(req->method, rt->method)) {
            if (!wrong_method) wrong_method = rt;
            continue;
        }
        struct bt_caller caller = {0};
        if (rt->keyed && !bt_api_identify(w, req, rt->fe, &caller)) return;
        switch (rt->kind) {
        case K_PLAIN: rt->fn(req, w); return;
        case K_GENERATE: bt_pipeline_run(w, req, rt->fe, rt->op); return;
        case K_MODELS: {
            struct bt_str id = BT_STR_NULL;
            if (rt->prefix) id = (struct bt_str){path.p + strlen(rt->path), path.len - strlen(rt->path)};
            w->caller_key = caller.key; /* borrowed for this synchronous call only */
            rt->fe->models(req, w, id);
            w->caller_key = NULL;
            return;
        }
        }
    }
    const struct bt_frontend *fe = bt_api_frontend_for(path);
    /* Under an API's prefix, an unknown caller learns nothing about which URLs exist. */
    if (bt_str_starts_with(path, BT_STR("/v1/")) || bt_str_eq_c(path, "/v1")) {
        if (!identified(req, w, fe)) return;
    }
    char m[300];
    if (wrong_method && !wrong_method->prefix && wrong_method->fe) {
        fe = wrong_method->fe;
        snprintf(m, sizeof(m), "Method %.*s is not allowed on %s.", BT_STR_FMT(req->method),
                 wrong_method->path);
        bt_api_fail(req, fe, 405, "method_not_allowed", NULL, m, BT_STR_NULL);
        return;
    }
    snprintf(m, sizeof(m), "Unknown request URL: %.*s %.*s.", BT_STR_FMT(req->method),
             (int)(path.len > 200 ? 200 : path.len), path.p);
    bt_api_fail(req, fe, 404, "unknown_url", NULL, m, BT_STR_NULL);
}
