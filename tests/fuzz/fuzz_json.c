/* libFuzzer target for src/json: parse; when valid, check the token invariants,
 * that the splicer with no edits is the identity, that edits keep the document
 * valid, that writer output re-parses to the same values; and compare
 * accept/reject with cJSON on the inputs where cJSON is strict (see
 * docs/internals/json.md for where it is lenient and why those are skipped). */
#include <cjson/cJSON.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/arena.h"
#include "core/buf.h"
#include "json/json.h"
#include "provider/openai.h"

#define CHECK(c)                                                                                \
    do {                                                                                       \
        if (!(c)) {                                                                            \
            __builtin_trap();                                                                  \
        }                                                                                      \
    } while (0)

/* cJSON allows 1000 levels of nesting; use the same limit so depth agrees. */
static const struct bt_json_limits limits = {.max_depth = 1000};

/* Checks the token invariants; marks object keys in is_key[]. */
static void check_tree(const struct bt_json_doc *d, uint8_t *is_key)
{
    CHECK(d->ntoks > 0 && d->toks[0].next == d->ntoks);
    for (uint32_t i = 0; i < d->ntoks; i++) {
        const struct bt_json_tok *t = &d->toks[i];
        CHECK(t->type >= BT_JSON_OBJECT && t->type <= BT_JSON_NULL);
        CHECK(t->start < t->end && t->end <= d->len);
        CHECK(t->next > i && t->next <= d->ntoks);
        if (t->type != BT_JSON_OBJECT && t->type != BT_JSON_ARRAY) {
            CHECK(t->next == i + 1);
            continue;
        }
        uint32_t c = i + 1;
        for (uint32_t k = 0; k < t->size; k++) {
            CHECK(c < t->next);
            CHECK(d->toks[c].start > t->start && d->toks[c].end < t->end);
            if (t->type == BT_JSON_OBJECT) {
                CHECK(d->toks[c].type == BT_JSON_STRING);
                is_key[c] = 1;
                c = d->toks[c].next;
                CHECK(c < t->next);
            }
            c = d->toks[c].next;
        }
        CHECK(c == t->next);
    }
}

/* Writes token tok through the writer; returns the next token. */
static uint32_t rewrite(const struct bt_json_doc *d, uint32_t tok, struct bt_jw *w,
                        struct bt_arena *a)
{
    const struct bt_json_tok *t = &d->toks[tok];
    struct bt_str s = BT_STR_NULL;
    switch (t->type) {
    case BT_JSON_OBJECT:
    case BT_JSON_ARRAY: {
        if (t->type == BT_JSON_OBJECT) bt_jw_obj_begin(w);
        else bt_jw_arr_begin(w);
        uint32_t c = tok + 1;
        for (uint32_t i = 0; i < t->size; i++) {
            if (t->type == BT_JSON_OBJECT) {
                CHECK(bt_json_str(d, (int)c, a, &s) == BT_OK);
                bt_jw_key_str(w, s);
                c++;
            }
            c = rewrite(d, c, w, a);
        }
        if (t->type == BT_JSON_OBJECT) bt_jw_obj_end(w);
        else bt_jw_arr_end(w);
        return c;
    }
    case BT_JSON_STRING:
        CHECK(bt_json_str(d, (int)tok, a, &s) == BT_OK);
        bt_jw_str(w, s);
        break;
    case BT_JSON_NUMBER: {
        double v;
        if (bt_json_double(d, (int)tok, &v) == BT_OK) bt_jw_double(w, v);
        else bt_jw_raw(w, bt_json_raw(d, (int)tok));
        break;
    }
    case BT_JSON_TRUE: bt_jw_bool(w, true); break;
    case BT_JSON_FALSE: bt_jw_bool(w, false); break;
    default: bt_jw_null(w);
    }
    return tok + 1;
}

/* The writer's output must hold the same values: same shape, same unescaped
 * strings, numbers equal as doubles. */
