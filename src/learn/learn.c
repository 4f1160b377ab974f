/* The learned router: features, training, the router file and the metrics.
 * See learn.h for the contract and docs/routing.md for the method. */
#include "learn/learn.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "core/arena.h"
#include "core/buf.h"
#include "json/json.h"

#define MAXF 4096            /* distinct features kept per prompt */
#define TBL 8192             /* merge table slots (power of two, > 2 * MAXF) */
#define MAXD 64              /* hand-made features per prompt */
#define TEXT_MAX 6144u        /* bytes read for words and shape (bounds a decision at ~45 us) */
#define CHAR_MAX_BYTES 4096  /* bytes read for character n-grams */
#define SHAPE_VALUE 0.5f     /* a hand-made feature's value beside the unit-norm text vector (CV) */

struct bt_learn_scratch {
    uint32_t key[TBL];  /* bucket + 1; 0 = empty */
    float cnt[TBL];     /* occurrences */
    uint32_t used[MAXF];/* slots in use, in insertion order */
    uint32_t nused;
    uint32_t mask;      /* buckets - 1 */
    uint32_t dense[MAXD];
    uint32_t nd;
    uint32_t idx[MAXF]; /* the finished vector */
    float val[MAXF];
    uint32_t n;
};

struct bt_learn_scratch *bt_learn_scratch_new(void)
{
    return calloc(1, sizeof(struct bt_learn_scratch));
}

void bt_learn_scratch_free(struct bt_learn_scratch *s)
{
    free(s);
}

/* ---- hashing ---- */

static inline uint64_t mix64(uint64_t x)
{
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ULL;
    x ^= x >> 33;
    return x;
}

static uint64_t hash_bytes(uint64_t seed, const char *p, size_t n)
{
    return mix64(bt_fnv1a(BT_FNV_OFFSET ^ seed, p, n));
}

static void add_text(struct bt_learn_scratch *s, uint64_t h)
{
    uint32_t b = (uint32_t)h & s->mask;
    uint32_t slot = (uint32_t)(h >> 40) & (TBL - 1);
    for (;;) {
        if (s->key[slot] == b + 1) {
            s->cnt[slot] += 1.0f;
            return;
        }
        if (s->key[slot] == 0) break;
        slot = (slot + 1) & (TBL - 1);
    }
    if (s->nused >= MAXF - MAXD) return;
    s->key[slot] = b + 1;
    s->cnt[slot] = 1.0f;
    s->used[s->nused++] = slot;
}

static void add_dense(struct bt_learn_scratch *s, const char *name, unsigned bin)
{
    if (s->nd >= MAXD) return;
    uint64_t h = hash_bytes(0x5a4e, name, strlen(name));
    s->dense[s->nd++] = (uint32_t)mix64(h + bin) & s->mask;
}

/* ---- features ---- */

static inline bool is_word(uint8_t c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c >= 0x80;
}

static inline uint8_t fold(uint8_t c)
{
    if (c >= 'A' && c <= 'Z') return (uint8_t)(c + 32);
    if (c >= '1' && c <= '9') return '0';
    return c;
}

static unsigned log2_bin(size_t x)
{
    unsigned b = 0;
    while (x) {
        b++;
        x >>= 1;
    }
    return b > 20 ? 20 : b;
}

static unsigned share_bin(size_t part, size_t whole)
{
    if (!part || !whole) return 0;
    double r = (double)part / (double)whole;
    static const double cut[] = {0.01, 0.02, 0.05, 0.1, 0.2, 0.4};
    unsigned b = 1;
    for (size_t i = 0; i < sizeof cut / sizeof cut[0] && r >= cut[i]; i++) b++;
    return b;
}

static const char *const QWORDS[] = {
    "what", "which", "how",  "why",       "who",     "when",    "where", "find",
    "calculate", "compute", "solve", "write",  "explain", "describe", "if",   "statement",
    "suppose", "let",   "a",    "the",       "in",      "this",    "for",   "is",
    "consider", "given", "imagine", "can",  "you",     "please",  "compose", "create",
};

static void words(struct bt_learn_scratch *s, const char *t, size_t n, size_t *nwords,
                  char *first, size_t first_cap)
{
    uint64_t prev = 0x9e3779b97f4a7c15ULL; /* start of text */
    char w[64];
    size_t i = 0;
    *nwords = 0;
    first[0] = 0;
    while (i < n) {
        uint8_t c = (uint8_t)t[i];
        uint64_t h;
        if (is_word(c)) {
            size_t k = 0, j = i;
            while (j < n && is_word((uint8_t)t[j])) {
                if (k < sizeof w) w[k++] = (char)fold((uint8_t)t[j]);
                j++;
            }
            if (*nwords == 0) {
                size_t m = k < first_cap - 1 ? k : first_cap - 1;
                memcpy(first, w, m);
                first[m] = 0;
            }
            (*nwords)++;
            h = hash_bytes(1, w, k);
            i = j;
        } else if (c == ' ' || c == '\t' || c == '\r') {
            i++;
            continue;
        } else {
            char p = (char)c;
            h = hash_bytes(2, &p, 1);
            i++;
        }
        add_text(s, h);
        add_text(s, mix64(prev * 31 + h + 3));
        prev = h;
    }
}

