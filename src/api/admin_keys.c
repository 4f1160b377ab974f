/* The admin API's virtual keys (docs/governance.md): POST /admin/keys creates
 * one (201, the key shown this once), GET /admin/keys lists them (prefixes
 * only), GET / PATCH / DELETE /admin/keys/ID reads, changes, revokes one; the
 * owners' budgets (/admin/teams, /admin/users) and the usage reports
 * (/admin/usage). Only reached with the master key (dispatch.c checks it).
 *
 * The worker never waits on the store: the request is judged here, then its
 * store work goes to the key service's store thread as a job (an admin_call,
 * bt_keys_submit) and the answer is written when the job comes back to this
 * loop. The client may leave meanwhile (the abort callback lets go of the
 * request; the job's result is then dropped), and a store that does not answer
 * within store.admin_timeout gets the client a 504 (the job still runs, and a
 * write may still land). docs/internals/store.md says more. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "account/usage.h"
#include "api/api.h"
#include "store/keys.h"

enum admin_op {
    OP_KEY_LIST, OP_KEY_CREATE, OP_KEY_GET, OP_KEY_UPDATE, OP_KEY_REVOKE,
    OP_USAGE,
    OP_OWNER_LIST, OP_OWNER_GET, OP_OWNER_DELETE, OP_OWNER_PUT, OP_OWNER_CREATE,
};

/* One admin request's store work. Its inputs are copies (the request may go
 * while the job runs); the store thread fills the results; the loop's fields
 * are touched only on the worker's loop. */
struct admin_call {
    struct bt_keys_job job;          /* first: the job is the call */
    enum admin_op op;
    /* in */
    char id[BT_KEY_ID_LEN + 1];      /* a key's id */
    struct bt_key_patch patch;       /* create, update, owner put (has_patch) */
    bool has_patch;
    enum bt_owner_kind kind;
    char *name;                      /* an owner's name, owned */
    struct bt_usage_query q;         /* its strings point into qtext */
    char *qtext;                     /* owned */
    /* out (the store thread's until the job is back) */
    enum bt_err err;
    char why[400];
    char key[BT_KEY_LEN + 1];        /* a new key, shown once */
    struct bt_key_rec rec;
    struct bt_key_list keys;
    struct bt_owner_list owners;     /* a list, or the one owner asked for */
    int64_t *spent;                  /* per owner in `owners`, as this process counts it */
    struct bt_usage_rows rows;
    /* the loop's */
    struct bt_http_req *req;         /* NULL once answered, timed out or gone */
    const struct bt_frontend *fe;
    struct bt_worker *w;
    uv_timer_t *timer;               /* the admin timeout; NULL once closed */
};

static void call_free(struct admin_call *c)
{
    if (c->has_patch) bt_key_patch_free(&c->patch);
    free(c->name);
    free(c->qtext);
    memset(c->key, 0, sizeof(c->key));
    bt_key_rec_free(&c->rec);
    bt_key_list_free(&c->keys);
    bt_owner_list_free(&c->owners);
    free(c->spent);
    free(c->rows.items);
    free(c);
}

static void answer_key(struct bt_http_req *req, int status, const struct bt_key_rec *k,
                       const char *key)
{
    struct bt_buf b;
    bt_buf_init(&b, 64u << 10);
    struct bt_jw jw;
    bt_jw_init(&jw, &b);
    bt_key_write_json(&jw, k, (int64_t)time(NULL), key);
    if (jw.err) bt_api_json_logged(req, 500, BT_STR("{\"error\":{\"message\":\"out of memory\"}}"));
    else bt_api_json_logged(req, status, bt_buf_str(&b));
    bt_buf_free(&b);
}

