/* The store: where baton keeps what must survive a restart and be shared by
 * every instance (virtual keys, team and user budgets, the usage ledger). One
 * interface, `struct bt_store`, with one backend per engine: SQLite (sqlite.c,
 * the embedded default) now, PostgreSQL and Redis later behind the same
 * operations. A store handle is used by one thread at a time (the caller
 * serialises); no worker calls it: workers read the in-memory key table
 * (store/keys.h) that a store thread refreshes, and hand admin operations to
 * that thread.
 * See docs/internals/store.md. */
#ifndef BT_STORE_STORE_H
#define BT_STORE_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/err.h"
#include "core/str.h"

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

enum bt_owner_kind { BT_OWNER_TEAM = 0, BT_OWNER_USER };

/* What a key record in a table carries of its team or user: borrowed counters
 * (the key service's, like the key's own `live`; NULL when the key has no such
 * owner), and the owner's budget and limits (-1 each when none). */
struct bt_owner_limits {
    struct bt_key_live *live;
    int64_t budget_micro_usd;
    enum bt_budget_period period;
    int64_t rpm, tpm, concurrency;
};

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
    int64_t rpm, tpm, concurrency;         /* limits per process, -1 unset */
    int64_t budget_micro_usd;              /* budget in millionths of a US dollar, -1 unset */
    enum bt_budget_period budget_period;   /* NONE when no budget */
    int64_t expires_at;                    /* unix seconds, 0 = never */
    char *metadata;                        /* a JSON object's text, NULL when unset */
    int64_t created_at, updated_at;        /* unix seconds */
    int64_t revoked_at;                    /* unix seconds, 0 = active */
    struct bt_key_live *live;              /* in a key table: the key's counters (owned by
                                              the key service, shared by workers); else NULL */
    /* In a key table: the budget, limits and counters of the key's team and
     * user (owners: /admin/teams, /admin/users), by enum bt_owner_kind. */
    struct bt_owner_limits owner[2];
};

/* A team or a user with a budget and limits of its own. */

struct bt_owner_rec {
    enum bt_owner_kind kind;
    char *name;                            /* malloc'd, owned */
    int64_t budget_micro_usd;              /* -1 unset */
    enum bt_budget_period budget_period;   /* NONE when no budget */
    int64_t rpm, tpm, concurrency;         /* limits per process over all its keys, -1 unset */
    int64_t created_at, updated_at;        /* unix seconds */
};

struct bt_owner_list {
    struct bt_owner_rec *items;            /* each freed with bt_owner_list_free */
    size_t n;
};

/* "team" or "user". */
const char *bt_owner_kind_name(enum bt_owner_kind k);
/* The counters' id of an owner ("team:NAME", "user:NAME"): the key_id its spend
 * is summed under in the store's daily spend, into buf (cap >= BT_KEY_MAX_NAME + 6). */
void bt_owner_spend_id(enum bt_owner_kind k, const char *name, char *buf, size_t cap);
void bt_owner_list_free(struct bt_owner_list *l);

/* One line of the usage ledger: what one /v1 request used and cost. Strings
 * point into the same allocation as the record (bt_usage_rec_new), so a record
 * is one malloc and one free. Empty strings for what is unknown. */
struct bt_usage_rec {
    struct bt_usage_rec *next;      /* the ledger's queue */
    struct bt_key_live *team_live, *user_live; /* charged like `live` (below), or NULL */
    int64_t ts_ms;                  /* when the request ended, unix milliseconds */
    const char *request_id;
    const char *key_id;             /* a virtual key's id, or "master" */
    const char *user, *team;        /* the key's owner and team, "" when unset */
    const char *model;              /* the public model name the client asked for */
    const char *provider;           /* the deployment that served it ("" when none) */
    const char *provider_model;
    int64_t input_tokens, cached_tokens, cache_write_tokens, output_tokens, reasoning_tokens;
    int64_t cost_pusd;              /* pico-USD (account/cost.h); 0 when unknown */
    bool cost_known;                /* the deployment had a price */
    bool estimated;                 /* the counts are baton's, not the provider's */
    int status;                     /* the HTTP status the client got (499: it left) */
    struct bt_key_live *live;       /* the key's counters (borrowed from the key service,
                                       which outlives the ledger), NULL for master */
};

