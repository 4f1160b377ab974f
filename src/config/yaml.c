/* YAML text -> struct bt_ynode tree (see yaml.h), and ${VAR} expansion.
 *
 * libfyaml parses; its diagnostics are collected on a struct fy_diag instead of
 * being printed, then re-emitted as `file:line:column: error: ...`. We use the
 * event API because events carry start marks for mappings and sequences too. */
#include "config/yaml.h"

#include <libfyaml.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/buf.h"

#define ARENA_BLOCK 8192
#define ARENA_MAX (64u << 20) /* a 16 MiB file cannot need more than this */

enum bt_err bt_config_diag_addv(struct bt_config_diags *d, bool is_error, int line, int col,
                                const char *fmt, va_list ap)
{
    if (!d) return BT_OK;
    if (d->n >= BT_CONFIG_MAX_DIAGS) return BT_OK;
    if (d->n == d->cap) {
        size_t ncap = d->cap ? d->cap * 2 : 8;
        struct bt_config_diag *ni = realloc(d->items, ncap * sizeof(*ni));
        if (!ni) return BT_ENOMEM;
        d->items = ni;
        d->cap = ncap;
    }
    /* Sized to the message: a list of expected keys or defined names is never
     * cut mid-word. Every part of a message is bounded where it is written
     * (quoted values at BT_CFG_SHOW_MAX, names at 128, lists at whole names), so the
     * cap is a backstop, not a limit a real message meets. */
    struct bt_buf b;
    bt_buf_init(&b, BT_CONFIG_MAX_MSG);
    enum bt_err err = bt_buf_vprintf(&b, fmt, ap);
    if (err && err != BT_ENOMEM) {
        bt_buf_reset(&b);
        err = bt_buf_append_c(&b, err == BT_ETOOBIG ? "(message too long)" : "(bad message)");
    }
    if (!err) err = bt_buf_cstr(&b);
    if (err) {
        bt_buf_free(&b);
        return BT_ENOMEM;
    }
    struct bt_config_diag *g = &d->items[d->n++];
    g->is_error = is_error;
    g->line = line > 0 ? line : 0;
    g->col = col > 0 ? col : 0;
    g->msg = bt_buf_steal(&b, NULL);
    return BT_OK;
}

enum bt_err bt_config_diag_add(struct bt_config_diags *d, bool is_error, int line, int col,
                               const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    enum bt_err err = bt_config_diag_addv(d, is_error, line, col, fmt, ap);
    va_end(ap);
    return err;
}

/* ---- tree building ---- */

struct anchor {
    const char *name; /* in the arena */
    size_t len;
    struct bt_ynode *node;
    struct anchor *next;
};

struct builder {
    struct bt_ydoc *doc;
    struct bt_config_diags *diags;
    struct bt_ynode *stack[BT_CONFIG_MAX_DEPTH]; /* open mappings and sequences */
    int depth;
    struct anchor *anchors;
    size_t nanchors;
    int ndocs;
    int nerrors;
    const char *src; /* the input, for looking at a token's raw bytes */
    size_t srclen;
};

#define MAX_ANCHORS 1024 /* anchors are looked up linearly */

static void mark_pos(const struct fy_mark *m, int *line, int *col)
{
    *line = m && m->line >= 0 ? m->line + 1 : 0;
    *col = m && m->column >= 0 ? m->column + 1 : 0;
}

