/* BPE tokenizer (see tok.h and docs/internals/tokenizer.md).
 *
 * Three parts:
 *  - the vocabulary: the embedded rank file parsed once into an arena of token
 *    bytes, a rank -> (offset, length) array and an open-addressing hash table
 *    of byte strings -> rank;
 *  - pre-tokenization: a hand-written scanner that splits text exactly like
 *    tiktoken's regexes (one function per encoding, same alternatives, same
 *    order, the backtracking worked out by hand);
 *  - byte-pair merging of each piece: whole-piece lookup first, then the
 *    lowest-rank-adjacent-pair merge loop (leftmost on ties), on the stack for
 *    short pieces and with a heap for long ones so no piece is quadratic. */
#include "tok/tok.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "tok/embed.h"
#include "tok/unicode.h"

#define NO_RANK UINT32_MAX
/* Pieces up to this many bytes are merged with fixed arrays on the stack. */
#define SMALL_PIECE 128
/* The per-thread scratch for long pieces is kept up to this size between calls. */
#define SCRATCH_KEEP ((size_t)1 << 20)

/* One hash table entry, 16 bytes: a hit on a token of up to 8 bytes (most of
 * them) touches this slot only. */
struct slot {
    uint64_t pre;      /* first min(len, 8) bytes, little-endian, zero-padded */
    uint32_t off;      /* offset of the token's bytes in bt_tok.bytes */
    uint32_t rank_len; /* rank << 8 | len; 0: empty slot (len is never 0) */
};

struct bt_tok {
    enum bt_tok_encoding enc;
    uint8_t *bytes;          /* every token's bytes, concatenated; owned */
    uint32_t *off;           /* by rank: offset into bytes; owned */
    uint32_t *len;           /* by rank: length, 0 for a rank not in the file; owned */
    uint32_t n_ranks;        /* highest rank + 1 */
    uint32_t n_tokens;       /* lines in the file */
    uint32_t max_len;        /* longest token, in bytes (<= 255) */
    struct slot *slots;      /* open addressing, linear probing; owned */
    uint32_t mask;           /* slots - 1 (a power of two minus one) */
    uint32_t *pair_rank;     /* [b0 | b1 << 8]: rank of each 2-byte token, else NO_RANK; owned */
    uint32_t byte_rank[256]; /* rank of each single byte (all 256 are tokens) */
};

/* ------------------------------------------------------------------ hashing */

static inline uint64_t load64(const uint8_t *p)
{
    uint64_t v;
    memcpy(&v, p, 8);
    return v;
}

/* Loads 1..7 bytes as a little-endian, zero-padded word without reading past
 * p + n (the overlapping halves hold the same bytes, so OR is exact). */
static inline uint64_t load_tail(const uint8_t *p, size_t n)
{
    if (n >= 4) {
        uint32_t a, b;
        memcpy(&a, p, 4);
        memcpy(&b, p + n - 4, 4);
        return (uint64_t)a | ((uint64_t)b << ((n - 4) * 8));
    }
    return (uint64_t)p[0] | ((uint64_t)p[n >> 1] << ((n >> 1) * 8)) |
           ((uint64_t)p[n - 1] << ((n - 1) * 8));
}

static inline uint64_t prefix(const uint8_t *p, size_t n)
{
    return n >= 8 ? load64(p) : load_tail(p, n);
}

static inline uint64_t mix(uint64_t h, uint64_t v)
{
    h = (h ^ v) * 0xbf58476d1ce4e5b9ull;
    return h ^ (h >> 31);
}

/* A fast hash for short byte strings (tokens are mostly 1-16 bytes); `pre` is
 * prefix(p, n). The length is part of the seed. */
static inline uint64_t hash_key(uint64_t pre, const uint8_t *p, size_t n)
{
    uint64_t h = mix(0x9e3779b97f4a7c15ull * (n + 1), pre);
    for (size_t i = 8; i < n; i += 8)
        h = mix(h, n - i >= 8 ? load64(p + i) : load_tail(p + i, n - i));
    h *= 0x94d049bb133111ebull;
    return h ^ (h >> 29);
}

/* Probes for p[0..n) starting at slot i; pre is prefix(p, n). */
static inline uint32_t probe(const struct bt_tok *t, const uint8_t *p, size_t n, uint64_t pre,
                             uint32_t i)
{
    for (;; i = (i + 1) & t->mask) {
        const struct slot *s = &t->slots[i];
        if (s->rank_len == 0) return NO_RANK;
        if ((s->rank_len & 0xff) == n && s->pre == pre &&
            (n <= 8 || memcmp(t->bytes + s->off + 8, p + 8, n - 8) == 0))
            return s->rank_len >> 8;
    }
}

static inline uint32_t home_slot(const struct bt_tok *t, const uint8_t *p, size_t n, uint64_t pre)
{
    return (uint32_t)hash_key(pre, p, n) & t->mask;
}

