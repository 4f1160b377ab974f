/* bench/paced_sse: an upstream that streams chat.completion.chunk events on a
 * fixed clock, for the many-streams test of bench/run.sh.
 *
 * nginx sends a stream file at once, and `baton sim` renders a whole reply per
 * request (its own timer jitter reaches hundreds of ms at thousands of streams
 * on two cores), so neither gives a clean baseline for "delay added between
 * events". This server answers every POST with a stream whose events are due
 * at exact multiples of the interval after the request, driven by one 1 ms
 * timer and a timing wheel: the cost per event is one write.
 *
 * Every content event carries the moment it was written: its delta is "@"
 * followed by 19 digits of CLOCK_MONOTONIC nanoseconds (uv_hrtime, shared by
 * every process on the machine), so the client can time each event's trip and
 * tell the delay a proxy adds from the upstream's own pacing jitter.
 *
 *   paced_sse --port P [--ports N] [--events E] [--interval-ms I]
 * listens on 127.0.0.1 ports P .. P+N-1 (several origins, so that a gateway's
 * per-origin connection cap can be spread over a deployment group). Each reply:
 * E content events, a finish event and `data: [DONE]`, chunked, keep-alive.
 * Runs until SIGTERM/SIGINT. */
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "llhttp.h"

#define WHEEL 4096 /* slots of 1 ms; the interval must be shorter */
#define MAX_PORTS 128

static const char HEAD[] = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                           "Cache-Control: no-cache\r\nTransfer-Encoding: chunked\r\n\r\n";
/* One chunk per event: chunk-size line, the event, CRLF. Sizes are computed at start. */
static const char EV_CONTENT[] =
    "data: {\"id\":\"chatcmpl-paced\",\"object\":\"chat.completion.chunk\",\"created\":1700000000,"
    "\"model\":\"gpt-4o-mini-2024-07-18\",\"system_fingerprint\":\"fp_bench\",\"choices\":[{\"index\":0,"
    "\"delta\":{\"content\":\"@0000000000000000000\"},\"logprobs\":null,\"finish_reason\":null}]}\n\n";
static const char EV_FINISH[] =
    "data: {\"id\":\"chatcmpl-paced\",\"object\":\"chat.completion.chunk\",\"created\":1700000000,"
    "\"model\":\"gpt-4o-mini-2024-07-18\",\"system_fingerprint\":\"fp_bench\",\"choices\":[{\"index\":0,"
    "\"delta\":{},\"logprobs\":null,\"finish_reason\":\"stop\"}]}\n\ndata: [DONE]\n\n";
#define STAMP_DIGITS 19
static char content_chunk[512], finish_chunk[512];
static size_t content_len, finish_len, stamp_off; /* stamp_off: first digit in content_chunk */

static llhttp_settings_t settings;
static uv_loop_t *loop;
static int nevents = 100;
static uint64_t interval_ms = 100;

struct conn {
    uv_tcp_t tcp;
    llhttp_t parser;
    struct conn *wnext;  /* next in its wheel slot */
    uint64_t due_ms;     /* when the next event is due */
    int sent;            /* content events sent in this reply */
    bool streaming;
    bool closing;
    char rbuf[65536];
};

static struct conn *wheel[WHEEL];
static uint64_t wheel_now; /* last ms processed */
static uint64_t streams_done, events_sent;

static void on_close(uv_handle_t *h) { free(h->data); }

static void conn_close(struct conn *c)
{
    if (c->closing) return;
    c->closing = true;
    /* a conn in the wheel is skipped there and freed once it leaves it */
    if (!c->streaming) uv_close((uv_handle_t *)&c->tcp, on_close);
}

static void on_write(uv_write_t *w, int status)
{
    (void)status;
    free(w);
}

static void send_static(struct conn *c, const char *p, size_t n)
{
    uv_write_t *w = malloc(sizeof(*w));
    if (!w) {
        conn_close(c);
        return;
    }
    /* the bytes are static: no copy, nothing to free but the request */
    uv_buf_t b = uv_buf_init((char *)p, (unsigned)n);
    if (uv_write(w, (uv_stream_t *)&c->tcp, &b, 1, on_write) < 0) {
        free(w);
        conn_close(c);
    }
}

/* A content event stamped with the time it is written. */
static void send_stamped(struct conn *c)
{
    struct {
        uv_write_t w; /* first: on_write frees the block through it */
        char data[sizeof(content_chunk)];
    } *m = malloc(sizeof(*m));
    if (!m) {
        conn_close(c);
        return;
    }
    memcpy(m->data, content_chunk, content_len);
    uint64_t t = uv_hrtime();
    for (size_t i = STAMP_DIGITS; i-- > 0; t /= 10) m->data[stamp_off + i] = (char)('0' + t % 10);
    uv_buf_t b = uv_buf_init(m->data, (unsigned)content_len);
    if (uv_write(&m->w, (uv_stream_t *)&c->tcp, &b, 1, on_write) < 0) {
        free(m);
        conn_close(c);
    }
}

static void wheel_add(struct conn *c)
{
    struct conn **slot = &wheel[c->due_ms % WHEEL];
    c->wnext = *slot;
    *slot = c;
}

/* One event for a stream that is due; returns true while the stream goes on. */
static bool stream_step(struct conn *c)
{
    if (c->closing) return false;
    if (c->sent < nevents) {
        send_stamped(c);
        c->sent++;
        events_sent++;
        c->due_ms += interval_ms;
        return true;
    }
    send_static(c, finish_chunk, finish_len);
    streams_done++;
    return false;
}