static enum bt_err berr(struct builder *b, int line, int col, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static enum bt_err berr(struct builder *b, int line, int col, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    enum bt_err err = bt_config_diag_addv(b->diags, true, line, col, fmt, ap);
    va_end(ap);
    b->nerrors++;
    return err ? BT_ENOMEM : BT_EPARSE;
}

static enum bt_err push_child(struct builder *b, struct bt_ynode *parent, struct bt_ynode *child)
{
    if (parent->n == parent->cap) {
        /* Arena memory cannot be resized: copy into a twice larger array. The
         * waste is bounded by the final size. */
        size_t ncap = parent->cap ? parent->cap * 2 : 4;
        struct bt_ynode **ni = bt_arena_calloc(&b->doc->arena, ncap, sizeof(*ni));
        if (!ni) return BT_ENOMEM;
        if (parent->n) memcpy(ni, parent->items, parent->n * sizeof(*ni));
        parent->items = ni;
        parent->cap = ncap;
    }
    parent->items[parent->n++] = child;
    return BT_OK;
}

/* Hangs a finished or newly opened node under the innermost open container,
 * or makes it the root. */
static enum bt_err attach(struct builder *b, struct bt_ynode *node)
{
    if (b->depth > 0) return push_child(b, b->stack[b->depth - 1], node);
    if (!b->doc->root) b->doc->root = node;
    return BT_OK;
}

static enum bt_err add_anchor(struct builder *b, struct fy_token *tok, struct bt_ynode *node)
{
    if (!tok) return BT_OK;
    size_t len = 0;
    const char *name = fy_token_get_text(tok, &len);
    if (!name) return BT_ENOMEM;
    if (b->nanchors >= MAX_ANCHORS)
        return berr(b, node->line, node->col, "too many anchors (at most %d)", MAX_ANCHORS);
    struct anchor *a = bt_arena_alloc(&b->doc->arena, sizeof(*a));
    struct bt_str copy = bt_arena_strdup(&b->doc->arena, (struct bt_str){name, len});
    if (!a || !copy.p) return BT_ENOMEM;
    /* Newest first, so a redefined anchor shadows the older one as YAML says. */
    *a = (struct anchor){copy.p, len, node, b->anchors};
    b->anchors = a;
    b->nanchors++;
    return BT_OK;
}

/* Tags are refused: every value's meaning comes from its key, so a tag could
 * only be ignored (surprising) or contradict the key (an error anyway). */
static enum bt_err check_tag(struct builder *b, struct fy_token *tag)
{
    if (!tag) return BT_OK;
    int line, col;
    mark_pos(fy_token_start_mark(tag), &line, &col);
    return berr(b, line, col, "YAML tags (!...) are not supported; write the plain value");
}

static struct bt_ynode *new_node(struct builder *b, enum bt_ynode_kind kind, int line, int col)
{
    struct bt_ynode *n = bt_arena_calloc(&b->doc->arena, 1, sizeof(*n));
    if (!n) return NULL;
    n->kind = kind;
    n->line = line;
    n->col = col;
    return n;
}

static bool key_eq(const struct bt_ynode *a, const struct bt_ynode *b)
{
    return a->kind == BT_Y_SCALAR && b->kind == BT_Y_SCALAR && a->len == b->len &&
           memcmp(a->text, b->text, a->len) == 0;
}

/* Duplicate keys are refused: with the last one silently winning, a typo'd
 * copy-paste would change behaviour without a word. */
static enum bt_err check_dup_keys(struct builder *b, const struct bt_ynode *map)
{
    enum bt_err ret = BT_OK;
    for (size_t i = 2; i < map->n; i += 2) {
        const struct bt_ynode *k = map->items[i];
        for (size_t j = 0; j < i; j += 2) {
            const struct bt_ynode *p = map->items[j];
            if (k == p || key_eq(k, p)) {
                enum bt_err e =
                    berr(b, k->line, k->col, "duplicate key \"%.*s\" (first at %d:%d)",
                         (int)(k->len > 80 ? 80 : k->len), k->text ? k->text : "", p->line, p->col);
                if (e == BT_ENOMEM) return e;
                ret = e;
                break;
            }
        }
    }
    return ret;
}

/* libfyaml 0.7.12 leaks the text buffer of some single-quoted scalars with
 * '' escapes (found by fuzzing; the pattern is not simple). So a
 * single-quoted scalar that has any '' is unescaped here from its raw bytes
 * instead: on one line that is just '' -> ', which is exact. Across lines YAML
 * folds line breaks too, and rather than reimplement folding such values are
 * refused. Returns 1 when handled (*out set, in the arena), 0 when libfyaml
 * may do it, -1 for refused, -2 out of memory. */
static int sq_unescape(struct builder *b, struct fy_token *tok, struct bt_str *out)
{
    const struct fy_mark *sm = fy_token_start_mark(tok), *em = fy_token_end_mark(tok);
    if (!sm || !em || sm->input_pos > em->input_pos || em->input_pos > b->srclen) return 0;
    const char *raw = b->src + sm->input_pos;
    size_t n = em->input_pos - sm->input_pos;
    bool esc = false, multiline = false;
    for (size_t i = 0; i < n; i++) {
        if (raw[i] == '\n' || raw[i] == '\r') multiline = true;
        if (raw[i] == '\'' && i + 1 < n && raw[i + 1] == '\'') esc = true;
    }
    if (!esc) return 0;
    if (multiline) return -1;
    char *d = bt_arena_alloc(&b->doc->arena, n + 1);
    if (!d) return -2;
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        d[k++] = raw[i];
        if (raw[i] == '\'' && i + 1 < n && raw[i + 1] == '\'') i++;
    }
    d[k] = 0;
    *out = (struct bt_str){d, k};
    return 1;
}

