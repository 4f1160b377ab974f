/* Values that fit a JSON Schema (schema.h). */
#include "sim/schema.h"

#include <math.h>

#define SIM_SCHEMA_DEPTH 24 /* recursion cap */

/* ---- UTF-8 helpers (strings are valid UTF-8: they come from our word list or
 * from a validated JSON document) ---- */

static size_t utf8_count(const char *p, size_t n)
{
    size_t c = 0;
    for (size_t i = 0; i < n; i++)
        if (((unsigned char)p[i] & 0xC0) != 0x80) c++;
    return c;
}

/* Byte length of the first `cps` code points of p[0..n). */
static size_t utf8_prefix(const char *p, size_t n, size_t cps)
{
    size_t i = 0, c = 0;
    while (i < n) {
        if (((unsigned char)p[i] & 0xC0) != 0x80) {
            if (c == cps) break;
            c++;
        }
        i++;
    }
    return i;
}

/* ---- generation ---- */

/* One generation: the schema document, where "#" points, the randomness and the
 * writer the value goes to. */
struct gen {
    const struct bt_json_doc *doc;
    struct bt_arena *arena;
    int root;            /* schema root, for "#/..." references */
    struct bt_sim_rng *rng;
    struct bt_jw *w;
    struct bt_buf tmp;   /* scratch for strings */
};

static void gen_value(struct gen *g, int s, int depth);

/* Resolves a local JSON pointer reference ("#/$defs/Item"); -1 when it does not
 * resolve (remote references are not fetched). */
static int gen_resolve(struct gen *g, int ref)
{
    const struct bt_json_doc *d = g->doc;
    if (bt_json_type(d, ref) != BT_JSON_STRING) return -1;
    struct bt_str r;
    if (bt_json_str(d, ref, g->arena, &r) || r.len == 0 || r.p[0] != '#') return -1;
    int cur = g->root;
    size_t i = 1;
    char key[256];
    while (i < r.len) {
        if (r.p[i] != '/') return -1;
        i++;
        size_t k = 0;
        while (i < r.len && r.p[i] != '/') {
            char ch = r.p[i++];
            if (ch == '~' && i < r.len) ch = r.p[i++] == '1' ? '/' : '~';
            if (k + 1 >= sizeof key) return -1;
            key[k++] = ch;
        }
        key[k] = 0;
        if (bt_json_type(d, cur) == BT_JSON_OBJECT) {
            cur = bt_json_get(d, cur, key);
        } else if (bt_json_type(d, cur) == BT_JSON_ARRAY) {
            uint64_t idx;
            if (!bt_str_to_u64((struct bt_str){key, k}, &idx) || idx > UINT32_MAX) return -1;
            cur = bt_json_at(d, cur, (uint32_t)idx);
        } else {
            return -1;
        }
        if (cur < 0) return -1;
    }
    return cur;
}

/* Reads a numeric keyword; false when absent or not a number. */
static bool gen_num(struct gen *g, int s, const char *key, double *out)
{
    int t = bt_json_get(g->doc, s, key);
    return bt_json_type(g->doc, t) == BT_JSON_NUMBER && bt_json_double(g->doc, t, out) == BT_OK;
}

static bool gen_flag(struct gen *g, int s, const char *key)
{
    return bt_json_type(g->doc, bt_json_get(g->doc, s, key)) == BT_JSON_TRUE;
}

/* A string of a few words, honouring minLength/maxLength (in code points) and
 * the common formats. */
