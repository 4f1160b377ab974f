/* Virtual keys: making one (`sk-bt-` + 43 random base64url characters, kept
 * only as its SHA-256), the fields a caller may set (parsed from JSON, the
 * admin API's and the command line's one validator), their JSON form, the
 * in-memory table workers look keys up in, and the service that keeps that
 * table in step with the store.
 *
 * The table (`struct bt_keytab`) is an immutable, refcounted snapshot: a hash
 * table on the key's digest. The service (`struct bt_keys`) owns a store
 * handle and a thread that rebuilds the table whenever the store changed
 * (polled every BT_KEYS_POLL_MS: a key written by another instance or by
 * `baton keys` takes effect within a second) and swaps it in; a worker picks
 * the new one up at its next request, taking the table lock only when the
 * generation changed. Admin writes made through bt_keys_* rebuild the table
 * before they return; the admin API runs them as jobs on the store thread
 * (bt_keys_submit), never on a worker (docs/internals/store.md). Nothing here is called with SQLite on a /v1 path: a
 * lookup is bt_keys_current + bt_keytab_find. */
#ifndef BT_STORE_KEYS_H
#define BT_STORE_KEYS_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include <uv.h>

#include "core/str.h"
#include "json/json.h"
#include "store/store.h"

#define BT_KEY_PREFIX "sk-bt-"
#define BT_KEY_LEN 49          /* "sk-bt-" + 43 */
#define BT_KEYS_POLL_MS 250

/* ---- keys ---- */

/* SHA-256 of `key` into out. */
void bt_key_hash(struct bt_str key, unsigned char out[BT_KEY_HASH_LEN]);
/* A new random key into key[BT_KEY_LEN + 1], and k's id, hash and prefix from
 * it. BT_EIO when the system's random source fails. */
enum bt_err bt_key_generate(char key[BT_KEY_LEN + 1], struct bt_key_rec *k);
/* True when `k` may be used at unix time `now`: not revoked, not expired. */
bool bt_key_active(const struct bt_key_rec *k, int64_t now);
/* "active", "revoked" or "expired". */
const char *bt_key_status(const struct bt_key_rec *k, int64_t now);
/* True when `k` may use the public model `model` (no models list: every one). */
bool bt_key_allows_model(const struct bt_key_rec *k, struct bt_str model);

/* ---- the fields a caller sets ---- */

enum {
    BT_KF_USER = 1u << 0,
    BT_KF_TEAM = 1u << 1,
    BT_KF_MODELS = 1u << 2,
    BT_KF_RPM = 1u << 3,
    BT_KF_TPM = 1u << 4,
    BT_KF_CONCURRENCY = 1u << 5,
    BT_KF_BUDGET = 1u << 6,
    BT_KF_PERIOD = 1u << 7,
    BT_KF_EXPIRES = 1u << 8,
    BT_KF_METADATA = 1u << 9,
};

/* Which fields a request sets (`set` bits) and to what (`v`; null in the JSON
 * = the field's unset value). `v` owns its strings. */
struct bt_key_patch {
    uint32_t set;
    struct bt_key_rec v;
};

/* Parses a JSON object of key fields (user, team, models, rpm, tpm,
 * concurrency, budget_usd, budget_period, expires_at, metadata; all optional,
 * null clears) into *p, strictly: unknown or repeated fields, wrong types and
 * out-of-range values are refused with a message in why naming the field.
 * budget_usd is a decimal number with at most 6 places (kept exactly, in
 * micro-USD); expires_at is unix seconds or an RFC 3339 time
 * (2027-01-31T00:00:00Z, or with an offset). `now` refuses an expiry in the
 * past. BT_EINVAL (bad input), BT_ENOMEM. *p is initialised either way and
 * freed with bt_key_patch_free. */
enum bt_err bt_key_patch_parse(struct bt_str json, int64_t now, struct bt_key_patch *p, char *why,
                               size_t whycap);
/* Moves the fields set in p into k (freeing what they replace); p keeps the
 * rest. A budget without a period gets `month`. */
