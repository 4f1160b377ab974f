#include "api/pipeline.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "account/cost.h"
#include "api/api.h"
#include "core/time.h"
#include "exec/exec.h"
#include "canon/prompt.h"
#include "gate/gate.h"
#include "learn/learn.h"
#include "provider/provider.h"
#include "route/health.h"
#include "route/route.h"
#include "store/keys.h"
#include "store/redis.h"

static bool route_request(struct bt_worker *w, struct bt_http_req *req,
                          const struct bt_frontend *fe, struct bt_request *r,
                          const struct bt_payer *payer, struct bt_plan *plan);
static void run(struct bt_worker *w, struct bt_config *cfg, struct bt_http_req *req,
                const struct bt_frontend *fe, struct bt_request *r, struct bt_plan *plan,
                const struct bt_payer *payer);

/* What a request gives back when it is over, however it ends: the concurrency
 * slots it holds in this process (its key's, team's, user's). Those it holds
 * in Redis exec gives back, with its charge. */
struct held {
    struct bt_key_slots slots;
};

static void give_back(void *ud)
{
    struct held *h = ud;
    bt_key_release_slots(&h->slots);
}

/* The request's struct held, made (and hooked) on first need; NULL: no memory. */
static struct held *held_of(struct bt_http_req *req)
{
    if (req->on_finish == give_back) return req->on_finish_ud;
    struct held *h = bt_arena_calloc(req->arena, 1, sizeof(*h));
    if (!h) return NULL;
    req->on_finish = give_back;
    req->on_finish_ud = h;
    return h;
}

/* ---- admission shared through Redis (store.redis) ----
 * A virtual key's, its team's and its user's rpm, tpm, concurrency and budgets
 * are counted in Redis: one round trip on this worker's connection, the request
 * waiting for the answer without blocking the loop. What the answer needs is
 * copied here: the key table the caller's record lives in may be swapped by
 * another request. */
struct shared {
    struct bt_worker *w;
    struct bt_http_req *req;      /* NULL once the client has gone */
    const struct bt_frontend *fe;
    struct bt_request *r;
    struct bt_caller caller;      /* what the gate took and the levels' limits */
    struct bt_payer payer;        /* its shared levels are what Redis judges */
    int idx[BT_REDIS_LEVELS];     /* each shared level's caller level, or MODEL_LEVEL */
    struct bt_config *cfg;        /* our ref: the snapshot the plan was made in (a reload
                                     may swap the worker's meanwhile) */
    struct bt_plan plan;
};

static void shared_free(struct shared *sh)
{
    bt_config_unref(sh->cfg);
    free(sh);
}

/* idx of the shared level that is the model's own limits */
#define MODEL_LEVEL 3

/* Why the model `name` is over its limit `which`, into msg. */
static void model_over(char *msg, size_t cap, const char *name, const char *which, bool across)
{
    char who[BT_KEY_MAX_NAME + 16];
    snprintf(who, sizeof(who), "The model '%s'", name);
    bt_gate_over_limit_msg(msg, cap, who, which, across);
}

static void shared_abort(struct bt_http_req *req, void *ud)
{
    (void)req;
    struct shared *sh = ud;
    sh->req = NULL;
}

