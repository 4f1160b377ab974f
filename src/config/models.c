/* The models section: each public model name (its rules: bt_cfg_name_ok)
 * with one upstream ({provider, model}) or a list of deployments, each with a
 * provider defined under providers:, the upstream model id and a weight. Read
 * after providers, whatever the order in the file, so every provider name can
 * be resolved. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config/values.h"
#include "core/outcome.h"
#include "core/buf.h"

#define MAX_DEPLOYMENTS 8 /* route.h's BT_PLAN_MAX: more would be ignored silently */

static const struct bt_provider *find_provider(const struct bt_config *c, const char *name,
                                               size_t len)
{
    return bt_config_provider(c, (struct bt_str){name, len});
}

/* Resolves `provider:` of a model or deployment; reports unknown names. */
static struct bt_provider *resolve_provider(struct bt_cfg_loader *L, const struct bt_ynode *v,
                                            const char *ctx)
{
    char what[BT_CFG_MAX_NAME + 60];
    snprintf(what, sizeof(what), "%s: provider", ctx);
    char *s;
    size_t len;
    if (!bt_cfg_get_string(L, v, what, &s, &len, NULL)) return NULL;
    const struct bt_provider *p = len ? find_provider(L->cfg, s, len) : NULL;
    if (!p) {
        if (len == 0)
            bt_cfg_err(L, v, "%s: provider is empty", ctx);
        else {
            /* Whole names only: a file may define hundreds of providers, so the
             * list stops at a few hundred bytes and says how many it left out. */
            struct bt_buf known;
            bt_buf_init(&known, 1024);
            size_t nc = L->cfg->nproviders, shown = 0;
            enum bt_err e = BT_OK;
            for (; shown < nc && !e; shown++) {
                const char *name = L->cfg->providers[shown].name;
                if (shown && known.len + strlen(name) > 300) break;
                e = bt_buf_printf(&known, "%s%s", shown ? ", " : "", name);
            }
            if (!e && shown < nc) e = bt_buf_printf(&known, " and %zu more", nc - shown);
            if (!e) e = bt_buf_cstr(&known);
            if (e)
                L->oom = true;
            else
                bt_cfg_err(L, v, "%s: unknown provider \"%.*s\" (%s%s)", ctx, BT_CFG_SHOWN(len), s,
                           nc ? "defined: " : "no providers are defined", nc ? known.p : "");
            bt_buf_free(&known);
        }
    }
    free(s);
    return (struct bt_provider *)p;
}

static bool get_model_id(struct bt_cfg_loader *L, const struct bt_ynode *v, const char *ctx,
                         char **out)
{
    char what[BT_CFG_MAX_NAME + 60];
    snprintf(what, sizeof(what), "%s: model", ctx);
    size_t len;
    if (!bt_cfg_get_string(L, v, what, out, &len, NULL)) return false;
    if (len == 0) {
        bt_cfg_err(L, v, "%s: model is empty", ctx);
        free(*out);
        *out = NULL;
        return false;
    }
    return true;
}

/* `price: {input, cached_input, cache_write, output, reasoning}` in USD per
 * million tokens; input and output required, the others default to them. */
static void load_price(struct bt_cfg_loader *L, const struct bt_ynode *v, const char *ctx,
                       struct bt_price *out)
{
    static const char *const keys[] = {"input", "cached_input", "cache_write", "output",
                                       "reasoning", NULL};
    char what[BT_CFG_MAX_NAME + 80];
    snprintf(what, sizeof(what), "%s price", ctx);
    if (v->kind != BT_Y_MAP) {
        bt_cfg_err(L, v,
                   "%s must be a mapping like {input: 2.50, output: 10} (USD per million "
                   "tokens), not %s", what, bt_ynode_is_null(v) ? "empty" : bt_cfg_kind_name(v));
        return;
    }
    int64_t val[5];
    bool set[5] = {false};
    bool bad = false;
    for (size_t i = 0; i + 1 < v->n; i += 2) {
        int idx = bt_cfg_key_index(L, v->items[i], keys, what);
        if (idx < 0) {
            bad = true;
            continue;
        }
        char w[BT_CFG_MAX_NAME + 100];
        snprintf(w, sizeof(w), "%s: %s", what, keys[idx]);
        set[idx] = true; /* written, right or wrong: not "missing" as well */
        char *s;
        size_t len;
        if (!bt_cfg_get_string(L, v->items[i + 1], w, &s, &len, NULL)) {
            bad = true;
            continue;
        }
        if (!bt_price_parse((struct bt_str){s, len}, &val[idx])) {
            bt_cfg_err(L, v->items[i + 1],
                       "%s must be a plain decimal number of USD per million tokens, from 0 to "
                       "1000000 with at most 6 decimals, like 2.50 (got \"%.*s\")",
                       w, BT_CFG_SHOWN(len), s);
            bad = true;
        }
        free(s);
    }
    if (!set[0] || !set[3]) {
        bt_cfg_err(L, v, "%s needs %s%s%s (USD per million tokens)", what,
                   set[0] ? "" : "input", !set[0] && !set[3] ? " and " : "",
                   set[3] ? "" : "output");
        return;
    }
    if (bad) return;
    *out = (struct bt_price){
        .source = BT_PRICE_CONFIGURED,
        .input = val[0],
        .cached_input = set[1] ? val[1] : val[0],
        .cache_write = set[2] ? val[2] : val[0],
        .output = val[3],
        .reasoning = set[4] ? val[4] : val[3],
    };
}

