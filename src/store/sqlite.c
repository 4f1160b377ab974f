/* The SQLite backend of the store: one file, WAL journal (readers never wait
 * for the writer; several processes may share it), a busy timeout so a write
 * from `baton keys` and one from a server wait for each other instead of
 * failing, and a versioned schema: `schema_migrations` records each migration
 * applied, each in its own IMMEDIATE transaction, so two processes opening a
 * new file at once apply it once. A file written by a newer baton (a version
 * this build does not know) is refused rather than guessed at. */
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/arena.h"
#include "core/buf.h"
#include "json/json.h"
#include "store/store.h"

#define BUSY_TIMEOUT_MS 5000

struct sq {
    struct bt_store base;   /* first: a struct bt_store * is a struct sq * */
    sqlite3 *db;
    int64_t data_version;   /* PRAGMA data_version last seen; -1 none yet */
};

/* Each migration takes the schema from version i to i + 1. Append only. */
static const char *const migrations[] = {
    /* 1: virtual keys */
    "CREATE TABLE keys ("
    " id TEXT PRIMARY KEY,"
    " hash BLOB NOT NULL UNIQUE,"
    " prefix TEXT NOT NULL,"
    " user TEXT, team TEXT,"
    " models TEXT,"                 /* JSON array of names; NULL = every model */
    " rpm INTEGER, tpm INTEGER, concurrency INTEGER,"
    " budget_micro_usd INTEGER,"    /* millionths of a US dollar: exact */
    " budget_period TEXT,"
    " expires_at INTEGER,"
    " metadata TEXT,"               /* JSON object */
    " created_at INTEGER NOT NULL, updated_at INTEGER NOT NULL,"
    " revoked_at INTEGER)",
    /* 2: the usage ledger, and each key's spend per UTC day (kept in step with
     * the ledger, in the same transaction, so a budget's period sums at most
     * 31 rows per key instead of scanning the ledger) */
    "CREATE TABLE usage ("
    " id INTEGER PRIMARY KEY,"
    " ts_ms INTEGER NOT NULL,"      /* when the request ended, unix milliseconds */
    " request_id TEXT NOT NULL,"
    " key_id TEXT NOT NULL,"        /* a key's id, or 'master' */
    " user TEXT NOT NULL, team TEXT NOT NULL," /* the key's owner; '' when unset */
    " model TEXT NOT NULL,"         /* the public model asked for */
    " provider TEXT NOT NULL, provider_model TEXT NOT NULL," /* the deployment; '' none */
    " input_tokens INTEGER NOT NULL, cached_tokens INTEGER NOT NULL,"
    " cache_write_tokens INTEGER NOT NULL, output_tokens INTEGER NOT NULL,"
    " reasoning_tokens INTEGER NOT NULL,"
    " cost_pusd INTEGER NOT NULL,"  /* pico-USD: exact */
    " cost_known INTEGER NOT NULL, estimated INTEGER NOT NULL,"
    " status INTEGER NOT NULL);"
    "CREATE INDEX usage_ts ON usage(ts_ms);"
    "CREATE INDEX usage_key_ts ON usage(key_id, ts_ms);"
    "CREATE TABLE spend_daily ("
    " key_id TEXT NOT NULL,"
    " day INTEGER NOT NULL,"        /* UTC days since 1970-01-01 */
    " cost_pusd INTEGER NOT NULL,"
    " requests INTEGER NOT NULL,"
    " PRIMARY KEY (key_id, day)) WITHOUT ROWID",
    /* 3: teams and users with budgets of their own (their spend is in
     * spend_daily under 'team:NAME' and 'user:NAME') */
    "CREATE TABLE owners ("
    " kind TEXT NOT NULL,"          /* 'team' or 'user' */
    " name TEXT NOT NULL,"
    " budget_micro_usd INTEGER,"
    " budget_period TEXT,"
    " created_at INTEGER NOT NULL, updated_at INTEGER NOT NULL,"
    " PRIMARY KEY (kind, name))",
    /* 4: teams' and users' own limits */
    "ALTER TABLE owners ADD COLUMN rpm INTEGER;"
    "ALTER TABLE owners ADD COLUMN tpm INTEGER;"
    "ALTER TABLE owners ADD COLUMN concurrency INTEGER",
};
#define NMIGRATIONS ((int)(sizeof(migrations) / sizeof(migrations[0])))

