/* The key service: a store handle, the current key table and the thread that
 * keeps it in step with the store; and the write operations both the admin API
 * (through the service) and `baton keys` (on a bare handle) use.
 *
 * Two locks, never held together by a worker's /v1 path:
 *  - store_lock serialises use of the store handle (the refresh thread and
 *    admin operations); a worker takes it only on the admin path;
 *  - tab_lock guards the current table pointer while a reference is taken or
 *    it is swapped: a few instructions, taken by a worker only when the
 *    generation it cached is stale. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <uv.h>

#include "core/log.h"
#include "core/str.h"
#include "store/keys.h"

struct bt_keys {
    struct bt_store *store;
    uv_mutex_t store_lock;
    uv_mutex_t tab_lock;
    struct bt_keytab *tab;        /* current table (guarded by tab_lock), one ref */
    atomic_uint_fast64_t gen;     /* bumped at every swap */
    uv_thread_t thread;
    uv_mutex_t wait_lock;
    uv_cond_t wait_cond;
    bool stop;                    /* guarded by wait_lock */
    bool failing;                 /* the last refresh failed (logged once) */
    /* Live counters by key id, kept across tables (store_lock): open addressing. */
    struct live_slot {
        char id[BT_KEY_ID_LEN + 1];
        struct bt_key_live *live;
    } *lives;
    size_t nlives, caplives;
};

static struct live_slot *live_find(struct live_slot *tab, size_t cap, const char *id)
{
    for (size_t i = bt_fnv1a(BT_FNV_OFFSET, id, strlen(id)) & (cap - 1);; i = (i + 1) & (cap - 1))
        if (!tab[i].live || strcmp(tab[i].id, id) == 0) return &tab[i];
}

/* The counters of key `id`, made on first use. NULL when memory runs out (the
 * key then goes unlimited until the next rebuild). With store_lock held. */
static struct bt_key_live *live_for(struct bt_keys *k, const char *id)
{
    if (2 * (k->nlives + 1) > k->caplives) {
        size_t nc = k->caplives ? k->caplives * 2 : 64;
        struct live_slot *nt = calloc(nc, sizeof(*nt));
        if (!nt) return NULL;
        for (size_t i = 0; i < k->caplives; i++)
            if (k->lives[i].live) *live_find(nt, nc, k->lives[i].id) = k->lives[i];
        free(k->lives);
        k->lives = nt;
        k->caplives = nc;
    }
    struct live_slot *sl = live_find(k->lives, k->caplives, id);
    if (!sl->live) {
        if (!(sl->live = calloc(1, sizeof(*sl->live)))) return NULL;
        snprintf(sl->id, sizeof(sl->id), "%s", id);
        k->nlives++;
    }
    return sl->live;
}

static void lives_free(struct bt_keys *k)
{
    for (size_t i = 0; i < k->caplives; i++) free(k->lives[i].live);
    free(k->lives);
}

static int64_t now_s(void)
{
    return (int64_t)time(NULL);
}

/* ---- on a store handle ---- */

enum bt_err bt_store_key_create(struct bt_store *s, struct bt_key_patch *p,
                                char key_out[BT_KEY_LEN + 1], struct bt_key_rec *out, char *why,
                                size_t whycap)
{
    struct bt_key_rec k;
    bt_key_rec_init(&k);
    enum bt_err err = bt_key_generate(key_out, &k);
    if (err) {
        snprintf(why, whycap, "the random source failed");
        return err;
    }
    k.created_at = k.updated_at = now_s();
    bt_key_patch_apply(&k, p);
    err = s->ops->key_insert(s, &k);
    if (err) {
        snprintf(why, whycap, "%s", s->errmsg);
        memset(key_out, 0, BT_KEY_LEN + 1); /* never stored: forget it */
        bt_key_rec_free(&k);
        return err;
    }
    if (out) *out = k;
    else bt_key_rec_free(&k);
    return BT_OK;
}