static void answer_list(struct bt_http_req *req, const struct bt_frontend *fe,
                        const struct bt_key_list *l)
{
    struct bt_buf b;
    bt_buf_init(&b, 256u << 20);
    struct bt_jw jw;
    bt_jw_init(&jw, &b);
    int64_t now = (int64_t)time(NULL);
    bt_jw_obj_begin(&jw);
    bt_jw_key(&jw, "object");
    bt_jw_cstr(&jw, "list");
    bt_jw_key(&jw, "data");
    bt_jw_arr_begin(&jw);
    for (size_t i = 0; i < l->n; i++) bt_key_write_json(&jw, &l->items[i], now, NULL);
    bt_jw_arr_end(&jw);
    bt_jw_obj_end(&jw);
    if (jw.err) bt_api_fail(req, fe, 500, NULL, NULL, "the list could not be written", BT_STR_NULL);
    else bt_api_json_logged(req, 200, bt_buf_str(&b));
    bt_buf_free(&b);
}

static void store_failed(struct bt_http_req *req, const struct bt_frontend *fe, enum bt_err err,
                         const char *id, const char *why)
{
    char m[400];
    if (err == BT_ENOTFOUND) {
        snprintf(m, sizeof(m), "No key with id '%s'.", id ? id : "");
        bt_api_fail(req, fe, 404, "key_not_found", NULL, m, BT_STR_NULL);
    } else if (err == BT_EBUSY) {
        bt_api_fail(req, fe, 409, "key_revoked", NULL, why, BT_STR_NULL);
    } else if (err == BT_EINVAL) {
        bt_api_fail(req, fe, 400, "invalid_key_field", NULL, why, BT_STR_NULL);
    } else {
        snprintf(m, sizeof(m), "The key store failed: %s", why);
        bt_api_fail(req, fe, 500, "store_error", NULL, m, BT_STR_NULL);
    }
}

/* The id in /admin/keys/ID: "key_" and 16 lowercase hex digits. */
static bool id_ok(struct bt_str id)
{
    if (id.len != BT_KEY_ID_LEN || !bt_str_starts_with(id, BT_STR("key_"))) return false;
    for (size_t i = 4; i < id.len; i++)
        if (!((id.p[i] >= '0' && id.p[i] <= '9') || (id.p[i] >= 'a' && id.p[i] <= 'f')))
            return false;
    return true;
}

static void method_not_allowed(struct bt_http_req *req, const struct bt_frontend *fe,
                               const char *allowed)
{
    char m[200];
    snprintf(m, sizeof(m), "Method %.*s is not allowed here (allowed: %s).",
             (int)(req->method.len > 20 ? 20 : req->method.len), req->method.p, allowed);
    bt_api_fail(req, fe, 405, "method_not_allowed", NULL, m, BT_STR_NULL);
}

/* ---- owners' JSON ---- */

static void write_owner(struct bt_jw *w, const struct bt_owner_rec *o, int64_t spent)
{
    bt_jw_obj_begin(w);
    bt_jw_key(w, "object");
    bt_jw_cstr(w, bt_owner_kind_name(o->kind));
    bt_jw_key(w, "name");
    bt_jw_cstr(w, o->name);
    bt_jw_key(w, "budget_usd");
    if (o->budget_micro_usd < 0) bt_jw_null(w);
    else bt_jw_decimal(w, o->budget_micro_usd, 6);
    bt_jw_key(w, "budget_period");
    const char *per = bt_budget_period_name(o->budget_period);
    if (per) bt_jw_cstr(w, per);
    else bt_jw_null(w);
    const char *lk[3] = {"rpm", "tpm", "concurrency"};
    int64_t lvals[3] = {o->rpm, o->tpm, o->concurrency};
    for (int i = 0; i < 3; i++) {
        bt_jw_key(w, lk[i]);
        if (lvals[i] < 0) bt_jw_null(w);
        else bt_jw_int(w, lvals[i]);
    }
    char sp[BT_DECIMAL_MAX];
    bt_str_decimal(sp, sizeof(sp), spent, 12);
    bt_jw_key(w, "spent_usd"); /* in the current period, as this instance counts it */
    bt_jw_cstr(w, sp);
    bt_jw_key(w, "created_at");
    bt_jw_int(w, o->created_at);
    bt_jw_key(w, "updated_at");
    bt_jw_int(w, o->updated_at);
    bt_jw_obj_end(w);
}