int bt_store_schema_version(void)
{
    return NMIGRATIONS;
}

static enum bt_err fail(struct sq *q, const char *what)
{
    snprintf(q->base.errmsg, sizeof(q->base.errmsg), "%s: %s", what,
             q->db ? sqlite3_errmsg(q->db) : "no database");
    return BT_EIO;
}

static enum bt_err exec_sql(struct sq *q, const char *sql)
{
    char *msg = NULL;
    if (sqlite3_exec(q->db, sql, NULL, NULL, &msg) != SQLITE_OK) {
        snprintf(q->base.errmsg, sizeof(q->base.errmsg), "%s", msg ? msg : "sqlite error");
        sqlite3_free(msg);
        return BT_EIO;
    }
    return BT_OK;
}

static int current_version(struct sq *q, int *out)
{
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(q->db, "SELECT COALESCE(MAX(version), 0) FROM schema_migrations", -1,
                           &st, NULL) != SQLITE_OK)
        return -1;
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) *out = sqlite3_column_int(st, 0);
    sqlite3_finalize(st);
    return rc == SQLITE_ROW ? 0 : -1;
}

static enum bt_err migrate(struct sq *q)
{
    enum bt_err err = exec_sql(q, "CREATE TABLE IF NOT EXISTS schema_migrations ("
                                  " version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL)");
    if (err) return err;
    for (;;) {
        if ((err = exec_sql(q, "BEGIN IMMEDIATE"))) return err;
        int v = 0;
        if (current_version(q, &v)) {
            err = fail(q, "reading the schema version");
            goto rollback;
        }
        if (v > NMIGRATIONS) {
            snprintf(q->base.errmsg, sizeof(q->base.errmsg),
                     "the store's schema is version %d, newer than this baton knows (%d)", v,
                     NMIGRATIONS);
            err = BT_EINVAL;
            goto rollback;
        }
        if (v == NMIGRATIONS) return exec_sql(q, "COMMIT");
        if ((err = exec_sql(q, migrations[v]))) goto rollback;
        char sql[128];
        snprintf(sql, sizeof(sql),
                 "INSERT INTO schema_migrations(version, applied_at) VALUES (%d, %lld)", v + 1,
                 (long long)time(NULL));
        if ((err = exec_sql(q, sql))) goto rollback;
        if ((err = exec_sql(q, "COMMIT"))) goto rollback;
    }
rollback:
    sqlite3_exec(q->db, "ROLLBACK", NULL, NULL, NULL);
    return err;
}

/* ---- binding and reading a record ---- */

static void bind_text(sqlite3_stmt *st, int i, const char *s)
{
    if (s) sqlite3_bind_text(st, i, s, -1, SQLITE_TRANSIENT);
    else sqlite3_bind_null(st, i);
}

static void bind_i64(sqlite3_stmt *st, int i, int64_t v, int64_t unset)
{
    if (v == unset) sqlite3_bind_null(st, i);
    else sqlite3_bind_int64(st, i, v);
}


/* Binds the mutable fields at ?1..?11 (user .. updated_at, revoked_at). */
static enum bt_err bind_fields(sqlite3_stmt *st, const struct bt_key_rec *k, int first)
{
    bool oom;
    char *models = bt_key_models_json(k, &oom);
    if (oom) return BT_ENOMEM;
    bind_text(st, first + 0, k->user);
    bind_text(st, first + 1, k->team);
    bind_text(st, first + 2, models);
    bind_i64(st, first + 3, k->rpm, -1);
    bind_i64(st, first + 4, k->tpm, -1);
    bind_i64(st, first + 5, k->concurrency, -1);
    bind_i64(st, first + 6, k->budget_micro_usd, -1);
    bind_text(st, first + 7, bt_budget_period_name(k->budget_period));
    bind_i64(st, first + 8, k->expires_at, 0);
    bind_text(st, first + 9, k->metadata);
    sqlite3_bind_int64(st, first + 10, k->updated_at);
    bind_i64(st, first + 11, k->revoked_at, 0);
    free(models);
    return BT_OK;
}

#define COLUMNS                                                                                \
    "id, hash, prefix, user, team, models, rpm, tpm, concurrency, budget_micro_usd, "          \
    "budget_period, expires_at, metadata, created_at, updated_at, revoked_at"

