/* The PostgreSQL backend of the store, for several baton instances sharing
 * one database: the same operations as the SQLite backend over libpq. The
 * schema is baton's own (tables prefixed `baton_`), created and migrated at
 * open: each migration in its own transaction under a transaction-scoped
 * advisory lock, so instances starting together apply it once; a database
 * written by a newer baton is refused. `changed` reads a generation number
 * that every write bumps in the same transaction, so a key written by any
 * instance (or `baton keys`) is seen at the next poll.
 *
 * The handle is used by one thread (the key service's, or the admin path's
 * caller, which the service serialises), as the interface requires; libpq's
 * blocking calls stay off every worker's request path. */
#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/arena.h"
#include "core/buf.h"
#include "json/json.h"
#include "store/store.h"

/* An arbitrary constant naming baton's migration lock (pg_advisory_xact_lock). */
#define MIGRATION_LOCK 0x6261746f6e6b6579LL

struct pg {
    struct bt_store base; /* first: a struct bt_store * is a struct pg * */
    PGconn *conn;
    int64_t generation;   /* baton_meta.generation last seen; -1 none yet */
};

static const char *const migrations[] = {
    /* 1: virtual keys, and the generation every write bumps */
    "CREATE TABLE baton_keys ("
    " id TEXT PRIMARY KEY,"
    " hash BYTEA NOT NULL UNIQUE,"
    " prefix TEXT NOT NULL,"
    " owner_user TEXT, team TEXT,"
    " models TEXT,"
    " rpm BIGINT, tpm BIGINT, concurrency BIGINT,"
    " budget_micro_usd BIGINT,"
    " budget_period TEXT,"
    " expires_at BIGINT,"
    " metadata TEXT,"
    " created_at BIGINT NOT NULL, updated_at BIGINT NOT NULL,"
    " revoked_at BIGINT);"
    "CREATE TABLE baton_meta (generation BIGINT NOT NULL);"
    "INSERT INTO baton_meta VALUES (0)",
    /* 2: the usage ledger and each key's (team's, user's) spend per UTC day */
    "CREATE TABLE baton_usage ("
    " id BIGSERIAL PRIMARY KEY,"
    " ts_ms BIGINT NOT NULL,"
    " request_id TEXT NOT NULL,"
    " key_id TEXT NOT NULL,"
    " owner_user TEXT NOT NULL, team TEXT NOT NULL,"
    " model TEXT NOT NULL,"
    " provider TEXT NOT NULL, provider_model TEXT NOT NULL,"
    " input_tokens BIGINT NOT NULL, cached_tokens BIGINT NOT NULL,"
    " cache_write_tokens BIGINT NOT NULL, output_tokens BIGINT NOT NULL,"
    " reasoning_tokens BIGINT NOT NULL,"
    " cost_pusd BIGINT NOT NULL,"
    " cost_known BOOLEAN NOT NULL, estimated BOOLEAN NOT NULL,"
    " status INTEGER NOT NULL);"
    "CREATE INDEX baton_usage_ts ON baton_usage(ts_ms);"
    "CREATE INDEX baton_usage_key_ts ON baton_usage(key_id, ts_ms);"
    "CREATE TABLE baton_spend_daily ("
    " key_id TEXT NOT NULL,"
    " day BIGINT NOT NULL,"
    " cost_pusd BIGINT NOT NULL,"
    " requests BIGINT NOT NULL,"
    " PRIMARY KEY (key_id, day))",
    /* 3: teams and users with budgets of their own */
    "CREATE TABLE baton_owners ("
    " kind TEXT NOT NULL,"
    " name TEXT NOT NULL,"
    " budget_micro_usd BIGINT,"
    " budget_period TEXT,"
    " created_at BIGINT NOT NULL, updated_at BIGINT NOT NULL,"
    " PRIMARY KEY (kind, name))",
    /* 4: teams' and users' own limits */
    "ALTER TABLE baton_owners ADD COLUMN rpm BIGINT;"
    "ALTER TABLE baton_owners ADD COLUMN tpm BIGINT;"
    "ALTER TABLE baton_owners ADD COLUMN concurrency BIGINT",
};
#define NMIGRATIONS ((int)(sizeof(migrations) / sizeof(migrations[0])))

static enum bt_err fail(struct pg *q, const char *what)
{
    const char *m = q->conn ? PQerrorMessage(q->conn) : "no connection";
    size_t n = strlen(m);
    while (n && (m[n - 1] == '\n' || m[n - 1] == ' ')) n--;
    snprintf(q->base.errmsg, sizeof(q->base.errmsg), "%s: %.*s", what, (int)n, m);
    return BT_EIO;
}