/* Rank of the byte string p[0..n) (n >= 1), or NO_RANK. */
static inline uint32_t lookup(const struct bt_tok *t, const uint8_t *p, size_t n)
{
    if (n > t->max_len) return NO_RANK;
    uint64_t pre = prefix(p, n);
    return probe(t, p, n, pre, home_slot(t, p, n, pre));
}

/* A lookup split in two so the table's cache miss can overlap other work:
 * lookup_start computes the home slot and prefetches it, lookup_finish probes. */
struct pending {
    uint64_t pre;
    uint32_t slot; /* UINT32_MAX: longer than any token */
};

static inline struct pending lookup_start(const struct bt_tok *t, const uint8_t *p, size_t n)
{
    struct pending q = {0, UINT32_MAX};
    if (n > t->max_len) return q;
    q.pre = prefix(p, n);
    q.slot = home_slot(t, p, n, q.pre);
    __builtin_prefetch(&t->slots[q.slot]);
    return q;
}

static inline uint32_t lookup_finish(const struct bt_tok *t, const uint8_t *p, size_t n,
                                     struct pending q)
{
    return q.slot == UINT32_MAX ? NO_RANK : probe(t, p, n, q.pre, q.slot);
}

/* ------------------------------------------------------------------ loading */

static int8_t b64_value(uint8_t c)
{
    if (c >= 'A' && c <= 'Z') return (int8_t)(c - 'A');
    if (c >= 'a' && c <= 'z') return (int8_t)(c - 'a' + 26);
    if (c >= '0' && c <= '9') return (int8_t)(c - '0' + 52);
    if (c == '+') return 62;
    if (c == '/') return 63;
    return -1;
}

/* Decodes standard base64 (with '=' padding) from p[0..n) to out; returns the
 * decoded length or -1 when malformed. */
static long b64_decode(const uint8_t *p, size_t n, uint8_t *out)
{
    if (n == 0 || n % 4) return -1;
    long o = 0;
    for (size_t i = 0; i < n; i += 4) {
        int v[4], pad = 0;
        for (int k = 0; k < 4; k++) {
            if (p[i + k] == '=' && i + 4 == n && k >= 2) {
                v[k] = 0;
                pad++;
            } else {
                if (pad) return -1;
                v[k] = b64_value(p[i + k]);
                if (v[k] < 0) return -1;
            }
        }
        uint32_t w =
            (uint32_t)v[0] << 18 | (uint32_t)v[1] << 12 | (uint32_t)v[2] << 6 | (uint32_t)v[3];
        out[o++] = (uint8_t)(w >> 16);
        if (pad < 2) out[o++] = (uint8_t)(w >> 8);
        if (pad < 1) out[o++] = (uint8_t)w;
    }
    return o;
}

static void tok_free(struct bt_tok *t)
{
    if (!t) return;
    free(t->bytes);
    free(t->off);
    free(t->len);
    free(t->slots);
    free(t->pair_rank);
    free(t);
}

/* Inserts rank r (whose bytes are already in t->bytes); false on a duplicate. */
static bool insert(struct bt_tok *t, uint32_t r)
{
    const uint8_t *p = t->bytes + t->off[r];
    size_t n = t->len[r];
    if (lookup(t, p, n) != NO_RANK) return false;
    uint64_t pre = prefix(p, n);
    for (uint32_t i = (uint32_t)hash_key(pre, p, n) & t->mask;; i = (i + 1) & t->mask) {
        struct slot *s = &t->slots[i];
        if (s->rank_len == 0) {
            s->pre = pre;
            s->off = t->off[r];
            s->rank_len = r << 8 | (uint32_t)n;
            return true;
        }
    }
}

/* Parses a rank file ("base64 SP rank LF" per line). NULL on malformed data
 * (a bug in the embedded file: every check here is a guard, not a feature) or
 * when out of memory. */
static struct bt_tok *tok_build(enum bt_tok_encoding enc, const char *data, const char *end)
{
    const uint8_t *p = (const uint8_t *)data, *e = (const uint8_t *)end;
    size_t size = (size_t)(e - p), lines = 0;
    for (const uint8_t *q = p; q < e; q++)
        lines += *q == '\n';
    if (size && e[-1] != '\n') lines++;
    if (lines == 0 || lines >= (1u << 24)) return NULL;

    struct bt_tok *t = calloc(1, sizeof(*t));
    if (!t) return NULL;
    t->enc = enc;
    uint32_t *line_rank = malloc(lines * sizeof(uint32_t));
    uint32_t *line_off = malloc(lines * sizeof(uint32_t));
    uint32_t *line_len = malloc(lines * sizeof(uint32_t));
    t->bytes = malloc(size / 4 * 3 + 16);
    if (!line_rank || !line_off || !line_len || !t->bytes) goto fail;

