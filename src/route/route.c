#include "route/route.h"

#include <string.h>

#include "route/choose.h"
#include "route/health.h"

/* The weighted pick of the first deployment (rr modulo the total weight), the
 * rest after it in config order. */
static uint32_t weighted_first(const struct bt_model *m, uint32_t n, uint64_t rr)
{
    uint64_t total = 0;
    for (uint32_t i = 0; i < n; i++) total += m->deployments[i].weight ? m->deployments[i].weight : 1;
    uint64_t r = total ? rr % total : 0;
    for (uint32_t i = 0; i < n; i++) {
        uint64_t w = m->deployments[i].weight ? m->deployments[i].weight : 1;
        if (r < w) return i;
        r -= w;
    }
    return 0;
}

static uint64_t load_of(const struct bt_deployment *d, enum bt_strategy s)
{
    if (!d->health) return 0;
    if (s == BT_STRATEGY_LEAST_BUSY)
        return (uint64_t)atomic_load_explicit(&d->health->inflight, memory_order_relaxed);
    return atomic_load_explicit(&d->health->ewma_us, memory_order_relaxed);
}

/* A stable insertion sort of idx[0..n) by key, lowest first: ties keep their
 * order (the rotation). */
static void sort_by(uint64_t *key, uint32_t *idx, uint32_t n)
{
    for (uint32_t i = 1; i < n; i++) {
        for (uint32_t j = i; j > 0 && key[j - 1] > key[j]; j--) {
            uint64_t tk = key[j];
            key[j] = key[j - 1];
            key[j - 1] = tk;
            uint32_t ti = idx[j];
            idx[j] = idx[j - 1];
            idx[j - 1] = ti;
        }
    }
}

/* Orders idx[0..n) by the strategy. The rotation by rr comes first, so ties
 * (and deployments without samples) spread evenly; for cost, ties keep the
 * weighted pick. */
static void order(const struct bt_model *m, uint32_t n, uint64_t rr, uint32_t *idx)
{
    bool weighted = m->strategy == BT_STRATEGY_WEIGHTED || m->strategy == BT_STRATEGY_COST;
    uint32_t first = weighted ? weighted_first(m, n, rr) : (uint32_t)(rr % n);
    for (uint32_t k = 0; k < n; k++) idx[k] = (first + k) % n;
    uint64_t key[BT_PLAN_MAX];
    if (m->strategy == BT_STRATEGY_LEAST_BUSY) {
        /* fewest in flight first */
        for (uint32_t k = 0; k < n; k++) key[k] = load_of(&m->deployments[idx[k]], m->strategy);
        sort_by(key, idx, n);
    } else if (m->strategy == BT_STRATEGY_COST) {
        /* cheapest blended price first; the loader refuses a cost model with an
         * unpriced deployment, so every one has a price here */
        for (uint32_t k = 0; k < n; k++)
            key[k] = (uint64_t)bt_price_blended(&m->deployments[idx[k]].price);
        sort_by(key, idx, n);
    } else if (m->strategy == BT_STRATEGY_LATENCY && n > 1) {
        /* Power of two choices: of the rotation's first and a second chosen from rr,
         * the lower latency EWMA goes first (an unmeasured one counts as fastest, so
         * it gets measured); the rest keep the rotation. */
        uint32_t other = 1 + (uint32_t)((rr / n) % (n - 1));
        uint64_t a = load_of(&m->deployments[idx[0]], m->strategy);
        uint64_t b = load_of(&m->deployments[idx[other]], m->strategy);
        if (b < a) {
            uint32_t t = idx[0];
            idx[0] = idx[other];
            idx[other] = t;
        }
    }
}

/* Appends model m's deployments to the plan in its strategy's order, leaving out
 * those whose breaker is open unless all are (then the one whose cooldown ends
 * first). */