/* The owners of kind `kind` in `l` (spent[i]: what l->items[i] spent), as a
 * list object or (list false) the first one alone. */
static void answer_owners(struct bt_http_req *req, const struct bt_frontend *fe,
                          const struct bt_owner_list *l, const int64_t *spent,
                          enum bt_owner_kind kind, bool list, int status)
{
    struct bt_buf b;
    bt_buf_init(&b, 256u << 20);
    struct bt_jw jw;
    bt_jw_init(&jw, &b);
    if (list) {
        bt_jw_obj_begin(&jw);
        bt_jw_key(&jw, "object");
        bt_jw_cstr(&jw, "list");
        bt_jw_key(&jw, "data");
        bt_jw_arr_begin(&jw);
    }
    for (size_t i = 0; i < l->n; i++)
        if (l->items[i].kind == kind) write_owner(&jw, &l->items[i], spent ? spent[i] : 0);
    if (list) {
        bt_jw_arr_end(&jw);
        bt_jw_obj_end(&jw);
    }
    if (jw.err) bt_api_fail(req, fe, 500, NULL, NULL, "the answer could not be written", BT_STR_NULL);
    else bt_api_json_logged(req, status, bt_buf_str(&b));
    bt_buf_free(&b);
}

/* ---- on the store thread ---- */

/* Each owner's spend in c->owners, into c->spent (left NULL when memory runs
 * out: the answer then says 0). */
static void owners_spent(struct bt_keys *k, struct admin_call *c)
{
    if (!c->owners.n || !(c->spent = calloc(c->owners.n, sizeof(*c->spent)))) return;
    for (size_t i = 0; i < c->owners.n; i++)
        c->spent[i] = bt_keys_owner_spent(k, c->owners.items[i].kind, c->owners.items[i].name);
}

/* c->owners as the one owner (kind, name) read back. */
static enum bt_err owner_read(struct bt_keys *k, struct admin_call *c)
{
    struct bt_owner_rec o;
    enum bt_err err = bt_keys_owner_get(k, c->kind, c->name, &o, c->why, sizeof(c->why));
    if (err) return err;
    if (!(c->owners.items = malloc(sizeof(o)))) {
        free(o.name);
        snprintf(c->why, sizeof(c->why), "out of memory");
        return BT_ENOMEM;
    }
    c->owners.items[0] = o;
    c->owners.n = 1;
    return BT_OK;
}

/* PUT/PATCH of an owner: what it had, the fields the request sets, written. */
static enum bt_err owner_put(struct bt_keys *k, struct admin_call *c)
{
    const struct bt_key_patch *p = &c->patch;
    struct bt_owner_rec o = {.kind = c->kind, .budget_micro_usd = -1, .rpm = -1, .tpm = -1,
                             .concurrency = -1};
    struct bt_owner_rec old;
    if (!bt_keys_owner_get(k, c->kind, c->name, &old, c->why, sizeof(c->why))) {
        o = old;
        free(old.name);
    }
    if (p->set & BT_KF_BUDGET) o.budget_micro_usd = p->v.budget_micro_usd;
    if (p->set & BT_KF_PERIOD) o.budget_period = p->v.budget_period;
    if (p->set & BT_KF_RPM) o.rpm = p->v.rpm;
    if (p->set & BT_KF_TPM) o.tpm = p->v.tpm;
    if (p->set & BT_KF_CONCURRENCY) o.concurrency = p->v.concurrency;
    if (o.budget_micro_usd >= 0 && o.budget_period == BT_PERIOD_NONE)
        o.budget_period = BT_PERIOD_MONTH;
    o.name = c->name; /* borrowed for the call */
    enum bt_err err = bt_keys_owner_put(k, &o, c->why, sizeof(c->why));
    return err ? err : owner_read(k, c);
}

