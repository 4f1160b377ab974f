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
    BT_REDIS_DOWN = -1,       /* Redis did not answer (or answered with an error) */
};

typedef void (*bt_redis_admit_cb)(void *ud, enum bt_redis_verdict v, int64_t retry_after);

/* Admits one request of the subject `id` (a key id) at unix time `now` against
 * rpm and concurrency (-1: none), in one round trip; `cb` is called once, on the
 * loop's thread (possibly before this returns when the connection is down). A
 * concurrency slot taken must be given back with bt_redis_release. */
void bt_redis_admit(struct bt_redis *r, const char *id, int64_t rpm, int64_t concurrency,
                    int64_t now, bt_redis_admit_cb cb, void *ud);
/* Gives back a concurrency slot of `id` (fire and forget). */
void bt_redis_release(struct bt_redis *r, const char *id);

#endif
