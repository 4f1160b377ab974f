#include "route/route.h"

#include <string.h>

enum bt_err bt_route_plan(const struct bt_config *cfg, struct bt_str model, uint64_t rr,
                          struct bt_plan *plan)
{
    memset(plan, 0, sizeof(*plan));
    const struct bt_model *m = bt_config_model(cfg, model);
    if (m) {
        plan->model = m;
        uint32_t n = m->ndeployments < BT_PLAN_MAX ? (uint32_t)m->ndeployments : BT_PLAN_MAX;
        /* Weighted pick of the first candidate; the rest follow in config order. */
        uint64_t total = 0;
        for (uint32_t i = 0; i < n; i++) total += m->deployments[i].weight ? m->deployments[i].weight : 1;
        uint64_t r = total ? rr % total : 0;
        uint32_t first = 0;
        for (uint32_t i = 0; i < n; i++) {
            uint64_t w = m->deployments[i].weight ? m->deployments[i].weight : 1;
            if (r < w) {
                first = i;
                break;
            }
            r -= w;
        }
        for (uint32_t k = 0; k < n; k++) {
            const struct bt_deployment *d = &m->deployments[(first + k) % n];
            plan->c[plan->n++] = (struct bt_candidate){d->provider, bt_str_c(d->model)};
        }
        return BT_OK;
    }
    long slash = bt_str_index(model, '/');
    if (slash > 0 && (size_t)slash + 1 < model.len) {
        const struct bt_provider *p =
            bt_config_provider(cfg, (struct bt_str){model.p, (size_t)slash});
        if (p) {
            plan->c[0] = (struct bt_candidate){
                p, {model.p + slash + 1, model.len - (size_t)slash - 1}};
            plan->n = 1;
            return BT_OK;
        }
    }
    return BT_ENOTFOUND;
}
