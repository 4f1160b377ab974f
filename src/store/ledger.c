/* The ledger writer thread. One lock guards the queue (a singly linked list
 * with a tail pointer); workers hold it for a pointer append. The thread takes
 * the whole queue at once, then writes it in batches with the store lock held,
 * so the key service's refresh (which takes that lock too) never sees a batch
 * half accounted. A failed write is retried after the interval with the same
 * records first; after 3 failed tries in a row while stopping, what is left
 * is logged as lost rather than holding the exit forever. */
#include "store/ledger.h"

#include <stdbool.h>
#include <stdlib.h>
#include <time.h>

#include "core/log.h"

struct bt_ledger {
    struct bt_store *store;
    uv_mutex_t *store_lock;
    bt_ledger_committed_fn committed;
    void *ud;
    uint64_t interval_ns;
    uint32_t batch;
    uv_thread_t thread;
    uv_mutex_t lock;               /* guards what follows */
    uv_cond_t cond;                /* the writer waits on it */
    uv_cond_t done;                /* flushers wait on it */
    struct bt_usage_rec *head, *tail;
    size_t n;
    uint64_t first_ns;             /* when the oldest queued record came */
    uint64_t queued, written;      /* records ever accepted, ever written or given up */
    uint64_t dropped;              /* refused because the queue was full */
    bool flush_now;                /* a flusher waits: write without waiting */
    bool stop;
    uint64_t retention_ms;         /* 0: no pruning */
    uint64_t prune_ns;             /* when the next prune batch is due (uv_hrtime) */
    uint64_t pruned;               /* rows deleted in the current pass */
};

static void free_list(struct bt_usage_rec *r)
{
    while (r) {
        struct bt_usage_rec *next = r->next;
        free(r);
        r = next;
    }
}

/* Writes `list` in batches; returns what could not be written (NULL: all). */
static struct bt_usage_rec *write_list(struct bt_ledger *l, struct bt_usage_rec *list,
                                       size_t *nwritten)
{
    *nwritten = 0;
    while (list) {
        struct bt_usage_rec *last = list;
        size_t n = 1;
        while (last->next && n < l->batch) last = last->next, n++;
        struct bt_usage_rec *rest = last->next;
        last->next = NULL;
        uv_mutex_lock(l->store_lock);
        enum bt_err err = l->store->ops->usage_append(l->store, list);
        if (!err && l->committed) l->committed(l->ud, list);
        if (err) bt_error("ledger: cannot write %zu records: %s", n, l->store->errmsg);
        uv_mutex_unlock(l->store_lock);
        last->next = rest;
        if (err) return list;
        last->next = NULL;
        free_list(list);
        *nwritten += n;
        list = rest;
    }
    return NULL;
}

/* One batch of the retention's deletes, without l->lock. A full batch makes
 * the next one due at once (after records due are written); a short one ends
 * the pass, and the next comes after BT_LEDGER_PRUNE_EVERY_MS. A store that
 * refuses is tried again at the next pass. */
static void prune_batch(struct bt_ledger *l)
{
    int64_t before = (int64_t)time(NULL) * 1000 - (int64_t)l->retention_ms;
    uint64_t n = 0;
    uv_mutex_lock(l->store_lock);
    enum bt_err err = l->store->ops->usage_prune(l->store, before, BT_LEDGER_PRUNE_BATCH, &n);
    if (err) bt_error("ledger: cannot delete records past the retention: %s", l->store->errmsg);
    uv_mutex_unlock(l->store_lock);
    l->pruned += n;
    uint64_t now = uv_hrtime();
    if (!err && n >= BT_LEDGER_PRUNE_BATCH) {
        l->prune_ns = now;
        return;
    }
    if (l->pruned)
        bt_info("ledger: %llu records older than %llu days deleted (store.ledger_retention)",
                (unsigned long long)l->pruned, (unsigned long long)(l->retention_ms / 86400000));
    l->pruned = 0;
    l->prune_ns = now + (uint64_t)BT_LEDGER_PRUNE_EVERY_MS * 1000000u;
}

static bool prune_due(const struct bt_ledger *l, uint64_t now)
{
    return l->retention_ms && !l->stop && now >= l->prune_ns;
}

