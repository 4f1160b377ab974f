/* What every backend shares: key records' lifetime, the stored form of a key's
 * models list, the budget period names, and opening the configured backend. */
#include <stdlib.h>
#include <string.h>

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