    size_t used = 0, nl = 0;
    uint32_t max_rank = 0;
    while (p < e) {
        const uint8_t *sp = memchr(p, ' ', (size_t)(e - p));
        if (!sp) goto fail;
        long n = b64_decode(p, (size_t)(sp - p), t->bytes + used);
        if (n <= 0 || n > 255) goto fail; /* slots keep the length in 8 bits */
        uint64_t r = 0;
        p = sp + 1;
        if (p >= e || *p < '0' || *p > '9') goto fail;
        while (p < e && *p >= '0' && *p <= '9') {
            r = r * 10 + (uint64_t)(*p++ - '0');
            if (r >= (1u << 24)) goto fail;
        }
        if (p < e && *p++ != '\n') goto fail;
        line_rank[nl] = (uint32_t)r;
        line_off[nl] = (uint32_t)used;
        line_len[nl] = (uint32_t)n;
        if (r > max_rank) max_rank = (uint32_t)r;
        if ((uint32_t)n > t->max_len) t->max_len = (uint32_t)n;
        used += (size_t)n;
        nl++;
    }
    t->n_tokens = (uint32_t)nl;
    t->n_ranks = max_rank + 1;
    t->off = calloc(t->n_ranks, sizeof(uint32_t));
    t->len = calloc(t->n_ranks, sizeof(uint32_t));
    size_t nslots = 1024;
    while (nslots < nl * 2)
        nslots *= 2; /* load factor <= 0.5 */
    t->slots = calloc(nslots, sizeof(struct slot));
    t->pair_rank = malloc(65536 * sizeof(uint32_t));
    if (!t->off || !t->len || !t->slots || !t->pair_rank) goto fail;
    t->mask = (uint32_t)(nslots - 1);
    memset(t->pair_rank, 0xff, 65536 * sizeof(uint32_t));
    for (size_t i = 0; i < nl; i++) {
        uint32_t r = line_rank[i];
        if (t->len[r]) goto fail; /* a rank twice */
        t->off[r] = line_off[i];
        t->len[r] = line_len[i];
        if (!insert(t, r)) goto fail; /* the same bytes twice */
        if (line_len[i] == 2) {
            const uint8_t *b = t->bytes + line_off[i];
            t->pair_rank[b[0] | b[1] << 8] = r;
        }
    }
    for (int b = 0; b < 256; b++) {
        uint8_t c = (uint8_t)b;
        t->byte_rank[b] = lookup(t, &c, 1);
        if (t->byte_rank[b] == NO_RANK) goto fail; /* BPE needs every byte */
    }
    free(line_rank);
    free(line_off);
    free(line_len);
    return t;
fail:
    free(line_rank);
    free(line_off);
    free(line_len);
    tok_free(t);
    return NULL;
}

static struct bt_tok *g_tok[BT_TOK_N_ENCODINGS];
static pthread_once_t g_once[BT_TOK_N_ENCODINGS] = {PTHREAD_ONCE_INIT, PTHREAD_ONCE_INIT};

static void build_cl100k(void)
{
    g_tok[BT_TOK_CL100K] = tok_build(BT_TOK_CL100K, bt_tok_cl100k_data, bt_tok_cl100k_end);
}

static void build_o200k(void)
{
    g_tok[BT_TOK_O200K] = tok_build(BT_TOK_O200K, bt_tok_o200k_data, bt_tok_o200k_end);
}

const struct bt_tok *bt_tok_get(enum bt_tok_encoding enc)
{
    switch (enc) {
    case BT_TOK_CL100K:
        pthread_once(&g_once[enc], build_cl100k);
        break;
    case BT_TOK_O200K:
        pthread_once(&g_once[enc], build_o200k);
        break;
    default:
        return NULL;
    }
    return g_tok[enc];
}

const char *bt_tok_encoding_name(enum bt_tok_encoding enc)
{
    switch (enc) {
    case BT_TOK_CL100K:
        return "cl100k_base";
    case BT_TOK_O200K:
        return "o200k_base";
    }
    return "?";
}

bool bt_tok_encoding_from_name(struct bt_str name, enum bt_tok_encoding *out)
{
    if (bt_str_eq_c(name, "cl100k_base"))
        *out = BT_TOK_CL100K;
    else if (bt_str_eq_c(name, "o200k_base"))
        *out = BT_TOK_O200K;
    else
        return false;
    return true;
}

static bool has_prefix(struct bt_str s, const char *prefix)
{
    return bt_str_starts_with(s, bt_str_c(prefix));
}