static void chars(struct bt_learn_scratch *s, const char *t, size_t n)
{
    if (n > CHAR_MAX_BYTES) n = CHAR_MAX_BYTES;
    uint32_t win = 0;
    unsigned have = 0;
    uint8_t last = 0;
    for (size_t i = 0; i < n; i++) {
        uint8_t c = (uint8_t)t[i];
        if (c == ' ' || c == '\n' || c == '\t' || c == '\r') c = ' ';
        else if (c >= 'A' && c <= 'Z') c = (uint8_t)(c + 32);
        if (c == ' ' && last == ' ') continue;
        last = c;
        win = (win << 8) | c;
        if (++have >= 4) add_text(s, mix64(((uint64_t)win << 8) ^ 0xc4a5));
    }
}

/* True when a multiple-choice option line ("A. ..." or "A) ...", A to D)
 * starts after the newline at t[i]. */
static inline bool option_at(const char *t, size_t n, size_t i)
{
    return t[i] == '\n' && i + 2 < n && t[i + 1] >= 'A' && t[i + 1] <= 'D' &&
           (t[i + 2] == '.' || t[i + 2] == ')');
}

static inline bool upper3(const char *t)
{
    return t[0] >= 'A' && t[0] <= 'Z' && t[1] >= 'A' && t[1] <= 'Z' && t[2] >= 'A' && t[2] <= 'Z';
}

/* Hand-made features over t[0..n) (n already bounded); total = the full length. */
static void shape(struct bt_learn_scratch *s, const char *t, size_t n, size_t total, size_t nwords,
                  const char *first)
{
    size_t digits = 0, alpha = 0, nonascii = 0, lines = 1, math = 0, code = 0, qmarks = 0;
    size_t hangul = 0, cjk = 0, cyr = 0, numbers = 0, maxline = 0, cur = 0, upper = 0;
    unsigned mc = 0; /* bit per option letter A-D at a line start ("A." / "A)") */
    for (size_t i = 0; i < n; i++) {
        uint8_t c = (uint8_t)t[i];
        if (c >= '0' && c <= '9') {
            digits++;
            if (i == 0 || !((uint8_t)t[i - 1] >= '0' && (uint8_t)t[i - 1] <= '9')) numbers++;
        } else if ((c | 32) >= 'a' && (c | 32) <= 'z') {
            alpha++;
            if (c <= 'Z') upper++;
        } else if (c >= 0x80) {
            nonascii++;
            if (c >= 0xEA && c <= 0xED) hangul++;
            else if (c >= 0xE4 && c <= 0xE9) cjk++;
            else if (c == 0xD0 || c == 0xD1) cyr++;
        }
        switch (c) {
        case '=': case '+': case '*': case '^': case '<': case '>': case '%': case '$': case '\\':
            math++;
            break;
        case '{': case '}': case ';': case '`': case '[': case ']': case '_':
            code++;
            break;
        case '?':
            qmarks++;
            break;
        default:
            break;
        }
        cur++;
        if (c == '\n') {
            lines++;
            if (cur > maxline) maxline = cur;
            cur = 0;
            if (option_at(t, n, i)) mc |= 1u << (t[i + 1] - 'A');
        }
    }
    if (cur > maxline) maxline = cur;
    bool is_mc = mc == 15;
    /* The options' lengths and whether they are numbers, and the stem's length:
     * within a subject, they carry some of a question's difficulty. */
    size_t stem = n, optlen = 0, optmax = 0, optnum = 0, nopt = 0, caps = 0;
    for (size_t i = 0; i < n; i++) {
        if (!option_at(t, n, i)) continue;
        if (stem == n) stem = i;
        size_t j = i + 3;
        while (j < n && t[j] == ' ') j++;
        size_t k = j;
        while (k < n && t[k] != '\n') k++;
        nopt++;
        optlen += k - j;
        if (k - j > optmax) optmax = k - j;
        if (j < n && ((t[j] >= '0' && t[j] <= '9') || t[j] == '-' || t[j] == '$' || t[j] == '.'))
            optnum++;
    }
    for (size_t i = 0; i + 3 < stem; i++) /* all-caps words in the stem: NOT, EXCEPT, LEAST */
        if ((i == 0 || t[i - 1] == ' ') && upper3(t + i)) caps++;
    if (is_mc) {
        add_dense(s, "stem", log2_bin(stem));
        add_dense(s, "optlen", log2_bin(nopt ? optlen / nopt : 0));
        add_dense(s, "optmax", log2_bin(optmax));
        add_dense(s, "optnum", (unsigned)optnum);
        add_dense(s, "caps", log2_bin(caps));
    } else {
        add_dense(s, "numbers|open", log2_bin(numbers));
    }
    bool answer = n >= 7 && memcmp(t + n - 7, "Answer:", 7) == 0;
    unsigned lb = log2_bin(nwords);
    add_dense(s, "len", lb);
    add_dense(s, "bytes", log2_bin(total));
    add_dense(s, is_mc ? "len|mc" : "len|open", lb);
    add_dense(s, "mc", is_mc);
    add_dense(s, "answer", answer);
    add_dense(s, "digits", share_bin(digits, n));
    add_dense(s, is_mc ? "digits|mc" : "digits|open", share_bin(digits, n));
    add_dense(s, "numbers", log2_bin(numbers));
    add_dense(s, "math", log2_bin(math));
    add_dense(s, "code", log2_bin(code));
    add_dense(s, "qmarks", log2_bin(qmarks));
    add_dense(s, "lines", log2_bin(lines));
    add_dense(s, "maxline", log2_bin(maxline));
    add_dense(s, "upper", share_bin(upper, alpha));
    add_dense(s, "nonascii", share_bin(nonascii, n));
    add_dense(s, "script", hangul * 3 > n ? 1 : cjk * 3 > n ? 2 : cyr * 4 > n ? 3 : 0);
    add_dense(s, "wordlen", nwords ? log2_bin(alpha * 4 / nwords) : 0);
    unsigned q = 0;
    for (size_t i = 0; i < sizeof QWORDS / sizeof QWORDS[0]; i++)
        if (strcmp(first, QWORDS[i]) == 0) q = (unsigned)i + 1;
    add_dense(s, "first", q);
    add_dense(s, is_mc ? "first|mc" : "first|open", q);
}