static void gen_string(struct gen *g, int s)
{
    struct bt_buf *b = &g->tmp;
    bt_buf_reset(b);
    int fmt = bt_json_get(g->doc, s, "format");
    if (bt_json_str_eq(g->doc, fmt, "date-time")) {
        bt_buf_printf(b, "2025-01-%02uT%02u:00:00Z", (unsigned)(1 + bt_sim_rng_below(g->rng, 28)),
                      (unsigned)bt_sim_rng_below(g->rng, 24));
    } else if (bt_json_str_eq(g->doc, fmt, "date")) {
        bt_buf_printf(b, "2025-01-%02u", (unsigned)(1 + bt_sim_rng_below(g->rng, 28)));
    } else if (bt_json_str_eq(g->doc, fmt, "time")) {
        bt_buf_printf(b, "%02u:30:00Z", (unsigned)bt_sim_rng_below(g->rng, 24));
    } else if (bt_json_str_eq(g->doc, fmt, "email")) {
        bt_buf_printf(b, "sim%u@example.com", (unsigned)bt_sim_rng_below(g->rng, 1000));
    } else if (bt_json_str_eq(g->doc, fmt, "uri") || bt_json_str_eq(g->doc, fmt, "url")) {
        bt_buf_printf(b, "https://example.com/sim/%u", (unsigned)bt_sim_rng_below(g->rng, 1000));
    } else if (bt_json_str_eq(g->doc, fmt, "uuid")) {
        uint64_t a = bt_sim_rng_next(g->rng), c = bt_sim_rng_next(g->rng);
        bt_buf_printf(b, "%08x-%04x-4%03x-a%03x-%012llx", (unsigned)(a >> 32),
                      (unsigned)(a >> 16) & 0xffff, (unsigned)a & 0xfff,
                      (unsigned)(c >> 52) & 0xfff, (unsigned long long)(c & 0xffffffffffffULL));
    } else {
        uint64_t nw = 1 + bt_sim_rng_below(g->rng, 3);
        for (uint64_t i = 0; i < nw; i++) {
            if (i) bt_buf_append_c(b, " ");
            bt_buf_append_c(b, bt_sim_rng_word(g->rng));
        }
    }
    double mn = 0, mx = 0;
    if (gen_num(g, s, "minLength", &mn) && mn > 0) {
        if (mn > 65536) mn = 65536;
        size_t have = utf8_count(b->p, b->len);
        while (have < (size_t)mn && bt_buf_append_c(b, "x") == BT_OK) have++;
    }
    if (gen_num(g, s, "maxLength", &mx) && mx >= 0) b->len = utf8_prefix(b->p, b->len, (size_t)mx);
    bt_jw_str(g->w, bt_buf_str(b));
}

/* Lower/upper bounds of a numeric schema, with their exclusivity (draft 4 uses
 * boolean exclusive* flags, later drafts numeric ones). */
static void gen_bounds(struct gen *g, int s, double *lo, bool *has_lo, bool *ex_lo, double *hi,
                       bool *has_hi, bool *ex_hi)
{
    double v;
    *has_lo = *has_hi = *ex_lo = *ex_hi = false;
    if (gen_num(g, s, "minimum", &v)) {
        *lo = v;
        *has_lo = true;
        *ex_lo = gen_flag(g, s, "exclusiveMinimum");
    }
    if (gen_num(g, s, "exclusiveMinimum", &v) && (!*has_lo || v >= *lo)) {
        *lo = v;
        *has_lo = *ex_lo = true;
    }
    if (gen_num(g, s, "maximum", &v)) {
        *hi = v;
        *has_hi = true;
        *ex_hi = gen_flag(g, s, "exclusiveMaximum");
    }
    if (gen_num(g, s, "exclusiveMaximum", &v) && (!*has_hi || v <= *hi)) {
        *hi = v;
        *has_hi = *ex_hi = true;
    }
    if (!*has_lo && !*has_hi) {
        *lo = 0;
        *hi = 100;
    } else if (!*has_lo) {
        *lo = *hi - 100;
    } else if (!*has_hi) {
        *hi = *lo + 100;
    }
}

static void gen_integer(struct gen *g, int s)
{
    double lo, hi;
    bool has_lo, has_hi, ex_lo, ex_hi;
    gen_bounds(g, s, &lo, &has_lo, &ex_lo, &hi, &has_hi, &ex_hi);
    double a = ex_lo ? floor(lo) + 1 : ceil(lo);
    double b = ex_hi ? ceil(hi) - 1 : floor(hi);
    if (a < -9e15) a = -9e15;
    if (b > 9e15) b = 9e15;
    if (b < a) b = a;
    int64_t ia = (int64_t)a, ib = (int64_t)b;
    int64_t v = ia + (int64_t)bt_sim_rng_below(g->rng, (uint64_t)(ib - ia) + 1);
    double m;
    if (gen_num(g, s, "multipleOf", &m) && m >= 1 && m == floor(m) && m < 9e15) {
        int64_t im = (int64_t)m;
        int64_t up = v % im == 0 ? v : v + (im - ((v % im) + im) % im);
        int64_t down = up - im;
        if (up <= ib) v = up;
        else if (down >= ia) v = down;
    }
    bt_jw_int(g->w, v);
}

static void gen_number(struct gen *g, int s)
{
    double lo, hi;
    bool has_lo, has_hi, ex_lo, ex_hi;
    gen_bounds(g, s, &lo, &has_lo, &ex_lo, &hi, &has_hi, &ex_hi);
    if (hi < lo) hi = lo;
    double v = round((lo + (hi - lo) * bt_sim_rng_unit(g->rng)) * 100) / 100;
    if (v < lo || (ex_lo && v <= lo) || v > hi || (ex_hi && v >= hi)) v = lo + (hi - lo) / 2;
    bt_jw_double(g->w, v);
}