static char *col_dup(sqlite3_stmt *st, int i, bool *oom)
{
    if (sqlite3_column_type(st, i) == SQLITE_NULL) return NULL;
    const unsigned char *t = sqlite3_column_text(st, i);
    int n = sqlite3_column_bytes(st, i);
    char *s = malloc((size_t)n + 1);
    if (!s) {
        *oom = true;
        return NULL;
    }
    memcpy(s, t ? (const char *)t : "", (size_t)n);
    s[n] = 0;
    return s;
}

static int64_t col_i64(sqlite3_stmt *st, int i, int64_t unset)
{
    return sqlite3_column_type(st, i) == SQLITE_NULL ? unset : sqlite3_column_int64(st, i);
}


static enum bt_err read_row(struct sq *q, sqlite3_stmt *st, struct bt_key_rec *k)
{
    bt_key_rec_init(k);
    bool oom = false;
    const unsigned char *id = sqlite3_column_text(st, 0);
    const void *hash = sqlite3_column_blob(st, 1);
    const unsigned char *prefix = sqlite3_column_text(st, 2);
    if (!id || !hash || sqlite3_column_bytes(st, 1) != BT_KEY_HASH_LEN || !prefix) {
        snprintf(q->base.errmsg, sizeof(q->base.errmsg), "a key row is damaged");
        return BT_EPARSE;
    }
    snprintf(k->id, sizeof(k->id), "%s", (const char *)id);
    memcpy(k->hash, hash, BT_KEY_HASH_LEN);
    snprintf(k->prefix, sizeof(k->prefix), "%s", (const char *)prefix);
    k->user = col_dup(st, 3, &oom);
    k->team = col_dup(st, 4, &oom);
    char *models = col_dup(st, 5, &oom);
    if (models && !bt_key_models_parse(k, models, &oom) && !oom) {
        free(models);
        bt_key_rec_free(k);
        snprintf(q->base.errmsg, sizeof(q->base.errmsg), "key %s: its models are damaged",
                 (const char *)id);
        return BT_EPARSE;
    }
    free(models);
    k->rpm = col_i64(st, 6, -1);
    k->tpm = col_i64(st, 7, -1);
    k->concurrency = col_i64(st, 8, -1);
    k->budget_micro_usd = col_i64(st, 9, -1);
    const unsigned char *per = sqlite3_column_text(st, 10);
    if (per) bt_budget_period_parse((const char *)per, strlen((const char *)per), &k->budget_period);
    k->expires_at = col_i64(st, 11, 0);
    k->metadata = col_dup(st, 12, &oom);
    k->created_at = col_i64(st, 13, 0);
    k->updated_at = col_i64(st, 14, 0);
    k->revoked_at = col_i64(st, 15, 0);
    if (oom) {
        bt_key_rec_free(k);
        return BT_ENOMEM;
    }
    return BT_OK;
}

/* ---- operations ---- */

static enum bt_err sq_insert(struct bt_store *s, const struct bt_key_rec *k)
{
    struct sq *q = (struct sq *)s;
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(q->db,
                           "INSERT INTO keys (id, hash, prefix, created_at, user, team, models, "
                           "rpm, tpm, concurrency, budget_micro_usd, budget_period, expires_at, "
                           "metadata, updated_at, revoked_at) VALUES "
                           "(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16)",
                           -1, &st, NULL) != SQLITE_OK)
        return fail(q, "inserting a key");
    sqlite3_bind_text(st, 1, k->id, -1, SQLITE_TRANSIENT);
    sqlite3_bind_blob(st, 2, k->hash, BT_KEY_HASH_LEN, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 3, k->prefix, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(st, 4, k->created_at);
    enum bt_err err = bind_fields(st, k, 5);
    if (!err && sqlite3_step(st) != SQLITE_DONE) err = fail(q, "inserting a key");
    sqlite3_finalize(st);
    return err;
}

