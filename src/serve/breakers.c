#include "serve/breakers.h"

#include <hiredis/hiredis.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <uv.h>

#include "core/log.h"
#include "core/str.h"
#include "route/health.h"

struct bt_breaker_sync {
    char host[256], password[256];
    int port, db;
    redisContext *c;
    uv_thread_t thread;
    atomic_bool stop;
    bool warned;
};

struct ref {
    const char *key;
    struct bt_health *h;
};

struct refs {
    struct ref *v;
    size_t n, cap;
};

static void collect(void *ud, const char *key, struct bt_health *h)
{
    struct refs *r = ud;
    if (r->n == r->cap) {
        size_t nc = r->cap ? r->cap * 2 : 64;
        struct ref *nv = realloc(r->v, nc * sizeof(*nv));
        if (!nv) return;
        r->v = nv;
        r->cap = nc;
    }
    r->v[r->n++] = (struct ref){key, h};
}

/* The Redis key of a deployment: its registry key hashed (names may hold any byte). */
static void rkey(const char *key, char *out, size_t cap)
{
    snprintf(out, cap, "baton:breaker:%016llx",
             (unsigned long long)bt_fnv1a(BT_FNV_OFFSET, key, strlen(key)));
}

static bool connect_redis(struct bt_breaker_sync *s)
{
    if (s->c) return true;
    struct timeval tv = {0, 300000};
    redisContext *c = redisConnectWithTimeout(s->host, s->port, tv);
    if (!c || c->err) {
        if (!s->warned) bt_warn("breakers: redis %s:%d does not answer; breakers stay per instance "
                                "until it does", s->host, s->port);
        s->warned = true;
        if (c) redisFree(c);
        return false;
    }
    redisSetTimeout(c, tv);
    if (s->password[0]) freeReplyObject(redisCommand(c, "AUTH %s", s->password));
    if (s->db) freeReplyObject(redisCommand(c, "SELECT %d", s->db));
    s->c = c;
    s->warned = false;
    return true;
}

static void drop(struct bt_breaker_sync *s)
{
    if (s->c) redisFree(s->c);
    s->c = NULL;
}

void bt_breaker_sync_round(struct bt_breaker_sync *s)
{
    if (!connect_redis(s)) return;
    struct refs r = {0};
    bt_health_each(collect, &r);
    uint64_t now = bt_health_now_ms();
    char k[64];
    /* publish: a breaker that opened here (or again), or closed here */
    size_t sent = 0;
    for (size_t i = 0; i < r.n; i++) {
        struct bt_health *h = r.v[i].h;
        uint64_t until = atomic_load(&h->open_until_ms), shared = atomic_load(&h->shared_until_ms);
        if (until == shared) continue;
        rkey(r.v[i].key, k, sizeof(k));
        if (until > now) {
            redisAppendCommand(s->c, "SET %s 1 PX %llu", k, (unsigned long long)(until - now));
            sent++;
        } else if (until == 0 && shared) {
            redisAppendCommand(s->c, "DEL %s", k);
            sent++;
        }
        atomic_store(&h->shared_until_ms, until);
    }
    /* take: what the other instances opened */
    for (size_t i = 0; i < r.n; i++) {
        rkey(r.v[i].key, k, sizeof(k));
        redisAppendCommand(s->c, "PTTL %s", k);
    }
    bool ok = true;
    for (size_t i = 0; i < sent && ok; i++) {
        redisReply *rep = NULL;
        ok = redisGetReply(s->c, (void **)&rep) == REDIS_OK;
        freeReplyObject(rep);
    }
    for (size_t i = 0; i < r.n && ok; i++) {
        redisReply *rep = NULL;
        ok = redisGetReply(s->c, (void **)&rep) == REDIS_OK;
        if (ok && rep->type == REDIS_REPLY_INTEGER && rep->integer > 0) {
            struct bt_health *h = r.v[i].h;
            uint64_t remote = now + (uint64_t)rep->integer;
            uint64_t until = atomic_load(&h->open_until_ms);
            /* open here too, unless it already is, to about the same time */
            if (until + 50 < remote) {
                atomic_store(&h->open_until_ms, remote);
                atomic_store(&h->shared_until_ms, remote);
            }
        }
        freeReplyObject(rep);
    }
    if (!ok) {
        bt_warn("breakers: redis %s:%d: %s", s->host, s->port, s->c->errstr);
        drop(s);
    }
    free(r.v);
}

static void run(void *arg)
{
    struct bt_breaker_sync *s = arg;
    while (!atomic_load(&s->stop)) {
        bt_breaker_sync_round(s);
        for (int i = 0; i < BT_BREAKER_SYNC_MS / 50 && !atomic_load(&s->stop); i++) uv_sleep(50);
    }
}

struct bt_breaker_sync *bt_breaker_sync_start(const char *url)
{
    struct bt_breaker_sync *s = calloc(1, sizeof(*s));
    char why[128];
    if (!s || !bt_parse_redis_url(url, s->host, sizeof(s->host), &s->port, &s->db, s->password,
                                  sizeof(s->password), why, sizeof(why))) {
        free(s);
        return NULL;
    }
    if (uv_thread_create(&s->thread, run, s)) {
        free(s);
        return NULL;
    }
    return s;
}

void bt_breaker_sync_stop(struct bt_breaker_sync *s)
{
    if (!s) return;
    atomic_store(&s->stop, true);
    uv_thread_join(&s->thread);
    drop(s);
    free(s);
}
