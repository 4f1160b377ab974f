/* Virtual keys: generation and hashing (OpenSSL), the field validator shared
 * by the admin API and `baton keys`, the JSON form, and the lookup table. */
#include "store/keys.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include "core/arena.h"

/* ---- keys ---- */

void bt_key_hash(struct bt_str key, unsigned char out[BT_KEY_HASH_LEN])
{
    unsigned int n = 0;
    if (!EVP_Digest(key.p ? key.p : "", key.len, out, &n, EVP_sha256(), NULL) ||
        n != BT_KEY_HASH_LEN)
        memset(out, 0, BT_KEY_HASH_LEN); /* cannot happen with a working libcrypto */
}

static void hex(char *out, const unsigned char *p, size_t n)
{
    static const char d[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = d[p[i] >> 4];
        out[2 * i + 1] = d[p[i] & 15];
    }
    out[2 * n] = 0;
}

enum bt_err bt_key_generate(char key[BT_KEY_LEN + 1], struct bt_key_rec *k)
{
    static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    unsigned char r[33], idr[8];
    if (RAND_bytes(r, sizeof(r)) != 1 || RAND_bytes(idr, sizeof(idr)) != 1) return BT_EIO;
    size_t n = strlen(BT_KEY_PREFIX);
    memcpy(key, BT_KEY_PREFIX, n);
    /* 43 characters of 6 bits: 258 random bits, the last 2 unused. */
    for (size_t i = 0; i < 43; i++) {
        size_t bit = i * 6, byte = bit / 8, off = bit % 8;
        unsigned v = ((unsigned)r[byte] << 8 | r[byte + 1]) >> (10 - off);
        key[n + i] = b64[v & 63];
    }
    key[BT_KEY_LEN] = 0;
    OPENSSL_cleanse(r, sizeof(r));
    memcpy(k->id, "key_", 4);
    hex(k->id + 4, idr, sizeof(idr));
    bt_key_hash((struct bt_str){key, BT_KEY_LEN}, k->hash);
    memcpy(k->prefix, key, BT_KEY_PREFIX_LEN);
    k->prefix[BT_KEY_PREFIX_LEN] = 0;
    return BT_OK;
}

bool bt_key_active(const struct bt_key_rec *k, int64_t now)
{
    return !k->revoked_at && (!k->expires_at || now < k->expires_at);
}

const char *bt_key_status(const struct bt_key_rec *k, int64_t now)
{
    if (k->revoked_at) return "revoked";
    if (k->expires_at && now >= k->expires_at) return "expired";
    return "active";
}

bool bt_key_allows_model(const struct bt_key_rec *k, struct bt_str model)
{
    if (!k->models) return true;
    for (size_t i = 0; i < k->nmodels; i++)
        if (bt_str_eq_c(model, k->models[i])) return true;
    return false;
}

/* ---- the fields ---- */

static const char *const fields[] = {"user",       "team",          "models",     "rpm",
                                     "tpm",        "concurrency",   "budget_usd", "budget_period",
                                     "expires_at", "metadata",      NULL};

void bt_key_patch_free(struct bt_key_patch *p)
{
    bt_key_rec_free(&p->v);
    p->set = 0;
}

/* "12.5" -> 12500000 micro-USD: digits, optionally '.' and 1-6 digits, at most
 * 1e9 dollars. False otherwise. */
static bool parse_usd(struct bt_str s, int64_t *out)
{
    size_t i = 0;
    int64_t whole = 0, frac = 0;
    if (!s.len || s.p[0] < '0' || s.p[0] > '9') return false;
    for (; i < s.len && s.p[i] >= '0' && s.p[i] <= '9'; i++) {
        whole = whole * 10 + (s.p[i] - '0');
        if (whole > 1000000000) return false;
    }
    int places = 0;
    if (i < s.len && s.p[i] == '.') {
        i++;
        for (; i < s.len && s.p[i] >= '0' && s.p[i] <= '9'; i++) {
            if (++places > 6) return false;
            frac = frac * 10 + (s.p[i] - '0');
        }
        if (!places) return false;
    }
    if (i != s.len) return false;
    for (; places < 6; places++) frac *= 10;
    *out = whole * 1000000 + frac;
    return *out <= 1000000000LL * 1000000;
}