static enum bt_err sq_update(struct bt_store *s, const struct bt_key_rec *k)
{
    struct sq *q = (struct sq *)s;
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(q->db,
                           "UPDATE keys SET user = ?2, team = ?3, models = ?4, rpm = ?5, tpm = ?6, "
                           "concurrency = ?7, budget_micro_usd = ?8, budget_period = ?9, "
                           "expires_at = ?10, metadata = ?11, updated_at = ?12, revoked_at = ?13 "
                           "WHERE id = ?1",
                           -1, &st, NULL) != SQLITE_OK)
        return fail(q, "updating a key");
    sqlite3_bind_text(st, 1, k->id, -1, SQLITE_TRANSIENT);
    enum bt_err err = bind_fields(st, k, 2);
    if (!err && sqlite3_step(st) != SQLITE_DONE) err = fail(q, "updating a key");
    if (!err && sqlite3_changes(q->db) == 0) {
        snprintf(s->errmsg, sizeof(s->errmsg), "no key %s", k->id);
        err = BT_ENOTFOUND;
    }
    sqlite3_finalize(st);
    return err;
}

static enum bt_err sq_get(struct bt_store *s, const char *id, struct bt_key_rec *out)
{
    struct sq *q = (struct sq *)s;
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(q->db, "SELECT " COLUMNS " FROM keys WHERE id = ?1", -1, &st, NULL) !=
        SQLITE_OK)
        return fail(q, "reading a key");
    sqlite3_bind_text(st, 1, id, -1, SQLITE_TRANSIENT);
    enum bt_err err;
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        err = read_row(q, st, out);
    } else if (rc == SQLITE_DONE) {
        snprintf(s->errmsg, sizeof(s->errmsg), "no key %s", id);
        err = BT_ENOTFOUND;
    } else {
        err = fail(q, "reading a key");
    }
    sqlite3_finalize(st);
    return err;
}

static enum bt_err sq_list(struct bt_store *s, struct bt_key_list *out)
{
    struct sq *q = (struct sq *)s;
    out->items = NULL;
    out->n = 0;
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(q->db, "SELECT " COLUMNS " FROM keys ORDER BY created_at, id", -1, &st,
                           NULL) != SQLITE_OK)
        return fail(q, "listing keys");
    size_t cap = 0;
    enum bt_err err = BT_OK;
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (out->n == cap) {
            size_t nc = cap ? cap * 2 : 16;
            struct bt_key_rec *ni = realloc(out->items, nc * sizeof(*ni));
            if (!ni) {
                err = BT_ENOMEM;
                break;
            }
            out->items = ni;
            cap = nc;
        }
        if ((err = read_row(q, st, &out->items[out->n]))) break;
        out->n++;
    }
    if (!err && rc != SQLITE_DONE) err = fail(q, "listing keys");
    sqlite3_finalize(st);
    if (err) bt_key_list_free(out);
    return err;
}

static enum bt_err sq_changed(struct bt_store *s, bool *changed)
{
    struct sq *q = (struct sq *)s;
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(q->db, "PRAGMA data_version", -1, &st, NULL) != SQLITE_OK)
        return fail(q, "PRAGMA data_version");
    enum bt_err err = BT_OK;
    if (sqlite3_step(st) == SQLITE_ROW) {
        int64_t v = sqlite3_column_int64(st, 0);
        *changed = v != q->data_version;
        q->data_version = v;
    } else {
        err = fail(q, "PRAGMA data_version");
    }
    sqlite3_finalize(st);
    return err;
}

/* ---- the ledger ---- */

#define DAY_MS 86400000

