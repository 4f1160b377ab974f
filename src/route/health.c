#include "route/health.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "core/time.h"

/* The registry: entries keyed by "provider\x1fbase_url\x1fmodel", open addressing.
 * Written only under `lock` (attach), read there too; workers never look it up. */
struct slot {
    char *key;             /* provider \x1f base URL \x1f model */
    struct bt_health *h;
};

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static struct slot *slots;     /* BT_HEALTH_MAX * 2 slots */
static size_t used;
static bool warned_full;

static uint64_t hash(const char *s)
{
    return bt_fnv1a(BT_FNV_OFFSET, s, strlen(s));
}

static struct bt_health *lookup(const char *key)
{
    size_t cap = (size_t)BT_HEALTH_MAX * 2;
    if (!slots && !(slots = calloc(cap, sizeof(*slots)))) return NULL;
    for (size_t i = hash(key) % cap;; i = (i + 1) % cap) {
        if (!slots[i].key) {
            if (used >= BT_HEALTH_MAX) {
                if (!warned_full) bt_log(BT_LOG_WARN, "deployment health: over %d deployments, the rest are not tracked", BT_HEALTH_MAX);
                warned_full = true;
                return NULL;
            }
            struct bt_health *h = calloc(1, sizeof(*h));
            char *k = strdup(key);
            if (!h || !k) {
                free(h);
                free(k);
                return NULL;
            }
            slots[i] = (struct slot){k, h};
            used++;
            return h;
        }
        if (strcmp(slots[i].key, key) == 0) return slots[i].h;
    }
}

void bt_health_attach(struct bt_config *cfg)
{
    pthread_mutex_lock(&lock);
    for (size_t m = 0; m < cfg->nmodels; m++) {
        for (size_t d = 0; d < cfg->models[m].ndeployments; d++) {
            struct bt_deployment *dp = &cfg->models[m].deployments[d];
            if (!dp->provider || !dp->model) continue;
            const char *url = dp->provider->base_url ? dp->provider->base_url : "";
            size_t n = strlen(dp->provider->name) + strlen(url) + strlen(dp->model) + 3;
            char *key = malloc(n);
            if (!key) continue;
            snprintf(key, n, "%s\x1f%s\x1f%s", dp->provider->name, url, dp->model);
            dp->health = lookup(key);
            free(key);
        }
        /* a model's own entry, for its limits: "\x1e" marks it as no deployment */
        struct bt_model *md = &cfg->models[m];
        size_t n = strlen(md->name) + 3;
        char *key = malloc(n);
        if (!key) continue;
        snprintf(key, n, "\x1e\x1f%s", md->name);
        md->health = lookup(key);
        free(key);
    }
    pthread_mutex_unlock(&lock);
}

uint64_t bt_health_now_ms(void)
{
    return bt_now_ns() / 1000000;
}

bool bt_health_available(const struct bt_health *h, const struct bt_breaker_cfg *b, uint64_t now_ms)
{
    if (!h || !b->failures) return true;
    uint64_t until = atomic_load_explicit(&h->open_until_ms, memory_order_relaxed);
    if (!until) return true;
    if (now_ms < until) return false;
    return !atomic_load_explicit(&h->probing, memory_order_relaxed); /* half open: one probe */
}

void bt_health_begin(struct bt_health *h)
{
    if (!h) return;
    atomic_fetch_add_explicit(&h->inflight, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&h->attempts, 1, memory_order_relaxed);
    if (atomic_load_explicit(&h->open_until_ms, memory_order_relaxed))
        atomic_store_explicit(&h->probing, true, memory_order_relaxed);
}