/* Runs sql (no parameters); BT_OK when it succeeded. */
static enum bt_err run(struct pg *q, const char *sql, const char *what)
{
    PGresult *r = PQexec(q->conn, sql);
    ExecStatusType st = PQresultStatus(r);
    enum bt_err err = st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK ? BT_OK : fail(q, what);
    PQclear(r);
    return err;
}

static enum bt_err migrate(struct pg *q)
{
    enum bt_err err = run(q, "CREATE TABLE IF NOT EXISTS baton_schema_migrations ("
                             " version INTEGER PRIMARY KEY, applied_at BIGINT NOT NULL)",
                          "creating the migrations table");
    /* two instances creating it at once: one fails on the unique catalog row;
     * the table then exists, which is all that is needed */
    if (err) err = run(q, "SELECT 1 FROM baton_schema_migrations LIMIT 1", "the migrations table");
    if (err) return err;
    for (;;) {
        if ((err = run(q, "BEGIN", "BEGIN"))) return err;
        char sql[256];
        snprintf(sql, sizeof(sql), "SELECT pg_advisory_xact_lock(%lld)", (long long)MIGRATION_LOCK);
        if ((err = run(q, sql, "taking the migration lock"))) goto rollback;
        PGresult *r = PQexec(q->conn, "SELECT COALESCE(MAX(version), 0) FROM baton_schema_migrations");
        int v = -1;
        if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1)
            v = (int)strtol(PQgetvalue(r, 0, 0), NULL, 10);
        PQclear(r);
        if (v < 0) {
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
        if (v == NMIGRATIONS) return run(q, "COMMIT", "COMMIT");
        if ((err = run(q, migrations[v], "migrating the schema"))) goto rollback;
        snprintf(sql, sizeof(sql),
                 "INSERT INTO baton_schema_migrations(version, applied_at) VALUES (%d, %lld)",
                 v + 1, (long long)time(NULL));
        if ((err = run(q, sql, "recording a migration"))) goto rollback;
        if ((err = run(q, "COMMIT", "COMMIT"))) goto rollback;
    }
rollback:
    PQclear(PQexec(q->conn, "ROLLBACK"));
    return err;
}

/* ---- parameters and rows ---- */

#define NPARAMS 16

/* The text form of each parameter, NULL for SQL NULL. */
struct params {
    const char *v[NPARAMS];
    int len[NPARAMS], fmt[NPARAMS];
    char num[NPARAMS][24];
    char *models; /* owned */
};

static void p_text(struct params *p, int i, const char *s)
{
    p->v[i] = s;
}

static void p_i64(struct params *p, int i, int64_t v, int64_t unset)
{
    if (v == unset) {
        p->v[i] = NULL;
        return;
    }
    snprintf(p->num[i], sizeof(p->num[i]), "%lld", (long long)v);
    p->v[i] = p->num[i];
}


/* The mutable fields at $first.. (user .. revoked_at, 12 of them). */
static enum bt_err p_fields(struct params *p, const struct bt_key_rec *k, int first)
{
    bool oom;
    p->models = bt_key_models_json(k, &oom);
    if (oom) return BT_ENOMEM;
    p_text(p, first + 0, k->user);
    p_text(p, first + 1, k->team);
    p_text(p, first + 2, p->models);
    p_i64(p, first + 3, k->rpm, -1);
    p_i64(p, first + 4, k->tpm, -1);
    p_i64(p, first + 5, k->concurrency, -1);
    p_i64(p, first + 6, k->budget_micro_usd, -1);
    p_text(p, first + 7, bt_budget_period_name(k->budget_period));
    p_i64(p, first + 8, k->expires_at, 0);
    p_text(p, first + 9, k->metadata);
    p_i64(p, first + 10, k->updated_at, INT64_MIN);
    p_i64(p, first + 11, k->revoked_at, 0);
    return BT_OK;
}

static PGresult *exec_params(struct pg *q, const char *sql, struct params *p, int n)
{
    return PQexecParams(q->conn, sql, n, NULL, p->v, p->len, p->fmt, 0);
}

#define COLUMNS                                                                                \
    "id, hash, prefix, owner_user, team, models, rpm, tpm, concurrency, budget_micro_usd, "    \
    "budget_period, expires_at, metadata, created_at, updated_at, revoked_at"

static char *col_dup(PGresult *r, int row, int i, bool *oom)
{
    if (PQgetisnull(r, row, i)) return NULL;
    char *s = strdup(PQgetvalue(r, row, i));
    if (!s) *oom = true;
    return s;
}

static int64_t col_i64(PGresult *r, int row, int i, int64_t unset)
{
    return PQgetisnull(r, row, i) ? unset : strtoll(PQgetvalue(r, row, i), NULL, 10);
}


/* The hash column of a text-format result is `\x` + hex: decoded in place of
 * PQgetvalue by read_rows' caller. */
