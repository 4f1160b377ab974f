/* The key service: a store handle, the current key table and the store thread
 * that keeps it in step with the store and runs the admin API's jobs; and the
 * write operations both the admin API (through the service) and `baton keys`
 * (on a bare handle) use.
 *
 * Locks, none of which a worker holds for longer than a list or pointer swap:
 *  - store_lock serialises use of the store handle (the store thread and the
 *    ledger writer); a worker never takes it (admin operations come to the
 *    store thread as jobs: bt_keys_submit);
 *  - wait_lock guards the job queue and the stop flag; a port's lock its list
 *    of jobs done;
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
#include "store/ledger.h"

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
        char id[BT_KEY_MAX_NAME + 8]; /* a key's id, or an owner's (bt_owner_spend_id) */
        struct bt_key_live *live;
    } *lives;
    size_t nlives, caplives;
    struct bt_ledger *ledger;     /* the usage ledger's writer */
    int64_t spend_day;            /* the UTC day (since 1970) spend was last loaded for */
    /* Jobs for the store thread (bt_keys_submit), oldest first (wait_lock). */
    struct bt_keys_job *jobs, **jobs_tail;
};

/* Where a job comes back: a uv_async_t on a worker's loop and the jobs done
 * that it has not taken yet. Freed when the loop's side closed it and no job
 * of it is still out (refs). */
