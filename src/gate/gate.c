#include "gate/gate.h"

#include <string.h>
#include <time.h>

#include <openssl/crypto.h>

#include "core/log.h"

/* The key the request presents: `Authorization: Bearer KEY`, else x-api-key.
 * Empty p when none. */
static struct bt_str presented(const struct bt_http_req *req)
{
    struct bt_str given = BT_STR_NULL;
    struct bt_str auth = bt_http_header_get(req, "authorization");
    if (auth.p) {
        auth = bt_str_trim(auth);
        if (auth.len > 7 && bt_str_caseeq(( struct bt_str){auth.p, 7}, BT_STR("Bearer ")))
            given = bt_str_trim((struct bt_str){auth.p + 7, auth.len - 7});
    }
    if (!given.p) {
        struct bt_str x = bt_http_header_get(req, "x-api-key");
        if (x.p) given = bt_str_trim(x);
    }
    return given;
}

static const char *const no_key =
    "You didn't provide an API key. Provide it as 'Authorization: Bearer KEY'.";
static const char *const wrong_key = "Incorrect API key provided.";

static bool is_master(const char *key, struct bt_str given)
{
    size_t klen = strlen(key);
    return given.len == klen && CRYPTO_memcmp(given.p, key, klen) == 0;
}

bool bt_gate_check_master(const struct bt_config *cfg, const struct bt_http_req *req,
                          const char **why)
{
    const char *key = cfg->auth.master_key;
    if (!key || !*key) return true;
    struct bt_str given = presented(req);
    if (!given.p || given.len == 0) {
        *why = no_key;
        return false;
    }
    if (!is_master(key, given)) {
        *why = wrong_key;
        return false;
    }
    return true;
}

bool bt_gate_identify(const struct bt_config *cfg, const struct bt_keytab *keys,
                      const struct bt_http_req *req, struct bt_caller *caller, const char **why)
{
    caller->master = false;
    caller->key = NULL;
    caller->tokens = 0;
    const char *master = cfg->auth.master_key;
    bool have_master = master && *master;
    struct bt_str given = presented(req);
    if (!given.p || given.len == 0) {
        if (!have_master) return caller->master = true;
        *why = no_key;
        return false;
    }
    if (have_master && is_master(master, given)) return caller->master = true;
    bool virtual = bt_str_starts_with(given, BT_STR(BT_KEY_PREFIX));
    if (!virtual) {
        if (!have_master) return caller->master = true; /* no key needed: ignored */
        *why = wrong_key;
        return false;
    }
    unsigned char h[BT_KEY_HASH_LEN];
    bt_key_hash(given, h);
    const struct bt_key_rec *k = bt_keytab_find(keys, h);
    if (!k) {
        *why = wrong_key;
        return false;
    }
    if (!bt_key_active(k, (int64_t)time(NULL))) {
        *why = "This API key has expired.";
        return false;
    }
    caller->key = k;
    return true;
}

/* The start of the period after the one holding now_ms. */
static int64_t next_period_ms(enum bt_budget_period p, int64_t now_ms)
{
    const int64_t day = 86400000;
    int64_t start = bt_period_start_ms(p, now_ms);
    switch (p) {
    case BT_PERIOD_DAY: return start + day;
    case BT_PERIOD_WEEK: return start + 7 * day;
    default: return bt_period_start_ms(p, start + 32 * day);
    }
}