/* The shipped price when none was written; never for the simulator, whose
 * model ids may borrow real names but whose answers cost nothing. */
static void default_price(struct bt_deployment *d)
{
    if (d->price.source == BT_PRICE_NONE && d->model && d->provider &&
        d->provider->type != BT_PROVIDER_SIM)
        bt_price_default(bt_str_c(d->model), &d->price);
}

/* limits: {rpm: N, tpm: N, concurrency: N} */
static void load_limits(struct bt_cfg_loader *L, const struct bt_ynode *v, const char *ctx,
                        struct bt_limits *out)
{
    static const char *const keys[] = {"rpm", "concurrency", "tpm", NULL};
    char what[BT_CFG_MAX_NAME + 80];
    snprintf(what, sizeof(what), "%s limits", ctx);
    if (v->kind != BT_Y_MAP) {
        bt_cfg_err(L, v, "%s must be a mapping like {rpm: 600, tpm: 200000, concurrency: 20}",
                   what);
        return;
    }
    for (size_t i = 0; i + 1 < v->n; i += 2) {
        int idx = bt_cfg_key_index(L, v->items[i], keys, what);
        char w[BT_CFG_MAX_NAME + 100];
        snprintf(w, sizeof(w), "%s: %s", what, idx >= 0 ? keys[idx] : "?");
        uint64_t x;
        if (idx >= 0 && bt_cfg_get_u64(L, v->items[i + 1], w, 1, 1000000000, &x)) {
            if (idx == 0) out->rpm = (int64_t)x;
            else if (idx == 1) out->concurrency = (int64_t)x;
            else out->tpm = (int64_t)x;
        }
    }
}

static void load_deployment(struct bt_cfg_loader *L, const struct bt_ynode *n, struct bt_model *m,
                            struct bt_deployment *d, size_t index)
{
    static const char *const keys[] = {"provider", "model", "weight", "price", "limits", NULL};
    char ctx[BT_CFG_MAX_NAME + 60];
    snprintf(ctx, sizeof(ctx), "model \"%s\" deployment %zu", m->name, index + 1);
    d->weight = 1;
    d->line = n->line;
    d->col = n->col;
    if (n->kind != BT_Y_MAP) {
        bt_cfg_err(L, n, "%s must be a mapping like {provider: NAME, model: ID}, not %s", ctx,
                   bt_cfg_kind_name(n));
        return;
    }
    const struct bt_ynode *pv = NULL;
    for (size_t i = 0; i + 1 < n->n; i += 2) {
        const struct bt_ynode *k = n->items[i], *v = n->items[i + 1];
        int idx = bt_cfg_key_index(L, k, keys, ctx);
        if (idx == 0)
            pv = v;
        else if (idx == 1) {
            free(d->model);
            d->model = NULL;
            get_model_id(L, v, ctx, &d->model);
        } else if (idx == 2) {
            char what[BT_CFG_MAX_NAME + 70];
            snprintf(what, sizeof(what), "%s: weight", ctx);
            uint64_t w = 1;
            if (bt_cfg_get_u64(L, v, what, 1, 1000000, &w)) d->weight = (uint32_t)w;
        } else if (idx == 3) {
            load_price(L, v, ctx, &d->price);
        } else if (idx == 4) {
            load_limits(L, v, ctx, &d->limits);
        }
    }
    if (!pv)
        bt_cfg_err(L, n, "%s: provider is required", ctx);
    else
        d->provider = resolve_provider(L, pv, ctx);
    if (!d->model) d->model = bt_cfg_dup(L, m->name, strlen(m->name));
    default_price(d);
}