enum bt_err bt_store_key_update(struct bt_store *s, const char *id, struct bt_key_patch *p,
                                struct bt_key_rec *out, char *why, size_t whycap)
{
    struct bt_key_rec k;
    enum bt_err err = s->ops->key_get(s, id, &k);
    if (err) {
        snprintf(why, whycap, "%s", s->errmsg);
        return err;
    }
    if (k.revoked_at) {
        snprintf(why, whycap, "The key %s is revoked; create a new one.", id);
        bt_key_rec_free(&k);
        return BT_EBUSY;
    }
    bt_key_patch_apply(&k, p);
    k.updated_at = now_s();
    err = s->ops->key_update(s, &k);
    if (err) {
        snprintf(why, whycap, "%s", s->errmsg);
        bt_key_rec_free(&k);
        return err;
    }
    if (out) *out = k;
    else bt_key_rec_free(&k);
    return BT_OK;
}

enum bt_err bt_store_key_revoke(struct bt_store *s, const char *id, struct bt_key_rec *out,
                                char *why, size_t whycap)
{
    struct bt_key_rec k;
    enum bt_err err = s->ops->key_get(s, id, &k);
    if (err) {
        snprintf(why, whycap, "%s", s->errmsg);
        return err;
    }
    if (!k.revoked_at) {
        k.revoked_at = k.updated_at = now_s();
        err = s->ops->key_update(s, &k);
        if (err) {
            snprintf(why, whycap, "%s", s->errmsg);
            bt_key_rec_free(&k);
            return err;
        }
    }
    if (out) *out = k;
    else bt_key_rec_free(&k);
    return BT_OK;
}

/* ---- the table ---- */

/* With store_lock held. */
static enum bt_err refresh_locked(struct bt_keys *k, bool force)
{
    bool changed = true;
    enum bt_err err = k->store->ops->changed(k->store, &changed);
    if (err) return err;
    if (!changed && !force) return BT_OK;
    struct bt_key_list l;
    if ((err = k->store->ops->key_list(k->store, &l))) return err;
    struct bt_keytab *t = NULL;
    err = bt_keytab_build(&l, &t);
    bt_key_list_free(&l);
    if (err) return err;
    for (size_t i = 0; i < bt_keytab_count(t); i++) {
        struct bt_key_rec *r = bt_keytab_rec(t, i);
        r->live = live_for(k, r->id);
    }
    uv_mutex_lock(&k->tab_lock);
    struct bt_keytab *old = k->tab;
    k->tab = t;
    atomic_fetch_add(&k->gen, 1);
    uv_mutex_unlock(&k->tab_lock);
    bt_keytab_unref(old);
    return BT_OK;
}

enum bt_err bt_keys_refresh(struct bt_keys *k, bool force)
{
    uv_mutex_lock(&k->store_lock);
    enum bt_err err = refresh_locked(k, force);
    if (err && !k->failing) bt_error("keys: cannot refresh from the store: %s", k->store->errmsg);
    else if (!err && k->failing) bt_info("keys: the store answers again");
    k->failing = err != BT_OK;
    uv_mutex_unlock(&k->store_lock);
    return err;
}

struct bt_keytab *bt_keys_current(struct bt_keys *k, struct bt_keytab **cached, uint64_t *gen)
{
    if (!k) return NULL;
    uint64_t g = atomic_load_explicit(&k->gen, memory_order_acquire);
    if (g == *gen && *cached) return *cached;
    uv_mutex_lock(&k->tab_lock);
    struct bt_keytab *old = *cached;
    *cached = bt_keytab_ref(k->tab);
    *gen = atomic_load(&k->gen);
    uv_mutex_unlock(&k->tab_lock);
    bt_keytab_unref(old);
    return *cached;
}

static void refresher(void *arg)
{
    struct bt_keys *k = arg;
    uv_mutex_lock(&k->wait_lock);
    while (!k->stop) {
        /* A timed wait: stop wakes it at once. */
        uv_cond_timedwait(&k->wait_cond, &k->wait_lock, (uint64_t)BT_KEYS_POLL_MS * 1000000u);
        if (k->stop) break;
        uv_mutex_unlock(&k->wait_lock);
        (void)bt_keys_refresh(k, false); /* logged inside */
        uv_mutex_lock(&k->wait_lock);
    }
    uv_mutex_unlock(&k->wait_lock);
}