static bool digits(const char *p, int n, int *out)
{
    int v = 0;
    for (int i = 0; i < n; i++) {
        if (p[i] < '0' || p[i] > '9') return false;
        v = v * 10 + (p[i] - '0');
    }
    *out = v;
    return true;
}

/* RFC 3339: YYYY-MM-DDTHH:MM:SS[.frac](Z|+HH:MM|-HH:MM) -> unix seconds. */
static bool parse_rfc3339(struct bt_str s, int64_t *out)
{
    const char *p = s.p;
    size_t n = s.len;
    int Y, M, D, h, m, sec;
    if (n < 20 || !digits(p, 4, &Y) || p[4] != '-' || !digits(p + 5, 2, &M) || p[7] != '-' ||
        !digits(p + 8, 2, &D) || (p[10] != 'T' && p[10] != 't') || !digits(p + 11, 2, &h) ||
        p[13] != ':' || !digits(p + 14, 2, &m) || p[16] != ':' || !digits(p + 17, 2, &sec))
        return false;
    if (M < 1 || M > 12 || D < 1 || D > 31 || h > 23 || m > 59 || sec > 60 || Y < 1970)
        return false;
    size_t i = 19;
    if (i < n && p[i] == '.') {
        i++;
        size_t f = i;
        while (i < n && p[i] >= '0' && p[i] <= '9') i++;
        if (i == f) return false;
    }
    int off = 0;
    if (i < n && (p[i] == 'Z' || p[i] == 'z')) {
        i++;
    } else if (i + 6 == n && (p[i] == '+' || p[i] == '-') && p[i + 3] == ':') {
        int oh, om;
        if (!digits(p + i + 1, 2, &oh) || !digits(p + i + 4, 2, &om) || oh > 23 || om > 59)
            return false;
        off = (oh * 60 + om) * 60 * (p[i] == '-' ? -1 : 1);
        i += 6;
    } else {
        return false;
    }
    if (i != n) return false;
    struct tm tm = {.tm_year = Y - 1900, .tm_mon = M - 1, .tm_mday = D, .tm_hour = h,
                    .tm_min = m, .tm_sec = sec};
    time_t t = timegm(&tm);
    if (t == (time_t)-1 || tm.tm_mday != D) return false; /* e.g. February 30 */
    *out = (int64_t)t - off;
    return true;
}

static bool name_ok(struct bt_str s)
{
    if (!s.len || s.len > BT_KEY_MAX_NAME) return false;
    for (size_t i = 0; i < s.len; i++)
        if ((unsigned char)s.p[i] < 0x20 || s.p[i] == 0x7f) return false;
    return true;
}

#define BAD(...)                                                                               \
    do {                                                                                       \
        snprintf(why, whycap, __VA_ARGS__);                                                    \
        err = BT_EINVAL;                                                                       \
        goto out;                                                                              \
    } while (0)