static const char *const strategy_names[] = {"weighted", "round_robin", "least_busy", "latency",
                                             "cost", NULL};

static void load_strategy(struct bt_cfg_loader *L, const struct bt_ynode *v, const char *ctx,
                          struct bt_model *m)
{
    char what[BT_CFG_MAX_NAME + 60];
    snprintf(what, sizeof(what), "%s: strategy", ctx);
    char *s;
    size_t len;
    if (!bt_cfg_get_string(L, v, what, &s, &len, NULL)) return;
    bool found = false;
    for (int i = 0; strategy_names[i]; i++) {
        if (strlen(strategy_names[i]) == len && memcmp(strategy_names[i], s, len) == 0) {
            m->strategy = (enum bt_strategy)i;
            found = true;
        }
    }
    if (!found)
        bt_cfg_err(L, v, "%s: unknown strategy \"%.*s\" (expected one of: weighted, round_robin, "
                         "least_busy, latency, cost)", ctx, BT_CFG_SHOWN(len), s);
    free(s);
}

static void load_breaker(struct bt_cfg_loader *L, const struct bt_ynode *v, const char *ctx,
                         struct bt_model *m)
{
    static const char *const keys[] = {"failures", "cooldown", NULL};
    char what[BT_CFG_MAX_NAME + 60];
    snprintf(what, sizeof(what), "%s breaker", ctx);
    if (v->kind != BT_Y_MAP) {
        bt_cfg_err(L, v, "%s must be a mapping like {failures: 5, cooldown: 30s}, not %s", what,
                   bt_cfg_kind_name(v));
        return;
    }
    m->breaker = (struct bt_breaker_cfg){.failures = 5, .cooldown_ms = 30000};
    for (size_t i = 0; i + 1 < v->n; i += 2) {
        int idx = bt_cfg_key_index(L, v->items[i], keys, what);
        char w[BT_CFG_MAX_NAME + 80];
        uint64_t x;
        if (idx == 0) {
            snprintf(w, sizeof(w), "%s: failures", what);
            if (bt_cfg_get_u64(L, v->items[i + 1], w, 1, 1000000, &x)) m->breaker.failures = (uint32_t)x;
        } else if (idx == 1) {
            snprintf(w, sizeof(w), "%s: cooldown", what);
            if (bt_cfg_get_duration(L, v->items[i + 1], w, 1, 86400000, &x))
                m->breaker.cooldown_ms = x;
        }
    }
}

static void load_retry(struct bt_cfg_loader *L, const struct bt_ynode *v, const char *ctx,
                       struct bt_model *m)
{
    static const char *const keys[] = {"attempts", "backoff", "max_backoff", NULL};
    char what[BT_CFG_MAX_NAME + 60];
    snprintf(what, sizeof(what), "%s retry", ctx);
    if (v->kind != BT_Y_MAP) {
        bt_cfg_err(L, v, "%s must be a mapping like {attempts: 3, backoff: 200ms}, not %s", what,
                   bt_cfg_kind_name(v));
        return;
    }
    m->retry = (struct bt_retry_cfg){.attempts = 3, .backoff_ms = 200, .max_backoff_ms = 10000};
    for (size_t i = 0; i + 1 < v->n; i += 2) {
        int idx = bt_cfg_key_index(L, v->items[i], keys, what);
        char w[BT_CFG_MAX_NAME + 80];
        uint64_t x;
        snprintf(w, sizeof(w), "%s: %s", what, idx >= 0 ? keys[idx] : "?");
        if (idx == 0 && bt_cfg_get_u64(L, v->items[i + 1], w, 1, 20, &x))
            m->retry.attempts = (uint32_t)x;
        else if (idx == 1 && bt_cfg_get_duration(L, v->items[i + 1], w, 0, 600000, &x))
            m->retry.backoff_ms = x;
        else if (idx == 2 && bt_cfg_get_duration(L, v->items[i + 1], w, 0, 600000, &x))
            m->retry.max_backoff_ms = x;
    }
}

