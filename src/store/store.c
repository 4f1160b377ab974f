/* What every backend shares: key records' lifetime, the stored form of a key's
 * models list, the budget period names, and opening the configured backend. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/arena.h"
#include "core/buf.h"
#include "core/str.h"
#include "json/json.h"
#include "store/store.h"

void bt_store_close(struct bt_store *s)
{
    if (s) s->ops->close(s);
}

void bt_key_rec_init(struct bt_key_rec *k)
{
    memset(k, 0, sizeof(*k));
    k->rpm = k->tpm = k->concurrency = k->budget_micro_usd = -1;
    for (int i = 0; i < 2; i++)
        k->owner[i] = (struct bt_owner_limits){.budget_micro_usd = -1, .rpm = -1, .tpm = -1,
                                               .concurrency = -1};
}

const char *bt_owner_kind_name(enum bt_owner_kind k)
{
    return k == BT_OWNER_USER ? "user" : "team";
}

void bt_owner_spend_id(enum bt_owner_kind k, const char *name, char *buf, size_t cap)
{
    snprintf(buf, cap, "%s:%s", bt_owner_kind_name(k), name);
}

void bt_owner_list_free(struct bt_owner_list *l)
{
    if (!l) return;
    for (size_t i = 0; i < l->n; i++) free(l->items[i].name);
    free(l->items);
    l->items = NULL;
    l->n = 0;
}

void bt_key_rec_free(struct bt_key_rec *k)
{
    if (!k) return;
    free(k->user);
    free(k->team);
    for (size_t i = 0; i < k->nmodels; i++) free(k->models[i]);
    free(k->models);
    free(k->metadata);
    bt_key_rec_init(k);
}

static bool dup_opt(char **dst, const char *src)
{
    *dst = NULL;
    if (!src) return true;
    *dst = strdup(src);
    return *dst != NULL;
}

enum bt_err bt_key_rec_copy(struct bt_key_rec *dst, const struct bt_key_rec *src)
{
    *dst = *src;
    dst->user = dst->team = dst->metadata = NULL;
    dst->models = NULL;
    dst->nmodels = 0;
    bool ok = dup_opt(&dst->user, src->user) && dup_opt(&dst->team, src->team) &&
              dup_opt(&dst->metadata, src->metadata);
    if (ok && src->models) {
        dst->models = calloc(src->nmodels ? src->nmodels : 1, sizeof(char *));
        ok = dst->models != NULL;
        for (size_t i = 0; ok && i < src->nmodels; i++) {
            ok = dup_opt(&dst->models[i], src->models[i]);
            if (ok) dst->nmodels++;
        }
    }
    if (!ok) {
        bt_key_rec_free(dst);
        return BT_ENOMEM;
    }
    return BT_OK;
}

void bt_key_list_free(struct bt_key_list *l)
{
    if (!l) return;
    for (size_t i = 0; i < l->n; i++) bt_key_rec_free(&l->items[i]);
    free(l->items);
    l->items = NULL;
    l->n = 0;
}

const char *bt_budget_period_name(enum bt_budget_period p)
{
    switch (p) {
    case BT_PERIOD_DAY: return "day";
    case BT_PERIOD_WEEK: return "week";
    case BT_PERIOD_MONTH: return "month";
    default: return NULL;
    }
}

bool bt_budget_period_parse(const char *s, size_t len, enum bt_budget_period *out)
{
    struct bt_str v = {s, len};
    if (bt_str_eq_c(v, "day")) *out = BT_PERIOD_DAY;
    else if (bt_str_eq_c(v, "week")) *out = BT_PERIOD_WEEK;
    else if (bt_str_eq_c(v, "month")) *out = BT_PERIOD_MONTH;
    else return false;
    return true;
}

enum bt_err bt_store_open(const struct bt_store_where *w, struct bt_store **out, char *why,
                          size_t whycap)
{
    if (w->postgres) return bt_store_open_postgres(w->postgres, out, why, whycap);
    return bt_store_open_sqlite(w->sqlite, out, why, whycap);
}

char *bt_key_models_json(const struct bt_key_rec *k, bool *oom)
{
    *oom = false;
    if (!k->models) return NULL;
    struct bt_buf b;
    bt_buf_init(&b, 1u << 20);
    struct bt_jw w;
    bt_jw_init(&w, &b);
    bt_jw_arr_begin(&w);
    for (size_t i = 0; i < k->nmodels; i++) bt_jw_cstr(&w, k->models[i]);
    bt_jw_arr_end(&w);
    if (w.err || bt_buf_cstr(&b)) {
        bt_buf_free(&b);
        *oom = true;
        return NULL;
    }
    return bt_buf_steal(&b, NULL);
}

bool bt_key_models_parse(struct bt_key_rec *k, const char *text, bool *oom)
{
    struct bt_arena a;
    bt_arena_init(&a, 4096, 4u << 20);
    struct bt_json_doc doc;
    bool ok = false;
    if (bt_json_parse(&doc, text, strlen(text), &a, NULL, NULL) || bt_json_type(&doc, 0) !=
        BT_JSON_ARRAY)
        goto out;
    size_t n = doc.toks[0].size;
    k->models = calloc(n ? n : 1, sizeof(char *));
    if (!k->models) {
        *oom = true;
        goto out;
    }
    for (int t = bt_json_first(&doc, 0); t >= 0 && k->nmodels < n; t = (int)doc.toks[t].next) {
        struct bt_str s;
        if (bt_json_str(&doc, t, &a, &s)) goto out;
        k->models[k->nmodels] = bt_str_dup(s);
        if (!k->models[k->nmodels]) {
            *oom = true;
            goto out;
        }
        k->nmodels++;
    }
    ok = k->nmodels == n;
out:
    bt_arena_free(&a);
    return ok;
}

/* ---- the ledger's records ---- */

