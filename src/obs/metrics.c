#include "obs/metrics.h"

#include <pthread.h>
#include <stdalign.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/arena.h"
#include "core/version.h"

/* ---- series layout ----
 * A series is one label set of one kind. Its counters follow the header; its
 * label bytes follow the counters. Everything but the counters is immutable once
 * the series is published. */

enum kind {
    K_REQ,   /* (model, deployment, status): one counter */
    K_MODEL, /* (model): latency + TTFT histograms, tokens in/out */
    K_UPERR, /* (provider, class): one counter */
};

/* Histogram bounds in ns (le), suited to LLM calls: a cached reply in a few ms, a
 * long reasoning stream in minutes. The +Inf bucket follows the last bound. */
static const uint64_t bounds_ns[] = {
    5000000ull,     10000000ull,    25000000ull,     50000000ull,
    100000000ull,   250000000ull,   500000000ull,    1000000000ull,
    2500000000ull,  5000000000ull,  10000000000ull,  20000000000ull,
    30000000000ull, 60000000000ull, 120000000000ull, 300000000000ull,
};
static const char *const bounds_txt[] = {
    "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1",
    "2.5",   "5",    "10",    "20",   "30",  "60",   "120", "300",
};
#define NBOUND (sizeof(bounds_ns) / sizeof(bounds_ns[0]))
#define NBUCKET (NBOUND + 1)

/* Counter indices of a K_MODEL series. Bucket counts are per bucket (not
 * cumulative) so an observation is one increment; sums are in microseconds, which
 * a uint64 holds for 580,000 years of summed latency. */
enum {
    M_DUR = 0,            /* NBUCKET latency buckets */
    M_DUR_SUM = NBUCKET,  /* summed latency, us */
    M_TTFT = NBUCKET + 1, /* NBUCKET TTFT buckets */
    M_TTFT_SUM = 2 * NBUCKET + 1,
    M_TOK_IN,
    M_TOK_OUT,
    M_NV,
};

static const unsigned nvals[] = {[K_REQ] = 1, [K_MODEL] = M_NV, [K_UPERR] = 1};

struct series {
    uint64_t hash;        /* of (kind, code, a, b); for the owner's lookup table */
    uint8_t kind;         /* enum kind */
    uint16_t code;        /* K_REQ: HTTP status, 0 = other; K_UPERR: class */
    uint16_t alen, blen;  /* label byte counts */
    const char *a, *b;    /* model or provider; deployment (K_REQ only) */
    _Atomic uint64_t v[]; /* nvals[kind] counters, then the label bytes */
};

/* Room past the cap for the folded ("other") series a shard may need: one per
 * status (0 and 100..599), one model, one per upstream class. */
#define FOLD_RESERVE (1 + 500 + 1 + BT_UPCLASS_COUNT)

struct bt_metrics_shard {
    struct bt_metrics *m; /* registry (for the cap) */
    /* Owner-only lookup table (open addressing, power-of-two size, <= 50% full);
     * scrapes never read it, so it grows by plain reallocation and rehash. */
    struct series **tab;
    uint32_t tab_mask; /* size - 1 */
    uint32_t tab_used; /* series in tab */
    /* Published series: the owner fills list[n] and then stores n + 1 into nlist
     * with release; a scrape loads nlist with acquire and reads list[0..n). The
     * array never moves (sized for the cap at creation). */
    struct series **list;
    uint32_t list_cap;      /* max_series + FOLD_RESERVE */
    _Atomic uint32_t nlist; /* published entries of list */
    /* Gauges and the fold counter, on their own cache line: the owner writes
     * them on every request, scrapes read them. */
    alignas(64) _Atomic int64_t inflight; /* baton_requests_in_flight part */
    _Atomic int64_t conns;                /* baton_open_connections part */
    _Atomic uint64_t folded;              /* updates counted under "other" (or dropped) */
};

struct bt_metrics {
    unsigned nshards;
    struct bt_metrics_shard **shards;        /* nshards, each aligned_alloc'd */
    size_t max_series;                       /* cap on series_used */
    _Atomic size_t series_used;              /* labelled series created in all shards */
    char *version;                           /* baton_build_info's label, owned */
    int64_t start_ms;                        /* wall clock at creation */
    _Atomic uint64_t reload_ok, reload_fail; /* baton_config_reloads_total */
    _Atomic int64_t last_success_ms;         /* wall clock of the last good load */
    _Atomic int last_ok;                     /* 1 when the last reload succeeded */
    pthread_mutex_t lock;                    /* scrapes and the connections fn */
    int64_t (*conns_fn)(void *ud);           /* open connections, when installed */
    void *conns_ud;                          /* its argument */
};