enum bt_err bt_key_patch_parse(struct bt_str json, int64_t now, struct bt_key_patch *p, char *why,
                               size_t whycap)
{
    p->set = 0;
    bt_key_rec_init(&p->v);
    struct bt_arena a;
    bt_arena_init(&a, 8192, 8u << 20);
    struct bt_json_doc doc;
    struct bt_json_error je = {0};
    struct bt_json_limits lim = {.max_tokens = 1u << 16, .max_depth = 32};
    enum bt_err err = bt_json_parse(&doc, json.p ? json.p : "", json.len, &a, &lim, &je);
    if (err == BT_ENOMEM) goto out;
    if (err) BAD("The body is not valid JSON: %s at byte %zu.", je.msg, je.offset);
    if (bt_json_type(&doc, 0) != BT_JSON_OBJECT) BAD("The body must be a JSON object.");
    uint32_t nmembers = doc.toks[0].size;
    int kt = bt_json_first(&doc, 0);
    for (uint32_t m = 0; m < nmembers; m++, kt = (int)doc.toks[kt + 1].next) {
        int vt = kt + 1, idx = -1;
        for (int i = 0; fields[i]; i++)
            if (bt_json_str_eq(&doc, kt, fields[i])) idx = i;
        struct bt_str kname = bt_json_str_raw(&doc, kt);
        if (idx < 0)
            BAD("Unknown field '%.*s' (expected one of: user, team, models, rpm, tpm, concurrency, "
                "budget_usd, budget_period, expires_at, metadata).",
                (int)(kname.len > 60 ? 60 : kname.len), kname.p);
        uint32_t bit = 1u << idx;
        if (p->set & bit) BAD("The field '%s' appears twice.", fields[idx]);
        p->set |= bit;
        int type = bt_json_type(&doc, vt);
        if (type == BT_JSON_NULL) continue; /* the unset value, from bt_key_rec_init */
        struct bt_str s;
        switch (bit) {
        case BT_KF_USER:
        case BT_KF_TEAM:
            if (type != BT_JSON_STRING) BAD("'%s' must be a string or null.", fields[idx]);
            if ((err = bt_json_str(&doc, vt, &a, &s))) goto out;
            if (!name_ok(s))
                BAD("'%s' must be 1 to %d characters without control characters.", fields[idx],
                    BT_KEY_MAX_NAME);
            if (!(*(bit == BT_KF_USER ? &p->v.user : &p->v.team) = bt_str_dup(s))) goto oom;
            break;
        case BT_KF_MODELS: {
            if (type != BT_JSON_ARRAY)
                BAD("'models' must be a list of model names or null (every model).");
            uint32_t n = doc.toks[vt].size;
            if (n > BT_KEY_MAX_MODELS) BAD("'models' lists more than %d names.", BT_KEY_MAX_MODELS);
            if (!(p->v.models = calloc(n ? n : 1, sizeof(char *)))) goto oom;
            int t = bt_json_first(&doc, vt);
            for (uint32_t e = 0; e < n; e++, t = (int)doc.toks[t].next) {
                if (bt_json_type(&doc, t) != BT_JSON_STRING)
                    BAD("'models' must be a list of strings.");
                if ((err = bt_json_str(&doc, t, &a, &s))) goto out;
                if (!name_ok(s))
                    BAD("'models': each name must be 1 to %d characters without control "
                        "characters.", BT_KEY_MAX_NAME);
                if (!(p->v.models[p->v.nmodels] = bt_str_dup(s))) goto oom;
                p->v.nmodels++;
            }
            break;
        }
        case BT_KF_RPM:
        case BT_KF_TPM:
        case BT_KF_CONCURRENCY: {
            int64_t v;
            if (type != BT_JSON_NUMBER || bt_json_int(&doc, vt, &v) || v < 1 || v > 1000000000)
                BAD("'%s' must be a whole number from 1 to 1000000000, or null.", fields[idx]);
            *(bit == BT_KF_RPM ? &p->v.rpm : bit == BT_KF_TPM ? &p->v.tpm : &p->v.concurrency) = v;
            break;
        }
        case BT_KF_BUDGET:
            if (type != BT_JSON_NUMBER || !parse_usd(bt_json_raw(&doc, vt), &p->v.budget_micro_usd))
                BAD("'budget_usd' must be a number of US dollars from 0 to 1000000000 with at "
                    "most 6 decimal places (e.g. 5 or 12.50), or null.");
            break;
        case BT_KF_PERIOD:
            if (type != BT_JSON_STRING || bt_json_str(&doc, vt, &a, &s) ||
                !bt_budget_period_parse(s.p, s.len, &p->v.budget_period))
                BAD("'budget_period' must be \"day\", \"week\" or \"month\", or null.");
            break;
        case BT_KF_EXPIRES: {
            int64_t t = 0;
            if (type == BT_JSON_NUMBER) {
                if (bt_json_int(&doc, vt, &t) || t < 1)
                    BAD("'expires_at' must be unix seconds or an RFC 3339 time, or null.");
            } else if (type != BT_JSON_STRING || bt_json_str(&doc, vt, &a, &s) ||
                       !parse_rfc3339(s, &t)) {
                BAD("'expires_at' must be unix seconds or an RFC 3339 time such as "
                    "2027-01-31T00:00:00Z, or null.");
            }
            if (t <= now) BAD("'expires_at' is in the past.");
            p->v.expires_at = t;
            break;
        }
        case BT_KF_METADATA: {
            if (type != BT_JSON_OBJECT) BAD("'metadata' must be a JSON object or null.");
            struct bt_str raw = bt_json_raw(&doc, vt);
            if (raw.len > BT_KEY_MAX_METADATA)
                BAD("'metadata' is larger than %d bytes.", BT_KEY_MAX_METADATA);
            if (!(p->v.metadata = bt_str_dup(raw))) goto oom;
            break;
        }
        }
    }
    err = BT_OK;
    goto out;
oom:
    err = BT_ENOMEM;
out:
    if (err == BT_ENOMEM) snprintf(why, whycap, "out of memory");
    bt_arena_free(&a);
    return err;
}

