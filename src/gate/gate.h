/* The gate: who is calling, and may they make this request. Two steps around the
 * front end's decode: bt_gate_identify reads the caller's key from the HTTP head
 * (before the body is decoded, so an unknown caller learns nothing about request
 * validation): the master key, or a virtual key found by its SHA-256 in the
 * worker's key table (store/keys.h; no store access on this path).
 * bt_gate_admit judges the decoded request: a virtual key's model rights, its
 * budgets (its own, its team's, its user's) and its rpm, tpm and concurrency.
 * See docs/governance.md. */
#ifndef BT_GATE_GATE_H
#define BT_GATE_GATE_H

#include <stdbool.h>

#include "canon/request.h"
#include "config/config.h"
#include "http/server.h"
#include "store/keys.h"
#include "store/redis.h"

/* One level a request is judged at: its key (0), its team (1), its user (2). */
struct bt_gate_level {
    struct bt_key_live *live;      /* its counters (the key service's, outliving the
                                      request); NULL: the key has no such owner */
    int64_t rpm, tpm, concurrency; /* -1 (tpm: -1 or 0) none */
    int64_t budget_micro;          /* -1 none */
    enum bt_budget_period period;
    char who[BT_KEY_MAX_NAME + 48]; /* opens its messages: "This API key", "The team 'NAME'
                                      of this API key" */
};

/* Who a request comes from. */
struct bt_caller {
    bool master;                 /* presented the master key, or none is configured and
                                    no virtual key was presented */
    const struct bt_key_rec *key; /* the virtual key presented, borrowed from the key
                                    table given to identify (valid while the caller's
                                    reference to it is); NULL otherwise */
    bool held;                   /* set by admit: concurrency slots are held (`slots`), to
                                    give back with bt_key_release_slots at the end */
    struct bt_key_slots slots;   /* set by admit: the key's, team's and user's slots held */
    struct bt_key_live *tpm_lives[3]; /* set by admit: whose tpm `tokens` were taken from */
    int64_t retry_after;         /* set by a 429 from admit: seconds to wait */
    char budget_warning[128];    /* set by admit: the x-baton-budget-warning value when
                                    the key has used 80% of its budget or more; "" none */
    char budget_msg[640];        /* the 429 insufficient_quota message (why points here) */
    int64_t tokens;              /* set before admit for a key with tpm: the request's
                                    estimated tokens (prompt counted + max_tokens) */
    int64_t tpm_minute;          /* set by admit: the minute they were taken from */
    struct bt_gate_level lv[3];  /* set by admit: the key's, its team's and user's limits,
                                    copied (valid after the key record is gone) */
};

/* Gives back what a successful bt_gate_admit took (concurrency slots, the tpm
 * estimate) when the request is refused afterwards (a limit shared through
 * Redis). */
void bt_gate_untake(struct bt_caller *caller);

/* Why `who` ("This API key", "The model 'chat'") is over its limit `which`
 * ("rpm", "tpm", "concurrency"), into out; `across`: counted over every
 * instance (Redis). */
void bt_gate_over_limit_msg(char *out, size_t cap, const char *who, const char *which,
                            bool across);

/* The per-process rpm, tpm and concurrency of every level of an admitted
 * caller (what bt_gate_admit judges itself without store.redis): for a request
 * whose shared admission found Redis down (store.redis_unavailable: open).
 * False with the message in caller->budget_msg and caller->retry_after. */
bool bt_gate_limits(struct bt_caller *caller, int64_t now);

/* The levels of caller (admitted) that Redis judges (store.redis): those with a
 * limit or a budget, into out (up to BT_REDIS_LEVELS), each with its caller
 * level in idx; the request's token estimate, the budget periods at now_ms and
 * what this process knows was spent. Returns how many. */
int bt_gate_shared_levels(const struct bt_caller *caller, const char *key_id, int64_t now_ms,
                          struct bt_redis_level out[BT_REDIS_LEVELS], int idx[BT_REDIS_LEVELS]);

/* Writes into caller->budget_msg why Redis refused level `lvl` (a caller
 * level) with verdict `v`, and sets its retry_after. */
void bt_gate_shared_refusal(struct bt_caller *caller, int lvl, enum bt_redis_verdict v,
                            int64_t retry_after, int64_t now_ms);

/* What exec needs to account a request to its caller, copied out of the key
 * record (which may be freed when the worker's table changes mid-request). */
struct bt_payer {
    const char *key_id;          /* the key's id, or "master" */
    const char *user, *team;     /* the key's owner and team; NULL unset */
    struct bt_key_live *live;    /* the key's counters (the key service's, outliving the
                                    request); NULL for the master key */
    struct bt_key_live *team_live, *user_live; /* its team's and user's, or NULL */
    struct bt_key_live *tpm_lives[3]; /* whose tpm the estimate was taken from (NULL: none) */
    const char *budget_warning;  /* x-baton-budget-warning for the response; NULL none */
    int64_t tpm_tokens;          /* the estimate taken at admit from each of tpm_lives, */
    int64_t tpm_minute;          /* and the minute: corrected to the usage at the end */
    double budget_left;          /* the share of the key's budget left at admit (0..1), -1
                                    without a budget (a rule's budget_left_below reads it) */
    int nshared;                 /* levels counted in Redis (store.redis), charged and */
    struct bt_redis_level shared[BT_REDIS_LEVELS]; /* corrected there when the request ends */
    int64_t shared_minute;       /* the minute their tokens were taken from */
    bool model_shared;           /* one of them is the model's own limits (set by the
                                    pipeline, which knows the model) */
};

/* True when the request may pass. With a master key configured the request must
 * carry `Authorization: Bearer KEY` (or `x-api-key: KEY`); the comparison takes
 * constant time. On refusal *why says what is wrong (never echoing the key). */
bool bt_gate_check_master(const struct bt_config *cfg, const struct bt_http_req *req,
                          const char **why);

/* Step one: identifies the caller of `req` into *caller: the master key
 * (compared in constant time), or a virtual key of `keys` (NULL: none), looked
 * up by its SHA-256 and compared in constant time, active and not expired.
 * Without a master key configured, a request with no key or with a key that
 * is not a virtual one (`sk-bt-...`) passes as before (loopback or
 * allow_anonymous); a virtual key is still judged. False (a 401 for the
 * client) with *why set when the key is missing, unknown, revoked or
 * expired. */
bool bt_gate_identify(const struct bt_config *cfg, const struct bt_keytab *keys,
                      const struct bt_http_req *req, struct bt_caller *caller, const char **why);

/* Step two: may `caller` make the decoded request `r`? False with *status (403,
 * 429, ...), *code and *why set when not: a virtual key with a models list asks
 * for another model (403 model_not_allowed), has spent its budget for the
 * period, or its team or user theirs (429 insufficient_quota: spent >= budget, no reservation for this
 * request, whose cost is charged when it ends), or is over its rpm or
 * concurrency or tokens per minute (caller->tokens against its tpm) (429 rate_limit_exceeded,
 * caller->retry_after set). At 80% of a
 * budget or more, caller->budget_warning is set (and logged once per
 * crossing). When it passes, a key
 * with a concurrency limit holds a slot (caller->held) until released. */
bool bt_gate_admit(const struct bt_config *cfg, struct bt_caller *caller,
                   const struct bt_request *r, int *status, const char **code, const char **why);

#endif
