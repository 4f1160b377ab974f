/* HTTP server tests: a real server on 127.0.0.1 (port 0) runs its loop in a
 * second thread; the test thread talks to it through plain blocking sockets,
 * so what is checked is exactly what a client sees on the wire. */
#include "harness.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "http/server.h"

/* The handlers below answer fixed requests whose sends cannot fail for a reason
 * the test would act on; a failed send still finishes the request (server.h). */
#define SENT(call)                   \
    do {                             \
        enum bt_err sent_ = (call);  \
        (void)sent_;                 \
    } while (0)

/* ---- fixture: server loop in a thread ---- */

enum { CMD_NONE, CMD_CLOSE };

static struct {
    uv_loop_t loop;
    uv_async_t async;
    pthread_t th;
    struct bt_http_server *s;
    uint16_t port;
    atomic_int cmd;
    atomic_int closed, drained, aborts, handled;
    atomic_int bad_err;       /* what /badhdr and /badstream got back */
    atomic_uint count;
    struct bt_http_req *held; /* loop thread only */
    char *big;                /* /big body */
    size_t big_len;
} F;

static void on_closed(void *ud)
{
    (void)ud;
    atomic_store(&F.closed, 1);
}

static void on_drained(void *ud)
{
    (void)ud;
    atomic_store(&F.drained, 1);
}

static void on_async(uv_async_t *a)
{
    if (atomic_exchange(&F.cmd, CMD_NONE) == CMD_CLOSE) {
        bt_http_server_close(F.s, on_closed, NULL);
        uv_close((uv_handle_t *)a, NULL);
    }
}

static void on_held_abort(struct bt_http_req *req, void *ud)
{
    (void)ud;
    if (F.held == req) F.held = NULL;
    atomic_fetch_add(&F.aborts, 1);
}

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
    struct bt_http_req *req = l->req;
    if (bt_str_eq_c(req->query, "endwith") || bt_str_eq_c(req->query, "endempty")) {
        /* outside the request's parse pass: the head is held for the body */
        struct bt_str parts[2] = {BT_STR("ab"), BT_STR("cd")};
        SENT(bt_http_stream_begin(req, 200, NULL, 0, BT_STR("text/event-stream")));
        bt_http_stream_end_with(req, parts, bt_str_eq_c(req->query, "endwith") ? 2 : 0);
    } else {
        SENT(bt_http_respond(req, 200, NULL, 0, BT_STR("text/plain"), req->query));
    }
    uv_close((uv_handle_t *)t, later_closed);
}

static void later_abort(struct bt_http_req *req, void *ud)
{
    (void)req;
    struct later *l = ud;
    atomic_fetch_add(&F.aborts, 1);
    uv_timer_stop(&l->t);
    uv_close((uv_handle_t *)&l->t, later_closed);
}

struct ticker {
    uv_timer_t t;
    struct bt_http_req *req;
    int n;
};

static void ticker_closed(uv_handle_t *h)
{
    free(h->data);
}

static void ticker_abort(struct bt_http_req *req, void *ud)
{
    (void)req;
    struct ticker *k = ud;
    atomic_fetch_add(&F.aborts, 1);
    uv_timer_stop(&k->t);
    uv_close((uv_handle_t *)&k->t, ticker_closed);
}

static void ticker_fire(uv_timer_t *t)
{
    struct ticker *k = t->data;
    if (++k->n > 50) {
        bt_http_stream_end(k->req);
        uv_timer_stop(t);
        uv_close((uv_handle_t *)t, ticker_closed);
        return;
    }
    SENT(bt_http_stream_write(k->req, BT_STR("tick")));
}

static void handler(struct bt_http_req *req, void *ud)
{
    (void)ud;
    atomic_fetch_add(&F.handled, 1);
    struct bt_str p = req->path;
    if (bt_str_eq_c(p, "/echo")) {
        struct bt_http_header h[2] = {{BT_STR("x-method"), req->method},
                                      {BT_STR("x-query"), req->query}};
        SENT(bt_http_respond(req, 200, h, 2, BT_STR("text/plain"), req->body));
    } else if (bt_str_eq_c(p, "/hdr")) {
        struct bt_str name = bt_arena_strdup(req->arena, req->query);
        struct bt_str v = bt_http_header_get(req, name.p);
        SENT(bt_http_respond(req, v.p ? 200 : 404, NULL, 0, BT_STR("text/plain"), v));
    } else if (bt_str_eq_c(p, "/count")) {
        char tmp[16];
        int n = snprintf(tmp, sizeof(tmp), "%zu", req->nheaders);
        SENT(bt_http_respond(req, 200, NULL, 0, BT_STR("text/plain"), (struct bt_str){tmp, (size_t)n}));
    } else if (bt_str_eq_c(p, "/id")) {
        SENT(bt_http_respond(req, 200, NULL, 0, BT_STR("text/plain"), bt_str_c(req->id)));
    } else if (bt_str_eq_c(p, "/stream")) {
        SENT(bt_http_stream_begin(req, 200, NULL, 0, BT_STR("text/event-stream")));
        SENT(bt_http_stream_write(req, BT_STR("hello")));
        SENT(bt_http_stream_write(req, BT_STR("")));
        SENT(bt_http_stream_write(req, BT_STR("world!")));
        bt_http_stream_end(req);
    } else if (bt_str_eq_c(p, "/hold")) {
        F.held = req;
        bt_http_on_abort(req, on_held_abort, NULL);
    } else if (bt_str_eq_c(p, "/later")) {
        struct later *l = calloc(1, sizeof(*l));
        l->req = req;
        l->t.data = l;
        uv_timer_init(&F.loop, &l->t);
        uv_timer_start(&l->t, later_fire, 5, 0);
        bt_http_on_abort(req, later_abort, l);
    } else if (bt_str_eq_c(p, "/ticker")) {
        struct ticker *k = calloc(1, sizeof(*k));
        k->req = req;
        k->t.data = k;
        uv_timer_init(&F.loop, &k->t);
        uv_timer_start(&k->t, ticker_fire, 2, 2);
        bt_http_on_abort(req, ticker_abort, k);
        SENT(bt_http_stream_begin(req, 200, NULL, 0, BT_STR("text/plain")));
    } else if (bt_str_eq_c(p, "/reset")) {
        bt_http_reset(req);
    } else if (bt_str_eq_c(p, "/big")) {
        SENT(bt_http_respond(req, 200, NULL, 0, BT_STR("application/octet-stream"),
                        (struct bt_str){F.big, F.big_len}));
    } else if (bt_str_eq_c(p, "/drain")) {
        bt_http_server_drain(F.s, on_drained, NULL);
        SENT(bt_http_respond(req, 200, NULL, 0, BT_STR("text/plain"), BT_STR("draining")));
    } else if (bt_str_eq_c(p, "/badhdr")) {
        /* refused, answered 500 by the server, and the request is finished */
        struct bt_http_header h = {BT_STR("x-evil"), BT_STR("a\r\nSet-Cookie: x")};
        atomic_store(&F.bad_err, bt_http_respond(req, 200, &h, 1, BT_STR("text/plain"),
                                                 BT_STR("no")));
    } else if (bt_str_eq_c(p, "/badstream")) {
        struct bt_http_header h = {BT_STR("x-evil"), BT_STR("a\0b")};
        h.value.len = 3;
        atomic_store(&F.bad_err, bt_http_stream_begin(req, 200, &h, 1,
                                                      BT_STR("text/event-stream")));
    } else {
        SENT(bt_http_respond(req, 404, NULL, 0, BT_STR("text/plain"), BT_STR("nope")));
    }
}

