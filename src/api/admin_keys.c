/* The admin API's virtual keys (docs/governance.md): POST /admin/keys creates
 * one (201, the key shown this once), GET /admin/keys lists them (prefixes
 * only), GET / PATCH / DELETE /admin/keys/ID reads, changes, revokes one.
 * Only reached with the master key (dispatch.c checks it).
 *
 * These calls use the store on the worker's thread (bt_keys_*: one SQLite
 * statement or two, then the key table rebuilt so the change holds for the
 * next request here). That is a choice for this path only: admin calls are
 * rare and the master key's holder's; the /v1 path never touches the store.
 * docs/internals/store.md says more. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "account/usage.h"
#include "api/api.h"
#include "store/keys.h"

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

void bt_api_admin_keys(struct bt_http_req *req, struct bt_worker *w, const struct bt_frontend *fe)
{
    if (!w->keys) {
        bt_api_fail(req, fe, 503, "store_unavailable", NULL, "This server has no key store.",
                    BT_STR_NULL);
        return;
    }
    char why[400] = "";
    int64_t now = (int64_t)time(NULL);
    struct bt_key_rec k;
    enum bt_err err;
    if (bt_str_eq_c(req->path, "/admin/keys")) {
        if (bt_str_eq_c(req->method, "GET")) {
            struct bt_key_list l;
            if ((err = bt_keys_list(w->keys, &l, why, sizeof(why)))) {
                store_failed(req, fe, err, NULL, why);
                return;
            }
            answer_list(req, fe, &l);
            bt_key_list_free(&l);
        } else if (bt_str_eq_c(req->method, "POST")) {
            struct bt_key_patch p;
            /* An empty body is an empty object: every field optional. */
            struct bt_str body = req->body.len ? req->body : BT_STR("{}");
            err = bt_key_patch_parse(body, now, &p, why, sizeof(why));
            char key[BT_KEY_LEN + 1];
            if (!err) err = bt_keys_create(w->keys, &p, key, &k, why, sizeof(why));
            bt_key_patch_free(&p);
            if (err) {
                store_failed(req, fe, err, NULL, why);
                return;
            }
            answer_key(req, 201, &k, key);
            memset(key, 0, sizeof(key));
            bt_key_rec_free(&k);
        } else {
            method_not_allowed(req, fe, "GET, POST");
        }
        return;
    }
    struct bt_str ids = {req->path.p + 12, req->path.len - 12}; /* after "/admin/keys/" */
    if (!id_ok(ids)) {
        bt_api_fail(req, fe, 404, "key_not_found",
                    NULL, "No such key: ids look like key_0123456789abcdef.", BT_STR_NULL);
        return;
    }
    char id[BT_KEY_ID_LEN + 1];
    memcpy(id, ids.p, ids.len);
    id[ids.len] = 0;
    if (bt_str_eq_c(req->method, "GET")) {
        err = bt_keys_get(w->keys, id, &k, why, sizeof(why));
    } else if (bt_str_eq_c(req->method, "PATCH")) {
        struct bt_key_patch p;
        err = bt_key_patch_parse(req->body, now, &p, why, sizeof(why));
        if (!err) err = bt_keys_update(w->keys, id, &p, &k, why, sizeof(why));
        bt_key_patch_free(&p);
    } else if (bt_str_eq_c(req->method, "DELETE")) {
        err = bt_keys_revoke(w->keys, id, &k, why, sizeof(why));
    } else {
        method_not_allowed(req, fe, "GET, PATCH, DELETE");
        return;
    }
    if (err) {
        store_failed(req, fe, err, id, why);
        return;
    }
    answer_key(req, 200, &k, NULL);
    bt_key_rec_free(&k);
}

/* GET /admin/usage?key=ID&user=U&team=T&model=M&since=YYYY-MM-DD&group=G: the
 * ledger summed (account/usage.h), records still queued written first. */
void bt_api_admin_usage(struct bt_http_req *req, struct bt_worker *w, const struct bt_frontend *fe)
{
    if (!bt_str_eq_c(req->method, "GET")) {
        method_not_allowed(req, fe, "GET");
        return;
    }
    if (!w->keys) {
        bt_api_fail(req, fe, 503, "store_unavailable", NULL, "This server has no store.",
                    BT_STR_NULL);
        return;
    }
    struct bt_usage_query q = {0};
    char why[400] = "";
    if (bt_usage_query_parse(req->query, req->arena, &q, why, sizeof(why))) {
        bt_api_fail(req, fe, 400, "invalid_usage_query", NULL, why, BT_STR_NULL);
        return;
    }
    struct bt_usage_rows rows;
    if (bt_keys_usage(w->keys, &q, &rows, why, sizeof(why))) {
        store_failed(req, fe, BT_EIO, NULL, why);
        return;
    }
    struct bt_buf b;
    bt_buf_init(&b, 256u << 20);
    struct bt_jw jw;
    bt_jw_init(&jw, &b);
    bt_usage_write_json(&jw, &q, &rows);
    if (jw.err) bt_api_fail(req, fe, 500, NULL, NULL, "the report could not be written", BT_STR_NULL);
    else bt_api_json_logged(req, 200, bt_buf_str(&b));
    bt_buf_free(&b);
    free(rows.items);
}

/* ---- /admin/teams, /admin/users: owners' budgets ---- */

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