static void call_run(struct bt_keys *k, struct bt_keys_job *j)
{
    struct admin_call *c = (struct admin_call *)j;
    const size_t wc = sizeof(c->why);
    switch (c->op) {
    case OP_KEY_LIST: c->err = bt_keys_list(k, &c->keys, c->why, wc); break;
    case OP_KEY_CREATE: c->err = bt_keys_create(k, &c->patch, c->key, &c->rec, c->why, wc); break;
    case OP_KEY_GET: c->err = bt_keys_get(k, c->id, &c->rec, c->why, wc); break;
    case OP_KEY_UPDATE: c->err = bt_keys_update(k, c->id, &c->patch, &c->rec, c->why, wc); break;
    case OP_KEY_REVOKE: c->err = bt_keys_revoke(k, c->id, &c->rec, c->why, wc); break;
    case OP_USAGE: c->err = bt_keys_usage(k, &c->q, &c->rows, c->why, wc); break;
    case OP_OWNER_LIST:
        if (!(c->err = bt_keys_owner_list(k, &c->owners, c->why, wc))) owners_spent(k, c);
        break;
    case OP_OWNER_GET:
    case OP_OWNER_DELETE:
        c->err = owner_read(k, c);
        if (!c->err && c->op == OP_OWNER_DELETE)
            c->err = bt_keys_owner_delete(k, c->kind, c->name, c->why, wc);
        if (!c->err) owners_spent(k, c);
        break;
    case OP_OWNER_PUT:
        if (!(c->err = owner_put(k, c))) owners_spent(k, c);
        break;
    case OP_OWNER_CREATE: /* POST: a new one only */
        c->err = owner_read(k, c);
        if (!c->err) {
            snprintf(c->why, wc, "The %s '%.200s' exists already; PATCH /admin/%ss/NAME changes it.",
                     bt_owner_kind_name(c->kind), c->name, bt_owner_kind_name(c->kind));
            c->err = BT_EBUSY;
        } else if (c->err == BT_ENOTFOUND && !(c->err = owner_put(k, c))) {
            owners_spent(k, c);
        }
        break;
    }
}

/* ---- back on the worker's loop ---- */

static void usage_answer(struct bt_http_req *req, struct admin_call *c)
{
    struct bt_buf b;
    bt_buf_init(&b, 256u << 20);
    struct bt_jw jw;
    bt_jw_init(&jw, &b);
    bt_usage_write_json(&jw, &c->q, &c->rows);
    if (jw.err)
        bt_api_fail(req, c->fe, 500, NULL, NULL, "the report could not be written", BT_STR_NULL);
    else bt_api_json_logged(req, 200, bt_buf_str(&b));
    bt_buf_free(&b);
}

static void owner_answer(struct bt_http_req *req, struct admin_call *c)
{
    const char *kname = bt_owner_kind_name(c->kind);
    if (c->err == BT_ENOTFOUND) {
        snprintf(c->why, sizeof(c->why), "No %s '%.200s' has a budget here.", kname, c->name);
        bt_api_fail(req, c->fe, 404, "not_found", NULL, c->why, BT_STR_NULL);
    } else if (c->err == BT_EINVAL) {
        bt_api_fail(req, c->fe, 400, "invalid_owner_field", NULL, c->why, BT_STR_NULL);
    } else if (c->err == BT_EBUSY && c->op == OP_OWNER_CREATE) {
        bt_api_fail(req, c->fe, 409, "owner_exists", NULL, c->why, BT_STR_NULL);
    } else if (c->err) {
        store_failed(req, c->fe, BT_EIO, NULL, c->why);
    } else {
        answer_owners(req, c->fe, &c->owners, c->spent, c->kind, false,
                      c->op == OP_OWNER_CREATE ? 201 : 200);
    }
}

