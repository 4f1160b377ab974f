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
    char *key;
    struct bt_health *h;
};

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static struct slot *slots;     /* BT_HEALTH_MAX * 2 slots */
static size_t used;
static bool warned_full;

static uint64_t hash(const char *s)
{
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
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

void bt_health_end(struct bt_health *h, const struct bt_breaker_cfg *b, bool counted, bool failed,
                   uint64_t head_us, uint64_t now_ms)
{
    if (!h) return;
    atomic_fetch_sub_explicit(&h->inflight, 1, memory_order_relaxed);
    if (!counted) {
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