static void load_hedge(struct bt_cfg_loader *L, const struct bt_ynode *v, const char *ctx,
                       struct bt_model *m)
{
    static const char *const keys[] = {"after", NULL};
    char what[BT_CFG_MAX_NAME + 60];
    snprintf(what, sizeof(what), "%s hedge", ctx);
    if (v->kind != BT_Y_MAP) {
        bt_cfg_err(L, v, "%s must be a mapping like {after: 800ms}, not %s", what,
                   bt_cfg_kind_name(v));
        return;
    }
    bool after = false;
    for (size_t i = 0; i + 1 < v->n; i += 2) {
        char w[BT_CFG_MAX_NAME + 80];
        uint64_t x;
        snprintf(w, sizeof(w), "%s: after", what);
        if (bt_cfg_key_index(L, v->items[i], keys, what) == 0) {
            after = true;
            if (bt_cfg_get_duration(L, v->items[i + 1], w, 1, 600000, &x)) m->hedge.after_ms = x;
        }
    }
    if (!after) bt_cfg_err(L, v, "%s needs after: DURATION (e.g. {after: 800ms})", what);
}

static void load_fallback(struct bt_cfg_loader *L, const struct bt_ynode *v, const char *ctx,
                          struct bt_model *m)
{
    static const char *const keys[] = {"models", "on", NULL};
    char what[BT_CFG_MAX_NAME + 60];
    snprintf(what, sizeof(what), "%s fallback", ctx);
    if (v->kind != BT_Y_MAP) {
        bt_cfg_err(L, v, "%s must be a mapping like {models: [NAME], on: [rate_limit]}, not %s",
                   what, bt_cfg_kind_name(v));
        return;
    }
    /* By default the provider-side failures: what the client could not avoid. */
    m->fallback.on = 1u << BT_OUTCOME_RATE_LIMIT | 1u << BT_OUTCOME_SERVER_ERROR |
                     1u << BT_OUTCOME_TIMEOUT | 1u << BT_OUTCOME_CONNECTION | 1u << BT_OUTCOME_AUTH;
    const struct bt_ynode *mv = NULL;
    for (size_t i = 0; i + 1 < v->n; i += 2) {
        int idx = bt_cfg_key_index(L, v->items[i], keys, what);
        const struct bt_ynode *x = v->items[i + 1];
        if (idx == 0) {
            mv = x;
        } else if (idx == 1) {
            if (x->kind != BT_Y_SEQ || !x->n) {
                bt_cfg_err(L, x, "%s: on must be a non-empty list of failure classes", what);
                continue;
            }
            m->fallback.on = 0;
            for (size_t j = 0; j < x->n; j++) {
                enum bt_outcome o;
                const struct bt_ynode *e = x->items[j];
                if (e->kind != BT_Y_SCALAR || !bt_outcome_parse((struct bt_str){e->text, e->len}, &o) ||
                    o == BT_OUTCOME_OK || o == BT_OUTCOME_BAD_REQUEST)
                    bt_cfg_err(L, e, "%s: unknown failure class \"%.*s\" (expected one of: "
                                     "rate_limit, server_error, timeout, connection, context_window, "
                                     "content_filter, auth)", what,
                               BT_CFG_SHOWN(e->kind == BT_Y_SCALAR ? e->len : 0),
                               e->kind == BT_Y_SCALAR ? e->text : "");
                else
                    m->fallback.on |= 1u << o;
            }
        }
    }
    if (!mv) {
        bt_cfg_err(L, v, "%s needs models: [NAME, ...]", what);
        return;
    }
    if (mv->kind != BT_Y_SEQ || !mv->n || mv->n > BT_FALLBACK_MAX) {
        bt_cfg_err(L, mv, "%s: models must be a list of 1 to %d model names", what, BT_FALLBACK_MAX);
        return;
    }
    for (size_t j = 0; j < mv->n; j++) {
        char w[BT_CFG_MAX_NAME + 80];
        snprintf(w, sizeof(w), "%s: models", what);
        char *s;
        size_t len;
        if (!bt_cfg_get_string(L, mv->items[j], w, &s, &len, NULL)) continue;
        m->fallback.names[m->fallback.n] = s;
        m->fallback.lines[m->fallback.n] = mv->items[j]->line;
        m->fallback.cols[m->fallback.n] = mv->items[j]->col;
        m->fallback.n++;
    }
}

