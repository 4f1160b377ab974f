/* JSON: a zero-copy tokenizer, navigation over its tokens, a span splicer that
 * edits a document while keeping every untouched byte exact, and a streaming
 * writer into a bounded buffer.
 *
 * The tokenizer validates the whole input (RFC 8259: UTF-8, escapes, numbers,
 * nesting) and produces a flat array of tokens in document order. Token 0 is the
 * root value. An object token is followed by its members as key, value, key,
 * value...; an array token by its elements. Every token records `next`, the index
 * of the first token after its whole subtree, so skipping a value is O(1). */
#ifndef BT_JSON_JSON_H
#define BT_JSON_JSON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/arena.h"
#include "core/buf.h"
#include "core/err.h"
#include "core/str.h"

enum bt_json_type {
    BT_JSON_OBJECT = 1,
    BT_JSON_ARRAY,
    BT_JSON_STRING,
    BT_JSON_NUMBER,
    BT_JSON_TRUE,
    BT_JSON_FALSE,
    BT_JSON_NULL,
};

struct bt_json_tok {
    uint8_t type;     /* enum bt_json_type */
    uint8_t escaped;  /* strings: 1 when the raw bytes contain a backslash escape */
    uint32_t start;   /* offset of the first byte (a string's opening quote) */
    uint32_t end;     /* offset one past the last byte (after a string's closing quote) */
    uint32_t size;    /* objects: number of members; arrays: number of elements */
    uint32_t next;    /* index of the first token after this token's subtree */
};

struct bt_json_doc {
    const char *src;          /* the input, borrowed: must outlive the doc */
    size_t len;               /* input length */
    struct bt_json_tok *toks; /* tokens, allocated from the arena given to parse */
    uint32_t ntoks;           /* number of tokens */
};

struct bt_json_limits {
    uint32_t max_tokens; /* 0 = 1<<24 */
    uint32_t max_depth;  /* 0 = 128 */
};

/* Where and why a parse failed. */
struct bt_json_error {
    size_t offset;   /* byte offset of the problem */
    char msg[96];    /* e.g. "expected ',' or '}' after object member" */
};

/* Tokenizes src[0..len). Tokens come from `arena` and live as long as it does;
 * `src` is borrowed and must outlive the doc. Returns BT_EPARSE (with `err`
 * filled when non-NULL) on invalid JSON, BT_ETOOBIG past a limit, BT_ENOMEM.
 * `limits` may be NULL for defaults. Input longer than 4 GiB is BT_ETOOBIG. */
enum bt_err bt_json_parse(struct bt_json_doc *doc, const char *src, size_t len,
                          struct bt_arena *arena, const struct bt_json_limits *limits,
                          struct bt_json_error *err);

/* A key to look for while validating: `hit` is set when an object member named
 * `key` (raw bytes, `len` long) sits at `depth` (1 = a member of the top-level
 * object, 3 = a member of an object inside an array inside it) with a value other
 * than null. A key written with escapes at that depth counts as a hit, so a
 * caller that then decodes the document in full never misses one. */
struct bt_json_watch {
    const char *key;
    uint8_t len;
    uint8_t depth;
    bool hit;
};

/* Checks that src[0..len) is one valid JSON value (the grammar, UTF-8 and depth
 * rules of bt_json_parse, max_depth 0 meaning its default; at most 4096) without
 * building tokens, setting the hits of `watch` on the way. BT_OK, BT_EPARSE, or
 * BT_ETOOBIG for nesting too deep or input over 4 GiB. Allocates nothing: it is
 * the stream relay's per-event check. */
enum bt_err bt_json_validate(const char *src, size_t len, uint32_t max_depth,
                             struct bt_json_watch *watch, size_t nwatch);

/* ---- navigation (all O(members) at most; -1 means "absent") ---- */

/* Value token of member `key` in object token `obj`, or -1 (also when obj is not
 * an object). Keys are compared after unescaping. With duplicate keys the last wins. */
