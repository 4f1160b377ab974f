#include "store/redis.h"

#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/adapters/libuv.h>

#include "core/log.h"
#include "core/str.h"

/* Checks the rpm counter of this minute and the concurrency counter, then
 * counts the request in both, atomically (a script runs alone in Redis).
 * KEYS[1] rpm counter, KEYS[2] concurrency counter; ARGV[1] rpm (-1 none),
 * ARGV[2] concurrency (-1 none), ARGV[3] seconds to the next minute.
 * Returns {verdict, retry_after}. A concurrency counter expires an hour after
 * its last change, so slots of an instance that died come back. */
static const char ADMIT[] =
    "local rpm = tonumber(ARGV[1]) local cc = tonumber(ARGV[2]) local budget = tonumber(ARGV[4]) "
    "if budget >= 0 then "
    "  local s = redis.call('GET', KEYS[3]) "
    "  if not s then redis.call('SET', KEYS[3], ARGV[5], 'PX', ARGV[6]) s = ARGV[5] end "
    "  local spent = math.max(tonumber(s), tonumber(ARGV[5])) "
    "  if spent >= budget then return {3, 0} end end "
    "if rpm >= 0 and tonumber(redis.call('GET', KEYS[1]) or '0') >= rpm then "
    "  return {1, tonumber(ARGV[3])} end "
    "if cc >= 0 then "
    "  if tonumber(redis.call('GET', KEYS[2]) or '0') >= cc then return {2, 1} end "
    "  redis.call('INCR', KEYS[2]) redis.call('EXPIRE', KEYS[2], 3600) end "
    "if rpm >= 0 then redis.call('INCR', KEYS[1]) redis.call('EXPIRE', KEYS[1], 120) end "
    "return {0, 0}";

/* Adds a request's cost to its key's spend of the period (KEYS[1]); the counter
 * lives a day past its period. */
static const char CHARGE[] =
    "redis.call('INCRBY', KEYS[1], ARGV[1]) redis.call('PEXPIRE', KEYS[1], ARGV[2]) return 0";

/* Gives a slot back, never below 0. */
static const char RELEASE[] =
    "if tonumber(redis.call('GET', KEYS[1]) or '0') > 0 then redis.call('DECR', KEYS[1]) end "
    "return 0";

struct bt_redis {
    uv_loop_t *loop;
    redisAsyncContext *ac; /* NULL while not connected */
    char host[256];
    int port, db;
    char password[256];
    uint64_t down_until_ms; /* after a failure, no new connection before this */
};

#define ANSWER_MS 500 /* an admission not answered by then: Redis counts as down */

/* One admission in flight. Two owners: the reply callback (hiredis calls it
 * once, with NULL when the connection goes) and the timer (until closed). The
 * first of the reply and the timeout decides; the struct is freed when both
 * are done with it. */
struct pending {
    struct bt_redis *r;
    bt_redis_admit_cb cb;
    void *ud;
    uv_timer_t timer;
    bool decided, timer_closing;
    int refs;
};


static void on_disconnect(const redisAsyncContext *ac, int status)
{
    struct bt_redis *r = ac->data;
    if (r && r->ac == ac) r->ac = NULL;
    if (status != REDIS_OK && r) {
        bt_warn("redis %s:%d: connection lost (%s)", r->host, r->port, ac->errstr);
        r->down_until_ms = uv_now(r->loop) + 1000;
    }
}

static void on_connect(const redisAsyncContext *ac, int status)
{
    struct bt_redis *r = ac->data;
    if (status != REDIS_OK && r) {
        if (r->ac == ac) r->ac = NULL;
        r->down_until_ms = uv_now(r->loop) + 1000;
        bt_warn("redis %s:%d: cannot connect (%s)", r->host, r->port, ac->errstr);
    }
}

/* The connection, made now when there is none (and the last failure is a
 * second old); NULL when down. Commands sent before the connection is up are
 * queued by hiredis. */