static enum bt_err sq_usage_append(struct bt_store *s, const struct bt_usage_rec *recs)
{
    struct sq *q = (struct sq *)s;
    sqlite3_stmt *ins = NULL, *day = NULL;
    enum bt_err err = exec_sql(q, "BEGIN IMMEDIATE");
    if (err) return err;
    if (sqlite3_prepare_v2(q->db,
                           "INSERT INTO usage (ts_ms, request_id, key_id, user, team, model, "
                           "provider, provider_model, input_tokens, cached_tokens, "
                           "cache_write_tokens, output_tokens, reasoning_tokens, cost_pusd, "
                           "cost_known, estimated, status) VALUES "
                           "(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, "
                           "?16, ?17)",
                           -1, &ins, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(q->db,
                           "INSERT INTO spend_daily (key_id, day, cost_pusd, requests) "
                           "VALUES (?1, ?2, ?3, 1) ON CONFLICT (key_id, day) DO UPDATE SET "
                           "cost_pusd = cost_pusd + excluded.cost_pusd, requests = requests + 1",
                           -1, &day, NULL) != SQLITE_OK) {
        err = fail(q, "writing the ledger");
        goto out;
    }
    for (const struct bt_usage_rec *r = recs; r; r = r->next) {
        sqlite3_reset(ins);
        sqlite3_bind_int64(ins, 1, r->ts_ms);
        const char *texts[7] = {r->request_id, r->key_id, r->user, r->team,
                                r->model, r->provider, r->provider_model};
        for (int i = 0; i < 7; i++) sqlite3_bind_text(ins, 2 + i, texts[i], -1, SQLITE_STATIC);
        int64_t nums[8] = {r->input_tokens, r->cached_tokens, r->cache_write_tokens,
                           r->output_tokens, r->reasoning_tokens, r->cost_pusd,
                           r->cost_known, r->estimated};
        for (int i = 0; i < 8; i++) sqlite3_bind_int64(ins, 9 + i, nums[i]);
        sqlite3_bind_int(ins, 17, r->status);
        if (sqlite3_step(ins) != SQLITE_DONE) {
            err = fail(q, "writing the ledger");
            goto out;
        }
        char team[BT_KEY_MAX_NAME + 8], user[BT_KEY_MAX_NAME + 8];
        bt_owner_spend_id(BT_OWNER_TEAM, r->team, team, sizeof(team));
        bt_owner_spend_id(BT_OWNER_USER, r->user, user, sizeof(user));
        const char *ids[3] = {r->key_id, r->team[0] ? team : NULL, r->user[0] ? user : NULL};
        for (int i = 0; i < 3; i++) {
            if (!ids[i]) continue;
            sqlite3_reset(day);
            sqlite3_bind_text(day, 1, ids[i], -1, SQLITE_STATIC);
            sqlite3_bind_int64(day, 2, r->ts_ms / DAY_MS);
            sqlite3_bind_int64(day, 3, r->cost_pusd);
            if (sqlite3_step(day) != SQLITE_DONE) {
                err = fail(q, "writing the daily spend");
                goto out;
            }
        }
    }
    err = exec_sql(q, "COMMIT");
out:
    sqlite3_finalize(ins);
    sqlite3_finalize(day);
    if (err) sqlite3_exec(q->db, "ROLLBACK", NULL, NULL, NULL);
    return err;
}

/* Runs `sql` with its integer parameters ?1..?n (n <= 2), no rows; *changes
 * (may be NULL) gets the rows it changed. */
static enum bt_err run_ints(struct sq *q, const char *sql, const int64_t *v, int n,
                            uint64_t *changes, const char *what)
{
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(q->db, sql, -1, &st, NULL) != SQLITE_OK) return fail(q, what);
    for (int i = 0; i < n; i++) sqlite3_bind_int64(st, i + 1, v[i]);
    enum bt_err err = sqlite3_step(st) == SQLITE_DONE ? BT_OK : fail(q, what);
    if (!err && changes) *changes = (uint64_t)sqlite3_changes(q->db);
    sqlite3_finalize(st);
    return err;
}

static enum bt_err sq_usage_prune(struct bt_store *s, int64_t before_ms, uint32_t limit,
                                  uint64_t *deleted)
{
    struct sq *q = (struct sq *)s;
    *deleted = 0;
    const int64_t v[2] = {before_ms, limit}, day = before_ms / DAY_MS;
    enum bt_err err = run_ints(q,
                               "DELETE FROM usage WHERE id IN (SELECT id FROM usage WHERE "
                               "ts_ms < ?1 ORDER BY ts_ms LIMIT ?2)",
                               v, 2, deleted, "pruning the ledger");
    if (!err)
        err = run_ints(q, "DELETE FROM spend_daily WHERE day < ?1", &day, 1, NULL,
                       "pruning the daily spend");
    return err;
}

/* Steps `st` to its end, each row read by `row` into a new element of the
 * growing array *items (elements of `size` bytes, *n of them); finalizes st.
 * On failure the array is freed and *n is 0. */