static bool unhex_hash(const char *s, unsigned char out[BT_KEY_HASH_LEN])
{
    if (strncmp(s, "\\x", 2) != 0 || strlen(s) != 2 + 2 * BT_KEY_HASH_LEN) return false;
    for (int i = 0; i < BT_KEY_HASH_LEN; i++) {
        unsigned v = 0;
        for (int j = 0; j < 2; j++) {
            char c = s[2 + 2 * i + j];
            v <<= 4;
            if (c >= '0' && c <= '9') v |= (unsigned)(c - '0');
            else if (c >= 'a' && c <= 'f') v |= (unsigned)(c - 'a' + 10);
            else return false;
        }
        out[i] = (unsigned char)v;
    }
    return true;
}

static enum bt_err read_text_row(struct pg *q, PGresult *r, int row, struct bt_key_rec *k)
{
    unsigned char hash[BT_KEY_HASH_LEN];
    if (PQgetisnull(r, row, 1) || !unhex_hash(PQgetvalue(r, row, 1), hash)) {
        snprintf(q->base.errmsg, sizeof(q->base.errmsg), "a key row is damaged");
        return BT_EPARSE;
    }
    enum bt_err err;
    bt_key_rec_init(k);
    bool oom = false;
    snprintf(k->id, sizeof(k->id), "%s", PQgetvalue(r, row, 0));
    memcpy(k->hash, hash, BT_KEY_HASH_LEN);
    snprintf(k->prefix, sizeof(k->prefix), "%s", PQgetvalue(r, row, 2));
    k->user = col_dup(r, row, 3, &oom);
    k->team = col_dup(r, row, 4, &oom);
    if (!PQgetisnull(r, row, 5) && !bt_key_models_parse(k, PQgetvalue(r, row, 5), &oom) && !oom) {
        bt_key_rec_free(k);
        snprintf(q->base.errmsg, sizeof(q->base.errmsg), "key %s: its models are damaged",
                 PQgetvalue(r, row, 0));
        return BT_EPARSE;
    }
    k->rpm = col_i64(r, row, 6, -1);
    k->tpm = col_i64(r, row, 7, -1);
    k->concurrency = col_i64(r, row, 8, -1);
    k->budget_micro_usd = col_i64(r, row, 9, -1);
    if (!PQgetisnull(r, row, 10)) {
        const char *per = PQgetvalue(r, row, 10);
        bt_budget_period_parse(per, strlen(per), &k->budget_period);
    }
    k->expires_at = col_i64(r, row, 11, 0);
    k->metadata = col_dup(r, row, 12, &oom);
    k->created_at = col_i64(r, row, 13, 0);
    k->updated_at = col_i64(r, row, 14, 0);
    k->revoked_at = col_i64(r, row, 15, 0);
    err = oom ? BT_ENOMEM : BT_OK;
    if (err) bt_key_rec_free(k);
    return err;
}

/* The rows of a SELECT of COLUMNS (text results; the hash as bytea hex). */
static PGresult *fetch(struct pg *q, const char *where, const char *id)
{
    char sql[512];
    snprintf(sql, sizeof(sql), "SELECT " COLUMNS " FROM baton_keys %s", where);
    const char *v[1] = {id};
    return PQexecParams(q->conn, sql, id ? 1 : 0, NULL, v, NULL, NULL, 0);
}

/* ---- operations ---- */

/* Ends a write: bumps the generation and commits, or rolls back on `err`. */
static enum bt_err finish_write(struct pg *q, enum bt_err err)
{
    if (!err) err = run(q, "UPDATE baton_meta SET generation = generation + 1", "bumping the generation");
    if (!err) return run(q, "COMMIT", "COMMIT");
    PQclear(PQexec(q->conn, "ROLLBACK"));
    return err;
}

static enum bt_err pg_insert(struct bt_store *s, const struct bt_key_rec *k)
{
    struct pg *q = (struct pg *)s;
    struct params p = {0};
    char hex[2 + 2 * BT_KEY_HASH_LEN + 1] = "\\x";
    for (int i = 0; i < BT_KEY_HASH_LEN; i++) snprintf(hex + 2 + 2 * i, 3, "%02x", k->hash[i]);
    p_text(&p, 0, k->id);
    p_text(&p, 1, hex);
    p_text(&p, 2, k->prefix);
    p_i64(&p, 3, k->created_at, INT64_MIN);
    enum bt_err err = p_fields(&p, k, 4);
    if (!err) err = run(q, "BEGIN", "BEGIN");
    if (!err) {
        PGresult *r = exec_params(q,
                                  "INSERT INTO baton_keys (id, hash, prefix, created_at, owner_user, "
                                  "team, models, rpm, tpm, concurrency, budget_micro_usd, "
                                  "budget_period, expires_at, metadata, updated_at, revoked_at) "
                                  "VALUES ($1, $2::bytea, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, "
                                  "$13, $14, $15, $16)",
                                  &p, 16);
        if (PQresultStatus(r) != PGRES_COMMAND_OK) err = fail(q, "inserting a key");
        PQclear(r);
        err = finish_write(q, err);
    }
    free(p.models);
    return err;
}