static void *loop_main(void *arg)
{
    (void)arg;
    uv_run(&F.loop, UV_RUN_DEFAULT);
    return NULL;
}

/* The server asks its owner for error bodies (the front end in baton): this one
 * writes the status and message it was given, so the tests see both arrive. */
static const char *test_format_error(struct bt_buf *out, struct bt_str path, int status,
                                     const char *msg)
{
    (void)path;
    bt_buf_printf(out, "{\"error\":{\"message\":\"%s\",\"status\":%d,\"param\":null,\"code\":null}}",
                  msg, status);
    return "application/json";
}

static struct bt_http_opts base_opts(void)
{
    struct bt_http_opts o = {0};
    o.max_header_bytes = 8192;
    o.max_body_bytes = 1 << 20;
    o.header_timeout_ms = 3000;
    o.idle_timeout_ms = 3000;
    o.body_timeout_ms = 3000;
    o.conn_count = &F.count;
    o.handler = handler;
    o.format_error = test_format_error;
    return o;
}

static bool start(const struct bt_http_opts *o)
{
    atomic_store(&F.cmd, CMD_NONE);
    atomic_store(&F.closed, 0);
    atomic_store(&F.drained, 0);
    atomic_store(&F.aborts, 0);
    atomic_store(&F.handled, 0);
    atomic_store(&F.count, 0);
    F.held = NULL;
    if (uv_loop_init(&F.loop)) return false;
    F.s = bt_http_server_new(&F.loop, o);
    if (!F.s) return false;
    if (bt_http_server_listen(F.s, "127.0.0.1", 0, false)) return false;
    F.port = bt_http_server_port(F.s);
    uv_async_init(&F.loop, &F.async, on_async);
    return F.port != 0 && pthread_create(&F.th, NULL, loop_main, NULL) == 0;
}

/* Closes the server from its own thread and checks the loop ends clean. */
static void stop(void)
{
    atomic_store(&F.cmd, CMD_CLOSE);
    uv_async_send(&F.async);
    pthread_join(F.th, NULL);
    CHECK_INT(atomic_load(&F.closed), 1);
    CHECK_INT(uv_loop_close(&F.loop), 0);
}

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static bool wait_for(atomic_int *v, int want, int ms)
{
    for (int i = 0; i < ms; i++) {
        if (atomic_load(v) == want) return true;
        sleep_ms(1);
    }
    return atomic_load(v) == want;
}

/* ---- client ---- */

struct cli {
    int fd;
    char *buf;
    size_t len, cap;
};

