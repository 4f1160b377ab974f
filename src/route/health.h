/* Deployment health: one process-wide registry of what baton has seen of each
 * deployment (a provider's name and base URL with an upstream model id): requests
 * in flight, an EWMA of the time to the response head, consecutive failures and
 * the circuit breaker. It lives outside the config snapshot, so a reload keeps
 * the state of deployments that still exist, and every worker shares it: the
 * request path touches only atomics; the registry's lock is taken only when a
 * snapshot is put in service (bt_health_attach). Entries are never freed (one per
 * distinct deployment ever configured, at most BT_HEALTH_MAX). */
#ifndef BT_ROUTE_HEALTH_H
#define BT_ROUTE_HEALTH_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "config/config.h"
#include "core/buf.h"
#include "core/outcome.h"
#include "store/keys.h"
#include "store/redis.h"

#define BT_HEALTH_MAX 16384

struct bt_health {
    atomic_int inflight;                 /* attempts running now */
    atomic_uint_least64_t ewma_us;       /* time to the response head; 0 = no sample yet */
    atomic_uint failures;                /* failures in a row (reset by a success) */
    atomic_uint_least64_t open_until_ms; /* breaker: 0 closed, else open until (monotonic ms) */
    atomic_bool probing;                 /* breaker half open: one probe is out */
    atomic_uint_least64_t attempts;      /* attempts started (for metrics and tests) */
    atomic_uint_least64_t ended[BT_OUTCOME_COUNT]; /* attempts ended, by outcome class */
    atomic_uint_least64_t hedge[3];      /* by enum bt_hedge_count */
    atomic_uint_least64_t shared_until_ms; /* the open_until_ms last published to or taken
                                              from the other instances (serve/breakers.c) */
    struct bt_key_live lim;              /* `limits:` counters (rpm, in flight), as a key's */
};

/* What hedging did at a deployment (models.NAME.hedge), for metrics and tests. */
enum bt_hedge_count {
    BT_HEDGE_STARTED = 0, /* a hedge attempt started here */
    BT_HEDGE_WON,         /* a hedge attempt here gave the request's answer */
    BT_HEDGE_CANCELLED,   /* an attempt here was cancelled: the other one answered first */
};

/* What one request (a model's) or one attempt (a deployment's) took from
 * `limits:` (per process), to give back or correct with the calls below. */
struct bt_limits_taken {
    struct bt_key_live *slot;  /* a concurrency slot held, or NULL */
    struct bt_key_live *tpm;   /* tokens taken from its tokens per minute, or NULL */
    int64_t minute, tokens;    /* from which minute, and how many */
    /* Or taken in Redis (store.redis): the worker's connection and the level the
     * admission counted (malloc'd, freed by bt_limits_give_back). */
    struct bt_redis *redis;
    struct bt_redis_level *shared;
    bool shared_slot, shared_tokens; /* what is still held there */
};

/* Takes one request from the limits `lim` counted in `h`: a request in the
 * minute, a concurrency slot, `tokens` (its estimate, read only when lim->tpm
 * is set) in the minute's tokens. False when that would pass one, with *which
 * ("rpm", "tpm" or "concurrency") and *retry_after (seconds) set, nothing
 * taken. */
bool bt_health_take_limits(struct bt_health *h, const struct bt_limits *lim, int64_t now,
                           int64_t tokens, struct bt_limits_taken *t, const char **which,
                           int64_t *retry_after);
/* What limits `lim` take in Redis, as a level of bt_redis_admit named `scope`
 * (the request's estimate `tokens` read only with lim->tpm). False when `lim`
 * has none. */
bool bt_limits_level(const struct bt_limits *lim, int64_t tokens, struct bt_redis_level *out);
/* *t becomes what Redis counted for level `lv` (admitted in minute `minute`). False
 * when memory ran out (the level is then given back at once). */
bool bt_limits_taken_shared(struct bt_limits_taken *t, struct bt_redis *redis,
                            const struct bt_redis_level *lv, int64_t minute);
/* The tokens taken become `used` (the usage reported or estimated), once. */
void bt_limits_settle(struct bt_limits_taken *t, int64_t used);
/* Gives back the concurrency slot only (the attempt is over; its tokens are
 * settled later). */
void bt_limits_release_slot(struct bt_limits_taken *t);
/* Gives back the slot, and the tokens when they were never settled (nothing was
 * used); *t is empty after. */
void bt_limits_give_back(struct bt_limits_taken *t);

/* Gives every deployment of `cfg` its registry entry (found by provider name, base
 * URL and model id, or created). Main thread, before the snapshot serves. Entries
 * past BT_HEALTH_MAX are left NULL (logged once): those deployments go untracked. */
void bt_health_attach(struct bt_config *cfg);

/* Monotonic milliseconds, the breaker's clock. */
uint64_t bt_health_now_ms(void);

/* Whether an attempt may go to `h` now under breaker `b`: closed, or its cooldown
 * is over and no other probe is out (then *probe is set: this attempt decides).
 * Does not claim the probe: bt_health_begin does. */
bool bt_health_available(const struct bt_health *h, const struct bt_breaker_cfg *b, uint64_t now_ms);

/* An attempt starts: in flight +1; a half-open breaker's probe is claimed. */
void bt_health_begin(struct bt_health *h);

/* The attempt ended with outcome `cls`; `head_us`: time to a 2xx response head
 * (0: none). A failure of the deployment's own (the classes a retry follows:
 * rate limits, server errors, timeouts, connection, a refused credential) counts
 * toward the breaker: `b->failures` in a row open it for `b->cooldown_ms`; a
 * success (ok) closes it and feeds the EWMA; the client's own mistakes
 * (bad_request, context_window, content_filter) are neither. `counted` false: the
 * client left, nothing is learned but the in-flight count. */
void bt_health_end(struct bt_health *h, const struct bt_breaker_cfg *b, bool counted,
                   enum bt_outcome cls, uint64_t head_us, uint64_t now_ms);

/* Counts a hedging event at `h` (NULL: untracked, nothing happens). */
void bt_health_hedge(struct bt_health *h, enum bt_hedge_count what);

/* Calls fn for every tracked deployment, under the registry's lock (fn must not
 * attach). `key` is "provider\x1fbase URL\x1fmodel"; entries and keys are never
 * freed, so both may be kept after the call. */
void bt_health_each(void (*fn)(void *ud, const char *key, struct bt_health *h), void *ud);

/* Appends the registry's families to a Prometheus text exposition (for
 * GET /metrics): per deployment (label deployment="provider/model") attempts in flight, attempts
 * started, attempts ended by outcome class, breaker open, the time-to-head EWMA,
 * hedges started, hedges won and attempts cancelled by a hedge.
 * Takes the registry's lock. */
enum bt_err bt_health_render(struct bt_buf *out);
/* Appends s[0..n) escaped for a Prometheus label value (\\, \", \n). */
void bt_health_label(struct bt_buf *out, const char *s, size_t n);

#endif