int bt_json_get(const struct bt_json_doc *doc, int obj, const char *key);
/* Like bt_json_get, following a path of keys: bt_json_path(doc, 0, "a", "b", NULL). */
int bt_json_path(const struct bt_json_doc *doc, int obj, ...);
/* Index of the i-th element of array `arr` (or i-th member VALUE of an object), or -1. */
int bt_json_at(const struct bt_json_doc *doc, int arr, uint32_t i);
/* Iteration: first child (for objects: first KEY token), -1 when empty. The next
 * sibling of child c is doc->toks[c].next for arrays; for objects the next key is
 * doc->toks[c + 1].next (c is a key, c + 1 its value). */
int bt_json_first(const struct bt_json_doc *doc, int tok);
/* Walks an object's members: `k` the key token, `v` its value.
 *   struct bt_json_members m = bt_json_members_of(doc, obj);
 *   while (bt_json_members_next(&m, &k, &v)) ...
 * `obj` must be an object token. */
struct bt_json_members {
    const struct bt_json_doc *d;
    uint32_t left;
    int k;
};
static inline struct bt_json_members bt_json_members_of(const struct bt_json_doc *doc, int obj)
{
    return (struct bt_json_members){doc, doc->toks[obj].size, obj + 1};
}
static inline bool bt_json_members_next(struct bt_json_members *m, int *k, int *v)
{
    if (!m->left) return false;
    *k = m->k;
    *v = m->k + 1;
    m->left--;
    if (m->left) m->k = (int)m->d->toks[m->k + 1].next;
    return true;
}
/* "an object", "an array", "a string", "a number", "a boolean", "null", or
 * "nothing" (0: absent), for messages that say what a value was. Static. */
const char *bt_json_type_name(int type);
static inline int bt_json_type(const struct bt_json_doc *doc, int tok)
{
    return tok < 0 ? 0 : doc->toks[tok].type;
}
/* The token's raw bytes (strings include their quotes). */
struct bt_str bt_json_raw(const struct bt_json_doc *doc, int tok);
/* A string token's bytes between the quotes, still escaped. */
struct bt_str bt_json_str_raw(const struct bt_json_doc *doc, int tok);
/* True when tok is a string whose unescaped value equals `s`. */
bool bt_json_str_eq(const struct bt_json_doc *doc, int tok, const char *s);
/* Unescaped value of string token `tok`: a slice into src when it has no escapes,
 * otherwise a NUL-terminated copy in `arena`. BT_EINVAL when tok is not a string. */
enum bt_err bt_json_str(const struct bt_json_doc *doc, int tok, struct bt_arena *arena,
                        struct bt_str *out);
/* Number token as int64 (BT_EINVAL if not an integral number in range) / double. */
enum bt_err bt_json_int(const struct bt_json_doc *doc, int tok, int64_t *out);
enum bt_err bt_json_double(const struct bt_json_doc *doc, int tok, double *out);
/* true/false token -> bool; BT_EINVAL otherwise. */
enum bt_err bt_json_bool(const struct bt_json_doc *doc, int tok, bool *out);

/* ---- unescaping / escaping helpers ---- */

/* Decodes a JSON string body (without quotes) into `out`; BT_EPARSE on a bad
 * escape. Lone surrogates become U+FFFD. */
enum bt_err bt_json_unescape(struct bt_str in, struct bt_buf *out);
/* Appends s as a JSON string literal with quotes, escaping what RFC 8259 requires
 * (and control bytes as \u00XX). Invalid UTF-8 bytes become U+FFFD. */
enum bt_err bt_json_escape(struct bt_buf *out, struct bt_str s);

/* ---- span splicer: edit a document, keep every untouched byte ---- */

struct bt_json_edit {
    uint32_t start, end;  /* replaced range [start, end) of the source */
    struct bt_str with;   /* replacement bytes, borrowed until apply */
};

