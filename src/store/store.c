/* What every backend shares: key records' lifetime and the budget period names. */
#include <stdlib.h>
#include <string.h>

#include "core/str.h"
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
