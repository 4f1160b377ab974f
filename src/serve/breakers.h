/* Breakers shared by every instance through Redis (store.redis): a deployment
 * whose breaker opens on one instance is skipped by the others too, for the same
 * cooldown. A thread publishes each breaker that opened here (a key with the
 * cooldown's time left as its expiry) and takes the ones other instances opened,
 * every BT_BREAKER_SYNC_MS; the request path is not involved (it reads the same
 * atomics as without Redis). docs/routing.md. */
#ifndef BT_SERVE_BREAKERS_H
#define BT_SERVE_BREAKERS_H

#include "core/err.h"

#define BT_BREAKER_SYNC_MS 200

struct bt_breaker_sync;

/* Starts the thread for the Redis at `url` (redis://...). NULL when memory ran
 * out or the URL is malformed; a Redis that does not answer is retried each round. */
struct bt_breaker_sync *bt_breaker_sync_start(const char *url);
/* Stops and frees it (NULL: no-op). */
void bt_breaker_sync_stop(struct bt_breaker_sync *s);

/* One round now, on the caller's thread (for tests): publish, then take. */
void bt_breaker_sync_round(struct bt_breaker_sync *s);

#endif