static void answer_owners(struct bt_http_req *req, struct bt_worker *w,
                          const struct bt_frontend *fe, const struct bt_owner_rec *items,
                          size_t n, enum bt_owner_kind kind, bool list)
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
    for (size_t i = 0; i < n; i++)
        if (items[i].kind == kind)
            write_owner(&jw, &items[i], bt_keys_owner_spent(w->keys, kind, items[i].name));
    if (list) {
        bt_jw_arr_end(&jw);
        bt_jw_obj_end(&jw);
    }
    if (jw.err) bt_api_fail(req, fe, 500, NULL, NULL, "the answer could not be written", BT_STR_NULL);
    else bt_api_json_logged(req, 200, bt_buf_str(&b));
    bt_buf_free(&b);
}

void bt_api_admin_owners(struct bt_http_req *req, struct bt_worker *w, const struct bt_frontend *fe,
                         enum bt_owner_kind kind)
{
    if (!w->keys) {
        bt_api_fail(req, fe, 503, "store_unavailable", NULL, "This server has no store.",
                    BT_STR_NULL);
        return;
    }
    const char *kname = bt_owner_kind_name(kind);
    size_t plen = strlen("/admin/") + strlen(kname) + 1; /* "/admin/teams" */
    char why[400] = "";
    enum bt_err err;
    if (req->path.len == plen) {
        if (!bt_str_eq_c(req->method, "GET")) {
            method_not_allowed(req, fe, "GET");
            return;
        }
        struct bt_owner_list l;
        if ((err = bt_keys_owner_list(w->keys, &l, why, sizeof(why)))) {
            store_failed(req, fe, BT_EIO, NULL, why);
            return;
        }
        answer_owners(req, w, fe, l.items, l.n, kind, true);
        bt_owner_list_free(&l);
        return;
    }
    /* /admin/teams/NAME: the name percent-decoded, as /admin/keys' fields judge names */
    struct bt_buf nb;
    bt_buf_init(&nb, BT_KEY_MAX_NAME + 1);
    err = bt_buf_append_pct_decoded(&nb, (struct bt_str){req->path.p + plen + 1,
                                                         req->path.len - plen - 1});
    if (!err) err = bt_buf_cstr(&nb);
    if (err || nb.len == 0 || nb.len > BT_KEY_MAX_NAME || memchr(nb.p, 0, nb.len)) {
        bt_buf_free(&nb);
        snprintf(why, sizeof(why), "A %s name is 1 to %d characters without control characters.",
                 kname, BT_KEY_MAX_NAME);
        bt_api_fail(req, fe, 400, "invalid_owner_name", NULL, why, BT_STR_NULL);
        return;
    }
    const char *name = nb.p;
    struct bt_owner_rec o = {.kind = kind};
    if (bt_str_eq_c(req->method, "GET") || bt_str_eq_c(req->method, "DELETE")) {
        err = bt_keys_owner_get(w->keys, kind, name, &o, why, sizeof(why));
        if (!err && bt_str_eq_c(req->method, "DELETE"))
            err = bt_keys_owner_delete(w->keys, kind, name, why, sizeof(why));
    } else if (bt_str_eq_c(req->method, "PUT") || bt_str_eq_c(req->method, "PATCH")) {
        /* The key validator judges the fields; only the budget's apply to owners. */
        struct bt_key_patch p;
        struct bt_str body = req->body.len ? req->body : BT_STR("{}");
        err = bt_key_patch_parse(body, (int64_t)time(NULL), &p, why, sizeof(why));
        const uint32_t owner_fields =
            BT_KF_BUDGET | BT_KF_PERIOD | BT_KF_RPM | BT_KF_TPM | BT_KF_CONCURRENCY;
        if (!err && (p.set & ~owner_fields)) {
            snprintf(why, sizeof(why),
                     "A %s takes only budget_usd, budget_period, rpm, tpm and concurrency.", kname);
            err = BT_EINVAL;
        }
        if (!err) {
            struct bt_owner_rec old;
            o.budget_micro_usd = o.rpm = o.tpm = o.concurrency = -1;
            if (!bt_keys_owner_get(w->keys, kind, name, &old, why, sizeof(why))) {
                o = old;
                free(old.name);
                o.name = NULL;
            }
            if (p.set & BT_KF_BUDGET) o.budget_micro_usd = p.v.budget_micro_usd;
            if (p.set & BT_KF_PERIOD) o.budget_period = p.v.budget_period;
            if (p.set & BT_KF_RPM) o.rpm = p.v.rpm;
            if (p.set & BT_KF_TPM) o.tpm = p.v.tpm;
            if (p.set & BT_KF_CONCURRENCY) o.concurrency = p.v.concurrency;
            if (o.budget_micro_usd >= 0 && o.budget_period == BT_PERIOD_NONE)
                o.budget_period = BT_PERIOD_MONTH;
            o.name = nb.p;
            err = bt_keys_owner_put(w->keys, &o, why, sizeof(why));
            o.name = NULL;
            if (!err) err = bt_keys_owner_get(w->keys, kind, name, &o, why, sizeof(why));
        }
        bt_key_patch_free(&p);
    } else {
        method_not_allowed(req, fe, "GET, PUT, PATCH, DELETE");
        bt_buf_free(&nb);
        return;
    }
    if (err == BT_ENOTFOUND) {
        snprintf(why, sizeof(why), "No %s '%.200s' has a budget here.", kname, name);
        bt_api_fail(req, fe, 404, "not_found", NULL, why, BT_STR_NULL);
    } else if (err == BT_EINVAL) {
        bt_api_fail(req, fe, 400, "invalid_owner_field", NULL, why, BT_STR_NULL);
    } else if (err) {
        store_failed(req, fe, BT_EIO, NULL, why);
    } else {
        answer_owners(req, w, fe, &o, 1, kind, false);
    }
    free(o.name);
    bt_buf_free(&nb);
}