/* One writer per shard, so a relaxed load and store is an exact increment and
 * needs no locked instruction; readers load relaxed and never see a torn value. */
static inline void inc(_Atomic uint64_t *c, uint64_t d)
{
    atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + d,
                          memory_order_relaxed);
}

static inline void gauge_add(_Atomic int64_t *g, int64_t d)
{
    atomic_store_explicit(g, atomic_load_explicit(g, memory_order_relaxed) + d,
                          memory_order_relaxed);
}

static int64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- hashing ---- */

static inline uint64_t mix(uint64_t h)
{
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdull;
    h ^= h >> 33;
    return h;
}

/* Word-at-a-time: label values are short and the table is private, so speed
 * matters more than resistance to chosen keys (the series cap bounds the harm).
 * The tail is read with loads that never go through a byte-built stack word
 * (which stalls store forwarding and once cost more than the rest). */
static uint64_t hash_bytes(uint64_t h, const char *p, size_t n)
{
    const uint64_t k = 0x9e3779b97f4a7c15ull;
    h ^= (uint64_t)n * k;
    while (n > 8) {
        uint64_t w;
        memcpy(&w, p, 8);
        h = (h ^ w) * k;
        h ^= h >> 29;
        p += 8;
        n -= 8;
    }
    uint64_t w;
    if (n == 8) {
        memcpy(&w, p, 8);
    } else if (n >= 4) {
        uint32_t lo, hi;
        memcpy(&lo, p, 4);
        memcpy(&hi, p + n - 4, 4);
        w = (uint64_t)lo | (uint64_t)hi << 32;
    } else if (n) {
        const unsigned char *u = (const unsigned char *)p;
        w = (uint64_t)u[0] | (uint64_t)u[n / 2] << 8 | (uint64_t)u[n - 1] << 16;
    } else {
        w = 0;
    }
    return mix((h ^ w) * k);
}

/* A normalised label value and its hash, computed once per request even when
 * the value is part of several series' keys. */
struct label {
    struct bt_str s;
    uint64_t h;
};

static uint64_t key_hash(unsigned kind, unsigned code, uint64_t ha, uint64_t hb)
{
    return mix(ha ^ (hb + ((uint64_t)kind << 32 | code)) * 0xc2b2ae3d27d4eb4full);
}

/* Empty means "none"; long values are cut at a UTF-8 character boundary. Both
 * happen before hashing so the same input always finds the same series. */
static struct bt_str norm(struct bt_str s)
{
    if (!s.len) return BT_STR("none");
    if (s.len > BT_METRICS_MAX_LABEL) {
        size_t n = BT_METRICS_MAX_LABEL;
        while (n > 0 && ((unsigned char)s.p[n] & 0xc0) == 0x80)
            n--;
        s.len = n;
    }
    return s;
}

static inline struct label label(struct bt_str s)
{
    s = norm(s);
    return (struct label){s, hash_bytes(0, s.p, s.len)};
}

static const struct label no_label = {{"", 0}, 0};

/* ---- shard tables ---- */

static bool tab_grow(struct bt_metrics_shard *s)
{
    uint32_t size = s->tab ? (s->tab_mask + 1) * 2 : 64;
    struct series **t = calloc(size, sizeof(*t));
    if (!t) return false;
    if (s->tab) {
        for (uint32_t i = 0; i <= s->tab_mask; i++) {
            struct series *e = s->tab[i];
            if (!e) continue;
            uint32_t j = (uint32_t)e->hash & (size - 1);
            while (t[j])
                j = (j + 1) & (size - 1);
            t[j] = e;
        }
        free(s->tab);
    }
    s->tab = t;
    s->tab_mask = size - 1;
    return true;
}

/* Equality of two label values of the same length n. Inline word compares: the
 * values are short and a libc memcmp call was a sixth of an update's cost. */
static inline bool same(const char *x, const char *y, size_t n)
{
    uint64_t a, b;
    while (n > 8) {
        memcpy(&a, x, 8);
        memcpy(&b, y, 8);
        if (a != b) return false;
        x += 8;
        y += 8;
        n -= 8;
    }
    if (n >= 4) {
        uint32_t a1, b1, a2, b2;
        memcpy(&a1, x, 4);
        memcpy(&b1, y, 4);
        memcpy(&a2, x + n - 4, 4);
        memcpy(&b2, y + n - 4, 4);
        return a1 == b1 && a2 == b2;
    }
    for (size_t i = 0; i < n; i++)
        if (x[i] != y[i]) return false;
    return true;
}

