#include "store/redis.h"

#include <hiredis/async.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <hiredis/hiredis.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/adapters/libuv.h>

#include "core/log.h"
#include "core/str.h"

/* Judges one request at up to three levels (its key, team, user), then counts
 * it at all of them, atomically (a script runs alone in Redis): first every
 * budget, then at each level its rpm, tpm and concurrency; nothing is counted
 * when one refuses. KEYS: four per level (rpm counter of this minute,
 * concurrency counter, tokens of this minute, spend of the budget's period).
 * ARGV[1]: seconds to the next minute; then seven per level: rpm, concurrency,
 * tpm (-1 none), the request's tokens, budget (pico-USD, -1 none), the spend
 * this instance knows (seeds a missing counter) and the spend counter's life
 * (ms). Returns {verdict, retry_after, level}. Minute counters expire after two
 * minutes; a concurrency counter an hour after its last change, so slots of an
 * instance that died come back. */
static const char ADMIT[] =
    "local n = #KEYS / 4 local left = tonumber(ARGV[1]) "
    "for i = 0, n - 1 do local a = 2 + i * 7 local budget = tonumber(ARGV[a + 4]) "
    "  if budget >= 0 then local k = KEYS[i * 4 + 4] local s = redis.call('GET', k) "
    "    if not s then redis.call('SET', k, ARGV[a + 5], 'PX', ARGV[a + 6]) s = ARGV[a + 5] end "
    "    if math.max(tonumber(s), tonumber(ARGV[a + 5])) >= budget then return {3, 0, i} end "
    "  end end "
    "for i = 0, n - 1 do local a = 2 + i * 7 local b = i * 4 "
    "  local rpm = tonumber(ARGV[a]) local cc = tonumber(ARGV[a + 1]) "
    "  local tpm = tonumber(ARGV[a + 2]) local tok = tonumber(ARGV[a + 3]) "
    "  if rpm >= 0 and tonumber(redis.call('GET', KEYS[b + 1]) or '0') >= rpm then "
    "    return {1, left, i} end "
    "  if tpm >= 0 and tonumber(redis.call('GET', KEYS[b + 3]) or '0') + tok > tpm then "
    "    return {4, left, i} end "
    "  if cc >= 0 and tonumber(redis.call('GET', KEYS[b + 2]) or '0') >= cc then "
    "    return {2, 1, i} end "
    "end "
    "for i = 0, n - 1 do local a = 2 + i * 7 local b = i * 4 "
    "  if tonumber(ARGV[a]) >= 0 then redis.call('INCR', KEYS[b + 1]) "
    "    redis.call('EXPIRE', KEYS[b + 1], 120) end "
    "  if tonumber(ARGV[a + 1]) >= 0 then redis.call('INCR', KEYS[b + 2]) "
    "    redis.call('EXPIRE', KEYS[b + 2], 3600) end "
    "  if tonumber(ARGV[a + 2]) >= 0 then redis.call('INCRBY', KEYS[b + 3], ARGV[a + 3]) "
    "    redis.call('EXPIRE', KEYS[b + 3], 120) end "
    "end "
    "return {0, 0, 0}";

/* The end of a request, at each level, in one script: KEYS three per level
 * (the spend counter, the tokens of the minute, the concurrency counter); ARGV
 * four per level: pico-USD to add to the spend (0: none), the spend counter's
 * life (ms), tokens to add (0: none; only to a counter that still exists, a
 * later minute started afresh), and 1 to give back a concurrency slot (never
 * below 0). */
static const char SETTLE[] =
    "for i = 0, #KEYS / 3 - 1 do local a = i * 4 local b = i * 3 "
    "  if tonumber(ARGV[a + 1]) > 0 then redis.call('INCRBY', KEYS[b + 1], ARGV[a + 1]) "
    "    redis.call('PEXPIRE', KEYS[b + 1], ARGV[a + 2]) end "
    "  if tonumber(ARGV[a + 3]) ~= 0 and redis.call('EXISTS', KEYS[b + 2]) == 1 then "
    "    redis.call('INCRBY', KEYS[b + 2], ARGV[a + 3]) end "
    "  if ARGV[a + 4] == '1' and tonumber(redis.call('GET', KEYS[b + 3]) or '0') > 0 then "
    "    redis.call('DECR', KEYS[b + 3]) end "
    "end return 0";

