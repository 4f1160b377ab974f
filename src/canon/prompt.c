#include "canon/prompt.h"

#include <string.h>

#include "core/buf.h"
#include "json/json.h"

#define MAX_TEXT (64u << 20) /* a request body is smaller than this */

/* Appends the decoded text parts of parts[0..n) to b, "\n" between parts;
 * notes images. */
static enum bt_err add_parts(struct bt_buf *b, const struct bt_chat_part *parts, uint32_t n,
                             bool *images)
{
    enum bt_err e = BT_OK;
    for (uint32_t i = 0; i < n && !e; i++) {
        const struct bt_chat_part *pt = &parts[i];
        if (pt->type == BT_PART_IMAGE) *images = true;
        if (pt->type == BT_PART_TOOL_RESULT) {
            e = add_parts(b, pt->tool_result.parts, pt->tool_result.nparts, images);
            continue;
        }
        if (pt->type != BT_PART_TEXT || !pt->text.len) continue;
        if (b->len) e = bt_buf_append(b, "\n", 1);
        if (!e) e = bt_json_unescape(pt->text, b);
    }
    return e;
}

/* The text of one message: a slice of the body when it is a single text part
 * without escapes, else a copy in the arena. */
static enum bt_err msg_text(const struct bt_chat_part *parts, uint32_t n, struct bt_arena *arena,
                            struct bt_buf *b, bool *images, struct bt_str *out)
{
    *out = BT_STR_NULL;
    if (n == 1 && parts[0].type == BT_PART_TEXT && !memchr(parts[0].text.p, '\\', parts[0].text.len)) {
        *out = parts[0].text;
        return BT_OK;
    }
    b->len = 0;
    enum bt_err e = add_parts(b, parts, n, images);
    if (e || !b->len) return e;
    *out = bt_arena_strdup(arena, (struct bt_str){b->p, b->len});
    return out->p ? BT_OK : BT_ENOMEM;
}

static enum bt_err decode_meta(struct bt_str raw, struct bt_arena *arena, struct bt_prompt *out)
{
    struct bt_json_doc doc;
    if (bt_json_parse(&doc, raw.p, raw.len, arena, NULL, NULL)) return BT_EPARSE;
    if (bt_json_type(&doc, 0) != BT_JSON_OBJECT) return BT_EPARSE;
    uint32_t n = doc.toks[0].size;
    if (!n) return BT_OK;
    out->meta = bt_arena_calloc(arena, n, sizeof(*out->meta));
    if (!out->meta) return BT_ENOMEM;
    for (int k = bt_json_first(&doc, 0); k >= 0; k = (int)doc.toks[k + 1].next) {
        struct bt_prompt_kv *kv = &out->meta[out->nmeta++];
        if (bt_json_str(&doc, k, arena, &kv->key)) return BT_ENOMEM;
        if (bt_json_type(&doc, k + 1) == BT_JSON_STRING) {
            if (bt_json_str(&doc, k + 1, arena, &kv->value)) return BT_ENOMEM;
        } else {
            kv->value = bt_json_raw(&doc, k + 1);
        }
        if (out->nmeta == n) break;
    }
    return BT_OK;
}

enum bt_err bt_prompt_from_chat(const struct bt_chat *c, struct bt_arena *arena,
                                struct bt_prompt *out)
{
    memset(out, 0, sizeof(*out));
    out->last_user = -1;
    out->budget_left = -1;
    out->tools = c->ntools > 0;
    out->json_schema = (c->given & BT_GIVEN_RESPONSE_FORMAT) && c->format == BT_FORMAT_JSON_SCHEMA;
    uint32_t n = c->nmsgs + (c->nsystem ? 1 : 0);
    out->msgs = n ? bt_arena_calloc(arena, n, sizeof(*out->msgs)) : NULL;
    if (n && !out->msgs) return BT_ENOMEM;
    struct bt_buf b;
    bt_buf_init(&b, MAX_TEXT);
    enum bt_err e = BT_OK;
    if (c->nsystem) {
        out->msgs[0].role = BT_ROLE_SYSTEM;
        e = msg_text(c->system, c->nsystem, arena, &b, &out->images, &out->msgs[0].text);
        out->nmsgs = 1;
    }
    for (uint32_t i = 0; i < c->nmsgs && !e; i++) {
        struct bt_prompt_msg *m = &out->msgs[out->nmsgs];
        m->role = c->msgs[i].role;
        e = msg_text(c->msgs[i].parts, c->msgs[i].nparts, arena, &b, &out->images, &m->text);
        if (m->role == BT_ROLE_USER) out->last_user = (int32_t)out->nmsgs;
        out->nmsgs++;
    }
    bt_buf_free(&b);
    /* the last user message gets a copy with a NUL after it (a regex reads a C
     * string; a slice of the body has none) */
    if (!e && out->last_user >= 0 && out->msgs[out->last_user].text.len) {
        struct bt_str *t = &out->msgs[out->last_user].text;
        *t = bt_arena_strdup(arena, *t);
        if (!t->p) e = BT_ENOMEM;
    }
    if (!e && (c->given & BT_GIVEN_METADATA) && c->metadata.len) e = decode_meta(c->metadata, arena, out);
    return e;
}

struct bt_str bt_prompt_last_user(const struct bt_prompt *p)
{
    return p->last_user >= 0 ? p->msgs[p->last_user].text : BT_STR_NULL;
}

struct bt_str bt_prompt_meta(const struct bt_prompt *p, struct bt_str key)
{
    for (uint32_t i = 0; i < p->nmeta; i++)
        if (bt_str_eq(p->meta[i].key, key)) return p->meta[i].value;
    return BT_STR_NULL;
}
