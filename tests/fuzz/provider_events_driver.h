/* One driver for the fuzz targets of the translating adapters' decoders
 * (fuzz_anthropic_events.c, fuzz_gemini_events.c): the input is a provider's
 * stream, fed through the SSE parser as the executor does; every event is
 * classified (light and full) and its data, when it parses, decoded with
 * decode_event; the whole input is also decoded as a whole reply
 * (decode_reply) and as an error body (decode_error, status from the first
 * byte).
 *
 * Checked: no crash, leak or out-of-bounds access (ASan, UBSan); every event
 * is well formed: a known type and finish reason, text, arguments and error
 * message slices that are valid JSON string bodies, token counts within
 * [0, 2^42] with usage marked present; nothing follows an ERROR from one
 * document; an error body always gets a class. */
#ifndef BT_FUZZ_PROVIDER_EVENTS_DRIVER_H
#define BT_FUZZ_PROVIDER_EVENTS_DRIVER_H

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/arena.h"
#include "core/buf.h"
#include "http/sse.h"
#include "json/json.h"
#include "provider/provider.h"

#define CHECK(c)                                                                                \
    do {                                                                                       \
        if (!(c)) __builtin_trap();                                                            \
    } while (0)

struct seen {
    unsigned n;
    bool error; /* an ERROR came from this document */
};

static void string_body_ok(struct bt_str v)
{
    if (!v.len) return;
    struct bt_buf out;
    bt_buf_init(&out, v.len * 3 + 16);
    CHECK(bt_json_unescape(v, &out) == BT_OK);
    bt_buf_free(&out);
}

static void count_ok(int64_t v) { CHECK(v >= 0 && v <= ((int64_t)1 << 42)); }

static void on_event(void *ud, const struct bt_event *ev)
{
    struct seen *s = ud;
    CHECK(!s->error); /* an ERROR is the document's last event */
    s->n++;
    CHECK(ev->type >= BT_EV_START && ev->type <= BT_EV_LAST);
    switch (ev->type) {
    case BT_EV_TEXT:
    case BT_EV_REASONING:
    case BT_EV_REFUSAL:
    case BT_EV_TOOL_ARGS:
        string_body_ok(ev->text);
        string_body_ok(ev->signature);
        break;
    case BT_EV_ERROR:
        s->error = true;
        string_body_ok(ev->err_message);
        CHECK(ev->outcome < BT_OUTCOME_COUNT);
        break;
    case BT_EV_FINISH: CHECK(ev->finish > BT_FINISH_NONE && ev->finish <= BT_FINISH_LAST); break;
    case BT_EV_USAGE:
        CHECK(ev->usage.present);
        count_ok(ev->usage.prompt_tokens);
        count_ok(ev->usage.completion_tokens);
        count_ok(ev->usage.total_tokens);
        count_ok(ev->usage.cache_read_tokens);
        count_ok(ev->usage.cache_write_tokens);
        count_ok(ev->usage.reasoning_tokens);
        break;
    default: break;
    }
}

static const struct bt_adapter *fuzz_adapter;

static void decode_doc(const char *p, size_t n, bool reply)
{
    struct bt_arena a;
    bt_arena_init(&a, 8192, 64u << 20);
    struct bt_json_doc doc;
    if (bt_json_parse(&doc, p, n, &a, NULL, NULL) == BT_OK) {
        struct seen s = {0};
        (reply ? fuzz_adapter->decode_reply : fuzz_adapter->decode_event)(&doc, on_event, &s);
        (void)fuzz_adapter->added_usage_event(&doc);
    }
    bt_arena_free(&a);
}

static int on_sse(void *ud, const struct bt_sse_event *ev)
{
    (void)ud;
    for (int first = 0; first < 2; first++)
        for (int full = 0; full < 2; full++) {
            enum bt_ev_kind k = fuzz_adapter->classify_event(ev, first, full);
            CHECK(k >= BT_EVK_RELAY && k <= BT_EVK_INVALID);
        }
    if (ev->has_data) decode_doc(ev->data.p, ev->data.len, false);
    return 0;
}

static int fuzz_provider_events(const struct bt_adapter *ad, const uint8_t *data, size_t size)
{
    fuzz_adapter = ad;
    struct bt_sse p;
    bt_sse_init(&p, 1u << 20, on_sse, NULL);
    (void)bt_sse_feed(&p, (const char *)data, size);
    bt_sse_free(&p);
    decode_doc((const char *)data, size, true);
    struct bt_arena a;
    bt_arena_init(&a, 8192, 64u << 20);
    struct bt_perror pe;
    int status = size ? 400 + data[0] % 200 : 500;
    ad->decode_error(status, (struct bt_str){(const char *)data, size}, &a, &pe);
    CHECK(pe.cls > BT_OUTCOME_OK && pe.cls < BT_OUTCOME_COUNT);
    bt_arena_free(&a);
    return 0;
}

#endif