struct bt_redis {
    uv_loop_t *loop;
    redisAsyncContext *ac; /* NULL while not connected */
    char host[256];
    int port, db;
    char password[256];
    uint64_t down_until_ms; /* after a failure, no new connection before this */
    uint64_t answer_ms;     /* an admission not answered by then: Redis counts as down */
};

/* A script and its SHA-1 (hex), which EVALSHA names it by. */
struct script {
    const char *text;
    char sha[41];
};
static struct script admit_script = {ADMIT, ""}, settle_script = {SETTLE, ""};
static pthread_once_t scripts_once = PTHREAD_ONCE_INIT;

static void hash_scripts(void)
{
    struct script *all[2] = {&admit_script, &settle_script};
    for (int i = 0; i < 2; i++) {
        unsigned char md[EVP_MAX_MD_SIZE];
        unsigned int n = 0;
        if (!EVP_Digest(all[i]->text, strlen(all[i]->text), md, &n, EVP_sha1(), NULL) || n != 20)
            continue; /* no hash: EVALSHA of "" fails with NOSCRIPT, and EVAL follows */
        for (unsigned int j = 0; j < n; j++) snprintf(all[i]->sha + 2 * j, 3, "%02x", md[j]);
    }
}

#define KEY_MAX (BT_REDIS_SCOPE_MAX + 40)
#define ARG_MAX 24

/* A command's arguments, built in place: argv points into the arrays. */
struct args {
    const struct script *sc;         /* the script called */
    const char *argv[2 + BT_REDIS_LEVELS * 11 + 2];
    size_t n;
    char keys[BT_REDIS_LEVELS * 4][KEY_MAX];
    char nums[BT_REDIS_LEVELS * 7 + 2][ARG_MAX];
    char nk[ARG_MAX];                /* the number of keys */
    size_t nkeys, nnums;
};

static char *key_slot(struct args *a) { return a->keys[a->nkeys++]; }

static void num(struct args *a, int64_t x)
{
    char *s = a->nums[a->nnums++];
    snprintf(s, ARG_MAX, "%lld", (long long)x);
    a->argv[a->n++] = s;
}

/* Sends a->argv as one command; false when it could not be queued. */
static bool send_args(redisAsyncContext *ac, struct args *a, redisCallbackFn *fn, void *pd)
{
    size_t lens[sizeof(a->argv) / sizeof(a->argv[0])];
    for (size_t i = 0; i < a->n; i++) lens[i] = strlen(a->argv[i]);
    return redisAsyncCommandArgv(ac, fn, pd, (int)a->n, a->argv, lens) == REDIS_OK;
}

/* Starts a script call in a: EVALSHA with the script's SHA-1 (the connection
 * loaded it when it was made), so a request sends 40 bytes, not the script. */
static void script_call(struct args *a, const struct script *sc)
{
    a->sc = sc;
    a->argv[a->n++] = "EVALSHA";
    a->argv[a->n++] = sc->sha;
}

/* Redis does not know the script (flushed, or the load failed): true when the
 * call went again as EVAL with the script's text, on the same callback. */
static bool resent_whole(redisAsyncContext *ac, const redisReply *rep, struct args *a,
                         redisCallbackFn *fn, void *pd)
{
    if (!ac || !rep || rep->type != REDIS_REPLY_ERROR || !a || !a->sc || a->n < 2 ||
        strncmp(rep->str, "NOSCRIPT", 8) != 0 || strcmp(a->argv[0], "EVAL") == 0)
        return false;
    a->argv[0] = "EVAL";
    a->argv[1] = a->sc->text;
    return send_args(ac, a, fn, pd);
}

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
    struct args *a;              /* the call's arguments (sent again whole on NOSCRIPT) */
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
    /* before any call on this connection: its scripts, named by SHA-1 after */
    redisAsyncCommand(ac, NULL, NULL, "SCRIPT LOAD %s", ADMIT);
    redisAsyncCommand(ac, NULL, NULL, "SCRIPT LOAD %s", SETTLE);
    return ac;
}

