/* libFuzzer target for what baton reads from an OpenAI-compatible provider:
 * bt_json_parse on arbitrary bytes, then bt_openai_decode_chunk (a stream event)
 * and bt_openai_decode_response (a whole reply) on whatever parses, exactly as
 * the executor does (src/exec/exec.c on_sse / finish_body).
 *
 * Checked: no crash, leak or out-of-bounds access; every event the decoders emit
 * is well formed: a known type, slices inside the input, text slices that are
 * valid JSON string bodies (they are forwarded or unescaped later), usage marked
 * present, and at most one ERROR event, which is then the only event (a top-level
 * "error" member always gives exactly that). UBSan watches the integer reads
 * (token counts near INT64_MAX). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/arena.h"
#include "core/buf.h"
#include "json/json.h"
#include "provider/openai.h"

#define CHECK(c)                                                                                \
    do {                                                                                       \
        if (!(c)) __builtin_trap();                                                            \
    } while (0)

struct seen {
    const char *base;
    size_t len;
    unsigned n, errors;
};

static void slice_ok(const struct seen *s, struct bt_str v)
{
    if (!v.len) return;
    CHECK(v.p >= s->base && v.p + v.len <= s->base + s->len);
}

/* A raw JSON string body must unescape cleanly. */
static void string_body_ok(struct bt_str v)
{
    struct bt_buf out;
    bt_buf_init(&out, v.len * 3 + 16);
    CHECK(bt_json_unescape(v, &out) == BT_OK);
    bt_buf_free(&out);
}

static void on_event(void *ud, const struct bt_event *ev)
{
    struct seen *s = ud;
    s->n++;
    CHECK(ev->type >= BT_EV_START && ev->type <= BT_EV_LAST);
    slice_ok(s, ev->id);
    slice_ok(s, ev->name);
    slice_ok(s, ev->text);
    slice_ok(s, ev->err_type);
    slice_ok(s, ev->err_message);
    switch (ev->type) {
    case BT_EV_TEXT:
    case BT_EV_REASONING:
    case BT_EV_TOOL_ARGS: string_body_ok(ev->text); break;
    case BT_EV_ERROR:
        s->errors++;
        if (ev->err_message.len) string_body_ok(ev->err_message);
        break;
    case BT_EV_FINISH:
        CHECK(ev->finish >= BT_FINISH_NONE && ev->finish <= BT_FINISH_LAST);
        (void)bt_finish_name(ev->finish);
        break;
    case BT_EV_USAGE: CHECK(ev->usage.present); break;
    default: break;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct bt_arena a;
    bt_arena_init(&a, 8192, 64u << 20);
    struct bt_json_doc doc;
    if (bt_json_parse(&doc, (const char *)data, size, &a, NULL, NULL) == BT_OK) {
        struct seen s = {.base = (const char *)data, .len = size};
        bt_openai_decode_chunk(&doc, on_event, &s);
        CHECK(s.errors <= 1 && (s.errors == 0 || s.n == 1));
        struct seen s2 = {.base = (const char *)data, .len = size};
        bt_openai_decode_response(&doc, on_event, &s2);
        CHECK(s2.errors <= 1 && (s2.errors == 0 || s2.n == 1));
        /* A top-level "error" member makes both decoders report exactly that. */
        if (bt_json_get(&doc, 0, "error") >= 0) CHECK(s.errors == 1 && s2.errors == 1);
    }
    bt_arena_free(&a);
    return 0;
}