static bool cli_open(struct cli *c)
{
    memset(c, 0, sizeof(*c));
    c->fd = socket(AF_INET, SOCK_STREAM, 0);
    if (c->fd < 0) return false;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(F.port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    struct timeval tv = {5, 0};
    setsockopt(c->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (connect(c->fd, (struct sockaddr *)&a, sizeof(a))) {
        close(c->fd);
        c->fd = -1;
        return false;
    }
    return true;
}

static void cli_close(struct cli *c)
{
    if (c->fd >= 0) close(c->fd);
    free(c->buf);
    memset(c, 0, sizeof(*c));
    c->fd = -1;
}

static void cli_sendn(struct cli *c, const char *p, size_t n)
{
    while (n) {
        ssize_t w = send(c->fd, p, n, MSG_NOSIGNAL);
        if (w <= 0) return;
        p += w;
        n -= (size_t)w;
    }
}

static void cli_send(struct cli *c, const char *s)
{
    cli_sendn(c, s, strlen(s));
}

/* Reads more bytes; 0 on EOF, -1 on error/timeout (errno kept). */
static ssize_t cli_fill(struct cli *c)
{
    if (c->cap - c->len < 65536) {
        size_t cap = c->cap ? c->cap * 2 : 131072;
        c->buf = realloc(c->buf, cap);
        c->cap = cap;
    }
    ssize_t n = recv(c->fd, c->buf + c->len, c->cap - c->len, 0);
    if (n > 0) c->len += (size_t)n;
    return n;
}

static void cli_consume(struct cli *c, size_t n)
{
    memmove(c->buf, c->buf + n, c->len - n);
    c->len -= n;
}

/* True when the server closed the connection (EOF) with no more bytes. */
static bool cli_eof(struct cli *c)
{
    if (c->len) return false;
    return cli_fill(c) == 0;
}

struct resp {
    int status;
    char *head;
    char *body;     /* de-chunked */
    size_t body_len;
    char *raw;      /* body bytes as sent */
    size_t raw_len;
};

static void resp_free(struct resp *r)
{
    free(r->head);
    free(r->body);
    free(r->raw);
    memset(r, 0, sizeof(*r));
}

/* Value of response header `name` (NUL-terminated copy in `out`), or NULL. */
static const char *resp_hdr(const struct resp *r, const char *name, char *out, size_t cap)
{
    size_t nl = strlen(name);
    for (const char *p = r->head ? strstr(r->head, "\r\n") : NULL; p; p = strstr(p + 2, "\r\n")) {
        const char *l = p + 2;
        if (strncasecmp(l, name, nl) == 0 && l[nl] == ':') {
            const char *v = l + nl + 1;
            while (*v == ' ') v++;
            const char *e = strstr(v, "\r\n");
            size_t n = (size_t)(e - v);
            if (n >= cap) n = cap - 1;
            memcpy(out, v, n);
            out[n] = '\0';
            return out;
        }
    }
    return NULL;
}

static bool need(struct cli *c, size_t n)
{
    while (c->len < n)
        if (cli_fill(c) <= 0) return false;
    return true;
}

/* Reads one response. `no_body` for HEAD requests. */
static bool cli_response(struct cli *c, struct resp *r, bool no_body)
{
    memset(r, 0, sizeof(*r));
    char *e;
    while (!(e = c->len ? memmem(c->buf, c->len, "\r\n\r\n", 4) : NULL))
        if (cli_fill(c) <= 0) return false;
    size_t hl = (size_t)(e - c->buf) + 4;
    r->head = strndup(c->buf, hl);
    cli_consume(c, hl);
    if (sscanf(r->head, "HTTP/1.1 %d", &r->status) != 1) return false;
    char v[64];
    if (no_body || r->status == 100 || r->status == 204 || r->status == 304) return true;
    if (resp_hdr(r, "content-length", v, sizeof(v))) {
        size_t n = (size_t)strtoull(v, NULL, 10);
        if (!need(c, n)) return false;
        r->body = malloc(n + 1);
        memcpy(r->body, c->buf, n);
        r->body[n] = '\0';
        r->body_len = n;
        r->raw = strndup(r->body, n);
        r->raw_len = n;
        cli_consume(c, n);
        return true;
    }
    if (resp_hdr(r, "transfer-encoding", v, sizeof(v)) && strcmp(v, "chunked") == 0) {
        size_t off = 0;
        r->body = malloc(1);
        for (;;) {
            char *crlf;
            while (!(crlf = memmem(c->buf + off, c->len - off, "\r\n", 2)))
                if (cli_fill(c) <= 0) return false;
            size_t sz = (size_t)strtoull(c->buf + off, NULL, 16);
            size_t line = (size_t)(crlf - (c->buf + off)) + 2;
            if (!need(c, off + line + sz + 2)) return false;
            if (memcmp(c->buf + off + line + sz, "\r\n", 2)) return false;
            r->body = realloc(r->body, r->body_len + sz + 1);
            memcpy(r->body + r->body_len, c->buf + off + line, sz);
            r->body_len += sz;
            r->body[r->body_len] = '\0';
            off += line + sz + 2;
            if (sz == 0) break;
        }
        r->raw = strndup(c->buf, off);
        r->raw_len = off;
        cli_consume(c, off);
        return true;
    }
    /* close-delimited */
    while (cli_fill(c) > 0) {
    }
    r->body = strndup(c->buf, c->len);
    r->body_len = c->len;
    r->raw = strndup(c->buf, c->len);
    r->raw_len = c->len;
    cli_consume(c, c->len);
    return true;
}

/* One request on a fresh connection; returns the response. */
static bool roundtrip(const char *req, struct resp *r)
{
    struct cli c;
    if (!cli_open(&c)) return false;
    cli_send(&c, req);
    bool ok = cli_response(&c, r, false);
    cli_close(&c);
    return ok;
}

static bool is_hex24(const char *s)
{
    if (strlen(s) != 24) return false;
    for (int i = 0; i < 24; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f'))) return false;
    return true;
}

/* ---- tests ---- */

TEST(status_text)
{
    CHECK_STR(bt_http_status_text(200), "OK");
    CHECK_STR(bt_http_status_text(404), "Not Found");
    CHECK_STR(bt_http_status_text(413), "Payload Too Large");
    CHECK_STR(bt_http_status_text(431), "Request Header Fields Too Large");
    CHECK_STR(bt_http_status_text(503), "Service Unavailable");
    CHECK_STR(bt_http_status_text(599), "Server Error");
    CHECK_STR(bt_http_status_text(299), "OK");
}

TEST(new_rejects_bad_args)
{
    uv_loop_t loop;
    uv_loop_init(&loop);
    struct bt_http_opts o = {0};
    CHECK(bt_http_server_new(&loop, &o) == NULL); /* no handler */
    CHECK(bt_http_server_new(NULL, &o) == NULL);
    o.handler = handler;
    struct bt_http_server *s = bt_http_server_new(&loop, &o);
    REQUIRE(s != NULL);
    CHECK_INT(bt_http_server_listen(s, "not-an-ip", 0, false), BT_EIO);
    CHECK_INT(bt_http_server_listen(s, "127.0.0.1", 0, true), BT_OK);
    CHECK_INT(bt_http_server_listen(s, "127.0.0.1", 0, true), BT_EINVAL); /* twice */
    uint16_t port = bt_http_server_port(s);
    CHECK(port != 0);
    CHECK_INT(bt_http_server_connections(s), 0);
    /* SO_REUSEPORT: a second worker shares the port; a plain socket may not */
    struct bt_http_server *s2 = bt_http_server_new(&loop, &o);
    struct bt_http_server *s3 = bt_http_server_new(&loop, &o);
    REQUIRE(s2 && s3);
    CHECK_INT(bt_http_server_listen(s2, "127.0.0.1", port, true), BT_OK);
    CHECK_INT(bt_http_server_port(s2), port);
    CHECK_INT(bt_http_server_listen(s3, "127.0.0.1", port, false), BT_EIO);
    atomic_store(&F.closed, 0);
    bt_http_server_close(s, on_closed, NULL);
    bt_http_server_close(s2, NULL, NULL);
    bt_http_server_close(s3, NULL, NULL); /* never listened: still closes clean */
    uv_run(&loop, UV_RUN_DEFAULT);
    CHECK_INT(atomic_load(&F.closed), 1);
    CHECK_INT(uv_loop_close(&loop), 0);
}

TEST(simple_get_and_post)
{
    struct bt_http_opts o = base_opts();
    REQUIRE(start(&o));
    struct resp r;
    char v[128];
    CHECK(roundtrip("GET /echo?a=1&b=2 HTTP/1.1\r\nHost: x\r\n\r\n", &r));
    CHECK_INT(r.status, 200);
    CHECK_STR(resp_hdr(&r, "x-query", v, sizeof(v)), "a=1&b=2");
    CHECK_STR(resp_hdr(&r, "x-method", v, sizeof(v)), "GET");
    CHECK_STR(resp_hdr(&r, "content-length", v, sizeof(v)), "0");
    CHECK_STR(resp_hdr(&r, "content-type", v, sizeof(v)), "text/plain");
    CHECK(resp_hdr(&r, "date", v, sizeof(v)) && strlen(v) == 29 && strstr(v, " GMT"));
    CHECK(resp_hdr(&r, "x-request-id", v, sizeof(v)) && is_hex24(v));
    CHECK(resp_hdr(&r, "connection", v, sizeof(v)) == NULL); /* 1.1 keep-alive default */
    CHECK(strncmp(r.head, "HTTP/1.1 200 OK\r\n", 17) == 0);
    resp_free(&r);

    CHECK(roundtrip("POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 11\r\n\r\nhello world",
                    &r));
    CHECK_INT(r.status, 200);
    CHECK_STR(r.body, "hello world");
    CHECK_STR(resp_hdr(&r, "x-method", v, sizeof(v)), "POST");
    resp_free(&r);

    CHECK(roundtrip("GET /missing HTTP/1.1\r\n\r\n", &r));
    CHECK_INT(r.status, 404);
    CHECK(strncmp(r.head, "HTTP/1.1 404 Not Found\r\n", 24) == 0);
    resp_free(&r);

    /* header lookup is case-insensitive; values are trimmed */
    CHECK(roundtrip("GET /hdr?x-thing HTTP/1.1\r\nX-Thing:   spaced value  \r\n\r\n", &r));
    CHECK_INT(r.status, 200);
    CHECK_STR(r.body, "spaced value");
    resp_free(&r);
    CHECK(roundtrip("GET /hdr?x-empty HTTP/1.1\r\nX-Empty:\r\nX-After: 1\r\n\r\n", &r));
    CHECK_INT(r.status, 200);
    CHECK_INT(r.body_len, 0);
    resp_free(&r);
    CHECK(roundtrip("GET /hdr?x-after HTTP/1.1\r\nX-Empty:\r\nX-After: 1\r\n\r\n", &r));
    CHECK_STR(r.body, "1");
    resp_free(&r);
    CHECK(roundtrip("GET /count HTTP/1.1\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n", &r));
    CHECK_STR(r.body, "3");
    resp_free(&r);
    stop();
}

TEST(keep_alive_and_versions)
{
    struct bt_http_opts o = base_opts();
    REQUIRE(start(&o));
    struct cli c;
    struct resp r;
    char v[64];
    REQUIRE(cli_open(&c));
    for (int i = 0; i < 5; i++) {
        cli_send(&c, "POST /echo HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc");
        CHECK(cli_response(&c, &r, false));
        CHECK_INT(r.status, 200);
        CHECK_STR(r.body, "abc");
        resp_free(&r);
    }
    /* HEAD: length announced, no body; the connection stays usable */
    cli_send(&c, "HEAD /echo HTTP/1.1\r\nContent-Length: 0\r\n\r\n");
    CHECK(cli_response(&c, &r, true));
    CHECK_INT(r.status, 200);
    resp_free(&r);
    cli_send(&c, "GET /echo?after-head HTTP/1.1\r\nConnection: close\r\n\r\n");
    CHECK(cli_response(&c, &r, false));
    CHECK_STR(resp_hdr(&r, "x-query", v, sizeof(v)), "after-head");
    CHECK_STR(resp_hdr(&r, "connection", v, sizeof(v)), "close");
    resp_free(&r);
    CHECK(cli_eof(&c));
    cli_close(&c);

    /* HTTP/1.0 closes by default */
    REQUIRE(cli_open(&c));
    cli_send(&c, "GET /echo HTTP/1.0\r\n\r\n");
    CHECK(cli_response(&c, &r, false));
    CHECK_STR(resp_hdr(&r, "connection", v, sizeof(v)), "close");
    resp_free(&r);
    CHECK(cli_eof(&c));
    cli_close(&c);

    /* ... and keeps alive when asked */
    REQUIRE(cli_open(&c));
    cli_send(&c, "GET /echo?one HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    CHECK(cli_response(&c, &r, false));
    CHECK_STR(resp_hdr(&r, "connection", v, sizeof(v)), "keep-alive");
    resp_free(&r);
    cli_send(&c, "GET /echo?two HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    CHECK(cli_response(&c, &r, false));
    CHECK_STR(resp_hdr(&r, "x-query", v, sizeof(v)), "two");
    resp_free(&r);
    cli_close(&c);

    /* Upgrade requests are answered as plain HTTP/1.1; the connection goes on */
    REQUIRE(cli_open(&c));
    cli_send(&c, "GET /echo?up HTTP/1.1\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n"
                 "GET /echo?next HTTP/1.1\r\n\r\n");
    CHECK(cli_response(&c, &r, false));
    CHECK_STR(resp_hdr(&r, "x-query", v, sizeof(v)), "up");
    resp_free(&r);
    CHECK(cli_response(&c, &r, false));
    CHECK_STR(resp_hdr(&r, "x-query", v, sizeof(v)), "next");
    resp_free(&r);
    cli_close(&c);
    stop();
}

TEST(pipelined_100_in_order)
{
    struct bt_http_opts o = base_opts();
    REQUIRE(start(&o));
    struct cli c;
    REQUIRE(cli_open(&c));
    char *all = malloc(100 * 128);
    size_t n = 0;
    for (int i = 0; i < 100; i++) {
        if (i % 2)
            n += (size_t)snprintf(all + n, 128, "GET /echo?i=%d HTTP/1.1\r\nHost: x\r\n\r\n", i);
        else
            n += (size_t)snprintf(all + n, 128,
                                  "POST /echo?i=%d HTTP/1.1\r\nContent-Length: %d\r\n\r\nb%d",
                                  i, i < 10 ? 2 : 3, i);
    }
    cli_sendn(&c, all, n);
    free(all);
    int in_order = 0;
    for (int i = 0; i < 100; i++) {
        struct resp r;
        char v[32], want[32];
        if (!cli_response(&c, &r, false)) break;
        snprintf(want, sizeof(want), "i=%d", i);
        bool ok = r.status == 200 && resp_hdr(&r, "x-query", v, sizeof(v)) && !strcmp(v, want);
        if (i % 2 == 0) {
            snprintf(want, sizeof(want), "b%d", i);
            ok = ok && r.body && !strcmp(r.body, want);
        }
        in_order += ok;
        resp_free(&r);
    }
    CHECK_INT(in_order, 100);
    cli_close(&c);

    /* async handlers: answers still come in request order */
    REQUIRE(cli_open(&c));
    char buf[64 * 20];
    n = 0;
    for (int i = 0; i < 20; i++)
        n += (size_t)snprintf(buf + n, 64, "GET /later?%d HTTP/1.1\r\n\r\n", i);
    cli_sendn(&c, buf, n);
    in_order = 0;
    for (int i = 0; i < 20; i++) {
        struct resp r;
        char want[16];
        if (!cli_response(&c, &r, false)) break;
        snprintf(want, sizeof(want), "%d", i);
        in_order += r.body && !strcmp(r.body, want);
        resp_free(&r);
    }
    CHECK_INT(in_order, 20);
    cli_close(&c);
    stop();
}

TEST(pipelined_overflow_reads_are_bounded)
{
    /* Many pipelined requests behind a slow (async) handler: more bytes than the
     * receive buffer holds. The server must stop reading, then resume. */
    struct bt_http_opts o = base_opts();
    REQUIRE(start(&o));
    struct cli c;
    REQUIRE(cli_open(&c));
    size_t cap = 400 * 200, n = 0;
    char *all = malloc(cap);
    for (int i = 0; i < 400; i++)
        n += (size_t)snprintf(all + n, cap - n,
                              "GET /later?%d HTTP/1.1\r\nX-Pad: %0120d\r\n\r\n", i, i);
    cli_sendn(&c, all, n);
    free(all);
    int ok = 0;
    for (int i = 0; i < 400; i++) {
        struct resp r;
        char want[16];
        if (!cli_response(&c, &r, false)) break;
        snprintf(want, sizeof(want), "%d", i);
        ok += r.body && !strcmp(r.body, want);
        resp_free(&r);
    }
    CHECK_INT(ok, 400);
    cli_close(&c);
    stop();
}

TEST(chunked_request_body)
{
    struct bt_http_opts o = base_opts();
    REQUIRE(start(&o));
    struct resp r;
    CHECK(roundtrip("POST /echo HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
                    "5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n",
                    &r));
    CHECK_INT(r.status, 200);
    CHECK_STR(r.body, "hello world");
    resp_free(&r);

    /* chunks arriving in many small reads, followed by a pipelined request */
    struct cli c;
    REQUIRE(cli_open(&c));
    const char *parts[] = {"POST /echo HTTP/1.1\r\nTransfer-",
                           "Encoding: chunked\r\n\r\n3\r",
                           "\nabc\r\n1",
                           "0\r\n0123456789abcdef\r\n",
                           "0\r\n\r",
                           "\nGET /echo?next HTTP/1.1\r\n\r\n"};
    for (size_t i = 0; i < sizeof(parts) / sizeof(parts[0]); i++) {
        cli_send(&c, parts[i]);
        sleep_ms(5);
    }
    CHECK(cli_response(&c, &r, false));
    CHECK_STR(r.body, "abc0123456789abcdef");
    resp_free(&r);
    char v[32];
    CHECK(cli_response(&c, &r, false));
    CHECK_STR(resp_hdr(&r, "x-query", v, sizeof(v)), "next");
    resp_free(&r);
    cli_close(&c);

    /* a large chunked body (grows the buffer) */
    REQUIRE(cli_open(&c));
    cli_send(&c, "POST /echo HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n");
    char chunk[1000 + 16];
    memset(chunk, 'z', sizeof(chunk));
    for (int i = 0; i < 300; i++) {
        cli_sendn(&c, "3e8\r\n", 5);
        cli_sendn(&c, chunk, 1000);
        cli_sendn(&c, "\r\n", 2);
    }
    cli_send(&c, "0\r\n\r\n");
    CHECK(cli_response(&c, &r, false));
    CHECK_INT(r.status, 200);
    CHECK_INT(r.body_len, 300000);
    CHECK(r.body && r.body[0] == 'z' && r.body[299999] == 'z');
    resp_free(&r);
    cli_close(&c);
    stop();
}

static void check_error_json(const struct resp *r, int status, const char *needle)
{
    char v[64];
    CHECK_INT(r->status, status);
    CHECK_STR(resp_hdr(r, "content-type", v, sizeof(v)), "application/json");
    CHECK_STR(resp_hdr(r, "connection", v, sizeof(v)), "close");
    CHECK(resp_hdr(r, "x-request-id", v, sizeof(v)) != NULL);
    CHECK(r->body && strncmp(r->body, "{\"error\":{\"message\":\"", 21) == 0);
    CHECK(r->body && strstr(r->body, "\"param\":null,\"code\":null}}"));
    char st[32];
    snprintf(st, sizeof(st), "\"status\":%d,", status);
    CHECK(r->body && strstr(r->body, st));
    if (needle) CHECK(r->body && strstr(r->body, needle));
}

TEST(body_limits_413)
{
    struct bt_http_opts o = base_opts();
    o.max_body_bytes = 1000;
    REQUIRE(start(&o));
    struct cli c;
    struct resp r;
    /* rejected from Content-Length alone, before any body byte */
    REQUIRE(cli_open(&c));
    cli_send(&c, "POST /echo HTTP/1.1\r\nContent-Length: 1001\r\n\r\n");
    CHECK(cli_response(&c, &r, false));
    check_error_json(&r, 413, "too large");
    CHECK(strstr(r.body, "\"status\":413,") != NULL); /* the formatter was asked */
    resp_free(&r);
    CHECK(cli_eof(&c));
    cli_close(&c);
    /* exactly at the limit is fine */
    REQUIRE(cli_open(&c));
    char body[1000];
    memset(body, 'q', sizeof(body));
    cli_send(&c, "POST /echo HTTP/1.1\r\nContent-Length: 1000\r\n\r\n");
    cli_sendn(&c, body, sizeof(body));
    CHECK(cli_response(&c, &r, false));
    CHECK_INT(r.status, 200);
    CHECK_INT(r.body_len, 1000);
    resp_free(&r);
    cli_close(&c);
    /* chunked overflow */
    REQUIRE(cli_open(&c));
    cli_send(&c, "POST /echo HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n");
    for (int i = 0; i < 3; i++) {
        cli_send(&c, "190\r\n"); /* 400 bytes */
        cli_sendn(&c, body, 400);
        cli_send(&c, "\r\n");
    }
    cli_send(&c, "0\r\n\r\n");
    CHECK(cli_response(&c, &r, false));
    check_error_json(&r, 413, NULL);
    resp_free(&r);
    cli_close(&c);
    /* a huge Content-Length (no overflow tricks) */
    CHECK(roundtrip("POST /echo HTTP/1.1\r\nContent-Length: 99999999999999\r\n\r\n", &r));
    CHECK_INT(r.status, 413);
    resp_free(&r);
    stop();
}

TEST(head_limit_431)
{
    struct bt_http_opts o = base_opts();
    o.max_header_bytes = 1024;
    REQUIRE(start(&o));
    struct resp r;
    char big[2100];
    int n = snprintf(big, sizeof(big), "GET /echo HTTP/1.1\r\nX-Big: %01900d\r\n\r\n", 7);
    REQUIRE(n > 0);
    CHECK(roundtrip(big, &r));
    check_error_json(&r, 431, NULL);
    resp_free(&r);
    /* a long URL counts too */
    n = snprintf(big, sizeof(big), "GET /echo?%01900d HTTP/1.1\r\n\r\n", 7);
    CHECK(roundtrip(big, &r));
    CHECK_INT(r.status, 431);
    resp_free(&r);
    /* a head that never ends, sent slowly in pieces */
    struct cli c;
    REQUIRE(cli_open(&c));
    cli_send(&c, "GET /echo HTTP/1.1\r\n");
    for (int i = 0; i < 40; i++) cli_send(&c, "X-Fill: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n");
    CHECK(cli_response(&c, &r, false));
    CHECK_INT(r.status, 431);
    resp_free(&r);
    cli_close(&c);
    /* under the limit passes */
    n = snprintf(big, sizeof(big), "GET /hdr?x-big HTTP/1.1\r\nX-Big: %0900d\r\n\r\n", 7);
    CHECK(roundtrip(big, &r));
    CHECK_INT(r.status, 200);
    CHECK_INT(r.body_len, 900);
    resp_free(&r);
    stop();
}

TEST(malformed_and_smuggling_400)
{
    struct bt_http_opts o = base_opts();
    REQUIRE(start(&o));
    const char *bad[] = {
        "HELLO WORLD\r\n\r\n",
        "GET / HTTP/1.1\r\nBad Header\r\n\r\n",
        "GET / HTTP/9.9\r\n\r\n",
        "\x01\x02\x03\x04garbage\r\n\r\n",
        /* smuggling: both framings */
        "POST /echo HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        "POST /echo HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n",
        /* duplicate, differing Content-Length */
        "POST /echo HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
        "POST /echo HTTP/1.1\r\nContent-Length: 5, 6\r\n\r\nhello!",
        "POST /echo HTTP/1.1\r\nContent-Length: -1\r\n\r\n",
        /* chunked not last */
        "POST /echo HTTP/1.1\r\nTransfer-Encoding: chunked, gzip\r\n\r\n0\r\n\r\n",
        "POST /echo HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n",
        /* bad chunk framing */
        "POST /echo HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n",
        "POST /echo HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcX\r\n0\r\n\r\n",
        /* NUL / bare CR in a header value */
        "GET / HTTP/1.1\r\nX: a\rb\r\n\r\n",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct resp r;
        bool got = roundtrip(bad[i], &r);
        CHECK(got);
        if (!got || r.status != 400) {
            fprintf(stderr, "  case %zu: status %d\n", i, r.status);
            CHECK_INT(r.status, 400);
        } else {
            check_error_json(&r, 400, "malformed");
        }
        resp_free(&r);
    }
    /* an earlier good request on the same connection is still answered */
    struct cli c;
    struct resp r;
    REQUIRE(cli_open(&c));
    cli_send(&c, "GET /echo?ok HTTP/1.1\r\n\r\nBROKEN\r\n\r\n");
    CHECK(cli_response(&c, &r, false));
    CHECK_INT(r.status, 200);
    resp_free(&r);
    CHECK(cli_response(&c, &r, false));
    CHECK_INT(r.status, 400);
    resp_free(&r);
    CHECK(cli_eof(&c));
    cli_close(&c);
    CHECK_INT(atomic_load(&F.handled), 1);
    stop();
}

TEST(timeouts)
{
    struct bt_http_opts o = base_opts();
    o.header_timeout_ms = 150;
    o.body_timeout_ms = 150;
    o.idle_timeout_ms = 150;
    REQUIRE(start(&o));
    struct cli c;
    struct resp r;
    /* partial head -> 408 and close */
    REQUIRE(cli_open(&c));
    uint64_t t0 = now_ms();
    cli_send(&c, "GET /echo HTTP/1.1\r\nHost: x\r\n");
    CHECK(cli_response(&c, &r, false));
    check_error_json(&r, 408, "timed out");
    CHECK(now_ms() - t0 >= 100);
    resp_free(&r);
    CHECK(cli_eof(&c));
    cli_close(&c);
    /* the header timeout covers the whole head, not the gaps between bytes */
    REQUIRE(cli_open(&c));
    t0 = now_ms();
    cli_send(&c, "GET /echo HTTP/1.1\r\n");
    for (int i = 0; i < 30; i++) { /* 1.2 s of trickle if gaps reset the clock */
        struct pollfd pfd = {c.fd, POLLIN, 0};
        if (poll(&pfd, 1, 40) == 1) break; /* the 408 is there */
        cli_send(&c, "X: y\r\n");
    }
    CHECK(cli_response(&c, &r, false));
    CHECK_INT(r.status, 408);
    CHECK(now_ms() - t0 < 1000);
    resp_free(&r);
    cli_close(&c);
    /* body stall -> 408 */
    REQUIRE(cli_open(&c));
    cli_send(&c, "POST /echo HTTP/1.1\r\nContent-Length: 10\r\n\r\nabc");
    CHECK(cli_response(&c, &r, false));
    CHECK_INT(r.status, 408);
    resp_free(&r);
    cli_close(&c);
    /* a slow body that keeps moving is fine */
    REQUIRE(cli_open(&c));
    cli_send(&c, "POST /echo HTTP/1.1\r\nContent-Length: 5\r\n\r\n");
    for (int i = 0; i < 5; i++) {
        sleep_ms(40); /* each gap < body timeout, the sum is not */
        cli_send(&c, "x");
    }
    CHECK(cli_response(&c, &r, false));
    CHECK_INT(r.status, 200);
    CHECK_STR(r.body, "xxxxx");
    resp_free(&r);
    /* keep-alive idle -> silent close */
    t0 = now_ms();
    CHECK(cli_eof(&c));
    CHECK(now_ms() - t0 >= 100);
    cli_close(&c);
    /* a connection that never sends anything is closed silently */
    REQUIRE(cli_open(&c));
    CHECK(cli_eof(&c));
    cli_close(&c);
    stop();
}

TEST(connection_limit_503)
{
    struct bt_http_opts o = base_opts();
    o.max_connections = 2;
    REQUIRE(start(&o));
    struct cli a, b, c;
    struct resp r;
    REQUIRE(cli_open(&a));
    REQUIRE(cli_open(&b));
    cli_send(&a, "GET /echo HTTP/1.1\r\n\r\n");
    cli_send(&b, "GET /echo HTTP/1.1\r\n\r\n");
    CHECK(cli_response(&a, &r, false));
    CHECK_INT(r.status, 200);
    resp_free(&r);
    CHECK(cli_response(&b, &r, false));
    CHECK_INT(r.status, 200);
    resp_free(&r);
    CHECK_INT(atomic_load(&F.count), 2);
    REQUIRE(cli_open(&c));
    cli_send(&c, "GET /echo HTTP/1.1\r\n\r\n");
    CHECK(cli_response(&c, &r, false));
    check_error_json(&r, 503, "too many connections");
    CHECK(strstr(r.body, "\"status\":503,") != NULL);
    resp_free(&r);
    CHECK(cli_eof(&c));
    cli_close(&c);
    cli_close(&a);
    /* a slot frees up once a connection is gone */
    for (int i = 0; i < 1000 && atomic_load(&F.count) != 1; i++) sleep_ms(1);
    CHECK_INT(atomic_load(&F.count), 1);
    REQUIRE(cli_open(&c));
    cli_send(&c, "GET /echo HTTP/1.1\r\n\r\n");
    CHECK(cli_response(&c, &r, false));
    CHECK_INT(r.status, 200);
    resp_free(&r);
    cli_close(&c);
    cli_close(&b);
    for (int i = 0; i < 1000 && atomic_load(&F.count) != 0; i++) sleep_ms(1);
    CHECK_INT(atomic_load(&F.count), 0);
    stop();
}

TEST(streaming_response)
{
    struct bt_http_opts o = base_opts();
    REQUIRE(start(&o));
    struct cli c;
    struct resp r;
    char v[64];
    REQUIRE(cli_open(&c));
    cli_send(&c, "GET /stream HTTP/1.1\r\n\r\n");
    CHECK(cli_response(&c, &r, false));
    CHECK_INT(r.status, 200);
    CHECK_STR(resp_hdr(&r, "transfer-encoding", v, sizeof(v)), "chunked");
    CHECK(resp_hdr(&r, "content-length", v, sizeof(v)) == NULL);
    CHECK_STR(resp_hdr(&r, "content-type", v, sizeof(v)), "text/event-stream");
    CHECK_STR(r.raw, "5\r\nhello\r\n6\r\nworld!\r\n0\r\n\r\n");
    CHECK_STR(r.body, "helloworld!");
    resp_free(&r);
    /* the connection is reusable after a stream */
    cli_send(&c, "GET /echo?again HTTP/1.1\r\n\r\n");
    CHECK(cli_response(&c, &r, false));
    CHECK_STR(resp_hdr(&r, "x-query", v, sizeof(v)), "again");
    resp_free(&r);
    cli_close(&c);
    /* HTTP/1.0 keep-alive client: close-delimited stream */
    REQUIRE(cli_open(&c));
    cli_send(&c, "GET /stream HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    CHECK(cli_response(&c, &r, false));
    CHECK(resp_hdr(&r, "transfer-encoding", v, sizeof(v)) == NULL);
    CHECK_STR(resp_hdr(&r, "connection", v, sizeof(v)), "close");
    CHECK_STR(r.body, "helloworld!");
    resp_free(&r);
    cli_close(&c);
    /* the last chunk and the end of the body in one call, the head held for them */
    REQUIRE(cli_open(&c));
    cli_send(&c, "GET /later?endwith HTTP/1.1\r\n\r\n");
    CHECK(cli_response(&c, &r, false));
    CHECK_INT(r.status, 200);
    CHECK_STR(resp_hdr(&r, "transfer-encoding", v, sizeof(v)), "chunked");
    CHECK_STR(r.raw, "4\r\nabcd\r\n0\r\n\r\n");
    resp_free(&r);
    cli_send(&c, "GET /later?endempty HTTP/1.1\r\n\r\n");
    CHECK(cli_response(&c, &r, false));
    CHECK_STR(r.raw, "0\r\n\r\n");
    resp_free(&r);
    cli_send(&c, "GET /echo?after HTTP/1.1\r\n\r\n");
    CHECK(cli_response(&c, &r, false));
    CHECK_STR(resp_hdr(&r, "x-query", v, sizeof(v)), "after");
    resp_free(&r);
    cli_close(&c);
    REQUIRE(cli_open(&c));
    cli_send(&c, "GET /later?endwith HTTP/1.0\r\n\r\n");
    CHECK(cli_response(&c, &r, false));
    CHECK(resp_hdr(&r, "transfer-encoding", v, sizeof(v)) == NULL);
    CHECK_STR(r.body, "abcd");
    resp_free(&r);
    cli_close(&c);
    stop();
}

TEST(big_response_partial_writes)
{
    struct bt_http_opts o = base_opts();
    F.big_len = 8u << 20;
    F.big = malloc(F.big_len);
    for (size_t i = 0; i < F.big_len; i++) F.big[i] = (char)('a' + i % 26);
    REQUIRE(start(&o));
    struct cli c;
    struct resp r;
    REQUIRE(cli_open(&c));
    cli_send(&c, "GET /big HTTP/1.1\r\n\r\nGET /echo?after HTTP/1.1\r\n\r\n");
    sleep_ms(100); /* the socket buffers fill up: the rest must be queued */
    CHECK(cli_response(&c, &r, false));
    CHECK_INT(r.status, 200);
    CHECK_INT(r.body_len, F.big_len);
    CHECK(r.body && memcmp(r.body, F.big, F.big_len) == 0);
    resp_free(&r);
    char v[32];
    CHECK(cli_response(&c, &r, false));
    CHECK_STR(resp_hdr(&r, "x-query", v, sizeof(v)), "after");
    resp_free(&r);
    cli_close(&c);
    stop();
    free(F.big);
    F.big = NULL;
}

TEST(client_abort_calls_abort_cb)
{
    struct bt_http_opts o = base_opts();
    REQUIRE(start(&o));
    struct cli c;
    REQUIRE(cli_open(&c));
    cli_send(&c, "GET /hold HTTP/1.1\r\n\r\n");
    CHECK(wait_for(&F.handled, 1, 2000));
    cli_close(&c);
    CHECK(wait_for(&F.aborts, 1, 2000));
    /* close with a request in flight: it is aborted too */
    REQUIRE(cli_open(&c));
    cli_send(&c, "GET /hold HTTP/1.1\r\n\r\n");
    CHECK(wait_for(&F.handled, 2, 2000));
    int before = atomic_load(&F.aborts);
    stop();
    CHECK_INT(atomic_load(&F.aborts), before + 1);
    cli_close(&c);
}

TEST(client_leaves_mid_stream)
{
    struct bt_http_opts o = base_opts();
    REQUIRE(start(&o));
    struct cli c;
    struct resp r;
    /* a whole stream: 50 chunks, no abort */
    REQUIRE(cli_open(&c));
    cli_send(&c, "GET /ticker HTTP/1.1\r\n\r\n");
    CHECK(cli_response(&c, &r, false));
    CHECK_INT(r.body_len, 200);
    CHECK(r.body && strncmp(r.body, "ticktick", 8) == 0);
    resp_free(&r);
    cli_close(&c);
    CHECK_INT(atomic_load(&F.aborts), 0);
    /* the client hangs up after the first bytes: the handler hears it once */
    REQUIRE(cli_open(&c));
    cli_send(&c, "GET /ticker HTTP/1.1\r\n\r\n");
    CHECK(cli_fill(&c) > 0);
    struct linger lg = {1, 0};
    setsockopt(c.fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg)); /* RST: writes fail */
    cli_close(&c);
    CHECK(wait_for(&F.aborts, 1, 2000));
    sleep_ms(30);
    CHECK_INT(atomic_load(&F.aborts), 1);
    stop();
}

TEST(reset_sends_rst)
{
    struct bt_http_opts o = base_opts();
    REQUIRE(start(&o));
    struct cli c;
    REQUIRE(cli_open(&c));
    cli_send(&c, "GET /reset HTTP/1.1\r\n\r\n");
    char b[64];
    ssize_t n = recv(c.fd, b, sizeof(b), 0);
    CHECK(n < 0);
    CHECK_INT(errno, ECONNRESET);
    cli_close(&c);
    stop();
}

TEST(request_ids)
{
    struct bt_http_opts o = base_opts();
    REQUIRE(start(&o));
    struct resp r;
    char v[80], first[80];
    CHECK(roundtrip("GET /id HTTP/1.1\r\nX-Request-Id: abc-123_X.y\r\n\r\n", &r));
    CHECK_STR(r.body, "abc-123_X.y");
    CHECK_STR(resp_hdr(&r, "x-request-id", v, sizeof(v)), "abc-123_X.y");
    resp_free(&r);
    char req[256];
    char id64[65];
    memset(id64, 'k', 64);
    id64[64] = '\0';
    snprintf(req, sizeof(req), "GET /id HTTP/1.1\r\nx-request-id: %s\r\n\r\n", id64);
    CHECK(roundtrip(req, &r));
    CHECK_STR(r.body, id64);
    resp_free(&r);
    /* too long, bad characters, empty: a generated id instead */
    snprintf(req, sizeof(req), "GET /id HTTP/1.1\r\nx-request-id: %sk\r\n\r\n", id64);
    CHECK(roundtrip(req, &r));
    CHECK(is_hex24(r.body));
    CHECK_STR(resp_hdr(&r, "x-request-id", v, sizeof(v)), r.body);
    snprintf(first, sizeof(first), "%s", r.body);
    resp_free(&r);
    CHECK(roundtrip("GET /id HTTP/1.1\r\nX-Request-Id: bad id!\r\n\r\n", &r));
    CHECK(is_hex24(r.body));
    CHECK(strcmp(r.body, first) != 0);
    resp_free(&r);
    CHECK(roundtrip("GET /id HTTP/1.1\r\nX-Request-Id: a\"b\r\n\r\n", &r));
    CHECK(is_hex24(r.body));
    resp_free(&r);
    /* server-generated errors carry the client's id too */
    CHECK(roundtrip("POST /echo HTTP/1.1\r\nX-Request-Id: err-1\r\nContent-Length: 99999999\r\n\r\n",
                    &r));
    CHECK_INT(r.status, 413);
    CHECK_STR(resp_hdr(&r, "x-request-id", v, sizeof(v)), "err-1");
    resp_free(&r);
    /* response headers with CR/LF or NUL are refused (BT_EINVAL), not sent: the
     * server answers 500 itself, closes, and the request is finished once */
    const char *bad[2] = {"GET /badhdr HTTP/1.1\r\n\r\n", "GET /badstream HTTP/1.1\r\n\r\n"};
    for (int i = 0; i < 2; i++) {
        atomic_store(&F.bad_err, -1);
        CHECK(roundtrip(bad[i], &r));
        CHECK_INT(r.status, 500);
        CHECK(wait_for(&F.bad_err, BT_EINVAL, 2000)); /* stored after the reply left */
        CHECK(strstr(r.head, "Set-Cookie") == NULL);
        CHECK(strstr(r.head, "x-evil") == NULL);
        CHECK(resp_hdr(&r, "connection", v, sizeof(v)) && strcmp(v, "close") == 0);
        CHECK(strstr(r.body, "\"status\":500,") != NULL);
        resp_free(&r);
    }
    stop();
}

TEST(split_head_and_expect_continue)
{
    struct bt_http_opts o = base_opts();
    REQUIRE(start(&o));
    struct cli c;
    struct resp r;
    char v[64];
    /* one byte per read: header names and values arrive in fragments */
    REQUIRE(cli_open(&c));
    const char *req = "POST /hdr?x-long-header-name HTTP/1.1\r\nHost: example\r\n"
                      "X-Long-Header-Name: value-that-spans-reads\r\nContent-Length: 0\r\n\r\n";
    for (const char *p = req; *p; p++) {
        cli_sendn(&c, p, 1);
        sleep_ms(1);
    }
    CHECK(cli_response(&c, &r, false));
    CHECK_INT(r.status, 200);
    CHECK_STR(r.body, "value-that-spans-reads");
    resp_free(&r);
    /* Expect: 100-continue gets an interim response before the body is sent */
    cli_send(&c, "POST /echo HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\n");
    CHECK(cli_response(&c, &r, false));
    CHECK_INT(r.status, 100);
    resp_free(&r);
    cli_send(&c, "data");
    CHECK(cli_response(&c, &r, false));
    CHECK_INT(r.status, 200);
    CHECK_STR(r.body, "data");
    CHECK_STR(resp_hdr(&r, "x-method", v, sizeof(v)), "POST");
    resp_free(&r);
    cli_close(&c);
    stop();
}

TEST(drain)
{
    struct bt_http_opts o = base_opts();
    REQUIRE(start(&o));
    struct cli idle, busy;
    struct resp r;
    char v[32];
    REQUIRE(cli_open(&idle));
    cli_send(&idle, "GET /echo HTTP/1.1\r\n\r\n");
    CHECK(cli_response(&idle, &r, false));
    resp_free(&r);
    REQUIRE(cli_open(&busy));
    cli_send(&busy, "GET /drain HTTP/1.1\r\n\r\n");
    CHECK(cli_response(&busy, &r, false));
    CHECK_INT(r.status, 200);
    CHECK_STR(resp_hdr(&r, "connection", v, sizeof(v)), "close");
    resp_free(&r);
    CHECK(cli_eof(&busy));
    CHECK(cli_eof(&idle));
    CHECK(wait_for(&F.drained, 1, 2000));
    struct cli late;
    CHECK(!cli_open(&late)); /* no longer listening */
    cli_close(&late);
    cli_close(&idle);
    cli_close(&busy);
    stop();
}

int main(void)
{
    RUN(status_text);
    RUN(new_rejects_bad_args);
    RUN(simple_get_and_post);
    RUN(keep_alive_and_versions);
    RUN(pipelined_100_in_order);
    RUN(pipelined_overflow_reads_are_bounded);
    RUN(chunked_request_body);
    RUN(body_limits_413);
    RUN(head_limit_431);
    RUN(malformed_and_smuggling_400);
    RUN(timeouts);
    RUN(connection_limit_503);
    RUN(streaming_response);
    RUN(big_response_partial_writes);
    RUN(client_abort_calls_abort_cb);
    RUN(client_leaves_mid_stream);
    RUN(reset_sends_rst);
    RUN(request_ids);
    RUN(split_head_and_expect_continue);
    RUN(drain);
    return HARNESS_DONE();
}