static enum bt_err on_event(struct builder *b, struct fy_event *ev)
{
    int line, col;
    mark_pos(fy_event_start_mark(ev), &line, &col);
    enum bt_err e;
    switch (ev->type) {
    case FYET_DOCUMENT_START:
        if (++b->ndocs > 1)
            return berr(b, line, col, "only one YAML document is allowed in a config file");
        return BT_OK;
    case FYET_SCALAR: {
        if ((e = check_tag(b, ev->scalar.tag))) return e;
        /* The scalar token's own mark is where its text starts (after any
         * anchor), which is what a user wants pointed at. */
        const struct fy_mark *vm = fy_token_start_mark(ev->scalar.value);
        if (vm) mark_pos(vm, &line, &col);
        struct bt_ynode *n = new_node(b, BT_Y_SCALAR, line, col);
        if (!n) return BT_ENOMEM;
        enum fy_scalar_style st =
            ev->scalar.value ? fy_token_scalar_style(ev->scalar.value) : FYSS_PLAIN;
        struct bt_str copy = BT_STR_NULL;
        int sq = st == FYSS_SINGLE_QUOTED ? sq_unescape(b, ev->scalar.value, &copy) : 0;
        if (sq == -2) return BT_ENOMEM;
        if (sq == -1)
            return berr(b, line, col > 1 ? col - 1 : col,
                        "a single-quoted value with '' may not span lines; use double quotes");
        if (sq == 0) {
            size_t len = 0;
            const char *t = ev->scalar.value ? fy_token_get_text(ev->scalar.value, &len) : "";
            if (!t) return BT_ENOMEM;
            copy = bt_arena_strdup(&b->doc->arena, (struct bt_str){t, len});
            if (!copy.p) return BT_ENOMEM;
        }
        n->text = (char *)copy.p;
        n->len = copy.len;
        n->plain = st == FYSS_PLAIN;
        /* libfyaml marks a quoted scalar at its first character inside the
         * quotes; point at the opening quote, which is where the value starts
         * on screen. */
        if ((st == FYSS_SINGLE_QUOTED || st == FYSS_DOUBLE_QUOTED) && n->col > 1) n->col--;
        if ((e = add_anchor(b, ev->scalar.anchor, n))) return e;
        return attach(b, n);
    }
    case FYET_ALIAS: {
        size_t len = 0;
        const char *name = fy_token_get_text(ev->alias.anchor, &len);
        if (!name) return BT_ENOMEM;
        for (struct anchor *a = b->anchors; a; a = a->next)
            if (a->len == len && memcmp(a->name, name, len) == 0) return attach(b, a->node);
        /* The mark is at the name; the '*' right before it is what a user sees. */
        return berr(b, line, col > 1 ? col - 1 : col, "unknown alias *%.*s",
                    (int)(len > 60 ? 60 : len), name);
    }
    case FYET_MAPPING_START:
    case FYET_SEQUENCE_START: {
        bool map = ev->type == FYET_MAPPING_START;
        if ((e = check_tag(b, map ? ev->mapping_start.tag : ev->sequence_start.tag))) return e;
        if (b->depth >= BT_CONFIG_MAX_DEPTH)
            return berr(b, line, col, "nesting is too deep (at most %d levels)",
                        BT_CONFIG_MAX_DEPTH);
        struct bt_ynode *n = new_node(b, map ? BT_Y_MAP : BT_Y_SEQ, line, col);
        if (!n) return BT_ENOMEM;
        if ((e = add_anchor(b, map ? ev->mapping_start.anchor : ev->sequence_start.anchor, n)))
            return e;
        if ((e = attach(b, n))) return e;
        b->stack[b->depth++] = n;
        return BT_OK;
    }
    case FYET_MAPPING_END:
    case FYET_SEQUENCE_END: {
        if (b->depth == 0) return berr(b, line, col, "unbalanced YAML structure");
        struct bt_ynode *n = b->stack[--b->depth];
        if (n->kind == BT_Y_MAP) return check_dup_keys(b, n);
        return BT_OK;
    }
    default:
        return BT_OK;
    }
}