/* Fills s->idx/val for text: text features weighted by idf (NULL = raw counts,
 * unnormalised: training computes the IDF from them first). */
static void extract(struct bt_learn_scratch *s, uint32_t bits, uint32_t features, const float *idf,
                    const char *text, size_t len)
{
    s->mask = (1u << bits) - 1;
    s->nused = 0;
    s->nd = 0;
    s->n = 0;
    size_t n = len < TEXT_MAX ? len : TEXT_MAX;
    size_t nwords = 0;
    char first[32];
    first[0] = 0;
    if (features & BT_LEARN_F_WORDS) words(s, text, n, &nwords, first, sizeof first);
    if (features & BT_LEARN_F_CHARS) chars(s, text, n);
    if (features & BT_LEARN_F_SHAPE) shape(s, text, n, len, nwords, first);
    double norm = 0;
    for (uint32_t i = 0; i < s->nused; i++) {
        uint32_t slot = s->used[i];
        uint32_t b = s->key[slot] - 1;
        float v = idf ? log1pf(s->cnt[slot]) * idf[b] : s->cnt[slot];
        s->idx[s->n] = b;
        s->val[s->n++] = v;
        norm += (double)v * v;
        s->key[slot] = 0;
    }
    if (idf && norm > 0) {
        float k = (float)(1.0 / sqrt(norm));
        for (uint32_t i = 0; i < s->n; i++) s->val[i] *= k;
    }
    for (uint32_t i = 0; i < s->nd; i++) {
        s->idx[s->n] = s->dense[i];
        s->val[s->n++] = idf ? SHAPE_VALUE : -1.0f; /* -1 marks a hand-made feature in raw mode */
    }
}

static inline double sigmoid(double z)
{
    return 1.0 / (1.0 + exp(-z));
}

double bt_router_score(const struct bt_router *r, struct bt_learn_scratch *s, const char *text,
                       size_t len)
{
    extract(s, r->hash_bits, r->features, r->idf, text, len);
    double z0 = r->bias[0], z1 = r->bias[1];
    for (uint32_t i = 0; i < s->n; i++) z0 += (double)r->w[0][s->idx[i]] * s->val[i];
    if (r->mode == BT_LEARN_LABEL) return sigmoid(z0);
    for (uint32_t i = 0; i < s->n; i++) z1 += (double)r->w[1][s->idx[i]] * s->val[i];
    return sigmoid(z0) - sigmoid(z1);
}

/* ---- the router file ---- */

static const char MAGIC[8] = {'B', 'T', 'R', 'O', 'U', 'T', 'E', 'R'};
#define FILE_VERSION 2u

uint64_t bt_router_checksum(const void *data, size_t n)
{
    return bt_fnv1a(BT_FNV_OFFSET, data, n);
}

/* Little-endian integers of `n` bytes. */
static void put_le(uint8_t *p, uint64_t v, int n)
{
    for (int i = 0; i < n; i++) p[i] = (uint8_t)(v >> (8 * i));
}
static uint64_t get_le(const uint8_t *p, int n)
{
    uint64_t v = 0;
    for (int i = 0; i < n; i++) v |= (uint64_t)p[i] << (8 * i);
    return v;
}
static void put_u32(uint8_t *p, uint32_t v)
{
    put_le(p, v, 4);
}
static void put_u64(uint8_t *p, uint64_t v)
{
    put_le(p, v, 8);
}
static uint32_t get_u32(const uint8_t *p)
{
    return (uint32_t)get_le(p, 4);
}
static uint64_t get_u64(const uint8_t *p)
{
    return get_le(p, 8);
}
/* Floats travel as their IEEE-754 bits, little-endian. */
static void put_f32(uint8_t *p, float f)
{
    uint32_t v;
    memcpy(&v, &f, 4);
    put_u32(p, v);
}
static float get_f32(const uint8_t *p)
{
    uint32_t v = get_u32(p);
    float f;
    memcpy(&f, &v, 4);
    return f;
}
static void put_f64(uint8_t *p, double d)
{
    uint64_t v;
    memcpy(&v, &d, sizeof v);
    put_le(p, v, 8);
}
static double get_f64(const uint8_t *p)
{
    union {
        uint64_t u;
        double d;
    } v = {.u = get_le(p, 8)};
    return v.d;
}

/* magic, version, bits, mode, features, threshold, share, bias0, bias1, name lengths */
#define HDR (8 + 4 * 4 + 8 + 8 + 4 + 4 + 4 + 4)

static size_t nmodels(uint32_t mode)
{
    return mode == BT_LEARN_LABEL ? 1 : 2;
}