static enum bt_err read_rows(struct sq *q, sqlite3_stmt *st, void **items, size_t *n,
                             size_t size, bool (*row)(sqlite3_stmt *st, void *item),
                             const char *what)
{
    *items = NULL;
    *n = 0;
    size_t cap = 0;
    enum bt_err err = BT_OK;
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (*n == cap) {
            size_t nc = cap ? cap * 2 : 16;
            void *ni = realloc(*items, nc * size);
            if (!ni) {
                err = BT_ENOMEM;
                break;
            }
            *items = ni;
            cap = nc;
        }
        if (row(st, (char *)*items + *n * size)) ++*n;
    }
    if (!err && rc != SQLITE_DONE) err = fail(q, what);
    sqlite3_finalize(st);
    if (err) {
        free(*items);
        *items = NULL;
        *n = 0;
    }
    return err;
}

static bool spend_row(sqlite3_stmt *st, void *item)
{
    struct bt_spend *sp = item;
    const unsigned char *id = sqlite3_column_text(st, 0);
    snprintf(sp->key_id, sizeof(sp->key_id), "%s", id ? (const char *)id : "");
    sp->day_pusd = sqlite3_column_int64(st, 1);
    sp->week_pusd = sqlite3_column_int64(st, 2);
    sp->month_pusd = sqlite3_column_int64(st, 3);
    return true;
}

static bool report_row(sqlite3_stmt *st, void *item)
{
    if (sqlite3_column_int64(st, 1) == 0) return false; /* no rows: no group */
    struct bt_usage_row *u = item;
    const unsigned char *g = sqlite3_column_text(st, 0);
    snprintf(u->group, sizeof(u->group), "%s", g ? (const char *)g : "");
    u->requests = sqlite3_column_int64(st, 1);
    u->input_tokens = sqlite3_column_int64(st, 2);
    u->cached_tokens = sqlite3_column_int64(st, 3);
    u->cache_write_tokens = sqlite3_column_int64(st, 4);
    u->output_tokens = sqlite3_column_int64(st, 5);
    u->reasoning_tokens = sqlite3_column_int64(st, 6);
    u->cost_pusd = sqlite3_column_int64(st, 7);
    return true;
}

static enum bt_err sq_spend(struct bt_store *s, int64_t now_ms, struct bt_spend_list *out)
{
    struct sq *q = (struct sq *)s;
    out->items = NULL;
    out->n = 0;
    int64_t d = bt_period_start_ms(BT_PERIOD_DAY, now_ms) / DAY_MS;
    int64_t w = bt_period_start_ms(BT_PERIOD_WEEK, now_ms) / DAY_MS;
    int64_t m = bt_period_start_ms(BT_PERIOD_MONTH, now_ms) / DAY_MS;
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(q->db,
                           "SELECT key_id, SUM(CASE WHEN day >= ?1 THEN cost_pusd ELSE 0 END), "
                           "SUM(CASE WHEN day >= ?2 THEN cost_pusd ELSE 0 END), "
                           "SUM(CASE WHEN day >= ?3 THEN cost_pusd ELSE 0 END) "
                           "FROM spend_daily WHERE day >= ?4 GROUP BY key_id",
                           -1, &st, NULL) != SQLITE_OK)
        return fail(q, "reading the spend");
    sqlite3_bind_int64(st, 1, d);
    sqlite3_bind_int64(st, 2, w);
    sqlite3_bind_int64(st, 3, m);
    sqlite3_bind_int64(st, 4, w < m ? w : m);
    void *items = NULL;
    enum bt_err err = read_rows(q, st, &items, &out->n, sizeof(*out->items), spend_row, "reading the spend");
    out->items = items;
    return err;
}