static redisAsyncContext *conn(struct bt_redis *r)
{
    if (r->ac) return r->ac;
    if (uv_now(r->loop) < r->down_until_ms) return NULL;
    redisAsyncContext *ac = redisAsyncConnect(r->host, r->port);
    if (!ac || ac->err) {
        if (ac) redisAsyncFree(ac);
        r->down_until_ms = uv_now(r->loop) + 1000;
        return NULL;
    }
    ac->data = r;
    if (redisLibuvAttach(ac, r->loop) != REDIS_OK) {
        redisAsyncFree(ac);
        return NULL;
    }
    redisAsyncSetConnectCallback(ac, on_connect);
    redisAsyncSetDisconnectCallback(ac, on_disconnect);
    r->ac = ac;
    if (r->password[0]) redisAsyncCommand(ac, NULL, NULL, "AUTH %s", r->password);
    if (r->db) redisAsyncCommand(ac, NULL, NULL, "SELECT %d", r->db);
    return ac;
}

struct bt_redis *bt_redis_new(uv_loop_t *loop, const char *url)
{
    struct bt_redis *r = calloc(1, sizeof(*r));
    if (!r) return NULL;
    char why[128];
    if (!bt_parse_redis_url(url, r->host, sizeof(r->host), &r->port, &r->db, r->password,
                            sizeof(r->password), why, sizeof(why))) {
        free(r);
        return NULL;
    }
    r->loop = loop;
    return r;
}

void bt_redis_free(struct bt_redis *r)
{
    if (!r) return;
    if (r->ac) {
        redisAsyncContext *ac = r->ac;
        r->ac = NULL;
        ac->data = NULL;
        redisAsyncFree(ac); /* calls pending callbacks with a NULL reply */
    }
    free(r);
}

static void pending_unref(struct pending *p)
{
    if (--p->refs == 0) free(p);
}

static void on_timer_closed(uv_handle_t *h)
{
    pending_unref(h->data);
}

static void close_timer(struct pending *p)
{
    if (p->timer_closing) return;
    p->timer_closing = true;
    uv_timer_stop(&p->timer);
    uv_close((uv_handle_t *)&p->timer, on_timer_closed);
}

/* No answer in time: the request goes on without Redis, and the connection is
 * dropped (hiredis's libuv adapter does not report a refused connection, so a
 * dead server shows only as silence); a new one is tried a second later. */
static void on_timeout(uv_timer_t *t)
{
    struct pending *p = t->data;
    struct bt_redis *r = p->r;
    close_timer(p);
    if (!p->decided) {
        p->decided = true;
        p->cb(p->ud, BT_REDIS_DOWN, 1);
    }
    if (r && r->ac) {
        bt_warn("redis %s:%d: no answer within %d ms", r->host, r->port, ANSWER_MS);
        redisAsyncContext *ac = r->ac;
        r->ac = NULL;
        r->down_until_ms = uv_now(r->loop) + 1000;
        ac->data = NULL;
        redisAsyncFree(ac); /* calls every pending reply callback with NULL */
    }
}

static void on_admit(redisAsyncContext *ac, void *reply, void *privdata)
{
    (void)ac;
    struct pending *p = privdata;
    if (p->decided) { /* timed out already */
        pending_unref(p);
        return;
    }
    p->decided = true;
    close_timer(p);
    redisReply *rep = reply;
    enum bt_redis_verdict v = BT_REDIS_DOWN;
    int64_t retry = 1;
    if (rep && rep->type == REDIS_REPLY_ARRAY && rep->elements == 2 &&
        rep->element[0]->type == REDIS_REPLY_INTEGER && rep->element[1]->type == REDIS_REPLY_INTEGER) {
        long long x = rep->element[0]->integer;
        v = x == 0 ? BT_REDIS_OK : x == 1 ? BT_REDIS_RPM : x == 2 ? BT_REDIS_CONCURRENCY
                                                                  : BT_REDIS_BUDGET;
        retry = rep->element[1]->integer;
    } else if (rep && rep->type == REDIS_REPLY_ERROR) {
        bt_warn("redis: the admit script failed: %s", rep->str);
    }
    p->cb(p->ud, v, retry);
    pending_unref(p);
}

