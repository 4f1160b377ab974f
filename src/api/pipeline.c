#include "api/pipeline.h"

#include <stdio.h>
#include <string.h>

#include "account/cost.h"
#include "api/api.h"
#include "core/time.h"
#include "exec/exec.h"
#include "canon/prompt.h"
#include "gate/gate.h"
#include "learn/learn.h"
#include "provider/provider.h"
#include "route/route.h"

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
                       caller.key->owner[BT_OWNER_USER].tpm > 0)) { /* its tokens, counted now */
        int64_t prompt = bt_cost_count_prompt(r, r->model);
        caller.tokens = (prompt > 0 ? prompt : 0) + (r->max_tokens > 0 ? r->max_tokens : 0);
    }
    int status = 0;
    const char *code = NULL;
    if (!bt_gate_admit(cfg, &caller, r, &status, &code, &why)) {
        if (status == 429)
            bt_api_fail_retry(req, fe, status, code, why, r->model, caller.retry_after);
        else
            bt_api_fail(req, fe, status, code, NULL, why, r->model);
        return;
    }
    if (caller.held) { /* concurrency slots, given back when the request is over */
        struct bt_key_slots *slots = bt_arena_alloc(req->arena, sizeof(*slots));
        if (!slots) {
            bt_key_release_slots(&caller.slots);
            bt_api_fail(req, fe, 500, NULL, NULL, "out of memory", BT_STR_NULL);
            return;
        }
        *slots = caller.slots;
        req->on_finish = bt_key_release_slots;
        req->on_finish_ud = slots;
    }
    /* Who pays, copied into the request's arena: the key record may be freed
     * when this worker's table changes while the request runs. */
    struct bt_payer payer = {.key_id = req->caller ? req->caller : "master"};
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
    }
    /* The end user: the body's `user`, or x-baton-user (checked like it). */
    struct bt_str user = r->user;
    struct bt_str xu = bt_http_header_get(req, "x-baton-user");
    if (!user.len && xu.p) {
        if (!bt_api_name_ok(xu, "x-baton-user", msg, sizeof(msg))) {
            bt_api_fail(req, fe, 400, "invalid_header_value", NULL, msg, r->model);
            return;
        }
        user = xu;
    }
    struct bt_route_req q = {.model = r->model, .user = user, .rr = w->rr++};
    struct bt_prompt prompt;
    if (bt_route_needs_prompt(cfg, r->model)) {
        /* rules or a router read the content: the canonical request, then the prompt */
        struct bt_chat *chat = bt_arena_alloc(req->arena, sizeof(*chat));
        struct bt_chat_error cerr = {{0}, {0}};
        err = chat && fe->chat ? fe->chat(r, req->arena, chat, &cerr) : BT_ENOMEM;
        if (!err) err = bt_prompt_from_chat(chat, req->arena, &prompt);
        if (!err && !w->learn) w->learn = bt_learn_scratch_new();
        if (err == BT_EINVAL || err == BT_EPARSE) {
            bt_api_fail(req, fe, 400, NULL, cerr.param[0] ? cerr.param : NULL,
                        cerr.message[0] ? cerr.message : "the request's content cannot be read",
                        r->model);
            return;
        }
        if (err || !w->learn) {
            bt_api_fail(req, fe, 500, NULL, NULL, "out of memory", BT_STR_NULL);
            return;
        }
        prompt.user = user;
        prompt.tags = bt_http_header_get(req, "x-baton-tags");
        q.prompt = &prompt;
        q.scratch = w->learn;
    }
    struct bt_plan plan;
    if (bt_route(cfg, &q, &plan)) {
        char m[400];
        snprintf(m, sizeof(m), "The model '%.*s' does not exist or you do not have access to it.",
                 BT_STR_FMT(r->model));
        bt_api_fail(req, fe, 404, "model_not_found", "model", m, r->model);
        return;
    }
    /* A header some candidate would forward must be safe to pass on: checked for
     * all of them, so the answer does not depend on which one is tried first. */
    for (uint32_t i = 0; i < plan.n; i++) {
        enum bt_err herr = bt_provider_check_headers(plan.c[i].provider, r, msg, sizeof(msg));
        if (herr) {
            bt_api_fail(req, fe, 400,
                        herr == BT_ETOOBIG ? "too_many_forwarded_headers" : "invalid_header_value",
                        NULL, msg, r->model);
            return;
        }
    }
    bt_exec_run(w, req, w->cfg, r, &plan, &payer);
}