static enum bt_err sq_usage_report(struct bt_store *s, const struct bt_usage_query *qu,
                                   struct bt_usage_rows *out)
{
    static const char *const exprs[] = {
        [BT_UG_NONE] = "''",
        [BT_UG_KEY] = "key_id",
        [BT_UG_TEAM] = "team",
        [BT_UG_USER] = "user",
        [BT_UG_MODEL] = "model",
        [BT_UG_DEPLOYMENT] = ("CASE WHEN provider = '' THEN '' ELSE provider || '/' || "
                              "provider_model END"),
        [BT_UG_DAY] = "strftime('%Y-%m-%d', ts_ms / 1000, 'unixepoch')",
    };
    struct sq *q = (struct sq *)s;
    out->items = NULL;
    out->n = 0;
    if ((unsigned)qu->group >= sizeof(exprs) / sizeof(exprs[0])) return BT_EINVAL;
    char sql[1024];
    snprintf(sql, sizeof(sql),
             "SELECT %s AS g, COUNT(*), SUM(input_tokens), SUM(cached_tokens), "
             "SUM(cache_write_tokens), SUM(output_tokens), SUM(reasoning_tokens), "
             "SUM(cost_pusd) FROM usage WHERE (?1 IS NULL OR key_id = ?1) AND "
             "(?2 IS NULL OR user = ?2) AND (?3 IS NULL OR team = ?3) AND "
             "(?4 IS NULL OR model = ?4) AND ts_ms >= ?5 GROUP BY g ORDER BY g",
             exprs[qu->group]);
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(q->db, sql, -1, &st, NULL) != SQLITE_OK)
        return fail(q, "reading the ledger");
    bind_text(st, 1, qu->key_id);
    bind_text(st, 2, qu->user);
    bind_text(st, 3, qu->team);
    bind_text(st, 4, qu->model);
    sqlite3_bind_int64(st, 5, qu->since_ms);
    void *items = NULL;
    enum bt_err err = read_rows(q, st, &items, &out->n, sizeof(*out->items), report_row, "reading the ledger");
    out->items = items;
    return err;
}

/* ---- owners: teams and users ---- */

static enum bt_err sq_owner_put(struct bt_store *s, const struct bt_owner_rec *o)
{
    struct sq *q = (struct sq *)s;
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(q->db,
                           "INSERT INTO owners (kind, name, budget_micro_usd, budget_period, "
                           "created_at, updated_at, rpm, tpm, concurrency) VALUES "
                           "(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9) "
                           "ON CONFLICT (kind, name) DO UPDATE SET budget_micro_usd = ?3, "
                           "budget_period = ?4, updated_at = ?6, rpm = ?7, tpm = ?8, "
                           "concurrency = ?9",
                           -1, &st, NULL) != SQLITE_OK)
        return fail(q, "writing an owner");
    sqlite3_bind_text(st, 1, bt_owner_kind_name(o->kind), -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, o->name, -1, SQLITE_TRANSIENT);
    bind_i64(st, 3, o->budget_micro_usd, -1);
    bind_text(st, 4, bt_budget_period_name(o->budget_period));
    sqlite3_bind_int64(st, 5, o->created_at);
    sqlite3_bind_int64(st, 6, o->updated_at);
    bind_i64(st, 7, o->rpm, -1);
    bind_i64(st, 8, o->tpm, -1);
    bind_i64(st, 9, o->concurrency, -1);
    enum bt_err err = sqlite3_step(st) == SQLITE_DONE ? BT_OK : fail(q, "writing an owner");
    sqlite3_finalize(st);
    return err;
}

static bool owner_row(sqlite3_stmt *st, void *item)
{
    struct bt_owner_rec *o = item;
    const unsigned char *kind = sqlite3_column_text(st, 0), *name = sqlite3_column_text(st, 1);
    o->kind = kind && strcmp((const char *)kind, "user") == 0 ? BT_OWNER_USER : BT_OWNER_TEAM;
    o->name = strdup(name ? (const char *)name : "");
    if (!o->name) return false; /* left out: the owner then has no budget until the next read */
    o->budget_micro_usd = col_i64(st, 2, -1);
    o->budget_period = BT_PERIOD_NONE;
    const unsigned char *per = sqlite3_column_text(st, 3);
    if (per) bt_budget_period_parse((const char *)per, strlen((const char *)per), &o->budget_period);
    o->created_at = col_i64(st, 4, 0);
    o->updated_at = col_i64(st, 5, 0);
    o->rpm = col_i64(st, 6, -1);
    o->tpm = col_i64(st, 7, -1);
    o->concurrency = col_i64(st, 8, -1);
    return true;
}

#define OWNER_COLUMNS                                                                          \
    "kind, name, budget_micro_usd, budget_period, created_at, updated_at, rpm, tpm, concurrency"

