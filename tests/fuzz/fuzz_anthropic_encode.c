/* libFuzzer target for the Anthropic front end's encoders fed by an OpenAI
 * provider (the translate path): an arbitrary body read as an OpenAI stream
 * (SSE -> bt_openai_stream_data) or as a whole reply (bt_openai_reply_events),
 * its events fed to the Anthropic stream encoder and the Message aggregator
 * (src/api/anthropic_encode.c).
 *
 * Input: byte 0 chooses (bit 0) reply rather than stream, (bit 1) a 512-byte
 * output buffer that is flushed whenever an event does not fit (the caller's
 * retry); the rest is the body.
 *
 * Checked: no crash, leak or out-of-bounds access; the output is whole
 * `event: NAME` / `data: JSON` pairs whose data's type is NAME; message_start
 * first (or an error), then blocks opened, filled and closed one at a time with
 * consecutive indices, tool_use blocks with id and name, then message_delta and
 * message_stop last, or an error event last and no message_stop; every stream
 * ends; the aggregator writes valid JSON or reports why not. */
#include "api/anthropic_encode.h"
#include "encode_driver.h"

static enum bt_err st_event(void *st, const struct bt_event *ev, struct bt_buf *out)
{
    return bt_anthropic_stream_event(st, ev, out);
}
static bool st_ended(const void *st) { return bt_anthropic_stream_ended(st); }
static bool st_failed(const void *st)
{
    return ((const struct bt_anthropic_stream *)st)->state == BT_ANS_FAILED;
}
static enum bt_err agg_event(void *agg, const struct bt_event *ev)
{
    return bt_anthropic_agg_event(agg, ev);
}
static enum bt_err agg_write(const void *agg, struct bt_buf *out, int *status)
{
    return bt_anthropic_agg_write(agg, out, status);
}

struct check {
    bool started, stopped, failed, delta;
    long open;     /* the open block, -1 none */
    long nblocks;  /* blocks started */
};

static int on_out(void *ud, const struct bt_sse_event *ev)
{
    struct check *c = ud;
    CHECK(!c->stopped && !c->failed);
    CHECK(ev->event.len && ev->has_data);
    struct bt_arena a;
    bt_arena_init(&a, 4096, 0);
    struct bt_json_doc d;
    CHECK(bt_json_parse(&d, ev->data.p, ev->data.len, &a, NULL, NULL) == BT_OK);
    int type = bt_json_get(&d, 0, "type");
    CHECK(bt_json_type(&d, type) == BT_JSON_STRING && bt_str_eq(bt_json_str_raw(&d, type), ev->event));
    struct bt_str name = ev->event;
    int64_t idx = -1;
    int it = bt_json_get(&d, 0, "index");
    if (it >= 0) CHECK(bt_json_int(&d, it, &idx) == BT_OK);
    if (bt_str_eq_c(name, "error")) {
        c->failed = true;
        CHECK(bt_json_type(&d, bt_json_path(&d, 0, "error", "type", NULL)) == BT_JSON_STRING);
    } else if (bt_str_eq_c(name, "message_start")) {
        CHECK(!c->started);
        c->started = true;
        CHECK(bt_json_type(&d, bt_json_path(&d, 0, "message", "id", NULL)) == BT_JSON_STRING);
    } else {
        CHECK(c->started);
        if (bt_str_eq_c(name, "content_block_start")) {
            CHECK(c->open < 0 && idx == c->nblocks && !c->delta);
            int blk = bt_json_get(&d, 0, "content_block");
            if (bt_json_str_eq(&d, bt_json_get(&d, blk, "type"), "tool_use")) {
                CHECK(bt_json_type(&d, bt_json_get(&d, blk, "id")) == BT_JSON_STRING);
                CHECK(bt_json_type(&d, bt_json_get(&d, blk, "name")) == BT_JSON_STRING);
            }
            c->open = c->nblocks++;
        } else if (bt_str_eq_c(name, "content_block_delta")) {
            CHECK(c->open >= 0 && idx == c->open);
        } else if (bt_str_eq_c(name, "content_block_stop")) {
            CHECK(c->open >= 0 && idx == c->open);
            c->open = -1;
        } else if (bt_str_eq_c(name, "message_delta")) {
            CHECK(c->open < 0 && !c->delta);
            c->delta = true;
        } else if (bt_str_eq_c(name, "message_stop")) {
            CHECK(c->delta);
            c->stopped = true;
        } else {
            CHECK(bt_str_eq_c(name, "ping"));
        }
    }
    bt_arena_free(&a);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) return 0;
    struct bt_anthropic_enc_opts opts = {.id = BT_STR("baton"), .model = BT_STR("m")};
    struct bt_anthropic_stream *enc = malloc(sizeof(*enc));
    CHECK(enc);
    bt_anthropic_stream_init(enc, &opts);
    struct bt_anthropic_agg agg;
    bt_anthropic_agg_init(&agg, &opts, 1u << 20);
    const struct enc_ops ops = {enc, st_event, st_ended, st_failed, &agg, agg_event, agg_write};
    struct check c = {.open = -1};
    enc_drive(&ops, (const char *)data + 1, size - 1, data[0] & 1, (data[0] & 2) ? 512 : 8u << 20,
              on_out, &c);
    CHECK(c.stopped != c.failed);
    CHECK(c.stopped == (enc->state == BT_ANS_DONE));
    bt_anthropic_agg_free(&agg);
    free(enc);
    return 0;
}
