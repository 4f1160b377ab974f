/* Models that choose another model by the request's content: `rules:` and
 * `router:` entries (config/rules.c compiles them). A decision reads the
 * prompt (canon/prompt.h) and costs microseconds: docs/routing.md has the
 * conditions and bench/micro_rules the figures. */
#ifndef BT_ROUTE_CHOOSE_H
#define BT_ROUTE_CHOOSE_H

#include <stdbool.h>
#include <stdint.h>

#include "canon/prompt.h"
#include "config/config.h"
#include "learn/learn.h"

/* What conditions measure of one prompt, computed at most once per request.
 * Start with bt_route_facts_init. */
struct bt_route_facts {
    int64_t tokens;                  /* estimated prompt tokens, -1 until counted */
    bool scripts_done;
    uint32_t letters;                /* letters in the user messages */
    double share[BT_LANG_COUNT];     /* each language's share of them */
};

static inline void bt_route_facts_init(struct bt_route_facts *f)
{
    f->tokens = -1;
    f->scripts_done = false;
}

/* Whether every condition of rule r holds for p (a rule without conditions
 * always does). */
bool bt_route_rule_matches(const struct bt_rule *r, const struct bt_prompt *p,
                           struct bt_route_facts *f);

/* The prompt's tokens as estimated for rules: o200k_base over each message's
 * text, plus OpenAI's 3 a message and 3 for the reply. */
int64_t bt_route_prompt_tokens(struct bt_route_facts *f, const struct bt_prompt *p);

/* The learned router's score for p: its last user message (s: per-thread
 * working memory, learn/learn.h). */
double bt_route_router_score(const struct bt_router_cfg *rc, const struct bt_prompt *p,
                             struct bt_learn_scratch *s);

/* Follows m's rules and routers to a model with deployments; appends each step
 * to the NUL-terminated text in why[0..cap) (when not NULL; cut at cap), e.g.
 * "chat: rule 2 -> ". NULL only for a config that was not resolved (the loader
 * refuses cycles and dangling names). */
const struct bt_model *bt_route_choose(const struct bt_model *m, const struct bt_prompt *p,
                                       struct bt_learn_scratch *s, struct bt_route_facts *f,
                                       char *why, size_t cap);

#endif