#undef BAD

static void move_str(char **dst, char **src)
{
    free(*dst);
    *dst = *src;
    *src = NULL;
}

void bt_key_patch_apply(struct bt_key_rec *k, struct bt_key_patch *p)
{
    struct bt_key_rec *v = &p->v;
    if (p->set & BT_KF_USER) move_str(&k->user, &v->user);
    if (p->set & BT_KF_TEAM) move_str(&k->team, &v->team);
    if (p->set & BT_KF_MODELS) {
        for (size_t i = 0; i < k->nmodels; i++) free(k->models[i]);
        free(k->models);
        k->models = v->models;
        k->nmodels = v->nmodels;
        v->models = NULL;
        v->nmodels = 0;
    }
    if (p->set & BT_KF_RPM) k->rpm = v->rpm;
    if (p->set & BT_KF_TPM) k->tpm = v->tpm;
    if (p->set & BT_KF_CONCURRENCY) k->concurrency = v->concurrency;
    if (p->set & BT_KF_BUDGET) k->budget_micro_usd = v->budget_micro_usd;
    if (p->set & BT_KF_PERIOD) k->budget_period = v->budget_period;
    if (p->set & BT_KF_EXPIRES) k->expires_at = v->expires_at;
    if (p->set & BT_KF_METADATA) move_str(&k->metadata, &v->metadata);
    if (k->budget_micro_usd >= 0 && k->budget_period == BT_PERIOD_NONE)
        k->budget_period = BT_PERIOD_MONTH;
}

static void opt_str(struct bt_jw *w, const char *key, const char *v)
{
    bt_jw_key(w, key);
    if (v) bt_jw_cstr(w, v);
    else bt_jw_null(w);
}

static void opt_int(struct bt_jw *w, const char *key, int64_t v, int64_t unset)
{
    bt_jw_key(w, key);
    if (v == unset) bt_jw_null(w);
    else bt_jw_int(w, v);
}