static void on_shared(void *ud, enum bt_redis_verdict v, int64_t retry_after, int level)
{
    struct shared *sh = ud;
    struct bt_http_req *req = sh->req;
    if (!req) { /* the client left while Redis answered (its on_finish gave back the rest) */
        if (v == BT_REDIS_OK && sh->w->redis)
            bt_redis_release(sh->w->redis, sh->payer.shared, sh->payer.nshared);
        shared_free(sh);
        return;
    }
    bt_http_on_abort(req, NULL, NULL);
    const struct bt_frontend *fe = sh->fe;
    struct bt_request *r = sh->r;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    if (v == BT_REDIS_DOWN) {
        if (sh->w->cfg->store.redis_closed) {
            bt_api_fail(req, fe, 503, "limits_unavailable", NULL,
                        "The shared rate-limit store does not answer; retry shortly.", r->model);
            shared_free(sh);
            return;
        }
        /* open: this process's own counters, as without Redis; its budgets were
         * judged by the gate */
        if (!bt_gate_limits(&sh->caller, (int64_t)ts.tv_sec)) {
            bt_api_fail_retry(req, fe, 429, "rate_limit_exceeded", sh->caller.budget_msg,
                              r->model, sh->caller.retry_after);
            shared_free(sh);
            return;
        }
        struct held *h = sh->caller.held ? held_of(req) : NULL;
        if (sh->caller.held && !h) {
            bt_gate_untake(&sh->caller);
            bt_api_fail(req, fe, 500, NULL, NULL, "out of memory", BT_STR_NULL);
            shared_free(sh);
            return;
        }
        if (h) h->slots = sh->caller.slots;
        sh->payer.nshared = 0; /* nothing held nor to charge in Redis */
        sh->payer.model_shared = false;
        sh->payer.tpm_tokens = sh->caller.tokens;
        sh->payer.tpm_minute = sh->caller.tpm_minute;
        memcpy(sh->payer.tpm_lives, sh->caller.tpm_lives, sizeof(sh->payer.tpm_lives));
        v = BT_REDIS_OK;
    }
    if (v != BT_REDIS_OK) {
        int lvl = sh->idx[level < 0 || level >= sh->payer.nshared ? 0 : level];
        if (lvl == MODEL_LEVEL) {
            char msg[400];
            model_over(msg, sizeof(msg), sh->plan.model->name, bt_redis_verdict_limit(v), true);
            bt_api_fail_retry(req, fe, 429, "rate_limit_exceeded", msg, r->model, retry_after);
            shared_free(sh);
            return;
        }
        bt_gate_shared_refusal(&sh->caller, lvl, v, retry_after, (int64_t)ts.tv_sec * 1000);
        bt_api_fail_retry(req, fe, 429,
                          v == BT_REDIS_BUDGET ? "insufficient_quota" : "rate_limit_exceeded",
                          sh->caller.budget_msg, r->model, sh->caller.retry_after);
        shared_free(sh);
        return;
    }
    run(sh->w, sh->cfg, req, fe, r, &sh->plan, &sh->payer);
    shared_free(sh);
}