void bt_health_end(struct bt_health *h, const struct bt_breaker_cfg *b, bool counted,
                   enum bt_outcome cls, uint64_t head_us, uint64_t now_ms)
{
    if (!h) return;
    atomic_fetch_sub_explicit(&h->inflight, 1, memory_order_relaxed);
    if (!counted) {
        atomic_store_explicit(&h->probing, false, memory_order_relaxed);
        return;
    }
    if ((unsigned)cls < BT_OUTCOME_COUNT)
        atomic_fetch_add_explicit(&h->ended[cls], 1, memory_order_relaxed);
    bool failed = cls == BT_OUTCOME_RATE_LIMIT || cls == BT_OUTCOME_SERVER_ERROR ||
                  cls == BT_OUTCOME_TIMEOUT || cls == BT_OUTCOME_CONNECTION ||
                  cls == BT_OUTCOME_AUTH;
    if (!failed && cls != BT_OUTCOME_OK) { /* the client's mistake: the deployment worked */
        atomic_store_explicit(&h->probing, false, memory_order_relaxed);
        return;
    }
    if (!failed) {
        if (head_us) {
            /* EWMA with weight 1/8; the first sample is taken as it is. A lost
             * update under a race only drops one sample. */
            uint64_t old = atomic_load_explicit(&h->ewma_us, memory_order_relaxed);
            uint64_t v = old ? old - old / 8 + head_us / 8 : head_us;
            atomic_store_explicit(&h->ewma_us, v ? v : 1, memory_order_relaxed);
        }
        atomic_store_explicit(&h->failures, 0, memory_order_relaxed);
        atomic_store_explicit(&h->open_until_ms, 0, memory_order_relaxed);
        atomic_store_explicit(&h->probing, false, memory_order_relaxed);
        return;
    }
    unsigned f = atomic_fetch_add_explicit(&h->failures, 1, memory_order_relaxed) + 1;
    bool was_probe = atomic_exchange_explicit(&h->probing, false, memory_order_relaxed);
    if (b->failures && (f >= b->failures || was_probe))
        atomic_store_explicit(&h->open_until_ms, now_ms + b->cooldown_ms, memory_order_relaxed);
}

void bt_health_hedge(struct bt_health *h, enum bt_hedge_count what)
{
    if (h && (unsigned)what < 3) atomic_fetch_add_explicit(&h->hedge[what], 1, memory_order_relaxed);
}

/* A Prometheus label value: backslash, quote and newline escaped. */
void bt_health_label(struct bt_buf *out, const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        char ch = s[i];
        if (ch == '\\' || ch == '"') bt_buf_append(out, "\\", 1);
        if (ch == '\n') {
            bt_buf_append(out, "\\n", 2);
            continue;
        }
        bt_buf_append(out, &ch, 1);
    }
}

/* `{deployment="provider/model"` for a slot's key (no closing brace): the same
 * value as baton_requests_total's deployment label. */
static void labels(struct bt_buf *out, const char *key)
{
    const char *a = strchr(key, '\x1f');
    const char *b = a ? strchr(a + 1, '\x1f') : NULL;
    bt_buf_append_c(out, "{deployment=\"");
    bt_health_label(out, key, a ? (size_t)(a - key) : strlen(key));
    bt_buf_append_c(out, "/");
    if (b) bt_health_label(out, b + 1, strlen(b + 1));
    bt_buf_append_c(out, "\"");
}

enum bt_err bt_health_render(struct bt_buf *out)
{
    static const struct {
        const char *name, *type, *help;
    } fam[] = {
        {"baton_deployment_in_flight", "gauge", "Attempts running now, per deployment."},
        {"baton_deployment_attempts_total", "counter", "Attempts started, per deployment."},
        {"baton_deployment_attempts_ended_total", "counter",
         "Attempts ended, per deployment and outcome class (ok, rate_limit, server_error, timeout, "
         "connection, context_window, content_filter, auth, bad_request)."},
        {"baton_deployment_breaker_open", "gauge",
         "1 while the deployment's circuit breaker is open (or half open), else 0."},
        {"baton_deployment_latency_ewma_seconds", "gauge",
         "Moving average of the time to a successful response head, per deployment."},
        {"baton_deployment_hedges_total", "counter",
         "Hedge attempts started, per deployment (a model's hedge: after N ms without a "
         "response head)."},
        {"baton_deployment_hedges_won_total", "counter",
         "Hedge attempts that gave the request's answer, per deployment."},
        {"baton_deployment_hedged_out_total", "counter",
         "Attempts cancelled because the request's other attempt (or its hedge) answered "
         "first, per deployment."},
    };
    pthread_mutex_lock(&lock);
    size_t cap = (size_t)BT_HEALTH_MAX * 2;
    if (used && slots) {
        for (size_t f = 0; f < sizeof(fam) / sizeof(fam[0]); f++) {
            bt_buf_printf(out, "# HELP %s %s\n# TYPE %s %s\n", fam[f].name, fam[f].help,
                          fam[f].name, fam[f].type);
            for (size_t i = 0; i < cap; i++) {
                const struct slot *sl = &slots[i];
                if (!sl->key || sl->key[0] == '\x1e') continue; /* a model's entry */
                const struct bt_health *h = sl->h;
                if (f == 2) {
                    for (int c = 0; c < BT_OUTCOME_COUNT; c++) {
                        bt_buf_append_c(out, fam[f].name);
                        labels(out, sl->key);
                        bt_buf_printf(out, ",class=\"%s\"} %llu\n", bt_outcome_name((enum bt_outcome)c),
                                      (unsigned long long)atomic_load(&h->ended[c]));
                    }
                    continue;
                }
                bt_buf_append_c(out, fam[f].name);
                labels(out, sl->key);
                if (f == 0) bt_buf_printf(out, "} %d\n", atomic_load(&h->inflight));
                else if (f == 1) bt_buf_printf(out, "} %llu\n", (unsigned long long)atomic_load(&h->attempts));
                else if (f == 3) bt_buf_printf(out, "} %d\n", atomic_load(&h->open_until_ms) ? 1 : 0);
                else if (f == 4) bt_buf_printf(out, "} %.6f\n", (double)atomic_load(&h->ewma_us) / 1e6);
                else bt_buf_printf(out, "} %llu\n", (unsigned long long)atomic_load(&h->hedge[f - 5]));
            }
        }
    }
    pthread_mutex_unlock(&lock);
    return BT_OK;
}

