/* JSON tokenizer, navigation and string (un)escaping. See docs/internals/json.md.
 *
 * The tokenizer is one pass over the input with an explicit container stack; tokens
 * go into one array taken from the arena (first sized from the input length, then
 * regrown from the density seen so far), so there is no allocation per token.
 * Strings are scanned sixteen bytes at a time (SSE2; eight without it) while they hold
 * nothing but plain ASCII. bt_json_validate runs the same grammar without tokens. */
#include "json/json.h"

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#define DEFAULT_MAX_TOKENS (1u << 24)
#define DEFAULT_MAX_DEPTH 128u
#define LOCAL_STACK 128u

/* ---- UTF-8 and escapes (shared by the tokenizer and the decoders) ---- */

/* Length of the valid UTF-8 sequence that starts at p (whose first byte is >= 0x80),
 * or 0 when it is invalid: overlong forms, surrogates (ED A0..BF) and code points
 * past U+10FFFF are refused, as RFC 3629 requires. */
static inline size_t utf8_seq(const unsigned char *p, const unsigned char *end)
{
    unsigned char c = p[0];
    size_t avail = (size_t)(end - p);
    if (c >= 0xC2 && c <= 0xDF) {
        if (avail < 2 || (p[1] & 0xC0) != 0x80) return 0;
        return 2;
    }
    if (c >= 0xE0 && c <= 0xEF) {
        if (avail < 3) return 0;
        unsigned char lo = 0x80, hi = 0xBF;
        if (c == 0xE0) lo = 0xA0;
        else if (c == 0xED) hi = 0x9F;
        if (p[1] < lo || p[1] > hi || (p[2] & 0xC0) != 0x80) return 0;
        return 3;
    }
    if (c >= 0xF0 && c <= 0xF4) {
        if (avail < 4) return 0;
        unsigned char lo = 0x80, hi = 0xBF;
        if (c == 0xF0) lo = 0x90;
        else if (c == 0xF4) hi = 0x8F;
        if (p[1] < lo || p[1] > hi || (p[2] & 0xC0) != 0x80 || (p[3] & 0xC0) != 0x80) return 0;
        return 4;
    }
    return 0;
}

static inline int hexval(unsigned char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    c |= 0x20;
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
}

/* Four hex digits at p (caller checked they exist); -1 when any is not hex. */
static inline long hex4(const unsigned char *p)
{
    int a = hexval(p[0]), b = hexval(p[1]), c = hexval(p[2]), d = hexval(p[3]);
    if ((a | b | c | d) < 0) return -1;
    return (long)((a << 12) | (b << 8) | (c << 4) | d);
}