void bt_key_patch_apply(struct bt_key_rec *k, struct bt_key_patch *p);
void bt_key_patch_free(struct bt_key_patch *p);

/* Writes k as a JSON object (id, object, key_prefix, user, team, models, rpm,
 * tpm, concurrency, budget_usd, budget_period, expires_at, metadata,
 * created_at, updated_at, revoked_at, status), with "key" first when `key` is
 * not NULL (only the answer that creates it). Never the hash. */
void bt_key_write_json(struct bt_jw *w, const struct bt_key_rec *k, int64_t now, const char *key);

/* ---- limits in process memory ---- */

/* A key's counters, shared by the workers of one process through atomics and
 * kept by the key service across table swaps (one per key id). */
struct bt_key_live {
    atomic_int inflight;             /* requests admitted and not finished */
    atomic_uint_fast64_t window;     /* the minute `count` counts (unix minutes) */
    atomic_uint count;               /* requests admitted in that minute */
    atomic_uint_fast64_t tpm_window; /* the minute `tokens` counts (unix minutes) */
    atomic_int_fast64_t tokens;      /* tokens taken in it: estimates at admit, corrected
                                        to the usage when each request ends */
    /* Budget: spend in the key's current period, pico-USD, in two parts so the
     * store's figure can replace the first without losing what this process
     * charged meanwhile (docs/internals/store.md). */
    atomic_int_fast64_t spent_pusd;  /* written to the store: its sum at the last
                                        refresh, plus this process's batches since */
    atomic_int_fast64_t pending_pusd; /* charged here, not yet written */
    atomic_bool warned;              /* the 80% warning was logged for this crossing */
};

/* What key `k` has spent in its budget period, pico-USD (0 without live). */
int64_t bt_key_spent(const struct bt_key_rec *k);
/* Charges `pusd` to the counters `live` (NULL: no-op): seen by the next admit
 * on every worker of this process at once. */
void bt_key_charge(struct bt_key_live *live, int64_t pusd);

/* Admits one request of key `k` at unix time `now` against its rpm and
 * concurrency (unset limits: no check; no `live`: no check). True with the
 * request counted (then *held is set when it holds a concurrency slot, to give
 * back with bt_key_release when it ends). False with *which ("rpm" or
 * "concurrency") and *retry_after (seconds) when over a limit: nothing is
 * held. The minute is a fixed window: up to rpm requests per calendar minute. */
bool bt_key_take(const struct bt_key_rec *k, int64_t now, bool *held, const char **which,
                 int64_t *retry_after);
/* Takes `tokens` (an estimate: the prompt counted and max_tokens) from key k's
 * tokens per minute at unix time `now`: a fixed window like rpm's. True when k
 * has no tpm or they fit (counted; *minute says which minute they went to,
 * for bt_key_correct_tokens); false with *retry_after (seconds to the next
 * minute) when the minute's tokens and these would pass tpm: nothing taken. */
bool bt_key_take_tokens(const struct bt_key_rec *k, int64_t now, int64_t tokens, int64_t *minute,
                        int64_t *retry_after);
/* Adds `delta` (the usage minus the estimate) to the tokens of `minute`, when
 * that minute is still the one counted (a later one started afresh). */
void bt_key_correct_tokens(struct bt_key_live *live, int64_t minute, int64_t delta);
/* The same on any counters (a key's or an owner's) with the limits given. */
bool bt_live_take(struct bt_key_live *l, int64_t rpm, int64_t concurrency, int64_t now,
                  bool *held, const char **which, int64_t *retry_after);
bool bt_live_take_tokens(struct bt_key_live *l, int64_t tpm, int64_t now, int64_t tokens,
                         int64_t *minute, int64_t *retry_after);
/* Gives back a concurrency slot taken by bt_key_take (ud: the key's live). */
void bt_key_release(void *live);
/* Concurrency slots held by one request: its key's, its team's, its user's. */
struct bt_key_slots {
    struct bt_key_live *live[3];     /* NULL: none held */
};
/* Gives back each slot of `slots` (a struct bt_key_slots *): an on_finish hook. */
void bt_key_release_slots(void *slots);

