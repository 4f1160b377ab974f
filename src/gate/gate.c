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

/* A key's budget against what it spent: false (over) with the message in
 * caller->budget_msg; the warning set at 80% and more. */
static bool budget_ok(struct bt_caller *caller, int64_t now_ms)
{
    const struct bt_key_rec *k = caller->key;
    caller->budget_warning[0] = 0;
    if (k->budget_micro_usd < 0 || !k->live) return true;
    int64_t spent = bt_key_spent(k);
    /* pico-USD against micro-USD x 10^6, in 128 bits: a budget may be 10^9 USD */
    __int128 budget = (__int128)k->budget_micro_usd * 1000000;
    const char *per = bt_budget_period_name(k->budget_period);
    if (!per) per = "month";
    char b[BT_DECIMAL_MAX], sp[BT_DECIMAL_MAX];
    bt_str_decimal(b, sizeof(b), k->budget_micro_usd, 6);
    if ((__int128)spent >= budget) {
        time_t reset = (time_t)(next_period_ms(k->budget_period, now_ms) / 1000);
        struct tm tm;
        char at[32];
        gmtime_r(&reset, &tm);
        strftime(at, sizeof(at), "%Y-%m-%dT%H:%M:%SZ", &tm);
        bt_str_decimal(sp, sizeof(sp), spent, 12);
        snprintf(caller->budget_msg, sizeof(caller->budget_msg),
                 "This API key has used its budget of %s USD for the %s (spent %s USD); the "
                 "budget resets at %s.",
                 b, per, sp, at);
        return false;
    }
    if ((__int128)spent * 5 >= budget * 4) {
        int pct = (int)((__int128)spent * 100 / (budget > 0 ? budget : 1));
        snprintf(caller->budget_warning, sizeof(caller->budget_warning),
                 "%d%% of %s USD %s budget used", pct, b, per);
        if (!atomic_exchange(&k->live->warned, true))
            bt_warn("budget: key %s: %s", k->id, caller->budget_warning);
    } else if (atomic_load(&k->live->warned)) {
        atomic_store(&k->live->warned, false); /* a new period: warn again at the next crossing */
    }
    return true;
}

bool bt_gate_admit(const struct bt_config *cfg, struct bt_caller *caller,
                   const struct bt_request *r, int *status, const char **code, const char **why)
{
    (void)cfg;
    caller->held = false;
    caller->budget_warning[0] = 0;
    if (caller->master) return true;
    if (caller->key) {
        if (!bt_key_allows_model(caller->key, r->model)) {
            *status = 403;
            *code = "model_not_allowed";
            *why = "This API key may not use the requested model.";
            return false;
        }
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        if (!budget_ok(caller, (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000)) {
            *status = 429;
            *code = "insufficient_quota";
            *why = caller->budget_msg;
            caller->retry_after = 0;
            return false;
        }
        const char *which = NULL;
        int64_t now = (int64_t)time(NULL);
        if (bt_key_take(caller->key, now, &caller->held, &which, &caller->retry_after)) {
            if (bt_key_take_tokens(caller->key, now, caller->tokens, &caller->tpm_minute,
                                   &caller->retry_after))
                return true;
            if (caller->held) bt_key_release(caller->key->live);
            caller->held = false;
            *status = 429;
            *code = "rate_limit_exceeded";
            *why = "This API key is over its tokens per minute (tpm): the tokens of this "
                   "minute's requests and this one's estimate (its prompt and max_tokens) "
                   "would pass it; retry after the time in Retry-After.";
            return false;
        }
        *status = 429;
        *code = "rate_limit_exceeded";
        *why = strcmp(which, "rpm") == 0
                   ? "This API key is over its requests per minute (rpm); retry after the "
                     "time in Retry-After."
                   : "This API key has as many requests in flight as its concurrency limit "
                     "allows; retry when one has finished.";
        return false;
    }
    *status = 401;
    *code = "invalid_api_key";
    *why = "The caller was not identified.";
    return false;
}