/* libfyaml's output callback. Errors are collected (fy_diag_set_collect_errors),
 * so this only ever sees non-error chatter; swallowing it keeps stderr clean. */
static void fy_output_quiet(struct fy_diag *diag, void *user, const char *buf, size_t len)
{
    (void)diag;
    (void)user;
    (void)buf;
    (void)len;
}

static void copy_fy_errors(struct builder *b, struct fy_diag *diag)
{
    void *it = NULL;
    struct fy_diag_error *de;
    int found = 0;
    while ((de = fy_diag_errors_iterate(diag, &it))) {
        if (de->type < FYET_ERROR) continue;
        const char *msg = de->msg ? de->msg : "invalid YAML";
        size_t ml = strlen(msg);
        while (ml && (msg[ml - 1] == '\n' || msg[ml - 1] == ' '))
            ml--;
        /* fy_diag_error positions are already 1-based. */
        berr(b, de->line, de->column, "YAML syntax: %.*s", (int)(ml > 200 ? 200 : ml), msg);
        found++;
    }
    if (!found) berr(b, 0, 0, "YAML syntax error");
}

/* Length of the valid UTF-8 sequence at s[0..n), or 0. Overlong forms,
 * surrogates and code points past U+10FFFF are invalid. */
static size_t utf8_len(const unsigned char *s, size_t n)
{
    unsigned char c = s[0];
    if (c < 0x80) return 1;
    size_t len;
    unsigned cp;
    if (c >= 0xc2 && c <= 0xdf)
        len = 2, cp = c & 0x1f;
    else if (c >= 0xe0 && c <= 0xef)
        len = 3, cp = c & 0x0f;
    else if (c >= 0xf0 && c <= 0xf4)
        len = 4, cp = c & 0x07;
    else
        return 0;
    if (n < len) return 0;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xc0) != 0x80) return 0;
        cp = (cp << 6) | (s[i] & 0x3f);
    }
    if ((len == 3 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff))) ||
        (len == 4 && (cp < 0x10000 || cp > 0x10ffff)))
        return 0;
    return len;
}

/* YAML streams are Unicode text without C0 control characters other than tab
 * and line breaks (and baton refuses tabs too, see below). Checking that up
 * front gives a clear message, and keeps
 * broken bytes away from libfyaml (0.7.12 loops forever on "%\xcf"). */
static bool check_text(struct builder *b, const char *yaml, size_t len)
{
    const unsigned char *s = (const unsigned char *)yaml;
    int line = 1, col = 1;
    for (size_t i = 0; i < len;) {
        unsigned char c = s[i];
        size_t n = utf8_len(s + i, len - i);
        if (n == 0) {
            berr(b, line, col, "the file is not valid UTF-8 (byte 0x%02x)", c);
            return false;
        }
        if (c == '\t') {
            /* YAML forbids tabs for indentation, no config value may hold one,
             * and libfyaml 0.7.12 crashes in cleanup on some misplaced tabs
             * (e.g. "? ::\t?", libfyaml issue #57): refusing them outright is
             * the one rule that is simple to state and to follow. */
            berr(b, line, col, "tab characters are not allowed; use spaces");
            return false;
        }
        if (n == 1 && ((c < 0x20 && c != '\n' && c != '\r') || c == 0x7f)) {
            berr(b, line, col, "control character 0x%02x is not allowed in YAML", c);
            return false;
        }
        if (c == '\n')
            line++, col = 1;
        else
            col++;
        i += n;
    }
    return true;
}

