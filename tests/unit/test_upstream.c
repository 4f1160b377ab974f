/* Tests for the upstream HTTP/1.1 client against a small scripted HTTP server
 * that runs in this process: one thread accepting, one thread per connection,
 * blocking sockets. The request path picks the server's behaviour. */
#include "harness.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>
#include <uv.h>

#include "core/buf.h"
#include "upstream/proxy.h"
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
    if (strcmp(path, "/slowecho") == 0) usleep(300 * 1000); /* the client's socket fills up */
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
    bt_buf_init(&body, 4 << 20);
    while (read_request(sc, method, sizeof(method), path, sizeof(path), &body)) {
        bool head = strcmp(method, "HEAD") == 0;
        if (strcmp(path, "/cl") == 0) {
            send_str(fd, "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-Test: yes\r\n\r\n");
            if (!head) send_str(fd, "hello");
        } else if (strcmp(path, "/echo") == 0 || strcmp(path, "/slowecho") == 0) {
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
    char detail[200];
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

static const struct bt_up_callbacks CB = {on_head, on_data, on_done, NULL};

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

/* A body given as slices goes out as their concatenation: small (one write),
 * and big, to a server that waits before reading it, so the socket takes it in
 * pieces (the rest by uv_write, resumed inside the right slice). The echo shows
 * every byte in order. */
TEST(post_body_parts)
{
    struct srv s;
    REQUIRE(srv_start(&s));
    int rcv = 8192; /* accepted sockets inherit it: a big body cannot go in one write */
    setsockopt(s.lfd, SOL_SOCKET, SO_RCVBUF, &rcv, sizeof(rcv));
    uv_loop_t loop;
    uv_loop_init(&loop);
    struct bt_upstream *u = bt_upstream_new(&loop, NULL);
    struct bt_up_origin o = {.tls = false, .host = "127.0.0.1", .port = s.port};
    struct bt_str small[4] = {BT_STR("{\"model\":"), BT_STR(""), BT_STR("\"m\""), BT_STR(",\"x\":1}")};
    struct bt_up_request req = {.method = BT_STR("POST"), .target = BT_STR("/echo"),
                                .body_parts = small, .nbody_parts = 4};
    struct res r;
    res_init(&r);
    r.call = bt_upstream_request(u, &o, &req, &CB, &r);
    REQUIRE(r.call);
    run(&loop);
    CHECK_INT(r.err, BT_OK);
    CHECK_SLICE(bt_buf_str(&r.body), "{\"model\":\"m\",\"x\":1}");
    CHECK(strstr(s.last_head, "Content-Length: 19\r\n") != NULL);
    bt_buf_free(&r.body);

    size_t n1 = 1000001, n2 = 7, n3 = 2900000; /* under the 4 MiB the echo and res hold */
    char *blob = malloc(n1 + n2 + n3);
    REQUIRE(blob);
    for (size_t i = 0; i < n1 + n2 + n3; i++) blob[i] = (char)('a' + (i * 7 + i / 1000) % 26);
    struct bt_str big[3] = {{blob, n1}, {blob + n1, n2}, {blob + n1 + n2, n3}};
    req.target = BT_STR("/slowecho");
    req.body_parts = big;
    req.nbody_parts = 3;
    res_init(&r);
    r.call = bt_upstream_request(u, &o, &req, &CB, &r);
    REQUIRE(r.call);
    run(&loop);
    CHECK_INT(r.err, BT_OK);
    CHECK_INT(r.body.len, n1 + n2 + n3);
    CHECK(r.body.len == n1 + n2 + n3 && memcmp(r.body.p, blob, r.body.len) == 0);
    bt_buf_free(&r.body);

    /* more slices than the call holds: refused through on_done */
    struct bt_str many[BT_UP_BODY_PARTS + 1];
    for (size_t i = 0; i <= BT_UP_BODY_PARTS; i++) many[i] = BT_STR("x");
    req.body_parts = many;
    req.nbody_parts = BT_UP_BODY_PARTS + 1;
    res_init(&r);
    r.call = bt_upstream_request(u, &o, &req, &CB, &r);
    REQUIRE(r.call);
    run(&loop);
    CHECK_INT(r.err, BT_EINVAL);
    bt_buf_free(&r.body);
    free(blob);
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
    /* bodies as slices: a small one (head and body in one record) and a big one
     * encrypted piece by piece across slice ends */
    struct bt_up_origin o = {.tls = true, .host = "localhost", .port = port};
    struct bt_str sp[3] = {BT_STR("{\"a\":"), BT_STR("12"), BT_STR("}")};
    struct bt_str bp[3] = {{blob, 20000}, {blob + 20000, 3}, {blob + 20003, n - 20003}};
    struct bt_up_request preq = {.method = BT_STR("POST"), .target = BT_STR("/echo"),
                                 .body_parts = sp, .nbody_parts = 3,
                                 .timeouts = {.connect_ms = 5000, .total_ms = 20000}};
    struct res pr;
    res_init(&pr);
    pr.call = bt_upstream_request(u, &o, &preq, &CB, &pr);
    REQUIRE(pr.call);
    run(&loop);
    CHECK_INT(pr.err, BT_OK);
    CHECK_SLICE(bt_buf_str(&pr.body), "8");
    bt_buf_free(&pr.body);
    preq.body_parts = bp;
    res_init(&pr);
    pr.call = bt_upstream_request(u, &o, &preq, &CB, &pr);
    REQUIRE(pr.call);
    run(&loop);
    CHECK_INT(pr.err, BT_OK);
    CHECK_SLICE(bt_buf_str(&pr.body), "1048576");
    bt_buf_free(&pr.body);
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

/* ---- proxies ---------------------------------------------------------------- */

TEST(proxy_url_parse)
{
    struct bt_proxy_spec sp;
    char why[160];
    REQUIRE(bt_proxy_parse("http://proxy.corp:3128", 22, &sp, why, sizeof(why)) == BT_OK);
    CHECK_STR(sp.host, "proxy.corp");
    CHECK_INT(sp.port, 3128);
    CHECK(sp.auth == NULL);
    CHECK_STR(sp.shown, "http://proxy.corp:3128");
    bt_proxy_spec_free(&sp);
    /* No scheme, no port: http and curl's 1080; a trailing slash is fine. */
    const char *u2 = "proxy.corp/";
    REQUIRE(bt_proxy_parse(u2, strlen(u2), &sp, why, sizeof(why)) == BT_OK);
    CHECK_STR(sp.host, "proxy.corp");
    CHECK_INT(sp.port, 1080);
    bt_proxy_spec_free(&sp);
    /* Credentials: percent-decoded, then Basic; never shown. */
    const char *u3 = "HTTP://us%40er:p%3Ass@[::1]:8080";
    REQUIRE(bt_proxy_parse(u3, strlen(u3), &sp, why, sizeof(why)) == BT_OK);
    CHECK_STR(sp.host, "::1");
    CHECK_INT(sp.port, 8080);
    CHECK_STR(sp.auth, "Basic dXNAZXI6cDpzcw=="); /* base64("us@er:p:ss") */
    CHECK_STR(sp.shown, "http://***@[::1]:8080");
    bt_proxy_spec_free(&sp);
    const char *u4 = "http://u:p@127.0.0.1:1";
    REQUIRE(bt_proxy_parse(u4, strlen(u4), &sp, why, sizeof(why)) == BT_OK);
    CHECK_STR(sp.auth, "Basic dTpw");
    bt_proxy_spec_free(&sp);
    const char *u5 = "http://user@h:2"; /* a user without password: "user:" */
    REQUIRE(bt_proxy_parse(u5, strlen(u5), &sp, why, sizeof(why)) == BT_OK);
    CHECK_STR(sp.auth, "Basic dXNlcjo=");
    bt_proxy_spec_free(&sp);
    const char *bad[] = {"https://proxy:443", "socks5://proxy:1080", "http://proxy:99999",
                         "http://proxy:0",     "http://proxy/path",   "http://",
                         "http://u:p%zz@h:1",  "http://[::1:80",      "http://pro xy:1",
                         "http://u:se%0Acret@h:1", ""};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        why[0] = 0;
        enum bt_err e = bt_proxy_parse(bad[i], strlen(bad[i]), &sp, why, sizeof(why));
        if (e != BT_EINVAL) H_FAIL("\"%s\" parsed (err %d)", bad[i], e);
        CHECK(why[0] != 0);
        CHECK(strstr(why, "secret") == NULL && strstr(why, "se%0A") == NULL);
        CHECK(sp.host == NULL && sp.auth == NULL && sp.shown == NULL);
    }
}

TEST(no_proxy_rules)
{
    CHECK(!bt_no_proxy_match(NULL, "api.openai.com", 443));
    CHECK(!bt_no_proxy_match("", "api.openai.com", 443));
    CHECK(bt_no_proxy_match("*", "api.openai.com", 443));
    CHECK(bt_no_proxy_match("openai.com", "api.openai.com", 443));
    CHECK(bt_no_proxy_match("openai.com", "openai.com", 443));
    CHECK(bt_no_proxy_match(".openai.com", "api.openai.com", 443));
    CHECK(bt_no_proxy_match(".openai.com", "openai.com", 443));
    CHECK(bt_no_proxy_match("OpenAI.COM", "Api.openai.com.", 443));
    CHECK(!bt_no_proxy_match("openai.com", "notopenai.com", 443));
    CHECK(!bt_no_proxy_match("api.openai.com", "openai.com", 443));
    CHECK(bt_no_proxy_match("foo, bar.org ,openai.com", "x.openai.com", 443));
    CHECK(bt_no_proxy_match("foo bar.org", "bar.org", 80));
    /* Loopback is not special: only a NO_PROXY entry exempts it. */
    CHECK(!bt_no_proxy_match("example.com", "localhost", 443));
    CHECK(!bt_no_proxy_match("example.com", "127.0.0.1", 443));
    CHECK(bt_no_proxy_match("localhost,127.0.0.1", "127.0.0.1", 443));
    CHECK(bt_no_proxy_match("localhost", "localhost", 8443));
    /* Ports. */
    CHECK(bt_no_proxy_match("localhost:8443", "localhost", 8443));
    CHECK(!bt_no_proxy_match("localhost:8443", "localhost", 443));
    CHECK(bt_no_proxy_match("127.0.0.1:20001", "127.0.0.1", 20001));
    CHECK(!bt_no_proxy_match("127.0.0.1:20001", "127.0.0.1", 20002));
    /* Addresses and ranges; names never match addresses. */
    CHECK(bt_no_proxy_match("10.0.0.0/8", "10.1.2.3", 443));
    CHECK(!bt_no_proxy_match("10.0.0.0/8", "11.1.2.3", 443));
    CHECK(bt_no_proxy_match("192.168.1.0/23", "192.168.0.9", 443));
    CHECK(!bt_no_proxy_match("192.168.1.0/24", "192.168.0.9", 443));
    CHECK(bt_no_proxy_match("::1", "::1", 443));
    CHECK(bt_no_proxy_match("::1", "[::1]", 443));
    CHECK(bt_no_proxy_match("[::1]:443", "::1", 443));
    CHECK(!bt_no_proxy_match("[::1]:443", "::1", 80));
    CHECK(bt_no_proxy_match("fd00::/8", "fd12::5", 443));
    CHECK(!bt_no_proxy_match("0.0.0.1", "localhost", 443));
    CHECK(!bt_no_proxy_match("1.com", "1.1.1.1", 443));
    CHECK(!bt_no_proxy_match(",,, ,", "a.com", 443));
    CHECK(!bt_no_proxy_match("a.com:notaport", "a.com", 443));
}

/* A scripted HTTP proxy in threads: CONNECT tunnels to 127.0.0.1:port (for
 * any host name) and relays bytes; a plain request is answered by the proxy
 * itself with its request line and whether it carried Proxy-Authorization,
 * so a test sees exactly what the client sent. `need_auth` makes it answer
 * 407 without that exact Proxy-Authorization value. */
struct tproxy {
    int lfd;
    uint16_t port;
    pthread_t accept_thr;
    const char *need_auth;
    atomic_int connects, plains, refused;
    atomic_bool stop;
    pthread_mutex_t mu;
    int fds[SRV_MAX_CONNS];
    pthread_t thr[SRV_MAX_CONNS];
    int nconn;
    char last_head[4096];
};

struct tproxy_conn {
    struct tproxy *p;
    int fd;
};

static void relay(int a, int b)
{
    struct pollfd pf[2] = {{.fd = a, .events = POLLIN}, {.fd = b, .events = POLLIN}};
    char buf[16384];
    for (;;) {
        if (poll(pf, 2, 200) < 0) return;
        for (int i = 0; i < 2; i++) {
            if (!(pf[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
            ssize_t n = recv(pf[i].fd, buf, sizeof(buf), 0);
            if (n <= 0 || !send_all(pf[1 - i].fd, buf, (size_t)n)) return;
        }
    }
}

static void *tproxy_conn_main(void *arg)
{
    struct tproxy_conn *pc = arg;
    struct tproxy *p = pc->p;
    int fd = pc->fd;
    for (;;) {
        char head[4096];
        size_t len = 0;
        char *end = NULL;
        while (!end && len < sizeof(head) - 1) {
            ssize_t r = recv(fd, head + len, sizeof(head) - 1 - len, 0);
            if (r <= 0) goto out;
            len += (size_t)r;
            head[len] = 0;
            end = strstr(head, "\r\n\r\n");
        }
        if (!end) goto out;
        end[2] = 0; /* the head with its last CRLF */
        pthread_mutex_lock(&p->mu);
        snprintf(p->last_head, sizeof(p->last_head), "%s", head);
        pthread_mutex_unlock(&p->mu);
        char line[512];
        char *eol = strstr(head, "\r\n");
        snprintf(line, sizeof(line), "%.*s", (int)(eol - head), head);
        const char *pa = strcasestr(head, "\r\nProxy-Authorization: ");
        char got_auth[256] = "";
        if (pa) {
            pa += 23;
            const char *e = strstr(pa, "\r\n");
            snprintf(got_auth, sizeof(got_auth), "%.*s", (int)(e - pa), pa);
        }
        if (p->need_auth && strcmp(got_auth, p->need_auth) != 0) {
            atomic_fetch_add(&p->refused, 1);
            send_str(fd, "HTTP/1.1 407 Proxy Authentication Required\r\n"
                         "Proxy-Authenticate: Basic realm=\"test\"\r\nContent-Length: 6\r\n"
                         "Connection: close\r\n\r\ndenied");
            goto out;
        }
        if (strncmp(line, "CONNECT ", 8) == 0) {
            atomic_fetch_add(&p->connects, 1);
            const char *colon = strrchr(line, ':');
            uint16_t port = colon ? (uint16_t)strtoul(colon + 1, NULL, 10) : 0;
            int up = socket(AF_INET, SOCK_STREAM, 0);
            struct sockaddr_in sa = {.sin_family = AF_INET,
                                     .sin_port = htons(port),
                                     .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
            if (connect(up, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
                close(up);
                send_str(fd, "HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n");
                goto out;
            }
            send_str(fd, "HTTP/1.1 200 Connection established\r\n\r\n");
            relay(fd, up);
            close(up);
            goto out;
        }
        atomic_fetch_add(&p->plains, 1);
        char body[700];
        int bn = snprintf(body, sizeof(body), "%s|auth=%s", line, got_auth[0] ? got_auth : "-");
        char resp[900];
        snprintf(resp, sizeof(resp), "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s", bn, body);
        if (!send_str(fd, resp)) goto out;
    }
out:
    shutdown(fd, SHUT_RDWR);
    free(pc);
    return NULL;
}

static void *tproxy_accept_main(void *arg)
{
    struct tproxy *p = arg;
    for (;;) {
        int fd = accept(p->lfd, NULL, NULL);
        if (fd < 0) {
            if (!atomic_load(&p->stop) && errno == EINTR) continue;
            break;
        }
        if (atomic_load(&p->stop)) {
            close(fd);
            break;
        }
        pthread_mutex_lock(&p->mu);
        if (p->nconn == SRV_MAX_CONNS) {
            pthread_mutex_unlock(&p->mu);
            close(fd);
            continue;
        }
        int i = p->nconn++;
        p->fds[i] = fd;
        struct tproxy_conn *pc = malloc(sizeof(*pc));
        pc->p = p;
        pc->fd = fd;
        pthread_create(&p->thr[i], NULL, tproxy_conn_main, pc);
        pthread_mutex_unlock(&p->mu);
    }
    return NULL;
}

static bool tproxy_start(struct tproxy *p, const char *need_auth)
{
    memset(p, 0, sizeof(*p));
    pthread_mutex_init(&p->mu, NULL);
    p->need_auth = need_auth;
    p->lfd = listen_on(&p->port, 64);
    if (p->lfd < 0) return false;
    pthread_create(&p->accept_thr, NULL, tproxy_accept_main, p);
    return true;
}

static void tproxy_stop(struct tproxy *p)
{
    atomic_store(&p->stop, true);
    shutdown(p->lfd, SHUT_RDWR);
    pthread_join(p->accept_thr, NULL);
    close(p->lfd);
    for (int i = 0; i < p->nconn; i++)
        shutdown(p->fds[i], SHUT_RDWR);
    for (int i = 0; i < p->nconn; i++) {
        pthread_join(p->thr[i], NULL);
        close(p->fds[i]);
    }
    pthread_mutex_destroy(&p->mu);
}

static struct bt_up_call *start_via(struct bt_upstream *u, const struct bt_up_origin *o,
                                    const char *path, struct res *r)
{
    struct bt_up_request req = {
        .method = BT_STR("GET"),
        .target = bt_str_c(path),
        .timeouts = {.connect_ms = 5000, .first_byte_ms = 5000, .total_ms = 10000},
    };
    r->call = bt_upstream_request(u, o, &req, &CB, r);
    return r->call;
}

/* Plain http through a proxy: absolute-form, our Host, Proxy-Authorization
 * for the proxy only; the connection to the proxy is kept alive and pooled
 * apart from direct connections and from other credentials. */
TEST(proxy_plain_http_absolute_form)
{
    struct tproxy px;
    REQUIRE(tproxy_start(&px, NULL));
    uv_loop_t loop;
    uv_loop_init(&loop);
    struct bt_upstream *u = bt_upstream_new(&loop, NULL);
    struct bt_up_origin o = {.host = "api.example.com", .port = 8080, .proxy_host = "127.0.0.1",
                             .proxy_port = px.port};
    struct res r[4];
    for (int i = 0; i < 4; i++)
        res_init(&r[i]);
    REQUIRE(start_via(u, &o, "/v1/chat/completions", &r[0]));
    run(&loop);
    CHECK_INT(r[0].err, BT_OK);
    CHECK_SLICE(bt_buf_str(&r[0].body),
                "GET http://api.example.com:8080/v1/chat/completions HTTP/1.1|auth=-");
    CHECK(strstr(px.last_head, "\r\nHost: api.example.com:8080\r\n") != NULL);
    REQUIRE(start_via(u, &o, "/again", &r[1]));
    run(&loop);
    CHECK_INT(r[1].err, BT_OK);
    CHECK_INT(stats(u).conns_opened, 1);
    CHECK_INT(stats(u).conns_reused, 1);
    /* Other credentials: another pool, another connection; the header goes out. */
    struct bt_up_origin oa = o;
    oa.proxy_auth = "Basic dTpw";
    REQUIRE(start_via(u, &oa, "/x", &r[2]));
    run(&loop);
    CHECK_INT(r[2].err, BT_OK);
    CHECK_SLICE(bt_buf_str(&r[2].body), "GET http://api.example.com:8080/x HTTP/1.1|auth=Basic dTpw");
    CHECK_INT(stats(u).conns_opened, 2);
    CHECK_INT(px.plains, 3);
    CHECK_INT(px.connects, 0);
    /* A header that could split the request is refused. */
    struct bt_up_origin bad = o;
    bad.proxy_auth = "Basic x\r\nX-Evil: 1";
    REQUIRE(start_via(u, &bad, "/", &r[3]));
    run(&loop);
    CHECK_INT(r[3].err, BT_EINVAL);
    CHECK_INT(px.plains, 3);
    for (int i = 0; i < 4; i++)
        bt_buf_free(&r[i].body);
    finish(&loop, u);
    tproxy_stop(&px);
}

/* https through a proxy: CONNECT host:port with Host and credentials, then TLS
 * inside the tunnel. Here the tunnel leads to a plain HTTP server, so the
 * handshake fails: that proves the order (CONNECT first, TLS after) without
 * a TLS server; the TLS mode does the full exchange against nginx. */
TEST(proxy_connect_tunnel_and_refusals)
{
    struct srv s;
    REQUIRE(srv_start(&s));
    struct tproxy px, pxa;
    REQUIRE(tproxy_start(&px, NULL));
    REQUIRE(tproxy_start(&pxa, "Basic dTpw"));
    uint16_t dead;
    int dfd = listen_on(&dead, 1);
    REQUIRE(dfd >= 0);
    close(dfd);
    uv_loop_t loop;
    uv_loop_init(&loop);
    struct bt_upstream *u = bt_upstream_new(&loop, NULL);
    struct res r[5];
    for (int i = 0; i < 5; i++)
        res_init(&r[i]);
    struct bt_up_origin o = {.tls = true, .host = "localhost", .port = s.port,
                             .proxy_host = "127.0.0.1", .proxy_port = px.port};
    REQUIRE(start_via(u, &o, "/cl", &r[0]));
    run(&loop);
    CHECK_INT(r[0].err, BT_ETLS);
    CHECK_INT(px.connects, 1);
    CHECK_INT(stats(u).proxy_tunnels, 1);
    char want[128];
    snprintf(want, sizeof(want), "CONNECT localhost:%u HTTP/1.1\r\nHost: localhost:%u\r\n",
             s.port, s.port);
    CHECK(strncmp(px.last_head, want, strlen(want)) == 0);
    CHECK(strstr(px.last_head, "Proxy-Authorization") == NULL);

    /* A proxy that wants credentials: none -> a clear 407 naming the proxy. */
    struct bt_up_origin oa = o;
    oa.proxy_port = pxa.port;
    REQUIRE(start_via(u, &oa, "/cl", &r[1]));
    run(&loop);
    CHECK_INT(r[1].err, BT_EPROTO);
    char want407[160];
    snprintf(want407, sizeof(want407),
             "proxy refused CONNECT: 407 Proxy Authentication Required (proxy 127.0.0.1:%u)",
             pxa.port);
    CHECK_STR(r[1].detail, want407);
    CHECK_INT(r[1].heads, 0);
    /* ... with them: the tunnel opens (and TLS fails on the plain server). */
    oa.proxy_auth = "Basic dTpw";
    REQUIRE(start_via(u, &oa, "/cl", &r[2]));
    run(&loop);
    CHECK_INT(r[2].err, BT_ETLS);
    CHECK_INT(pxa.connects, 1);
    CHECK_INT(pxa.refused, 1);
    CHECK(strstr(pxa.last_head, "\r\nProxy-Authorization: Basic dTpw\r\n") != NULL);
    CHECK_INT(stats(u).proxy_tunnels, 2);

    /* The proxy is down: the message names the proxy, not the origin. */
    struct bt_up_origin od = o;
    od.proxy_port = dead;
    REQUIRE(start_via(u, &od, "/cl", &r[3]));
    run(&loop);
    CHECK_INT(r[3].err, BT_ECONNREFUSED);
    snprintf(want, sizeof(want), "proxy 127.0.0.1:%u: connection refused", dead);
    CHECK_STR(r[3].detail, want);
    /* The origin is gone behind the proxy: the proxy's own 502. */
    struct bt_up_origin og = o;
    og.port = dead;
    REQUIRE(start_via(u, &og, "/cl", &r[4]));
    run(&loop);
    CHECK_INT(r[4].err, BT_EPROTO);
    CHECK(strncmp(r[4].detail, "proxy refused CONNECT: 502 Bad Gateway", 38) == 0);
    CHECK_INT(s.accepted, 2); /* the two tunnels; nothing went around the proxy */
    for (int i = 0; i < 5; i++)
        bt_buf_free(&r[i].body);
    finish(&loop, u);
    tproxy_stop(&px);
    tproxy_stop(&pxa);
    srv_stop(&s);
}

/* A proxy that never answers CONNECT: the connect timeout covers it. */
TEST(proxy_connect_timeout)
{
    uint16_t port;
    int lfd = listen_on(&port, 8); /* the kernel completes TCP; nobody answers */
    REQUIRE(lfd >= 0);
    uv_loop_t loop;
    uv_loop_init(&loop);
    struct bt_upstream *u = bt_upstream_new(&loop, NULL);
    struct res r;
    res_init(&r);
    struct bt_up_origin o = {.tls = true, .host = "localhost", .port = 443,
                             .proxy_host = "127.0.0.1", .proxy_port = port};
    struct bt_up_request req = {
        .method = BT_STR("GET"), .target = BT_STR("/"), .timeouts = {.connect_ms = 100}};
    uint64_t t0 = uv_hrtime();
    r.call = bt_upstream_request(u, &o, &req, &CB, &r);
    REQUIRE(r.call);
    run(&loop);
    uint64_t ms = (uv_hrtime() - t0) / 1000000;
    CHECK_INT(r.err, BT_ETIMEDOUT);
    CHECK_STR(r.detail, "connect");
    CHECK(ms >= 90 && ms < 1000);
    CHECK_INT(stats(u).proxy_tunnels, 0);
    bt_buf_free(&r.body);
    finish(&loop, u);
    close(lfd);
}

/* ---- TLS settings against nginx (TLS mode) ---- */

/* ca_file adds a CA beside the system store; verify off accepts anything; each
 * setting gets its own SSL_CTX and its own pool. The system store is emptied
 * for this test (SSL_CERT_FILE points nowhere), so only ca_file can make the
 * test CA trusted. */
TEST(tls_ca_file_and_verify_off)
{
    const char *ca_env = getenv("SSL_CERT_FILE");
    REQUIRE(ca_env);
    char ca[1024];
    snprintf(ca, sizeof(ca), "%s", ca_env);
    setenv("SSL_CERT_FILE", "/nonexistent/baton-test-ca.pem", 1);
    uint16_t good = env_port("BT_TLS_GOOD_PORT");
    uv_loop_t loop;
    uv_loop_init(&loop);
    struct bt_upstream *u = bt_upstream_new(&loop, NULL);
    struct res r[8];
    for (int i = 0; i < 8; i++)
        res_init(&r[i]);
    struct bt_up_origin plain = {.tls = true, .host = "localhost", .port = good};
    REQUIRE(start_via(u, &plain, "/", &r[0]));
    run(&loop);
    CHECK_INT(r[0].err, BT_ETLS);
    CHECK_STR(r[0].detail, "untrusted certificate");
    struct bt_up_origin withca = plain;
    withca.ca_file = ca;
    for (int i = 1; i <= 2; i++) {
        REQUIRE(start_via(u, &withca, "/", &r[i]));
        run(&loop);
        CHECK_INT(r[i].err, BT_OK);
        CHECK_SLICE(bt_buf_str(&r[i].body), "hello tls\n");
    }
    CHECK_INT(stats(u).tls_handshakes, 1);
    CHECK_INT(stats(u).conns_reused, 1);
    /* The CA does not fix a wrong name. */
    struct bt_up_origin ip = withca;
    ip.host = "127.0.0.1";
    REQUIRE(start_via(u, &ip, "/", &r[3]));
    run(&loop);
    CHECK_INT(r[3].err, BT_ETLS);
    CHECK_STR(r[3].detail, "hostname mismatch");
    /* Verification off: the expired and the self-signed certificate pass. */
    struct bt_up_origin nv = {.tls = true, .host = "localhost", .tls_no_verify = true};
    nv.port = env_port("BT_TLS_EXPIRED_PORT");
    REQUIRE(start_via(u, &nv, "/", &r[4]));
    run(&loop);
    CHECK_INT(r[4].err, BT_OK);
    CHECK_SLICE(bt_buf_str(&r[4].body), "expired\n");
    nv.port = env_port("BT_TLS_UNTRUSTED_PORT");
    nv.host = "127.0.0.1";
    REQUIRE(start_via(u, &nv, "/", &r[5]));
    run(&loop);
    CHECK_INT(r[5].err, BT_OK);
    CHECK_SLICE(bt_buf_str(&r[5].body), "self\n");
    /* A verified pool and an unverified one never share a connection. */
    struct bt_up_origin nvgood = plain;
    nvgood.tls_no_verify = true;
    uint64_t opened = stats(u).conns_opened;
    REQUIRE(start_via(u, &nvgood, "/", &r[6]));
    run(&loop);
    CHECK_INT(r[6].err, BT_OK);
    CHECK_INT(stats(u).conns_opened, opened + 1);
    CHECK_INT(stats(u).tls_contexts, 3); /* system, system + ca_file, verify off */
    /* An unreadable ca_file is a clear TLS error, not a crash. */
    struct bt_up_origin badca = plain;
    badca.ca_file = "/nonexistent/ca.pem";
    REQUIRE(start_via(u, &badca, "/", &r[7]));
    run(&loop);
    CHECK_INT(r[7].err, BT_ETLS);
    CHECK(strncmp(r[7].detail, "cannot load ca_file /nonexistent/ca.pem", 39) == 0);
    for (int i = 0; i < 8; i++)
        bt_buf_free(&r[i].body);
    finish(&loop, u);
    setenv("SSL_CERT_FILE", ca, 1);
}

/* The full path through a proxy: CONNECT to nginx, TLS inside the tunnel,
 * keep-alive through it. */
TEST(tls_through_proxy)
{
    struct tproxy px;
    REQUIRE(tproxy_start(&px, "Basic dTpw"));
    uv_loop_t loop;
    uv_loop_init(&loop);
    struct bt_upstream *u = bt_upstream_new(&loop, NULL);
    struct bt_up_origin o = {.tls = true, .host = "localhost",
                             .port = env_port("BT_TLS_GOOD_PORT"), .proxy_host = "127.0.0.1",
                             .proxy_port = px.port, .proxy_auth = "Basic dTpw"};
    int ok = 0;
    for (int i = 0; i < 5; i++) {
        struct res r;
        res_init(&r);
        if (start_via(u, &o, "/", &r)) run(&loop);
        if (r.err == BT_OK && r.body.len == 10) ok++;
        else fprintf(stderr, "  request %d: err %d (%s)\n", i, r.err, r.detail);
        bt_buf_free(&r.body);
    }
    CHECK_INT(ok, 5);
    CHECK_INT(px.connects, 1);
    CHECK_INT(stats(u).proxy_tunnels, 1);
    CHECK_INT(stats(u).tls_handshakes, 1);
    CHECK_INT(stats(u).conns_reused, 4);
    finish(&loop, u);
    tproxy_stop(&px);
}

int main(void)
{
    if (getenv("BT_TLS_GOOD_PORT")) {
        RUN(tls_get_keepalive_and_post);
        RUN(tls_session_resumption);
        RUN(tls_stale_pooled_connection_retried);
        RUN(tls_verification_failures);
        RUN(tls_concurrent_and_cancel);
        RUN(tls_ca_file_and_verify_off);
        RUN(tls_through_proxy);
        return HARNESS_DONE();
    }
    RUN(get_content_length);
    RUN(post_echo);
    RUN(post_body_parts);
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
    RUN(proxy_url_parse);
    RUN(no_proxy_rules);
    RUN(proxy_plain_http_absolute_form);
    RUN(proxy_connect_tunnel_and_refusals);
    RUN(proxy_connect_timeout);
    return HARNESS_DONE();
}