enum bt_tok_encoding bt_tok_encoding_for_model(struct bt_str model)
{
    long slash;
    while ((slash = bt_str_index(model, '/')) >= 0) {
        model.p += slash + 1;
        model.len -= (size_t)slash + 1;
    }
    /* Order matters: the gpt-4o / gpt-4.1 families before plain gpt-4. */
    static const char *const o200k[] = {"gpt-4o", "gpt-4.1", "gpt-4.5",  "gpt-5",   "o1",
                                        "o3",     "o4",      "chatgpt-", "gpt-oss", "codex-"};
    static const char *const cl100k[] = {"gpt-4",       "gpt-3.5",    "gpt-35", "text-embedding-3",
                                         "davinci-002", "babbage-002"};
    for (size_t i = 0; i < sizeof(o200k) / sizeof(o200k[0]); i++)
        if (has_prefix(model, o200k[i])) return BT_TOK_O200K;
    for (size_t i = 0; i < sizeof(cl100k) / sizeof(cl100k[0]); i++)
        if (has_prefix(model, cl100k[i])) return BT_TOK_CL100K;
    if (model.len >= 8 && memcmp(model.p + model.len - 8, "-ada-002", 8) == 0) return BT_TOK_CL100K;
    return BT_TOK_O200K;
}

size_t bt_tok_vocab_size(const struct bt_tok *t)
{
    return t ? t->n_tokens : 0;
}

const uint8_t *bt_tok_token_bytes(const struct bt_tok *t, uint32_t id, size_t *len)
{
    if (!t || id >= t->n_ranks || t->len[id] == 0) {
        if (len) *len = 0;
        return NULL;
    }
    if (len) *len = t->len[id];
    return t->bytes + t->off[id];
}

/* ------------------------------------------------------------------ scratch */

/* Per-thread scratch for pieces longer than SMALL_PIECE, so counting does not
 * allocate per call. Held through a pthread key whose destructor frees it when
 * the thread exits. */
struct scratch {
    size_t cap; /* usable bytes after the header */
    max_align_t data[];
};

static pthread_key_t g_scratch_key;
static bool g_scratch_key_ok;
static pthread_once_t g_scratch_once = PTHREAD_ONCE_INIT;

static void scratch_destroy(void *p)
{
    free(p);
}

static void scratch_key_init(void)
{
    g_scratch_key_ok = pthread_key_create(&g_scratch_key, scratch_destroy) == 0;
}

/* Returns `need` bytes of scratch. *tmp is set when the block is a one-off
 * allocation (larger than SCRATCH_KEEP) that the caller frees. NULL when out of
 * memory. */
static void *scratch_get(size_t need, void **tmp)
{
    *tmp = NULL;
    pthread_once(&g_scratch_once, scratch_key_init);
    struct scratch *s = g_scratch_key_ok ? pthread_getspecific(g_scratch_key) : NULL;
    if (s && s->cap >= need) return s->data;
    if (need > SCRATCH_KEEP || !g_scratch_key_ok) {
        *tmp = malloc(need);
        return *tmp;
    }
    size_t cap = 16 * 1024;
    while (cap < need)
        cap *= 2;
    struct scratch *n = malloc(sizeof(*n) + cap);
    if (!n) return NULL;
    n->cap = cap;
    if (pthread_setspecific(g_scratch_key, n) != 0) {
        free(n);
        *tmp = malloc(need);
        return *tmp;
    }
    free(s);
    return n->data;
}

/* ------------------------------------------------------------------ BPE */

/* Where ids go: ids == NULL counts only. */
struct out {
    uint32_t *ids;
    size_t cap;
    size_t n;
};

static inline void emit(struct out *o, uint32_t id)
{
    if (o->n < o->cap) o->ids[o->n] = id;
    o->n++;
}

/* tiktoken's merge loop on fixed arrays: parts are [pos[k], pos[k+1]); rk[k] is
 * the rank of parts k and k+1 joined; merge the lowest, leftmost first. */
static void bpe_small(const struct bt_tok *t, const uint8_t *p, size_t n, struct out *o)
{
    uint32_t pos[SMALL_PIECE + 1], rk[SMALL_PIECE + 1], prank[SMALL_PIECE];
    size_t m = n; /* number of parts */
    for (size_t i = 0; i < n; i++) {
        pos[i] = (uint32_t)i;
        prank[i] = t->byte_rank[p[i]];
        rk[i] = i + 1 < n ? t->pair_rank[p[i] | p[i + 1] << 8] : NO_RANK;
    }
    pos[n] = (uint32_t)n;
    while (m > 1) {
        uint32_t best = NO_RANK;
        size_t bi = 0;
        for (size_t k = 0; k + 1 < m; k++) {
            if (rk[k] < best) {
                best = rk[k];
                bi = k;
            }
        }
        if (best == NO_RANK) break;
        /* Join parts bi and bi+1: drop boundary bi+1. */
        prank[bi] = best;
        memmove(&pos[bi + 1], &pos[bi + 2], (m - bi - 1) * sizeof(pos[0]));
        memmove(&prank[bi + 1], &prank[bi + 2], (m - bi - 2) * sizeof(prank[0]));
        memmove(&rk[bi + 1], &rk[bi + 2], (m - bi - 2) * sizeof(rk[0]));
        m--;
        /* The two new pairs (with the right and the left neighbour): start both
         * lookups before finishing either, so their cache misses overlap. */
        struct pending qr = {0, UINT32_MAX}, ql = {0, UINT32_MAX};
        if (bi + 1 < m) qr = lookup_start(t, p + pos[bi], pos[bi + 2] - pos[bi]);
        if (bi > 0) ql = lookup_start(t, p + pos[bi - 1], pos[bi + 1] - pos[bi - 1]);
        rk[bi] = lookup_finish(t, p + pos[bi], pos[bi + 2] - pos[bi], qr);
        if (bi > 0) rk[bi - 1] = lookup_finish(t, p + pos[bi - 1], pos[bi + 1] - pos[bi - 1], ql);
    }
    if (!o->ids) {
        o->n += m;
        return;
    }
    for (size_t k = 0; k < m; k++)
        emit(o, prank[k]);
}

