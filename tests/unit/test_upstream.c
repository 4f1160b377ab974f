/* Tests for the upstream HTTP/1.1 client against a small scripted HTTP server
 * that runs in this process: one thread accepting, one thread per connection,
 * blocking sockets. The request path picks the server's behaviour. */
#include "harness.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>
#include <uv.h>

#include "core/buf.h"
#include "upstream/upstream.h"

/* ---- the test server ------------------------------------------------------- */

enum { SRV_MAX_CONNS = 64 };

struct srv {
    int lfd;
    uint16_t port;
    pthread_t accept_thr;
    atomic_int accepted;
    atomic_int requests;
    atomic_bool stop;
    pthread_mutex_t mu;
    int fds[SRV_MAX_CONNS];
    pthread_t thr[SRV_MAX_CONNS];
    int nconn;
    char last_head[8192]; /* head of the last request, NUL-terminated */
    char last_body[4096];
    size_t last_body_len;
};

struct srv_conn {
    struct srv *s;
    int fd;
};

static void ms_sleep(int ms)
{
    usleep((useconds_t)ms * 1000);
}

static bool send_all(int fd, const char *p, size_t n)
{
    while (n) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w <= 0) return false;
        p += w;
        n -= (size_t)w;
    }
    return true;
}
static bool send_str(int fd, const char *s)
{
    return send_all(fd, s, strlen(s));
}

/* Reads one request. Returns false on EOF or error. */
static bool read_request(struct srv_conn *sc, char *method, size_t mcap, char *path, size_t pcap,
                         struct bt_buf *body)
{
    char buf[16384];
    size_t len = 0;
    char *end = NULL;
    while (!end) {
        if (len == sizeof(buf) - 1) return false;
        ssize_t r = recv(sc->fd, buf + len, sizeof(buf) - 1 - len, 0);
        if (r <= 0) return false;
        len += (size_t)r;
        buf[len] = 0;
        if ((unsigned char)buf[0] == 0x16) { /* a TLS ClientHello on a plain port, like nginx */
            send_str(sc->fd, "HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n");
            return false;
        }
        end = strstr(buf, "\r\n\r\n");
    }
    size_t head_len = (size_t)(end + 4 - buf);
    if (sscanf(buf, "%15s %255s", method, path) != 2) return false;
    (void)mcap;
    (void)pcap;
    size_t clen = 0;
    for (char *l = buf; l < end; l = strstr(l, "\r\n") + 2) {
        if (strncasecmp(l, "content-length:", 15) == 0) clen = strtoul(l + 15, NULL, 10);
        if (!strstr(l, "\r\n")) break;
    }
    bt_buf_reset(body);
    bt_buf_append(body, buf + head_len, len - head_len);
    while (body->len < clen) {
        char tmp[4096];
        ssize_t r = recv(sc->fd, tmp, sizeof(tmp), 0);
        if (r <= 0) return false;
        bt_buf_append(body, tmp, (size_t)r);
    }
    pthread_mutex_lock(&sc->s->mu);
    size_t hl = head_len < sizeof(sc->s->last_head) - 1 ? head_len : sizeof(sc->s->last_head) - 1;
    memcpy(sc->s->last_head, buf, hl);
    sc->s->last_head[hl] = 0;
    size_t bl = body->len < sizeof(sc->s->last_body) ? body->len : sizeof(sc->s->last_body);
    if (bl) memcpy(sc->s->last_body, body->p, bl);
    sc->s->last_body_len = bl;
    pthread_mutex_unlock(&sc->s->mu);
    atomic_fetch_add(&sc->s->requests, 1);
    return true;
}

/* Blocks until the client closes the connection (or the server stops). */
static void wait_peer_close(int fd)
{
    char tmp[4096];
    while (recv(fd, tmp, sizeof(tmp), 0) > 0) {
    }
}