static struct series *tab_find(struct bt_metrics_shard *s, uint64_t h, unsigned kind, unsigned code,
                               struct bt_str a, struct bt_str b, uint32_t *slot)
{
    uint32_t j = (uint32_t)h & s->tab_mask;
    for (struct series *e; (e = s->tab[j]); j = (j + 1) & s->tab_mask) {
        if (e->hash == h && e->kind == kind && e->code == code && e->alen == a.len &&
            e->blen == b.len && same(e->a, a.p, a.len) && same(e->b, b.p, b.len))
            return e;
    }
    *slot = j;
    return NULL;
}

/* Creates, inserts and publishes a series. `capped` series count against the
 * registry's cap; folded ones use the shard's reserve. NULL when the cap is
 * reached or memory runs out. */
static struct series *series_new(struct bt_metrics_shard *s, uint64_t h, unsigned kind,
                                 unsigned code, struct bt_str a, struct bt_str b, bool capped)
{
    struct bt_metrics *m = s->m;
    uint32_t n = atomic_load_explicit(&s->nlist, memory_order_relaxed);
    if (n >= s->list_cap) return NULL;
    if (capped) {
        /* A plain load first keeps folded traffic off the shared line's RMW. */
        if (atomic_load_explicit(&m->series_used, memory_order_relaxed) >= m->max_series)
            return NULL;
        if (atomic_fetch_add_explicit(&m->series_used, 1, memory_order_relaxed) >= m->max_series) {
            atomic_fetch_sub_explicit(&m->series_used, 1, memory_order_relaxed);
            return NULL;
        }
    }
    if ((s->tab_used + 1) * 2 > s->tab_mask + 1 && !tab_grow(s)) goto fail;
    size_t nv = nvals[kind];
    struct series *e = calloc(1, sizeof(*e) + nv * sizeof(e->v[0]) + a.len + b.len + 1);
    if (!e) goto fail;
    char *str = (char *)(e->v + nv);
    if (a.len) memcpy(str, a.p, a.len);
    if (b.len) memcpy(str + a.len, b.p, b.len);
    e->hash = h;
    e->kind = (uint8_t)kind;
    e->code = (uint16_t)code;
    e->a = str;
    e->alen = (uint16_t)a.len;
    e->b = str + a.len;
    e->blen = (uint16_t)b.len;
    for (size_t i = 0; i < nv; i++)
        atomic_init(&e->v[i], 0);
    uint32_t slot = 0;
    tab_find(s, h, kind, code, a, b, &slot);
    s->tab[slot] = e;
    s->tab_used++;
    s->list[n] = e;
    /* Publish: the series' fields and list[n] happen-before a scrape's acquire
     * load that sees n + 1. */
    atomic_store_explicit(&s->nlist, n + 1, memory_order_release);
    return e;
fail:
    if (capped) atomic_fetch_sub_explicit(&m->series_used, 1, memory_order_relaxed);
    return NULL;
}

/* The series for (kind, code, a, b), created on first use. Past the cap the
 * labels fold into "other" (the code is kept: it is bounded). NULL only when
 * even the folded series cannot be had (out of memory). */
static struct series *get(struct bt_metrics_shard *s, unsigned kind, unsigned code, struct label a,
                          struct label b)
{
    uint64_t h = key_hash(kind, code, a.h, b.h);
    uint32_t slot = 0;
    struct series *e = s->tab ? tab_find(s, h, kind, code, a.s, b.s, &slot) : NULL;
    if (e) return e;
    if (!s->tab && !tab_grow(s)) return NULL;
    e = series_new(s, h, kind, code, a.s, b.s, true);
    if (e) return e;
    inc(&s->folded, 1);
    a = label(BT_STR("other"));
    if (kind == K_REQ) b = a;
    h = key_hash(kind, code, a.h, b.h);
    e = tab_find(s, h, kind, code, a.s, b.s, &slot);
    return e ? e : series_new(s, h, kind, code, a.s, b.s, false);
}

/* ---- request-path API ---- */

static void observe(_Atomic uint64_t *buckets, _Atomic uint64_t *sum_us, uint64_t ns)
{
    size_t i = 0;
    while (i < NBOUND && ns > bounds_ns[i])
        i++;
    inc(&buckets[i], 1);
    inc(sum_us, (ns + 500) / 1000);
}