/* The spend counter of key `id` for the period starting at `start_s`. */
static void spend_key(char *out, size_t cap, const char *id, int64_t start_s)
{
    snprintf(out, cap, "baton:spend:%s:%lld", id, (long long)start_s);
}

void bt_redis_charge(struct bt_redis *r, const char *id, int64_t start_s, int64_t ttl_ms,
                     int64_t pusd)
{
    redisAsyncContext *ac = pusd > 0 ? conn(r) : NULL;
    if (!ac) return;
    char k[96], a1[24], a2[24];
    spend_key(k, sizeof(k), id, start_s);
    snprintf(a1, sizeof(a1), "%lld", (long long)pusd);
    snprintf(a2, sizeof(a2), "%lld", (long long)ttl_ms);
    if (redisAsyncCommand(ac, NULL, NULL, "EVAL %s 1 %s %s %s", CHARGE, k, a1, a2) != REDIS_OK)
        return;
    /* written to Redis now, before the caller writes the response's last bytes:
     * a client's next request, to any instance, is admitted after this charge */
    if (ac->c.flags & REDIS_CONNECTED) redisAsyncHandleWrite(ac);
}

void bt_redis_admit(struct bt_redis *r, const char *id, const struct bt_redis_limits *l,
                    int64_t now, bt_redis_admit_cb cb, void *ud)
{
    redisAsyncContext *ac = conn(r);
    struct pending *p = ac ? malloc(sizeof(*p)) : NULL;
    if (!p) {
        cb(ud, BT_REDIS_DOWN, 1);
        return;
    }
    *p = (struct pending){.r = r, .cb = cb, .ud = ud, .refs = 2};
    uv_timer_init(r->loop, &p->timer);
    p->timer.data = p;
    uv_timer_start(&p->timer, on_timeout, ANSWER_MS, 0);
    char krpm[96], kcc[96], ksp[96], a[6][40];
    snprintf(krpm, sizeof(krpm), "baton:rpm:%s:%lld", id, (long long)(now / 60));
    snprintf(kcc, sizeof(kcc), "baton:cc:%s", id);
    spend_key(ksp, sizeof(ksp), id, l->period_start_s);
    snprintf(a[0], sizeof(a[0]), "%lld", (long long)l->rpm);
    snprintf(a[1], sizeof(a[1]), "%lld", (long long)l->concurrency);
    snprintf(a[2], sizeof(a[2]), "%lld", (long long)(60 - now % 60));
    snprintf(a[3], sizeof(a[3]), "%lld", (long long)l->budget_pusd);
    snprintf(a[4], sizeof(a[4]), "%lld", (long long)l->spent_pusd);
    snprintf(a[5], sizeof(a[5]), "%lld", (long long)l->spend_ttl_ms);
    if (redisAsyncCommand(ac, on_admit, p, "EVAL %s 3 %s %s %s %s %s %s %s %s %s", ADMIT, krpm,
                          kcc, ksp, a[0], a[1], a[2], a[3], a[4], a[5]) != REDIS_OK) {
        p->decided = true;
        pending_unref(p); /* no reply will come; the timer's close frees it */
        close_timer(p);
        cb(ud, BT_REDIS_DOWN, 1);
    }
}

void bt_redis_release(struct bt_redis *r, const char *id)
{
    redisAsyncContext *ac = conn(r);
    if (!ac) return;
    char kcc[96];
    snprintf(kcc, sizeof(kcc), "baton:cc:%s", id);
    redisAsyncCommand(ac, NULL, NULL, "EVAL %s 1 %s", RELEASE, kcc);
}