enum bt_err bt_router_save(const struct bt_router *r, const char *path)
{
    size_t ls = strlen(r->strong), lw = strlen(r->weak);
    size_t nb = (size_t)1 << r->hash_bits, nm = nmodels(r->mode);
    size_t total = HDR + ls + lw + (1 + nm) * nb * 4 + BT_LEARN_CAL * 8 + 8;
    uint8_t *b = malloc(total), *p = b;
    if (!b) return BT_ENOMEM;
    memcpy(p, MAGIC, 8);
    put_u32(p + 8, FILE_VERSION);
    put_u32(p + 12, r->hash_bits);
    put_u32(p + 16, r->mode);
    put_u32(p + 20, r->features);
    put_f64(p + 24, r->threshold);
    put_f64(p + 32, r->strong_share);
    put_f32(p + 40, r->bias[0]);
    put_f32(p + 44, r->bias[1]);
    put_u32(p + 48, (uint32_t)ls);
    put_u32(p + 52, (uint32_t)lw);
    p += HDR;
    memcpy(p, r->strong, ls);
    p += ls;
    memcpy(p, r->weak, lw);
    p += lw;
    for (size_t i = 0; i < nb; i++, p += 4) put_f32(p, r->idf[i]);
    for (size_t m = 0; m < nm; m++)
        for (size_t i = 0; i < nb; i++, p += 4) put_f32(p, r->w[m][i]);
    for (size_t i = 0; i < BT_LEARN_CAL; i++, p += 8) put_f64(p, r->cal[i]);
    put_u64(p, bt_router_checksum(b, total - 8));
    FILE *f = fopen(path, "wb");
    enum bt_err e = BT_OK;
    if (!f) e = BT_EIO;
    else {
        if (fwrite(b, 1, total, f) != total) e = BT_EIO;
        if (fclose(f) != 0) e = BT_EIO;
    }
    free(b);
    return e;
}

void bt_router_free(struct bt_router *r)
{
    free(r->idf);
    free(r->w[0]);
    free(r->w[1]);
    memset(r, 0, sizeof *r);
}

static enum bt_err refuse(char *msg, size_t cap, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static enum bt_err refuse(char *msg, size_t cap, const char *fmt, ...)
{
    if (msg && cap) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(msg, cap, fmt, ap);
        va_end(ap);
    }
    return BT_EPARSE;
}

static bool name_ok(const uint8_t *p, size_t n)
{
    if (n == 0 || n > BT_LEARN_NAME_MAX) return false;
    for (size_t i = 0; i < n; i++)
        if (p[i] < 0x20 || p[i] == 0x7f) return false;
    return true;
}

enum bt_err bt_router_load_mem(struct bt_router *r, const void *data, size_t len, char *msg,
                               size_t cap)
{
    memset(r, 0, sizeof *r);
    const uint8_t *p = data;
    if (len < HDR + 8 || memcmp(p, MAGIC, 8) != 0)
        return refuse(msg, cap, "not a baton router file (no BTROUTER header)");
    uint32_t ver = get_u32(p + 8), bits = get_u32(p + 12), mode = get_u32(p + 16);
    uint32_t feat = get_u32(p + 20), ls = get_u32(p + 48), lw = get_u32(p + 52);
    if (ver != FILE_VERSION)
        return refuse(msg, cap, "router file version %u; this baton reads version %u", ver,
                      FILE_VERSION);
    if (bits < BT_LEARN_MIN_BITS || bits > BT_LEARN_MAX_BITS)
        return refuse(msg, cap, "hash bits %u outside %d..%d", bits, BT_LEARN_MIN_BITS,
                      BT_LEARN_MAX_BITS);
    if (mode > BT_LEARN_LABEL) return refuse(msg, cap, "unknown mode %u", mode);
    if (feat == 0 || (feat & ~BT_LEARN_F_ALL)) return refuse(msg, cap, "unknown features %#x", feat);
    if (ls == 0 || ls > BT_LEARN_NAME_MAX || lw == 0 || lw > BT_LEARN_NAME_MAX)
        return refuse(msg, cap, "model name length out of range");
    size_t nb = (size_t)1 << bits, nm = nmodels(mode);
    size_t want = HDR + ls + lw + (1 + nm) * nb * 4 + BT_LEARN_CAL * 8 + 8;
    if (len != want)
        return refuse(msg, cap, "router file is %zu bytes; its header says %zu", len, want);
    if (bt_router_checksum(p, len - 8) != get_u64(p + len - 8))
        return refuse(msg, cap, "router file checksum mismatch (truncated or altered)");
    double th = get_f64(p + 24), share = get_f64(p + 32);
    float b0 = get_f32(p + 40), b1 = get_f32(p + 44);
    /* Trained values are small (regularised logistic models); bounding them keeps
     * every sum a score makes finite, whatever a file holds. */
    if (!isfinite(th) || fabs(th) > 2 || !isfinite(b0) || !isfinite(b1) || fabsf(b0) > 1e4f ||
        fabsf(b1) > 1e4f)
        return refuse(msg, cap, "threshold or bias is not a finite number in range");
    if (!(share >= 0 && share <= 1)) return refuse(msg, cap, "strong share outside 0..1");
    if (!name_ok(p + HDR, ls) || !name_ok(p + HDR + ls, lw))
        return refuse(msg, cap, "model name has a control character");
    r->hash_bits = bits;
    r->mode = mode;
    r->features = feat;
    r->threshold = th;
    r->strong_share = share;
    r->bias[0] = b0;
    r->bias[1] = b1;
    memcpy(r->strong, p + HDR, ls);
    memcpy(r->weak, p + HDR + ls, lw);
    const uint8_t *q = p + HDR + ls + lw;
    r->idf = malloc(nb * sizeof(float));
    for (size_t m = 0; m < nm; m++) r->w[m] = malloc(nb * sizeof(float));
    if (!r->idf || !r->w[0] || (nm == 2 && !r->w[1])) {
        bt_router_free(r);
        return BT_ENOMEM;
    }
    for (size_t i = 0; i < nb; i++, q += 4) {
        r->idf[i] = get_f32(q);
        if (!isfinite(r->idf[i]) || r->idf[i] < 0 || r->idf[i] > 1e4f) {
            bt_router_free(r);
            return refuse(msg, cap, "IDF entry %zu is not a number from 0 to 10000", i);
        }
    }
    for (size_t m = 0; m < nm; m++)
        for (size_t i = 0; i < nb; i++, q += 4) {
            r->w[m][i] = get_f32(q);
            if (!isfinite(r->w[m][i]) || fabsf(r->w[m][i]) > 1e4f) {
                bt_router_free(r);
                return refuse(msg, cap, "weight %zu is not a number from -10000 to 10000", i);
            }
        }
    for (size_t i = 0; i < BT_LEARN_CAL; i++, q += 8) {
        r->cal[i] = get_f64(q);
        if (!isfinite(r->cal[i]) || fabs(r->cal[i]) > 2 || (i && r->cal[i] > r->cal[i - 1])) {
            bt_router_free(r);
            return refuse(msg, cap,
                          "calibration entry %zu is not a number from -2 to 2 below the one "
                          "before it", i);
        }
    }
    return BT_OK;
}