struct bt_usage_rec *bt_usage_rec_new(const char *request_id, const char *key_id,
                                      const char *user, const char *team, struct bt_str model,
                                      struct bt_str provider, struct bt_str provider_model)
{
    struct bt_str parts[7] = {bt_str_c(request_id ? request_id : ""),
                              bt_str_c(key_id ? key_id : ""),
                              bt_str_c(user ? user : ""),
                              bt_str_c(team ? team : ""),
                              model.p ? model : BT_STR(""),
                              provider.p ? provider : BT_STR(""),
                              provider_model.p ? provider_model : BT_STR("")};
    size_t total = sizeof(struct bt_usage_rec);
    for (size_t i = 0; i < 7; i++) total += parts[i].len + 1;
    struct bt_usage_rec *r = calloc(1, total);
    if (!r) return NULL;
    char *p = (char *)(r + 1);
    const char **dst[7] = {&r->request_id, &r->key_id, &r->user, &r->team,
                           &r->model, &r->provider, &r->provider_model};
    for (size_t i = 0; i < 7; i++) {
        if (parts[i].len) memcpy(p, parts[i].p, parts[i].len);
        p[parts[i].len] = 0;
        *dst[i] = p;
        p += parts[i].len + 1;
    }
    return r;
}

static const char *const group_names[] = {"", "key", "team", "user", "model", "deployment", "day"};

const char *bt_usage_group_name(enum bt_usage_group g)
{
    return (unsigned)g < sizeof(group_names) / sizeof(group_names[0]) ? group_names[g] : "";
}

bool bt_usage_group_parse(struct bt_str s, enum bt_usage_group *out)
{
    for (size_t i = 1; i < sizeof(group_names) / sizeof(group_names[0]); i++)
        if (bt_str_eq_c(s, group_names[i])) {
            *out = (enum bt_usage_group)i;
            return true;
        }
    return false;
}

int64_t bt_period_start_ms(enum bt_budget_period p, int64_t now_ms)
{
    const int64_t day_ms = 86400000;
    int64_t d = now_ms >= 0 ? now_ms / day_ms : (now_ms - day_ms + 1) / day_ms;
    switch (p) {
    case BT_PERIOD_WEEK: {
        int64_t dow = ((d + 3) % 7 + 7) % 7; /* 1970-01-01 was a Thursday: Monday = 0 */
        return (d - dow) * day_ms;
    }
    case BT_PERIOD_MONTH: {
        time_t t = (time_t)(d * 86400);
        struct tm tm;
        gmtime_r(&t, &tm);
        tm.tm_mday = 1;
        tm.tm_hour = tm.tm_min = tm.tm_sec = 0;
        return (int64_t)timegm(&tm) * 1000;
    }
    default: return d * day_ms;
    }
}