void bt_metrics_request_done(struct bt_metrics_shard *s, const struct bt_metrics_req *r)
{
    if (!s || !r) return;
    unsigned code = r->status >= 100 && r->status <= 599 ? (unsigned)r->status : 0;
    struct label model = label(r->model);
    struct series *e = get(s, K_REQ, code, model, label(r->deployment));
    if (e) inc(&e->v[0], 1);
    e = get(s, K_MODEL, 0, model, no_label);
    if (!e) return;
    observe(&e->v[M_DUR], &e->v[M_DUR_SUM], r->latency_ns);
    if (r->ttft_ns) observe(&e->v[M_TTFT], &e->v[M_TTFT_SUM], r->ttft_ns);
    if (r->tokens_in > 0) inc(&e->v[M_TOK_IN], (uint64_t)r->tokens_in);
    if (r->tokens_out > 0) inc(&e->v[M_TOK_OUT], (uint64_t)r->tokens_out);
}

void bt_metrics_inflight_add(struct bt_metrics_shard *s, int delta)
{
    if (s) gauge_add(&s->inflight, delta);
}

void bt_metrics_connections_add(struct bt_metrics_shard *s, int delta)
{
    if (s) gauge_add(&s->conns, delta);
}

void bt_metrics_connections_set(struct bt_metrics_shard *s, int64_t n)
{
    if (s) atomic_store_explicit(&s->conns, n, memory_order_relaxed);
}

void bt_metrics_upstream_error(struct bt_metrics_shard *s, struct bt_str provider,
                               enum bt_metrics_upclass cls)
{
    if (!s) return;
    if ((unsigned)cls >= BT_UPCLASS_COUNT) cls = BT_UPCLASS_OTHER;
    struct series *e = get(s, K_UPERR, (unsigned)cls, label(provider), no_label);
    if (e) inc(&e->v[0], 1);
}

static const char *const upclass_names[BT_UPCLASS_COUNT] = {
    [BT_UPCLASS_TIMEOUT] = "timeout", [BT_UPCLASS_RESET] = "reset",
    [BT_UPCLASS_REFUSED] = "refused", [BT_UPCLASS_DNS] = "dns",
    [BT_UPCLASS_TLS] = "tls",         [BT_UPCLASS_RATE_LIMITED] = "rate_limited",
    [BT_UPCLASS_4XX] = "4xx",         [BT_UPCLASS_5XX] = "5xx",
    [BT_UPCLASS_INVALID] = "invalid", [BT_UPCLASS_OTHER] = "other",
};

const char *bt_metrics_upclass_name(enum bt_metrics_upclass cls)
{
    return (unsigned)cls < BT_UPCLASS_COUNT ? upclass_names[cls] : "other";
}

enum bt_metrics_upclass bt_metrics_upclass_from_err(enum bt_err err)
{
    switch (err) {
    case BT_ETIMEDOUT:
        return BT_UPCLASS_TIMEOUT;
    case BT_ECONNRESET:
    case BT_ECLOSED:
        return BT_UPCLASS_RESET;
    case BT_ECONNREFUSED:
        return BT_UPCLASS_REFUSED;
    case BT_EDNS:
        return BT_UPCLASS_DNS;
    case BT_ETLS:
        return BT_UPCLASS_TLS;
    case BT_EPARSE:
    case BT_EPROTO:
    case BT_ETOOBIG:
        return BT_UPCLASS_INVALID;
    default:
        return BT_UPCLASS_OTHER;
    }
}

enum bt_metrics_upclass bt_metrics_upclass_from_status(int status)
{
    if (status == 429) return BT_UPCLASS_RATE_LIMITED;
    if (status >= 300 && status < 500) return BT_UPCLASS_4XX;
    if (status >= 500 && status < 600) return BT_UPCLASS_5XX;
    return BT_UPCLASS_INVALID; /* not an HTTP status a provider may send */
}

void bt_metrics_reload(struct bt_metrics *m, bool ok)
{
    if (!m) return;
    if (ok) {
        atomic_store(&m->last_success_ms, wall_ms());
        atomic_fetch_add(&m->reload_ok, 1);
    } else {
        atomic_fetch_add(&m->reload_fail, 1);
    }
    atomic_store(&m->last_ok, ok ? 1 : 0);
}

void bt_metrics_set_connections_fn(struct bt_metrics *m, int64_t (*fn)(void *ud), void *ud)
{
    if (!m) return;
    pthread_mutex_lock(&m->lock);
    m->conns_fn = fn;
    m->conns_ud = ud;
    pthread_mutex_unlock(&m->lock);
}

/* ---- lifetime ---- */

static void shard_free(struct bt_metrics_shard *s)
{
    if (!s) return;
    uint32_t n = atomic_load(&s->nlist);
    for (uint32_t i = 0; i < n; i++)
        free(s->list[i]);
    free(s->list);
    free(s->tab);
    free(s);
}