static enum bt_err pg_update(struct bt_store *s, const struct bt_key_rec *k)
{
    struct pg *q = (struct pg *)s;
    struct params p = {0};
    p_text(&p, 0, k->id);
    enum bt_err err = p_fields(&p, k, 1);
    if (!err) err = run(q, "BEGIN", "BEGIN");
    if (!err) {
        PGresult *r = exec_params(q,
                                  "UPDATE baton_keys SET owner_user = $2, team = $3, models = $4, "
                                  "rpm = $5, tpm = $6, concurrency = $7, budget_micro_usd = $8, "
                                  "budget_period = $9, expires_at = $10, metadata = $11, "
                                  "updated_at = $12, revoked_at = $13 WHERE id = $1",
                                  &p, 13);
        if (PQresultStatus(r) != PGRES_COMMAND_OK) {
            err = fail(q, "updating a key");
        } else if (strcmp(PQcmdTuples(r), "0") == 0) {
            snprintf(s->errmsg, sizeof(s->errmsg), "no key %s", k->id);
            err = BT_ENOTFOUND;
        }
        PQclear(r);
        err = finish_write(q, err);
    }
    free(p.models);
    return err;
}

static enum bt_err pg_get(struct bt_store *s, const char *id, struct bt_key_rec *out)
{
    struct pg *q = (struct pg *)s;
    PGresult *r = fetch(q, "WHERE id = $1", id);
    enum bt_err err;
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        err = fail(q, "reading a key");
    } else if (PQntuples(r) == 0) {
        snprintf(s->errmsg, sizeof(s->errmsg), "no key %s", id);
        err = BT_ENOTFOUND;
    } else {
        err = read_text_row(q, r, 0, out);
    }
    PQclear(r);
    return err;
}

static enum bt_err pg_list(struct bt_store *s, struct bt_key_list *out)
{
    struct pg *q = (struct pg *)s;
    out->items = NULL;
    out->n = 0;
    PGresult *r = fetch(q, "ORDER BY created_at, id", NULL);
    enum bt_err err = BT_OK;
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        err = fail(q, "listing keys");
    } else {
        int n = PQntuples(r);
        out->items = calloc(n ? (size_t)n : 1, sizeof(*out->items));
        if (!out->items) err = BT_ENOMEM;
        for (int i = 0; i < n && !err; i++) {
            err = read_text_row(q, r, i, &out->items[out->n]);
            if (!err) out->n++;
        }
    }
    PQclear(r);
    if (err) bt_key_list_free(out);
    return err;
}

static enum bt_err pg_changed(struct bt_store *s, bool *changed)
{
    struct pg *q = (struct pg *)s;
    PGresult *r = PQexec(q->conn, "SELECT generation FROM baton_meta");
    enum bt_err err = BT_OK;
    if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1) {
        int64_t g = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
        *changed = g != q->generation;
        q->generation = g;
    } else {
        err = fail(q, "reading the generation");
        /* a dropped connection: try once to get it back for the next poll */
        if (PQstatus(q->conn) == CONNECTION_BAD) PQreset(q->conn);
    }
    PQclear(r);
    return err;
}

/* ---- the ledger ---- */

#define DAY_MS 86400000LL

/* Runs a statement with text parameters; BT_OK when it succeeded. */
static enum bt_err run_params(struct pg *q, const char *sql, int n, const char *const *v,
                              const char *what)
{
    PGresult *r = PQexecParams(q->conn, sql, n, NULL, v, NULL, NULL, 0);
    enum bt_err err = PQresultStatus(r) == PGRES_COMMAND_OK ? BT_OK : fail(q, what);
    PQclear(r);
    return err;
}

/* Rows per INSERT: 19 parameters each, far below PostgreSQL's 65535. */
#define LEDGER_ROWS 500
#define LEDGER_COLS 19

/* Writes up to LEDGER_ROWS records from `*recs` in one statement, advancing
 * *recs past them: the rows, and their cost summed per (key, team or user
 * spend id, day) into the daily spend. One round trip per chunk instead of
 * four per record keeps the writer ahead of a busy gateway. */