static void same_values(const struct bt_json_doc *a, const struct bt_json_doc *b,
                        struct bt_arena *ar)
{
    CHECK(a->ntoks == b->ntoks);
    for (uint32_t i = 0; i < a->ntoks; i++) {
        const struct bt_json_tok *x = &a->toks[i], *y = &b->toks[i];
        CHECK(x->type == y->type && x->size == y->size && x->next == y->next);
        if (x->type == BT_JSON_STRING) {
            struct bt_str s1, s2;
            CHECK(bt_json_str(a, (int)i, ar, &s1) == BT_OK);
            CHECK(bt_json_str(b, (int)i, ar, &s2) == BT_OK);
            CHECK(s1.len == s2.len && (s1.len == 0 || memcmp(s1.p, s2.p, s1.len) == 0));
        } else if (x->type == BT_JSON_NUMBER) {
            double v1, v2;
            if (bt_json_double(a, (int)i, &v1) == BT_OK) {
                CHECK(bt_json_double(b, (int)i, &v2) == BT_OK);
                CHECK(v1 == v2 || (v1 != v1 && v2 != v2));
            }
        }
    }
}

static void check_splice(const struct bt_json_doc *d, const uint8_t *is_key,
                         const uint8_t *data, size_t size, struct bt_arena *a)
{
    struct bt_buf out;
    bt_buf_init(&out, size * 2 + 4096);
    struct bt_json_splice sp;
    /* No edits: the identity. */
    bt_json_splice_init(&sp, d, a);
    CHECK(bt_json_splice_apply(&sp, &out) == BT_OK);
    CHECK(out.len == size && memcmp(out.p, data, size) == 0);

    /* Replace one token picked from the input. */
    uint32_t pick = (uint32_t)((size * 2654435761u + data[size / 2]) % d->ntoks);
    if (is_key[pick]) pick++; /* a key cannot become null: take its value */
    struct bt_json_doc d2;
    bt_json_splice_init(&sp, d, a);
    CHECK(bt_json_splice_replace(&sp, (int)pick, BT_STR("null")) == BT_OK);
    bt_buf_reset(&out);
    CHECK(bt_json_splice_apply(&sp, &out) == BT_OK);
    struct bt_json_limits deeper = {.max_depth = 1001};
    CHECK(bt_json_parse(&d2, out.p, out.len, a, &deeper, NULL) == BT_OK);

    /* Objects: remove the first and last keys, set a new one and an existing one. */
    if (d->toks[0].type == BT_JSON_OBJECT && d->toks[0].size > 0) {
        struct bt_str k1;
        CHECK(bt_json_str(d, 1, a, &k1) == BT_OK);
        int last = bt_json_at(d, 0, d->toks[0].size - 1) - 1;
        struct bt_str kl;
        CHECK(bt_json_str(d, last, a, &kl) == BT_OK);
        /* Keys with a NUL cannot be named; keys starting with \x01 could collide
         * with the ones added below. */
        if (!memchr(k1.p, 0, k1.len) && !memchr(kl.p, 0, kl.len) &&
            !(k1.len && k1.p[0] == 1) && !(kl.len && kl.p[0] == 1)) {
            const char *c1 = bt_arena_strdup(a, k1).p, *cl = bt_arena_strdup(a, kl).p;
            CHECK(c1 && cl);
            bt_json_splice_init(&sp, d, a);
            CHECK(bt_json_splice_set(&sp, 0, "\x01new", BT_STR("[1]")) == BT_OK);
            CHECK(bt_json_splice_remove(&sp, 0, c1) == BT_OK);
            if (data[0] & 1) CHECK(bt_json_splice_remove(&sp, 0, cl) == BT_OK);
            else CHECK(bt_json_splice_set(&sp, 0, cl, BT_STR("true")) == BT_OK);
            CHECK(bt_json_splice_set(&sp, 0, "\x01new2", BT_STR("2")) == BT_OK);
            bt_buf_reset(&out);
            enum bt_err e = bt_json_splice_apply(&sp, &out);
            CHECK(e == BT_OK);
            CHECK(bt_json_parse(&d2, out.p, out.len, a, &deeper, NULL) == BT_OK);
            CHECK(bt_json_type(&d2, bt_json_get(&d2, 0, "\x01new")) == BT_JSON_ARRAY);
            CHECK(bt_json_type(&d2, bt_json_get(&d2, 0, "\x01new2")) == BT_JSON_NUMBER);
            if (strcmp(c1, cl) != 0) CHECK(bt_json_get(&d2, 0, c1) == -1);
            if (data[0] & 1) CHECK(bt_json_get(&d2, 0, cl) == -1);
            else CHECK(bt_json_type(&d2, bt_json_get(&d2, 0, cl)) == BT_JSON_TRUE);
        }
    }
    bt_buf_free(&out);
}