static void answer(struct bt_http_req *req, struct admin_call *c)
{
    const struct bt_frontend *fe = c->fe;
    switch (c->op) {
    case OP_KEY_LIST:
        if (c->err) store_failed(req, fe, c->err, NULL, c->why);
        else answer_list(req, fe, &c->keys);
        break;
    case OP_KEY_CREATE:
        if (c->err) store_failed(req, fe, c->err, NULL, c->why);
        else answer_key(req, 201, &c->rec, c->key);
        break;
    case OP_KEY_GET:
    case OP_KEY_UPDATE:
    case OP_KEY_REVOKE:
        if (c->err) store_failed(req, fe, c->err, c->id, c->why);
        else answer_key(req, 200, &c->rec, NULL);
        break;
    case OP_USAGE:
        if (c->err) store_failed(req, fe, BT_EIO, NULL, c->why);
        else usage_answer(req, c);
        break;
    case OP_OWNER_LIST:
        if (c->err) store_failed(req, fe, BT_EIO, NULL, c->why);
        else answer_owners(req, fe, &c->owners, c->spent, c->kind, true, 200);
        break;
    case OP_OWNER_GET:
    case OP_OWNER_DELETE:
    case OP_OWNER_PUT:
    case OP_OWNER_CREATE: owner_answer(req, c); break;
    }
}

static void timer_closed(uv_handle_t *h)
{
    free(h);
}

/* The request is over for this call (answered, timed out or gone): no timer,
 * no abort callback. Returns the request when it is still to be answered. */
static struct bt_http_req *call_settle(struct admin_call *c)
{
    if (c->timer) {
        uv_close((uv_handle_t *)c->timer, timer_closed);
        c->timer = NULL;
    }
    struct bt_http_req *req = c->req;
    c->req = NULL;
    if (req) bt_http_on_abort(req, NULL, NULL);
    return req;
}

/* The client left: the request is freed after this returns; the job runs on
 * and its result is dropped when it comes back. */
static void call_abort(struct bt_http_req *req, void *ud)
{
    (void)req;
    (void)call_settle(ud);
}

static void call_timeout(uv_timer_t *t)
{
    struct admin_call *c = t->data;
    uint64_t ms = c->w->cfg->store.admin_timeout_ms;
    struct bt_http_req *req = call_settle(c);
    char m[300];
    snprintf(m, sizeof(m),
             "The store did not answer within %llu ms (store.admin_timeout). A change asked for "
             "may still be made when it does: read it back before trying again.",
             (unsigned long long)ms);
    bt_api_fail(req, c->fe, 504, "store_timeout", NULL, m, BT_STR_NULL);
}

static void call_done(struct bt_keys_job *j)
{
    struct admin_call *c = (struct admin_call *)j;
    struct bt_http_req *req = call_settle(c);
    if (req && j->status)
        bt_api_fail(req, c->fe, 503, "store_unavailable", NULL, "The store is shutting down.",
                    BT_STR_NULL);
    else if (req) answer(req, c);
    call_free(c);
}

static void call_drop(struct bt_keys_job *j)
{
    call_free((struct admin_call *)j);
}

static struct admin_call *call_new(enum admin_op op)
{
    struct admin_call *c = calloc(1, sizeof(*c));
    if (!c) return NULL;
    c->op = op;
    c->job.run = call_run;
    c->job.done = call_done;
    c->job.drop = call_drop;
    return c;
}

/* Hands `c` to the store thread; the answer is written when it comes back, or
 * by the timeout. Answers at once (and frees c) when it cannot be handed over. */