static void *srv_conn_main(void *arg)
{
    struct srv_conn *sc = arg;
    int fd = sc->fd;
    char method[16], path[256];
    struct bt_buf body;
    bt_buf_init(&body, 1 << 20);
    while (read_request(sc, method, sizeof(method), path, sizeof(path), &body)) {
        bool head = strcmp(method, "HEAD") == 0;
        if (strcmp(path, "/cl") == 0) {
            send_str(fd, "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-Test: yes\r\n\r\n");
            if (!head) send_str(fd, "hello");
        } else if (strcmp(path, "/echo") == 0) {
            char h[128];
            snprintf(h, sizeof(h), "HTTP/1.1 201 Created\r\nContent-Length: %zu\r\n\r\n", body.len);
            send_str(fd, h);
            send_all(fd, body.p ? body.p : "", body.len);
        } else if (strcmp(path, "/chunked") == 0) {
            send_str(fd, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel");
            ms_sleep(5);
            send_str(fd, "lo\r\n6\r\n world\r\n");
            ms_sleep(5);
            send_str(fd, "0\r\n\r\n");
        } else if (strcmp(path, "/close") == 0) {
            send_str(fd, "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nclose-");
            ms_sleep(5);
            send_str(fd, "delimited body");
            break;
        } else if (strcmp(path, "/closeafter") == 0) {
            /* Says nothing about closing, then closes: a pooled connection dies. */
            send_str(fd, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
            break;
        } else if (strcmp(path, "/drop") == 0) {
            break;
        } else if (strcmp(path, "/reset") == 0) {
            struct linger lg = {1, 0};
            setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
            break;
        } else if (strcmp(path, "/stall") == 0) {
            wait_peer_close(fd);
            break;
        } else if (strcmp(path, "/stallbody") == 0) {
            send_str(fd, "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789");
            wait_peer_close(fd);
            break;
        } else if (strcmp(path, "/trickle") == 0) {
            send_str(fd, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n");
            for (int i = 0; i < 100 && !atomic_load(&sc->s->stop); i++) {
                if (!send_str(fd, "1\r\nx\r\n")) break;
                ms_sleep(20);
            }
            send_str(fd, "0\r\n\r\n");
        } else if (strcmp(path, "/big") == 0) {
            size_t n = 1 << 20;
            char h[128];
            snprintf(h, sizeof(h), "HTTP/1.1 200 OK\r\nContent-Length: %zu\r\n\r\n", n);
            send_str(fd, h);
            char *blob = malloc(n);
            memset(blob, 'b', n);
            send_all(fd, blob, n);
            free(blob);
        } else if (strcmp(path, "/bighead") == 0) {
            send_str(fd, "HTTP/1.1 200 OK\r\nX-Big: ");
            char pad[4096];
            memset(pad, 'a', sizeof(pad));
            for (int i = 0; i < 25; i++)
                send_all(fd, pad, sizeof(pad));
            send_str(fd, "\r\nContent-Length: 0\r\n\r\n");
        } else if (strcmp(path, "/manyheaders") == 0) {
            send_str(fd, "HTTP/1.1 200 OK\r\n");
            for (int i = 0; i < 300; i++) {
                char h[64];
                snprintf(h, sizeof(h), "X-H%d: %d\r\n", i, i);
                send_str(fd, h);
            }
            send_str(fd, "Empty:\r\nContent-Length: 0\r\n\r\n");
        } else if (strcmp(path, "/redirect") == 0) {
            send_str(fd, "HTTP/1.1 302 Found\r\nLocation: /cl\r\nContent-Length: 0\r\n\r\n");
        } else if (strcmp(path, "/continue") == 0) {
            send_str(fd, "HTTP/1.1 100 Continue\r\n\r\n");
            ms_sleep(5);
            send_str(fd, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
        } else if (strcmp(path, "/garbage") == 0) {
            send_str(fd, "NOT-HTTP garbage\r\n\r\n");
            wait_peer_close(fd);
            break;
        } else if (strcmp(path, "/http10") == 0) {
            send_str(fd, "HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok");
        } else if (strcmp(path, "/extra") == 0) {
            send_str(fd, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokHTTP/1.1 200 OK\r\n");
        } else if (strcmp(path, "/slow") == 0) {
            ms_sleep(60);
            send_str(fd, "HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nslow");
        } else if (strcmp(path, "/nocontent") == 0) {
            send_str(fd, "HTTP/1.1 204 No Content\r\n\r\n");
        } else {
            send_str(fd, "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n");
        }
    }
    bt_buf_free(&body);
    shutdown(fd, SHUT_RDWR);
    free(sc);
    return NULL;
}

static void *srv_accept_main(void *arg)
{
    struct srv *s = arg;
    for (;;) {
        int fd = accept(s->lfd, NULL, NULL);
        if (fd < 0) {
            if (atomic_load(&s->stop)) break;
            if (errno == EINTR) continue;
            break;
        }
        if (atomic_load(&s->stop)) {
            close(fd);
            break;
        }
        atomic_fetch_add(&s->accepted, 1);
        int one = 1; /* head and body go in separate sends: no Nagle stalls */
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        pthread_mutex_lock(&s->mu);
        if (s->nconn == SRV_MAX_CONNS) {
            pthread_mutex_unlock(&s->mu);
            close(fd);
            continue;
        }
        int i = s->nconn++;
        s->fds[i] = fd;
        struct srv_conn *sc = malloc(sizeof(*sc));
        sc->s = s;
        sc->fd = fd;
        pthread_create(&s->thr[i], NULL, srv_conn_main, sc);
        pthread_mutex_unlock(&s->mu);
    }
    return NULL;
}

static int listen_on(uint16_t *port, int backlog)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) || listen(fd, backlog)) {
        close(fd);
        return -1;
    }
    socklen_t sl = sizeof(sa);
    getsockname(fd, (struct sockaddr *)&sa, &sl);
    *port = ntohs(sa.sin_port);
    return fd;
}

static bool srv_start(struct srv *s)
{
    memset(s, 0, sizeof(*s));
    pthread_mutex_init(&s->mu, NULL);
    s->lfd = listen_on(&s->port, 64);
    if (s->lfd < 0) return false;
    pthread_create(&s->accept_thr, NULL, srv_accept_main, s);
    return true;
}

static void srv_stop(struct srv *s)
{
    atomic_store(&s->stop, true);
    shutdown(s->lfd, SHUT_RDWR);
    pthread_join(s->accept_thr, NULL);
    close(s->lfd);
    pthread_mutex_lock(&s->mu);
    int n = s->nconn;
    pthread_mutex_unlock(&s->mu);
    for (int i = 0; i < n; i++)
        shutdown(s->fds[i], SHUT_RDWR);
    for (int i = 0; i < n; i++) {
        void *ret;
        pthread_join(s->thr[i], &ret);
        close(s->fds[i]);
    }
    pthread_mutex_destroy(&s->mu);
}

/* ---- client side helpers --------------------------------------------------- */

struct res {
    int status;
    int heads, datas, dones;
    enum bt_err err;
    char detail[96];
    struct bt_buf body;
    char x_test[32];
    char location[32];
    size_t nheaders;
    bool empty_header_seen;
    bool cancel_on_head, cancel_on_data, cancel_on_done;
    bool request_again_on_done; /* starts another request from inside on_done */
    struct bt_up_call *call;
    struct bt_upstream *u;
    uint16_t port;
    struct res *chained;
};

static void res_init(struct res *r)
{
    memset(r, 0, sizeof(*r));
    bt_buf_init(&r->body, 4 << 20);
    r->err = (enum bt_err) - 1;
}

static void copy_slice(char *dst, size_t cap, struct bt_str s)
{
    size_t n = s.len < cap - 1 ? s.len : cap - 1;
    memcpy(dst, s.p, n);
    dst[n] = 0;
}

static void on_head(void *ud, int status, const struct bt_http_header *h, size_t n)
{
    struct res *r = ud;
    r->heads++;
    r->status = status;
    r->nheaders = n;
    for (size_t i = 0; i < n; i++) {
        if (bt_str_caseeq_c(h[i].name, "x-test"))
            copy_slice(r->x_test, sizeof(r->x_test), h[i].value);
        if (bt_str_caseeq_c(h[i].name, "location"))
            copy_slice(r->location, sizeof(r->location), h[i].value);
        if (bt_str_caseeq_c(h[i].name, "empty") && h[i].value.len == 0) r->empty_header_seen = true;
    }
    if (r->cancel_on_head) bt_upstream_cancel(r->call);
}

static void on_data(void *ud, const char *p, size_t n)
{
    struct res *r = ud;
    r->datas++;
    bt_buf_append(&r->body, p, n);
    if (r->cancel_on_data) {
        bt_upstream_cancel(r->call);
        bt_upstream_cancel(r->call); /* twice: still harmless */
    }
}

static struct bt_up_call *start(struct bt_upstream *u, const char *host, uint16_t port,
                                const char *method, const char *path, const char *body,
                                struct bt_timeouts to, size_t max_head, struct res *r);

static void on_done(void *ud, enum bt_err err, const char *detail)
{
    struct res *r = ud;
    r->dones++;
    r->err = err;
    if (detail) snprintf(r->detail, sizeof(r->detail), "%s", detail);
    if (r->cancel_on_done) bt_upstream_cancel(r->call); /* no-op after done */
    if (r->request_again_on_done && r->chained)
        start(r->u, "127.0.0.1", r->port, "GET", "/cl", NULL, (struct bt_timeouts){0}, 0,
              r->chained);
}

static const struct bt_up_callbacks CB = {on_head, on_data, on_done};

static struct bt_up_call *start(struct bt_upstream *u, const char *host, uint16_t port,
                                const char *method, const char *path, const char *body,
                                struct bt_timeouts to, size_t max_head, struct res *r)
{
    struct bt_up_origin o = {.tls = false, .host = host, .port = port};
    struct bt_http_header hs[2] = {
        {BT_STR("X-Client"), BT_STR("baton-test")},
        {BT_STR("Content-Length"), BT_STR("999")}, /* ours wins: dropped */
    };
    struct bt_up_request req = {
        .method = bt_str_c(method),
        .target = bt_str_c(path),
        .headers = hs,
        .nheaders = 2,
        .body = bt_str_c(body),
        .timeouts = to,
        .max_head_bytes = max_head,
    };
    r->call = bt_upstream_request(u, &o, &req, &CB, r);
    return r->call;
}

static void run(uv_loop_t *loop)
{
    uv_run(loop, UV_RUN_DEFAULT);
}

static void on_sleep_timer(uv_timer_t *t)
{
    uv_stop(t->loop);
}

/* Runs the loop for about `ms`, so idle connections see what the peer did. */
static void run_for(uv_loop_t *loop, uint64_t ms)
{
    uv_timer_t t;
    uv_timer_init(loop, &t);
    uv_timer_start(&t, on_sleep_timer, ms, 0);
    uv_run(loop, UV_RUN_DEFAULT);
    uv_close((uv_handle_t *)&t, NULL);
    uv_run(loop, UV_RUN_NOWAIT); /* runs the close */
}

/* Runs the loop in small steps until *flag becomes nonzero or max_ms passed. */
static void run_until(uv_loop_t *loop, const int *flag, int max_ms)
{
    for (int t = 0; !*flag && t < max_ms; t += 10)
        run_for(loop, 10);
}

static void finish(uv_loop_t *loop, struct bt_upstream *u)
{
    bt_upstream_free(u);
    uv_run(loop, UV_RUN_DEFAULT);
    CHECK_INT(uv_loop_close(loop), 0);
}

static struct bt_upstream_stats stats(struct bt_upstream *u)
{
    struct bt_upstream_stats s;
    bt_upstream_stats(u, &s);
    return s;
}

#define NO_TO ((struct bt_timeouts){0})

/* ---- tests ----------------------------------------------------------------- */

TEST(get_content_length)
{
    struct srv s;
    REQUIRE(srv_start(&s));
    uv_loop_t loop;
    uv_loop_init(&loop);
    struct bt_upstream *u = bt_upstream_new(&loop, NULL);
    struct res r;
    res_init(&r);
    REQUIRE(start(u, "127.0.0.1", s.port, "GET", "/cl", NULL, NO_TO, 0, &r));
    CHECK_INT(r.dones, 0); /* never synchronous */
    run(&loop);
    CHECK_INT(r.dones, 1);
    CHECK_INT(r.err, BT_OK);
    CHECK_INT(r.status, 200);
    CHECK_INT(r.heads, 1);
    CHECK_SLICE(bt_buf_str(&r.body), "hello");
    CHECK_STR(r.x_test, "yes");
    CHECK_INT(r.nheaders, 2);
    /* What the server saw: Host with port, our hop-by-hop headers, the caller's. */
    char want_host[64];
    snprintf(want_host, sizeof(want_host), "Host: 127.0.0.1:%u\r\n", s.port);
    CHECK(strncmp(s.last_head, "GET /cl HTTP/1.1\r\n", 18) == 0);
    CHECK(strstr(s.last_head, want_host) != NULL);
    CHECK(strstr(s.last_head, "Connection: keep-alive\r\n") != NULL);
    CHECK(strstr(s.last_head, "X-Client: baton-test\r\n") != NULL);
    CHECK(strstr(s.last_head, "Content-Length") == NULL); /* GET, no body */
    struct bt_upstream_stats st = stats(u);
    CHECK_INT(st.conns_opened, 1);
    CHECK_INT(st.conns_reused, 0);
    CHECK_INT(st.conns_idle, 1);
    bt_buf_free(&r.body);
    finish(&loop, u);
    srv_stop(&s);
}

TEST(post_echo)
{
    struct srv s;
    REQUIRE(srv_start(&s));
    uv_loop_t loop;
    uv_loop_init(&loop);
    struct bt_upstream *u = bt_upstream_new(&loop, NULL);
    struct res r;
    res_init(&r);
    const char *body = "{\"model\":\"x\",\"messages\":[]}";
    REQUIRE(start(u, "127.0.0.1", s.port, "POST", "/echo", body, NO_TO, 0, &r));
    run(&loop);
    CHECK_INT(r.err, BT_OK);
    CHECK_INT(r.status, 201);
    CHECK_SLICE(bt_buf_str(&r.body), body);
    char want_len[64];
    snprintf(want_len, sizeof(want_len), "Content-Length: %zu\r\n", strlen(body));
    CHECK(strstr(s.last_head, want_len) != NULL);
    CHECK(strstr(s.last_head, "999") == NULL); /* the caller's Content-Length was dropped */
    CHECK_INT(s.last_body_len, strlen(body));

    /* POST without a body still says Content-Length: 0. */
    struct res r2;
    res_init(&r2);
    REQUIRE(start(u, "127.0.0.1", s.port, "POST", "/echo", NULL, NO_TO, 0, &r2));
    run(&loop);
    CHECK_INT(r2.err, BT_OK);
    CHECK(strstr(s.last_head, "Content-Length: 0\r\n") != NULL);
    CHECK_INT(r2.body.len, 0);
    CHECK_INT(stats(u).conns_opened, 1);
    bt_buf_free(&r.body);
    bt_buf_free(&r2.body);
    finish(&loop, u);
    srv_stop(&s);
}

TEST(chunked_close_delimited_and_nobody)
{
    struct srv s;
    REQUIRE(srv_start(&s));
    uv_loop_t loop;
    uv_loop_init(&loop);
    struct bt_upstream *u = bt_upstream_new(&loop, NULL);
    struct res r;
    res_init(&r);
    REQUIRE(start(u, "127.0.0.1", s.port, "GET", "/chunked", NULL, NO_TO, 0, &r));
    run(&loop);
    CHECK_INT(r.err, BT_OK);
    CHECK_SLICE(bt_buf_str(&r.body), "hello world");
    CHECK(r.datas >= 2); /* delivered as it arrived, de-chunked */
    CHECK_INT(stats(u).conns_idle, 1);

    struct res r2;
    res_init(&r2);
    REQUIRE(start(u, "127.0.0.1", s.port, "GET", "/close", NULL, NO_TO, 0, &r2));
    run(&loop);
    CHECK_INT(r2.err, BT_OK);
    CHECK_SLICE(bt_buf_str(&r2.body), "close-delimited body");
    CHECK_INT(stats(u).conns_idle, 0); /* not pooled: it ended with the body */
    CHECK_INT(stats(u).conns_reused, 1);

    /* 204: no body, connection kept. HEAD: Content-Length but no body. */
    struct res r3, r4, r5;
    res_init(&r3);
    res_init(&r4);
    res_init(&r5);
    REQUIRE(start(u, "127.0.0.1", s.port, "GET", "/nocontent", NULL, NO_TO, 0, &r3));
    run(&loop);
    CHECK_INT(r3.err, BT_OK);
    CHECK_INT(r3.status, 204);
    REQUIRE(start(u, "127.0.0.1", s.port, "HEAD", "/cl", NULL, NO_TO, 0, &r4));
    run(&loop);
    CHECK_INT(r4.err, BT_OK);
    CHECK_INT(r4.status, 200);
    CHECK_INT(r4.body.len, 0);
    REQUIRE(start(u, "127.0.0.1", s.port, "GET", "/cl", NULL, NO_TO, 0, &r5));
    run(&loop);
    CHECK_INT(r5.err, BT_OK);
    CHECK_SLICE(bt_buf_str(&r5.body), "hello");
    CHECK_INT(stats(u).conns_opened, 2);
    CHECK_INT(stats(u).conns_reused, 3);
    bt_buf_free(&r.body);
    bt_buf_free(&r2.body);
    bt_buf_free(&r3.body);
    bt_buf_free(&r4.body);
    bt_buf_free(&r5.body);
    finish(&loop, u);
    srv_stop(&s);
}

TEST(keepalive_reuse_sequential)
{
    struct srv s;
    REQUIRE(srv_start(&s));
    uv_loop_t loop;
    uv_loop_init(&loop);
    struct bt_upstream *u = bt_upstream_new(&loop, NULL);
    int ok = 0;
    for (int i = 0; i < 200; i++) {
        struct res r;
        res_init(&r);
        if (start(u, "127.0.0.1", s.port, i % 2 ? "POST" : "GET", i % 2 ? "/echo" : "/cl", "abc",
                  NO_TO, 0, &r)) {
            run(&loop);
            if (r.err == BT_OK && r.dones == 1 && r.body.len == (i % 2 ? 3u : 5u)) ok++;
        }
        bt_buf_free(&r.body);
    }
    CHECK_INT(ok, 200);
    struct bt_upstream_stats st = stats(u);
    CHECK_INT(st.conns_opened, 1);
    CHECK_INT(st.conns_reused, 199);
    CHECK_INT(st.conns_idle, 1);
    CHECK_INT(atomic_load(&s.accepted), 1);
    CHECK_INT(atomic_load(&s.requests), 200);
    finish(&loop, u);
    srv_stop(&s);
}

TEST(request_from_inside_on_done_reuses)
{
    struct srv s;
    REQUIRE(srv_start(&s));
    uv_loop_t loop;
    uv_loop_init(&loop);
    struct bt_upstream *u = bt_upstream_new(&loop, NULL);
    struct res a, b;
    res_init(&a);
    res_init(&b);
    a.request_again_on_done = true;
    a.cancel_on_done = true;
    a.chained = &b;
    a.u = u;
    a.port = s.port;
    REQUIRE(start(u, "127.0.0.1", s.port, "GET", "/cl", NULL, NO_TO, 0, &a));
    run(&loop);
    CHECK_INT(a.err, BT_OK);
    CHECK_INT(a.dones, 1);
    CHECK_INT(b.err, BT_OK);
    CHECK_INT(b.dones, 1);
    CHECK_SLICE(bt_buf_str(&b.body), "hello");
    CHECK_INT(stats(u).conns_opened, 1);
    CHECK_INT(stats(u).conns_reused, 1);
    bt_buf_free(&a.body);
    bt_buf_free(&b.body);
    finish(&loop, u);
    srv_stop(&s);
}

TEST(stale_pooled_connection_retried)
{
    struct srv s;
    REQUIRE(srv_start(&s));
    uv_loop_t loop;
    uv_loop_init(&loop);
    struct bt_upstream *u = bt_upstream_new(&loop, NULL);
    struct res r1, r2;
    res_init(&r1);
    res_init(&r2);
    REQUIRE(start(u, "127.0.0.1", s.port, "GET", "/closeafter", NULL, NO_TO, 0, &r1));
    run(&loop);
    CHECK_INT(r1.err, BT_OK);
    CHECK_SLICE(bt_buf_str(&r1.body), "ok");
    CHECK_INT(stats(u).conns_idle, 1); /* we have not seen the FIN yet */
    ms_sleep(20);                      /* the server has closed by now */
    /* Not running the loop: the next request takes the dead connection, finds
     * out, and is retried once on a fresh one. */
    REQUIRE(start(u, "127.0.0.1", s.port, "POST", "/echo", "xyz", NO_TO, 0, &r2));
    run(&loop);
    CHECK_INT(r2.err, BT_OK);
    CHECK_INT(r2.dones, 1);
    CHECK_INT(r2.heads, 1);
    CHECK_SLICE(bt_buf_str(&r2.body), "xyz");
    CHECK_INT(stats(u).conns_opened, 2);
    CHECK_INT(stats(u).conns_reused, 1); /* taken from the pool, then retried */
    CHECK_INT(atomic_load(&s.accepted), 2);
    bt_buf_free(&r1.body);
    bt_buf_free(&r2.body);
    finish(&loop, u);
    srv_stop(&s);
}

TEST(idle_connection_closed_by_peer_is_dropped)
{
    struct srv s;
    REQUIRE(srv_start(&s));
    uv_loop_t loop;
    uv_loop_init(&loop);
    struct bt_upstream *u = bt_upstream_new(&loop, NULL);
    struct res r1, r2;
    res_init(&r1);
    res_init(&r2);
    REQUIRE(start(u, "127.0.0.1", s.port, "GET", "/closeafter", NULL, NO_TO, 0, &r1));
    run(&loop);
    CHECK_INT(stats(u).conns_idle, 1);
    run_for(&loop, 60); /* the pool reads the EOF and drops the connection */
    CHECK_INT(stats(u).conns_idle, 0);
    REQUIRE(start(u, "127.0.0.1", s.port, "GET", "/cl", NULL, NO_TO, 0, &r2));
    run(&loop);
    CHECK_INT(r2.err, BT_OK);
    CHECK_INT(stats(u).conns_opened, 2);
    CHECK_INT(stats(u).conns_reused, 0);
    bt_buf_free(&r1.body);
    bt_buf_free(&r2.body);
    finish(&loop, u);
    srv_stop(&s);
}

TEST(fresh_connection_closed_is_not_retried)
{
    struct srv s;
    REQUIRE(srv_start(&s));
    uv_loop_t loop;
    uv_loop_init(&loop);
    struct bt_upstream *u = bt_upstream_new(&loop, NULL);
    struct res r1, r2, r3;
    res_init(&r1);
    res_init(&r2);
    res_init(&r3);
    REQUIRE(start(u, "127.0.0.1", s.port, "GET", "/drop", NULL, NO_TO, 0, &r1));
    run(&loop);
    CHECK_INT(r1.err, BT_ECLOSED);
    CHECK_INT(r1.heads, 0);
    CHECK_INT(atomic_load(&s.requests), 1); /* sent once, not retried */
    REQUIRE(start(u, "127.0.0.1", s.port, "GET", "/reset", NULL, NO_TO, 0, &r2));
    run(&loop);
    CHECK(r2.err == BT_ECONNRESET || r2.err == BT_ECLOSED);
    CHECK_INT(atomic_load(&s.requests), 2);
    /* A reply cut short. */
    REQUIRE(start(u, "127.0.0.1", s.port, "GET", "/stallbody", NULL, NO_TO, 0, &r3));
    run_until(&loop, &r3.heads, 3000);
    run_for(&loop, 20);
    CHECK_INT(r3.heads, 1);
    CHECK_INT(r3.dones, 0);
    srv_stop(&s); /* shuts the connection down mid-body */
    run(&loop);
    CHECK_INT(r3.dones, 1);
    CHECK_INT(r3.err, BT_ECLOSED);
    CHECK_STR(r3.detail, "connection closed mid-response");
    bt_buf_free(&r1.body);
    bt_buf_free(&r2.body);
    bt_buf_free(&r3.body);
    finish(&loop, u);
}

TEST(connect_refused_and_dns)
{
    uint16_t port;
    int fd = listen_on(&port, 1);
    REQUIRE(fd >= 0);
    close(fd); /* nobody listens on `port` now */
    uv_loop_t loop;
    uv_loop_init(&loop);
    struct bt_upstream *u = bt_upstream_new(&loop, NULL);
    struct res r1, r2, r3;
    res_init(&r1);
    res_init(&r2);
    res_init(&r3);
    REQUIRE(start(u, "127.0.0.1", port, "GET", "/cl", NULL, NO_TO, 0, &r1));
    REQUIRE(start(u, "no-such-host.invalid", 80, "GET", "/", NULL, NO_TO, 0, &r2));
    REQUIRE(start(u, "::1", port, "GET", "/", NULL, NO_TO, 0, &r3));
    run(&loop);
    CHECK_INT(r1.err, BT_ECONNREFUSED);
    CHECK_INT(r1.dones, 1);
    CHECK_INT(r2.err, BT_EDNS);
    CHECK_INT(r2.dones, 1);
    CHECK_INT(r3.dones, 1);
    CHECK(r3.err == BT_ECONNREFUSED || r3.err == BT_EIO); /* EADDRNOTAVAIL without IPv6 */
    CHECK_INT(stats(u).conns_opened, 0);
    bt_buf_free(&r1.body);
    bt_buf_free(&r2.body);
    bt_buf_free(&r3.body);
    finish(&loop, u);
}

TEST(dns_localhost_and_cache)
{
    struct srv s;
    REQUIRE(srv_start(&s));
    uv_loop_t loop;
    uv_loop_init(&loop);
    struct bt_upstream *u = bt_upstream_new(&loop, NULL);
    /* Two at once share one resolution; "localhost" may answer ::1 first, where
     * nobody listens: the next address is tried. */
    struct res r1, r2, r3;
    res_init(&r1);
    res_init(&r2);
    res_init(&r3);
    REQUIRE(start(u, "localhost", s.port, "GET", "/cl", NULL, NO_TO, 0, &r1));
    REQUIRE(start(u, "localhost", s.port, "GET", "/slow", NULL, NO_TO, 0, &r2));
    run(&loop);
    CHECK_INT(r1.err, BT_OK);
    CHECK_SLICE(bt_buf_str(&r1.body), "hello");
    CHECK_INT(r2.err, BT_OK);
    CHECK_SLICE(bt_buf_str(&r2.body), "slow");
    char want_host[64];
    snprintf(want_host, sizeof(want_host), "Host: localhost:%u\r\n", s.port);
    CHECK(strstr(s.last_head, want_host) != NULL);
    CHECK_INT(stats(u).conns_opened, 2);
    /* Cached answer, pooled connection. */
    REQUIRE(start(u, "localhost", s.port, "GET", "/cl", NULL, NO_TO, 0, &r3));
    run(&loop);
    CHECK_INT(r3.err, BT_OK);
    CHECK_INT(stats(u).conns_reused, 1);
    bt_buf_free(&r1.body);
    bt_buf_free(&r2.body);
    bt_buf_free(&r3.body);
    finish(&loop, u);
    srv_stop(&s);
}

/* A listener whose accept queue is full: SYNs are dropped, connect hangs. */
TEST(timeout_connect)
{
    uint16_t port;
    int lfd = listen_on(&port, 0);
    REQUIRE(lfd >= 0);
    int fillers[4];
    struct sockaddr_in sa = {
        .sin_family = AF_INET, .sin_port = htons(port), .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    for (int i = 0; i < 4; i++) {
        fillers[i] = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
        connect(fillers[i], (struct sockaddr *)&sa, sizeof(sa));
    }
    ms_sleep(20);
    uv_loop_t loop;
    uv_loop_init(&loop);
    struct bt_upstream *u = bt_upstream_new(&loop, NULL);
    struct res r;
    res_init(&r);
    uint64_t t0 = uv_hrtime();
    REQUIRE(start(u, "127.0.0.1", port, "GET", "/", NULL,
                  (struct bt_timeouts){.connect_ms = 100, .total_ms = 5000}, 0, &r));
    run(&loop);
    uint64_t ms = (uv_hrtime() - t0) / 1000000;
    CHECK_INT(r.err, BT_ETIMEDOUT);
    CHECK_STR(r.detail, "connect");
    CHECK(ms >= 90 && ms < 1000);
    bt_buf_free(&r.body);
    finish(&loop, u);
    for (int i = 0; i < 4; i++)
        close(fillers[i]);
    close(lfd);
}

/* The TLS handshake is part of the connect phase: a peer that accepts the TCP
 * connection and never answers the ClientHello times out as "connect". */
TEST(tls_handshake_timeout)
{
    uint16_t port;
    int lfd = listen_on(&port, 8); /* the kernel completes TCP; nobody accepts */
    REQUIRE(lfd >= 0);
    uv_loop_t loop;
    uv_loop_init(&loop);
    struct bt_upstream *u = bt_upstream_new(&loop, NULL);
    struct res r;
    res_init(&r);
    struct bt_up_origin o = {.tls = true, .host = "127.0.0.1", .port = port};
    struct bt_up_request req = {
        .method = BT_STR("GET"), .target = BT_STR("/"), .timeouts = {.connect_ms = 100}};
    r.call = bt_upstream_request(u, &o, &req, &CB, &r);
    REQUIRE(r.call);
    run(&loop);
    CHECK_INT(r.err, BT_ETIMEDOUT);
    CHECK_STR(r.detail, "connect");
    CHECK_INT(stats(u).conns_opened, 1); /* TCP was established */
    CHECK_INT(stats(u).tls_handshakes, 0);
    bt_buf_free(&r.body);
    finish(&loop, u);
    close(lfd);
}

TEST(timeouts_first_byte_idle_total)
{
    struct srv s;
    REQUIRE(srv_start(&s));
    uv_loop_t loop;
    uv_loop_init(&loop);
    struct bt_upstream *u = bt_upstream_new(&loop, NULL);
    struct res r1, r2, r3;
    res_init(&r1);
    res_init(&r2);
    res_init(&r3);
    uint64_t t0 = uv_hrtime();
    REQUIRE(start(u, "127.0.0.1", s.port, "GET", "/stall", NULL,
                  (struct bt_timeouts){.first_byte_ms = 80, .idle_ms = 1000}, 0, &r1));
    REQUIRE(start(u, "127.0.0.1", s.port, "GET", "/stallbody", NULL,
                  (struct bt_timeouts){.first_byte_ms = 1000, .idle_ms = 80}, 0, &r2));
    /* Trickles a byte every 20 ms: never idle for 100 ms, but longer than 150 ms total. */
    REQUIRE(start(u, "127.0.0.1", s.port, "GET", "/trickle", NULL,
                  (struct bt_timeouts){.idle_ms = 100, .total_ms = 150}, 0, &r3));
    run(&loop);
    uint64_t ms = (uv_hrtime() - t0) / 1000000;
    CHECK_INT(r1.err, BT_ETIMEDOUT);
    CHECK_STR(r1.detail, "first_byte");
    CHECK_INT(r1.heads, 0);
    CHECK_INT(r2.err, BT_ETIMEDOUT);
    CHECK_STR(r2.detail, "idle");
    CHECK_INT(r2.heads, 1);
    CHECK_SLICE(bt_buf_str(&r2.body), "0123456789");
    CHECK_INT(r3.err, BT_ETIMEDOUT);
    CHECK_STR(r3.detail, "total");
    CHECK(r3.datas >= 3);
    CHECK(ms < 1000);
    CHECK_INT(stats(u).conns_idle, 0); /* timed-out connections are closed */
    bt_buf_free(&r1.body);
    bt_buf_free(&r2.body);
    bt_buf_free(&r3.body);
    finish(&loop, u);
    srv_stop(&s);
}

TEST(cancel_mid_body_and_elsewhere)
{
    struct srv s;
    REQUIRE(srv_start(&s));
    uv_loop_t loop;
    uv_loop_init(&loop);
    struct bt_upstream *u = bt_upstream_new(&loop, NULL);
    struct res r1, r2, r3, r4;
    res_init(&r1);
    res_init(&r2);
    res_init(&r3);
    res_init(&r4);
    r1.cancel_on_data = true;
    r2.cancel_on_head = true;
    REQUIRE(start(u, "127.0.0.1", s.port, "GET", "/big", NULL, NO_TO, 0, &r1));
    REQUIRE(start(u, "127.0.0.1", s.port, "GET", "/cl", NULL, NO_TO, 0, &r2));
    /* Cancelled right away (before any I/O), and while waiting for the head. */
    REQUIRE(start(u, "127.0.0.1", s.port, "GET", "/cl", NULL, NO_TO, 0, &r3));
    bt_upstream_cancel(r3.call);
    REQUIRE(start(u, "127.0.0.1", s.port, "GET", "/stall", NULL, NO_TO, 0, &r4));
    run_until(&loop, &r1.datas, 3000);
    run_for(&loop, 30);
    CHECK_INT(r4.dones, 0);
    bt_upstream_cancel(r4.call);
    run(&loop);
    CHECK_INT(r1.datas, 1);
    CHECK_INT(r1.dones, 0);
    CHECK(r1.body.len < (1u << 20));
    CHECK_INT(r2.heads, 1);
    CHECK_INT(r2.datas, 0);
    CHECK_INT(r2.dones, 0);
    CHECK_INT(r3.heads + r3.datas + r3.dones, 0);
    CHECK_INT(r4.heads + r4.datas + r4.dones, 0);
    CHECK_INT(stats(u).conns_idle, 0); /* cancelled mid-response: closed, not pooled */
    bt_buf_free(&r1.body);
    bt_buf_free(&r2.body);
    bt_buf_free(&r3.body);
    bt_buf_free(&r4.body);
    finish(&loop, u);
    srv_stop(&s);
}

TEST(big_body_streams)
{
    struct srv s;
    REQUIRE(srv_start(&s));
    uv_loop_t loop;
    uv_loop_init(&loop);
    struct bt_upstream *u = bt_upstream_new(&loop, NULL);
    struct res r;
    res_init(&r);
    REQUIRE(start(u, "127.0.0.1", s.port, "GET", "/big", NULL, NO_TO, 0, &r));
    run(&loop);
    CHECK_INT(r.err, BT_OK);
    CHECK_INT(r.body.len, 1 << 20);
    CHECK(r.datas > 1);
    CHECK(r.body.p && r.body.p[0] == 'b' && r.body.p[r.body.len - 1] == 'b');
    CHECK_INT(stats(u).conns_idle, 1);
    bt_buf_free(&r.body);
    finish(&loop, u);
    srv_stop(&s);
}

TEST(head_limits_and_protocol_errors)
{
    struct srv s;
    REQUIRE(srv_start(&s));
    uv_loop_t loop;
    uv_loop_init(&loop);
    struct bt_upstream *u = bt_upstream_new(&loop, NULL);
    struct res r1, r2, r3, r4, r5;
    res_init(&r1);
    res_init(&r2);
    res_init(&r3);
    res_init(&r4);
    res_init(&r5);
    REQUIRE(start(u, "127.0.0.1", s.port, "GET", "/bighead", NULL, NO_TO, 0, &r1));
    REQUIRE(start(u, "127.0.0.1", s.port, "GET", "/bighead", NULL, NO_TO, 200 * 1024, &r2));
    REQUIRE(start(u, "127.0.0.1", s.port, "GET", "/manyheaders", NULL, NO_TO, 1024, &r3));
    REQUIRE(start(u, "127.0.0.1", s.port, "GET", "/manyheaders", NULL, NO_TO, 0, &r4));
    REQUIRE(start(u, "127.0.0.1", s.port, "GET", "/garbage", NULL, NO_TO, 0, &r5));
    run(&loop);
    CHECK_INT(r1.err, BT_ETOOBIG); /* 100 KB head over the 64 KiB default */
    CHECK_INT(r1.heads, 0);
    CHECK_INT(r2.err, BT_OK);
    CHECK_INT(r2.status, 200);
    CHECK_INT(r3.err, BT_ETOOBIG);
    CHECK_INT(r4.err, BT_OK);
    CHECK_INT(r4.nheaders, 302);
    CHECK(r4.empty_header_seen);
    CHECK_INT(r5.err, BT_EPROTO);
    bt_buf_free(&r1.body);
    bt_buf_free(&r2.body);
    bt_buf_free(&r3.body);
    bt_buf_free(&r4.body);
    bt_buf_free(&r5.body);
    finish(&loop, u);
    srv_stop(&s);
}

TEST(redirect_interim_and_reuse_rules)
{
    struct srv s;
    REQUIRE(srv_start(&s));
    uv_loop_t loop;
    uv_loop_init(&loop);
    struct bt_upstream *u = bt_upstream_new(&loop, NULL);
    struct res r1, r2, r3, r4, r5;
    res_init(&r1);
    res_init(&r2);
    res_init(&r3);
    res_init(&r4);
    res_init(&r5);
    REQUIRE(start(u, "127.0.0.1", s.port, "GET", "/redirect", NULL, NO_TO, 0, &r1));
    run(&loop);
    CHECK_INT(r1.err, BT_OK);
    CHECK_INT(r1.status, 302); /* passed through, not followed */
    CHECK_STR(r1.location, "/cl");
    CHECK_INT(atomic_load(&s.requests), 1);
    REQUIRE(start(u, "127.0.0.1", s.port, "GET", "/continue", NULL, NO_TO, 0, &r2));
    run(&loop);
    CHECK_INT(r2.err, BT_OK);
    CHECK_INT(r2.heads, 1); /* the 100 is not reported */
    CHECK_INT(r2.status, 200);
    CHECK_SLICE(bt_buf_str(&r2.body), "ok");
    CHECK_INT(stats(u).conns_opened, 1);
    /* HTTP/1.0 without keep-alive, and a reply followed by stray bytes: both
     * complete, neither connection goes back to the pool. */
    REQUIRE(start(u, "127.0.0.1", s.port, "GET", "/http10", NULL, NO_TO, 0, &r3));
    run(&loop);
    CHECK_INT(r3.err, BT_OK);
    CHECK_INT(stats(u).conns_idle, 0);
    REQUIRE(start(u, "127.0.0.1", s.port, "GET", "/extra", NULL, NO_TO, 0, &r4));
    run(&loop);
    CHECK_INT(r4.err, BT_OK);
    CHECK_SLICE(bt_buf_str(&r4.body), "ok");
    CHECK_INT(stats(u).conns_idle, 0);
    REQUIRE(start(u, "127.0.0.1", s.port, "GET", "/cl", NULL, NO_TO, 0, &r5));
    run(&loop);
    CHECK_INT(r5.err, BT_OK);
    CHECK_INT(stats(u).conns_opened, 3); /* one for the first three, one each after */
    CHECK_INT(stats(u).conns_idle, 1);
    bt_buf_free(&r1.body);
    bt_buf_free(&r2.body);
    bt_buf_free(&r3.body);
    bt_buf_free(&r4.body);
    bt_buf_free(&r5.body);
    finish(&loop, u);
    srv_stop(&s);
}

TEST(pool_limits_queue_and_reap)
{
    struct srv s;
    REQUIRE(srv_start(&s));
    uv_loop_t loop;
    uv_loop_init(&loop);
    struct bt_upstream_opts opts = {.max_conns_per_origin = 2,
                                    .max_idle_per_origin = 1,
                                    .idle_reap_ms = 80,
                                    .max_queued_per_origin = 2};
    struct bt_upstream *u = bt_upstream_new(&loop, &opts);
    struct res r[6];
    for (int i = 0; i < 6; i++) {
        res_init(&r[i]);
        REQUIRE(start(u, "127.0.0.1", s.port, "GET", "/slow", NULL, NO_TO, 0, &r[i]));
    }
    /* 2 connect, 2 wait, the rest are refused; a queued one may be cancelled. */
    bt_upstream_cancel(r[3].call);
    struct res extra;
    res_init(&extra);
    REQUIRE(start(u, "127.0.0.1", s.port, "GET", "/slow", NULL, NO_TO, 0, &extra));
    run(&loop);
    for (int i = 0; i < 3; i++) {
        CHECK_INT(r[i].err, BT_OK);
        CHECK_SLICE(bt_buf_str(&r[i].body), "slow");
    }
    CHECK_INT(r[3].dones, 0);
    CHECK_INT(r[4].err, BT_EBUSY);
    CHECK_INT(r[5].err, BT_EBUSY);
    CHECK_INT(extra.err, BT_OK); /* took the cancelled one's place */
    struct bt_upstream_stats st = stats(u);
    CHECK_INT(st.conns_opened, 2);
    CHECK_INT(st.conns_reused, 2);
    CHECK_INT(st.conns_idle, 1); /* max_idle_per_origin */
    CHECK_INT(atomic_load(&s.accepted), 2);
    run_for(&loop, 200);
    CHECK_INT(stats(u).conns_idle, 0); /* reaped after idle_reap_ms */
    for (int i = 0; i < 6; i++)
        bt_buf_free(&r[i].body);
    bt_buf_free(&extra.body);
    finish(&loop, u);
    srv_stop(&s);
}

TEST(invalid_requests_tls_and_free_in_flight)
{
    struct srv s;
    REQUIRE(srv_start(&s));
    uv_loop_t loop;
    uv_loop_init(&loop);
    struct bt_upstream *u = bt_upstream_new(&loop, NULL);
    struct res r1, r2, r3, r4, r5;
    res_init(&r1);
    res_init(&r2);
    res_init(&r3);
    res_init(&r4);
    res_init(&r5);
    REQUIRE(start(u, "127.0.0.1", s.port, "GET", "/cl\r\nX-Evil: 1", NULL, NO_TO, 0, &r1));
    struct bt_up_origin tls = {.tls = true, .host = "127.0.0.1", .port = s.port};
    struct bt_up_request req = {.method = BT_STR("GET"), .target = BT_STR("/")};
    r2.call = bt_upstream_request(u, &tls, &req, &CB, &r2);
    REQUIRE(r2.call);
    struct bt_http_header bad = {BT_STR("X-Evil"), BT_STR("a\r\nInjected: 1")};
    struct bt_up_origin o = {.host = "127.0.0.1", .port = s.port};
    struct bt_up_request req3 = {
        .method = BT_STR("GET"), .target = BT_STR("/"), .headers = &bad, .nheaders = 1};
    r3.call = bt_upstream_request(u, &o, &req3, &CB, &r3);
    REQUIRE(r3.call);
    struct bt_up_origin noport = {.host = "127.0.0.1", .port = 0};
    r4.call = bt_upstream_request(u, &noport, &req, &CB, &r4);
    REQUIRE(r4.call);
    CHECK_INT(r1.dones + r2.dones + r3.dones + r4.dones, 0); /* deferred to the loop */
    run(&loop);
    CHECK_INT(r1.err, BT_EINVAL);
    CHECK_INT(r2.err, BT_ETLS); /* the plain server answers the ClientHello with HTTP */
    CHECK(r2.detail[0] != 0);
    CHECK_INT(r3.err, BT_EINVAL);
    CHECK_INT(r4.err, BT_EINVAL);
    CHECK_INT(atomic_load(&s.requests), 0);
    /* Free with a request in flight: no callback, and the loop closes clean. */
    REQUIRE(start(u, "127.0.0.1", s.port, "GET", "/stall", NULL, NO_TO, 0, &r5));
    run_for(&loop, 30);
    bt_upstream_free(u);
    uv_run(&loop, UV_RUN_DEFAULT);
    CHECK_INT(r5.dones, 0);
    CHECK_INT(uv_loop_close(&loop), 0);
    bt_buf_free(&r1.body);
    bt_buf_free(&r2.body);
    bt_buf_free(&r3.body);
    bt_buf_free(&r4.body);
    bt_buf_free(&r5.body);
    srv_stop(&s);
}

/* ---- TLS against nginx (tests/integration/test_upstream_tls.sh) -------------
 * The script starts nginx with certificates from a test CA and sets
 * SSL_CERT_FILE to that CA, then runs this binary with the ports below. */

static uint16_t env_port(const char *name)
{
    const char *v = getenv(name);
    return v ? (uint16_t)strtoul(v, NULL, 10) : 0;
}

static struct bt_up_call *tls_start_req(struct bt_upstream *u, const char *host, uint16_t port,
                                        const char *method, const char *path, struct bt_str body,
                                        struct res *r)
{
    struct bt_up_origin o = {.tls = true, .host = host, .port = port};
    struct bt_http_header hs[1] = {{BT_STR("Content-Type"), BT_STR("application/octet-stream")}};
    struct bt_up_request req = {
        .method = bt_str_c(method),
        .target = bt_str_c(path),
        .headers = hs,
        .nheaders = 1,
        .body = body,
        .timeouts = {.connect_ms = 5000, .first_byte_ms = 5000, .idle_ms = 5000, .total_ms = 20000},
    };
    r->call = bt_upstream_request(u, &o, &req, &CB, r);
    return r->call;
}

TEST(tls_get_keepalive_and_post)
{
    uint16_t port = env_port("BT_TLS_GOOD_PORT");
    uv_loop_t loop;
    uv_loop_init(&loop);
    struct bt_upstream *u = bt_upstream_new(&loop, NULL);
    int ok = 0;
    for (int i = 0; i < 50; i++) {
        struct res r;
        res_init(&r);
        if (tls_start_req(u, "localhost", port, "GET", "/", BT_STR_NULL, &r)) run(&loop);
        if (r.err == BT_OK && r.status == 200 && r.dones == 1 && r.body.len == 10 &&
            memcmp(r.body.p, "hello tls\n", 10) == 0)
            ok++;
        else
            fprintf(stderr, "  request %d: err %d (%s) status %d\n", i, r.err, r.detail, r.status);
        bt_buf_free(&r.body);
    }
    CHECK_INT(ok, 50);
    struct bt_upstream_stats st = stats(u);
    CHECK_INT(st.conns_opened, 1);
    CHECK_INT(st.conns_reused, 49);
    CHECK_INT(st.tls_handshakes, 1);

    /* A 1 MiB body goes out encrypted piece by piece; nginx proxies it to a
     * plain server that answers with the Content-Length it received. */
    size_t n = 1 << 20;
    char *blob = malloc(n);
    REQUIRE(blob);
    memset(blob, 'z', n);
    struct res big, small;
    res_init(&big);
    res_init(&small);
    REQUIRE(tls_start_req(u, "localhost", port, "POST", "/echo", (struct bt_str){blob, n}, &big));
    run(&loop);
    CHECK_INT(big.err, BT_OK);
    CHECK_INT(big.status, 200);
    CHECK_SLICE(bt_buf_str(&big.body), "1048576");
    REQUIRE(tls_start_req(u, "localhost", port, "POST", "/echo", BT_STR("{}"), &small));
    run(&loop);
    CHECK_INT(small.err, BT_OK);
    CHECK_SLICE(bt_buf_str(&small.body), "2");
    CHECK_INT(stats(u).conns_opened, 1);
    free(blob);
    bt_buf_free(&big.body);
    bt_buf_free(&small.body);
    finish(&loop, u);
}

TEST(tls_session_resumption)
{
    uint16_t port = env_port("BT_TLS_GOOD_PORT");
    uv_loop_t loop;
    uv_loop_init(&loop);
    struct bt_upstream *u = bt_upstream_new(&loop, NULL);
    /* /close answers with Connection: close, so each request needs a new
     * connection; the second and third resume the session of the first. */
    for (int i = 0; i < 3; i++) {
        struct res r;
        res_init(&r);
        REQUIRE(tls_start_req(u, "localhost", port, "GET", "/close", BT_STR_NULL, &r));
        run(&loop);
        CHECK_INT(r.err, BT_OK);
        CHECK_SLICE(bt_buf_str(&r.body), "bye\n");
        bt_buf_free(&r.body);
    }
    struct bt_upstream_stats st = stats(u);
    CHECK_INT(st.conns_opened, 3);
    CHECK_INT(st.tls_handshakes, 3);
    CHECK_INT(st.tls_resumed, 2);
    finish(&loop, u);
}

TEST(tls_stale_pooled_connection_retried)
{
    uint16_t port = env_port("BT_TLS_SHORT_PORT"); /* keepalive_timeout 1s */
    uv_loop_t loop;
    uv_loop_init(&loop);
    struct bt_upstream *u = bt_upstream_new(&loop, NULL);
    struct res r1, r2;
    res_init(&r1);
    res_init(&r2);
    REQUIRE(tls_start_req(u, "localhost", port, "GET", "/", BT_STR_NULL, &r1));
    run(&loop);
    CHECK_INT(r1.err, BT_OK);
    CHECK_INT(stats(u).conns_idle, 1);
    ms_sleep(1600); /* nginx closes the idle connection; we do not look */
    REQUIRE(tls_start_req(u, "localhost", port, "GET", "/", BT_STR_NULL, &r2));
    run(&loop);
    CHECK_INT(r2.err, BT_OK);
    CHECK_SLICE(bt_buf_str(&r2.body), "hello tls\n");
    CHECK_INT(stats(u).conns_opened, 2);
    CHECK_INT(stats(u).conns_reused, 1);
    bt_buf_free(&r1.body);
    bt_buf_free(&r2.body);
    finish(&loop, u);
}

TEST(tls_verification_failures)
{
    uv_loop_t loop;
    uv_loop_init(&loop);
    struct bt_upstream *u = bt_upstream_new(&loop, NULL);
    struct res mismatch, expired, untrusted;
    res_init(&mismatch);
    res_init(&expired);
    res_init(&untrusted);
    /* The good certificate names only "localhost". */
    REQUIRE(tls_start_req(u, "127.0.0.1", env_port("BT_TLS_GOOD_PORT"), "GET", "/", BT_STR_NULL,
                          &mismatch));
    REQUIRE(tls_start_req(u, "localhost", env_port("BT_TLS_EXPIRED_PORT"), "GET", "/", BT_STR_NULL,
                          &expired));
    REQUIRE(tls_start_req(u, "localhost", env_port("BT_TLS_UNTRUSTED_PORT"), "GET", "/",
                          BT_STR_NULL, &untrusted));
    run(&loop);
    CHECK_INT(mismatch.err, BT_ETLS);
    CHECK_STR(mismatch.detail, "hostname mismatch");
    CHECK_INT(expired.err, BT_ETLS);
    CHECK_STR(expired.detail, "expired certificate");
    CHECK_INT(untrusted.err, BT_ETLS);
    CHECK_STR(untrusted.detail, "untrusted certificate");
    CHECK_INT(mismatch.heads + expired.heads + untrusted.heads, 0);
    CHECK_INT(stats(u).tls_handshakes, 0);
    bt_buf_free(&mismatch.body);
    bt_buf_free(&expired.body);
    bt_buf_free(&untrusted.body);
    finish(&loop, u);
}

TEST(tls_concurrent_and_cancel)
{
    uint16_t port = env_port("BT_TLS_GOOD_PORT");
    uv_loop_t loop;
    uv_loop_init(&loop);
    struct bt_upstream_opts opts = {.max_conns_per_origin = 4};
    struct bt_upstream *u = bt_upstream_new(&loop, &opts);
    struct res r[12];
    for (int i = 0; i < 12; i++) {
        res_init(&r[i]);
        if (i == 5) r[i].cancel_on_head = true;
        REQUIRE(tls_start_req(u, "localhost", port, "GET", "/", BT_STR_NULL, &r[i]));
    }
    bt_upstream_cancel(r[11].call); /* queued or connecting: gone without a word */
    run(&loop);
    int ok = 0;
    for (int i = 0; i < 12; i++) {
        if (i == 5 || i == 11) continue;
        if (r[i].err == BT_OK && r[i].body.len == 10) ok++;
    }
    CHECK_INT(ok, 10);
    CHECK_INT(r[5].heads, 1);
    CHECK_INT(r[5].dones, 0);
    CHECK_INT(r[11].heads + r[11].dones, 0);
    CHECK(stats(u).conns_opened <= 5); /* 4, plus one replacing the cancelled one */
    for (int i = 0; i < 12; i++)
        bt_buf_free(&r[i].body);
    finish(&loop, u);
}

int main(void)
{
    if (getenv("BT_TLS_GOOD_PORT")) {
        RUN(tls_get_keepalive_and_post);
        RUN(tls_session_resumption);
        RUN(tls_stale_pooled_connection_retried);
        RUN(tls_verification_failures);
        RUN(tls_concurrent_and_cancel);
        return HARNESS_DONE();
    }
    RUN(get_content_length);
    RUN(post_echo);
    RUN(chunked_close_delimited_and_nobody);
    RUN(keepalive_reuse_sequential);
    RUN(request_from_inside_on_done_reuses);
    RUN(stale_pooled_connection_retried);
    RUN(idle_connection_closed_by_peer_is_dropped);
    RUN(fresh_connection_closed_is_not_retried);
    RUN(connect_refused_and_dns);
    RUN(dns_localhost_and_cache);
    RUN(timeout_connect);
    RUN(tls_handshake_timeout);
    RUN(timeouts_first_byte_idle_total);
    RUN(cancel_mid_body_and_elsewhere);
    RUN(big_body_streams);
    RUN(head_limits_and_protocol_errors);
    RUN(redirect_interim_and_reuse_rules);
    RUN(pool_limits_queue_and_reap);
    RUN(invalid_requests_tls_and_free_in_flight);
    return HARNESS_DONE();
}
