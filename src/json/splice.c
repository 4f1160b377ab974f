/* Span splicer: edits are byte ranges of the source with replacement bytes; the
 * output is the source with those ranges swapped, so every byte no edit touches is
 * copied exactly (`0.7` stays `0.7`, key order and whitespace survive).
 *
 * Member removal and insertion have to keep commas right across several edits of
 * the same object, so each is computed from the object's current state: a member
 * is "live" unless an edit covers its key, and new members are zero-length
 * insertions right after the last original member (or after the `{`). Removing a
 * member takes the comma before it when a live member precedes it, else the comma
 * after it; a deletion swallows the edits it contains. See docs/internals/json.md. */
#include "json/json.h"

#include <string.h>

void bt_json_splice_init(struct bt_json_splice *sp, const struct bt_json_doc *doc,
                         struct bt_arena *arena)
{
    sp->doc = doc;
    sp->arena = arena;
    sp->edits = NULL;
    sp->nedits = 0;
    sp->cap = 0;
}

static enum bt_err add_edit(struct bt_json_splice *sp, uint32_t start, uint32_t end,
                            struct bt_str with)
{
    /* Setting the same span twice keeps the last value. */
    if (start < end)
        for (uint32_t i = 0; i < sp->nedits; i++)
            if (sp->edits[i].start == start && sp->edits[i].end == end) {
                sp->edits[i].with = with;
                return BT_OK;
            }
    if (sp->nedits == sp->cap) {
        uint32_t ncap = sp->cap ? sp->cap * 2 : 8;
        struct bt_json_edit *e = bt_arena_alloc(sp->arena, ncap * sizeof(*e));
        if (!e) return BT_ENOMEM;
        if (sp->nedits) memcpy(e, sp->edits, sp->nedits * sizeof(*e));
        sp->edits = e;
        sp->cap = ncap;
    }
    sp->edits[sp->nedits++] = (struct bt_json_edit){start, end, with};
    return BT_OK;
}

/* Adds the deletion [start, end), dropping the edits it contains (zero-length
 * insertions exactly at its boundaries stay: they sit next to it, not in it). */
static enum bt_err add_delete(struct bt_json_splice *sp, uint32_t start, uint32_t end)
{
    uint32_t j = 0;
    for (uint32_t i = 0; i < sp->nedits; i++) {
        struct bt_json_edit *e = &sp->edits[i];
        bool inside = e->start >= start && e->end <= end &&
                      !(e->start == e->end && (e->start == start || e->start == end));
        if (!inside) sp->edits[j++] = *e;
    }
    sp->nedits = j;
    return add_edit(sp, start, end, (struct bt_str){"", 0});
}

static bool covered(const struct bt_json_splice *sp, uint32_t off)
{
    for (uint32_t i = 0; i < sp->nedits; i++)
        if (sp->edits[i].start <= off && off < sp->edits[i].end) return true;
    return false;
}

static bool is_object(const struct bt_json_doc *doc, int obj)
{
    return obj >= 0 && (uint32_t)obj < doc->ntoks && doc->toks[obj].type == BT_JSON_OBJECT;
}

/* Key token indices of obj's members, in order, written to keys[] (size members). */
static void member_keys(const struct bt_json_doc *doc, int obj, uint32_t *keys)
{
    uint32_t k = (uint32_t)obj + 1;
    for (uint32_t i = 0; i < doc->toks[obj].size; i++) {
        keys[i] = k;
        k = doc->toks[k + 1].next;
    }
}

/* Where new members of obj are inserted. */
static uint32_t insert_point(const struct bt_json_doc *doc, int obj)
{
    const struct bt_json_tok *t = &doc->toks[obj];
    if (t->size == 0) return t->start + 1;
    /* The last member's value ends where the object's subtree ends in tokens:
     * find it by walking, since only `next` links are stored. */
    uint32_t k = (uint32_t)obj + 1, last = k;
    for (uint32_t i = 0; i < t->size; i++) {
        last = k;
        k = doc->toks[k + 1].next;
    }
    return doc->toks[last + 1].end;
}