static void load_model(struct bt_cfg_loader *L, const struct bt_ynode *k, const struct bt_ynode *v,
                       struct bt_model *m)
{
    static const char *const keys[] = {"provider", "model",  "deployments", "strategy", "breaker",
                                       "retry",    "fallback", "sticky",   "price",    "hedge",
                                       "rules",    "router",   "limits",   NULL};
    m->line = k->line;
    m->col = k->col;
    char ctx[BT_CFG_MAX_NAME + 20];
    snprintf(ctx, sizeof(ctx), "model \"%s\"", m->name);
    if (v->kind != BT_Y_MAP) {
        bt_cfg_err(L, bt_ynode_is_null(v) ? k : v,
                   "model \"%s\" must be a mapping like {provider: NAME} or {deployments: [...]}",
                   m->name);
        return;
    }
    const struct bt_ynode *pv = NULL, *mv = NULL, *dv = NULL, *dk = NULL, *hk = NULL, *prv = NULL,
                          *prk = NULL, *choice = NULL, *policy = NULL;
    for (size_t i = 0; i + 1 < v->n; i += 2) {
        int idx = bt_cfg_key_index(L, v->items[i], keys, ctx);
        if ((idx >= 3 && idx <= 9) || idx == 12) policy = v->items[i];
        if (idx == 10 || idx == 11) {
            if (choice) {
                bt_cfg_err(L, v->items[i], "%s: use one of rules or router, not both", ctx);
                continue;
            }
            choice = v->items[i];
            if (idx == 10) bt_cfg_load_rules(L, v->items[i + 1], m);
            else bt_cfg_load_router(L, v->items[i + 1], m);
        } else if (idx == 0)
            pv = v->items[i + 1];
        else if (idx == 1)
            mv = v->items[i + 1];
        else if (idx == 2)
            dv = v->items[i + 1], dk = v->items[i];
        else if (idx == 3)
            load_strategy(L, v->items[i + 1], ctx, m);
        else if (idx == 4)
            load_breaker(L, v->items[i + 1], ctx, m);
        else if (idx == 5)
            load_retry(L, v->items[i + 1], ctx, m);
        else if (idx == 6)
            load_fallback(L, v->items[i + 1], ctx, m);
        else if (idx == 7) {
            const struct bt_ynode *x = v->items[i + 1];
            if (x->kind == BT_Y_SCALAR && x->len == 4 && memcmp(x->text, "user", 4) == 0)
                m->sticky_user = true;
            else
                bt_cfg_err(L, x, "%s: sticky must be user (the only key requests are kept on)",
                           ctx);
        } else if (idx == 8) {
            prv = v->items[i + 1], prk = v->items[i];
        } else if (idx == 9) {
            hk = v->items[i];
            load_hedge(L, v->items[i + 1], ctx, m);
        } else if (idx == 12) {
            load_limits(L, v->items[i + 1], ctx, &m->limits);
        }
    }
    if (choice) {
        if (pv || mv || dv)
            bt_cfg_err(L, choice, "%s: %.*s chooses another model, so it takes no provider, "
                                  "model or deployments", ctx, BT_CFG_SHOWN(choice->len), choice->text);
        else if (policy)
            bt_cfg_err(L, policy, "%s: %.*s applies to deployments; put it on the models the %.*s "
                                  "name", ctx, BT_CFG_SHOWN(policy->len), policy->text,
                       BT_CFG_SHOWN(choice->len), choice->text);
        return;
    }
    if (prv && dv) {
        bt_cfg_err(L, prk, "%s: price goes beside provider:, or on each deployment of a "
                           "deployments list", ctx);
        return;
    }
    if (dv && (pv || mv)) {
        bt_cfg_err(L, dk, "%s: use either provider/model or deployments, not both", ctx);
        return;
    }
    if (!dv && !pv) {
        bt_cfg_err(L, k, "%s needs provider: NAME (or a deployments: list, rules: or router:)", ctx);
        return;
    }
    /* A hedge goes to another deployment of the model's own: with one there is
     * none (a fallback model is for failures, not for a slow first byte). */
    if (hk && (!dv || (dv->kind == BT_Y_SEQ && dv->n == 1)))
        bt_cfg_err(L, hk, "%s: hedge needs at least two deployments (it starts a second "
                          "attempt on another one)", ctx);
    if (pv) {
        m->deployments = calloc(1, sizeof(*m->deployments));
        if (!m->deployments) {
            L->oom = true;
            return;
        }
        m->ndeployments = 1;
        struct bt_deployment *d = &m->deployments[0];
        d->weight = 1;
        d->line = k->line;
        d->col = k->col;
        d->provider = resolve_provider(L, pv, ctx);
        if (mv)
            get_model_id(L, mv, ctx, &d->model);
        else
            d->model = bt_cfg_dup(L, m->name, strlen(m->name)); /* same id upstream */
        if (prv) load_price(L, prv, ctx, &d->price);
        default_price(d);
        return;
    }
    if (dv->kind != BT_Y_SEQ) {
        bt_cfg_err(L, dv,
                   "%s: deployments must be a list (- {provider: NAME, model: ID} lines), not %s",
                   ctx, bt_ynode_is_null(dv) ? "empty" : bt_cfg_kind_name(dv));
        return;
    }
    if (dv->n == 0) {
        bt_cfg_err(L, dv, "%s: deployments is empty", ctx);
        return;
    }
    if (dv->n > MAX_DEPLOYMENTS) {
        bt_cfg_err(L, dv, "%s: at most %d deployments per model (got %zu)", ctx, MAX_DEPLOYMENTS,
                   dv->n);
        return;
    }
    m->deployments = calloc(dv->n, sizeof(*m->deployments));
    if (!m->deployments) {
        L->oom = true;
        return;
    }
    m->ndeployments = dv->n;
    for (size_t i = 0; i < dv->n; i++)
        load_deployment(L, dv->items[i], m, &m->deployments[i], i);
}