void bt_ydoc_free(struct bt_ydoc *doc)
{
    if (!doc) return;
    bt_arena_free(&doc->arena);
    doc->root = NULL;
}

enum bt_err bt_ydoc_parse(const char *yaml, size_t len, struct bt_ydoc *doc,
                          struct bt_config_diags *diags)
{
    memset(doc, 0, sizeof(*doc));
    bt_arena_init(&doc->arena, ARENA_BLOCK, ARENA_MAX);
    struct builder b = {.doc = doc, .diags = diags, .src = yaml, .srclen = len};
    struct fy_diag *diag = NULL;
    struct fy_parser *fyp = NULL;
    enum bt_err ret = BT_OK;

    if (!check_text(&b, yaml, len)) {
        ret = BT_EPARSE;
        goto done;
    }
    struct fy_diag_cfg dc;
    fy_diag_cfg_default(&dc);
    dc.fp = NULL;
    dc.output_fn = fy_output_quiet;
    dc.user = NULL;
    dc.colorize = false;
    diag = fy_diag_create(&dc);
    if (!diag) {
        ret = BT_ENOMEM;
        goto done;
    }
    fy_diag_set_collect_errors(diag, true);
    struct fy_parse_cfg pc = {
        .flags = FYPCF_QUIET | FYPCF_DEFAULT_VERSION_1_2 | FYPCF_JSON_NONE,
        .diag = diag,
    };
    fyp = fy_parser_create(&pc);
    if (!fyp) {
        ret = BT_ENOMEM;
        goto done;
    }
    /* An empty string is a valid (empty) document; libfyaml wants a non-NULL
     * pointer regardless. */
    if (fy_parser_set_string(fyp, len ? yaml : "", len) != 0) {
        ret = BT_ENOMEM;
        goto done;
    }
    struct fy_event *ev;
    while ((ev = fy_parser_parse(fyp))) {
        enum bt_err e = on_event(&b, ev);
        fy_parser_event_free(fyp, ev);
        if (e == BT_ENOMEM) {
            ret = BT_ENOMEM;
            goto done;
        }
        /* Structural problems (tags, extra documents, depth) stop the build:
         * the tree would be incomplete anyway. Duplicate keys too: simplest. */
        if (e) break;
    }
    if (fy_parser_get_stream_error(fyp)) copy_fy_errors(&b, diag);
    if (b.nerrors) ret = BT_EPARSE;

done:
    if (fyp) fy_parser_destroy(fyp);
    if (diag) fy_diag_destroy(diag);
    if (ret == BT_ENOMEM) bt_config_diag_add(diags, true, 0, 0, "out of memory");
    return ret;
}

bool bt_ynode_is_null(const struct bt_ynode *n)
{
    if (!n || n->kind != BT_Y_SCALAR || !n->plain) return false;
    struct bt_str s = {n->text, n->len};
    return s.len == 0 || bt_str_eq_c(s, "~") || bt_str_eq_c(s, "null") || bt_str_eq_c(s, "Null") ||
           bt_str_eq_c(s, "NULL");
}

/* ---- ${VAR} expansion ---- */

static bool name_start(char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || c == '_';
}

static bool name_char(char c)
{
    return name_start(c) || (c >= '0' && c <= '9');
}