/* Binary min-heap of (rank << 32 | position). */
static void heap_push(uint64_t *h, size_t *n, uint64_t v)
{
    size_t i = (*n)++;
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (h[parent] <= v) break;
        h[i] = h[parent];
        i = parent;
    }
    h[i] = v;
}

static uint64_t heap_pop(uint64_t *h, size_t *n)
{
    uint64_t top = h[0], v = h[--(*n)];
    size_t i = 0, len = *n;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= len) break;
        if (c + 1 < len && h[c + 1] < h[c]) c++;
        if (v <= h[c]) break;
        h[i] = h[c];
        i = c;
    }
    if (len) h[i] = v;
    return top;
}

/* The same merges as bpe_small in O(n log n): parts are a linked list over byte
 * positions, candidate pairs sit in a heap keyed (rank, position), and entries
 * that went stale (the part was merged away or its pair rank changed) are
 * skipped when popped. Ordering by position is ordering by part index, so ties
 * go to the leftmost pair exactly as in tiktoken. Ranks of one node only ever
 * describe longer strings, so a stale entry can never look current. */
static int bpe_large(const struct bt_tok *t, const uint8_t *p, size_t n, struct out *o)
{
    const uint32_t dead = NO_RANK;
    if (n >= UINT32_MAX / 2) return -1; /* positions are 32-bit */
    size_t need = n * (4 * sizeof(uint32_t) + 3 * sizeof(uint64_t));
    void *tmp;
    uint8_t *mem = scratch_get(need, &tmp);
    if (!mem) return -1;
    uint64_t *heap = (uint64_t *)mem;
    uint32_t *next = (uint32_t *)(heap + 3 * n), *prev = next + n, *rk = prev + n, *prank = rk + n;
    size_t hn = 0;
    for (size_t i = 0; i < n; i++) {
        next[i] = (uint32_t)(i + 1);
        prev[i] = (uint32_t)(i - 1); /* wraps for i == 0; never read there */
        prank[i] = t->byte_rank[p[i]];
        rk[i] = i + 1 < n ? t->pair_rank[p[i] | p[i + 1] << 8] : NO_RANK;
        if (rk[i] != NO_RANK) heap_push(heap, &hn, (uint64_t)rk[i] << 32 | i);
    }
    size_t parts = n;
    while (hn) {
        uint64_t top = heap_pop(heap, &hn);
        uint32_t r = (uint32_t)(top >> 32), i = (uint32_t)top;
        if (prank[i] == dead || rk[i] != r) continue;
        uint32_t j = next[i], k = next[j];
        prank[i] = r;
        prank[j] = dead;
        rk[j] = NO_RANK;
        next[i] = k;
        if (k < n) prev[k] = i;
        parts--;
        rk[i] = k < n ? lookup(t, p + i, next[k] - i) : NO_RANK;
        if (rk[i] != NO_RANK) heap_push(heap, &hn, (uint64_t)rk[i] << 32 | i);
        if (i > 0) {
            uint32_t h = prev[i];
            rk[h] = lookup(t, p + h, k - h);
            if (rk[h] != NO_RANK) heap_push(heap, &hn, (uint64_t)rk[h] << 32 | h);
        }
    }
    if (!o->ids) {
        o->n += parts;
    } else {
        for (uint32_t i = 0; i < n; i = next[i])
            emit(o, prank[i]);
    }
    free(tmp);
    return 0;
}

/* Starts the whole-piece lookup of p[0..n) (see piece()). */
static inline struct pending piece_start(const struct bt_tok *t, const uint8_t *p, size_t n)
{
    if (n <= 2) return (struct pending){0, UINT32_MAX};
    return lookup_start(t, p, n);
}

/* One pre-token piece: a single byte, a whole token, or merged. q comes from
 * piece_start(). */
