/* Routing: turns the requested model name into an ordered plan of candidate
 * deployments. A public model maps to its deployments (the first one chosen by
 * weighted round robin, the others kept in order as fallbacks); `provider/model`
 * addresses one provider directly (split at the first '/': provider names have
 * no slash, model ids may). */
#ifndef BT_ROUTE_ROUTE_H
#define BT_ROUTE_ROUTE_H

#include <stdint.h>

#include "canon/prompt.h"
#include "config/config.h"
#include "core/str.h"
#include "learn/learn.h"
#include "route/health.h"

#define BT_PLAN_MAX 16 /* a model's own deployments (at most 8), then its fallbacks' */

struct bt_candidate {
    const struct bt_provider *provider; /* borrowed from the snapshot */
    struct bt_str model;                /* upstream model id (snapshot or request bytes) */
    struct bt_health *health;           /* its live state (route/health.h), or NULL */
    const struct bt_limits *limits;     /* the deployment's limits, or NULL */
    struct bt_price price;              /* the deployment's price (configured or shipped);
                                           direct addressing: the shipped one; source
                                           BT_PRICE_NONE when unknown */
};

struct bt_plan {
    struct bt_candidate c[BT_PLAN_MAX];
    uint32_t n;                         /* candidates in all */
    uint32_t n_own;                     /* the first n_own are the model's own; the rest
                                           come from its fallback models, in order */
    const struct bt_model *model;       /* the group that serves, NULL for direct addressing */
    const struct bt_model *asked;       /* the public model asked for (model itself, or the
                                           rules or router that chose it), NULL when direct */
    char why[200];                      /* how rules and routers chose, e.g. "chat: rule 2 -> ";
                                           "" when the model asked serves itself */
    struct bt_limits_taken model_taken; /* what the request took from model->limits (set by
                                           the caller after bt_route; exec settles and
                                           gives it back) */
};

/* What routing reads of a request. */
struct bt_route_req {
    struct bt_str model;                /* the model asked for */
    struct bt_str user;                 /* the end user (body user or x-baton-user), may be empty */
    const struct bt_prompt *prompt;     /* the request's content: needed when
                                           bt_route_needs_prompt says so, else NULL */
    struct bt_learn_scratch *scratch;   /* a router's per-thread working memory */
    uint64_t rr;                        /* per-worker counter: spreads load, breaks ties */
};

/* Whether `model` names a model that chooses by content (rules, router): the
 * caller then builds the prompt before bt_route. */
bool bt_route_needs_prompt(const struct bt_config *cfg, struct bt_str model);

/* Fills `plan` for the request: rules and routers first choose the group (their
 * steps in plan->why), then the group's deployments are ordered as below.
 * BT_ENOTFOUND when the name matches nothing, BT_EINVAL when the model needs a
 * prompt and none was given. */
BT_MUST_USE enum bt_err bt_route(const struct bt_config *cfg, const struct bt_route_req *q,
                                 struct bt_plan *plan);

/* Fills `plan` for `model`. A group's deployments are ordered by its strategy
 * (weighted, round_robin, least_busy, latency, cost; `rr` is a per-worker counter that
 * spreads load and breaks ties), and with a breaker configured those whose
 * breaker is open are left out, unless all are: then the one whose cooldown ends
 * first is tried. BT_ENOTFOUND when the name matches nothing. The plan borrows
 * from `cfg` and from `model`'s bytes. */
BT_MUST_USE enum bt_err bt_route_plan(const struct bt_config *cfg, struct bt_str model, uint64_t rr,
                          struct bt_plan *plan);
/* The same for an end user (`user` of the request, or x-baton-user; may be empty):
 * a model with `sticky: user` puts that user's deployment first (rendezvous
 * hashing over the deployments its breaker leaves in, so a user moves only when
 * theirs fails or the group changes), keeping provider prompt caches warm. */
BT_MUST_USE enum bt_err bt_route_plan_for(const struct bt_config *cfg, struct bt_str model,
                                          struct bt_str user, uint64_t rr, struct bt_plan *plan);

#endif
