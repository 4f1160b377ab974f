/* libFuzzer target for the translate path's OpenAI decoders and encoders: an
 * arbitrary body read as an OpenAI stream (SSE -> bt_openai_stream_data) or as
 * a whole reply (bt_openai_reply_events), its events fed to the stream encoder
 * and the aggregator (src/provider/openai_reply.c, src/api/openai_encode.c).
 *
 * Input: byte 0 chooses (bit 0) reply rather than stream, (bit 1)
 * include_usage, (bit 2) a 512-byte output buffer that is flushed whenever an
 * event does not fit (the caller's retry); the rest is the body.
 *
 * Checked: no crash, leak or out-of-bounds access; the encoder's output is
 * whole SSE events, each `[DONE]` (then last) or valid JSON; an error event is
 * last and the stream then has no [DONE]; every stream ends (DONE or an error
 * written for a stream cut short); the first delta of each choice names the
 * role and the first delta of each tool call names id and function.name; the
 * aggregator writes valid JSON or reports why not. */
#include "api/openai_encode.h"
#include "encode_driver.h"

static enum bt_err st_event(void *st, const struct bt_event *ev, struct bt_buf *out)
{
    return bt_openai_stream_event(st, ev, out);
}
static bool st_ended(const void *st) { return bt_openai_stream_ended(st); }
static bool st_failed(const void *st)
{
    return ((const struct bt_openai_stream *)st)->state == BT_OAS_FAILED;
}
static enum bt_err agg_event(void *agg, const struct bt_event *ev)
{
    return bt_openai_agg_event(agg, ev);
}
static enum bt_err agg_write(const void *agg, struct bt_buf *out, int *status)
{
    return bt_openai_agg_write(agg, out, status);
}

/* What the output must look like, event by event. */
struct check {
    bool done, failed;
    uint8_t began[BT_OPENAI_ENC_MAX_CHOICES];
    uint32_t ncalls[BT_OPENAI_ENC_MAX_CHOICES];
};

static void check_chunk(struct check *c, const struct bt_json_doc *d)
{
    int choices = bt_json_get(d, 0, "choices");
    CHECK(bt_json_type(d, choices) == BT_JSON_ARRAY);
    CHECK(bt_json_type(d, bt_json_get(d, 0, "id")) == BT_JSON_STRING);
    CHECK(bt_json_type(d, bt_json_get(d, 0, "model")) == BT_JSON_STRING);
    for (int ch = bt_json_first(d, choices); ch >= 0 && ch < (int)d->toks[choices].next;
         ch = (int)d->toks[ch].next) {
        int64_t i = -1;
        CHECK(bt_json_int(d, bt_json_get(d, ch, "index"), &i) == BT_OK);
        CHECK(i >= 0 && i < BT_OPENAI_ENC_MAX_CHOICES);
        int delta = bt_json_get(d, ch, "delta");
        CHECK(bt_json_type(d, delta) == BT_JSON_OBJECT);
        CHECK(bt_json_get(d, ch, "finish_reason") >= 0);
        if (!c->began[i]) CHECK(bt_json_str_eq(d, bt_json_get(d, delta, "role"), "assistant"));
        c->began[i] = 1;
        int tcs = bt_json_get(d, delta, "tool_calls");
        if (tcs < 0) continue;
        int tc = bt_json_first(d, tcs);
        int64_t k = -1;
        CHECK(bt_json_int(d, bt_json_get(d, tc, "index"), &k) == BT_OK);
        CHECK(k >= 0 && k <= (int64_t)c->ncalls[i]);
        if (k == (int64_t)c->ncalls[i]) {
            CHECK(bt_json_type(d, bt_json_get(d, tc, "id")) == BT_JSON_STRING);
            CHECK(bt_json_str_eq(d, bt_json_get(d, tc, "type"), "function"));
            int fn = bt_json_get(d, tc, "function");
            CHECK(bt_json_type(d, bt_json_get(d, fn, "name")) == BT_JSON_STRING);
            c->ncalls[i]++;
        } else {
            CHECK(bt_json_get(d, tc, "id") < 0);
        }
    }
}

static int on_out(void *ud, const struct bt_sse_event *ev)
{
    struct check *c = ud;
    CHECK(!c->done && !c->failed);
    if (bt_str_eq_c(ev->data, "[DONE]")) {
        c->done = true;
        return 0;
    }
    struct bt_arena a;
    bt_arena_init(&a, 4096, 0);
    struct bt_json_doc d;
    CHECK(bt_json_parse(&d, ev->data.p, ev->data.len, &a, NULL, NULL) == BT_OK);
    if (bt_json_get(&d, 0, "error") >= 0) c->failed = true;
    else check_chunk(c, &d);
    bt_arena_free(&a);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) return 0;
    struct bt_openai_enc_opts opts = {.id = BT_STR("chatcmpl-f"), .model = BT_STR("m"),
                                      .created = 1, .include_usage = (data[0] & 2) != 0};
    struct bt_openai_stream enc;
    bt_openai_stream_init(&enc, &opts);
    struct bt_openai_agg agg;
    bt_openai_agg_init(&agg, &opts, 1u << 20);
    const struct enc_ops ops = {&enc, st_event, st_ended, st_failed, &agg, agg_event, agg_write};
    struct check c = {0};
    enc_drive(&ops, (const char *)data + 1, size - 1, data[0] & 1, (data[0] & 4) ? 512 : 8u << 20,
              on_out, &c);
    CHECK(c.done != c.failed);
    CHECK(c.done == (enc.state == BT_OAS_DONE));
    bt_openai_agg_free(&agg);
    return 0;
}