struct bt_json_splice {
    const struct bt_json_doc *doc;
    struct bt_arena *arena;       /* where edits and generated bytes live */
    struct bt_json_edit *edits;   /* arena-allocated, kept sorted at apply */
    uint32_t nedits, cap;
};

void bt_json_splice_init(struct bt_json_splice *sp, const struct bt_json_doc *doc,
                         struct bt_arena *arena);
/* Sets member `key` of object `obj` to the raw JSON `value` (borrowed until
 * apply): replaces the existing value in place, or appends a new member before
 * the closing brace (with a comma when needed). */
enum bt_err bt_json_splice_set(struct bt_json_splice *sp, int obj, const char *key,
                               struct bt_str value);
/* Removes member `key` of `obj` with its separating comma; BT_OK when absent. */
enum bt_err bt_json_splice_remove(struct bt_json_splice *sp, int obj, const char *key);
/* Replaces token `tok` (its whole subtree) by raw JSON `value`. */
enum bt_err bt_json_splice_replace(struct bt_json_splice *sp, int tok, struct bt_str value);
/* Writes the edited document into `out`. Edits must not overlap (BT_EINVAL). */
enum bt_err bt_json_splice_apply(struct bt_json_splice *sp, struct bt_buf *out);
/* The edited document as slices, in order, without a copy: runs of the source
 * and the edits' values (borrowed as they are). At most `cap` (BT_ETOOBIG when
 * more are needed); *n gets the count. Edits must not overlap (BT_EINVAL). */
enum bt_err bt_json_splice_slices(struct bt_json_splice *sp, struct bt_str *out, size_t cap,
                                  size_t *n);

/* ---- streaming writer ---- */

#define BT_JW_MAX_DEPTH 64

/* Writes JSON into a bounded buffer, inserting commas and colons itself. The
 * first error (BT_ETOOBIG, BT_ENOMEM, BT_EINVAL for misuse) sticks in `err` and
 * makes later calls no-ops, so callers check once at the end. */
struct bt_jw {
    struct bt_buf *out;                 /* borrowed */
    enum bt_err err;                    /* first error, sticky */
    uint32_t depth;                     /* current nesting */
    uint8_t count[BT_JW_MAX_DEPTH];     /* per level: 0 = nothing written yet, 1 = something */
    uint8_t after_key;                  /* 1 when the next value follows a key */
};

void bt_jw_init(struct bt_jw *w, struct bt_buf *out);
void bt_jw_obj_begin(struct bt_jw *w);
void bt_jw_obj_end(struct bt_jw *w);
void bt_jw_arr_begin(struct bt_jw *w);
void bt_jw_arr_end(struct bt_jw *w);
void bt_jw_key_str(struct bt_jw *w, struct bt_str key);
static inline void bt_jw_key(struct bt_jw *w, const char *key) /* inline: a literal's length folds */
{
    bt_jw_key_str(w, bt_str_c(key));
}
void bt_jw_str(struct bt_jw *w, struct bt_str s);
void bt_jw_cstr(struct bt_jw *w, const char *s);
void bt_jw_int(struct bt_jw *w, int64_t v);
/* Shortest representation that round-trips (%.17g then shortened); non-finite -> null. */
void bt_jw_double(struct bt_jw *w, double v);
/* v / 10^places, written exactly in decimal with no binary floating point:
 * (12345, 3) -> 12.345, (12300, 3) -> 12.3, (5, 3) -> 0.005, (12000, 3) -> 12.
 * places is at most 18 (more is BT_EINVAL). For timings kept in integer units. */
void bt_jw_decimal(struct bt_jw *w, int64_t v, unsigned places);
void bt_jw_bool(struct bt_jw *w, bool v);
void bt_jw_null(struct bt_jw *w);
/* Inserts already-valid JSON as a value (e.g. a span copied from a request). */
void bt_jw_raw(struct bt_jw *w, struct bt_str json);

#endif
