/* The store: where baton keeps what must survive a restart and be shared by
 * every instance (virtual keys today; budgets and the usage ledger next). One
 * interface, `struct bt_store`, with one backend per engine: SQLite (sqlite.c,
 * the embedded default) now, PostgreSQL and Redis later behind the same
 * operations. A store handle is used by one thread at a time (the caller
 * serialises); nothing on a worker's /v1 request path calls it: workers read
 * the in-memory key table (store/keys.h) that a store thread refreshes.
 * See docs/internals/store.md. */
#ifndef BT_STORE_STORE_H
#define BT_STORE_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/err.h"

#define BT_KEY_ID_LEN 20      /* "key_" + 16 hex characters */
#define BT_KEY_HASH_LEN 32    /* SHA-256 */
#define BT_KEY_PREFIX_LEN 12  /* "sk-bt-" + 6 characters, shown in lists */
#define BT_KEY_MAX_MODELS 64
#define BT_KEY_MAX_NAME 256   /* user, team, a model name */
#define BT_KEY_MAX_METADATA 8192

enum bt_budget_period {
    BT_PERIOD_NONE = 0,
    BT_PERIOD_DAY,
    BT_PERIOD_WEEK,
    BT_PERIOD_MONTH,
};

struct bt_key_live; /* store/keys.h: a key's in-process counters */

/* One virtual key as stored: never the key itself, only its SHA-256. Strings
 * and the models array are malloc'd and owned by the record (bt_key_rec_free).
 * Numbers that may be unset use -1 for "unset". */
struct bt_key_rec {
    char id[BT_KEY_ID_LEN + 1];            /* "key_" + 16 hex */
    unsigned char hash[BT_KEY_HASH_LEN];   /* SHA-256 of the whole key */
    char prefix[BT_KEY_PREFIX_LEN + 1];    /* the key's first characters, for display */
    char *user;                            /* owner, NULL when unset */
    char *team;                            /* owner team, NULL when unset */
    char **models;                         /* public model names it may use; NULL = all */
    size_t nmodels;
    int64_t rpm, tpm, concurrency;         /* limits, -1 unset (stored; not enforced yet) */
    int64_t budget_micro_usd;              /* budget in millionths of a US dollar, -1 unset */
    enum bt_budget_period budget_period;   /* NONE when no budget */
    int64_t expires_at;                    /* unix seconds, 0 = never */
    char *metadata;                        /* a JSON object's text, NULL when unset */
    int64_t created_at, updated_at;        /* unix seconds */
    int64_t revoked_at;                    /* unix seconds, 0 = active */
    struct bt_key_live *live;              /* in a key table: the key's counters (owned by
                                              the key service, shared by workers); else NULL */
};

/* A list of records, owned (bt_key_list_free frees each and the array). */
struct bt_key_list {
    struct bt_key_rec *items;
    size_t n;
};

struct bt_store;

/* A backend's operations. Each returns BT_OK or an error with a message in
 * s->errmsg. Records passed in are borrowed; records given out are the
 * caller's. */
struct bt_store_ops {
    const char *name;                                   /* "sqlite" */
    enum bt_err (*key_insert)(struct bt_store *s, const struct bt_key_rec *k);
    /* BT_ENOTFOUND when no key has that id. */
    enum bt_err (*key_get)(struct bt_store *s, const char *id, struct bt_key_rec *out);
    /* Replaces every field but id, hash, prefix and created_at; BT_ENOTFOUND. */
    enum bt_err (*key_update)(struct bt_store *s, const struct bt_key_rec *k);
    /* Every key, revoked ones included, oldest first. */
    enum bt_err (*key_list)(struct bt_store *s, struct bt_key_list *out);
    /* *changed true when any connection (another process included) may have
     * changed the data since the previous call; the first call says true. */
    enum bt_err (*changed)(struct bt_store *s, bool *changed);
    void (*close)(struct bt_store *s);
};

struct bt_store {
    const struct bt_store_ops *ops;
    char errmsg[256];                 /* the last error's text */
};

/* Opens (creating when needed) the SQLite file at `path` in WAL mode with a
 * busy timeout, and brings its schema to the current version (a migration
 * table records each applied step, in one transaction each). On failure *out
 * is NULL and `why` says what went wrong. The handle is for one thread at a
 * time; SQLite itself arbitrates between handles and processes. */
enum bt_err bt_store_open_sqlite(const char *path, struct bt_store **out, char *why, size_t whycap);

/* Connects to PostgreSQL with `conninfo` (a libpq URI such as
 * postgresql://user:pass@host:5432/db, or key=value pairs) and brings baton's
 * tables (baton_*) to the current version, each migration in one transaction
 * under an advisory lock. On failure *out is NULL and `why` says what went
 * wrong (the password masked). */
enum bt_err bt_store_open_postgres(const char *conninfo, struct bt_store **out, char *why,
                                   size_t whycap);

/* Where the store lives: PostgreSQL when `postgres` is set, else the SQLite
 * file `sqlite`. */
struct bt_store_where {
    const char *sqlite;
    const char *postgres;
};
/* Opens the store `w` names (bt_store_open_postgres or bt_store_open_sqlite). */
enum bt_err bt_store_open(const struct bt_store_where *w, struct bt_store **out, char *why,
                          size_t whycap);

/* The schema version this build writes (the migrations it knows). */
int bt_store_schema_version(void);

/* Closes `s` (NULL: no-op). */
void bt_store_close(struct bt_store *s);

/* The models list of k as a JSON array (malloc'd), or NULL (with *oom false)
 * when it has none: the form both backends store it in. */
char *bt_key_models_json(const struct bt_key_rec *k, bool *oom);
/* Parses a stored models array into k->models. False when it is not an array
 * of strings (or memory ran out: *oom). */
bool bt_key_models_parse(struct bt_key_rec *k, const char *text, bool *oom);

/* Frees what `k` owns and zeroes it. */
void bt_key_rec_free(struct bt_key_rec *k);
/* A deep copy of `src` into *dst; BT_ENOMEM (dst then holds nothing). */
enum bt_err bt_key_rec_copy(struct bt_key_rec *dst, const struct bt_key_rec *src);
/* An empty record: every optional number unset. */
void bt_key_rec_init(struct bt_key_rec *k);
void bt_key_list_free(struct bt_key_list *l);

/* "day", "week", "month", or NULL for NONE; and back (false when unknown). */
const char *bt_budget_period_name(enum bt_budget_period p);
bool bt_budget_period_parse(const char *s, size_t len, enum bt_budget_period *out);

#endif
