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
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "api/openai_encode.h"
#include "core/arena.h"
#include "core/buf.h"
#include "http/sse.h"
#include "json/json.h"
#include "provider/openai_reply.h"

#define CHECK(c)                                                                                \
    do {                                                                                       \
        if (!(c)) __builtin_trap();                                                            \
    } while (0)

struct run {
    struct bt_openai_stream enc;
    struct bt_openai_agg agg;
    struct bt_buf out, all; /* out: the bounded buffer; all: everything flushed */
    struct bt_arena scratch;
};

static void flush(struct run *r)
{
    CHECK(bt_buf_append_str(&r->all, bt_buf_str(&r->out)) == BT_OK);
    bt_buf_reset(&r->out);
}

static void on_event(void *ud, const struct bt_event *ev)
{
    struct run *r = ud;
    enum bt_err err = bt_openai_stream_event(&r->enc, ev, &r->out);
    if (err == BT_ETOOBIG) {
        flush(r);
        err = bt_openai_stream_event(&r->enc, ev, &r->out);
    }
    if (err == BT_ETOOBIG) {
        /* one event larger than the buffer: nothing of it was written, so a
         * larger buffer takes it whole */
        CHECK(r->out.len == 0);
        size_t max = r->out.max;
        r->out.max = 8u << 20;
        err = bt_openai_stream_event(&r->enc, ev, &r->out);
        flush(r);
        r->out.max = max;
    }
    CHECK(err == BT_OK || err == BT_EPROTO);
    if (err == BT_EPROTO) CHECK(r->enc.state == BT_OAS_FAILED);
    (void)bt_openai_agg_event(&r->agg, ev);
}

static int on_sse(void *ud, const struct bt_sse_event *ev)
{
    struct run *r = ud;
    enum bt_err err = bt_openai_stream_data(ev->data, &r->scratch, on_event, r);
    CHECK(err == BT_OK || err == BT_EPARSE || err == BT_ENOMEM);
    bt_arena_reset(&r->scratch);
    return 0;
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
    bool reply = data[0] & 1;
    struct bt_openai_enc_opts opts = {.id = BT_STR("chatcmpl-f"), .model = BT_STR("m"),
                                      .created = 1, .include_usage = (data[0] & 2) != 0};
    struct run r;
    bt_openai_stream_init(&r.enc, &opts);
    bt_openai_agg_init(&r.agg, &opts, 1u << 20);
    bt_buf_init(&r.out, (data[0] & 4) ? 512 : 8u << 20);
    bt_buf_init(&r.all, 64u << 20);
    bt_arena_init(&r.scratch, 4096, 64u << 20);
    const char *body = (const char *)data + 1;
    size_t len = size - 1;
    if (reply) {
        struct bt_json_doc doc;
        if (bt_json_parse(&doc, body, len, &r.scratch, NULL, NULL) == BT_OK)
            bt_openai_reply_events(&doc, on_event, &r);
    } else {
        struct bt_sse p;
        bt_sse_init(&p, 1u << 20, on_sse, &r);
        (void)bt_sse_feed(&p, body, len);
        bt_sse_free(&p);
    }
    if (!bt_openai_stream_ended(&r.enc)) {
        /* what exec does when the provider's body ends without [DONE] */
        struct bt_event cut = {.type = BT_EV_ERROR, .outcome = BT_OUTCOME_SERVER_ERROR,
                               .err_message = BT_STR("cut short")};
        on_event(&r, &cut);
    }
    CHECK(bt_openai_stream_ended(&r.enc));
    flush(&r);
    struct check c = {0};
    struct bt_sse p;
    bt_sse_init(&p, 64u << 20, on_out, &c);
    CHECK(bt_sse_feed(&p, r.all.p ? r.all.p : "", r.all.len) == BT_OK);
    CHECK(!bt_sse_partial(&p));
    bt_sse_free(&p);
    CHECK(c.done != c.failed);
    CHECK(c.done == (r.enc.state == BT_OAS_DONE));
    struct bt_buf reply_out;
    bt_buf_init(&reply_out, 64u << 20);
    int status = 0;
    enum bt_err err = bt_openai_agg_write(&r.agg, &reply_out, &status);
    CHECK(err == BT_OK || err == BT_EPROTO || err == BT_ETOOBIG);
    if (err == BT_OK)
        CHECK(bt_json_validate(reply_out.p, reply_out.len, 0, NULL, 0) == BT_OK);
    bt_buf_free(&reply_out);
    bt_buf_free(&r.out);
    bt_buf_free(&r.all);
    bt_arena_free(&r.scratch);
    bt_openai_agg_free(&r.agg);
    return 0;
}
