/* Shared pieces of the translating adapters: see wire.h. */
#include "provider/wire.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

void bt_wire_raw_str(struct bt_jw *w, struct bt_str s)
{
    bt_jw_raw(w, BT_STR("\""));
    if (w->err) return;
    enum bt_err err = bt_buf_append_str(w->out, s);
    if (!err) err = bt_buf_append(w->out, "\"", 1);
    if (err) w->err = err;
}

enum bt_err bt_wire_refuse(struct bt_chat_error *e, const char *param, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->message, sizeof(e->message), fmt, ap);
    va_end(ap);
    snprintf(e->param, sizeof(e->param), "%s", param);
    return BT_EINVAL;
}

enum bt_err bt_wire_refuse_given(const struct bt_chat *c, uint32_t refused, const char *provider,
                                 struct bt_chat_error *e)
{
    uint32_t hit = c->given & refused;
    for (uint32_t bit = 1; hit && bit <= BT_GIVEN_LAST; bit <<= 1) {
        if (!(hit & bit)) continue;
        const char *name = bt_chat_given_name(bit);
        return bt_wire_refuse(e, name, "`%s` has no counterpart in the %s API of this model's "
                                       "provider; leave it out",
                              name, provider);
    }
    return BT_OK;
}

enum bt_err bt_wire_refuse_extra(const struct bt_chat *c, const char *provider,
                                 struct bt_chat_error *e)
{
    char name[64];
    size_t n = c->extras[0].key.len < 60 ? c->extras[0].key.len : 60;
    memcpy(name, c->extras[0].key.p, n);
    name[n] = 0;
    return bt_wire_refuse(e, name, "`%s` has no counterpart in %s's API; leave it out", name,
                          provider);
}

int64_t bt_wire_count(const struct bt_json_doc *doc, int obj, const char *key)
{
    int t = bt_json_get(doc, obj, key);
    int64_t v = 0;
    if (t < 0 || bt_json_type(doc, t) != BT_JSON_NUMBER || bt_json_int(doc, t, &v) != BT_OK)
        return 0;
    if (v < 0) return 0;
    return v > ((int64_t)1 << 40) ? (int64_t)1 << 40 : v;
}

void bt_wire_args_event(const struct bt_json_doc *doc, int tok, const struct bt_event *base,
                        bt_event_cb cb, void *ud)
{
    struct bt_str raw = bt_json_raw(doc, tok);
    struct bt_buf b;
    bt_buf_init(&b, raw.len * 2 + 16);
    struct bt_event ev = *base;
    ev.type = BT_EV_TOOL_ARGS;
    if (bt_json_escape(&b, raw) == BT_OK && b.len >= 2) {
        ev.text = (struct bt_str){bt_buf_str(&b).p + 1, b.len - 2}; /* without the quotes */
        cb(ud, &ev);
    }
    bt_buf_free(&b);
}

int64_t bt_wire_effort_budget(enum bt_effort e)
{
    switch (e) {
    case BT_EFFORT_MINIMAL: return 1024;
    case BT_EFFORT_LOW: return 2048;
    case BT_EFFORT_MEDIUM: return 8192;
    case BT_EFFORT_HIGH: return 16384;
    case BT_EFFORT_XHIGH: return 24576;
    case BT_EFFORT_MAX: return 32000;
    case BT_EFFORT_UNSET:
    case BT_EFFORT_NONE: break;
    }
    return 0;
}

bool bt_wire_is_object(struct bt_str json, struct bt_arena *arena)
{
    struct bt_json_doc d;
    return bt_json_parse(&d, json.p, json.len, arena, NULL, NULL) == BT_OK &&
           bt_json_type(&d, 0) == BT_JSON_OBJECT;
}

size_t bt_wire_headers(bool stream, const char *cred, const char *key, struct bt_http_header *hs,
                       size_t cap, enum bt_err *err)
{
    size_t n = 0;
    *err = BT_OK;
    if (cap < 5) {
        *err = BT_ETOOBIG;
        return 0;
    }
    hs[n++] = (struct bt_http_header){BT_STR("Content-Type"), BT_STR("application/json")};
    hs[n++] = (struct bt_http_header){BT_STR("Accept"), stream ? BT_STR("text/event-stream")
                                                              : BT_STR("application/json")};
    hs[n++] = (struct bt_http_header){BT_STR("User-Agent"), BT_STR("baton")};
    if (key) hs[n++] = (struct bt_http_header){bt_str_c(cred), bt_str_c(key)};
    return n;
}

struct bt_str bt_wire_field(const struct bt_json_doc *doc, int obj, const char *key,
                            struct bt_arena *arena)
{
    int t = bt_json_get(doc, obj, key);
    struct bt_str v = BT_STR_NULL;
    if (bt_json_type(doc, t) == BT_JSON_STRING && bt_json_str(doc, t, arena, &v) == BT_OK) return v;
    return BT_STR_NULL;
}

struct bt_str bt_wire_path(const char *prefix, struct bt_str model, const char *tail,
                           struct bt_arena *arena)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t cap = strlen(prefix) + model.len * 3 + strlen(tail) + 1;
    char *s = bt_arena_alloc(arena, cap);
    if (!s) return BT_STR_NULL;
    size_t n = (size_t)snprintf(s, cap, "%s", prefix);
    for (size_t i = 0; i < model.len; i++) {
        unsigned char c = (unsigned char)model.p[i];
        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
            c == '-' || c == '_' || c == '.') {
            s[n++] = (char)c;
        } else {
            s[n++] = '%';
            s[n++] = hex[c >> 4];
            s[n++] = hex[c & 15];
        }
    }
    n += (size_t)snprintf(s + n, cap - n, "%s", tail);
    return (struct bt_str){s, n};
}

enum bt_err bt_wire_body(const struct bt_buf *b, struct bt_arena *arena, struct bt_pbody *out)
{
    struct bt_str s = bt_arena_strdup(arena, bt_buf_str(b));
    if (!s.p) return BT_ENOMEM;
    out->parts[0] = s;
    out->n = 1;
    return BT_OK;
}