/* Reads a whole file of at most `max` bytes into a malloc'd buffer. */
static enum bt_err slurp(const char *path, size_t max, char **out, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f) return BT_EIO;
    struct bt_buf b;
    bt_buf_init(&b, max);
    char tmp[65536];
    size_t n;
    enum bt_err e = BT_OK;
    while (!e && (n = fread(tmp, 1, sizeof tmp, f)) > 0) e = bt_buf_append(&b, tmp, n);
    if (!e && ferror(f)) e = BT_EIO;
    fclose(f);
    if (!e) e = bt_buf_cstr(&b);
    if (e) {
        bt_buf_free(&b);
        return e;
    }
    *len = b.len;
    *out = bt_buf_steal(&b, NULL);
    if (!*out) {
        *out = calloc(1, 1);
        if (!*out) return BT_ENOMEM;
    }
    return BT_OK;
}

enum bt_err bt_router_load(struct bt_router *r, const char *path, char *msg, size_t cap)
{
    memset(r, 0, sizeof *r);
    char *data;
    size_t len;
    enum bt_err e = slurp(path, 256u << 20, &data, &len);
    if (e) {
        if (msg && cap)
            snprintf(msg, cap, "%s: %s", path,
                     e == BT_EIO ? strerror(errno ? errno : EIO) : bt_strerror(e));
        return e;
    }
    e = bt_router_load_mem(r, data, len, msg, cap);
    free(data);
    return e;
}

/* ---- data ---- */

void bt_learn_data_free(struct bt_learn_data *d)
{
    for (size_t i = 0; i < d->n; i++) {
        free(d->id[i]);
        free(d->prompt[i]);
    }
    free(d->id);
    free(d->prompt);
    free(d->plen);
    free(d->s);
    free(d->w);
    memset(d, 0, sizeof *d);
}

static enum bt_err data_push(struct bt_learn_data *d, size_t *cap, struct bt_str id,
                             struct bt_str prompt, double s, double w)
{
    if (d->n == *cap) {
        size_t nc = *cap ? *cap * 2 : 1024;
        char **a = realloc(d->id, nc * sizeof *a);
        if (!a) return BT_ENOMEM;
        d->id = a;
        char **b = realloc(d->prompt, nc * sizeof *b);
        if (!b) return BT_ENOMEM;
        d->prompt = b;
        size_t *c = realloc(d->plen, nc * sizeof *c);
        if (!c) return BT_ENOMEM;
        d->plen = c;
        double *x = realloc(d->s, nc * sizeof *x);
        if (!x) return BT_ENOMEM;
        d->s = x;
        double *y = realloc(d->w, nc * sizeof *y);
        if (!y) return BT_ENOMEM;
        d->w = y;
        *cap = nc;
    }
    char *ic = malloc(id.len + 1), *pc = malloc(prompt.len + 1);
    if (!ic || !pc) {
        free(ic);
        free(pc);
        return BT_ENOMEM;
    }
    if (id.len) memcpy(ic, id.p, id.len);
    ic[id.len] = 0;
    if (prompt.len) memcpy(pc, prompt.p, prompt.len);
    pc[prompt.len] = 0;
    d->id[d->n] = ic;
    d->prompt[d->n] = pc;
    d->plen[d->n] = prompt.len;
    d->s[d->n] = s;
    d->w[d->n] = w;
    d->n++;
    return BT_OK;
}

