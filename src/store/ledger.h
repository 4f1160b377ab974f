/* The ledger writer: usage records queued by workers (bt_ledger_push, a mutex
 * and a list: no store access on the request path) and written by one thread
 * in batches, every `interval_ms` or as soon as `batch` records wait, each
 * batch in one transaction. Stopping writes every record still queued (the
 * SIGTERM drain's last step). With a retention, the same thread deletes the
 * rows that outlived it, in batches. See docs/internals/store.md. */
#ifndef BT_STORE_LEDGER_H
#define BT_STORE_LEDGER_H

#include <stdint.h>
#include <uv.h>

#include "store/store.h"

#define BT_LEDGER_MAX_QUEUED 1000000 /* records waiting; more are dropped (logged) */
#define BT_LEDGER_FLUSH_WAIT_MS 5000 /* the longest bt_ledger_flush waits */
#define BT_LEDGER_PRUNE_EVERY_MS 3600000 /* with a retention: a pass at start, then hourly */
#define BT_LEDGER_PRUNE_BATCH 5000   /* rows deleted per statement (the store lock is let
                                        go, and due records written, between two) */

struct bt_ledger_opts {
    uint64_t interval_ms;   /* the longest a record waits; 0: 1000 */
    uint32_t batch;         /* records per transaction, and the count that wakes the
                               writer early; 0: 500 */
    uint64_t retention_ms;  /* rows older than this are deleted (usage_prune) at start
                               and every BT_LEDGER_PRUNE_EVERY_MS; 0: kept forever */
};

/* Called on the writer thread with `store_lock` held, after a batch (the list
 * `recs`, borrowed) was committed. */
typedef void (*bt_ledger_committed_fn)(void *ud, const struct bt_usage_rec *recs);

struct bt_ledger;

/* Starts the writer on store handle `s` (borrowed: used only with `store_lock`
 * held, which the caller's other users of `s` take too). BT_ENOMEM when the
 * thread cannot start. */
enum bt_err bt_ledger_start(struct bt_store *s, uv_mutex_t *store_lock,
                            const struct bt_ledger_opts *o, bt_ledger_committed_fn committed,
                            void *ud, struct bt_ledger **out);
/* Queues `r`, taking ownership (freed once written, or dropped when the queue
 * is full). Safe from any thread; never waits on the store. NULL l: r freed. */
void bt_ledger_push(struct bt_ledger *l, struct bt_usage_rec *r);
/* Blocks until every record queued before the call is written (or given up),
 * or BT_LEDGER_FLUSH_WAIT_MS passed (a store refusing writes). */
void bt_ledger_flush(struct bt_ledger *l);
/* Writes every queued record, stops the thread and frees l. NULL: no-op. */
void bt_ledger_stop(struct bt_ledger *l);

#endif