static void add_model(struct bt_plan *plan, const struct bt_model *m, uint64_t rr)
{
    uint32_t n = m->ndeployments < 8 ? (uint32_t)m->ndeployments : 8;
    uint32_t idx[8];
    order(m, n, rr, idx);
    uint64_t now = m->breaker.failures ? bt_health_now_ms() : 0;
    int earliest = -1;
    uint64_t earliest_until = UINT64_MAX;
    uint32_t added = 0;
    for (uint32_t k = 0; k < n && plan->n < BT_PLAN_MAX; k++) {
        const struct bt_deployment *d = &m->deployments[idx[k]];
        if (m->breaker.failures && !bt_health_available(d->health, &m->breaker, now)) {
            uint64_t u = atomic_load_explicit(&d->health->open_until_ms, memory_order_relaxed);
            if (u < earliest_until) earliest_until = u, earliest = (int)idx[k];
            continue;
        }
        plan->c[plan->n++] =
            (struct bt_candidate){d->provider, bt_str_c(d->model), d->health, &d->limits, d->price};
        added++;
    }
    if (!added && earliest >= 0 && plan->n < BT_PLAN_MAX) { /* never no candidate */
        const struct bt_deployment *d = &m->deployments[earliest];
        plan->c[plan->n++] =
            (struct bt_candidate){d->provider, bt_str_c(d->model), d->health, &d->limits, d->price};
    }
}

static uint64_t mix(uint64_t h, struct bt_str s)
{
    h = bt_fnv1a(h, s.p, s.len);
    return h ^ (h >> 29);
}

/* sticky: user — the candidate with the highest hash of (user, deployment) goes
 * first; the others keep their order. */
static void stick(struct bt_plan *plan, struct bt_str user)
{
    uint64_t hu = mix(BT_FNV_OFFSET, user);
    uint32_t best = 0;
    uint64_t best_h = 0;
    for (uint32_t i = 0; i < plan->n; i++) {
        uint64_t h = mix(mix(hu, plan->c[i].provider->name ? bt_str_c(plan->c[i].provider->name)
                                                           : BT_STR_NULL),
                         plan->c[i].model);
        if (i == 0 || h > best_h) best = i, best_h = h;
    }
    struct bt_candidate c = plan->c[best];
    for (uint32_t i = best; i > 0; i--) plan->c[i] = plan->c[i - 1];
    plan->c[0] = c;
}

enum bt_err bt_route_plan(const struct bt_config *cfg, struct bt_str model, uint64_t rr,
                          struct bt_plan *plan)
{
    return bt_route_plan_for(cfg, model, BT_STR_NULL, rr, plan);
}

enum bt_err bt_route_plan_for(const struct bt_config *cfg, struct bt_str model,
                              struct bt_str user, uint64_t rr, struct bt_plan *plan)
{
    struct bt_route_req q = {.model = model, .user = user, .rr = rr};
    return bt_route(cfg, &q, plan);
}

bool bt_route_needs_prompt(const struct bt_config *cfg, struct bt_str model)
{
    const struct bt_model *m = bt_config_model(cfg, model);
    return m && m->kind != BT_MODEL_DEPLOYMENTS;
}

enum bt_err bt_route(const struct bt_config *cfg, const struct bt_route_req *q,
                     struct bt_plan *plan)
{
    struct bt_str model = q->model, user = q->user;
    uint64_t rr = q->rr;
    plan->n = plan->n_own = 0;
    plan->model = plan->asked = NULL;
    plan->why[0] = 0;
    plan->model_taken = (struct bt_limits_taken){0};
    const struct bt_model *m = bt_config_model(cfg, model);
    if (m && m->kind != BT_MODEL_DEPLOYMENTS) {
        if (!q->prompt) return BT_EINVAL;
        plan->asked = m;
        struct bt_route_facts f;
        bt_route_facts_init(&f);
        m = bt_route_choose(m, q->prompt, q->scratch, &f, plan->why, sizeof(plan->why));
        if (!m) return BT_ENOTFOUND;
    }
    if (m) {
        plan->model = m;
        if (!plan->asked) plan->asked = m;
        add_model(plan, m, rr);
        plan->n_own = plan->n;
        if (m->sticky_user && user.len && plan->n_own > 1) stick(plan, user);
        for (uint32_t f = 0; f < m->fallback.n; f++)
            if (m->fallback.models[f]) add_model(plan, m->fallback.models[f], rr);
        return BT_OK;
    }
    long slash = bt_str_index(model, '/');
    if (slash > 0 && (size_t)slash + 1 < model.len) {
        const struct bt_provider *p =
            bt_config_provider(cfg, (struct bt_str){model.p, (size_t)slash});
        if (p) {
            struct bt_str id = {model.p + slash + 1, model.len - (size_t)slash - 1};
            plan->c[0] = (struct bt_candidate){p, id, NULL, NULL, {0}};
            if (p->type != BT_PROVIDER_SIM) /* as the loader: never for the simulator */
                bt_price_default(id, &plan->c[0].price); /* none: the cost is unknown */
            plan->n = plan->n_own = 1;
            return BT_OK;
        }
    }
    return BT_ENOTFOUND;
}
