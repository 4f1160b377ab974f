/* Limits shared by every instance through Redis (store.redis): a key's, its
 * team's and its user's requests per minute, tokens per minute, concurrent
 * requests and budgets are counted in Redis, so N instances allow each limit
 * once, not N times. One asynchronous connection per worker, driven by the
 * worker's own loop (hiredis's libuv adapter): admitting a request is one round
 * trip (one Lua script that checks every level and counts, atomically), charging
 * its cost and correcting its tokens one more, giving its concurrency slots back
 * one more; nothing blocks a worker. When Redis cannot be reached,
 * store.redis_unavailable decides: open (the per-process limits apply instead)
 * or closed (503). */
#ifndef BT_STORE_REDIS_H
#define BT_STORE_REDIS_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "core/err.h"

struct bt_redis;

/* A connection for one loop (made lazily, remade after a failure); an
 * admission not answered within answer_ms counts as Redis down. NULL only when
 * memory ran out or the URL is malformed. */
struct bt_redis *bt_redis_new(uv_loop_t *loop, const char *url, uint64_t answer_ms);
/* Closes the connection; pending callbacks are called with BT_REDIS_DOWN. */
void bt_redis_free(struct bt_redis *r);

enum bt_redis_verdict {
    BT_REDIS_OK = 0,          /* admitted and counted */
    BT_REDIS_RPM = 1,         /* over the requests per minute */
    BT_REDIS_CONCURRENCY = 2, /* as many in flight as allowed */
    BT_REDIS_BUDGET = 3,      /* the period's spend reached the budget */
    BT_REDIS_TPM = 4,         /* the minute's tokens and this request's would pass tpm */
    BT_REDIS_DOWN = -1,       /* Redis did not answer (or answered with an error) */
};

/* The limit a refusal names: "rpm", "tpm", "concurrency" or "budget"; NULL for
 * BT_REDIS_OK and BT_REDIS_DOWN. */
const char *bt_redis_verdict_limit(enum bt_redis_verdict v);

/* The levels one request is judged at: its key, its team, its user. */
#define BT_REDIS_LEVELS 4 /* its key, its team, its user, and the model it asked for */
#define BT_REDIS_SCOPE_MAX 272 /* "team:" + a name (store.h BT_KEY_MAX_NAME) */

/* What one level (a key, a team, a user) is checked against and charged to. */
struct bt_redis_level {
    char scope[BT_REDIS_SCOPE_MAX]; /* names its counters: a key's id, "team:NAME", "user:NAME" */
    int64_t rpm, concurrency, tpm; /* -1: none */
    int64_t tokens;                /* this request's estimate, taken from tpm */
    int64_t budget_pusd;           /* the budget in pico-USD, -1: none */
    int64_t spent_pusd;            /* what this instance knows was spent (seeds a counter Redis
                                      does not have, e.g. after a restart of Redis) */
    int64_t period_start_s;        /* the budget period's start, unix seconds (names the counter) */
    int64_t spend_ttl_ms;          /* how long the counter lives: past the period's end */
};

/* `level`: which of the levels given to bt_redis_admit refused (0 when none). */
typedef void (*bt_redis_admit_cb)(void *ud, enum bt_redis_verdict v, int64_t retry_after,
                                  int level);

/* Admits one request at unix time `now` against the budgets, then the rpm, tpm
 * and concurrency, of `n` levels, in one round trip (one script: checked and
 * counted atomically, nothing counted at any level when one refuses); `cb` is
 * called once, on the loop's thread (possibly before this returns when the
 * connection is down). Concurrency slots taken must be given back with
 * bt_redis_release. */
void bt_redis_admit(struct bt_redis *r, const struct bt_redis_level *lv, int n, int64_t now,
                    bt_redis_admit_cb cb, void *ud);
/* The second round trip of a request, when its cost and usage are known (fire
 * and forget, written at once): adds `pusd` to the spend of each level with a
 * budget, corrects the tokens of minute `minute` (unix minutes) of each level
 * with a tpm from its estimate (lv[i].tokens) to `used_tokens` (-1: no
 * correction), and with `release` gives back the concurrency slots. */
void bt_redis_charge(struct bt_redis *r, const struct bt_redis_level *lv, int n, int64_t minute,
                     int64_t pusd, int64_t used_tokens, bool release);
/* Gives back the concurrency slots of the levels of `lv` with a concurrency
 * limit (fire and forget, written at once). */
void bt_redis_release(struct bt_redis *r, const struct bt_redis_level *lv, int n);

#endif