static inline int piece(const struct bt_tok *t, const uint8_t *p, size_t n, struct pending q,
                        struct out *o)
{
    if (n == 1) {
        emit(o, t->byte_rank[p[0]]);
        return 0;
    }
    uint32_t r = n == 2 ? t->pair_rank[p[0] | p[1] << 8] : lookup_finish(t, p, n, q);
    if (r != NO_RANK) {
        emit(o, r);
        return 0;
    }
    if (n <= SMALL_PIECE) {
        bpe_small(t, p, n, o);
        return 0;
    }
    return bpe_large(t, p, n, o);
}

/* ------------------------------------------------------------------ pre-tokenization */

/* Scanner classes: the Unicode classes plus NL for \r and \n (which the regexes
 * name apart from the other White_Space) and END past the input. */
enum {
    C_OTHER = BT_UC_OTHER,
    C_UPPER = BT_UC_UPPER,
    C_LOWER = BT_UC_LOWER,
    C_OLETTER = BT_UC_OLETTER,
    C_MARK = BT_UC_MARK,
    C_NUMBER = BT_UC_NUMBER,
    C_SPACE = BT_UC_SPACE,
    C_NL = 7,
    C_END = 8,
};
#define BIT(c) (1u << (c))
#define M_LETTER (BIT(C_UPPER) | BIT(C_LOWER) | BIT(C_OLETTER)) /* \p{L} */
#define M_P (BIT(C_OTHER) | BIT(C_MARK) | BIT(C_SPACE))         /* [^\r\n\p{L}\p{N}] */
#define M_Q (BIT(C_OTHER) | BIT(C_MARK))                        /* [^\s\p{L}\p{N}] */
#define M_WS (BIT(C_SPACE) | BIT(C_NL))                         /* \s */
#define M_UP (BIT(C_UPPER) | BIT(C_OLETTER) | BIT(C_MARK)) /* [\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}] */
#define M_LO (BIT(C_LOWER) | BIT(C_OLETTER) | BIT(C_MARK)) /* [\p{Ll}\p{Lm}\p{Lo}\p{M}] */

/* Scanner classes of ASCII. */
static const uint8_t ascii_class[128] = {
    /* 0x00 */ 0,
    0,
    0,
    0,
    0,
    0,
    0,
    0,
    0,
    C_SPACE,
    C_NL,
    C_SPACE,
    C_SPACE,
    C_NL,
    0,
    0,
    /* 0x10 */ 0,
    0,
    0,
    0,
    0,
    0,
    0,
    0,
    0,
    0,
    0,
    0,
    0,
    0,
    0,
    0,
    /* 0x20 */ C_SPACE,
    0,
    0,
    0,
    0,
    0,
    0,
    0,
    0,
    0,
    0,
    0,
    0,
    0,
    0,
    0,
    /* 0x30 */ 5,
    5,
    5,
    5,
    5,
    5,
    5,
    5,
    5,
    5,
    0,
    0,
    0,
    0,
    0,
    0,
    /* 0x40 */ 0,
    1,
    1,
    1,
    1,
    1,
    1,
    1,
    1,
    1,
    1,
    1,
    1,
    1,
    1,
    1,
    /* 0x50 */ 1,
    1,
    1,
    1,
    1,
    1,
    1,
    1,
    1,
    1,
    1,
    0,
    0,
    0,
    0,
    0,
    /* 0x60 */ 0,
    2,
    2,
    2,
    2,
    2,
    2,
    2,
    2,
    2,
    2,
    2,
    2,
    2,
    2,
    2,
    /* 0x70 */ 2,
    2,
    2,
    2,
    2,
    2,
    2,
    2,
    2,
    2,
    2,
    0,
    0,
    0,
    0,
    0,
};

/* Class and length of the character at s[i] (i < n). A byte that does not start
 * a valid UTF-8 sequence (RFC 3629: no overlongs, surrogates or values past
 * U+10FFFF) is a one-byte character of class OTHER. */
static inline unsigned cls_at(const uint8_t *s, size_t n, size_t i, size_t *len)
{
    uint8_t b = s[i];
    if (b < 0x80) {
        *len = 1;
        return ascii_class[b];
    }
    size_t rem = n - i;
    if (b >= 0xC2 && b <= 0xDF) {
        if (rem >= 2 && (s[i + 1] & 0xC0) == 0x80) {
            *len = 2;
            return bt_tok_uc_class((uint32_t)(b & 0x1F) << 6 | (s[i + 1] & 0x3F));
        }
    } else if (b >= 0xE0 && b <= 0xEF) {
        if (rem >= 3) {
            uint8_t c1 = s[i + 1], c2 = s[i + 2];
            uint8_t lo = b == 0xE0 ? 0xA0 : 0x80, hi = b == 0xED ? 0x9F : 0xBF;
            if (c1 >= lo && c1 <= hi && (c2 & 0xC0) == 0x80) {
                *len = 3;
                return bt_tok_uc_class((uint32_t)(b & 0x0F) << 12 | (uint32_t)(c1 & 0x3F) << 6 |
                                       (c2 & 0x3F));
            }
        }
    } else if (b >= 0xF0 && b <= 0xF4) {
        if (rem >= 4) {
            uint8_t c1 = s[i + 1], c2 = s[i + 2], c3 = s[i + 3];
            uint8_t lo = b == 0xF0 ? 0x90 : 0x80, hi = b == 0xF4 ? 0x8F : 0xBF;
            if (c1 >= lo && c1 <= hi && (c2 & 0xC0) == 0x80 && (c3 & 0xC0) == 0x80) {
                *len = 4;
                return bt_tok_uc_class((uint32_t)(b & 0x07) << 18 | (uint32_t)(c1 & 0x3F) << 12 |
                                       (uint32_t)(c2 & 0x3F) << 6 | (c3 & 0x3F));
            }
        }
    }
    *len = 1;
    return C_OTHER;
}