void bt_health_each(void (*fn)(void *ud, const char *key, struct bt_health *h), void *ud)
{
    pthread_mutex_lock(&lock);
    size_t cap = (size_t)BT_HEALTH_MAX * 2;
    for (size_t i = 0; slots && i < cap; i++)
        if (slots[i].key && slots[i].key[0] != '\x1e') fn(ud, slots[i].key, slots[i].h);
    pthread_mutex_unlock(&lock);
}

bool bt_health_take_limits(struct bt_health *h, const struct bt_limits *lim, int64_t now,
                           int64_t tokens, struct bt_limits_taken *t, const char **which,
                           int64_t *retry_after)
{
    *t = (struct bt_limits_taken){0};
    if (!h || !lim || !(lim->rpm || lim->concurrency || lim->tpm)) return true;
    bool held = false;
    if (!bt_live_take(&h->lim, lim->rpm ? lim->rpm : -1, lim->concurrency ? lim->concurrency : -1,
                      now, &held, which, retry_after))
        return false;
    if (held) t->slot = &h->lim;
    if (lim->tpm) {
        if (!bt_live_take_tokens(&h->lim, lim->tpm, now, tokens, &t->minute, retry_after)) {
            bt_limits_give_back(t);
            *which = "tpm";
            return false;
        }
        t->tpm = &h->lim;
        t->tokens = tokens < 0 ? 0 : tokens;
    }
    return true;
}

bool bt_limits_level(const struct bt_limits *lim, int64_t tokens, struct bt_redis_level *out)
{
    if (!lim || !(lim->rpm || lim->concurrency || lim->tpm)) return false;
    *out = (struct bt_redis_level){.rpm = lim->rpm ? lim->rpm : -1,
                                   .concurrency = lim->concurrency ? lim->concurrency : -1,
                                   .tpm = lim->tpm ? lim->tpm : -1,
                                   .tokens = lim->tpm && tokens > 0 ? tokens : 0,
                                   .budget_pusd = -1};
    return true;
}

bool bt_limits_taken_shared(struct bt_limits_taken *t, struct bt_redis *redis,
                            const struct bt_redis_level *lv, int64_t minute)
{
    *t = (struct bt_limits_taken){0};
    struct bt_redis_level *copy = malloc(sizeof(*copy));
    if (!copy) {
        bt_redis_charge(redis, lv, 1, minute, 0, 0, true);
        return false;
    }
    *copy = *lv;
    *t = (struct bt_limits_taken){.redis = redis, .shared = copy, .minute = minute,
                                  .shared_slot = lv->concurrency >= 0,
                                  .shared_tokens = lv->tpm >= 0};
    return true;
}

void bt_limits_settle(struct bt_limits_taken *t, int64_t tokens_used)
{
    if (t->tpm) bt_key_correct_tokens(t->tpm, t->minute, tokens_used - t->tokens);
    t->tpm = NULL;
    if (t->shared_tokens)
        bt_redis_charge(t->redis, t->shared, 1, t->minute, 0, tokens_used, false);
    t->shared_tokens = false;
}

void bt_limits_release_slot(struct bt_limits_taken *t)
{
    if (t->slot) bt_key_release(t->slot);
    t->slot = NULL;
    if (t->shared_slot) bt_redis_release(t->redis, t->shared, 1);
    t->shared_slot = false;
}

void bt_limits_give_back(struct bt_limits_taken *t)
{
    if (t->shared_slot && t->shared_tokens) { /* both in one round trip */
        bt_redis_charge(t->redis, t->shared, 1, t->minute, 0, 0, true);
        t->shared_slot = t->shared_tokens = false;
    }
    bt_limits_release_slot(t);
    bt_limits_settle(t, 0);
    free(t->shared);
    *t = (struct bt_limits_taken){0};
}