static void check_writer(const struct bt_json_doc *d, struct bt_arena *a)
{
    struct bt_buf out;
    bt_buf_init(&out, d->len * 8 + 4096);
    struct bt_jw w;
    bt_jw_init(&w, &out);
    CHECK(rewrite(d, 0, &w, a) == d->ntoks);
    if (w.err == BT_ETOOBIG && d->len > 0) {
        /* Deeper than the writer allows; nothing else to compare. */
        bt_buf_free(&out);
        return;
    }
    CHECK(w.err == BT_OK && w.depth == 0);
    struct bt_json_doc d2;
    struct bt_json_limits deeper = {.max_depth = 1001};
    CHECK(bt_json_parse(&d2, out.p, out.len, a, &deeper, NULL) == BT_OK);
    same_values(d, &d2, a);
    bt_buf_free(&out);
}

/* A separate, deliberately simple UTF-8 check (decode, then range-check). */
static bool utf8_ok(const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n;) {
        uint32_t c = p[i], cp, need;
        if (c < 0x80) {
            i++;
            continue;
        } else if ((c & 0xE0) == 0xC0) {
            cp = c & 0x1F;
            need = 1;
        } else if ((c & 0xF0) == 0xE0) {
            cp = c & 0x0F;
            need = 2;
        } else if ((c & 0xF8) == 0xF0) {
            cp = c & 0x07;
            need = 3;
        } else {
            return false;
        }
        for (uint32_t k = 1; k <= need; k++) {
            if (i + k >= n || (p[i + k] & 0xC0) != 0x80) return false;
            cp = (cp << 6) | (p[i + k] & 0x3F);
        }
        static const uint32_t min[4] = {0, 0x80, 0x800, 0x10000};
        if (cp < min[need] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return false;
        i += need + 1;
    }
    return true;
}

static bool is_digit(uint8_t c) { return c >= '0' && c <= '9'; }

/* True when cJSON's answer is expected to match ours: it accepts leading zeros,
 * "1." and "-.5" (strtod), non-hex digits in \uXXXX, raw control bytes in strings and as whitespace, any
 * bytes >= 0x80, a BOM, and stops at a NUL; it refuses lone surrogate escapes
 * and numbers longer than 63 bytes. Inputs that contain any of that are skipped. */
static bool cjson_strict(const uint8_t *p, size_t n)
{
    if (!utf8_ok(p, n)) return false;
    if (n >= 3 && p[0] == 0xEF && p[1] == 0xBB && p[2] == 0xBF) return false;
    size_t run = 0;
    for (size_t i = 0; i < n; i++) {
        uint8_t c = p[i];
        if (c < 0x20 && c != '\t' && c != '\n' && c != '\r') return false;
        if (c == 0x7f) return false;
        if (c == '0' && i + 1 < n && is_digit(p[i + 1]) && (i == 0 || (!is_digit(p[i - 1]) && p[i - 1] != '.')))
            return false;
        if (c == '.' && (i == 0 || !is_digit(p[i - 1]) || i + 1 >= n || !is_digit(p[i + 1])))
            return false;
        if (c == '\\' && i + 3 < n && p[i + 1] == 'u' && (p[i + 2] | 0x20) == 'd' &&
            (is_digit(p[i + 3]) ? p[i + 3] >= '8' : ((p[i + 3] | 0x20) >= 'a' && (p[i + 3] | 0x20) <= 'f')))
            return false;
        if (c == '\\' && i + 1 < n && p[i + 1] == 'u') {
            /* cJSON reads a non-hex digit in \uXXXX as "no code point" and goes on. */
            for (size_t k = i + 2; k < i + 6; k++)
                if (k >= n || !(is_digit(p[k]) || ((p[k] | 0x20) >= 'a' && (p[k] | 0x20) <= 'f')))
                    return false;
        }
        bool numch = is_digit(c) || c == '+' || c == '-' || c == 'e' || c == 'E' || c == '.';
        run = numch ? run + 1 : 0;
        if (run >= 60) return false;
    }
    /* Raw tab/newline inside a string: cJSON takes it, JSON does not. */
    bool in = false;
    for (size_t i = 0; i < n; i++) {
        if (in && p[i] == '\\') {
            i++;
            continue;
        }
        if (p[i] == '"') in = !in;
        else if (in && (p[i] == '\t' || p[i] == '\n' || p[i] == '\r')) return false;
    }
    return true;
}