/* ---- the table ---- */

struct bt_keytab;
/* The i-th record of t (i < bt_keytab_count): for the service, to attach live
 * counters before the table is published. */
struct bt_key_rec *bt_keytab_rec(struct bt_keytab *t, size_t i);

/* Builds a table of the active and not-yet-expired-or-expired (expiry is
 * checked at lookup) keys of `l`, taking the records it keeps out of l (the
 * rest stay in l, which the caller frees). refs == 1. BT_ENOMEM. */
enum bt_err bt_keytab_build(struct bt_key_list *l, struct bt_keytab **out);
/* The record whose digest is `hash` (compared in constant time), or NULL.
 * Valid while the caller holds its reference to `t`. */
const struct bt_key_rec *bt_keytab_find(const struct bt_keytab *t,
                                        const unsigned char hash[BT_KEY_HASH_LEN]);
size_t bt_keytab_count(const struct bt_keytab *t);
struct bt_keytab *bt_keytab_ref(struct bt_keytab *t);
void bt_keytab_unref(struct bt_keytab *t);

/* ---- the service ---- */

struct bt_keys;

struct bt_keys_opts {
    uint64_t ledger_interval_ms;    /* store.ledger_interval; 0: 1 s */
    uint32_t ledger_batch;          /* store.ledger_batch; 0: 500 */
    uint64_t ledger_retention_ms;   /* store.ledger_retention; 0: kept forever */
};

/* Opens the SQLite store at `path` (creating and migrating it), loads the
 * table and each key's spend, and starts the refresh thread and the ledger
 * writer (store/ledger.h). `o` may be NULL (defaults). On failure `why` says
 * why. */
enum bt_err bt_keys_start(const struct bt_store_where *where, const struct bt_keys_opts *o,
                          struct bt_keys **out, char *why, size_t whycap);
/* Queues a usage record for the ledger, taking ownership (k NULL: freed). Its
 * `live`, when set, must have been charged its cost_pusd (bt_key_charge): once
 * written, that amount moves from pending to spent. Never waits on the store. */
void bt_keys_record(struct bt_keys *k, struct bt_usage_rec *r);
/* Waits until every record queued so far is written. */
void bt_keys_flush(struct bt_keys *k);
/* A usage report from the ledger (records still queued are written first). */
enum bt_err bt_keys_usage(struct bt_keys *k, const struct bt_usage_query *q,
                          struct bt_usage_rows *out, char *why, size_t whycap);
/* Writes every queued usage record, stops the threads and frees the service, the keys' live counters included:
 * only once no worker uses a table of it (they point at those counters).
 * NULL: no-op. */
void bt_keys_stop(struct bt_keys *k);
/* The current table for a worker that caches one: when the service's
 * generation differs from *gen, *cached is replaced (old ref dropped, new one
 * taken). Returns *cached (NULL when k is NULL). Lock-free unless the table
 * changed. */
struct bt_keytab *bt_keys_current(struct bt_keys *k, struct bt_keytab **cached, uint64_t *gen);
/* Rebuilds the table from the store now if the store changed (`force`: in any
 * case). */
enum bt_err bt_keys_refresh(struct bt_keys *k, bool force);

/* Admin operations, synchronous, on the caller's thread (the admin API runs
 * them on the store thread: bt_keys_submit); each rebuilds the table before
 * returning. Messages go to why. */
/* Creates a key from p; key_out gets the key (shown once), *out the record. */
enum bt_err bt_keys_create(struct bt_keys *k, struct bt_key_patch *p, char key_out[BT_KEY_LEN + 1],
                           struct bt_key_rec *out, char *why, size_t whycap);
enum bt_err bt_keys_get(struct bt_keys *k, const char *id, struct bt_key_rec *out, char *why,
                        size_t whycap);
enum bt_err bt_keys_list(struct bt_keys *k, struct bt_key_list *out, char *why, size_t whycap);
/* BT_ENOTFOUND for an unknown id, BT_EBUSY for a revoked key. */
enum bt_err bt_keys_update(struct bt_keys *k, const char *id, struct bt_key_patch *p,
                           struct bt_key_rec *out, char *why, size_t whycap);
