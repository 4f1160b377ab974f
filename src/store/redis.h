/* Limits shared by every instance through Redis (store.redis): a key's
 * requests per minute and concurrent requests are counted in Redis, so N
 * instances allow the limit once, not N times. One asynchronous connection per
 * worker, driven by the worker's own loop (hiredis's libuv adapter): admitting
 * a request is one round trip (one Lua script that checks and counts
 * atomically), giving a concurrency slot back is one more, and nothing blocks a
 * worker. When Redis cannot be reached, store.redis_unavailable decides: open
 * (the per-process limits apply instead) or closed (503). */
#ifndef BT_STORE_REDIS_H
#define BT_STORE_REDIS_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "core/err.h"

struct bt_redis;

/* A connection for one loop (made lazily, remade after a failure). NULL only
 * when memory ran out or the URL is malformed. */
struct bt_redis *bt_redis_new(uv_loop_t *loop, const char *url);
/* Closes the connection; pending callbacks are called with BT_REDIS_DOWN. */
void bt_redis_free(struct bt_redis *r);

enum bt_redis_verdict {
    BT_REDIS_OK = 0,          /* admitted and counted */
    BT_REDIS_RPM = 1,         /* over the requests per minute */
    BT_REDIS_CONCURRENCY = 2, /* as many in flight as allowed */
    BT_REDIS_BUDGET = 3,      /* the key's spend of the period reached its budget */
    BT_REDIS_DOWN = -1,       /* Redis did not answer (or answered with an error) */
};

typedef void (*bt_redis_admit_cb)(void *ud, enum bt_redis_verdict v, int64_t retry_after);

/* What a key's admission checks in Redis. */
struct bt_redis_limits {
    int64_t rpm, concurrency;  /* -1: none */
    int64_t budget_pusd;       /* the key's budget in pico-USD, -1: none */
    int64_t spent_pusd;        /* what this instance knows it spent (seeds a counter Redis
                                  does not have, e.g. after a restart of Redis) */
    int64_t period_start_s;    /* the budget period's start, unix seconds (names the counter) */
    int64_t spend_ttl_ms;      /* how long the counter lives: past the period's end */
};

/* Admits one request of key `id` at unix time `now` against its budget, rpm and
 * concurrency, in one round trip (one script: checked and counted atomically);
 * `cb` is called once, on the loop's thread (possibly before this returns when
 * the connection is down). A concurrency slot taken must be given back with
 * bt_redis_release. */
void bt_redis_admit(struct bt_redis *r, const char *id, const struct bt_redis_limits *l,
                    int64_t now, bt_redis_admit_cb cb, void *ud);
/* Adds `pusd` to key `id`'s spend of the period starting at start_s (fire and
 * forget): the second round trip of a request, when its cost is known. */
void bt_redis_charge(struct bt_redis *r, const char *id, int64_t start_s, int64_t ttl_ms,
                     int64_t pusd);
/* Gives back a concurrency slot of `id` (fire and forget). */
void bt_redis_release(struct bt_redis *r, const char *id);

#endif