enum bt_err bt_learn_data_load(struct bt_learn_data *d, const char *path, const char *strong,
                               const char *weak, char *msg, size_t cap)
{
    memset(d, 0, sizeof *d);
    char *buf;
    size_t len, dcap = 0;
    enum bt_err e = slurp(path, (size_t)2 << 30, &buf, &len);
    if (e) {
        snprintf(msg, cap, "%s: %s", path,
                 e == BT_EIO ? strerror(errno ? errno : EIO) : bt_strerror(e));
        return e;
    }
    struct bt_arena ar;
    bt_arena_init(&ar, 1 << 16, 64u << 20);
    size_t line = 0;
    for (size_t off = 0; off < len && !e;) {
        line++;
        const char *nl = memchr(buf + off, '\n', len - off);
        size_t end = nl ? (size_t)(nl - buf) : len;
        const char *lp = buf + off;
        size_t ll = end - off;
        off = end + 1;
        size_t k = 0;
        while (k < ll && (lp[k] == ' ' || lp[k] == '\t' || lp[k] == '\r')) k++;
        if (k == ll) continue;
        bt_arena_reset(&ar);
        struct bt_json_doc doc;
        struct bt_json_error jerr;
        e = bt_json_parse(&doc, lp, ll, &ar, NULL, &jerr);
        if (e) {
            snprintf(msg, cap, "%s:%zu: %s", path, line,
                     e == BT_EPARSE ? jerr.msg : bt_strerror(e));
            break;
        }
        int ti = bt_json_get(&doc, 0, "id"), tp = bt_json_get(&doc, 0, "prompt");
        int ts = bt_json_get(&doc, 0, "scores");
        int vs = bt_json_get(&doc, ts, strong), vw = bt_json_get(&doc, ts, weak);
        struct bt_str id = {0}, prompt = {0};
        double s = 0, w = 0;
        const char *why = NULL;
        if (bt_json_type(&doc, 0) != BT_JSON_OBJECT) why = "not a JSON object";
        else if (bt_json_type(&doc, tp) != BT_JSON_STRING) why = "no string \"prompt\"";
        else if (bt_json_type(&doc, ti) != BT_JSON_STRING) why = "no string \"id\"";
        else if (bt_json_type(&doc, ts) != BT_JSON_OBJECT) why = "no object \"scores\"";
        else if (bt_json_double(&doc, vs, &s) || !isfinite(s)) why = "no numeric score for the strong model";
        else if (bt_json_double(&doc, vw, &w) || !isfinite(w)) why = "no numeric score for the weak model";
        else if (bt_json_str(&doc, ti, &ar, &id) || bt_json_str(&doc, tp, &ar, &prompt))
            why = "a string could not be decoded";
        if (why) {
            snprintf(msg, cap, "%s:%zu: %s", path, line, why);
            e = BT_EPARSE;
            break;
        }
        e = data_push(d, &dcap, id, prompt, s, w);
        if (e) snprintf(msg, cap, "%s:%zu: %s", path, line, bt_strerror(e));
    }
    bt_arena_free(&ar);
    free(buf);
    if (!e && d->n == 0) {
        snprintf(msg, cap, "%s: no rows", path);
        e = BT_EINVAL;
    }
    if (e) bt_learn_data_free(d);
    return e;
}

/* ---- metrics ---- */

struct ranked {
    double score;
    size_t i;
};

static int by_score_desc(const void *a, const void *b)
{
    const struct ranked *x = a, *y = b;
    if (x->score > y->score) return -1;
    if (x->score < y->score) return 1;
    return x->i < y->i ? -1 : x->i > y->i;
}

enum bt_err bt_learn_metrics(const double *score, const double *s, const double *w, size_t n,
                             struct bt_route_metrics *m)
{
    memset(m, 0, sizeof *m);
    if (n == 0) return BT_EINVAL;
    double S = 0, W = 0;
    for (size_t i = 0; i < n; i++) {
        S += s[i];
        W += w[i];
    }
    m->strong_mean = S / (double)n;
    m->weak_mean = W / (double)n;
    double D = S - W;
    if (fabs(D) < 1e-12) return BT_EINVAL;
    struct ranked *r = malloc(n * sizeof *r);
    if (!r) return BT_ENOMEM;
    for (size_t i = 0; i < n; i++) {
        r[i].score = isnan(score[i]) ? -INFINITY : score[i];
        r[i].i = i;
    }
    qsort(r, n, sizeof *r, by_score_desc);
    /* PGR after the top k rows go strong = (sum of s - w over them) / D. */
    double area = 0, cum = 0, pk = 0, pp = 0;
    double targets[2] = {0.5, 0.8}, *cpt[2] = {&m->cpt50, &m->cpt80};
    bool found[2] = {false, false};
    for (size_t k = 0; k < n;) {
        size_t j = k;
        while (j < n && r[j].score == r[k].score) {
            cum += s[r[j].i] - w[r[j].i];
            j++;
        }
        double p = cum / D;
        area += (pp + p) / 2 * (double)(j - k) / (double)n;
        for (int t = 0; t < 2; t++)
            if (!found[t] && p >= targets[t]) {
                double f = p > pp ? (targets[t] - pp) / (p - pp) : 1;
                if (f < 0) f = 0;
                *cpt[t] = (pk + f * (double)(j - k)) / (double)n;
                found[t] = true;
            }
        pp = p;
        pk = (double)j;
        k = j;
    }
    m->apgr = area;
    free(r);
    return BT_OK;
}

/* ---- training ---- */

struct rows {
    size_t n;
    size_t *off;   /* row i's features are idx/val[off[i] .. off[i + 1]) */
    uint32_t *idx;
    float *val;
};

static uint64_t rng_next(uint64_t *x)
{
    *x ^= *x << 13;
    *x ^= *x >> 7;
    *x ^= *x << 17;
    return *x;
}

static void shuffle(size_t *a, size_t n, uint64_t *rng)
{
    for (size_t i = n; i > 1; i--) {
        size_t j = (size_t)(rng_next(rng) % i);
        size_t t = a[i - 1];
        a[i - 1] = a[j];
        a[j] = t;
    }
}