void bt_pipeline_run(struct bt_worker *w, struct bt_http_req *req, const struct bt_frontend *fe,
                     enum bt_op op)
{
    const struct bt_config *cfg = w->cfg;
    struct bt_caller caller;
    const char *why = NULL;
    if (!bt_api_identify(w, req, fe, &caller)) return;
    /* caller.key is borrowed from this worker's key table, which changes only at
     * its next identify: it stays valid through admit below. */
    struct bt_request *r = bt_arena_alloc(req->arena, sizeof(*r));
    if (!r) {
        bt_api_fail(req, fe, 500, NULL, NULL, "out of memory", BT_STR_NULL);
        return;
    }
    char msg[300];
    const char *param = NULL;
    enum bt_err err = fe->decode(r, op, req->body, req->arena, msg, sizeof(msg), &param);
    if (err) {
        if (err == BT_ENOMEM) bt_api_fail(req, fe, 500, NULL, NULL, "out of memory", BT_STR_NULL);
        else bt_api_fail(req, fe, 400, NULL, param, msg, r->model);
        return;
    }
    r->headers = req->headers;
    r->nheaders = req->nheaders;
    struct bt_str to = bt_http_header_get(req, "x-baton-timeout");
    if (to.p && (!bt_parse_duration_ms(bt_str_trim(to), &r->timeout_ms) || r->timeout_ms == 0)) {
        bt_api_fail(req, fe, 400, "invalid_timeout", NULL,
                    "x-baton-timeout must be a positive duration such as 500ms, 30s or 2m.",
                    r->model);
        return;
    }
    struct bt_str ic = bt_http_header_get(req, "x-baton-include-cost");
    if (ic.p) {
        struct bt_str v = bt_str_trim(ic);
        if (bt_str_caseeq_c(v, "true")) r->include_cost = true;
        else if (!bt_str_caseeq_c(v, "false")) {
            bt_api_fail(req, fe, 400, "invalid_header_value", NULL,
                        "x-baton-include-cost must be true or false.", r->model);
            return;
        }
    }
    if (caller.key && (caller.key->tpm > 0 || caller.key->owner[BT_OWNER_TEAM].tpm > 0 ||
                       caller.key->owner[BT_OWNER_USER].tpm > 0)) /* its tokens, counted now */
        caller.tokens = bt_cost_estimate_tokens(r);
    int status = 0;
    const char *code = NULL;
    if (!bt_gate_admit(cfg, &caller, r, &status, &code, &why)) {
        if (status == 429)
            bt_api_fail_retry(req, fe, status, code, why, r->model, caller.retry_after);
        else
            bt_api_fail(req, fe, status, code, NULL, why, r->model);
        return;
    }
    /* Who pays, copied into the request's arena: the key record may be freed
     * when this worker's table changes while the request runs. */
    struct bt_payer payer = {.key_id = req->caller ? req->caller : "master", .budget_left = -1};
    if (caller.key) {
        payer.live = caller.key->live;
        payer.team_live = caller.key->owner[BT_OWNER_TEAM].live;
        payer.user_live = caller.key->owner[BT_OWNER_USER].live;
        payer.tpm_tokens = caller.tokens;
        payer.tpm_minute = caller.tpm_minute;
        memcpy(payer.tpm_lives, caller.tpm_lives, sizeof(payer.tpm_lives));
        if (caller.key->user) payer.user = bt_arena_strdup(req->arena, bt_str_c(caller.key->user)).p;
        if (caller.key->team) payer.team = bt_arena_strdup(req->arena, bt_str_c(caller.key->team)).p;
        if (caller.budget_warning[0])
            payer.budget_warning =
                bt_arena_strdup(req->arena, bt_str_c(caller.budget_warning)).p;
        if (caller.key->budget_micro_usd > 0 && caller.key->live) {
            double spent = (double)(atomic_load(&caller.key->live->spent_pusd) +
                                    atomic_load(&caller.key->live->pending_pusd));
            double left = 1 - spent / ((double)caller.key->budget_micro_usd * 1e6);
            payer.budget_left = left < 0 ? 0 : left;
        } else if (caller.key->budget_micro_usd == 0) {
            payer.budget_left = 0;
        }
    }
    struct bt_plan plan;
    if (!route_request(w, req, fe, r, &payer, &plan)) { /* answered: nothing was used */
        bt_gate_untake(&caller);
        return;
    }
    if (caller.held) { /* what it holds, given back when the request is over */
        struct held *h = held_of(req);
        if (!h) {
            bt_gate_untake(&caller);
            bt_api_fail(req, fe, 500, NULL, NULL, "out of memory", BT_STR_NULL);
            return;
        }
        h->slots = caller.slots;
    }
    if (!w->redis) {
        run(w, w->cfg, req, fe, r, &plan, &payer);
        return;
    }
    /* Redis judges the levels with limits or budgets (the key's, its team's,
     * its user's) and the model's limits, in one round trip */
    int idx[BT_REDIS_LEVELS] = {0};
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    if (caller.key)
        payer.nshared = bt_gate_shared_levels(&caller, caller.key->id,
                                              (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000,
                                              payer.shared, idx);
    payer.shared_minute = (int64_t)ts.tv_sec / 60;
    const struct bt_model *gm = plan.model;
    struct bt_redis_level *m = &payer.shared[payer.nshared];
    if (gm && bt_limits_level(&gm->limits, gm->limits.tpm ? bt_cost_estimate_tokens(r) : 0, m)) {
        snprintf(m->scope, sizeof(m->scope), "model:%s", gm->name);
        idx[payer.nshared++] = MODEL_LEVEL;
        payer.model_shared = true;
    }
    if (!payer.nshared) {
        run(w, w->cfg, req, fe, r, &plan, &payer);
        return;
    }
    struct shared *sh = malloc(sizeof(*sh));
    if (!sh) {
        bt_api_fail(req, fe, 500, NULL, NULL, "out of memory", BT_STR_NULL);
        return;
    }
    *sh = (struct shared){.w = w, .req = req, .fe = fe, .r = r, .caller = caller,
                          .payer = payer, .cfg = bt_config_ref(w->cfg), .plan = plan};
    memcpy(sh->idx, idx, sizeof(idx));
    sh->caller.key = NULL; /* not valid past this call */
    bt_http_on_abort(req, shared_abort, sh);
    bt_redis_admit(w->redis, payer.shared, payer.nshared, (int64_t)ts.tv_sec, on_shared, sh);
}

/* After admission: the end user, routing (rules and routers reading the prompt
 * first) into *plan, the forwarded headers' check. False when it answered the
 * request (an error). */
static bool route_request(struct bt_worker *w, struct bt_http_req *req,
                          const struct bt_frontend *fe, struct bt_request *r,
                          const struct bt_payer *payer, struct bt_plan *plan)
{
    const struct bt_config *cfg = w->cfg;
    char msg[300];
    enum bt_err err;
    /* The end user: the body's `user`, or x-baton-user (checked like it). */
    struct bt_str user = r->user;
    struct bt_str xu = bt_http_header_get(req, "x-baton-user");
    if (!user.len && xu.p) {
        if (!bt_api_name_ok(xu, "x-baton-user", msg, sizeof(msg))) {
            bt_api_fail(req, fe, 400, "invalid_header_value", NULL, msg, r->model);
            return false;
        }
        user = xu;
    }
    struct bt_route_req q = {.model = r->model, .user = user, .rr = w->rr++};
    struct bt_prompt prompt;
    if (bt_route_needs_prompt(cfg, r->model)) {
        /* rules or a router read the content: the canonical request, then the prompt */
        /* (a front end that decodes into it from the start, as Anthropic's, has
         * it already) */
        struct bt_chat_error cerr = {{0}, {0}};
        err = bt_request_chat(r, req->arena, &cerr); /* kept for a provider of another API */
        if (!err) err = bt_prompt_from_chat(r->chat, req->arena, &prompt);
        if (!err && !w->learn) w->learn = bt_learn_scratch_new();
        if (err == BT_EINVAL || err == BT_EPARSE) {
            bt_api_fail(req, fe, 400, NULL, cerr.param[0] ? cerr.param : NULL,
                        cerr.message[0] ? cerr.message : "the request's content cannot be read",
                        r->model);
            return false;
        }
        if (err || !w->learn) {
            bt_api_fail(req, fe, 500, NULL, NULL, "out of memory", BT_STR_NULL);
            return false;
        }
        prompt.user = user;
        prompt.tags = bt_http_header_get(req, "x-baton-tags");
        prompt.budget_left = payer->budget_left;
        q.prompt = &prompt;
        q.scratch = w->learn;
    }
    if (bt_route(cfg, &q, plan)) {
        char m[400];
        snprintf(m, sizeof(m), "The model '%.*s' does not exist or you do not have access to it.",
                 BT_STR_FMT(r->model));
        bt_api_fail(req, fe, 404, "model_not_found", "model", m, r->model);
        return false;
    }
    /* A header some candidate would forward must be safe to pass on: checked for
     * all of them, so the answer does not depend on which one is tried first. */
    for (uint32_t i = 0; i < plan->n; i++) {
        enum bt_err herr = bt_provider_check_headers(plan->c[i].provider, r, msg, sizeof(msg));
        if (herr) {
            bt_api_fail(req, fe, 400,
                        herr == BT_ETOOBIG ? "too_many_forwarded_headers" : "invalid_header_value",
                        NULL, msg, r->model);
            return false;
        }
    }
    return true;
}

/* The model's own limits in this process (unless Redis counted them: a shared
 * level in payer), then exec, which settles the tokens and gives back the slot. */
static void run(struct bt_worker *w, struct bt_config *cfg, struct bt_http_req *req,
                const struct bt_frontend *fe, struct bt_request *r, struct bt_plan *plan,
                const struct bt_payer *payer)
{
    const struct bt_model *gm = plan->model;
    const char *which = NULL;
    int64_t retry = 1;
    if (gm && !payer->model_shared &&
        !bt_health_take_limits(gm->health, &gm->limits, (int64_t)time(NULL),
                               gm->limits.tpm ? bt_cost_estimate_tokens(r) : 0,
                               &plan->model_taken, &which, &retry)) {
        char msg[400];
        model_over(msg, sizeof(msg), gm->name, which, false);
        bt_api_fail_retry(req, fe, 429, "rate_limit_exceeded", msg, r->model, retry);
        if (payer->nshared && w->redis) /* what Redis admitted goes back */
            bt_redis_release(w->redis, payer->shared, payer->nshared);
        return;
    }
    /* exec gives the slots held in Redis back, before the response's last bytes
     * (with the charge): a client's next request, to any instance, finds them
     * free */
    bt_exec_run(w, req, cfg, r, plan, payer);
}