static enum bt_err append_chunk(struct pg *q, const struct bt_usage_rec **recs)
{
    char (*num)[10][24] = malloc(sizeof(*num) * LEDGER_ROWS);
    char (*owner)[2][BT_KEY_MAX_NAME + 8] = malloc(sizeof(*owner) * LEDGER_ROWS);
    const char **v = malloc(sizeof(*v) * LEDGER_ROWS * LEDGER_COLS);
    struct bt_buf sql;
    bt_buf_init(&sql, 1u << 20);
    enum bt_err err = num && owner && v ? BT_OK : BT_ENOMEM;
    if (!err)
        err = bt_buf_append_c(&sql, "WITH v (ts_ms, request_id, key_id, owner_user, team, model, "
                                    "provider, provider_model, input_tokens, cached_tokens, "
                                    "cache_write_tokens, output_tokens, reasoning_tokens, "
                                    "cost_pusd, cost_known, estimated, status, team_id, user_id) "
                                    "AS (VALUES ");
    int n = 0;
    for (const struct bt_usage_rec *r = *recs; r && n < LEDGER_ROWS && !err; r = r->next, n++) {
        const int64_t nums[10] = {r->ts_ms, r->input_tokens, r->cached_tokens,
                                  r->cache_write_tokens, r->output_tokens, r->reasoning_tokens,
                                  r->cost_pusd, r->cost_known, r->estimated, r->status};
        for (int i = 0; i < 10; i++)
            snprintf(num[n][i], sizeof(num[n][i]), "%lld", (long long)nums[i]);
        bt_owner_spend_id(BT_OWNER_TEAM, r->team, owner[n][0], sizeof(owner[n][0]));
        bt_owner_spend_id(BT_OWNER_USER, r->user, owner[n][1], sizeof(owner[n][1]));
        const char *row[LEDGER_COLS] = {
            num[n][0], r->request_id, r->key_id, r->user, r->team, r->model, r->provider,
            r->provider_model, num[n][1], num[n][2], num[n][3], num[n][4], num[n][5], num[n][6],
            r->cost_known ? "true" : "false", r->estimated ? "true" : "false", num[n][9],
            r->team[0] ? owner[n][0] : NULL, r->user[0] ? owner[n][1] : NULL};
        memcpy(&v[n * LEDGER_COLS], row, sizeof(row));
        /* the first row's casts type the columns (later rows' parameters follow) */
        static const char *const cast[LEDGER_COLS] = {
            "::bigint", "::text", "::text", "::text", "::text", "::text", "::text", "::text",
            "::bigint", "::bigint", "::bigint", "::bigint", "::bigint", "::bigint",
            "::boolean", "::boolean", "::integer", "::text", "::text"};
        err = bt_buf_append_c(&sql, n ? ", (" : "(");
        for (int i = 0; i < LEDGER_COLS && !err; i++)
            err = bt_buf_printf(&sql, "%s$%d%s", i ? ", " : "", n * LEDGER_COLS + i + 1,
                                n ? "" : cast[i]);
        if (!err) err = bt_buf_append_c(&sql, ")");
    }
    if (!err)
        err = bt_buf_append_c(
            &sql, "), ins AS (INSERT INTO baton_usage (ts_ms, request_id, key_id, owner_user, "
                  "team, model, provider, provider_model, input_tokens, cached_tokens, "
                  "cache_write_tokens, output_tokens, reasoning_tokens, cost_pusd, cost_known, "
                  "estimated, status) SELECT ts_ms, request_id, key_id, owner_user, team, model, "
                  "provider, provider_model, input_tokens, cached_tokens, cache_write_tokens, "
                  "output_tokens, reasoning_tokens, cost_pusd, cost_known, estimated, status "
                  "FROM v) "
                  "INSERT INTO baton_spend_daily (key_id, day, cost_pusd, requests) "
                  "SELECT id, day, sum(cost_pusd), count(*) FROM ("
                  " SELECT key_id, ts_ms / 86400000, cost_pusd FROM v"
                  " UNION ALL SELECT team_id, ts_ms / 86400000, cost_pusd FROM v"
                  " WHERE team_id IS NOT NULL"
                  " UNION ALL SELECT user_id, ts_ms / 86400000, cost_pusd FROM v"
                  " WHERE user_id IS NOT NULL) s (id, day, cost_pusd) GROUP BY id, day"
                  /* rows locked in one order by every instance: no deadlock */
                  " ORDER BY id, day "
                  "ON CONFLICT (key_id, day) DO UPDATE SET "
                  "cost_pusd = baton_spend_daily.cost_pusd + EXCLUDED.cost_pusd, "
                  "requests = baton_spend_daily.requests + EXCLUDED.requests");
    if (!err) err = bt_buf_cstr(&sql);
    if (!err) err = run_params(q, sql.p, n * LEDGER_COLS, v, "writing the ledger");
    else snprintf(q->base.errmsg, sizeof(q->base.errmsg), "writing the ledger: %s", bt_strerror(err));
    for (int i = 0; i < n; i++) *recs = (*recs)->next;
    bt_buf_free(&sql);
    free(v);
    free(owner);
    free(num);
    return err;
}