struct bt_keys_port {
    uv_async_t async;
    struct bt_keys *keys;
    uv_mutex_t lock;              /* guards closed and done against the store thread */
    bool closed;                  /* the loop's side closed it: drop what comes back */
    struct bt_keys_job *done, **done_tail;
    atomic_int refs;              /* the loop's side, and one per job out */
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
static int spend_cmp(const void *a, const void *b)
{
    return strcmp(((const struct bt_spend *)a)->key_id, ((const struct bt_spend *)b)->key_id);
}

/* The spend of `id` (a key's, or an owner's) in `period`, from the store's figures. */
static int64_t spend_of(const struct bt_spend_list *sl, const char *id,
                        enum bt_budget_period period)
{
    struct bt_spend probe;
    snprintf(probe.key_id, sizeof(probe.key_id), "%s", id);
    const struct bt_spend *sp = sl->n ? bsearch(&probe, sl->items, sl->n, sizeof(*sl->items),
                                                spend_cmp)
                                      : NULL;
    if (!sp) return 0;
    switch (period) {
    case BT_PERIOD_DAY: return sp->day_pusd;
    case BT_PERIOD_WEEK: return sp->week_pusd;
    default: return sp->month_pusd;
    }
}

/* What a key of owner (kind, name) carries of it (name NULL: nothing): its
 * counters, their spend set from the store's figures, and its budget and
 * limits from `ol`. With store_lock held. */
static void owner_attach(struct bt_keys *k, const struct bt_spend_list *sl,
                         const struct bt_owner_list *ol, enum bt_owner_kind kind,
                         const char *name, struct bt_owner_limits *out)
{
    *out = (struct bt_owner_limits){.budget_micro_usd = -1, .rpm = -1, .tpm = -1,
                                    .concurrency = -1};
    if (!name) return;
    for (size_t i = 0; i < ol->n; i++) {
        const struct bt_owner_rec *o = &ol->items[i];
        if (o->kind != kind || strcmp(o->name, name) != 0) continue;
        out->budget_micro_usd = o->budget_micro_usd;
        out->period = o->budget_period;
        out->rpm = o->rpm;
        out->tpm = o->tpm;
        out->concurrency = o->concurrency;
        break;
    }
    char id[BT_KEY_MAX_NAME + 8];
    bt_owner_spend_id(kind, name, id, sizeof(id));
    out->live = live_for(k, id);
    if (out->live) atomic_store(&out->live->spent_pusd, spend_of(sl, id, out->period));
}

/* With store_lock held. The table and every key's spend are rebuilt when the
 * store changed (another connection committed: a key written elsewhere, or
 * another instance's ledger batch), when a new UTC day began (a period may
 * have rolled over), or when forced. This process's own batches are counted
 * by ledger_committed under the same lock, so spent_pusd never counts one
 * twice: it is set here to the store's sum, which includes them. */
static enum bt_err refresh_locked(struct bt_keys *k, bool force)
{
    bool changed = true;
    enum bt_err err = k->store->ops->changed(k->store, &changed);
    if (err) return err;
    int64_t now_ms = (int64_t)time(NULL) * 1000, today = now_ms / 86400000;
    if (!changed && !force && today == k->spend_day) return BT_OK;
    struct bt_key_list l;
    if ((err = k->store->ops->key_list(k->store, &l))) return err;
    struct bt_spend_list sl;
    if ((err = k->store->ops->spend(k->store, now_ms, &sl))) {
        bt_key_list_free(&l);
        return err;
    }
    if (sl.n) qsort(sl.items, sl.n, sizeof(*sl.items), spend_cmp);
    struct bt_keytab *t = NULL;
    err = bt_keytab_build(&l, &t);
    bt_key_list_free(&l);
    if (err) {
        free(sl.items);
        return err;
    }
    struct bt_owner_list ol = {0};
    if ((err = k->store->ops->owner_list(k->store, &ol))) {
        free(sl.items);
        bt_keytab_unref(t);
        return err;
    }
    k->spend_day = today;
    for (size_t i = 0; i < bt_keytab_count(t); i++) {
        struct bt_key_rec *r = bt_keytab_rec(t, i);
        r->live = live_for(k, r->id);
        if (r->live) atomic_store(&r->live->spent_pusd, spend_of(&sl, r->id, r->budget_period));
        owner_attach(k, &sl, &ol, BT_OWNER_TEAM, r->team, &r->owner[BT_OWNER_TEAM]);
        owner_attach(k, &sl, &ol, BT_OWNER_USER, r->user, &r->owner[BT_OWNER_USER]);
    }
    bt_owner_list_free(&ol);
    free(sl.items);
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

/* ---- jobs ---- */

static void port_unref(struct bt_keys_port *p)
{
    if (atomic_fetch_sub(&p->refs, 1) != 1) return;
    uv_mutex_destroy(&p->lock);
    free(p);
}

/* A job ran (or will not): back to its port's loop, or dropped when the port
 * is closed. Any thread. */
static void job_deliver(struct bt_keys_job *j, bool ran)
{
    struct bt_keys_port *p = j->port;
    j->next = NULL;
    j->status = ran ? BT_OK : BT_ECLOSED;
    uv_mutex_lock(&p->lock);
    if (p->closed) {
        uv_mutex_unlock(&p->lock);
        j->drop(j);
        port_unref(p);
        return;
    }
    *p->done_tail = j;
    p->done_tail = &j->next;
    uv_async_send(&p->async); /* under the lock: the loop's side cannot close it meanwhile */
    uv_mutex_unlock(&p->lock);
}

/* On the port's loop: each job that came back gets `done`, or, when the port
 * closes (`closing`), `drop`. The loop's own ref keeps p meanwhile. */
static void port_take(struct bt_keys_port *p, bool closing)
{
    uv_mutex_lock(&p->lock);
    p->closed = p->closed || closing;
    struct bt_keys_job *j = p->done;
    p->done = NULL;
    p->done_tail = &p->done;
    uv_mutex_unlock(&p->lock);
    for (struct bt_keys_job *next; j; j = next) {
        next = j->next;
        atomic_fetch_sub(&p->refs, 1);
        if (closing) j->drop(j);
        else j->done(j);
    }
}

static void port_wake(uv_async_t *a)
{
    port_take(a->data, false);
}

struct bt_keys_port *bt_keys_port_new(struct bt_keys *k, uv_loop_t *loop)
{
    struct bt_keys_port *p = calloc(1, sizeof(*p));
    if (!p) return NULL;
    if (uv_async_init(loop, &p->async, port_wake)) {
        free(p);
        return NULL;
    }
    uv_unref((uv_handle_t *)&p->async);
    p->async.data = p;
    p->keys = k;
    uv_mutex_init(&p->lock);
    p->done_tail = &p->done;
    atomic_init(&p->refs, 1);
    return p;
}

static void port_closed(uv_handle_t *h)
{
    port_unref(h->data);
}

void bt_keys_port_close(struct bt_keys_port *p)
{
    if (!p) return;
    port_take(p, true);
    uv_close((uv_handle_t *)&p->async, port_closed);
}

enum bt_err bt_keys_submit(struct bt_keys_port *p, struct bt_keys_job *j)
{
    struct bt_keys *k = p->keys;
    j->port = p;
    j->next = NULL;
    uv_mutex_lock(&k->wait_lock);
    if (k->stop) {
        uv_mutex_unlock(&k->wait_lock);
        return BT_ECLOSED;
    }
    atomic_fetch_add(&p->refs, 1);
    *k->jobs_tail = j;
    k->jobs_tail = &j->next;
    uv_cond_signal(&k->wait_cond);
    uv_mutex_unlock(&k->wait_lock);
    return BT_OK;
}

/* The store thread: jobs as they come, one at a time; a refresh poll every
 * BT_KEYS_POLL_MS between them. At stop, jobs not run are dropped. */
static void refresher(void *arg)
{
    struct bt_keys *k = arg;
    const uint64_t poll_ns = (uint64_t)BT_KEYS_POLL_MS * 1000000u;
    uint64_t next_poll = uv_hrtime() + poll_ns;
    uv_mutex_lock(&k->wait_lock);
    while (!k->stop) {
        uint64_t now = uv_hrtime();
        /* A timed wait: stop and a job wake it at once. */
        if (!k->jobs && now < next_poll)
            uv_cond_timedwait(&k->wait_cond, &k->wait_lock, next_poll - now);
        if (k->stop) break;
        struct bt_keys_job *j = k->jobs;
        if (j) {
            k->jobs = j->next;
            if (!k->jobs) k->jobs_tail = &k->jobs;
        }
        uv_mutex_unlock(&k->wait_lock);
        if (j) {
            j->run(k, j);
            job_deliver(j, true);
        }
        if (uv_hrtime() >= next_poll) {
            (void)bt_keys_refresh(k, false); /* logged inside */
            next_poll = uv_hrtime() + poll_ns;
        }
        uv_mutex_lock(&k->wait_lock);
    }
    struct bt_keys_job *left = k->jobs;
    k->jobs = NULL;
    k->jobs_tail = &k->jobs;
    uv_mutex_unlock(&k->wait_lock);
    for (struct bt_keys_job *next; left; left = next) {
        next = left->next;
        job_deliver(left, false);
    }
}

/* The ledger wrote `recs`: their cost moves from pending to spent (store_lock
 * held, so a refresh cannot interleave). */
static void ledger_committed(void *ud, const struct bt_usage_rec *recs)
{
    (void)ud;
    for (const struct bt_usage_rec *r = recs; r; r = r->next) {
        struct bt_key_live *lives[3] = {r->live, r->team_live, r->user_live};
        for (int i = 0; i < 3; i++) {
            if (!lives[i] || !r->cost_pusd) continue;
            atomic_fetch_add(&lives[i]->spent_pusd, r->cost_pusd);
            atomic_fetch_sub(&lives[i]->pending_pusd, r->cost_pusd);
        }
    }
}

void bt_keys_record(struct bt_keys *k, struct bt_usage_rec *r)
{
    if (!k) {
        free(r);
        return;
    }
    bt_ledger_push(k->ledger, r);
}

void bt_keys_flush(struct bt_keys *k)
{
    if (k) bt_ledger_flush(k->ledger);
}

enum bt_err bt_keys_usage(struct bt_keys *k, const struct bt_usage_query *q,
                          struct bt_usage_rows *out, char *why, size_t whycap)
{
    bt_ledger_flush(k->ledger);
    uv_mutex_lock(&k->store_lock);
    enum bt_err err = k->store->ops->usage_report(k->store, q, out);
    if (err) snprintf(why, whycap, "%s", k->store->errmsg);
    uv_mutex_unlock(&k->store_lock);
    return err;
}

enum bt_err bt_keys_start(const struct bt_store_where *where, const struct bt_keys_opts *o,
                          struct bt_keys **out, char *why, size_t whycap)
{
    *out = NULL;
    struct bt_keys *k = calloc(1, sizeof(*k));
    if (!k) {
        snprintf(why, whycap, "out of memory");
        return BT_ENOMEM;
    }
    enum bt_err err = bt_store_open(where, &k->store, why, whycap);
    if (err) {
        free(k);
        return err;
    }
    uv_mutex_init(&k->store_lock);
    uv_mutex_init(&k->tab_lock);
    uv_mutex_init(&k->wait_lock);
    uv_cond_init(&k->wait_cond);
    atomic_init(&k->gen, 1);
    k->jobs_tail = &k->jobs;
    uv_mutex_lock(&k->store_lock);
    err = refresh_locked(k, true);
    if (err) snprintf(why, whycap, "%s: %s", where->postgres ? "postgres" : where->sqlite, k->store->errmsg);
    uv_mutex_unlock(&k->store_lock);
    struct bt_ledger_opts lo = {.interval_ms = o ? o->ledger_interval_ms : 0,
                                .batch = o ? o->ledger_batch : 0,
                                .retention_ms = o ? o->ledger_retention_ms : 0};
    if (!err && bt_ledger_start(k->store, &k->store_lock, &lo, ledger_committed, k, &k->ledger)) {
        snprintf(why, whycap, "cannot start the ledger thread");
        err = BT_ENOMEM;
    }
    if (!err && uv_thread_create(&k->thread, refresher, k)) {
        snprintf(why, whycap, "cannot start the key store thread");
        bt_ledger_stop(k->ledger);
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
    bt_ledger_stop(k->ledger); /* writes what is queued: the workers are gone */
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

/* ---- owners ---- */

enum bt_err bt_keys_owner_put(struct bt_keys *k, struct bt_owner_rec *o, char *why, size_t whycap)
{
    uv_mutex_lock(&k->store_lock);
    struct bt_owner_rec old;
    enum bt_err err = k->store->ops->owner_get(k->store, o->kind, o->name, &old);
    o->updated_at = now_s();
    o->created_at = err ? o->updated_at : old.created_at;
    if (!err) free(old.name);
    err = err == BT_ENOTFOUND || !err ? k->store->ops->owner_put(k->store, o) : err;
    if (err) snprintf(why, whycap, "%s", k->store->errmsg);
    else after_write(k);
    uv_mutex_unlock(&k->store_lock);
    return err;
}

enum bt_err bt_keys_owner_get(struct bt_keys *k, enum bt_owner_kind kind, const char *name,
                              struct bt_owner_rec *out, char *why, size_t whycap)
{
    uv_mutex_lock(&k->store_lock);
    enum bt_err err = k->store->ops->owner_get(k->store, kind, name, out);
    if (err) snprintf(why, whycap, "%s", k->store->errmsg);
    uv_mutex_unlock(&k->store_lock);
    return err;
}

enum bt_err bt_keys_owner_delete(struct bt_keys *k, enum bt_owner_kind kind, const char *name,
                                 char *why, size_t whycap)
{
    uv_mutex_lock(&k->store_lock);
    enum bt_err err = k->store->ops->owner_delete(k->store, kind, name);
    if (err) snprintf(why, whycap, "%s", k->store->errmsg);
    else after_write(k);
    uv_mutex_unlock(&k->store_lock);
    return err;
}

enum bt_err bt_keys_owner_list(struct bt_keys *k, struct bt_owner_list *out, char *why,
                               size_t whycap)
{
    uv_mutex_lock(&k->store_lock);
    enum bt_err err = k->store->ops->owner_list(k->store, out);
    if (err) snprintf(why, whycap, "%s", k->store->errmsg);
    uv_mutex_unlock(&k->store_lock);
    return err;
}

int64_t bt_keys_owner_spent(struct bt_keys *k, enum bt_owner_kind kind, const char *name)
{
    char id[BT_KEY_MAX_NAME + 8];
    bt_owner_spend_id(kind, name, id, sizeof(id));
    uv_mutex_lock(&k->store_lock);
    struct live_slot *sl = k->caplives ? live_find(k->lives, k->caplives, id) : NULL;
    int64_t v = sl && sl->live ? atomic_load(&sl->live->spent_pusd) +
                                     atomic_load(&sl->live->pending_pusd)
                               : 0;
    uv_mutex_unlock(&k->store_lock);
    return v;
}