static enum bt_err sq_owner_list(struct bt_store *s, struct bt_owner_list *out)
{
    struct sq *q = (struct sq *)s;
    out->items = NULL;
    out->n = 0;
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(q->db, "SELECT " OWNER_COLUMNS " FROM owners ORDER BY kind, name", -1,
                           &st, NULL) != SQLITE_OK)
        return fail(q, "listing owners");
    void *items = NULL;
    enum bt_err err = read_rows(q, st, &items, &out->n, sizeof(*out->items), owner_row,
                                "listing owners");
    out->items = items;
    return err;
}

static enum bt_err sq_owner_get(struct bt_store *s, enum bt_owner_kind kind, const char *name,
                                struct bt_owner_rec *out)
{
    struct sq *q = (struct sq *)s;
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(q->db,
                           "SELECT " OWNER_COLUMNS " FROM owners WHERE kind = ?1 AND name = ?2",
                           -1, &st, NULL) != SQLITE_OK)
        return fail(q, "reading an owner");
    sqlite3_bind_text(st, 1, bt_owner_kind_name(kind), -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, name, -1, SQLITE_TRANSIENT);
    enum bt_err err;
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        err = owner_row(st, out) ? BT_OK : BT_ENOMEM;
    } else if (rc == SQLITE_DONE) {
        snprintf(s->errmsg, sizeof(s->errmsg), "no %s %s", bt_owner_kind_name(kind), name);
        err = BT_ENOTFOUND;
    } else {
        err = fail(q, "reading an owner");
    }
    sqlite3_finalize(st);
    return err;
}

static enum bt_err sq_owner_delete(struct bt_store *s, enum bt_owner_kind kind, const char *name)
{
    struct sq *q = (struct sq *)s;
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(q->db, "DELETE FROM owners WHERE kind = ?1 AND name = ?2", -1, &st,
                           NULL) != SQLITE_OK)
        return fail(q, "deleting an owner");
    sqlite3_bind_text(st, 1, bt_owner_kind_name(kind), -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, name, -1, SQLITE_TRANSIENT);
    enum bt_err err = sqlite3_step(st) == SQLITE_DONE ? BT_OK : fail(q, "deleting an owner");
    if (!err && sqlite3_changes(q->db) == 0) {
        snprintf(s->errmsg, sizeof(s->errmsg), "no %s %s", bt_owner_kind_name(kind), name);
        err = BT_ENOTFOUND;
    }
    sqlite3_finalize(st);
    return err;
}

static void sq_close(struct bt_store *s)
{
    struct sq *q = (struct sq *)s;
    if (q->db) sqlite3_close(q->db);
    free(q);
}

static const struct bt_store_ops sqlite_ops = {
    .name = "sqlite",
    .key_insert = sq_insert,
    .key_get = sq_get,
    .key_update = sq_update,
    .key_list = sq_list,
    .changed = sq_changed,
    .usage_append = sq_usage_append,
    .usage_prune = sq_usage_prune,
    .spend = sq_spend,
    .usage_report = sq_usage_report,
    .owner_put = sq_owner_put,
    .owner_get = sq_owner_get,
    .owner_delete = sq_owner_delete,
    .owner_list = sq_owner_list,
    .close = sq_close,
};

enum bt_err bt_store_open_sqlite(const char *path, struct bt_store **out, char *why, size_t whycap)
{
    *out = NULL;
    struct sq *q = calloc(1, sizeof(*q));
    if (!q) {
        snprintf(why, whycap, "out of memory");
        return BT_ENOMEM;
    }
    q->base.ops = &sqlite_ops;
    q->data_version = -1;
    enum bt_err err = BT_OK;
    if (sqlite3_open_v2(path, &q->db,
                        SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_FULLMUTEX,
                        NULL) != SQLITE_OK) {
        err = fail(q, "cannot open");
        goto out;
    }
    sqlite3_busy_timeout(q->db, BUSY_TIMEOUT_MS);
    /* WAL: readers and the writer do not block each other, across processes too. */
    if ((err = exec_sql(q, "PRAGMA journal_mode=WAL"))) goto out;
    if ((err = exec_sql(q, "PRAGMA synchronous=NORMAL"))) goto out;
    if ((err = exec_sql(q, "PRAGMA foreign_keys=ON"))) goto out;
    err = migrate(q);
out:
    if (err) {
        snprintf(why, whycap, "%s: %s", path, q->base.errmsg);
        sq_close(&q->base);
        return err;
    }
    *out = &q->base;
    return BT_OK;
}