/* Builds `,"key":value` (comma optional) in the arena. */
static enum bt_err make_member(struct bt_json_splice *sp, bool comma, const char *key,
                               struct bt_str value, struct bt_str *out)
{
    struct bt_buf b;
    bt_buf_init(&b, (size_t)1 << 30);
    enum bt_err e = BT_OK;
    if (comma) e = bt_buf_append(&b, ",", 1);
    if (!e) e = bt_json_escape(&b, bt_str_c(key));
    if (!e) e = bt_buf_append(&b, ":", 1);
    if (!e) e = bt_buf_append(&b, value.p, value.len);
    if (!e) {
        *out = bt_arena_strdup(sp->arena, bt_buf_str(&b));
        if (!out->p) e = BT_ENOMEM;
    }
    bt_buf_free(&b);
    return e;
}

/* True when the appended member text `with` has key `key` (with from make_member). */
static bool appended_key_is(struct bt_json_splice *sp, struct bt_str with, const char *key)
{
    struct bt_str prefix;
    if (make_member(sp, false, key, BT_STR(""), &prefix)) return false;
    if (with.len && with.p[0] == ',') {
        with.p++;
        with.len--;
    }
    return with.len > prefix.len && memcmp(with.p, prefix.p, prefix.len) == 0;
}

enum bt_err bt_json_splice_set(struct bt_json_splice *sp, int obj, const char *key,
                               struct bt_str value)
{
    const struct bt_json_doc *doc = sp->doc;
    if (!is_object(doc, obj) || !key || value.len == 0) return BT_EINVAL;
    /* The last live member with this key gets the new value in place. */
    int found = -1;
    uint32_t k = (uint32_t)obj + 1, live = 0;
    for (uint32_t i = 0; i < doc->toks[obj].size; i++) {
        if (!covered(sp, doc->toks[k].start)) {
            live++;
            if (bt_json_str_eq(doc, (int)k, key)) found = (int)k + 1;
        }
        k = doc->toks[k + 1].next;
    }
    if (found >= 0)
        return add_edit(sp, doc->toks[found].start, doc->toks[found].end, value);

    uint32_t at = insert_point(doc, obj);
    for (uint32_t i = 0; i < sp->nedits; i++) {
        struct bt_json_edit *e = &sp->edits[i];
        if (e->start != at || e->end != at) continue;
        if (appended_key_is(sp, e->with, key)) {
            /* Set twice: rewrite the member we appended, keeping its comma. */
            return make_member(sp, e->with.len && e->with.p[0] == ',', key, value, &e->with);
        }
        live++;
    }
    struct bt_str with;
    enum bt_err err = make_member(sp, live > 0, key, value, &with);
    if (err) return err;
    return add_edit(sp, at, at, with);
}

static enum bt_err remove_member(struct bt_json_splice *sp, int obj, const uint32_t *keys,
                                 uint32_t n, uint32_t i)
{
    const struct bt_json_doc *doc = sp->doc;
    const struct bt_json_tok *t = doc->toks;
    int prev = -1, next = -1;
    for (uint32_t j = i; j-- > 0;)
        if (!covered(sp, t[keys[j]].start)) {
            prev = (int)j;
            break;
        }
    for (uint32_t j = i + 1; j < n; j++)
        if (!covered(sp, t[keys[j]].start)) {
            next = (int)j;
            break;
        }
    uint32_t vend = t[keys[i] + 1].end;
    if (prev >= 0) return add_delete(sp, t[keys[prev] + 1].end, vend);
    if (next >= 0) return add_delete(sp, t[keys[i]].start, t[keys[next]].start);
    /* The last live original member: members appended earlier carry a leading
     * comma that must go with it. */
    uint32_t at = insert_point(doc, obj);
    for (uint32_t j = 0; j < sp->nedits; j++) {
        struct bt_json_edit *e = &sp->edits[j];
        if (e->start == at && e->end == at && e->with.len && e->with.p[0] == ',') {
            e->with.p++;
            e->with.len--;
            break;
        }
    }
    return add_delete(sp, t[keys[0]].start, vend);
}