enum bt_err bt_metrics_create(const struct bt_metrics_opts *o, struct bt_metrics **out)
{
    if (!o || !out || o->shards == 0 || o->shards > 4096) return BT_EINVAL;
    *out = NULL;
    size_t max = o->max_series ? o->max_series : BT_METRICS_DEFAULT_MAX_SERIES;
    if (max > (1u << 24)) return BT_EINVAL;
    struct bt_metrics *m = calloc(1, sizeof(*m));
    if (!m) return BT_ENOMEM;
    if (pthread_mutex_init(&m->lock, NULL)) {
        free(m);
        return BT_ENOMEM;
    }
    m->nshards = o->shards;
    m->max_series = max;
    atomic_init(&m->series_used, 0);
    m->start_ms = wall_ms();
    atomic_init(&m->reload_ok, 0);
    atomic_init(&m->reload_fail, 0);
    atomic_init(&m->last_success_ms, m->start_ms);
    atomic_init(&m->last_ok, 1);
    m->version = bt_str_dup(bt_str_c(o->version ? o->version : BT_VERSION));
    m->shards = calloc(o->shards, sizeof(*m->shards));
    if (!m->version || !m->shards) goto fail;
    for (unsigned i = 0; i < o->shards; i++) {
        size_t sz = (sizeof(struct bt_metrics_shard) + 63) & ~(size_t)63;
        struct bt_metrics_shard *s = aligned_alloc(64, sz);
        if (!s) goto fail;
        memset(s, 0, sz);
        m->shards[i] = s;
        s->m = m;
        s->list_cap = (uint32_t)(max + FOLD_RESERVE);
        /* Sized for the whole cap so it never moves under a scrape; calloc keeps
         * the untouched part of large arrays as unbacked zero pages. */
        s->list = calloc(s->list_cap, sizeof(*s->list));
        if (!s->list) goto fail;
        atomic_init(&s->nlist, 0);
        atomic_init(&s->inflight, 0);
        atomic_init(&s->conns, 0);
        atomic_init(&s->folded, 0);
    }
    *out = m;
    return BT_OK;
fail:
    bt_metrics_free(m);
    return BT_ENOMEM;
}

void bt_metrics_free(struct bt_metrics *m)
{
    if (!m) return;
    if (m->shards)
        for (unsigned i = 0; i < m->nshards; i++)
            shard_free(m->shards[i]);
    free(m->shards);
    free(m->version);
    pthread_mutex_destroy(&m->lock);
    free(m);
}

struct bt_metrics_shard *bt_metrics_shard(struct bt_metrics *m, unsigned i)
{
    return m && i < m->nshards ? m->shards[i] : NULL;
}

/* ---- rendering ---- */

/* A writer that remembers the first error, so the render reads as a list of
 * lines and checks once. */
struct w {
    struct bt_buf *b;
    enum bt_err err;
};

static void put(struct w *w, const char *p, size_t n)
{
    if (!w->err) w->err = bt_buf_append(w->b, p, n);
}

static void puts_(struct w *w, const char *s)
{
    put(w, s, strlen(s));
}

static void put_u64(struct w *w, uint64_t v)
{
    if (!w->err) w->err = bt_buf_append_u64(w->b, v);
}

static void put_i64(struct w *w, int64_t v)
{
    if (v < 0) {
        puts_(w, "-");
        put_u64(w, (uint64_t)0 - (uint64_t)v);
    } else {
        put_u64(w, (uint64_t)v);
    }
}

/* `frac_digits` decimal places of v / 10^frac_digits, exact (no floating point). */
static void put_fixed(struct w *w, int64_t v, unsigned frac_digits, uint64_t scale)
{
    if (v < 0) {
        puts_(w, "-");
        v = -v;
    }
    put_u64(w, (uint64_t)v / scale);
    char frac[24];
    uint64_t f = (uint64_t)v % scale;
    frac[0] = '.';
    for (unsigned i = frac_digits; i > 0; i--) {
        frac[i] = (char)('0' + f % 10);
        f /= 10;
    }
    put(w, frac, frac_digits + 1);
}

/* Length of the valid UTF-8 sequence at p (at most n bytes), 0 when invalid
 * (overlong forms, surrogates and code points past U+10FFFF included, as the
 * Prometheus parser rejects them). */