struct bt_redis *bt_redis_new(uv_loop_t *loop, const char *url, uint64_t answer_ms)
{
    pthread_once(&scripts_once, hash_scripts);
    struct bt_redis *r = calloc(1, sizeof(*r));
    if (!r) return NULL;
    char why[128];
    if (!bt_parse_redis_url(url, r->host, sizeof(r->host), &r->port, &r->db, r->password,
                            sizeof(r->password), why, sizeof(why))) {
        free(r);
        return NULL;
    }
    r->loop = loop;
    r->answer_ms = answer_ms ? answer_ms : 500;
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
    if (--p->refs == 0) {
        free(p->a);
        free(p);
    }
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
        p->cb(p->ud, BT_REDIS_DOWN, 1, 0);
    }
    if (r && r->ac) {
        bt_warn("redis %s:%d: no answer within %llu ms", r->host, r->port,
                (unsigned long long)r->answer_ms);
        redisAsyncContext *ac = r->ac;
        r->ac = NULL;
        r->down_until_ms = uv_now(r->loop) + 1000;
        ac->data = NULL;
        redisAsyncFree(ac); /* calls every pending reply callback with NULL */
    }
}

static void on_admit(redisAsyncContext *ac, void *reply, void *privdata)
{
    struct pending *p = privdata;
    if (!p->decided && resent_whole(ac, reply, p->a, on_admit, p)) return;
    if (p->decided) { /* timed out already */
        pending_unref(p);
        return;
    }
    p->decided = true;
    close_timer(p);
    redisReply *rep = reply;
    enum bt_redis_verdict v = BT_REDIS_DOWN;
    int64_t retry = 1;
    int level = 0;
    if (rep && rep->type == REDIS_REPLY_ARRAY && rep->elements == 3 &&
        rep->element[0]->type == REDIS_REPLY_INTEGER &&
        rep->element[1]->type == REDIS_REPLY_INTEGER &&
        rep->element[2]->type == REDIS_REPLY_INTEGER && rep->element[0]->integer >= 0 &&
        rep->element[0]->integer <= BT_REDIS_TPM && rep->element[2]->integer >= 0 &&
        rep->element[2]->integer < BT_REDIS_LEVELS) {
        v = (enum bt_redis_verdict)rep->element[0]->integer;
        retry = rep->element[1]->integer;
        level = (int)rep->element[2]->integer;
    } else if (rep && rep->type == REDIS_REPLY_ERROR) {
        bt_warn("redis: the admit script failed: %s", rep->str);
    }
    p->cb(p->ud, v, retry, level);
    pending_unref(p);
}

const char *bt_redis_verdict_limit(enum bt_redis_verdict v)
{
    switch (v) {
    case BT_REDIS_RPM: return "rpm";
    case BT_REDIS_TPM: return "tpm";
    case BT_REDIS_CONCURRENCY: return "concurrency";
    case BT_REDIS_BUDGET: return "budget";
    default: return NULL;
    }
}

/* The counters of one level. */
static void spend_key(char *out, size_t cap, const struct bt_redis_level *l)
{
    snprintf(out, cap, "baton:spend:%s:%lld", l->scope, (long long)l->period_start_s);
}

static void minute_key(char *out, size_t cap, const char *what, const struct bt_redis_level *l,
                       int64_t minute)
{
    snprintf(out, cap, "baton:%s:%s:%lld", what, l->scope, (long long)minute);
}

static void cc_key(char *out, size_t cap, const struct bt_redis_level *l)
{
    snprintf(out, cap, "baton:cc:%s", l->scope);
}

/* Whether settling has anything for level l. */
static bool settles(const struct bt_redis_level *l, int64_t pusd, int64_t used_tokens,
                    bool release)
{
    return (l->budget_pusd >= 0 && pusd > 0) ||
           (l->tpm >= 0 && used_tokens >= 0 && used_tokens != l->tokens) ||
           (release && l->concurrency >= 0);
}

/* A settle's answer: its arguments go (or go again whole, when Redis did not
 * know the script: a charge is never lost to a flushed script cache). */
static void on_settled(redisAsyncContext *ac, void *reply, void *privdata)
{
    if (resent_whole(ac, reply, privdata, on_settled, privdata)) return;
    const redisReply *rep = reply;
    if (rep && rep->type == REDIS_REPLY_ERROR) bt_warn("redis: the settle script failed: %s", rep->str);
    free(privdata);
}