/* Revokes (idempotent: revoking twice keeps the first time). BT_ENOTFOUND. */
enum bt_err bt_keys_revoke(struct bt_keys *k, const char *id, struct bt_key_rec *out, char *why,
                           size_t whycap);

/* Teams and users with budgets (/admin/teams, /admin/users), on the caller's
 * thread like the key operations; writes rebuild the table (every key of the
 * owner sees the new budget at its next request). put creates or replaces
 * o's budget (o->created_at and updated_at are set). BT_ENOTFOUND from get
 * and delete for an unknown owner. */
enum bt_err bt_keys_owner_put(struct bt_keys *k, struct bt_owner_rec *o, char *why, size_t whycap);
enum bt_err bt_keys_owner_get(struct bt_keys *k, enum bt_owner_kind kind, const char *name,
                              struct bt_owner_rec *out, char *why, size_t whycap);
enum bt_err bt_keys_owner_delete(struct bt_keys *k, enum bt_owner_kind kind, const char *name,
                                 char *why, size_t whycap);
enum bt_err bt_keys_owner_list(struct bt_keys *k, struct bt_owner_list *out, char *why,
                               size_t whycap);
/* What the owner spent in its period as this process counts it (0 when no key
 * of it was loaded). */
int64_t bt_keys_owner_spent(struct bt_keys *k, enum bt_owner_kind kind, const char *name);

/* ---- store work for an event loop ----
 *
 * A worker must never wait on the store (docs/internals/store.md): the admin
 * API hands each operation to the service's store thread as a job and gets it
 * back on its own loop through a port (a uv_async_t). Jobs run one at a time,
 * in the order submitted, between the thread's refresh polls.
 *
 * A job belongs to the store thread from bt_keys_submit until it comes back:
 * `done` on the port's loop (the caller owns it again and frees it), or, when
 * the port was closed meanwhile or the service stops before running it,
 * `drop` on whichever thread finds it so (it frees the job and touches
 * nothing of the loop's). */
struct bt_keys_port;
struct bt_keys_job {
    struct bt_keys_job *next;       /* the service's queue, then the port's */
    struct bt_keys_port *port;      /* set by bt_keys_submit */
    enum bt_err status;             /* when it comes back: BT_OK it ran; BT_ECLOSED the
                                       service stopped before it could */
    void (*run)(struct bt_keys *k, struct bt_keys_job *j); /* on the store thread */
    void (*done)(struct bt_keys_job *j);                   /* on the port's loop */
    void (*drop)(struct bt_keys_job *j);                   /* any thread */
};

/* A port on `loop` (called on the loop's thread), for k's jobs to come back
 * through. Its handle does not keep the loop alive. NULL on ENOMEM. */
struct bt_keys_port *bt_keys_port_new(struct bt_keys *k, uv_loop_t *loop);
/* Closes the port on its loop's thread (NULL: no-op): jobs that came back and
 * those still out are dropped; its memory goes once the last of them has.
 * The loop must run afterwards for the handle to close. */
void bt_keys_port_close(struct bt_keys_port *p);
/* Queues `j` for the store thread (it owns j from here, see above). BT_ECLOSED
 * when the service is stopping: j is not taken. */
enum bt_err bt_keys_submit(struct bt_keys_port *p, struct bt_keys_job *j);

/* The same operations on a store handle, for `baton keys` (no service, no
 * thread). */
enum bt_err bt_store_key_create(struct bt_store *s, struct bt_key_patch *p,
                                char key_out[BT_KEY_LEN + 1], struct bt_key_rec *out, char *why,
                                size_t whycap);
enum bt_err bt_store_key_update(struct bt_store *s, const char *id, struct bt_key_patch *p,
                                struct bt_key_rec *out, char *why, size_t whycap);
enum bt_err bt_store_key_revoke(struct bt_store *s, const char *id, struct bt_key_rec *out,
                                char *why, size_t whycap);

#endif
