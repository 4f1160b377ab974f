/* libFuzzer target for the HTTP server's request path. Each input is sent over a
 * real loopback TCP connection to a bt_http_server running on this thread's
 * loop, so parsing, pipelining, limits, de-chunking, responses and connection
 * teardown all run exactly as in production.
 *
 * Input layout: byte 0 picks how the rest is cut into writes (the server sees
 * them as separate reads, so heads and chunks get split at arbitrary places);
 * the rest is the byte stream a client sends. Paths choose handler behaviour:
 * /echo, /stream, /async (answers from a timer), /hold (never answers; aborted
 * on EOF), /reset, anything else 404.
 *
 * Build: clang -fsanitize=fuzzer,address,undefined -Isrc -I<llhttp> ... or with
 * -DBT_FUZZ_STANDALONE to replay files given on the command line. */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "core/log.h"
#include "http/server.h"

/* A failed send still finishes the request (server.h): nothing to act on here. */
#define SENT(call)                   \
    do {                             \
        enum bt_err sent_ = (call);  \
        (void)sent_;                 \
    } while (0)

static uv_loop_t loop;
static struct bt_http_server *srv;
static uint16_t port;
static volatile unsigned sink_sum;

struct later {
    uv_timer_t t;
    struct bt_http_req *req;
};

static void later_closed(uv_handle_t *h)
{
    free(h->data);
}

static void later_fire(uv_timer_t *t)
{
    struct later *l = t->data;
    SENT(bt_http_respond(l->req, 200, NULL, 0, BT_STR("text/plain"), l->req->body));
    uv_close((uv_handle_t *)t, later_closed);
}

static void later_abort(struct bt_http_req *req, void *ud)
{
    (void)req;
    struct later *l = ud;
    uv_timer_stop(&l->t);
    uv_close((uv_handle_t *)&l->t, later_closed);
}

static void hold_abort(struct bt_http_req *req, void *ud)
{
    (void)req;
    (void)ud;
}

static void handler(struct bt_http_req *req, void *ud)
{
    (void)ud;
    /* touch everything the request exposes so ASan sees bad slices */
    unsigned sum = 0;
    for (size_t i = 0; i < req->nheaders; i++) {
        for (size_t j = 0; j < req->headers[i].name.len; j++) sum += (unsigned char)req->headers[i].name.p[j];
        for (size_t j = 0; j < req->headers[i].value.len; j++) sum += (unsigned char)req->headers[i].value.p[j];
    }
    for (size_t j = 0; j < req->body.len; j++) sum += (unsigned char)req->body.p[j];
    for (size_t j = 0; j < req->query.len; j++) sum += (unsigned char)req->query.p[j];
    sink_sum += sum;
    (void)bt_http_header_get(req, "content-type");

    struct bt_str p = req->path;
    if (bt_str_eq_c(p, "/stream")) {
        if (bt_http_stream_begin(req, 200, NULL, 0, BT_STR("text/event-stream")) == BT_OK) {
            SENT(bt_http_stream_write(req, req->body));
            SENT(bt_http_stream_write(req, BT_STR("data: x\n\n")));
        }
        bt_http_stream_end(req);
    } else if (bt_str_eq_c(p, "/async")) {
        struct later *l = calloc(1, sizeof(*l));
        if (!l) {
            bt_http_reset(req);
            return;
        }
        l->req = req;
        l->t.data = l;
        uv_timer_init(&loop, &l->t);
        uv_timer_start(&l->t, later_fire, 0, 0);
        bt_http_on_abort(req, later_abort, l);
    } else if (bt_str_eq_c(p, "/hold")) {
        bt_http_on_abort(req, hold_abort, NULL);
    } else if (bt_str_eq_c(p, "/reset")) {
        bt_http_reset(req);
    } else if (bt_str_eq_c(p, "/echo")) {
        struct bt_http_header h = {BT_STR("x-echo"), req->method};
        SENT(bt_http_respond(req, 200, &h, 1, BT_STR("text/plain"), req->body));
    } else {
        SENT(bt_http_respond(req, 404, NULL, 0, BT_STR("text/plain"), BT_STR("no")));
    }
}

static void setup(void)
{
    bt_log_set_level(BT_LOG_ERROR);
    uv_loop_init(&loop);
    struct bt_http_opts o = {0};
    o.max_header_bytes = 4096;
    o.max_body_bytes = 16384;
    o.header_timeout_ms = 60000;
    o.idle_timeout_ms = 60000;
    o.body_timeout_ms = 60000;
    o.handler = handler;
    srv = bt_http_server_new(&loop, &o);
    if (!srv || bt_http_server_listen(srv, "127.0.0.1", 0, false)) abort();
    port = bt_http_server_port(srv);
}

static uint64_t ms_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void spin(int n)
{
    for (int i = 0; i < n; i++) uv_run(&loop, UV_RUN_NOWAIT);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!srv) setup();
    if (size < 1) return 0;
    static const size_t cuts[8] = {1, 2, 3, 7, 16, 61, 512, (size_t)-1};
    size_t cut = cuts[data[0] & 7];
    data++;
    size--;
    /* Stay below the receive buffer: a /hold request followed by more pipelined
     * bytes than the buffer takes is never answered by design (the handler owns
     * the request and reading has stopped), which is not a bug to report. */
    if (size > 8192) size = 8192;

    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    if (fd < 0) return 0;
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&a, sizeof(a)) && errno != EINPROGRESS) {
        close(fd);
        return 0;
    }
    spin(2); /* accept */
    char sink[65536];
    uint64_t t0 = ms_now();
    size_t off = 0;
    while (off < size) {
        size_t n = size - off < cut ? size - off : cut;
        ssize_t w = send(fd, data + off, n, MSG_NOSIGNAL);
        if (w > 0) off += (size_t)w;
        else if (w < 0 && errno != EAGAIN && errno != EWOULDBLOCK) break; /* reset by server */
        spin(cut == (size_t)-1 ? 1 : 2);
        while (recv(fd, sink, sizeof(sink), 0) > 0) {
        }
        if (ms_now() - t0 > 5000) abort(); /* server stopped reading for good */
    }
    shutdown(fd, SHUT_WR);
    for (;;) {
        spin(1);
        ssize_t r = recv(fd, sink, sizeof(sink), 0);
        if (r == 0 || (r < 0 && errno != EAGAIN && errno != EWOULDBLOCK)) break;
        if (ms_now() - t0 > 5000) abort(); /* the server never closed: a hang */
    }
    close(fd);
    while (bt_http_server_connections(srv)) {
        spin(1);
        if (ms_now() - t0 > 5000) abort();
    }
    return 0;
}

#ifdef BT_FUZZ_STANDALONE
/* Replays inputs (files) without libFuzzer; closes the server at the end so
 * valgrind can check for leaks. */
static void closed(void *ud)
{
    (void)ud;
}

int main(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        FILE *f = fopen(argv[i], "rb");
        if (!f) continue;
        static uint8_t buf[1 << 20];
        size_t n = fread(buf, 1, sizeof(buf), f);
        fclose(f);
        LLVMFuzzerTestOneInput(buf, n);
    }
    if (srv) {
        bt_http_server_close(srv, closed, NULL);
        uv_run(&loop, UV_RUN_DEFAULT);
        uv_loop_close(&loop);
    }
    printf("%d inputs\n", argc - 1);
    return 0;
}
#endif