/* True when `key` (a NUL-terminated name) is listed in the `required` array. */
static bool gen_required(struct gen *g, int req, const char *key)
{
    if (bt_json_type(g->doc, req) != BT_JSON_ARRAY) return false;
    for (int e = bt_json_first(g->doc, req); e >= 0 && e < (int)g->doc->toks[req].next;
         e = (int)g->doc->toks[e].next)
        if (bt_json_str_eq(g->doc, e, key)) return true;
    return false;
}

static void gen_object(struct gen *g, int s, int depth)
{
    const struct bt_json_doc *d = g->doc;
    int props = bt_json_get(d, s, "properties");
    int req = bt_json_get(d, s, "required");
    bt_jw_obj_begin(g->w);
    if (bt_json_type(d, props) == BT_JSON_OBJECT) {
        for (int k = bt_json_first(d, props); k >= 0 && k < (int)d->toks[props].next;
             k = (int)d->toks[k + 1].next) {
            struct bt_str name;
            if (bt_json_str(d, k, g->arena, &name)) continue;
            struct bt_str cname = bt_arena_strdup(g->arena, name);
            if (!cname.p) {
                g->w->err = BT_ENOMEM;
                return;
            }
            /* Optional properties appear about half of the time, so consumers
             * see both shapes; deep down they are left out, so a recursive
             * schema ends before the depth cap. */
            if (!gen_required(g, req, cname.p) &&
                (depth > SIM_SCHEMA_DEPTH / 2 || (bt_sim_rng_next(g->rng) & 1)))
                continue;
            bt_jw_key_str(g->w, name);
            gen_value(g, k + 1, depth + 1);
        }
    }
    /* Required names without a property schema still have to be present. */
    if (bt_json_type(d, req) == BT_JSON_ARRAY) {
        for (int e = bt_json_first(d, req); e >= 0 && e < (int)d->toks[req].next;
             e = (int)d->toks[e].next) {
            struct bt_str name;
            if (bt_json_str(d, e, g->arena, &name)) continue;
            struct bt_str cname = bt_arena_strdup(g->arena, name);
            if (!cname.p) {
                g->w->err = BT_ENOMEM;
                return;
            }
            if (bt_json_type(d, props) == BT_JSON_OBJECT && bt_json_get(d, props, cname.p) >= 0)
                continue;
            bt_jw_key_str(g->w, name);
            bt_jw_cstr(g->w, bt_sim_rng_word(g->rng));
        }
    }
    bt_jw_obj_end(g->w);
}

static void gen_array(struct gen *g, int s, int depth)
{
    const struct bt_json_doc *d = g->doc;
    int prefix = bt_json_get(d, s, "prefixItems");
    int items = bt_json_get(d, s, "items");
    bt_jw_arr_begin(g->w);
    if (bt_json_type(d, prefix) != BT_JSON_ARRAY && bt_json_type(d, items) == BT_JSON_ARRAY)
        prefix = items; /* draft 4 tuple form */
    if (bt_json_type(d, prefix) == BT_JSON_ARRAY) {
        for (int e = bt_json_first(d, prefix); e >= 0 && e < (int)d->toks[prefix].next;
             e = (int)d->toks[e].next)
            gen_value(g, e, depth + 1);
        bt_jw_arr_end(g->w);
        return;
    }
    double mn = 0, mx = -1;
    gen_num(g, s, "minItems", &mn);
    gen_num(g, s, "maxItems", &mx);
    bool deep = depth > SIM_SCHEMA_DEPTH / 2; /* as few items as allowed, to end recursion */
    uint64_t lo = mn > 0 ? (mn > 64 ? 64 : (uint64_t)mn) : (deep ? 0 : 1);
    uint64_t hi = deep ? lo : lo + 2;
    if (mx >= 0 && (uint64_t)mx < hi) hi = (uint64_t)mx;
    if (hi < lo) lo = hi;
    uint64_t n = lo + bt_sim_rng_below(g->rng, hi - lo + 1);
    for (uint64_t i = 0; i < n; i++) gen_value(g, items, depth + 1);
    bt_jw_arr_end(g->w);
}

/* Picks among anyOf/oneOf alternatives, preferring ones that are not just null. */
static int gen_pick_alt(struct gen *g, int arr)
{
    const struct bt_json_doc *d = g->doc;
    uint32_t n = d->toks[arr].size, nonnull = 0;
    for (uint32_t i = 0; i < n; i++) {
        int a = bt_json_at(d, arr, i);
        if (!bt_json_str_eq(d, bt_json_get(d, a, "type"), "null")) nonnull++;
    }
    if (nonnull == 0) return bt_json_at(d, arr, 0);
    uint64_t want = bt_sim_rng_below(g->rng, nonnull);
    for (uint32_t i = 0; i < n; i++) {
        int a = bt_json_at(d, arr, i);
        if (bt_json_str_eq(d, bt_json_get(d, a, "type"), "null")) continue;
        if (want-- == 0) return a;
    }
    return bt_json_at(d, arr, 0);
}