static enum bt_err pg_usage_append(struct bt_store *s, const struct bt_usage_rec *recs)
{
    struct pg *q = (struct pg *)s;
    enum bt_err err = run(q, "BEGIN", "BEGIN");
    if (err) return err;
    while (recs && !err) err = append_chunk(q, &recs);
    return finish_write(q, err);
}

static enum bt_err pg_usage_prune(struct bt_store *s, int64_t before_ms, uint32_t limit,
                                  uint64_t *deleted)
{
    struct pg *q = (struct pg *)s;
    *deleted = 0;
    char before[24], lim[24], day[24];
    snprintf(before, sizeof(before), "%lld", (long long)before_ms);
    snprintf(lim, sizeof(lim), "%u", limit);
    snprintf(day, sizeof(day), "%lld", (long long)(before_ms / DAY_MS));
    const char *v[2] = {before, lim};
    PGresult *r = PQexecParams(q->conn,
                               "DELETE FROM baton_usage WHERE id IN (SELECT id FROM baton_usage "
                               "WHERE ts_ms < $1 ORDER BY ts_ms LIMIT $2)",
                               2, NULL, v, NULL, NULL, 0);
    enum bt_err err = PQresultStatus(r) == PGRES_COMMAND_OK ? BT_OK : fail(q, "pruning the ledger");
    if (!err) *deleted = strtoull(PQcmdTuples(r), NULL, 10);
    PQclear(r);
    const char *dv[1] = {day};
    if (!err)
        err = run_params(q, "DELETE FROM baton_spend_daily WHERE day < $1", 1, dv,
                         "pruning the daily spend");
    return err;
}

/* The rows of a query with text parameters, or NULL after fail(). */
static PGresult *query(struct pg *q, const char *sql, int n, const char *const *v, const char *what)
{
    PGresult *r = PQexecParams(q->conn, sql, n, NULL, v, NULL, NULL, 0);
    if (PQresultStatus(r) == PGRES_TUPLES_OK) return r;
    fail(q, what);
    PQclear(r);
    return NULL;
}

static int64_t cell(PGresult *r, int row, int col)
{
    return PQgetisnull(r, row, col) ? 0 : strtoll(PQgetvalue(r, row, col), NULL, 10);
}

static enum bt_err pg_spend(struct bt_store *s, int64_t now_ms, struct bt_spend_list *out)
{
    struct pg *q = (struct pg *)s;
    out->items = NULL;
    out->n = 0;
    int64_t d = bt_period_start_ms(BT_PERIOD_DAY, now_ms) / DAY_MS;
    int64_t w = bt_period_start_ms(BT_PERIOD_WEEK, now_ms) / DAY_MS;
    int64_t m = bt_period_start_ms(BT_PERIOD_MONTH, now_ms) / DAY_MS;
    char a[4][24];
    snprintf(a[0], sizeof(a[0]), "%lld", (long long)d);
    snprintf(a[1], sizeof(a[1]), "%lld", (long long)w);
    snprintf(a[2], sizeof(a[2]), "%lld", (long long)m);
    snprintf(a[3], sizeof(a[3]), "%lld", (long long)(w < m ? w : m));
    const char *v[4] = {a[0], a[1], a[2], a[3]};
    PGresult *r = query(q,
                        "SELECT key_id, SUM(CASE WHEN day >= $1 THEN cost_pusd ELSE 0 END), "
                        "SUM(CASE WHEN day >= $2 THEN cost_pusd ELSE 0 END), "
                        "SUM(CASE WHEN day >= $3 THEN cost_pusd ELSE 0 END) "
                        "FROM baton_spend_daily WHERE day >= $4 GROUP BY key_id",
                        4, v, "reading the spend");
    if (!r) return BT_EIO;
    int n = PQntuples(r);
    out->items = calloc(n ? (size_t)n : 1, sizeof(*out->items));
    if (!out->items) {
        PQclear(r);
        return BT_ENOMEM;
    }
    for (int i = 0; i < n; i++) {
        struct bt_spend *sp = &out->items[out->n++];
        snprintf(sp->key_id, sizeof(sp->key_id), "%s", PQgetvalue(r, i, 0));
        sp->day_pusd = cell(r, i, 1);
        sp->week_pusd = cell(r, i, 2);
        sp->month_pusd = cell(r, i, 3);
    }
    PQclear(r);
    return BT_OK;
}