/* Featurises every row: raw counts first (for the IDF), then weighted rows. */
static enum bt_err featurise(const struct bt_learn_data *d, uint32_t bits, uint32_t features,
                             float *idf, struct rows *out)
{
    size_t nb = (size_t)1 << bits;
    struct bt_learn_scratch *s = bt_learn_scratch_new();
    uint32_t *df = calloc(nb, sizeof *df);
    out->n = d->n;
    out->off = calloc(d->n + 1, sizeof *out->off);
    size_t cap = 1 << 20, used = 0;
    out->idx = malloc(cap * sizeof *out->idx);
    out->val = malloc(cap * sizeof *out->val);
    if (!s || !df || !out->off || !out->idx || !out->val) goto nomem;
    for (size_t i = 0; i < d->n; i++) {
        extract(s, bits, features, NULL, d->prompt[i], d->plen[i]);
        for (uint32_t k = 0; k < s->n; k++)
            if (s->val[k] > 0) df[s->idx[k]]++;
    }
    for (size_t b = 0; b < nb; b++)
        idf[b] = (float)(log((1.0 + (double)d->n) / (1.0 + df[b])) + 1.0);
    for (size_t i = 0; i < d->n; i++) {
        extract(s, bits, features, idf, d->prompt[i], d->plen[i]);
        if (used + s->n > cap) {
            while (used + s->n > cap) cap *= 2;
            uint32_t *a = realloc(out->idx, cap * sizeof *a);
            if (!a) goto nomem;
            out->idx = a;
            float *v = realloc(out->val, cap * sizeof *v);
            if (!v) goto nomem;
            out->val = v;
        }
        memcpy(out->idx + used, s->idx, s->n * sizeof *s->idx);
        memcpy(out->val + used, s->val, s->n * sizeof *s->val);
        used += s->n;
        out->off[i + 1] = used;
    }
    free(df);
    bt_learn_scratch_free(s);
    return BT_OK;
nomem:
    free(df);
    bt_learn_scratch_free(s);
    return BT_ENOMEM;
}

static void rows_free(struct rows *r)
{
    free(r->off);
    free(r->idx);
    free(r->val);
}

struct model {
    double *w, *g; /* weights and AdaGrad sums, [buckets] */
    double b, gb;
};

static double dot(const struct model *m, const struct rows *x, size_t i)
{
    double z = m->b;
    for (size_t k = x->off[i]; k < x->off[i + 1]; k++) z += m->w[x->idx[k]] * x->val[k];
    return z;
}

/* AdaGrad logistic regression on the rows listed in `train`, target y[i] in [0, 1]. */
static void fit(struct model *m, size_t nb, const struct rows *x, const double *y,
                const size_t *train, size_t ntrain, const struct bt_learn_opts *o, uint64_t seed)
{
    memset(m->w, 0, nb * sizeof *m->w);
    memset(m->g, 0, nb * sizeof *m->g);
    m->b = m->gb = 0;
    size_t *order = malloc(ntrain * sizeof *order);
    if (!order) return;
    memcpy(order, train, ntrain * sizeof *order);
    uint64_t rng = seed | 1;
    for (uint32_t ep = 0; ep < o->epochs; ep++) {
        shuffle(order, ntrain, &rng);
        for (size_t t = 0; t < ntrain; t++) {
            size_t i = order[t];
            double g = sigmoid(dot(m, x, i)) - y[i];
            for (size_t k = x->off[i]; k < x->off[i + 1]; k++) {
                uint32_t j = x->idx[k];
                double gj = g * x->val[k] + o->l2 * m->w[j];
                m->g[j] += gj * gj;
                m->w[j] -= o->lr * gj / sqrt(m->g[j] + 1e-8);
            }
            m->gb += g * g;
            m->b -= o->lr * g / sqrt(m->gb + 1e-8);
        }
    }
    free(order);
}

static double score_row(struct model *ms, uint32_t mode, const struct rows *x, size_t i)
{
    if (mode == BT_LEARN_LABEL) return sigmoid(dot(&ms[0], x, i));
    return sigmoid(dot(&ms[0], x, i)) - sigmoid(dot(&ms[1], x, i));
}

static int cmp_double_desc(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x > y ? -1 : x < y;
}

/* The threshold that sends the top `share` of `sorted` (descending) strong:
 * halfway between the last score in and the first out; beyond the ends by 1. */
static double share_threshold(const double *sorted, size_t n, double share)
{
    size_t k = (size_t)llround(share * (double)n);
    if (k == 0) return sorted[0] + 1 > 2 ? 2 : sorted[0] + 1;
    if (k >= n) return sorted[n - 1] - 1 < -2 ? -2 : sorted[n - 1] - 1;
    return (sorted[k - 1] + sorted[k]) / 2;
}

double bt_router_threshold_for(const struct bt_router *r, double share)
{
    if (!(share > 0)) return r->cal[0];
    if (!(share < 1)) return r->cal[BT_LEARN_CAL - 1];
    double x = share * (BT_LEARN_CAL - 1);
    size_t i = (size_t)x;
    if (i >= BT_LEARN_CAL - 1) return r->cal[BT_LEARN_CAL - 1];
    double f = x - (double)i;
    return r->cal[i] + f * (r->cal[i + 1] - r->cal[i]);
}