void bt_cfg_load_models(struct bt_cfg_loader *L, const struct bt_ynode *n)
{
    const struct bt_ynode *m = bt_cfg_as_map(L, n, "models");
    if (!m || m->n < 2) return;
    struct bt_config *c = L->cfg;
    c->models = calloc(m->n / 2, sizeof(*c->models));
    if (!c->models) {
        L->oom = true;
        return;
    }
    for (size_t i = 0; i + 1 < m->n; i += 2) {
        const struct bt_ynode *k = m->items[i], *v = m->items[i + 1];
        if (!bt_cfg_name_ok(L, k, "model", true)) continue;
        struct bt_model *md = &c->models[c->nmodels];
        md->name = bt_cfg_dup(L, k->text, k->len);
        if (!md->name) return;
        c->nmodels++;
        load_model(L, k, v, md);
        if (L->oom) return;
    }
    /* strategy cost orders by price: every deployment needs one. */
    for (size_t i = 0; i < c->nmodels; i++) {
        const struct bt_model *md = &c->models[i];
        if (md->strategy != BT_STRATEGY_COST) continue;
        for (size_t j = 0; j < md->ndeployments; j++) {
            const struct bt_deployment *d = &md->deployments[j];
            if (d->price.source != BT_PRICE_NONE || !d->provider || !d->model) continue;
            struct bt_ynode at = {.line = d->line, .col = d->col};
            bool sim = d->provider->type == BT_PROVIDER_SIM;
            bt_cfg_err(L, &at,
                       "model \"%s\": strategy cost needs a price for every deployment, and "
                       "deployment %zu (%s/%s) has none (%s%s%s): add price: {input: USD, "
                       "output: USD} (per million tokens)",
                       md->name, j + 1, d->provider->name, d->model,
                       sim ? "a sim provider's models have no shipped price"
                           : "no shipped default for \"",
                       sim ? "" : d->model, sim ? "" : "\"");
        }
    }
    /* Fallback names resolve once every model is known. */
    for (size_t i = 0; i < c->nmodels; i++) {
        struct bt_model *md = &c->models[i];
        for (uint32_t j = 0; j < md->fallback.n; j++) {
            const char *fname = md->fallback.names[j];
            const struct bt_model *f = bt_config_model(c, bt_str_c(fname));
            struct bt_ynode at = {.line = md->fallback.lines[j], .col = md->fallback.cols[j]};
            if (!f)
                bt_cfg_err(L, &at, "model \"%s\" fallback: unknown model \"%s\"", md->name, fname);
            else if (f == md)
                bt_cfg_err(L, &at, "model \"%s\" fallback: a model cannot fall back to itself",
                           md->name);
            md->fallback.models[j] = f;
        }
    }
    bt_cfg_resolve_choices(L);
}