static size_t utf8_len(const unsigned char *p, size_t n)
{
    unsigned c = p[0];
    size_t len;
    unsigned min;
    if (c < 0x80) return 1;
    if (c >= 0xc2 && c <= 0xdf)
        len = 2, min = 0x80;
    else if (c >= 0xe0 && c <= 0xef)
        len = 3, min = 0x800;
    else if (c >= 0xf0 && c <= 0xf4)
        len = 4, min = 0x10000;
    else
        return 0;
    if (n < len) return 0;
    unsigned cp = c & (0x7f >> len);
    for (size_t i = 1; i < len; i++) {
        if ((p[i] & 0xc0) != 0x80) return 0;
        cp = cp << 6 | (p[i] & 0x3f);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return 0;
    return len;
}

/* A label value as the text format wants it: backslash, double quote and newline
 * escaped; bytes that are not valid UTF-8 become U+FFFD. */
static void put_label_value(struct w *w, const char *p, size_t n)
{
    const unsigned char *s = (const unsigned char *)p;
    size_t i = 0, run = 0; /* run: bytes since i that need no change */
    while (i + run < n) {
        unsigned char c = s[i + run];
        size_t l = utf8_len(s + i + run, n - i - run);
        if (l && c != '\\' && c != '"' && c != '\n') {
            run += l;
            continue;
        }
        put(w, p + i, run);
        if (c == '\\')
            puts_(w, "\\\\");
        else if (c == '"')
            puts_(w, "\\\"");
        else if (c == '\n')
            puts_(w, "\\n");
        else
            puts_(w, "\xef\xbf\xbd");
        i += run + 1;
        run = 0;
    }
    put(w, p + i, run);
}

static void put_label(struct w *w, const char *name, const char *p, size_t n)
{
    puts_(w, name);
    puts_(w, "=\"");
    put_label_value(w, p, n);
    puts_(w, "\"");
}

/* A label set merged over the shards; keyed by its rendered text so that inputs
 * that render alike (e.g. different invalid bytes) never give duplicate lines. */
struct merged {
    unsigned kind;
    const char *key; /* rendered labels without braces, e.g. model="m",status="200" */
    size_t keylen;
    uint64_t hash;
    uint64_t *v; /* nvals[kind] summed counters */
};

static void series_key(struct w *w, const struct series *e)
{
    switch (e->kind) {
    case K_REQ: {
        put_label(w, "model", e->a, e->alen);
        puts_(w, ",");
        put_label(w, "deployment", e->b, e->blen);
        puts_(w, ",status=\"");
        if (e->code)
            put_u64(w, e->code);
        else
            puts_(w, "other");
        puts_(w, "\"");
        break;
    }
    case K_MODEL:
        put_label(w, "model", e->a, e->alen);
        break;
    case K_UPERR:
        put_label(w, "provider", e->a, e->alen);
        puts_(w, ",class=\"");
        puts_(w, bt_metrics_upclass_name((enum bt_metrics_upclass)e->code));
        puts_(w, "\"");
        break;
    }
}

static int merged_cmp(const void *x, const void *y)
{
    const struct merged *a = *(const struct merged *const *)x;
    const struct merged *b = *(const struct merged *const *)y;
    if (a->kind != b->kind) return a->kind < b->kind ? -1 : 1;
    size_t n = a->keylen < b->keylen ? a->keylen : b->keylen;
    int c = memcmp(a->key, b->key, n);
    if (c) return c;
    return a->keylen < b->keylen ? -1 : a->keylen > b->keylen;
}

static void family(struct w *w, const char *name, const char *type, const char *help)
{
    puts_(w, "# HELP ");
    puts_(w, name);
    puts_(w, " ");
    puts_(w, help);
    puts_(w, "\n# TYPE ");
    puts_(w, name);
    puts_(w, " ");
    puts_(w, type);
    puts_(w, "\n");
}

static void sample_start(struct w *w, const char *name, const struct merged *s)
{
    puts_(w, name);
    puts_(w, "{");
    put(w, s->key, s->keylen);
}

static void histogram(struct w *w, const char *name, struct merged **ms, size_t n, unsigned b0,
                      unsigned sum)
{
    size_t nl = strlen(name);
    for (size_t i = 0; i < n; i++) {
        const struct merged *s = ms[i];
        uint64_t cum = 0;
        for (unsigned k = 0; k < NBUCKET; k++) {
            cum += s->v[b0 + k];
            put(w, name, nl);
            puts_(w, "_bucket{");
            put(w, s->key, s->keylen);
            puts_(w, ",le=\"");
            puts_(w, k < NBOUND ? bounds_txt[k] : "+Inf");
            puts_(w, "\"} ");
            put_u64(w, cum);
            puts_(w, "\n");
        }
        /* _count is the +Inf bucket by construction, so the two always agree even
         * while workers update during the scrape. */
        put(w, name, nl);
        puts_(w, "_sum{");
        put(w, s->key, s->keylen);
        puts_(w, "} ");
        put_fixed(w, (int64_t)s->v[sum], 6, 1000000);
        puts_(w, "\n");
        put(w, name, nl);
        puts_(w, "_count{");
        put(w, s->key, s->keylen);
        puts_(w, "} ");
        put_u64(w, cum);
        puts_(w, "\n");
    }
}

/* Sums every shard's published series into `*out` (sorted by kind, then labels).
 * Memory comes from `a`. */
static enum bt_err merge(struct bt_metrics *m, struct bt_arena *a, struct merged ***out,
                         size_t *nout)
{
    enum bt_err err = BT_OK;
    uint32_t *counts = bt_arena_calloc(a, m->nshards, sizeof(*counts));
    if (!counts) return BT_ENOMEM;
    size_t total = 0;
    for (unsigned i = 0; i < m->nshards; i++) {
        counts[i] = atomic_load_explicit(&m->shards[i]->nlist, memory_order_acquire);
        total += counts[i];
    }
    size_t size = 16;
    while (size < total * 2)
        size *= 2;
    struct merged **tab = bt_arena_calloc(a, size, sizeof(*tab));
    struct merged **list = bt_arena_calloc(a, total ? total : 1, sizeof(*list));
    if (!tab || !list) return BT_ENOMEM;
    size_t n = 0;
    struct bt_buf kb;
    bt_buf_init(&kb, 4 * BT_METRICS_MAX_LABEL * 3 + 256);
    for (unsigned i = 0; i < m->nshards; i++) {
        struct bt_metrics_shard *s = m->shards[i];
        for (uint32_t j = 0; j < counts[i]; j++) {
            const struct series *e = s->list[j];
            bt_buf_reset(&kb);
            struct w kw = {&kb, BT_OK};
            series_key(&kw, e);
            if (kw.err) {
                err = kw.err;
                goto done;
            }
            uint64_t h = hash_bytes(e->kind, kb.p, kb.len);
            size_t k = h & (size - 1);
            struct merged *ms;
            while ((ms = tab[k]) && !(ms->hash == h && ms->kind == e->kind &&
                                      ms->keylen == kb.len && memcmp(ms->key, kb.p, kb.len) == 0))
                k = (k + 1) & (size - 1);
            if (!ms) {
                ms = bt_arena_alloc(a, sizeof(*ms));
                char *key = bt_arena_alloc(a, kb.len + 1);
                uint64_t *v = bt_arena_calloc(a, nvals[e->kind], sizeof(*v));
                if (!ms || !key || !v) {
                    err = BT_ENOMEM;
                    goto done;
                }
                memcpy(key, kb.p, kb.len);
                *ms = (struct merged){e->kind, key, kb.len, h, v};
                tab[k] = ms;
                list[n++] = ms;
            }
            for (unsigned x = 0; x < nvals[e->kind]; x++)
                ms->v[x] += atomic_load_explicit(&e->v[x], memory_order_relaxed);
        }
    }
    qsort(list, n, sizeof(*list), merged_cmp);
    *out = list;
    *nout = n;
done:
    bt_buf_free(&kb);
    return err;
}

enum bt_err bt_metrics_render(struct bt_metrics *m, struct bt_buf *out)
{
    if (!m || !out) return BT_EINVAL;
    pthread_mutex_lock(&m->lock);
    struct bt_arena a;
    bt_arena_init(&a, 64 * 1024, 1u << 30);
    struct merged **list = NULL;
    size_t n = 0;
    struct w w = {out, BT_OK};
    w.err = merge(m, &a, &list, &n);
    if (w.err) goto done;

    /* The merged list is sorted by kind: find each kind's run. */
    size_t run[3][2] = {{0, 0}, {0, 0}, {0, 0}};
    for (size_t i = 0; i < n; i++) {
        if (!run[list[i]->kind][1]) run[list[i]->kind][0] = i;
        run[list[i]->kind][1]++;
    }
    struct merged **req = list + run[K_REQ][0], **mod = list + run[K_MODEL][0],
                  **up = list + run[K_UPERR][0];
    size_t nreq = run[K_REQ][1], nmod = run[K_MODEL][1], nup = run[K_UPERR][1];

    if (nreq) {
        family(&w, "baton_requests_total", "counter",
               "Requests answered, by requested model, deployment that answered last and "
               "HTTP status sent to the client.");
        for (size_t i = 0; i < nreq; i++) {
            sample_start(&w, "baton_requests_total", req[i]);
            puts_(&w, "} ");
            put_u64(&w, req[i]->v[0]);
            puts_(&w, "\n");
        }
    }
    if (nmod) {
        family(&w, "baton_request_duration_seconds", "histogram",
               "Time from receiving a request to the end of its response, by model.");
        histogram(&w, "baton_request_duration_seconds", mod, nmod, M_DUR, M_DUR_SUM);
        family(&w, "baton_time_to_first_token_seconds", "histogram",
               "Time from receiving a request to the first generated token, by model.");
        histogram(&w, "baton_time_to_first_token_seconds", mod, nmod, M_TTFT, M_TTFT_SUM);
        family(&w, "baton_tokens_total", "counter",
               "Tokens reported by providers, by model and direction (in: prompt, out: "
               "completion).");
        for (size_t i = 0; i < nmod; i++) {
            sample_start(&w, "baton_tokens_total", mod[i]);
            puts_(&w, ",direction=\"in\"} ");
            put_u64(&w, mod[i]->v[M_TOK_IN]);
            puts_(&w, "\n");
            sample_start(&w, "baton_tokens_total", mod[i]);
            puts_(&w, ",direction=\"out\"} ");
            put_u64(&w, mod[i]->v[M_TOK_OUT]);
            puts_(&w, "\n");
        }
    }
    if (nup) {
        family(&w, "baton_upstream_errors_total", "counter",
               "Failed upstream attempts, by provider and class of failure.");
        for (size_t i = 0; i < nup; i++) {
            sample_start(&w, "baton_upstream_errors_total", up[i]);
            puts_(&w, "} ");
            put_u64(&w, up[i]->v[0]);
            puts_(&w, "\n");
        }
    }

    int64_t inflight = 0, conns = 0;
    uint64_t folded = 0;
    for (unsigned i = 0; i < m->nshards; i++) {
        inflight += atomic_load_explicit(&m->shards[i]->inflight, memory_order_relaxed);
        conns += atomic_load_explicit(&m->shards[i]->conns, memory_order_relaxed);
        folded += atomic_load_explicit(&m->shards[i]->folded, memory_order_relaxed);
    }
    if (m->conns_fn) conns = m->conns_fn(m->conns_ud);
    family(&w, "baton_requests_in_flight", "gauge", "Requests being answered now.");
    puts_(&w, "baton_requests_in_flight ");
    put_i64(&w, inflight);
    puts_(&w, "\n");
    family(&w, "baton_open_connections", "gauge", "Open client connections.");
    puts_(&w, "baton_open_connections ");
    put_i64(&w, conns);
    puts_(&w, "\n");
    family(&w, "baton_config_reloads_total", "counter",
           "Configuration reloads (SIGHUP or POST /admin/reload), by result.");
    puts_(&w, "baton_config_reloads_total{result=\"success\"} ");
    put_u64(&w, atomic_load(&m->reload_ok));
    puts_(&w, "\nbaton_config_reloads_total{result=\"failure\"} ");
    put_u64(&w, atomic_load(&m->reload_fail));
    puts_(&w, "\n");
    family(&w, "baton_config_last_reload_successful", "gauge",
           "1 when the last configuration reload succeeded (or none was tried), else 0.");
    puts_(&w, "baton_config_last_reload_successful ");
    put_u64(&w, (uint64_t)atomic_load(&m->last_ok));
    puts_(&w, "\n");
    family(&w, "baton_config_last_reload_success_timestamp_seconds", "gauge",
           "Unix time of the last successful configuration load (start-up or reload).");
    puts_(&w, "baton_config_last_reload_success_timestamp_seconds ");
    put_fixed(&w, atomic_load(&m->last_success_ms), 3, 1000);
    puts_(&w, "\n");
    family(&w, "baton_metrics_series_folded_total", "counter",
           "Metric updates counted under label value \"other\" because the series cap "
           "was reached.");
    puts_(&w, "baton_metrics_series_folded_total ");
    put_u64(&w, folded);
    puts_(&w, "\n");
    family(&w, "baton_workers", "gauge", "Worker threads (metric shards).");
    puts_(&w, "baton_workers ");
    put_u64(&w, m->nshards);
    puts_(&w, "\n");
    family(&w, "baton_build_info", "gauge", "Always 1; the version label says which baton runs.");
    put(&w, "baton_build_info{", 17);
    put_label(&w, "version", m->version, strlen(m->version));
    puts_(&w, "} 1\n");
    family(&w, "process_start_time_seconds", "gauge", "Unix time when the process started.");
    puts_(&w, "process_start_time_seconds ");
    put_fixed(&w, m->start_ms, 3, 1000);
    puts_(&w, "\n");
done:
    bt_arena_free(&a);
    pthread_mutex_unlock(&m->lock);
    return w.err;
}