static inline size_t utf8_put(unsigned char *o, unsigned long cp)
{
    if (cp < 0x80) {
        o[0] = (unsigned char)cp;
        return 1;
    }
    if (cp < 0x800) {
        o[0] = (unsigned char)(0xC0 | (cp >> 6));
        o[1] = (unsigned char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        o[0] = (unsigned char)(0xE0 | (cp >> 12));
        o[1] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
        o[2] = (unsigned char)(0x80 | (cp & 0x3F));
        return 3;
    }
    o[0] = (unsigned char)(0xF0 | (cp >> 18));
    o[1] = (unsigned char)(0x80 | ((cp >> 12) & 0x3F));
    o[2] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
    o[3] = (unsigned char)(0x80 | (cp & 0x3F));
    return 4;
}

/* Decodes the escape sequence at p (p[0] == '\\') into o (room for 4 bytes).
 * Returns the number of source bytes consumed and sets *olen, or 0 on a bad
 * escape. A surrogate pair becomes one code point; a lone surrogate U+FFFD. */
static size_t decode_escape(const unsigned char *p, const unsigned char *end, unsigned char *o,
                            size_t *olen)
{
    if (end - p < 2) return 0;
    unsigned char c;
    switch (p[1]) {
    case '"': c = '"'; break;
    case '\\': c = '\\'; break;
    case '/': c = '/'; break;
    case 'b': c = '\b'; break;
    case 'f': c = '\f'; break;
    case 'n': c = '\n'; break;
    case 'r': c = '\r'; break;
    case 't': c = '\t'; break;
    case 'u': {
        if (end - p < 6) return 0;
        long cp = hex4(p + 2);
        if (cp < 0) return 0;
        if (cp >= 0xD800 && cp <= 0xDBFF && end - p >= 12 && p[6] == '\\' && p[7] == 'u') {
            long lo = hex4(p + 8);
            if (lo >= 0xDC00 && lo <= 0xDFFF) {
                *olen = utf8_put(o, 0x10000 + (((unsigned long)cp - 0xD800) << 10) +
                                        ((unsigned long)lo - 0xDC00));
                return 12;
            }
        }
        if (cp >= 0xD800 && cp <= 0xDFFF) cp = 0xFFFD;
        *olen = utf8_put(o, (unsigned long)cp);
        return 6;
    }
    default: return 0;
    }
    o[0] = c;
    *olen = 1;
    return 2;
}

/* Decodes a string body into out, which has room for n bytes (decoding never
 * grows a string). Returns the decoded length, or (size_t)-1 on a bad escape. */
static size_t decode_body(const unsigned char *p, size_t n, unsigned char *out)
{
    const unsigned char *end = p + n;
    unsigned char *o = out;
    while (p < end) {
        const unsigned char *bs = memchr(p, '\\', (size_t)(end - p));
        size_t run = bs ? (size_t)(bs - p) : (size_t)(end - p);
        if (run) {
            memcpy(o, p, run);
            o += run;
            p += run;
        }
        if (!bs) break;
        size_t olen = 0;
        size_t used = decode_escape(p, end, o, &olen);
        if (!used) return (size_t)-1;
        p += used;
        o += olen;
    }
    return (size_t)(o - out);
}

/* Compares an escaped string body with plain bytes without allocating. */
static bool body_eq(const unsigned char *p, size_t n, const unsigned char *k, size_t klen)
{
    const unsigned char *end = p + n, *kend = k + klen;
    while (p < end) {
        if (*p != '\\') {
            if (k == kend || *k != *p) return false;
            p++;
            k++;
            continue;
        }
        unsigned char tmp[4];
        size_t olen = 0, used = decode_escape(p, end, tmp, &olen);
        if (!used || (size_t)(kend - k) < olen || memcmp(k, tmp, olen) != 0) return false;
        p += used;
        k += olen;
    }
    return k == kend;
}

/* ---- tokenizer ---- */

struct parser {
    struct bt_arena *arena;
    struct bt_json_tok *toks;
    uint32_t ntoks, cap, max_tokens;
    size_t len;       /* input length, for growth estimates */
    const char *emsg; /* first error, static text */
    size_t eoff;
    enum bt_err ecode;
};

/* Flags (in bit 7 of each byte) the bytes of v that a string scan must look at:
 * '"', '\\', < 0x20 and >= 0x80. A borrow can flag a plain byte, but only above
 * a truly special one, so the lowest flag is exact: that is all the scan uses. */
static inline uint64_t swar_special(uint64_t v)
{
    const uint64_t ones = 0x0101010101010101ull, highs = 0x8080808080808080ull;
    uint64_t q = v ^ (ones * '"'), b = v ^ (ones * '\\');
    uint64_t t = ((q - ones) & ~q) | ((b - ones) & ~b) | ((v - ones * 0x20) & ~v) | v;
    return t & highs;
}

#if defined(__SSE2__)
/* The same for 16 bytes at once, as a bit mask (bit i: byte i is special). A
 * signed compare with 0x20 catches both the controls and the bytes >= 0x80. */
static inline unsigned sse_special(const unsigned char *p)
{
    __m128i v = _mm_loadu_si128((const __m128i *)(const void *)p);
    __m128i t = _mm_or_si128(_mm_cmpeq_epi8(v, _mm_set1_epi8('"')), _mm_cmpeq_epi8(v, _mm_set1_epi8('\\')));
    t = _mm_or_si128(t, _mm_cmplt_epi8(v, _mm_set1_epi8(0x20)));
    return (unsigned)_mm_movemask_epi8(t);
}
#endif

/* Loads 8 bytes so that the byte at the lowest address is the lowest in value. */
static inline uint64_t load_le64(const unsigned char *p)
{
    uint64_t v;
    memcpy(&v, p, 8);
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    v = __builtin_bswap64(v);
#endif
    return v;
}

static inline const unsigned char *skip_ws(const unsigned char *p, const unsigned char *end)
{
    while (p < end && (*p == ' ' || *p == '\n' || *p == '\r' || *p == '\t')) p++;
    return p;
}

static bool fail(struct parser *ps, enum bt_err code, size_t off, const char *msg)
{
    ps->ecode = code;
    ps->eoff = off;
    ps->emsg = msg;
    return false;
}

/* The array is full: allocate a bigger one and move the tokens. The new size is
 * extrapolated from the density seen so far (tokens per byte consumed), so a
 * document that is uniformly dense grows about once, not log(n) times. */
static bool grow(struct parser *ps, size_t off)
{
    if (ps->cap >= ps->max_tokens) return fail(ps, BT_ETOOBIG, off, "too many tokens");
    uint64_t est = off ? (uint64_t)ps->ntoks * ps->len / off : (uint64_t)ps->cap * 2;
    est += est / 8 + 64;
    uint64_t ncap = (uint64_t)ps->cap + ps->cap / 2 + 16;
    if (est > ncap) ncap = est;
    if (ncap > (uint64_t)ps->len + 1) ncap = (uint64_t)ps->len + 1;
    if (ncap > ps->max_tokens) ncap = ps->max_tokens;
    struct bt_json_tok *t = bt_arena_alloc(ps->arena, (size_t)ncap * sizeof(*t));
    if (!t) return fail(ps, BT_ENOMEM, off, "out of memory");
    if (ps->ntoks) memcpy(t, ps->toks, (size_t)ps->ntoks * sizeof(*t));
    ps->toks = t;
    ps->cap = (uint32_t)ncap;
    return true;
}

/* Appends a token; returns its index or -1 (error recorded). */
static inline long push(struct parser *ps, uint8_t type, size_t start)
{
    if (ps->ntoks == ps->cap && !grow(ps, start)) return -1;
    struct bt_json_tok *t = &ps->toks[ps->ntoks];
    t->type = type;
    t->escaped = 0;
    t->start = (uint32_t)start;
    t->end = 0;
    t->size = 0;
    t->next = ps->ntoks + 1;
    return (long)ps->ntoks++;
}

/* Scans a string whose opening quote is at p; returns the byte after the closing
 * quote, or NULL with the error recorded. */
static const unsigned char *scan_string(struct parser *ps, const unsigned char *s,
                                        const unsigned char *p, const unsigned char *end,
                                        uint8_t *escaped)
{
    p++;
    for (;;) {
#if defined(__SSE2__)
        while (end - p >= 16) {
            unsigned m = sse_special(p);
            if (m) {
                p += (unsigned)__builtin_ctz(m);
                goto special;
            }
            p += 16;
        }
#endif
        while (end - p >= 8) {
            uint64_t m = swar_special(load_le64(p));
            if (m) {
                p += (unsigned)__builtin_ctzll(m) >> 3;
                break;
            }
            p += 8;
        }
        if (p >= end) {
            fail(ps, BT_EPARSE, (size_t)(end - s), "unterminated string");
            return NULL;
        }
#if defined(__SSE2__)
    special:;
#endif
        unsigned char c = *p;
        if (c == '"') return p + 1;
        if (c == '\\') {
            *escaped = 1;
            if (end - p < 2) {
                fail(ps, BT_EPARSE, (size_t)(end - s), "unterminated string");
                return NULL;
            }
            switch (p[1]) {
            case '"': case '\\': case '/': case 'b': case 'f': case 'n': case 'r': case 't':
                p += 2;
                break;
            case 'u':
                if (end - p < 6 || hex4(p + 2) < 0) {
                    fail(ps, BT_EPARSE, (size_t)(p - s), "invalid \\u escape: expected four hex digits");
                    return NULL;
                }
                p += 6;
                break;
            default:
                fail(ps, BT_EPARSE, (size_t)(p - s), "invalid escape sequence in string");
                return NULL;
            }
        } else if (c < 0x20) {
            fail(ps, BT_EPARSE, (size_t)(p - s), "unescaped control character in string");
            return NULL;
        } else if (c >= 0x80) {
            size_t n = utf8_seq(p, end);
            if (!n) {
                fail(ps, BT_EPARSE, (size_t)(p - s), "invalid UTF-8 in string");
                return NULL;
            }
            p += n;
        } else {
            p++;
        }
    }
}

static const unsigned char *scan_number(struct parser *ps, const unsigned char *s,
                                        const unsigned char *p, const unsigned char *end)
{
    if (*p == '-') p++;
    if (p >= end || *p < '0' || *p > '9') {
        fail(ps, BT_EPARSE, (size_t)(p - s), "invalid number: expected a digit");
        return NULL;
    }
    if (*p == '0') {
        p++;
        if (p < end && *p >= '0' && *p <= '9') {
            fail(ps, BT_EPARSE, (size_t)(p - s), "invalid number: leading zeros are not allowed");
            return NULL;
        }
    } else {
        while (p < end && *p >= '0' && *p <= '9') p++;
    }
    if (p < end && *p == '.') {
        p++;
        if (p >= end || *p < '0' || *p > '9') {
            fail(ps, BT_EPARSE, (size_t)(p - s), "invalid number: expected a digit after '.'");
            return NULL;
        }
        while (p < end && *p >= '0' && *p <= '9') p++;
    }
    if (p < end && (*p == 'e' || *p == 'E')) {
        p++;
        if (p < end && (*p == '+' || *p == '-')) p++;
        if (p >= end || *p < '0' || *p > '9') {
            fail(ps, BT_EPARSE, (size_t)(p - s), "invalid number: expected a digit in the exponent");
            return NULL;
        }
        while (p < end && *p >= '0' && *p <= '9') p++;
    }
    return p;
}

/* true, false or null at p (which holds 't', 'f' or 'n'): the byte after it, or NULL. */
static const unsigned char *scan_literal(const unsigned char *p, const unsigned char *end)
{
    size_t avail = (size_t)(end - p);
    if (*p == 't') return avail >= 4 && !memcmp(p, "true", 4) ? p + 4 : NULL;
    if (*p == 'f') return avail >= 5 && !memcmp(p, "false", 5) ? p + 5 : NULL;
    return avail >= 4 && !memcmp(p, "null", 4) ? p + 4 : NULL;
}

static void set_error(struct bt_json_error *err, size_t off, const char *msg)
{
    if (!err) return;
    err->offset = off;
    size_t n = strlen(msg);
    if (n >= sizeof(err->msg)) n = sizeof(err->msg) - 1;
    memcpy(err->msg, msg, n);
    err->msg[n] = '\0';
}

/* The parse loop proper: states are labels, the container stack holds token
 * indices. Returns false with the error recorded in ps. */
static bool parse_all(struct parser *ps, const unsigned char *s, size_t len, uint32_t *stack,
                      uint32_t max_depth)
{
    const unsigned char *p = s, *end = s + len;
    uint32_t depth = 0;
    uint32_t cur = 0;    /* the innermost open container (valid when depth > 0) */
    bool in_obj = false; /* whether it is an object */
    long idx;

value:
    p = skip_ws(p, end);
    if (p >= end) return fail(ps, BT_EPARSE, len, "unexpected end of input: expected a value");
    switch (*p) {
    case '{':
    case '[':
        if (depth >= max_depth) return fail(ps, BT_ETOOBIG, (size_t)(p - s), "nesting too deep");
        idx = push(ps, *p == '{' ? BT_JSON_OBJECT : BT_JSON_ARRAY, (size_t)(p - s));
        if (idx < 0) return false;
        stack[depth++] = (uint32_t)idx;
        cur = (uint32_t)idx;
        in_obj = *p == '{';
        p = skip_ws(p + 1, end);
        if (p < end && *p == (in_obj ? '}' : ']')) {
            p++;
            goto close;
        }
        if (in_obj) goto key;
        ps->toks[idx].size = 1;
        goto value;
    case '"': {
        idx = push(ps, BT_JSON_STRING, (size_t)(p - s));
        if (idx < 0) return false;
        uint8_t esc = 0;
        p = scan_string(ps, s, p, end, &esc);
        if (!p) return false;
        ps->toks[idx].escaped = esc;
        ps->toks[idx].end = (uint32_t)(p - s);
        goto after;
    }
    case 't':
    case 'f':
    case 'n': {
        const unsigned char *q = scan_literal(p, end);
        if (!q) return fail(ps, BT_EPARSE, (size_t)(p - s), "invalid literal: expected true, false or null");
        idx = push(ps, *p == 't' ? BT_JSON_TRUE : *p == 'f' ? BT_JSON_FALSE : BT_JSON_NULL,
                   (size_t)(p - s));
        if (idx < 0) return false;
        p = q;
        ps->toks[idx].end = (uint32_t)(p - s);
        goto after;
    }
    default:
        if (*p == '-' || (*p >= '0' && *p <= '9')) {
            idx = push(ps, BT_JSON_NUMBER, (size_t)(p - s));
            if (idx < 0) return false;
            p = scan_number(ps, s, p, end);
            if (!p) return false;
            ps->toks[idx].end = (uint32_t)(p - s);
            goto after;
        }
        return fail(ps, BT_EPARSE, (size_t)(p - s), "expected a value");
    }

key:
    /* p is past whitespace, at what must be a member's key. */
    if (p >= end) return fail(ps, BT_EPARSE, len, "unexpected end of input: expected a string key");
    if (*p != '"') return fail(ps, BT_EPARSE, (size_t)(p - s), "expected a string key");
    ps->toks[cur].size++;
    {
        idx = push(ps, BT_JSON_STRING, (size_t)(p - s));
        if (idx < 0) return false;
        uint8_t esc = 0;
        p = scan_string(ps, s, p, end, &esc);
        if (!p) return false;
        ps->toks[idx].escaped = esc;
        ps->toks[idx].end = (uint32_t)(p - s);
    }
    p = skip_ws(p, end);
    if (p >= end) return fail(ps, BT_EPARSE, len, "unexpected end of input: expected ':'");
    if (*p != ':') return fail(ps, BT_EPARSE, (size_t)(p - s), "expected ':' after object key");
    p++;
    goto value;

after:
    if (depth == 0) goto done;
    p = skip_ws(p, end);
    if (p >= end) return fail(ps, BT_EPARSE, len, "unexpected end of input inside a container");
    if (in_obj) {
        if (*p == ',') {
            p = skip_ws(p + 1, end);
            goto key;
        }
        if (*p == '}') {
            p++;
            goto close;
        }
        return fail(ps, BT_EPARSE, (size_t)(p - s), "expected ',' or '}' after object member");
    }
    if (*p == ',') {
        ps->toks[cur].size++;
        p++;
        goto value;
    }
    if (*p == ']') {
        p++;
        goto close;
    }
    return fail(ps, BT_EPARSE, (size_t)(p - s), "expected ',' or ']' after array element");

close:
    ps->toks[cur].end = (uint32_t)(p - s);
    ps->toks[cur].next = ps->ntoks;
    if (--depth) {
        cur = stack[depth - 1];
        in_obj = ps->toks[cur].type == BT_JSON_OBJECT;
    }
    goto after;

done:
    p = skip_ws(p, end);
    if (p != end) return fail(ps, BT_EPARSE, (size_t)(p - s), "unexpected data after the JSON value");
    return true;
}

#define VALIDATE_MAX_DEPTH 4096u

enum bt_err bt_json_validate(const char *src, size_t len, uint32_t max_depth,
                             struct bt_json_watch *watch, size_t nwatch)
{
    if (!src) return BT_EINVAL;
    if (len > UINT32_MAX) return BT_ETOOBIG;
    if (!max_depth) max_depth = DEFAULT_MAX_DEPTH;
    if (max_depth > VALIDATE_MAX_DEPTH) max_depth = VALIDATE_MAX_DEPTH;
    struct parser ps = {.len = len}; /* for the scanners' error reports only */
    uint64_t objbits[VALIDATE_MAX_DEPTH / 64]; /* bit d: container at depth d+1 is an object */
    const unsigned char *s = (const unsigned char *)src, *p = s, *end = s + len;
    uint32_t depth = 0;
    bool in_obj = false;

value:
    p = skip_ws(p, end);
    if (p >= end) return BT_EPARSE;
    switch (*p) {
    case '{':
    case '[':
        if (depth >= max_depth) return BT_ETOOBIG;
        in_obj = *p == '{';
        if (in_obj) objbits[depth / 64] |= 1ull << (depth % 64);
        else objbits[depth / 64] &= ~(1ull << (depth % 64));
        depth++;
        p = skip_ws(p + 1, end);
        if (p < end && *p == (in_obj ? '}' : ']')) {
            p++;
            goto close;
        }
        if (in_obj) goto key;
        goto value;
    case '"': {
        uint8_t esc = 0;
        p = scan_string(&ps, s, p, end, &esc);
        if (!p) return BT_EPARSE;
        goto after;
    }
    case 't':
    case 'f':
    case 'n':
        p = scan_literal(p, end);
        if (!p) return BT_EPARSE;
        goto after;
    default:
        if (*p != '-' && (*p < '0' || *p > '9')) return BT_EPARSE;
        p = scan_number(&ps, s, p, end);
        if (!p) return BT_EPARSE;
        goto after;
    }

key:
    if (p >= end || *p != '"') return BT_EPARSE;
    {
        const unsigned char *k = p + 1;
        uint8_t esc = 0;
        p = scan_string(&ps, s, p, end, &esc);
        if (!p) return BT_EPARSE;
        size_t klen = (size_t)(p - 1 - k);
        p = skip_ws(p, end);
        if (p >= end || *p != ':') return BT_EPARSE;
        p = skip_ws(p + 1, end);
        if (p < end && *p != 'n')
            for (size_t i = 0; i < nwatch; i++)
                if (watch[i].depth == depth &&
                    (esc || (watch[i].len == klen && !memcmp(watch[i].key, k, klen))))
                    watch[i].hit = true;
    }
    goto value;

after:
    if (depth == 0) goto done;
    p = skip_ws(p, end);
    if (p >= end) return BT_EPARSE;
    if (*p == ',') {
        p = skip_ws(p + 1, end);
        if (in_obj) goto key;
        goto value;
    }
    if (*p != (in_obj ? '}' : ']')) return BT_EPARSE;
    p++;

close:
    if (--depth) in_obj = (objbits[(depth - 1) / 64] >> ((depth - 1) % 64)) & 1;
    goto after;

done:
    p = skip_ws(p, end);
    return p == end ? BT_OK : BT_EPARSE;
}

enum bt_err bt_json_parse(struct bt_json_doc *doc, const char *src, size_t len,
                          struct bt_arena *arena, const struct bt_json_limits *limits,
                          struct bt_json_error *err)
{
    doc->src = src;
    doc->len = len;
    doc->toks = NULL;
    doc->ntoks = 0;
    if (err) set_error(err, 0, "");
    if (len > UINT32_MAX) {
        set_error(err, 0, "input too large");
        return BT_ETOOBIG;
    }
    if (len == 0) {
        set_error(err, 0, "unexpected end of input: expected a value");
        return BT_EPARSE;
    }
    if (!src) return BT_EINVAL;
    uint32_t max_tokens = limits && limits->max_tokens ? limits->max_tokens : DEFAULT_MAX_TOKENS;
    uint32_t max_depth = limits && limits->max_depth ? limits->max_depth : DEFAULT_MAX_DEPTH;

    /* A value needs at least one byte, so len + 1 bounds the token count. The first
     * guess (one token per 16 bytes) fits chat requests, which are mostly long
     * strings; denser documents regrow once or twice (see grow()). */
    uint64_t bound = (uint64_t)len + 1;
    if (bound > max_tokens) bound = max_tokens;
    uint64_t guess = len / 16 + 16;
    if (guess > bound) guess = bound;

    uint32_t local_stack[LOCAL_STACK];
    uint32_t *stack = local_stack;
    uint64_t need_depth = max_depth < len ? max_depth : len;
    if (need_depth > LOCAL_STACK) {
        stack = bt_arena_alloc(arena, (size_t)need_depth * sizeof(*stack));
        if (!stack) return BT_ENOMEM;
    }
    struct parser ps = {.arena = arena, .max_tokens = max_tokens, .cap = (uint32_t)guess, .len = len};
    ps.toks = bt_arena_alloc(arena, (size_t)guess * sizeof(*ps.toks));
    if (!ps.toks) {
        set_error(err, 0, "out of memory");
        return BT_ENOMEM;
    }
    if (!parse_all(&ps, (const unsigned char *)src, len, stack, max_depth)) {
        set_error(err, ps.eoff, ps.emsg);
        return ps.ecode;
    }
    doc->toks = ps.toks;
    doc->ntoks = ps.ntoks;
    return BT_OK;
}

/* ---- navigation ---- */

static inline bool valid_tok(const struct bt_json_doc *doc, int tok)
{
    return tok >= 0 && (uint32_t)tok < doc->ntoks;
}

static bool key_eq(const struct bt_json_doc *doc, int tok, const char *key, size_t klen)
{
    const struct bt_json_tok *t = &doc->toks[tok];
    const unsigned char *body = (const unsigned char *)doc->src + t->start + 1;
    size_t blen = t->end - t->start - 2;
    if (!t->escaped) return blen == klen && memcmp(body, key, klen) == 0;
    return body_eq(body, blen, (const unsigned char *)key, klen);
}

int bt_json_get(const struct bt_json_doc *doc, int obj, const char *key)
{
    if (!valid_tok(doc, obj) || doc->toks[obj].type != BT_JSON_OBJECT || !key) return -1;
    size_t klen = strlen(key);
    int found = -1;
    uint32_t n = doc->toks[obj].size;
    int k = obj + 1;
    for (uint32_t i = 0; i < n; i++) {
        if (key_eq(doc, k, key, klen)) found = k + 1;
        k = (int)doc->toks[k + 1].next;
    }
    return found;
}

int bt_json_path(const struct bt_json_doc *doc, int obj, ...)
{
    va_list ap;
    va_start(ap, obj);
    const char *key;
    while (obj >= 0 && (key = va_arg(ap, const char *)) != NULL) obj = bt_json_get(doc, obj, key);
    va_end(ap);
    return obj;
}

int bt_json_at(const struct bt_json_doc *doc, int arr, uint32_t i)
{
    if (!valid_tok(doc, arr)) return -1;
    const struct bt_json_tok *t = &doc->toks[arr];
    if ((t->type != BT_JSON_ARRAY && t->type != BT_JSON_OBJECT) || i >= t->size) return -1;
    int c = arr + 1;
    if (t->type == BT_JSON_ARRAY) {
        while (i--) c = (int)doc->toks[c].next;
        return c;
    }
    while (i--) c = (int)doc->toks[c + 1].next;
    return c + 1;
}

const char *bt_json_type_name(int type)
{
    switch (type) {
    case BT_JSON_OBJECT: return "an object";
    case BT_JSON_ARRAY: return "an array";
    case BT_JSON_STRING: return "a string";
    case BT_JSON_NUMBER: return "a number";
    case BT_JSON_TRUE:
    case BT_JSON_FALSE: return "a boolean";
    case BT_JSON_NULL: return "null";
    }
    return "nothing";
}

int bt_json_first(const struct bt_json_doc *doc, int tok)
{
    if (!valid_tok(doc, tok)) return -1;
    const struct bt_json_tok *t = &doc->toks[tok];
    if ((t->type != BT_JSON_ARRAY && t->type != BT_JSON_OBJECT) || t->size == 0) return -1;
    return tok + 1;
}

struct bt_str bt_json_raw(const struct bt_json_doc *doc, int tok)
{
    if (!valid_tok(doc, tok)) return BT_STR_NULL;
    const struct bt_json_tok *t = &doc->toks[tok];
    return (struct bt_str){doc->src + t->start, t->end - t->start};
}

struct bt_str bt_json_str_raw(const struct bt_json_doc *doc, int tok)
{
    if (!valid_tok(doc, tok) || doc->toks[tok].type != BT_JSON_STRING) return BT_STR_NULL;
    const struct bt_json_tok *t = &doc->toks[tok];
    return (struct bt_str){doc->src + t->start + 1, t->end - t->start - 2};
}

bool bt_json_str_eq(const struct bt_json_doc *doc, int tok, const char *s)
{
    if (!valid_tok(doc, tok) || doc->toks[tok].type != BT_JSON_STRING || !s) return false;
    return key_eq(doc, tok, s, strlen(s));
}

enum bt_err bt_json_str(const struct bt_json_doc *doc, int tok, struct bt_arena *arena,
                        struct bt_str *out)
{
    if (!valid_tok(doc, tok) || doc->toks[tok].type != BT_JSON_STRING) return BT_EINVAL;
    struct bt_str raw = bt_json_str_raw(doc, tok);
    if (!doc->toks[tok].escaped) {
        *out = raw;
        return BT_OK;
    }
    unsigned char *o = bt_arena_alloc(arena, raw.len + 1);
    if (!o) return BT_ENOMEM;
    size_t n = decode_body((const unsigned char *)raw.p, raw.len, o);
    if (n == (size_t)-1) return BT_EPARSE; /* cannot happen for a parsed doc */
    o[n] = '\0';
    *out = (struct bt_str){(const char *)o, n};
    return BT_OK;
}

enum bt_err bt_json_int(const struct bt_json_doc *doc, int tok, int64_t *out)
{
    if (!valid_tok(doc, tok) || doc->toks[tok].type != BT_JSON_NUMBER) return BT_EINVAL;
    struct bt_str r = bt_json_raw(doc, tok);
    const char *p = r.p, *end = r.p + r.len;
    bool neg = *p == '-';
    if (neg) p++;
    uint64_t v = 0;
    const uint64_t lim = neg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX;
    while (p < end && *p >= '0' && *p <= '9') {
        unsigned d = (unsigned)(*p - '0');
        if (v > (lim - d) / 10) return BT_EINVAL;
        v = v * 10 + d;
        p++;
    }
    if (p == end) {
        *out = neg ? (v == (uint64_t)INT64_MAX + 1 ? INT64_MIN : -(int64_t)v) : (int64_t)v;
        return BT_OK;
    }
    /* 1.0 or 1e3: integral when the double is, and only where doubles are exact. */
    double d;
    if (bt_json_double(doc, tok, &d)) return BT_EINVAL;
    if (d != floor(d) || fabs(d) > 9007199254740992.0) return BT_EINVAL;
    *out = (int64_t)d;
    return BT_OK;
}

enum bt_err bt_json_double(const struct bt_json_doc *doc, int tok, double *out)
{
    if (!valid_tok(doc, tok) || doc->toks[tok].type != BT_JSON_NUMBER) return BT_EINVAL;
    struct bt_str r = bt_json_raw(doc, tok);
    /* strtod needs a terminator and the source may end right after the number. */
    char small[128];
    char *tmp = small;
    if (r.len >= sizeof(small)) {
        tmp = malloc(r.len + 1);
        if (!tmp) return BT_ENOMEM;
    }
    memcpy(tmp, r.p, r.len);
    tmp[r.len] = '\0';
    char *e = NULL;
    double d = strtod(tmp, &e);
    bool ok = e == tmp + r.len && !isinf(d);
    if (tmp != small) free(tmp);
    if (!ok) return BT_EINVAL;
    *out = d;
    return BT_OK;
}

enum bt_err bt_json_bool(const struct bt_json_doc *doc, int tok, bool *out)
{
    int t = bt_json_type(doc, tok);
    if (t != BT_JSON_TRUE && t != BT_JSON_FALSE) return BT_EINVAL;
    *out = t == BT_JSON_TRUE;
    return BT_OK;
}

/* ---- unescape / escape ---- */

enum bt_err bt_json_unescape(struct bt_str in, struct bt_buf *out)
{
    if (in.len == 0) return BT_OK;
    enum bt_err e = bt_buf_reserve(out, in.len);
    if (e) {
        /* The decoded text may still fit when escapes shrink it: decode to a
         * temporary and append only what it really is. */
        if (e != BT_ETOOBIG) return e;
        unsigned char *tmp = malloc(in.len);
        if (!tmp) return BT_ENOMEM;
        size_t n = decode_body((const unsigned char *)in.p, in.len, tmp);
        e = n == (size_t)-1 ? BT_EPARSE : bt_buf_append(out, tmp, n);
        free(tmp);
        return e;
    }
    size_t n = decode_body((const unsigned char *)in.p, in.len, (unsigned char *)out->p + out->len);
    if (n == (size_t)-1) return BT_EPARSE;
    out->len += n;
    return BT_OK;
}

/* Bytes copied as they are: printable ASCII other than the quote and backslash. */
static inline bool esc_plain(unsigned char c)
{
    return c >= 0x20 && c < 0x80 && c != '"' && c != '\\';
}

enum bt_err bt_json_escape(struct bt_buf *out, struct bt_str s)
{
    static const char hex[] = "0123456789abcdef";
    size_t saved = out->len;
    const unsigned char *p = (const unsigned char *)s.p, *end = s.len ? p + s.len : p;
    enum bt_err e = bt_buf_append(out, "\"", 1);
    while (!e && p < end) {
        const unsigned char *run = p;
        while (p < end && esc_plain(*p)) p++;
        if (p > run) e = bt_buf_append(out, run, (size_t)(p - run));
        if (e || p >= end) break;
        unsigned char c = *p;
        if (c >= 0x80) {
            size_t n = utf8_seq(p, end);
            if (n) {
                e = bt_buf_append(out, p, n);
                p += n;
            } else {
                e = bt_buf_append(out, "\xEF\xBF\xBD", 3);
                p++;
            }
            continue;
        }
        char esc[6] = {'\\', 0, 0, 0, 0, 0};
        size_t n = 2;
        switch (c) {
        case '"': esc[1] = '"'; break;
        case '\\': esc[1] = '\\'; break;
        case '\b': esc[1] = 'b'; break;
        case '\f': esc[1] = 'f'; break;
        case '\n': esc[1] = 'n'; break;
        case '\r': esc[1] = 'r'; break;
        case '\t': esc[1] = 't'; break;
        default:
            esc[1] = 'u';
            esc[2] = '0';
            esc[3] = '0';
            esc[4] = hex[c >> 4];
            esc[5] = hex[c & 15];
            n = 6;
        }
        e = bt_buf_append(out, esc, n);
        p++;
    }
    if (!e) e = bt_buf_append(out, "\"", 1);
    if (e) out->len = saved;
    return e;
}