static enum bt_err pg_usage_report(struct bt_store *s, const struct bt_usage_query *qu,
                                   struct bt_usage_rows *out)
{
    static const char *const exprs[] = {
        [BT_UG_NONE] = "''",
        [BT_UG_KEY] = "key_id",
        [BT_UG_TEAM] = "team",
        [BT_UG_USER] = "owner_user",
        [BT_UG_MODEL] = "model",
        [BT_UG_DEPLOYMENT] = ("CASE WHEN provider = '' THEN '' ELSE provider || '/' || "
                              "provider_model END"),
        [BT_UG_DAY] = "to_char(to_timestamp(ts_ms / 1000) AT TIME ZONE 'UTC', 'YYYY-MM-DD')",
    };
    struct pg *q = (struct pg *)s;
    out->items = NULL;
    out->n = 0;
    if ((unsigned)qu->group >= sizeof(exprs) / sizeof(exprs[0])) return BT_EINVAL;
    char sql[1024], since[24];
    snprintf(sql, sizeof(sql),
             "SELECT %s AS g, COUNT(*), SUM(input_tokens), SUM(cached_tokens), "
             "SUM(cache_write_tokens), SUM(output_tokens), SUM(reasoning_tokens), "
             "SUM(cost_pusd) FROM baton_usage WHERE ($1::text IS NULL OR key_id = $1) AND "
             "($2::text IS NULL OR owner_user = $2) AND ($3::text IS NULL OR team = $3) AND "
             "($4::text IS NULL OR model = $4) AND ts_ms >= $5 GROUP BY g ORDER BY g",
             exprs[qu->group]);
    snprintf(since, sizeof(since), "%lld", (long long)qu->since_ms);
    const char *v[5] = {qu->key_id, qu->user, qu->team, qu->model, since};
    PGresult *r = query(q, sql, 5, v, "reading the ledger");
    if (!r) return BT_EIO;
    int n = PQntuples(r);
    out->items = calloc(n ? (size_t)n : 1, sizeof(*out->items));
    if (!out->items) {
        PQclear(r);
        return BT_ENOMEM;
    }
    for (int i = 0; i < n; i++) {
        if (cell(r, i, 1) == 0) continue; /* no rows: no group */
        struct bt_usage_row *u = &out->items[out->n++];
        snprintf(u->group, sizeof(u->group), "%s", PQgetvalue(r, i, 0));
        u->requests = cell(r, i, 1);
        u->input_tokens = cell(r, i, 2);
        u->cached_tokens = cell(r, i, 3);
        u->cache_write_tokens = cell(r, i, 4);
        u->output_tokens = cell(r, i, 5);
        u->reasoning_tokens = cell(r, i, 6);
        u->cost_pusd = cell(r, i, 7);
    }
    PQclear(r);
    return BT_OK;
}

/* ---- owners: teams and users ---- */

static enum bt_err pg_owner_put(struct bt_store *s, const struct bt_owner_rec *o)
{
    struct pg *q = (struct pg *)s;
    char b[24], c[24], u[24], l[3][24];
    snprintf(b, sizeof(b), "%lld", (long long)o->budget_micro_usd);
    snprintf(c, sizeof(c), "%lld", (long long)o->created_at);
    snprintf(u, sizeof(u), "%lld", (long long)o->updated_at);
    const int64_t lim[3] = {o->rpm, o->tpm, o->concurrency};
    for (int i = 0; i < 3; i++) snprintf(l[i], sizeof(l[i]), "%lld", (long long)lim[i]);
    const char *v[9] = {bt_owner_kind_name(o->kind), o->name, o->budget_micro_usd == -1 ? NULL : b,
                        bt_budget_period_name(o->budget_period), c, u,
                        o->rpm == -1 ? NULL : l[0], o->tpm == -1 ? NULL : l[1],
                        o->concurrency == -1 ? NULL : l[2]};
    enum bt_err err = run(q, "BEGIN", "BEGIN");
    if (err) return err;
    err = run_params(q,
                         "INSERT INTO baton_owners (kind, name, budget_micro_usd, budget_period, "
                         "created_at, updated_at, rpm, tpm, concurrency) VALUES ($1, $2, $3, $4, "
                         "$5, $6, $7, $8, $9) ON CONFLICT (kind, name) DO UPDATE SET "
                         "budget_micro_usd = $3, budget_period = $4, updated_at = $6, rpm = $7, "
                         "tpm = $8, concurrency = $9",
                         9, v, "writing an owner");
    return finish_write(q, err);
}

#define OWNER_COLUMNS                                                                          \
    "kind, name, budget_micro_usd, budget_period, created_at, updated_at, rpm, tpm, concurrency"

static bool owner_row(PGresult *r, int i, struct bt_owner_rec *o)
{
    o->kind = strcmp(PQgetvalue(r, i, 0), "user") == 0 ? BT_OWNER_USER : BT_OWNER_TEAM;
    o->name = strdup(PQgetvalue(r, i, 1));
    if (!o->name) return false;
    o->budget_micro_usd = PQgetisnull(r, i, 2) ? -1 : cell(r, i, 2);
    o->budget_period = BT_PERIOD_NONE;
    if (!PQgetisnull(r, i, 3)) {
        const char *per = PQgetvalue(r, i, 3);
        bt_budget_period_parse(per, strlen(per), &o->budget_period);
    }
    o->created_at = cell(r, i, 4);
    o->updated_at = cell(r, i, 5);
    o->rpm = PQgetisnull(r, i, 6) ? -1 : cell(r, i, 6);
    o->tpm = PQgetisnull(r, i, 7) ? -1 : cell(r, i, 7);
    o->concurrency = PQgetisnull(r, i, 8) ? -1 : cell(r, i, 8);
    return true;
}

