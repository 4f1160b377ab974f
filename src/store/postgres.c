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