/* A top-level usage/error object member or a finish_reason string in any choice,
 * written without escapes, must make bt_openai_chunk_is_plain say "not plain". */
static void check_plain(const struct bt_json_doc *d, const uint8_t *data, size_t size)
{
    bool matters = false;
    for (int k = bt_json_first(d, 0); k >= 0; k = (int)d->toks[k + 1].next) {
        if ((uint32_t)k >= d->toks[0].next) break;
        struct bt_str raw = bt_json_raw(d, k);
        int v = k + 1;
        if ((bt_str_eq_c(raw, "\"usage\"") || bt_str_eq_c(raw, "\"error\"")) && bt_json_type(d, v) == BT_JSON_OBJECT)
            matters = true;
        if (bt_str_eq_c(raw, "\"choices\"") && bt_json_type(d, v) == BT_JSON_ARRAY) {
            for (int c = bt_json_first(d, v); c >= 0 && (uint32_t)c < d->toks[v].next; c = (int)d->toks[c].next) {
                if (bt_json_type(d, c) != BT_JSON_OBJECT) continue;
                for (int f = bt_json_first(d, c); f >= 0 && (uint32_t)f < d->toks[c].next; f = (int)d->toks[f + 1].next)
                    if (bt_str_eq_c(bt_json_raw(d, f), "\"finish_reason\"") && bt_json_type(d, f + 1) == BT_JSON_STRING)
                        matters = true;
            }
        }
    }
    if (matters) CHECK(!bt_openai_chunk_is_plain((struct bt_str){(const char *)data, size}));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* the vector pre-check decides exactly as the byte-by-byte one, on any bytes */
    struct bt_str whole = {(const char *)data, size};
    CHECK(bt_openai_chunk_is_plain(whole) == bt_openai_chunk_is_plain_bytes(whole));
    struct bt_arena a;
    bt_arena_init(&a, 4096, 0);
    struct bt_json_doc d;
    struct bt_json_error err;
    enum bt_err e = bt_json_parse(&d, (const char *)data, size, &a, &limits, &err);
    CHECK(e == BT_OK || e == BT_EPARSE || e == BT_ETOOBIG);
    if (e) {
        CHECK(err.offset <= size && err.msg[0] != '\0');
    } else {
        uint8_t *is_key = bt_arena_calloc(&a, d.ntoks, 1);
        CHECK(is_key);
        check_tree(&d, is_key);
        check_splice(&d, is_key, data, size, &a);
        check_writer(&d, &a);
    }

    /* The validator (the stream relay's `full` check) agrees with the tokenizer,
     * and the OpenAI chunk pre-check never calls a chunk with a plain-written
     * usage/error object or a finish_reason string "plain". */
    enum bt_err v = bt_json_validate((const char *)data, size, limits.max_depth, NULL, 0);
    if (e != BT_ETOOBIG || v != BT_OK) CHECK((v == BT_OK) == (e == BT_OK));
    if (e == BT_OK && bt_json_type(&d, 0) == BT_JSON_OBJECT) check_plain(&d, data, size);

    if (e != BT_ETOOBIG && cjson_strict(data, size)) {
        char *z = malloc(size + 1);
        CHECK(z);
        memcpy(z, data, size);
        z[size] = '\0';
        cJSON *c = cJSON_ParseWithLengthOpts(z, size + 1, NULL, 1);
        CHECK((c != NULL) == (e == BT_OK));
        cJSON_Delete(c);
        free(z);
    }
    bt_arena_free(&a);
    return 0;
}