static inline unsigned cls_at_or_end(const uint8_t *s, size_t n, size_t i, size_t *len)
{
    if (i >= n) {
        *len = 0;
        return C_END;
    }
    return cls_at(s, n, i, len);
}

/* End of the run of characters whose class is in `mask`, from i. */
static inline size_t run(const uint8_t *s, size_t n, size_t i, unsigned mask)
{
    while (i < n) {
        if (s[i] < 0x80) {
            if (!(BIT(ascii_class[s[i]]) & mask)) break;
            i++;
            continue;
        }
        size_t l;
        if (!(BIT(cls_at(s, n, i, &l)) & mask)) break;
        i += l;
    }
    return i;
}

/* Length of `(?i:'s|'t|'re|'ve|'m|'ll|'d)` at s[i], 0 when it does not match.
 * Case-insensitive the way the Rust regex crate is (Unicode simple case
 * folding), which also lets U+017F LATIN SMALL LETTER LONG S stand for s. */
static inline size_t contraction(const uint8_t *s, size_t n, size_t i)
{
    if (i + 1 >= n || s[i] != '\'') return 0;
    uint8_t c = s[i + 1] | 0x20; /* equals a lowercase letter only for that letter in either case */
    if (c == 's' || c == 't' || c == 'm' || c == 'd') return 2;
    if (i + 2 >= n) return 0;
    uint8_t c2 = s[i + 2] | 0x20;
    if ((c == 'r' || c == 'v') && c2 == 'e') return 3;
    if (c == 'l' && c2 == 'l') return 3;
    if (s[i + 1] == 0xC5 && s[i + 2] == 0xBF) return 3;
    return 0;
}

/* `\p{N}{1,3}` from i (s[i] is a number). */
static inline size_t numbers(const uint8_t *s, size_t n, size_t i)
{
    for (int k = 0; k < 3 && i < n; k++) {
        size_t l;
        if (cls_at(s, n, i, &l) != C_NUMBER) break;
        i += l;
    }
    return i;
}

/* `[\r\n]*` (or `[\r\n/]*` when slash) from i. */
static inline size_t newlines(const uint8_t *s, size_t n, size_t i, bool slash)
{
    while (i < n && (s[i] == '\r' || s[i] == '\n' || (slash && s[i] == '/')))
        i++;
    return i;
}

/* The three whitespace alternatives, at a whitespace character s[i]:
 *   \s*[\r\n]+   the run up to and including its last \r or \n, if it has one;
 *   \s+(?!\S)    else the whole run at the end of the text, or the run minus its
 *                last character when more follows (that character then prefixes
 *                the next piece, e.g. " word");
 *   \s+          else (a single whitespace character before non-space) itself. */
static inline size_t whitespace(const uint8_t *s, size_t n, size_t i)
{
    size_t j = i, last = i, nl_end = 0;
    while (j < n) {
        size_t l;
        unsigned c = cls_at(s, n, j, &l);
        if (!(BIT(c) & M_WS)) break;
        if (c == C_NL) nl_end = j + 1;
        last = j;
        j += l;
    }
    if (nl_end) return nl_end;
    if (j == n || last == i) return j;
    return last;
}

/* cl100k_base:
 *   (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|
 *    ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+
 * Returns the end of the piece that starts at i (i < n). */
static inline size_t split_cl100k(const uint8_t *s, size_t n, size_t i)
{
    size_t l0, l1;
    unsigned c0 = cls_at(s, n, i, &l0);
    if (s[i] == '\'') {
        size_t k = contraction(s, n, i);
        if (k) return i + k;
    }
    if (BIT(c0) & M_LETTER) return run(s, n, i + l0, M_LETTER);
    size_t j = i + l0;
    unsigned c1 = cls_at_or_end(s, n, j, &l1);
    if ((BIT(c0) & M_P) && (BIT(c1) & M_LETTER)) return run(s, n, j + l1, M_LETTER);
    if (c0 == C_NUMBER) return numbers(s, n, i);
    if (s[i] == ' ' && (BIT(c1) & M_Q)) return newlines(s, n, run(s, n, j, M_Q), false);
    if (BIT(c0) & M_Q) return newlines(s, n, run(s, n, j, M_Q), false);
    return whitespace(s, n, i);
}