static void call_start(struct admin_call *c, struct bt_http_req *req, struct bt_worker *w,
                       const struct bt_frontend *fe)
{
    c->req = req;
    c->fe = fe;
    c->w = w;
    if (!w->keys_port) w->keys_port = bt_keys_port_new(w->keys, &w->loop);
    c->timer = w->keys_port ? malloc(sizeof(*c->timer)) : NULL;
    enum bt_err err = c->timer ? bt_keys_submit(w->keys_port, &c->job) : BT_ENOMEM;
    if (err) {
        free(c->timer);
        call_free(c);
        bt_api_fail(req, fe, 503, "store_unavailable", NULL,
                    err == BT_ECLOSED ? "The store is shutting down." : "out of memory",
                    BT_STR_NULL);
        return;
    }
    /* The job cannot come back before this returns: it comes through this loop. */
    uv_timer_init(&w->loop, c->timer);
    c->timer->data = c;
    uv_timer_start(c->timer, call_timeout, w->cfg->store.admin_timeout_ms, 0);
    bt_http_on_abort(req, call_abort, c);
}

static bool no_store(struct bt_http_req *req, struct bt_worker *w, const struct bt_frontend *fe)
{
    if (w->keys) return false;
    bt_api_fail(req, fe, 503, "store_unavailable", NULL, "This server has no store.", BT_STR_NULL);
    return true;
}

static void out_of_memory(struct bt_http_req *req, const struct bt_frontend *fe)
{
    bt_api_fail(req, fe, 503, "store_unavailable", NULL, "out of memory", BT_STR_NULL);
}

/* ---- /admin/keys ---- */

void bt_api_admin_keys(struct bt_http_req *req, struct bt_worker *w, const struct bt_frontend *fe)
{
    if (no_store(req, w, fe)) return;
    int64_t now = (int64_t)time(NULL);
    struct bt_str body = req->body;
    enum admin_op op;
    struct bt_str ids = BT_STR_NULL;
    if (bt_str_eq_c(req->path, "/admin/keys")) {
        if (bt_str_eq_c(req->method, "GET")) op = OP_KEY_LIST;
        else if (bt_str_eq_c(req->method, "POST")) op = OP_KEY_CREATE;
        else {
            method_not_allowed(req, fe, "GET, POST");
            return;
        }
        /* An empty body is an empty object: every field optional. */
        if (!body.len) body = BT_STR("{}");
    } else {
        ids = (struct bt_str){req->path.p + 12, req->path.len - 12}; /* after "/admin/keys/" */
        if (!id_ok(ids)) {
            bt_api_fail(req, fe, 404, "key_not_found",
                        NULL, "No such key: ids look like key_0123456789abcdef.", BT_STR_NULL);
            return;
        }
        if (bt_str_eq_c(req->method, "GET")) op = OP_KEY_GET;
        else if (bt_str_eq_c(req->method, "PATCH")) op = OP_KEY_UPDATE;
        else if (bt_str_eq_c(req->method, "DELETE")) op = OP_KEY_REVOKE;
        else {
            method_not_allowed(req, fe, "GET, PATCH, DELETE");
            return;
        }
    }
    struct admin_call *c = call_new(op);
    if (!c) {
        out_of_memory(req, fe);
        return;
    }
    memcpy(c->id, ids.p ? ids.p : "", ids.len);
    if (op == OP_KEY_CREATE || op == OP_KEY_UPDATE) {
        c->has_patch = true;
        enum bt_err err = bt_key_patch_parse(body, now, &c->patch, c->why, sizeof(c->why));
        if (err) {
            store_failed(req, fe, err, NULL, c->why);
            call_free(c);
            return;
        }
    }
    call_start(c, req, w, fe);
}

/* GET /admin/usage?key=ID&user=U&team=T&model=M&since=YYYY-MM-DD&group=G: the
 * ledger summed (account/usage.h), records still queued written first. */