static enum bt_err pg_owner_list(struct bt_store *s, struct bt_owner_list *out)
{
    struct pg *q = (struct pg *)s;
    out->items = NULL;
    out->n = 0;
    PGresult *r = query(q, "SELECT " OWNER_COLUMNS " FROM baton_owners ORDER BY kind, name", 0,
                        NULL, "listing owners");
    if (!r) return BT_EIO;
    int n = PQntuples(r);
    out->items = calloc(n ? (size_t)n : 1, sizeof(*out->items));
    enum bt_err err = out->items ? BT_OK : BT_ENOMEM;
    for (int i = 0; i < n && !err; i++)
        if (owner_row(r, i, &out->items[out->n])) out->n++;
    PQclear(r);
    return err;
}

static enum bt_err pg_owner_get(struct bt_store *s, enum bt_owner_kind kind, const char *name,
                                struct bt_owner_rec *out)
{
    struct pg *q = (struct pg *)s;
    const char *v[2] = {bt_owner_kind_name(kind), name};
    PGresult *r = query(q, "SELECT " OWNER_COLUMNS " FROM baton_owners WHERE kind = $1 AND name = $2",
                        2, v, "reading an owner");
    if (!r) return BT_EIO;
    enum bt_err err;
    if (PQntuples(r) == 0) {
        snprintf(s->errmsg, sizeof(s->errmsg), "no %s %s", bt_owner_kind_name(kind), name);
        err = BT_ENOTFOUND;
    } else {
        err = owner_row(r, 0, out) ? BT_OK : BT_ENOMEM;
    }
    PQclear(r);
    return err;
}

static enum bt_err pg_owner_delete(struct bt_store *s, enum bt_owner_kind kind, const char *name)
{
    struct pg *q = (struct pg *)s;
    const char *v[2] = {bt_owner_kind_name(kind), name};
    enum bt_err err = run(q, "BEGIN", "BEGIN");
    if (err) return err;
    PGresult *r = PQexecParams(q->conn, "DELETE FROM baton_owners WHERE kind = $1 AND name = $2",
                               2, NULL, v, NULL, NULL, 0);
    if (PQresultStatus(r) != PGRES_COMMAND_OK) {
        err = fail(q, "deleting an owner");
    } else if (strcmp(PQcmdTuples(r), "0") == 0) {
        snprintf(s->errmsg, sizeof(s->errmsg), "no %s %s", bt_owner_kind_name(kind), name);
        err = BT_ENOTFOUND;
    }
    PQclear(r);
    return finish_write(q, err);
}

static void pg_close(struct bt_store *s)
{
    struct pg *q = (struct pg *)s;
    if (q->conn) PQfinish(q->conn);
    free(q);
}

static const struct bt_store_ops postgres_ops = {
    .name = "postgres",
    .key_insert = pg_insert,
    .key_get = pg_get,
    .key_update = pg_update,
    .key_list = pg_list,
    .changed = pg_changed,
    .usage_append = pg_usage_append,
    .usage_prune = pg_usage_prune,
    .spend = pg_spend,
    .usage_report = pg_usage_report,
    .owner_put = pg_owner_put,
    .owner_get = pg_owner_get,
    .owner_delete = pg_owner_delete,
    .owner_list = pg_owner_list,
    .close = pg_close,
};

enum bt_err bt_store_open_postgres(const char *conninfo, struct bt_store **out, char *why,
                                   size_t whycap)
{
    *out = NULL;
    struct pg *q = calloc(1, sizeof(*q));
    if (!q) {
        snprintf(why, whycap, "out of memory");
        return BT_ENOMEM;
    }
    q->base.ops = &postgres_ops;
    q->generation = -1;
    q->conn = PQconnectdb(conninfo);
    enum bt_err err = BT_OK;
    if (!q->conn || PQstatus(q->conn) != CONNECTION_OK) err = fail(q, "cannot connect");
    if (!err) err = run(q, "SET client_min_messages = warning", "setting up the session");
    if (!err) err = migrate(q);
    if (err) {
        char shown[512];
        bt_str_mask_password(conninfo, shown, sizeof(shown));
        snprintf(why, whycap, "%s: %s", shown, q->base.errmsg);
        pg_close(&q->base);
        return err;
    }
    *out = &q->base;
    return BT_OK;
}