void bt_key_write_json(struct bt_jw *w, const struct bt_key_rec *k, int64_t now, const char *key)
{
    bt_jw_obj_begin(w);
    bt_jw_key(w, "id");
    bt_jw_cstr(w, k->id);
    bt_jw_key(w, "object");
    bt_jw_cstr(w, "key");
    if (key) {
        bt_jw_key(w, "key");
        bt_jw_cstr(w, key);
    }
    bt_jw_key(w, "key_prefix");
    bt_jw_cstr(w, k->prefix);
    bt_jw_key(w, "status");
    bt_jw_cstr(w, bt_key_status(k, now));
    opt_str(w, "user", k->user);
    opt_str(w, "team", k->team);
    bt_jw_key(w, "models");
    if (k->models) {
        bt_jw_arr_begin(w);
        for (size_t i = 0; i < k->nmodels; i++) bt_jw_cstr(w, k->models[i]);
        bt_jw_arr_end(w);
    } else {
        bt_jw_null(w);
    }
    opt_int(w, "rpm", k->rpm, -1);
    opt_int(w, "tpm", k->tpm, -1);
    opt_int(w, "concurrency", k->concurrency, -1);
    bt_jw_key(w, "budget_usd");
    if (k->budget_micro_usd < 0) bt_jw_null(w);
    else bt_jw_decimal(w, k->budget_micro_usd, 6);
    opt_str(w, "budget_period", bt_budget_period_name(k->budget_period));
    opt_int(w, "expires_at", k->expires_at, 0);
    bt_jw_key(w, "metadata");
    if (k->metadata) bt_jw_raw(w, bt_str_c(k->metadata));
    else bt_jw_null(w);
    bt_jw_key(w, "created_at");
    bt_jw_int(w, k->created_at);
    bt_jw_key(w, "updated_at");
    bt_jw_int(w, k->updated_at);
    opt_int(w, "revoked_at", k->revoked_at, 0);
    bt_jw_obj_end(w);
}

/* ---- limits ---- */

bool bt_live_take(struct bt_key_live *l, int64_t rpm, int64_t concurrency, int64_t now,
                  bool *held, const char **which, int64_t *retry_after)
{
    *held = false;
    if (!l) return true;
    if (concurrency > 0) {
        if (atomic_fetch_add(&l->inflight, 1) >= concurrency) {
            atomic_fetch_sub(&l->inflight, 1);
            *which = "concurrency";
            *retry_after = 1;
            return false;
        }
        *held = true;
    }
    if (rpm > 0) {
        uint_fast64_t minute = (uint_fast64_t)(now / 60), seen = atomic_load(&l->window);
        /* The first request of a new minute resets the count; a racing one may
         * count in the old minute's total: off by a few at a minute's edge. */
        if (seen != minute && atomic_compare_exchange_strong(&l->window, &seen, minute))
            atomic_store(&l->count, 0);
        if (atomic_fetch_add(&l->count, 1) >= (uint64_t)rpm) {
            if (*held) atomic_fetch_sub(&l->inflight, 1);
            *held = false;
            *which = "rpm";
            *retry_after = 60 - now % 60;
            return false;
        }
    }
    return true;
}

bool bt_key_take(const struct bt_key_rec *k, int64_t now, bool *held, const char **which,
                 int64_t *retry_after)
{
    return bt_live_take(k->live, k->rpm, k->concurrency, now, held, which, retry_after);
}

bool bt_key_take_tokens(const struct bt_key_rec *k, int64_t now, int64_t tokens, int64_t *minute,
                        int64_t *retry_after)
{
    return bt_live_take_tokens(k->live, k->tpm, now, tokens, minute, retry_after);
}

bool bt_live_take_tokens(struct bt_key_live *l, int64_t tpm, int64_t now, int64_t tokens,
                         int64_t *minute, int64_t *retry_after)
{
    *minute = now / 60;
    if (!l || tpm <= 0) return true;
    if (tokens < 0) tokens = 0;
    uint_fast64_t m = (uint_fast64_t)*minute, seen = atomic_load(&l->tpm_window);
    if (seen != m && atomic_compare_exchange_strong(&l->tpm_window, &seen, m))
        atomic_store(&l->tokens, 0);
    int64_t before = atomic_fetch_add(&l->tokens, tokens);
    if (before + tokens > tpm) {
        atomic_fetch_sub(&l->tokens, tokens);
        *retry_after = 60 - now % 60;
        return false;
    }
    return true;
}

void bt_key_correct_tokens(struct bt_key_live *live, int64_t minute, int64_t delta)
{
    if (live && delta && atomic_load(&live->tpm_window) == (uint_fast64_t)minute)
        atomic_fetch_add(&live->tokens, delta);
}