/* Writes a value that validates against schema token `s` (-1: any value). */
static void gen_value(struct gen *g, int s, int depth)
{
    const struct bt_json_doc *d = g->doc;
    if (g->w->err) return;
    if (depth > SIM_SCHEMA_DEPTH) {
        bt_jw_null(g->w);
        return;
    }
    if (s < 0 || bt_json_type(d, s) == BT_JSON_TRUE) {
        bt_jw_cstr(g->w, bt_sim_rng_word(g->rng));
        return;
    }
    if (bt_json_type(d, s) != BT_JSON_OBJECT) {
        bt_jw_null(g->w);
        return;
    }
    int t;
    if ((t = bt_json_get(d, s, "$ref")) >= 0) {
        int target = gen_resolve(g, t);
        if (target < 0) bt_jw_cstr(g->w, bt_sim_rng_word(g->rng));
        else gen_value(g, target, depth + 1);
        return;
    }
    if ((t = bt_json_get(d, s, "const")) >= 0) {
        bt_jw_raw(g->w, bt_json_raw(d, t));
        return;
    }
    if ((t = bt_json_get(d, s, "enum")) >= 0 && bt_json_type(d, t) == BT_JSON_ARRAY &&
        d->toks[t].size > 0) {
        int e = bt_json_at(d, t, (uint32_t)bt_sim_rng_below(g->rng, d->toks[t].size));
        bt_jw_raw(g->w, bt_json_raw(d, e));
        return;
    }
    if ((((t = bt_json_get(d, s, "anyOf")) >= 0) || ((t = bt_json_get(d, s, "oneOf")) >= 0)) &&
        bt_json_type(d, t) == BT_JSON_ARRAY && d->toks[t].size > 0) {
        gen_value(g, gen_pick_alt(g, t), depth + 1);
        return;
    }
    if ((t = bt_json_get(d, s, "allOf")) >= 0 && bt_json_type(d, t) == BT_JSON_ARRAY &&
        d->toks[t].size > 0 && bt_json_get(d, s, "type") < 0 &&
        bt_json_get(d, s, "properties") < 0) {
        gen_value(g, bt_json_at(d, t, 0), depth + 1);
        return;
    }
    /* The type: a name, or a list of names (the first one that is not null). */
    int ty = bt_json_get(d, s, "type");
    if (bt_json_type(d, ty) == BT_JSON_ARRAY) {
        int pick = -1;
        for (int e = bt_json_first(d, ty); e >= 0 && e < (int)d->toks[ty].next;
             e = (int)d->toks[e].next) {
            if (pick < 0) pick = e;
            if (!bt_json_str_eq(d, e, "null")) {
                pick = e;
                break;
            }
        }
        ty = pick;
    }
    if (bt_json_str_eq(d, ty, "object") ||
        (ty < 0 && (bt_json_get(d, s, "properties") >= 0 || bt_json_get(d, s, "required") >= 0)))
        gen_object(g, s, depth);
    else if (bt_json_str_eq(d, ty, "array") ||
             (ty < 0 && (bt_json_get(d, s, "items") >= 0 || bt_json_get(d, s, "prefixItems") >= 0)))
        gen_array(g, s, depth);
    else if (bt_json_str_eq(d, ty, "integer"))
        gen_integer(g, s);
    else if (bt_json_str_eq(d, ty, "number"))
        gen_number(g, s);
    else if (bt_json_str_eq(d, ty, "boolean"))
        bt_jw_bool(g->w, bt_sim_rng_next(g->rng) & 1);
    else if (bt_json_str_eq(d, ty, "null"))
        bt_jw_null(g->w);
    else
        gen_string(g, s);
}

enum bt_err bt_sim_schema_value(const struct bt_json_doc *doc, int schema, struct bt_arena *arena,
                                struct bt_sim_rng *r, struct bt_buf *out)
{
    struct bt_jw w;
    bt_jw_init(&w, out);
    struct gen g = {.doc = doc, .arena = arena, .root = schema, .rng = r, .w = &w};
    bt_buf_init(&g.tmp, 1 << 20);
    if (schema < 0) {
        bt_jw_obj_begin(&w);
        bt_jw_key(&w, "answer");
        bt_jw_cstr(&w, bt_sim_rng_word(r));
        bt_jw_key(&w, "confidence");
        bt_jw_double(&w, (double)bt_sim_rng_below(r, 100) / 100);
        bt_jw_obj_end(&w);
    } else {
        gen_value(&g, schema, 0);
    }
    bt_buf_free(&g.tmp);
    return w.err;
}