/* When the period holding now_ms ends, as "2026-12-08T00:00:00Z". */
static void reset_at(char *at, size_t cap, enum bt_budget_period p, int64_t now_ms)
{
    time_t reset = (time_t)(next_period_ms(p, now_ms) / 1000);
    struct tm tm;
    gmtime_r(&reset, &tm);
    strftime(at, cap, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

/* The caller's levels, copied from its key record: the key, its team, its user. */
static void fill_levels(struct bt_caller *caller)
{
    const struct bt_key_rec *k = caller->key;
    struct bt_gate_level *lv = caller->lv;
    lv[0] = (struct bt_gate_level){k->live, k->rpm, k->tpm, k->concurrency, k->budget_micro_usd,
                                   k->budget_period ? k->budget_period : BT_PERIOD_MONTH, ""};
    snprintf(lv[0].who, sizeof(lv[0].who), "This API key");
    const char *names[2] = {k->team, k->user};
    for (int i = 0; i < 2; i++) {
        const struct bt_owner_limits *o = &k->owner[i];
        struct bt_gate_level *l = &lv[i + 1];
        if (!names[i] || !o->live) {
            *l = (struct bt_gate_level){.rpm = -1, .tpm = -1, .concurrency = -1,
                                        .budget_micro = -1};
            continue;
        }
        *l = (struct bt_gate_level){o->live, o->rpm, o->tpm, o->concurrency, o->budget_micro_usd,
                                    o->period ? o->period : BT_PERIOD_MONTH, ""};
        snprintf(l->who, sizeof(l->who), "The %s '%s' of this API key",
                 bt_owner_kind_name((enum bt_owner_kind)i), names[i]);
    }
}

/* One level's budget against what was spent: false (over) with the message in
 * caller->budget_msg; at 80% and more the warning is set, unless an earlier
 * budget set one. `tag` prefixes the warning ("" or "team: "); `logname` names
 * it in the log. */
static bool one_budget(struct bt_caller *caller, const struct bt_gate_level *l, const char *tag,
                       const char *logname, int64_t now_ms)
{
    struct bt_key_live *live = l->live;
    if (l->budget_micro < 0 || !live) return true;
    int64_t spent = atomic_load(&live->spent_pusd) + atomic_load(&live->pending_pusd);
    /* pico-USD against micro-USD x 10^6, in 128 bits: a budget may be 10^9 USD */
    __int128 budget = (__int128)l->budget_micro * 1000000;
    const char *per = bt_budget_period_name(l->period);
    if (!per) per = "month";
    char b[BT_DECIMAL_MAX], sp[BT_DECIMAL_MAX];
    bt_str_decimal(b, sizeof(b), l->budget_micro, 6);
    if ((__int128)spent >= budget) {
        char at[32];
        reset_at(at, sizeof(at), l->period, now_ms);
        bt_str_decimal(sp, sizeof(sp), spent, 12);
        snprintf(caller->budget_msg, sizeof(caller->budget_msg),
                 "%s has used its budget of %s USD for the %s (spent %s USD); the budget "
                 "resets at %s.",
                 l->who, b, per, sp, at);
        return false;
    }
    if ((__int128)spent * 5 >= budget * 4) {
        int pct = (int)((__int128)spent * 100 / (budget > 0 ? budget : 1));
        char w[96];
        snprintf(w, sizeof(w), "%d%% of %s USD %s budget used", pct, b, per);
        if (!caller->budget_warning[0])
            snprintf(caller->budget_warning, sizeof(caller->budget_warning), "%s%s", tag, w);
        if (!atomic_exchange(&live->warned, true)) bt_warn("budget: %s: %s", logname, w);
    } else if (atomic_load(&live->warned)) {
        atomic_store(&live->warned, false); /* a new period: warn again at the next crossing */
    }
    return true;
}

/* The key's budget, then its team's and its user's. */
static bool budget_ok(struct bt_caller *caller, int64_t now_ms)
{
    const struct bt_key_rec *k = caller->key;
    caller->budget_warning[0] = 0;
    char logname[BT_KEY_MAX_NAME + 8];
    snprintf(logname, sizeof(logname), "key %s", k->id);
    if (!one_budget(caller, &caller->lv[0], "", logname, now_ms)) return false;
    const char *names[2] = {k->team, k->user};
    for (int i = 0; i < 2; i++) {
        if (!names[i]) continue;
        const char *kind = bt_owner_kind_name((enum bt_owner_kind)i);
        char tag[8];
        snprintf(logname, sizeof(logname), "%s %s", kind, names[i]);
        snprintf(tag, sizeof(tag), "%s: ", kind);
        if (!one_budget(caller, &caller->lv[i + 1], tag, logname, now_ms)) return false;
    }
    return true;
}

/* Gives back what admit took before a refusal: slots and tokens. */
void bt_gate_untake(struct bt_caller *caller)
{
    bt_key_release_slots(&caller->slots);
    for (int i = 0; i < 3; i++)
        if (caller->tpm_lives[i])
            bt_key_correct_tokens(caller->tpm_lives[i], caller->tpm_minute, -caller->tokens);
    memset(&caller->slots, 0, sizeof(caller->slots));
    memset(caller->tpm_lives, 0, sizeof(caller->tpm_lives));
    caller->held = false;
}

void bt_gate_over_limit_msg(char *out, size_t cap, const char *who, const char *which,
                            bool across)
{
    const char *all = across ? " across all instances" : "";
    if (strcmp(which, "rpm") == 0)
        snprintf(out, cap,
                 "%s is over its requests per minute (rpm)%s; retry after the time in "
                 "Retry-After.",
                 who, all);
    else if (strcmp(which, "tpm") == 0)
        snprintf(out, cap,
                 "%s is over its tokens per minute (tpm)%s: the tokens of this minute's "
                 "requests and this one's estimate (its prompt and max_tokens) would pass it; "
                 "retry after the time in Retry-After.",
                 who, all);
    else
        snprintf(out, cap,
                 "%s has as many requests in flight as its concurrency limit allows%s; retry "
                 "when one has finished.",
                 who, all);
}

bool bt_gate_limits(struct bt_caller *caller, int64_t now)
{
    for (int i = 0; i < 3; i++) {
        const struct bt_gate_level *l = &caller->lv[i];
        if (!l->live) continue;
        const char *which = NULL;
        bool held = false;
        if (bt_live_take(l->live, l->rpm, l->concurrency, now, &held, &which,
                         &caller->retry_after)) {
            if (held) caller->slots.live[i] = l->live, caller->held = true;
            if (bt_live_take_tokens(l->live, l->tpm, now, caller->tokens, &caller->tpm_minute,
                                    &caller->retry_after)) {
                if (l->tpm > 0) caller->tpm_lives[i] = l->live;
                continue;
            }
            which = "tpm";
        }
        bt_gate_over_limit_msg(caller->budget_msg, sizeof(caller->budget_msg), l->who, which,
                               false);
        bt_gate_untake(caller);
        return false;
    }
    return true;
}

int bt_gate_shared_levels(const struct bt_caller *caller, const char *key_id, int64_t now_ms,
                          struct bt_redis_level out[BT_REDIS_LEVELS], int idx[BT_REDIS_LEVELS])
{
    int n = 0;
    for (int i = 0; i < 3 && n < BT_REDIS_LEVELS; i++) {
        const struct bt_gate_level *l = &caller->lv[i];
        if (!l->live) continue;
        bool tpm = l->tpm > 0;
        if (l->rpm < 0 && l->concurrency < 0 && !tpm && l->budget_micro < 0) continue;
        struct bt_redis_level *o = &out[n];
        *o = (struct bt_redis_level){.rpm = l->rpm, .concurrency = l->concurrency,
                                     .tpm = tpm ? l->tpm : -1, .tokens = caller->tokens,
                                     .budget_pusd = -1};
        const char *owner = !caller->key ? "" : i == 1 ? caller->key->team : caller->key->user;
        if (i == 0) snprintf(o->scope, sizeof(o->scope), "%s", key_id);
        else bt_owner_spend_id((enum bt_owner_kind)(i - 1), owner ? owner : "", o->scope,
                               sizeof(o->scope));
        if (l->budget_micro >= 0) {
            o->budget_pusd = l->budget_micro > INT64_MAX / 1000000 ? INT64_MAX
                                                                    : l->budget_micro * 1000000;
            o->spent_pusd = atomic_load(&l->live->spent_pusd) +
                            atomic_load(&l->live->pending_pusd);
            o->period_start_s = bt_period_start_ms(l->period, now_ms) / 1000;
            o->spend_ttl_ms = (l->period == BT_PERIOD_DAY    ? 2
                               : l->period == BT_PERIOD_WEEK ? 8
                                                             : 32) *
                              86400000LL;
        }
        idx[n++] = i;
    }
    return n;
}

void bt_gate_shared_refusal(struct bt_caller *caller, int lvl, enum bt_redis_verdict v,
                            int64_t retry_after, int64_t now_ms)
{
    const struct bt_gate_level *l = &caller->lv[lvl < 0 || lvl > 2 ? 0 : lvl];
    caller->retry_after = retry_after;
    if (v == BT_REDIS_BUDGET) {
        char b[BT_DECIMAL_MAX], at[32];
        bt_str_decimal(b, sizeof(b), l->budget_micro, 6);
        reset_at(at, sizeof(at), l->period, now_ms);
        const char *per = bt_budget_period_name(l->period);
        snprintf(caller->budget_msg, sizeof(caller->budget_msg),
                 "%s has used its budget of %s USD for the %s across all instances; the budget "
                 "resets at %s.",
                 l->who, b, per ? per : "month", at);
        caller->retry_after = 0;
        return;
    }
    bt_gate_over_limit_msg(caller->budget_msg, sizeof(caller->budget_msg), l->who,
                           bt_redis_verdict_limit(v), true);
}

bool bt_gate_admit(const struct bt_config *cfg, struct bt_caller *caller,
                   const struct bt_request *r, int *status, const char **code, const char **why)
{
    caller->held = false;
    caller->budget_warning[0] = 0;
    memset(&caller->slots, 0, sizeof(caller->slots));
    memset(caller->tpm_lives, 0, sizeof(caller->tpm_lives));
    if (caller->master) return true;
    if (caller->key) {
        if (!bt_key_allows_model(caller->key, r->model)) {
            *status = 403;
            *code = "model_not_allowed";
            *why = "This API key may not use the requested model.";
            return false;
        }
        fill_levels(caller);
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        if (!budget_ok(caller, (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000)) {
            *status = 429;
            *code = "insufficient_quota";
            *why = caller->budget_msg;
            caller->retry_after = 0;
            return false;
        }
        /* with store.redis every level's rpm, tpm and concurrency are counted
         * there (the pipeline asks); budgets are judged here first too (what
         * this process knows was spent is never more than Redis's figure) */
        if (cfg->store.redis || bt_gate_limits(caller, (int64_t)time(NULL))) return true;
        *status = 429;
        *code = "rate_limit_exceeded";
        *why = caller->budget_msg;
        return false;
    }
    *status = 401;
    *code = "invalid_api_key";
    *why = "The caller was not identified.";
    return false;
}