void bt_api_admin_usage(struct bt_http_req *req, struct bt_worker *w, const struct bt_frontend *fe)
{
    if (!bt_str_eq_c(req->method, "GET")) {
        method_not_allowed(req, fe, "GET");
        return;
    }
    if (no_store(req, w, fe)) return;
    struct bt_usage_query q = {0};
    char why[400] = "";
    if (bt_usage_query_parse(req->query, req->arena, &q, why, sizeof(why))) {
        bt_api_fail(req, fe, 400, "invalid_usage_query", NULL, why, BT_STR_NULL);
        return;
    }
    struct admin_call *c = call_new(OP_USAGE);
    /* the filter's strings, copied out of the request's arena into one block */
    const char **fields[4] = {&q.key_id, &q.user, &q.team, &q.model};
    size_t total = 0;
    for (int i = 0; i < 4; i++) total += *fields[i] ? strlen(*fields[i]) + 1 : 0;
    if (!c || !(c->qtext = malloc(total + 1))) {
        free(c);
        out_of_memory(req, fe);
        return;
    }
    c->q = q;
    char *at = c->qtext;
    const char **copies[4] = {&c->q.key_id, &c->q.user, &c->q.team, &c->q.model};
    for (int i = 0; i < 4; i++) {
        if (!*fields[i]) continue;
        size_t n = strlen(*fields[i]) + 1;
        memcpy(at, *fields[i], n);
        *copies[i] = at;
        at += n;
    }
    call_start(c, req, w, fe);
}

/* ---- /admin/teams, /admin/users: owners' budgets ---- */

#define OWNER_FIELDS (BT_KF_BUDGET | BT_KF_PERIOD | BT_KF_RPM | BT_KF_TPM | BT_KF_CONCURRENCY)

/* POST /admin/teams (/admin/users) with the shape of a key's fields: the name
 * as `name` or as `team` (`user`), and budget_usd, budget_period, rpm, tpm,
 * concurrency. 201 with the new owner; 409 when it exists. */
static void owner_create(struct bt_http_req *req, struct bt_worker *w,
                         const struct bt_frontend *fe, enum bt_owner_kind kind)
{
    const char *kname = bt_owner_kind_name(kind);
    char why[400] = "";
    /* `name` is read as the key validator's `team` (`user`): the same length, so
     * the body's copy is renamed in place */
    size_t len = req->body.len;
    char *body = bt_arena_alloc(req->arena, len + 1);
    if (!body) {
        out_of_memory(req, fe);
        return;
    }
    memcpy(body, req->body.p, len);
    body[len] = 0;
    struct bt_json_doc doc;
    struct bt_json_error jerr;
    if (!bt_json_parse(&doc, body, len, req->arena, NULL, &jerr) &&
        bt_json_type(&doc, 0) == BT_JSON_OBJECT) {
        int v = bt_json_get(&doc, 0, "name");
        if (v > 0 && bt_json_get(&doc, 0, kname) < 0) {
            const struct bt_json_tok *kt = &doc.toks[v - 1];
            if (kt->type == BT_JSON_STRING && strncmp(body + kt->start, "\"name\"", 6) == 0)
                memcpy(body + kt->start + 1, kname, 4);
        }
    }
    struct admin_call *c = call_new(OP_OWNER_CREATE);
    if (!c) {
        out_of_memory(req, fe);
        return;
    }
    c->kind = kind;
    c->has_patch = true;
    enum bt_err err = bt_key_patch_parse((struct bt_str){body, len}, (int64_t)time(NULL),
                                         &c->patch, why, sizeof(why));
    uint32_t own = kind == BT_OWNER_TEAM ? BT_KF_TEAM : BT_KF_USER;
    const char *name = kind == BT_OWNER_TEAM ? c->patch.v.team : c->patch.v.user;
    if (!err && (c->patch.set & ~(OWNER_FIELDS | own))) {
        snprintf(why, sizeof(why),
                 "A %s takes only name, budget_usd, budget_period, rpm, tpm and concurrency.",
                 kname);
        err = BT_EINVAL;
    } else if (!err && (!(c->patch.set & own) || !name || !*name)) {
        snprintf(why, sizeof(why), "A new %s needs its name: {\"name\": \"...\"}.", kname);
        err = BT_EINVAL;
    }
    if (!err && !(c->name = strdup(name))) err = BT_ENOMEM;
    if (err) {
        if (err == BT_EINVAL) bt_api_fail(req, fe, 400, "invalid_owner_field", NULL, why, BT_STR_NULL);
        else out_of_memory(req, fe);
        call_free(c);
        return;
    }
    call_start(c, req, w, fe);
}