enum bt_err bt_json_splice_remove(struct bt_json_splice *sp, int obj, const char *key)
{
    const struct bt_json_doc *doc = sp->doc;
    if (!is_object(doc, obj) || !key) return BT_EINVAL;
    uint32_t n = doc->toks[obj].size;
    if (n == 0) return BT_OK;
    uint32_t *keys = bt_arena_alloc(sp->arena, n * sizeof(*keys));
    if (!keys) return BT_ENOMEM;
    member_keys(doc, obj, keys);
    /* Every live occurrence goes, so a duplicate key cannot survive a removal. */
    for (uint32_t i = 0; i < n; i++) {
        if (covered(sp, doc->toks[keys[i]].start) || !bt_json_str_eq(doc, (int)keys[i], key))
            continue;
        enum bt_err e = remove_member(sp, obj, keys, n, i);
        if (e) return e;
    }
    return BT_OK;
}

enum bt_err bt_json_splice_replace(struct bt_json_splice *sp, int tok, struct bt_str value)
{
    const struct bt_json_doc *doc = sp->doc;
    if (tok < 0 || (uint32_t)tok >= doc->ntoks || value.len == 0) return BT_EINVAL;
    return add_edit(sp, doc->toks[tok].start, doc->toks[tok].end, value);
}

/* Sorts the edits and checks they do not overlap; *total: the result's length. */
static enum bt_err splice_prepare(struct bt_json_splice *sp, size_t *total)
{
    const struct bt_json_doc *doc = sp->doc;
    struct bt_json_edit *e = sp->edits;
    uint32_t n = sp->nedits;
    /* Insertion sort: stable (appends at one point keep their order) and edits are few. */
    for (uint32_t i = 1; i < n; i++) {
        struct bt_json_edit x = e[i];
        uint32_t j = i;
        while (j > 0 && (e[j - 1].start > x.start ||
                         (e[j - 1].start == x.start && e[j - 1].end > x.end))) {
            e[j] = e[j - 1];
            j--;
        }
        e[j] = x;
    }
    *total = doc->len;
    for (uint32_t i = 0; i < n; i++) {
        if (e[i].start > e[i].end || e[i].end > doc->len) return BT_EINVAL;
        if (i > 0 && e[i].start < e[i - 1].end) return BT_EINVAL;
        *total = *total - (e[i].end - e[i].start) + e[i].with.len;
    }
    return BT_OK;
}

/* Step i of the edited document (edits sorted): for i < nedits the source from
 * *pos up to edit i and the edit's value, for i == nedits the rest of the source. */
static void edit_runs(const struct bt_json_splice *sp, uint32_t i, size_t *pos,
                      struct bt_str run[2])
{
    const struct bt_json_edit *e = i < sp->nedits ? &sp->edits[i] : NULL;
    run[0] = (struct bt_str){sp->doc->src + *pos, (e ? e->start : sp->doc->len) - *pos};
    run[1] = e ? e->with : BT_STR_NULL;
    if (e) *pos = e->end;
}

enum bt_err bt_json_splice_slices(struct bt_json_splice *sp, struct bt_str *out, size_t cap,
                                  size_t *n)
{
    size_t total;
    enum bt_err err = splice_prepare(sp, &total);
    if (err) return err;
    size_t k = 0, pos = 0;
    for (uint32_t i = 0; i <= sp->nedits; i++) {
        struct bt_str run[2];
        edit_runs(sp, i, &pos, run);
        for (int r = 0; r < 2; r++) {
            if (!run[r].len) continue;
            if (k == cap) return BT_ETOOBIG;
            out[k++] = run[r];
        }
    }
    *n = k;
    return BT_OK;
}

enum bt_err bt_json_splice_apply(struct bt_json_splice *sp, struct bt_buf *out)
{
    size_t total;
    enum bt_err err = splice_prepare(sp, &total);
    if (err) return err;
    size_t saved = out->len;
    err = bt_buf_reserve(out, total);
    size_t pos = 0;
    for (uint32_t i = 0; !err && i <= sp->nedits; i++) {
        struct bt_str run[2];
        edit_runs(sp, i, &pos, run);
        err = bt_buf_append_str(out, run[0]);
        if (!err) err = bt_buf_append_str(out, run[1]);
    }
    if (err) out->len = saved;
    return err;
}