/* A record with copies of the strings given (NULL: ""), every number 0.
 * NULL when memory runs out. Freed with free(). */
struct bt_usage_rec *bt_usage_rec_new(const char *request_id, const char *key_id,
                                      const char *user, const char *team, struct bt_str model,
                                      struct bt_str provider, struct bt_str provider_model);

/* Spend of one key (or owner: bt_owner_spend_id) in the current day, week and
 * month (UTC), pico-USD. */
struct bt_spend {
    char key_id[BT_KEY_MAX_NAME + 8];
    int64_t day_pusd, week_pusd, month_pusd;
};

struct bt_spend_list {
    struct bt_spend *items;         /* malloc'd */
    size_t n;
};

/* A usage report's filter and grouping (GET /admin/usage, baton usage). */
enum bt_usage_group {
    BT_UG_NONE = 0, BT_UG_KEY, BT_UG_TEAM, BT_UG_USER, BT_UG_MODEL, BT_UG_DEPLOYMENT, BT_UG_DAY,
};

struct bt_usage_query {
    const char *key_id, *user, *team, *model; /* NULL: any */
    int64_t since_ms;                         /* 0: from the start */
    enum bt_usage_group group;
};

struct bt_usage_row {
    char group[520];                /* the group's value ("" for BT_UG_NONE) */
    int64_t requests;
    int64_t input_tokens, cached_tokens, cache_write_tokens, output_tokens, reasoning_tokens;
    int64_t cost_pusd;
};

struct bt_usage_rows {
    struct bt_usage_row *items;     /* malloc'd */
    size_t n;
};

/* "key", "team", ... and back; false when unknown. */
const char *bt_usage_group_name(enum bt_usage_group g);
bool bt_usage_group_parse(struct bt_str s, enum bt_usage_group *out);

/* Unix milliseconds of the start of the UTC day, week (Monday) and month
 * holding `now_ms`. */
int64_t bt_period_start_ms(enum bt_budget_period p, int64_t now_ms);

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
    /* Appends the records of the list `recs` (borrowed) to the ledger in one
     * transaction, and adds their cost to the daily spend of their key, team
     * and user (bt_owner_spend_id). */
    enum bt_err (*usage_append)(struct bt_store *s, const struct bt_usage_rec *recs);
    /* Each key's spend since the starts of the day, week and month of
     * `now_ms` (keys that spent nothing in the month are left out). */
    enum bt_err (*spend)(struct bt_store *s, int64_t now_ms, struct bt_spend_list *out);
    /* Creates or changes the owner (kind, name): its budget, period and limits. */
    enum bt_err (*owner_put)(struct bt_store *s, const struct bt_owner_rec *o);
    /* BT_ENOTFOUND when there is none. */
    enum bt_err (*owner_get)(struct bt_store *s, enum bt_owner_kind kind, const char *name,
                             struct bt_owner_rec *out);
    enum bt_err (*owner_delete)(struct bt_store *s, enum bt_owner_kind kind, const char *name);
    /* Every owner of both kinds, by kind then name. */
    enum bt_err (*owner_list)(struct bt_store *s, struct bt_owner_list *out);
    /* Deletes at most `limit` ledger rows older than `before_ms`, oldest first,
     * and the daily spend of the UTC days wholly before it; *deleted says how
     * many ledger rows went (fewer than `limit`: none older is left). */
    enum bt_err (*usage_prune)(struct bt_store *s, int64_t before_ms, uint32_t limit,
                               uint64_t *deleted);
    /* The ledger summed per group, filtered; ordered by group. */
    enum bt_err (*usage_report)(struct bt_store *s, const struct bt_usage_query *q,
                                struct bt_usage_rows *out);
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