enum bt_err bt_keys_start(const char *path, struct bt_keys **out, char *why, size_t whycap)
{
    *out = NULL;
    struct bt_keys *k = calloc(1, sizeof(*k));
    if (!k) {
        snprintf(why, whycap, "out of memory");
        return BT_ENOMEM;
    }
    enum bt_err err = bt_store_open_sqlite(path, &k->store, why, whycap);
    if (err) {
        free(k);
        return err;
    }
    uv_mutex_init(&k->store_lock);
    uv_mutex_init(&k->tab_lock);
    uv_mutex_init(&k->wait_lock);
    uv_cond_init(&k->wait_cond);
    atomic_init(&k->gen, 1);
    uv_mutex_lock(&k->store_lock);
    err = refresh_locked(k, true);
    if (err) snprintf(why, whycap, "%s: %s", path, k->store->errmsg);
    uv_mutex_unlock(&k->store_lock);
    if (!err && uv_thread_create(&k->thread, refresher, k)) {
        snprintf(why, whycap, "cannot start the key store thread");
        err = BT_ENOMEM;
    }
    if (err) {
        bt_keytab_unref(k->tab);
        bt_store_close(k->store);
        lives_free(k);
        uv_mutex_destroy(&k->store_lock);
        uv_mutex_destroy(&k->tab_lock);
        uv_mutex_destroy(&k->wait_lock);
        uv_cond_destroy(&k->wait_cond);
        free(k);
        return err;
    }
    *out = k;
    return BT_OK;
}

void bt_keys_stop(struct bt_keys *k)
{
    if (!k) return;
    uv_mutex_lock(&k->wait_lock);
    k->stop = true;
    uv_cond_signal(&k->wait_cond);
    uv_mutex_unlock(&k->wait_lock);
    uv_thread_join(&k->thread);
    bt_keytab_unref(k->tab);
    bt_store_close(k->store);
    lives_free(k);
    uv_mutex_destroy(&k->store_lock);
    uv_mutex_destroy(&k->tab_lock);
    uv_mutex_destroy(&k->wait_lock);
    uv_cond_destroy(&k->wait_cond);
    free(k);
}

/* ---- admin operations ---- */

/* After a write: the table follows before the caller answers. A failed
 * refresh is not the write's failure; the thread retries. */
static void after_write(struct bt_keys *k)
{
    if (refresh_locked(k, true))
        bt_warn("keys: written, but the table could not be rebuilt now: %s", k->store->errmsg);
}

enum bt_err bt_keys_create(struct bt_keys *k, struct bt_key_patch *p, char key_out[BT_KEY_LEN + 1],
                           struct bt_key_rec *out, char *why, size_t whycap)
{
    uv_mutex_lock(&k->store_lock);
    enum bt_err err = bt_store_key_create(k->store, p, key_out, out, why, whycap);
    if (!err) after_write(k);
    uv_mutex_unlock(&k->store_lock);
    return err;
}

enum bt_err bt_keys_get(struct bt_keys *k, const char *id, struct bt_key_rec *out, char *why,
                        size_t whycap)
{
    uv_mutex_lock(&k->store_lock);
    enum bt_err err = k->store->ops->key_get(k->store, id, out);
    if (err) snprintf(why, whycap, "%s", k->store->errmsg);
    uv_mutex_unlock(&k->store_lock);
    return err;
}

enum bt_err bt_keys_list(struct bt_keys *k, struct bt_key_list *out, char *why, size_t whycap)
{
    uv_mutex_lock(&k->store_lock);
    enum bt_err err = k->store->ops->key_list(k->store, out);
    if (err) snprintf(why, whycap, "%s", k->store->errmsg);
    uv_mutex_unlock(&k->store_lock);
    return err;
}

enum bt_err bt_keys_update(struct bt_keys *k, const char *id, struct bt_key_patch *p,
                           struct bt_key_rec *out, char *why, size_t whycap)
{
    uv_mutex_lock(&k->store_lock);
    enum bt_err err = bt_store_key_update(k->store, id, p, out, why, whycap);
    if (!err) after_write(k);
    uv_mutex_unlock(&k->store_lock);
    return err;
}

enum bt_err bt_keys_revoke(struct bt_keys *k, const char *id, struct bt_key_rec *out, char *why,
                           size_t whycap)
{
    uv_mutex_lock(&k->store_lock);
    enum bt_err err = bt_store_key_revoke(k->store, id, out, why, whycap);
    if (!err) after_write(k);
    uv_mutex_unlock(&k->store_lock);
    return err;
}