enum bt_err bt_config_expand(const char *s, size_t len, char **out, size_t *outlen, char *var,
                             size_t varcap, char *why, size_t whycap)
{
    struct bt_buf b;
    bt_buf_init(&b, BT_CONFIG_MAX_VALUE);
    enum bt_err err = BT_OK;
    char name[BT_CONFIG_MAX_VARNAME + 1];
    bool have_var = false;
    *out = NULL;
    *outlen = 0;
    if (var && varcap) var[0] = 0;
    if (why && whycap) why[0] = 0;

    size_t i = 0;
    while (i < len) {
        const char *dollar = memchr(s + i, '$', len - i);
        size_t lit = dollar ? (size_t)(dollar - (s + i)) : len - i;
        if (lit && (err = bt_buf_append(&b, s + i, lit))) goto fail;
        i += lit;
        if (i >= len) break;
        /* s[i] == '$' */
        if (i + 1 < len && s[i + 1] == '$') { /* $$ -> $ */
            if ((err = bt_buf_append(&b, "$", 1))) goto fail;
            i += 2;
            continue;
        }
        if (i + 1 >= len || s[i + 1] != '{') { /* a lone $ is just a dollar sign */
            if ((err = bt_buf_append(&b, "$", 1))) goto fail;
            i += 1;
            continue;
        }
        size_t start = i;
        size_t j = i + 2;
        size_t nstart = j;
        while (j < len && name_char(s[j]))
            j++;
        size_t nlen = j - nstart;
        const char *close = memchr(s + start, '}', len - start);
        if (!close) {
            if (why)
                snprintf(why, whycap,
                         "unterminated \"${\" (missing \"}\"); write \"$${\" for a literal \"${\"");
            err = BT_EPARSE;
            goto fail;
        }
        if (nlen == 0 || !name_start(s[nstart])) {
            if (why)
                snprintf(
                    why, whycap,
                    "invalid variable reference \"%.*s\": a name is letters, digits and _, "
                    "not starting with a digit",
                    (int)((size_t)(close - (s + start)) + 1 > 60 ? 60 : (close - (s + start)) + 1),
                    s + start);
            err = BT_EPARSE;
            goto fail;
        }
        if (nlen > BT_CONFIG_MAX_VARNAME) {
            if (why)
                snprintf(why, whycap, "variable name longer than %d characters",
                         BT_CONFIG_MAX_VARNAME);
            err = BT_EPARSE;
            goto fail;
        }
        memcpy(name, s + nstart, nlen);
        name[nlen] = 0;
        const char *def = NULL;
        size_t deflen = 0;
        if (s[j] == '}') {
            i = j + 1;
        } else if (j + 1 < len && s[j] == ':' && s[j + 1] == '-') {
            def = s + j + 2;
            deflen = (size_t)(close - def);
            /* A default is literal text; nesting would need a real grammar. */
            for (size_t k = 0; k + 1 < deflen; k++)
                if (def[k] == '$' && def[k + 1] == '{') {
                    if (why)
                        snprintf(why, whycap,
                                 "nested \"${\" inside the default of ${%s:-...} is not supported",
                                 name);
                    err = BT_EPARSE;
                    goto fail;
                }
            i = (size_t)(close - s) + 1;
        } else {
            if (why)
                snprintf(
                    why, whycap,
                    "unsupported form \"%.*s\": only ${NAME} and ${NAME:-default} are "
                    "understood",
                    (int)((size_t)(close - (s + start)) + 1 > 60 ? 60 : (close - (s + start)) + 1),
                    s + start);
            err = BT_EPARSE;
            goto fail;
        }
        if (!have_var && var && varcap) {
            snprintf(var, varcap, "%s", name);
            have_var = true;
        }
        const char *val = getenv(name);
        if ((!val || !*val) && def) {
            if (deflen && (err = bt_buf_append(&b, def, deflen))) goto fail;
        } else if (val && *val) {
            if ((err = bt_buf_append_c(&b, val))) goto fail;
        }
    }
    /* bt_buf_steal terminates, allocating even for an empty result. */
    *out = bt_buf_steal(&b, outlen);
    if (!*out) {
        err = BT_ENOMEM;
        goto fail;
    }
    return BT_OK;

fail:
    if (err == BT_ETOOBIG && why)
        snprintf(why, whycap, "value longer than %u bytes after expansion", BT_CONFIG_MAX_VALUE);
    bt_buf_free(&b);
    return err;
}