/* o200k's first alternative from st, after the optional prefix:
 *   [\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|...)?
 * The greedy "upper" run gives characters back until the "lower" run can start:
 * if the run is followed by an Ll, the lower run starts there; otherwise it is
 * the run's last Lm/Lo/M character alone (the ones after it are Lu/Lt). Returns
 * the end, or 0 when there is no lower-class character to match. */
static inline size_t o200k_word(const uint8_t *s, size_t n, size_t st)
{
    size_t k = st, lower_end = 0;
    while (k < n) {
        size_t l;
        unsigned c = cls_at(s, n, k, &l);
        if (!(BIT(c) & M_UP)) {
            if (c == C_LOWER) {
                size_t e = run(s, n, k + l, M_LO);
                return e + contraction(s, n, e);
            }
            break;
        }
        if (BIT(c) & M_LO) lower_end = k + l;
        k += l;
    }
    if (lower_end) return lower_end + contraction(s, n, lower_end);
    return 0;
}

/* o200k_base:
 *   [^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|...)?|
 *   [^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|...)?|
 *   \p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+ */
static inline size_t split_o200k(const uint8_t *s, size_t n, size_t i)
{
    size_t l0, l1, e;
    unsigned c0 = cls_at(s, n, i, &l0);
    size_t j = i + l0;
    /* Alternative 1, with the optional prefix taken, then without. */
    if ((BIT(c0) & M_P) && (e = o200k_word(s, n, j))) return e;
    if ((BIT(c0) & (M_UP | M_LO)) && (e = o200k_word(s, n, i))) return e;
    /* Alternative 2: an upper-class run (alternative 1 failed, so no lower
     * class follows it, but match it the regex's way regardless). */
    unsigned c1 = cls_at_or_end(s, n, j, &l1);
    size_t st = (BIT(c0) & M_P) && (BIT(c1) & M_UP) ? j : (BIT(c0) & M_UP) ? i : SIZE_MAX;
    if (st != SIZE_MAX) {
        e = run(s, n, run(s, n, st, M_UP), M_LO);
        return e + contraction(s, n, e);
    }
    if (c0 == C_NUMBER) return numbers(s, n, i);
    if (s[i] == ' ' && (BIT(c1) & M_Q)) return newlines(s, n, run(s, n, j, M_Q), true);
    if (BIT(c0) & M_Q) return newlines(s, n, run(s, n, j, M_Q), true);
    return whitespace(s, n, i);
}

/* ------------------------------------------------------------------ driver */

static inline __attribute__((always_inline)) int
encode_text(const struct bt_tok *t, const uint8_t *s, size_t n, struct out *o, bool o200k)
{
    /* Pieces are found a batch ahead of their processing, and each one's table
     * slot is prefetched when it is found: the whole-piece lookup (most pieces
     * are one token) then rarely waits for memory. */
    enum { BATCH = 16 };
    size_t start[BATCH], end[BATCH];
    struct pending q[BATCH];
    size_t i = 0;
    while (i < n) {
        size_t k = 0;
        for (; k < BATCH && i < n; k++) {
            size_t e = o200k ? split_o200k(s, n, i) : split_cl100k(s, n, i);
            start[k] = i;
            end[k] = e;
            q[k] = piece_start(t, s + i, e - i);
            i = e;
        }
        for (size_t b = 0; b < k; b++)
            if (piece(t, s + start[b], end[b] - start[b], q[b], o)) return -1;
    }
    return 0;
}

static int encode_any(const struct bt_tok *t, const uint8_t *s, size_t n, struct out *o)
{
    if (t->enc == BT_TOK_O200K) return encode_text(t, s, n, o, true);
    return encode_text(t, s, n, o, false);
}

size_t bt_tok_count(const struct bt_tok *t, const char *text, size_t len)
{
    if (!t || len == 0) return 0;
    struct out o = {NULL, 0, 0};
    if (encode_any(t, (const uint8_t *)text, len, &o)) return SIZE_MAX;
    return o.n;
}

enum bt_err bt_tok_encode(const struct bt_tok *t, const char *text, size_t len, uint32_t *ids,
                          size_t cap, size_t *n_out)
{
    if (!t || !n_out || (cap && !ids)) return BT_EINVAL;
    *n_out = 0;
    if (len == 0) return BT_OK;
    /* A non-NULL ids with cap 0 still has to take the "encode" paths. */
    uint32_t dummy;
    struct out o = {ids ? ids : &dummy, cap, 0};
    if (encode_any(t, (const uint8_t *)text, len, &o)) return BT_ENOMEM;
    *n_out = o.n;
    return o.n > cap ? BT_ETOOBIG : BT_OK;
}
