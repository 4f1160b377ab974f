#include "harness.h"

#include <stdlib.h>

#include "http/sse.h"

struct collected {
    int n;
    char names[16][32];
    char data[16][256];
    char raw[16][256];
    int stop_after;
};

static void copy(char *dst, size_t cap, struct bt_str s)
{
    size_t n = s.len < cap - 1 ? s.len : cap - 1;
    if (n) memcpy(dst, s.p, n);
    dst[n] = 0;
}

static int on_event(void *ud, const struct bt_sse_event *ev)
{
    struct collected *c = ud;
    if (c->n < 16) {
        copy(c->names[c->n], 32, ev->event);
        copy(c->data[c->n], 256, ev->data);
        copy(c->raw[c->n], 256, ev->raw);
    }
    c->n++;
    return c->stop_after && c->n >= c->stop_after;
}

static const char *stream =
    "data: {\"a\":1}\n\n"
    ": keep-alive comment\n\n"
    "event: message_start\r\ndata: {\"type\":\"message_start\"}\r\n\r\n"
    "data: line1\ndata: line2\n\n"
    "id: 7\rdata:nospace\r\r"
    "data: [DONE]\n\n";

static void check_stream(struct collected *c)
{
    CHECK_INT(c->n, 5);
    CHECK_STR(c->data[0], "{\"a\":1}");
    CHECK_STR(c->raw[0], "data: {\"a\":1}\n\n");
    CHECK_STR(c->names[1], "message_start");
    CHECK_STR(c->data[1], "{\"type\":\"message_start\"}");
    CHECK_STR(c->data[2], "line1\nline2");
    CHECK_STR(c->data[3], "nospace");
    CHECK_STR(c->data[4], "[DONE]");
}

TEST(whole_stream_at_once)
{
    struct collected c = {0};
    struct bt_sse p;
    bt_sse_init(&p, 4096, on_event, &c);
    CHECK_INT(bt_sse_feed(&p, stream, strlen(stream)), BT_OK);
    check_stream(&c);
    CHECK(!bt_sse_partial(&p));
    bt_sse_free(&p);
}

TEST(every_split_point)
{
    size_t len = strlen(stream);
    for (size_t cut = 1; cut < len; cut++) {
        struct collected c = {0};
        struct bt_sse p;
        bt_sse_init(&p, 4096, on_event, &c);
        CHECK_INT(bt_sse_feed(&p, stream, cut), BT_OK);
        CHECK_INT(bt_sse_feed(&p, stream + cut, len - cut), BT_OK);
        check_stream(&c);
        bt_sse_free(&p);
        if (c.n != 5) {
            fprintf(stderr, "  (cut at %zu)\n", cut);
            break;
        }
    }
}

TEST(byte_at_a_time)
{
    struct collected c = {0};
    struct bt_sse p;
    bt_sse_init(&p, 4096, on_event, &c);
    for (size_t i = 0; stream[i]; i++) CHECK_INT(bt_sse_feed(&p, stream + i, 1), BT_OK);
    check_stream(&c);
    bt_sse_free(&p);
}

TEST(event_over_cap)
{
    struct collected c = {0};
    struct bt_sse p;
    bt_sse_init(&p, 64, on_event, &c);
    char big[200];
    memset(big, 'x', sizeof(big));
    memcpy(big, "data: ", 6);
    CHECK_INT(bt_sse_feed(&p, big, 100), BT_ETOOBIG);
    bt_sse_free(&p);

    bt_sse_init(&p, 64, on_event, &c);
    CHECK_INT(bt_sse_feed(&p, big, 50), BT_OK);
    CHECK_INT(bt_sse_feed(&p, big + 50, 50), BT_ETOOBIG);
    bt_sse_free(&p);
}

TEST(callback_stops)
{
    struct collected c = {.stop_after = 2};
    struct bt_sse p;
    bt_sse_init(&p, 4096, on_event, &c);
    CHECK_INT(bt_sse_feed(&p, stream, strlen(stream)), BT_ECANCELED);
    CHECK_INT(c.n, 2);
    bt_sse_free(&p);
}

/* The one-line fast path must give what the general parser gives: a CR inside
 * the line ends it there, an empty value is still data. */
TEST(fast_path_edges)
{
    const char *in = "data:\n\ndata: a\rb\n\ndata:  two spaces\n\ndata: x\ndata: y\n\ndata: z\r\n\n";
    struct collected c = {0};
    struct bt_sse p;
    bt_sse_init(&p, 4096, on_event, &c);
    CHECK_INT(bt_sse_feed(&p, in, strlen(in)), BT_OK);
    CHECK_INT(c.n, 5);
    CHECK_STR(c.data[0], "");
    CHECK_STR(c.raw[0], "data:\n\n");
    CHECK_STR(c.data[1], "a");
    CHECK_STR(c.data[2], " two spaces");
    CHECK_STR(c.data[3], "x\ny");
    CHECK_STR(c.data[4], "z");
    CHECK(!bt_sse_partial(&p));
    bt_sse_free(&p);
}

int main(void)
{
    RUN(fast_path_edges);
    RUN(whole_stream_at_once);
    RUN(every_split_point);
    RUN(byte_at_a_time);
    RUN(event_over_cap);
    RUN(callback_stops);
    return HARNESS_DONE();
}
