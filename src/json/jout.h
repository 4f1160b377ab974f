/* Hand-written JSON text with a sticky error: what the codecs that write JSON
 * by hand share (api/openai_encode.c, api/anthropic_encode.c,
 * provider/openai_chat_encode.c). Their strings arrive as escaped JSON bodies
 * and go back between quotes as they are, so they skip bt_jw's escaping.
 * After the first failed append nothing more is written; check `err` once at
 * the end. */
#ifndef BT_JSON_JOUT_H
#define BT_JSON_JOUT_H

#include <inttypes.h>
#include <stdio.h>

#include "core/buf.h"
#include "core/err.h"
#include "core/str.h"
#include "json/json.h"

struct bt_jout {
    struct bt_buf *b; /* borrowed: where the text goes */
    enum bt_err err;  /* the first append's failure, sticky */
};

static inline void bt_jout_put(struct bt_jout *w, const char *p, size_t n)
{
    if (!w->err) w->err = bt_buf_append(w->b, p, n);
}
/* A string literal, its length folded at compile time. */
#define BT_JOUT_LIT(w, lit) bt_jout_put((w), (lit), sizeof(lit) - 1)

static inline void bt_jout_str(struct bt_jout *w, struct bt_str s) { bt_jout_put(w, s.p, s.len); }

static inline void bt_jout_int(struct bt_jout *w, int64_t v)
{
    char tmp[24];
    int n = snprintf(tmp, sizeof(tmp), "%" PRId64, v);
    bt_jout_put(w, tmp, (size_t)n);
}

/* An escaped string body, between quotes. */
static inline void bt_jout_quoted(struct bt_jout *w, struct bt_str body)
{
    BT_JOUT_LIT(w, "\"");
    bt_jout_str(w, body);
    BT_JOUT_LIT(w, "\"");
}

/* Bytes of our own (unescaped), as a JSON string. */
static inline void bt_jout_escaped(struct bt_jout *w, struct bt_str s)
{
    if (!w->err) w->err = bt_json_escape(w->b, s);
}

#endif