static void on_tick(uv_timer_t *t)
{
    (void)t;
    uint64_t now = uv_now(loop);
    while (wheel_now < now) {
        wheel_now++;
        struct conn *list = wheel[wheel_now % WHEEL];
        wheel[wheel_now % WHEEL] = NULL;
        while (list) {
            struct conn *c = list;
            list = c->wnext;
            if (c->due_ms > wheel_now) { /* a later lap of the wheel */
                wheel_add(c);
                continue;
            }
            if (stream_step(c)) {
                wheel_add(c);
            } else {
                c->streaming = false;
                if (c->closing) uv_close((uv_handle_t *)&c->tcp, on_close);
            }
        }
    }
}

static int on_message_complete(llhttp_t *p)
{
    struct conn *c = p->data;
    if (c->streaming) return HPE_USER; /* pipelining is not part of this test */
    send_static(c, HEAD, sizeof(HEAD) - 1);
    c->streaming = true;
    c->sent = 0;
    /* the first event goes out now, the next ones on the interval clock */
    c->due_ms = uv_now(loop);
    if (stream_step(c)) {
        if (c->due_ms <= wheel_now) c->due_ms = wheel_now + 1;
        wheel_add(c);
    } else {
        c->streaming = false;
    }
    return 0;
}

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
    (void)hint;
    struct conn *c = h->data;
    *buf = uv_buf_init(c->rbuf, sizeof(c->rbuf));
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    struct conn *c = s->data;
    if (n < 0) {
        conn_close(c);
        return;
    }
    if (n > 0 && llhttp_execute(&c->parser, buf->base, (size_t)n) != HPE_OK) conn_close(c);
}

static void on_connection(uv_stream_t *server, int status)
{
    if (status < 0) return;
    struct conn *c = calloc(1, sizeof(*c));
    if (!c) return;
    uv_tcp_init(loop, &c->tcp);
    c->tcp.data = c;
    if (uv_accept(server, (uv_stream_t *)&c->tcp)) {
        uv_close((uv_handle_t *)&c->tcp, on_close);
        return;
    }
    uv_tcp_nodelay(&c->tcp, 1);
    llhttp_init(&c->parser, HTTP_REQUEST, &settings);
    c->parser.data = c;
    uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
}

static void on_signal(uv_signal_t *s, int signum)
{
    (void)signum;
    fprintf(stderr, "paced_sse: %llu streams, %llu events\n", (unsigned long long)streams_done,
            (unsigned long long)events_sent);
    uv_stop(s->loop);
}

int main(int argc, char **argv)
{
    long port = 0, nports = 1;
    for (int i = 1; i + 1 < argc; i += 2) {
        long v = strtol(argv[i + 1], NULL, 10);
        if (!strcmp(argv[i], "--port")) port = v;
        else if (!strcmp(argv[i], "--ports")) nports = v;
        else if (!strcmp(argv[i], "--events")) nevents = (int)v;
        else if (!strcmp(argv[i], "--interval-ms")) interval_ms = (uint64_t)v;
        else port = -1;
    }
    if (port <= 0 || port + nports > 65536 || nports < 1 || nports > MAX_PORTS || nevents < 1 ||
        interval_ms < 1 || interval_ms >= WHEEL) {
        fprintf(stderr, "usage: paced_sse --port P [--ports N] [--events E] [--interval-ms I]\n");
        return 2;
    }
    int n1 = snprintf(content_chunk, sizeof(content_chunk), "%zx\r\n%s\r\n", sizeof(EV_CONTENT) - 1,
                      EV_CONTENT);
    int n2 = snprintf(finish_chunk, sizeof(finish_chunk), "%zx\r\n%s\r\n0\r\n\r\n",
                      sizeof(EV_FINISH) - 1, EV_FINISH);
    if (n1 <= 0 || n2 <= 0 || (size_t)n1 >= sizeof(content_chunk) || (size_t)n2 >= sizeof(finish_chunk))
        return 1;
    content_len = (size_t)n1;
    const char *at = strchr(content_chunk, '@');
    if (!at) return 1;
    stamp_off = (size_t)(at - content_chunk) + 1;
    finish_len = (size_t)n2;

    signal(SIGPIPE, SIG_IGN);
    llhttp_settings_init(&settings);
    settings.on_message_complete = on_message_complete;
    loop = uv_default_loop();
    static uv_tcp_t servers[MAX_PORTS];
    for (long i = 0; i < nports; i++) {
        struct sockaddr_in a;
        uv_ip4_addr("127.0.0.1", (int)(port + i), &a);
        uv_tcp_init(loop, &servers[i]);
        int e = uv_tcp_bind(&servers[i], (struct sockaddr *)&a, 0);
        if (!e) e = uv_listen((uv_stream_t *)&servers[i], 4096, on_connection);
        if (e) {
            fprintf(stderr, "paced_sse: listen on %ld: %s\n", port + i, uv_strerror(e));
            return 1;
        }
    }
    uv_timer_t tick;
    uv_timer_init(loop, &tick);
    wheel_now = uv_now(loop);
    uv_timer_start(&tick, on_tick, 1, 1);
    uv_signal_t sterm, sint;
    uv_signal_init(loop, &sterm);
    uv_signal_init(loop, &sint);
    uv_signal_start(&sterm, on_signal, SIGTERM);
    uv_signal_start(&sint, on_signal, SIGINT);
    uv_run(loop, UV_RUN_DEFAULT);
    /* exiting: the kernel closes the sockets */
    return 0;
}
