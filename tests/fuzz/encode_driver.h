/* What the fuzz targets of the translate path's encoders share
 * (fuzz_openai_encode.c, fuzz_anthropic_encode.c): an arbitrary body read as an
 * OpenAI stream (SSE -> bt_openai_stream_data) or as a whole reply
 * (bt_openai_reply_events), every event fed to a front end's stream encoder
 * through a bounded output buffer (flushed and the event fed again when it is
 * full, as exec does) and to its aggregator; a stream cut short is ended with
 * an ERROR, as exec ends it. The target checks what came out. */
#ifndef BT_FUZZ_ENCODE_DRIVER_H
#define BT_FUZZ_ENCODE_DRIVER_H

#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "canon/event.h"
#include "core/arena.h"
#include "core/buf.h"
#include "http/sse.h"
#include "json/json.h"
#include "provider/openai_reply.h"

#define CHECK(c)                                                                                \
    do {                                                                                       \
        if (!(c)) __builtin_trap();                                                            \
    } while (0)

/* One front end's encoders, as the target wires them. */
struct enc_ops {
    void *st;  /* stream encoder */
    enum bt_err (*event)(void *st, const struct bt_event *ev, struct bt_buf *out);
    bool (*ended)(const void *st);
    bool (*failed)(const void *st); /* ended with an error event */
    void *agg; /* aggregator */
    enum bt_err (*agg_event)(void *agg, const struct bt_event *ev);
    enum bt_err (*agg_write)(const void *agg, struct bt_buf *out, int *status);
};

struct enc_run {
    const struct enc_ops *ops;
    struct bt_buf out, all; /* out: the bounded buffer; all: everything flushed */
    struct bt_arena scratch;
};

static void enc_flush(struct enc_run *r)
{
    CHECK(bt_buf_append_str(&r->all, bt_buf_str(&r->out)) == BT_OK);
    bt_buf_reset(&r->out);
}

static void enc_on_event(void *ud, const struct bt_event *ev)
{
    struct enc_run *r = ud;
    const struct enc_ops *o = r->ops;
    enum bt_err err = o->event(o->st, ev, &r->out);
    if (err == BT_ETOOBIG) {
        enc_flush(r);
        err = o->event(o->st, ev, &r->out);
    }
    if (err == BT_ETOOBIG) {
        /* one event larger than the buffer: nothing of it was written, so a
         * larger buffer takes it whole */
        CHECK(r->out.len == 0);
        size_t max = r->out.max;
        r->out.max = 8u << 20;
        err = o->event(o->st, ev, &r->out);
        enc_flush(r);
        r->out.max = max;
    }
    CHECK(err == BT_OK || err == BT_EPROTO);
    if (err == BT_EPROTO) CHECK(o->failed(o->st));
    (void)o->agg_event(o->agg, ev);
}

static int enc_on_sse(void *ud, const struct bt_sse_event *ev)
{
    struct enc_run *r = ud;
    enum bt_err err = bt_openai_stream_data(ev->data, &r->scratch, enc_on_event, r);
    CHECK(err == BT_OK || err == BT_EPARSE || err == BT_ENOMEM);
    bt_arena_reset(&r->scratch);
    return 0;
}

/* Feeds `body` (a whole reply when `reply`, else a stream) through `ops` with
 * an output buffer of `out_max` bytes; then parses everything written with
 * `on_out` (which checks each event), and checks the aggregator's reply is
 * valid JSON or refused for a reason it may have. */
static void enc_drive(const struct enc_ops *ops, const char *body, size_t len, bool reply,
                      size_t out_max, bt_sse_cb on_out, void *check)
{
    struct enc_run r = {.ops = ops};
    bt_buf_init(&r.out, out_max);
    bt_buf_init(&r.all, 64u << 20);
    bt_arena_init(&r.scratch, 4096, 64u << 20);
    if (reply) {
        struct bt_json_doc doc;
        if (bt_json_parse(&doc, body, len, &r.scratch, NULL, NULL) == BT_OK)
            bt_openai_reply_events(&doc, enc_on_event, &r);
    } else {
        struct bt_sse p;
        bt_sse_init(&p, 1u << 20, enc_on_sse, &r);
        (void)bt_sse_feed(&p, body, len);
        bt_sse_free(&p);
    }
    if (!ops->ended(ops->st)) {
        /* what exec does when the provider's body ends without its end marker */
        struct bt_event cut = {.type = BT_EV_ERROR, .outcome = BT_OUTCOME_SERVER_ERROR,
                               .err_message = BT_STR("cut short")};
        enc_on_event(&r, &cut);
    }
    CHECK(ops->ended(ops->st));
    enc_flush(&r);
    struct bt_sse p;
    bt_sse_init(&p, 64u << 20, on_out, check);
    CHECK(bt_sse_feed(&p, r.all.p ? r.all.p : "", r.all.len) == BT_OK);
    CHECK(!bt_sse_partial(&p));
    bt_sse_free(&p);
    struct bt_buf reply_out;
    bt_buf_init(&reply_out, 64u << 20);
    int status = 0;
    enum bt_err err = ops->agg_write(ops->agg, &reply_out, &status);
    CHECK(err == BT_OK || err == BT_EPROTO || err == BT_ETOOBIG);
    if (err == BT_OK) CHECK(bt_json_validate(reply_out.p, reply_out.len, 0, NULL, 0) == BT_OK);
    bt_buf_free(&reply_out);
    bt_buf_free(&r.out);
    bt_buf_free(&r.all);
    bt_arena_free(&r.scratch);
}

#endif