/* One SETTLE: what bt_redis_charge and bt_redis_release do, written at once. */
static void settle(struct bt_redis *r, const struct bt_redis_level *lv, int n, int64_t minute,
                   int64_t pusd, int64_t used_tokens, bool release)
{
    int used = 0;
    for (int i = 0; i < n; i++) used += settles(&lv[i], pusd, used_tokens, release);
    redisAsyncContext *ac = used ? conn(r) : NULL;
    struct args *a = ac ? calloc(1, sizeof(*a)) : NULL;
    if (!a) return;
    snprintf(a->nk, sizeof(a->nk), "%d", used * 3);
    script_call(a, &settle_script);
    a->argv[a->n++] = a->nk;
    for (int i = 0; i < n; i++) {
        if (!settles(&lv[i], pusd, used_tokens, release)) continue;
        char *k = key_slot(a);
        spend_key(k, KEY_MAX, &lv[i]);
        a->argv[a->n++] = k;
        minute_key(k = key_slot(a), KEY_MAX, "tpm", &lv[i], minute);
        a->argv[a->n++] = k;
        cc_key(k = key_slot(a), KEY_MAX, &lv[i]);
        a->argv[a->n++] = k;
    }
    for (int i = 0; i < n; i++) {
        if (!settles(&lv[i], pusd, used_tokens, release)) continue;
        num(a, lv[i].budget_pusd >= 0 ? pusd : 0);
        num(a, lv[i].spend_ttl_ms > 0 ? lv[i].spend_ttl_ms : 86400000);
        num(a, lv[i].tpm >= 0 && used_tokens >= 0 ? used_tokens - lv[i].tokens : 0);
        num(a, release && lv[i].concurrency >= 0);
    }
    if (!send_args(ac, a, on_settled, a)) {
        free(a);
        return;
    }
    /* written to Redis now, before the caller writes the response's last bytes:
     * a client's next request, to any instance, is admitted after it */
    if (ac->c.flags & REDIS_CONNECTED) redisAsyncHandleWrite(ac);
}

void bt_redis_charge(struct bt_redis *r, const struct bt_redis_level *lv, int n, int64_t minute,
                     int64_t pusd, int64_t used_tokens, bool release)
{
    settle(r, lv, n, minute, pusd, used_tokens, release);
}

void bt_redis_admit(struct bt_redis *r, const struct bt_redis_level *lv, int n, int64_t now,
                    bt_redis_admit_cb cb, void *ud)
{
    redisAsyncContext *ac = n > 0 && n <= BT_REDIS_LEVELS ? conn(r) : NULL;
    struct pending *p = ac ? malloc(sizeof(*p)) : NULL;
    struct args *a = p ? calloc(1, sizeof(*a)) : NULL;
    if (!a) {
        free(p);
        cb(ud, BT_REDIS_DOWN, 1, 0);
        return;
    }
    *p = (struct pending){.r = r, .cb = cb, .ud = ud, .refs = 2};
    uv_timer_init(r->loop, &p->timer);
    p->timer.data = p;
    uv_timer_start(&p->timer, on_timeout, r->answer_ms, 0);
    snprintf(a->nk, sizeof(a->nk), "%d", n * 4);
    script_call(a, &admit_script);
    a->argv[a->n++] = a->nk;
    p->a = a;
    for (int i = 0; i < n; i++) {
        char *k = key_slot(a);
        minute_key(k, KEY_MAX, "rpm", &lv[i], now / 60);
        a->argv[a->n++] = k;
        cc_key(k = key_slot(a), KEY_MAX, &lv[i]);
        a->argv[a->n++] = k;
        minute_key(k = key_slot(a), KEY_MAX, "tpm", &lv[i], now / 60);
        a->argv[a->n++] = k;
        spend_key(k = key_slot(a), KEY_MAX, &lv[i]);
        a->argv[a->n++] = k;
    }
    num(a, 60 - now % 60);
    for (int i = 0; i < n; i++) {
        num(a, lv[i].rpm);
        num(a, lv[i].concurrency);
        num(a, lv[i].tpm);
        num(a, lv[i].tokens > 0 ? lv[i].tokens : 0);
        num(a, lv[i].budget_pusd);
        num(a, lv[i].spent_pusd);
        num(a, lv[i].spend_ttl_ms > 0 ? lv[i].spend_ttl_ms : 86400000);
    }
    if (!send_args(ac, a, on_admit, p)) {
        p->decided = true;
        pending_unref(p); /* no reply will come; the timer's close frees it */
        close_timer(p);
        cb(ud, BT_REDIS_DOWN, 1, 0);
    }
}

void bt_redis_release(struct bt_redis *r, const struct bt_redis_level *lv, int n)
{
    settle(r, lv, n, 0, 0, -1, true);
}