void bt_api_admin_owners(struct bt_http_req *req, struct bt_worker *w, const struct bt_frontend *fe,
                         enum bt_owner_kind kind)
{
    if (no_store(req, w, fe)) return;
    const char *kname = bt_owner_kind_name(kind);
    size_t plen = strlen("/admin/") + strlen(kname) + 1; /* "/admin/teams" */
    char why[400] = "";
    if (req->path.len == plen) {
        if (bt_str_eq_c(req->method, "POST")) {
            owner_create(req, w, fe, kind);
            return;
        }
        if (!bt_str_eq_c(req->method, "GET")) {
            method_not_allowed(req, fe, "GET, POST");
            return;
        }
        struct admin_call *c = call_new(OP_OWNER_LIST);
        if (!c) {
            out_of_memory(req, fe);
            return;
        }
        c->kind = kind;
        call_start(c, req, w, fe);
        return;
    }
    enum admin_op op;
    if (bt_str_eq_c(req->method, "GET")) op = OP_OWNER_GET;
    else if (bt_str_eq_c(req->method, "DELETE")) op = OP_OWNER_DELETE;
    else if (bt_str_eq_c(req->method, "PUT") || bt_str_eq_c(req->method, "PATCH")) op = OP_OWNER_PUT;
    else {
        method_not_allowed(req, fe, "GET, PUT, PATCH, DELETE");
        return;
    }
    /* /admin/teams/NAME: the name percent-decoded, as /admin/keys' fields judge names */
    struct bt_buf nb;
    bt_buf_init(&nb, BT_KEY_MAX_NAME + 1);
    enum bt_err err = bt_buf_append_pct_decoded(&nb, (struct bt_str){req->path.p + plen + 1,
                                                                     req->path.len - plen - 1});
    if (!err) err = bt_buf_cstr(&nb);
    if (err || nb.len == 0 || nb.len > BT_KEY_MAX_NAME || memchr(nb.p, 0, nb.len)) {
        bt_buf_free(&nb);
        snprintf(why, sizeof(why), "A %s name is 1 to %d characters without control characters.",
                 kname, BT_KEY_MAX_NAME);
        bt_api_fail(req, fe, 400, "invalid_owner_name", NULL, why, BT_STR_NULL);
        return;
    }
    struct admin_call *c = call_new(op);
    if (!c) {
        bt_buf_free(&nb);
        out_of_memory(req, fe);
        return;
    }
    c->kind = kind;
    c->name = bt_buf_steal(&nb, NULL);
    if (op == OP_OWNER_PUT) {
        /* The key validator judges the fields; only the budget's apply to owners. */
        struct bt_str body = req->body.len ? req->body : BT_STR("{}");
        c->has_patch = true;
        err = bt_key_patch_parse(body, (int64_t)time(NULL), &c->patch, why, sizeof(why));
        if (!err && (c->patch.set & ~OWNER_FIELDS)) {
            snprintf(why, sizeof(why),
                     "A %s takes only budget_usd, budget_period, rpm, tpm and concurrency.", kname);
            err = BT_EINVAL;
        }
        if (err) {
            if (err == BT_EINVAL) bt_api_fail(req, fe, 400, "invalid_owner_field", NULL, why, BT_STR_NULL);
            else store_failed(req, fe, BT_EIO, NULL, why);
            call_free(c);
            return;
        }
    }
    call_start(c, req, w, fe);
}