int64_t bt_key_spent(const struct bt_key_rec *k)
{
    if (!k->live) return 0;
    return atomic_load(&k->live->spent_pusd) + atomic_load(&k->live->pending_pusd);
}

void bt_key_charge(struct bt_key_live *live, int64_t pusd)
{
    if (live && pusd > 0) atomic_fetch_add(&live->pending_pusd, pusd);
}

void bt_key_release(void *live)
{
    struct bt_key_live *l = live;
    if (l) atomic_fetch_sub(&l->inflight, 1);
}

void bt_key_release_slots(void *slots)
{
    struct bt_key_slots *sl = slots;
    for (int i = 0; i < 3; i++) bt_key_release(sl->live[i]);
}

/* ---- the table ---- */

struct bt_keytab {
    atomic_int refs;
    struct bt_key_rec *recs;  /* owned */
    size_t n;
    uint32_t *slots;          /* open addressing: index + 1 into recs, 0 = empty */
    uint32_t mask;            /* slots has mask + 1 entries, a power of two */
};

static uint32_t slot_of(const unsigned char *h)
{
    uint32_t v;
    memcpy(&v, h, sizeof(v)); /* a digest's bytes are already uniform */
    return v;
}

enum bt_err bt_keytab_build(struct bt_key_list *l, struct bt_keytab **out)
{
    *out = NULL;
    struct bt_keytab *t = calloc(1, sizeof(*t));
    if (!t) return BT_ENOMEM;
    atomic_init(&t->refs, 1);
    size_t keep = 0;
    for (size_t i = 0; i < l->n; i++) keep += !l->items[i].revoked_at;
    uint32_t cap = 16;
    while (cap < 2 * keep + 2) cap *= 2;
    t->mask = cap - 1;
    t->slots = calloc(cap, sizeof(*t->slots));
    t->recs = calloc(keep ? keep : 1, sizeof(*t->recs));
    if (!t->slots || !t->recs) {
        free(t->slots);
        free(t->recs);
        free(t);
        return BT_ENOMEM;
    }
    for (size_t i = 0; i < l->n; i++) {
        struct bt_key_rec *r = &l->items[i];
        if (r->revoked_at) continue;
        uint32_t s = slot_of(r->hash) & t->mask;
        while (t->slots[s]) s = (s + 1) & t->mask;
        t->recs[t->n] = *r;
        bt_key_rec_init(r); /* moved: the list keeps an empty record */
        t->slots[s] = (uint32_t)++t->n;
    }
    *out = t;
    return BT_OK;
}

const struct bt_key_rec *bt_keytab_find(const struct bt_keytab *t,
                                        const unsigned char hash[BT_KEY_HASH_LEN])
{
    if (!t) return NULL;
    for (uint32_t s = slot_of(hash) & t->mask;; s = (s + 1) & t->mask) {
        uint32_t i = t->slots[s];
        if (!i) return NULL;
        /* The whole digest, in constant time: the probe's bucket says nothing an
         * attacker could use (it is a function of a SHA-256 they cannot invert). */
        if (CRYPTO_memcmp(t->recs[i - 1].hash, hash, BT_KEY_HASH_LEN) == 0) return &t->recs[i - 1];
    }
}

struct bt_key_rec *bt_keytab_rec(struct bt_keytab *t, size_t i)
{
    return i < t->n ? &t->recs[i] : NULL;
}

size_t bt_keytab_count(const struct bt_keytab *t)
{
    return t ? t->n : 0;
}

struct bt_keytab *bt_keytab_ref(struct bt_keytab *t)
{
    if (t) atomic_fetch_add_explicit(&t->refs, 1, memory_order_relaxed);
    return t;
}

void bt_keytab_unref(struct bt_keytab *t)
{
    if (!t || atomic_fetch_sub_explicit(&t->refs, 1, memory_order_acq_rel) != 1) return;
    for (size_t i = 0; i < t->n; i++) bt_key_rec_free(&t->recs[i]);
    free(t->recs);
    free(t->slots);
    free(t);
}