static void writer(void *arg)
{
    struct bt_ledger *l = arg;
    int failures = 0;
    uv_mutex_lock(&l->lock);
    for (;;) {
        bool records_due = false;
        while (!l->stop && !l->flush_now && l->n < l->batch) {
            uint64_t now = uv_hrtime();
            uint64_t due = l->n ? l->first_ns + l->interval_ns : UINT64_MAX;
            if (l->n && now >= due) break;
            if (prune_due(l, now)) break;
            if (l->retention_ms && l->prune_ns < due) due = l->prune_ns;
            if (due == UINT64_MAX) uv_cond_wait(&l->cond, &l->lock);
            else uv_cond_timedwait(&l->cond, &l->lock, due - now);
        }
        records_due = l->stop || l->flush_now || l->n >= l->batch ||
                      (l->n && uv_hrtime() >= l->first_ns + l->interval_ns);
        if (!records_due && prune_due(l, uv_hrtime())) {
            uv_mutex_unlock(&l->lock);
            prune_batch(l);
            uv_mutex_lock(&l->lock);
            continue;
        }
        if (!l->n) {
            l->flush_now = false;
            uv_cond_broadcast(&l->done);
            if (l->stop) break;
            continue;
        }
        struct bt_usage_rec *list = l->head;
        size_t n = l->n;
        l->head = l->tail = NULL;
        l->n = 0;
        uv_mutex_unlock(&l->lock);
        size_t nw;
        struct bt_usage_rec *left = write_list(l, list, &nw);
        uv_mutex_lock(&l->lock);
        l->written += nw;
        if (!left) {
            failures = 0;
            uv_cond_broadcast(&l->done);
            continue;
        }
        size_t nleft = n - nw;
        if (l->stop && ++failures >= 3) {
            bt_error("ledger: %zu usage records lost: the store refused them at exit", nleft);
            free_list(left);
            l->written += nleft;
            uv_cond_broadcast(&l->done);
            continue;
        }
        /* Put them back first and wait an interval before the next try. */
        struct bt_usage_rec *t = left;
        while (t->next) t = t->next;
        t->next = l->head;
        if (!l->head) l->tail = t;
        l->head = left;
        l->n += nleft;
        l->first_ns = uv_hrtime();
        uv_cond_timedwait(&l->cond, &l->lock, l->interval_ns);
    }
    uv_mutex_unlock(&l->lock);
}

enum bt_err bt_ledger_start(struct bt_store *s, uv_mutex_t *store_lock,
                            const struct bt_ledger_opts *o, bt_ledger_committed_fn committed,
                            void *ud, struct bt_ledger **out)
{
    *out = NULL;
    struct bt_ledger *l = calloc(1, sizeof(*l));
    if (!l) return BT_ENOMEM;
    l->store = s;
    l->store_lock = store_lock;
    l->committed = committed;
    l->ud = ud;
    l->interval_ns = (o && o->interval_ms ? o->interval_ms : 1000) * 1000000u;
    l->batch = o && o->batch ? o->batch : 500;
    l->retention_ms = o ? o->retention_ms : 0;
    l->prune_ns = uv_hrtime(); /* a first pass at start */
    uv_mutex_init(&l->lock);
    uv_cond_init(&l->cond);
    uv_cond_init(&l->done);
    if (uv_thread_create(&l->thread, writer, l)) {
        uv_mutex_destroy(&l->lock);
        uv_cond_destroy(&l->cond);
        uv_cond_destroy(&l->done);
        free(l);
        return BT_ENOMEM;
    }
    *out = l;
    return BT_OK;
}

void bt_ledger_push(struct bt_ledger *l, struct bt_usage_rec *r)
{
    if (!r) return;
    if (!l) {
        free(r);
        return;
    }
    r->next = NULL;
    uv_mutex_lock(&l->lock);
    if (l->n >= BT_LEDGER_MAX_QUEUED) {
        if (l->dropped++ % 10000 == 0)
            bt_error("ledger: the queue is full (%d records): usage records dropped (%llu so far)",
                     BT_LEDGER_MAX_QUEUED, (unsigned long long)l->dropped);
        uv_mutex_unlock(&l->lock);
        free(r);
        return;
    }
    if (l->tail) l->tail->next = r;
    else l->head = r, l->first_ns = uv_hrtime();
    l->tail = r;
    l->n++;
    l->queued++;
    if (l->n == 1 || l->n == l->batch) uv_cond_signal(&l->cond);
    uv_mutex_unlock(&l->lock);
}

void bt_ledger_flush(struct bt_ledger *l)
{
    if (!l) return;
    uv_mutex_lock(&l->lock);
    uint64_t want = l->queued, end = uv_hrtime() + BT_LEDGER_FLUSH_WAIT_MS * 1000000u;
    while (l->written < want) {
        uint64_t now = uv_hrtime();
        if (now >= end) break; /* the store refuses: the caller goes on without */
        l->flush_now = true;
        uv_cond_signal(&l->cond);
        uv_cond_timedwait(&l->done, &l->lock, end - now);
    }
    uv_mutex_unlock(&l->lock);
}

void bt_ledger_stop(struct bt_ledger *l)
{
    if (!l) return;
    uv_mutex_lock(&l->lock);
    l->stop = true;
    uv_cond_signal(&l->cond);
    uv_mutex_unlock(&l->lock);
    uv_thread_join(&l->thread);
    if (l->written < l->queued)
        bt_error("ledger: %llu usage records not written",
                 (unsigned long long)(l->queued - l->written));
    free_list(l->head);
    uv_mutex_destroy(&l->lock);
    uv_cond_destroy(&l->cond);
    uv_cond_destroy(&l->done);
    free(l);
}