enum bt_err bt_router_train(struct bt_router *r, const struct bt_learn_data *d,
                            const struct bt_learn_opts *oin, const char *strong, const char *weak,
                            double *oof_out)
{
    memset(r, 0, sizeof *r);
    struct bt_learn_opts o = *oin;
    if (!o.hash_bits) o.hash_bits = 18;
    if (!o.features) o.features = BT_LEARN_F_DEFAULT;
    if (!o.epochs) o.epochs = 5;
    if (!o.folds) o.folds = 10;
    if (o.lr <= 0) o.lr = 0.03;
    if (o.l2 <= 0) o.l2 = 1e-6;
    if (!o.seed) o.seed = 0x2545f4914f6cdd1dULL;
    if (o.hash_bits < BT_LEARN_MIN_BITS || o.hash_bits > BT_LEARN_MAX_BITS || o.mode > BT_LEARN_LABEL ||
        (o.features & ~BT_LEARN_F_ALL) || !(o.strong_share >= 0 && o.strong_share <= 1) ||
        strlen(strong) == 0 || strlen(strong) > BT_LEARN_NAME_MAX || strlen(weak) == 0 ||
        strlen(weak) > BT_LEARN_NAME_MAX || d->n < 2 * o.folds)
        return BT_EINVAL;
    size_t nb = (size_t)1 << o.hash_bits, n = d->n, nm = nmodels(o.mode);
    struct rows x = {0};
    struct model ms[2] = {{0}};
    double *y[2] = {NULL, NULL}, *oof = NULL;
    size_t *perm = NULL, *train = NULL;
    enum bt_err e = BT_ENOMEM;
    r->idf = malloc(nb * sizeof(float));
    if (!r->idf) goto done;
    if (o.progress) fprintf(o.progress, "route train: %zu rows, featurising\n", n);
    if ((e = featurise(d, o.hash_bits, o.features, r->idf, &x))) goto done;
    e = BT_ENOMEM;
    for (size_t m = 0; m < nm; m++) {
        ms[m].w = malloc(nb * sizeof(double));
        ms[m].g = malloc(nb * sizeof(double));
        y[m] = malloc(n * sizeof(double));
        if (!ms[m].w || !ms[m].g || !y[m]) goto done;
    }
    for (size_t i = 0; i < n; i++) {
        if (o.mode == BT_LEARN_LABEL) y[0][i] = d->s[i] - d->w[i] > 0 ? 1.0 : 0.0;
        else {
            y[0][i] = d->s[i] < 0 ? 0 : d->s[i] > 1 ? 1 : d->s[i];
            y[1][i] = d->w[i] < 0 ? 0 : d->w[i] > 1 ? 1 : d->w[i];
        }
    }
    oof = malloc(n * sizeof *oof);
    perm = malloc(n * sizeof *perm);
    train = malloc(n * sizeof *train);
    if (!oof || !perm || !train) goto done;
    for (size_t i = 0; i < n; i++) perm[i] = i;
    uint64_t rng = o.seed;
    shuffle(perm, n, &rng);
    for (uint32_t f = 0; f < o.folds; f++) {
        size_t nt = 0;
        for (size_t k = 0; k < n; k++)
            if (k % o.folds != f) train[nt++] = perm[k];
        for (size_t m = 0; m < nm; m++) fit(&ms[m], nb, &x, y[m], train, nt, &o, o.seed + 7 * f + m);
        for (size_t k = f; k < n; k += o.folds) oof[perm[k]] = score_row(ms, o.mode, &x, perm[k]);
        if (o.progress) fprintf(o.progress, "route train: fold %u/%u done\n", f + 1, o.folds);
    }
    struct bt_route_metrics cv;
    if (o.progress && !bt_learn_metrics(oof, d->s, d->w, n, &cv))
        fprintf(o.progress, "route train: cross-validated APGR %.4f CPT(50%%) %.4f CPT(80%%) %.4f\n",
                cv.apgr, cv.cpt50, cv.cpt80);
    for (size_t i = 0; i < n; i++) train[i] = i;
    for (size_t m = 0; m < nm; m++) fit(&ms[m], nb, &x, y[m], train, n, &o, o.seed + 1000 + m);
    /* The threshold: the top `share` of out-of-fold scores go strong. */
    double *sorted = malloc(n * sizeof *sorted);
    if (!sorted) goto done;
    memcpy(sorted, oof, n * sizeof *sorted);
    qsort(sorted, n, sizeof *sorted, cmp_double_desc);
    r->threshold = share_threshold(sorted, n, o.strong_share);
    for (size_t i = 0; i < BT_LEARN_CAL; i++)
        r->cal[i] = share_threshold(sorted, n, (double)i / (BT_LEARN_CAL - 1));
    free(sorted);
    r->hash_bits = o.hash_bits;
    r->mode = o.mode;
    r->features = o.features;
    r->strong_share = o.strong_share;
    snprintf(r->strong, sizeof r->strong, "%s", strong);
    snprintf(r->weak, sizeof r->weak, "%s", weak);
    for (size_t m = 0; m < nm; m++) {
        r->w[m] = malloc(nb * sizeof(float));
        if (!r->w[m]) goto done;
        for (size_t i = 0; i < nb; i++) r->w[m][i] = (float)ms[m].w[i];
        r->bias[m] = (float)ms[m].b;
    }
    if (oof_out) memcpy(oof_out, oof, n * sizeof *oof);
    if (o.progress) fprintf(o.progress, "route train: threshold %.6f for strong share %.3f\n",
                            r->threshold, r->strong_share);
    e = BT_OK;
done:
    rows_free(&x);
    for (size_t m = 0; m < 2; m++) {
        free(ms[m].w);
        free(ms[m].g);
        free(y[m]);
    }
    free(oof);
    free(perm);
    free(train);
    if (e) bt_router_free(r);
    return e;
}
