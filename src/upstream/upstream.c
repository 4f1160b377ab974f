/* baton's upstream HTTP/1.1 client. See docs/internals/upstream.md for the
 * design: who owns which memory, the connection and call state machines, the
 * keep-alive pool, the DNS cache and the one retry on a stale pooled connection.
 *
 * Ownership in one paragraph: the struct bt_upstream owns pools, DNS entries,
 * connections and calls. A connection's memory lives until its TCP handle's
 * close callback; a call's memory lives until it is released to the free list
 * (or its timer handle closed). bt_upstream_free closes everything and frees the
 * struct itself once the last handle and resolver request came back. */
#include "upstream/upstream.h"

#include <arpa/inet.h>
#include <assert.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <llhttp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "core/buf.h"

enum {
    DNS_TTL_MS = 30000,           /* positive answers are trusted this long */
    DNS_MAX_ADDRS = 16,           /* addresses tried per connection attempt */
    CALL_FREELIST_MAX = 64,       /* released calls kept for reuse */
    CALL_KEEP_BYTES = 16 * 1024,  /* buffers larger than this are freed on release */
    READ_BUF_SIZE = 64 * 1024,    /* one shared read buffer per upstream */
    TLS_PLAIN_SIZE = 16 * 1024,   /* decrypted bytes per SSL_read (one TLS record) */
    TLS_TX_CHUNK = 64 * 1024,     /* ciphertext produced per uv_write */
    TLS_TX_MAX = 256 * 1024,      /* cap on a connection's ciphertext buffer */
    REQ_HEAD_MAX = 256 * 1024,    /* cap on the request head we build */
    DEFAULT_MAX_HEAD = 64 * 1024, /* response head cap when the request sets none */
    DEFAULT_MAX_CONNS = 256,
    DEFAULT_MAX_IDLE = 256, /* = DEFAULT_MAX_CONNS: at full load no connection is closed only to be reopened */
    DEFAULT_MAX_QUEUED = 1024,
    DEFAULT_IDLE_REAP_MS = 30000,
    TUNNEL_HEAD_MAX = 16 * 1024, /* cap on the proxy's answer to CONNECT */
};

struct up_conn;
struct up_dns;

/* What makes two connections interchangeable: the origin, the TLS settings
 * it was verified under and the route to it. key_eq() is the one place that
 * compares keys. */
struct up_key {
    bool tls;
    uint16_t port;
    char *host; /* owned, NUL-terminated, without brackets */
    size_t host_len;
    char *ca_file;    /* owned; NULL = system store only */
    bool no_verify;   /* verification off */
    char *proxy_host; /* owned, without brackets; NULL = direct */
    uint16_t proxy_port;
    char *proxy_auth; /* owned secret: Proxy-Authorization value; NULL none */
};

/* One SSL_CTX per distinct TLS setting (CA file, verify flag), per upstream,
 * created with the first connection that needs it and kept until
 * bt_upstream_free. Pools point at it. */
struct up_tlsctx {
    struct up_tlsctx *next;
    char *ca_file; /* owned; NULL = system store only */
    bool no_verify;
    SSL_CTX *ctx; /* owned */
};

/* One pool per origin (key). Pools live until bt_upstream_free, or until the
 * reaper finds one without connections or calls. */
struct up_pool {
    struct up_pool *next; /* u->pools */
    struct up_key key;
    char *host_hdr; /* owned value of our Host header */
    size_t host_hdr_len;
    const char *dial_host;       /* what TCP connects to: key.proxy_host or key.host */
    uint16_t dial_port;          /* key.proxy_port or key.port */
    bool literal;                /* dial_host is an address literal: no DNS */
    struct sockaddr_storage lit; /* the literal with the port, when literal */
    bool host_ip;                /* key.host is an address literal (TLS checks the IP) */
    bool tunnel;                 /* https through a proxy: CONNECT first */
    char *connect_req;           /* owned secret: the CONNECT request, when tunnel */
    size_t connect_req_len;
    struct up_tlsctx *tctx;    /* key.tls: the context for the key's TLS settings */
    struct up_conn *idle_head; /* idle connections, most recently used first */
    struct up_conn *idle_tail; /* oldest idle connection (reaped first) */
    uint32_t nidle;
    uint32_t nconns;              /* connections counted against the limit (idle included) */
    struct bt_up_call *wait_head; /* calls waiting for a connection, FIFO */
    struct bt_up_call *wait_tail;
    uint32_t nwait;
    uint32_t ncalls;      /* calls not yet done that point at this pool */
    SSL_SESSION *session; /* owned: last TLS session, offered to new connections */
    bool spawning;        /* pool_spawn is on the stack */
};

/* A cached resolution of one host name (shared by pools with the same host). */
struct up_dns {
    struct up_dns *next; /* u->dns */
    struct bt_upstream *u;
    char *host;           /* owned */
    uv_getaddrinfo_t req; /* in flight while resolving */
    bool resolving;
    struct sockaddr_storage *addrs; /* owned; port 0 */
    size_t naddrs;
    uint64_t expires;        /* uv_now() after which the answer is stale */
    struct up_conn *waiters; /* connections waiting for this answer (dnext) */
};

enum conn_state {
    CONN_RESOLVING,  /* waiting for DNS */
    CONN_CONNECTING, /* TCP connect in progress (maybe re-trying the next address) */
    CONN_TUNNEL,     /* connected to the proxy, CONNECT sent, waiting for its answer */
    CONN_ACTIVE,     /* serving conn->call */
    CONN_IDLE,       /* in the pool */
    CONN_CLOSING,    /* uv_close called; memory freed in conn_on_close */
};

struct up_conn {
    uv_tcp_t tcp;      /* data = conn */
    uv_connect_t creq; /* data = conn */
    uv_write_t wreq;   /* data = conn; lives here because it may outlive the call */
    llhttp_t parser;   /* data = conn */
    struct bt_upstream *u;
    struct up_pool *pool;
    struct bt_up_call *call; /* the call being served (ACTIVE, RESOLVING, CONNECTING) */
    enum conn_state state;
    struct up_conn *prev, *next;    /* u->conns: every connection until its close callback */
    struct up_conn *iprev, *inext;  /* pool idle list */
    struct up_conn *dnext;          /* up_dns waiters */
    struct up_dns *dns;             /* entry we wait on while RESOLVING */
    struct sockaddr_storage *addrs; /* owned while connecting: addresses to try */
    size_t naddrs, ai;              /* ai = next address to try */
    int last_err;                   /* libuv error of the last failed attempt */
    bool reconnecting;              /* handle closing only to try the next address */
    bool write_pending;             /* wreq in flight */
    bool broken;                    /* must not go back to the pool */
    uint64_t idle_since;            /* uv_now() when it went idle */
    uint64_t nrequests;             /* requests started on this connection */
    /* TLS (pool->key.tls): OpenSSL on memory BIOs, driven by this stream */
    SSL *ssl;  /* owned; owns rbio and wbio */
    BIO *rbio; /* ciphertext from the network, read by SSL */
    BIO *wbio; /* ciphertext from SSL, written out by tls_pump */
    bool handshaking;
    bool tls_bad;       /* a TLS error happened: its session must not be resumed */
    bool tx_req;        /* the request is being encrypted and written */
    size_t tx_off;      /* bytes of the request (head + body) encrypted so far */
    struct bt_buf tbuf; /* ciphertext of the uv_write in flight (retained); the CONNECT request */
    struct bt_buf tun;  /* CONN_TUNNEL: the proxy's answer so far */
};

enum call_state {
    CALL_QUEUED,     /* waiting in pool->wait for a connection */
    CALL_CONNECTING, /* has a connection that is resolving or connecting */
    CALL_SENT,       /* request being written or written; waiting for the head */
    CALL_BODY,       /* head delivered; body arriving */
    CALL_FAILING,    /* failure decided, on_done deferred to the timer */
    CALL_DONE,       /* on_done called or cancelled; no callback may run */
};

enum call_phase { PHASE_NONE, PHASE_CONNECT, PHASE_FIRST_BYTE, PHASE_IDLE };

struct up_hoff { /* a response header as offsets into call->rhead */
    uint32_t no, nl, vo, vl;
};

struct bt_up_call {
    struct bt_upstream *u;
    struct bt_up_call *prev, *next; /* u->calls while live; next = free list link */
    struct bt_up_call *wnext;       /* pool wait queue */
    struct up_pool *pool;
    struct up_conn *conn;
    enum call_state state;
    struct bt_up_callbacks cb;
    void *ud;
    uv_timer_t timer; /* data = call; one timer for every deadline */
    struct bt_timeouts to;
    uint64_t deadline_total; /* uv_now() ms, 0 = none */
    uint64_t deadline_phase; /* deadline of `phase`, 0 = none */
    enum call_phase phase;
    unsigned busy;      /* our frames on the stack that use the call */
    struct bt_buf out;  /* serialized request head (retained across reuse) */
    struct bt_str body[BT_UP_BODY_PARTS]; /* slices borrowed until on_done / cancel */
    uint32_t nbody;
    size_t body_len;
    size_t max_head;
    bool head_method; /* HEAD: the response has no body */
    bool retried;     /* the one retry on a fresh connection is used */
    bool on_reused;   /* sent on a connection that served before */
    bool got_bytes;   /* a response byte arrived */
    bool write_done;
    bool interim;         /* parsing a 1xx interim response */
    bool complete;        /* on_message_complete seen */
    bool await_write;     /* complete, waiting only for the write callback */
    bool in_field;        /* inside a header name */
    enum bt_err pend_err; /* CALL_FAILING, or set by a parser callback */
    const char *pend_detail;
    /* response head, valid until the next message */
    struct bt_buf rhead; /* header names and values */
    struct up_hoff *hoffs;
    size_t nh, hoffs_cap;
    struct bt_http_header *hdrs; /* built for on_head */
    size_t hdrs_cap;
    size_t head_bytes; /* bytes of the head so far (approximate framing) */
    char detail[200];  /* a formatted on_done detail lives here until on_done returns */
};

struct bt_upstream {
    uv_loop_t *loop;
    struct bt_upstream_opts opts;
    struct up_pool *pools;
    struct up_dns *dns;
    struct up_conn *conns;         /* every connection until its close callback */
    struct bt_up_call *calls;      /* live calls */
    struct bt_up_call *free_calls; /* released calls, timer initialised and stopped */
    uint32_t nfree;
    uv_timer_t reap; /* unref'd: closes idle connections past idle_reap_ms */
    struct bt_upstream_stats stats;
    unsigned pending; /* handles + resolver requests not yet called back */
    bool freeing;
    bool rbuf_busy;
    llhttp_settings_t settings;
    struct up_tlsctx *tctxs;         /* owned; one per distinct TLS setting, created lazily */
    char rbuf[READ_BUF_SIZE];        /* read callbacks consume it before returning */
    char pbuf[TLS_PLAIN_SIZE];       /* decrypted bytes, consumed the same way */
    char tx_scratch[TLS_PLAIN_SIZE]; /* a small request's head + body, one TLS record */
};

/* ---- helpers -------------------------------------------------------------- */

static enum bt_err map_uv_err(int e)
{
    switch (e) {
    case UV_ECONNREFUSED:
        return BT_ECONNREFUSED;
    case UV_ECONNRESET:
    case UV_EPIPE:
    case UV_ECONNABORTED:
        return BT_ECONNRESET;
    case UV_EOF:
        return BT_ECLOSED;
    case UV_ETIMEDOUT:
        return BT_ETIMEDOUT;
    case UV_ENOMEM:
    case UV_ENOBUFS:
        return BT_ENOMEM;
    default:
        return BT_EIO;
    }
}

static bool opt_streq(const char *a, const char *b)
{
    return a == b || (a && b && strcmp(a, b) == 0);
}

/* `o` is normalised (no brackets; proxy fields cleared when there is no proxy;
 * ca_file NULL without TLS). */
static bool key_eq(const struct up_key *k, const struct bt_up_origin *o, size_t host_len)
{
    return k->tls == o->tls && k->port == o->port && k->host_len == host_len &&
           memcmp(k->host, o->host, host_len) == 0 && k->no_verify == o->tls_no_verify &&
           opt_streq(k->ca_file, o->ca_file) && opt_streq(k->proxy_host, o->proxy_host) &&
           k->proxy_port == o->proxy_port && opt_streq(k->proxy_auth, o->proxy_auth);
}

/* Formats an on_done detail into the call's own buffer. */
static const char *call_detailf(struct bt_up_call *call, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static const char *call_detailf(struct bt_up_call *call, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(call->detail, sizeof(call->detail), fmt, ap);
    va_end(ap);
    return call->detail;
}

/* "host:port" of the proxy for messages (never its credentials). */
static const char *proxy_name(const struct up_pool *pool, char *buf, size_t cap)
{
    bool v6 = strchr(pool->key.proxy_host, ':') != NULL;
    snprintf(buf, cap, "%s%s%s:%u", v6 ? "[" : "", pool->key.proxy_host, v6 ? "]" : "",
             (unsigned)pool->key.proxy_port);
    return buf;
}

static void maybe_free_upstream(struct bt_upstream *u);
static void conn_close(struct up_conn *c);
static void conn_open(struct up_pool *pool, struct bt_up_call *call);
static void call_send(struct bt_up_call *call);
static bool call_try_retry(struct bt_up_call *call);
static void call_complete(struct bt_up_call *call, bool reusable);
static const char *tls_start(struct up_conn *c);
static void tunnel_start(struct up_conn *c);
static void tunnel_on_read(struct up_conn *c, ssize_t nread, const uv_buf_t *buf);
static void conn_tls_begin(struct up_conn *c, const char *early, size_t nearly);
static int tls_handshake(struct up_conn *c);
static int tls_pump(struct up_conn *c);
static void tls_on_read(struct up_conn *c, ssize_t nread, const uv_buf_t *buf);
static void call_arm(struct bt_up_call *call);
static void call_release(struct bt_up_call *call);
static void pool_acquire(struct up_pool *pool, struct bt_up_call *call, bool fresh);

/* ---- calls: lifetime ------------------------------------------------------ */

static void call_on_timer(uv_timer_t *t);

static void call_on_close(uv_handle_t *h)
{
    struct bt_up_call *call = h->data;
    struct bt_upstream *u = call->u;
    bt_buf_free(&call->out);
    bt_buf_free(&call->rhead);
    free(call->hoffs);
    free(call->hdrs);
    free(call);
    u->pending--;
    maybe_free_upstream(u);
}

static struct bt_up_call *call_alloc(struct bt_upstream *u)
{
    struct bt_up_call *call = u->free_calls;
    if (call) {
        u->free_calls = call->next;
        u->nfree--;
    } else {
        call = calloc(1, sizeof(*call));
        if (!call) return NULL;
        call->u = u;
        bt_buf_init(&call->out, REQ_HEAD_MAX);
        bt_buf_init(&call->rhead, DEFAULT_MAX_HEAD);
        if (uv_timer_init(u->loop, &call->timer) != 0) {
            free(call);
            return NULL;
        }
        call->timer.data = call;
        u->pending++;
    }
    call->prev = NULL;
    call->next = u->calls;
    if (u->calls) u->calls->prev = call;
    u->calls = call;
    call->wnext = NULL;
    call->pool = NULL;
    call->conn = NULL;
    call->state = CALL_QUEUED;
    call->busy = 0;
    call->deadline_total = call->deadline_phase = 0;
    call->phase = PHASE_NONE;
    call->retried = call->on_reused = call->got_bytes = call->write_done = false;
    call->interim = call->complete = call->in_field = call->head_method = false;
    call->await_write = false;
    call->pend_err = BT_OK;
    call->pend_detail = NULL;
    call->nh = 0;
    call->head_bytes = 0;
    bt_buf_reset(&call->out);
    bt_buf_reset(&call->rhead);
    return call;
}

/* Puts a finished call back on the free list (or closes its timer). The call
 * must be detached from connection and queue and not be on anyone's stack. */
static void call_release(struct bt_up_call *call)
{
    struct bt_upstream *u = call->u;
    assert(call->state == CALL_DONE && call->busy == 0 && !call->conn);
    if (call->prev)
        call->prev->next = call->next;
    else
        u->calls = call->next;
    if (call->next) call->next->prev = call->prev;
    call->prev = call->next = NULL;
    uv_timer_stop(&call->timer);
    call->nbody = 0;
    call->body_len = 0;
    call->cb = (struct bt_up_callbacks){0};
    call->ud = NULL;
    if (!u->freeing && u->nfree < CALL_FREELIST_MAX) {
        /* Keep small buffers: the next request reuses them without malloc. */
        if (call->out.cap > CALL_KEEP_BYTES) bt_buf_free(&call->out);
        if (call->rhead.cap > CALL_KEEP_BYTES) bt_buf_free(&call->rhead);
        call->next = u->free_calls;
        u->free_calls = call;
        u->nfree++;
        return;
    }
    uv_close((uv_handle_t *)&call->timer, call_on_close);
}

static void call_unbusy(struct bt_up_call *call)
{
    assert(call->busy > 0);
    if (--call->busy == 0 && call->state == CALL_DONE) call_release(call);
}

static void pool_dequeue(struct up_pool *pool, struct bt_up_call *call)
{
    struct bt_up_call **pp = &pool->wait_head, *prev = NULL;
    while (*pp && *pp != call) {
        prev = *pp;
        pp = &(*pp)->wnext;
    }
    if (!*pp) return;
    *pp = call->wnext;
    if (pool->wait_tail == call) pool->wait_tail = prev;
    call->wnext = NULL;
    pool->nwait--;
}

/* Leaves connection and queue: a connection still attached is closed, since a
 * call leaves it only when the exchange did not end cleanly. */
static void call_detach(struct bt_up_call *call)
{
    if (call->conn) {
        struct up_conn *c = call->conn;
        c->call = NULL;
        call->conn = NULL;
        conn_close(c);
    }
    if (call->state == CALL_QUEUED && call->pool) pool_dequeue(call->pool, call);
}

/* The one place a call becomes DONE. */
static void call_end(struct bt_up_call *call)
{
    assert(call->state != CALL_DONE);
    call->state = CALL_DONE;
    if (call->pool) call->pool->ncalls--;
    call->pool = NULL;
    uv_timer_stop(&call->timer);
}

/* Ends the call and reports `err`. The call may be freed on return unless the
 * caller holds it busy. */
static void call_finish(struct bt_up_call *call, enum bt_err err, const char *detail)
{
    call_detach(call);
    call_end(call);
    call->busy++;
    if (call->cb.on_done) call->cb.on_done(call->ud, err, detail);
    call_unbusy(call);
}

/* Decides a failure now and reports it from the loop: used wherever a user
 * callback must not run on the current stack (inside bt_upstream_request,
 * while handing connections around). */
static void call_fail_later(struct bt_up_call *call, enum bt_err err, const char *detail)
{
    if (call->state == CALL_DONE || call->state == CALL_FAILING) return;
    call_detach(call);
    call->state = CALL_FAILING;
    call->pend_err = err;
    call->pend_detail = detail;
    uv_timer_start(&call->timer, call_on_timer, 0, 0);
}

/* ---- calls: deadlines ----------------------------------------------------- */

static void call_set_phase(struct bt_up_call *call, enum call_phase ph, uint64_t ms)
{
    call->phase = ph;
    call->deadline_phase = ms ? uv_now(call->u->loop) + ms : 0;
    call_arm(call);
}

/* Arms the timer for the earliest deadline. Deadlines that only move later
 * (idle, on every read) are not re-armed: the timer fires early and re-arms. */
static void call_arm(struct bt_up_call *call)
{
    if (call->state == CALL_FAILING || call->state == CALL_DONE) return;
    uint64_t next = call->deadline_total;
    if (call->deadline_phase && (!next || call->deadline_phase < next)) next = call->deadline_phase;
    if (!next) {
        uv_timer_stop(&call->timer);
        return;
    }
    uint64_t now = uv_now(call->u->loop);
    uv_timer_start(&call->timer, call_on_timer, next > now ? next - now : 0, 0);
}

static void conn_reconnect(struct up_conn *c);

static void call_on_timer(uv_timer_t *t)
{
    struct bt_up_call *call = t->data;
    call->busy++;
    if (call->state == CALL_FAILING) {
        call_finish(call, call->pend_err, call->pend_detail);
        goto out;
    }
    if (call->state == CALL_DONE) goto out;
    uint64_t now = uv_now(call->u->loop);
    if (call->deadline_total && now >= call->deadline_total) {
        call_finish(call, BT_ETIMEDOUT, "total");
        goto out;
    }
    if (call->deadline_phase && now >= call->deadline_phase) {
        switch (call->phase) {
        case PHASE_CONNECT: {
            struct up_conn *c = call->conn;
            if (c && c->state == CONN_CONNECTING && !c->reconnecting && c->ai < c->naddrs) {
                /* This address is silent; give the next one its own budget. */
                c->last_err = UV_ETIMEDOUT;
                call->deadline_phase = 0;
                conn_reconnect(c);
                call_arm(call);
            } else {
                call_finish(call, BT_ETIMEDOUT, "connect");
            }
            goto out;
        }
        case PHASE_FIRST_BYTE:
            call_finish(call, BT_ETIMEDOUT, "first_byte");
            goto out;
        case PHASE_IDLE:
            call_finish(call, BT_ETIMEDOUT, "idle");
            goto out;
        case PHASE_NONE:
            break;
        }
    }
    call_arm(call);
out:
    call_unbusy(call);
}

/* ---- DNS ------------------------------------------------------------------ */

static void conn_connect_next(struct up_conn *c);

/* Gives the connection its own copy of the addresses with the pool's port. */
static bool conn_take_addrs(struct up_conn *c, const struct sockaddr_storage *addrs, size_t n)
{
    c->addrs = malloc(n * sizeof(*addrs));
    if (!c->addrs) return false;
    memcpy(c->addrs, addrs, n * sizeof(*addrs));
    c->naddrs = n;
    c->ai = 0;
    uint16_t port = htons(c->pool->dial_port);
    for (size_t i = 0; i < n; i++) {
        if (c->addrs[i].ss_family == AF_INET)
            ((struct sockaddr_in *)&c->addrs[i])->sin_port = port;
        else
            ((struct sockaddr_in6 *)&c->addrs[i])->sin6_port = port;
    }
    return true;
}

static void dns_on_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res)
{
    struct up_dns *d = req->data;
    struct bt_upstream *u = d->u;
    d->resolving = false;
    u->pending--;
    if (status == 0) {
        size_t n = 0;
        for (struct addrinfo *ai = res; ai; ai = ai->ai_next)
            if (ai->ai_family == AF_INET || ai->ai_family == AF_INET6) n++;
        if (n > DNS_MAX_ADDRS) n = DNS_MAX_ADDRS;
        struct sockaddr_storage *addrs = n ? calloc(n, sizeof(*addrs)) : NULL;
        if (addrs) {
            size_t i = 0;
            for (struct addrinfo *ai = res; ai && i < n; ai = ai->ai_next) {
                if (ai->ai_family != AF_INET && ai->ai_family != AF_INET6) continue;
                memcpy(&addrs[i++], ai->ai_addr, ai->ai_addrlen);
            }
            free(d->addrs);
            d->addrs = addrs;
            d->naddrs = n;
            d->expires = uv_now(u->loop) + DNS_TTL_MS;
        }
    }
    if (res) uv_freeaddrinfo(res);
    if (u->freeing) {
        maybe_free_upstream(u);
        return;
    }
    bool ok = status == 0 && d->naddrs && d->expires > uv_now(u->loop);
    const char *detail = status ? uv_strerror(status) : "no usable address";
    struct up_conn *w = d->waiters;
    d->waiters = NULL;
    while (w) {
        struct up_conn *next = w->dnext;
        w->dnext = NULL;
        w->dns = NULL;
        if (w->state == CONN_RESOLVING) {
            if (ok && conn_take_addrs(w, d->addrs, d->naddrs)) {
                conn_connect_next(w);
            } else if (w->call) {
                const char *why = ok ? "out of memory" : detail;
                if (!ok && w->pool->key.proxy_host)
                    why = call_detailf(w->call, "proxy %s: %s", w->pool->key.proxy_host, detail);
                call_fail_later(w->call, ok ? BT_ENOMEM : BT_EDNS, why);
            } else
                conn_close(w);
        }
        w = next;
    }
}

static struct up_dns *dns_get(struct bt_upstream *u, const char *host)
{
    for (struct up_dns *d = u->dns; d; d = d->next)
        if (strcmp(d->host, host) == 0) return d;
    struct up_dns *d = calloc(1, sizeof(*d));
    if (!d) return NULL;
    d->host = strdup(host);
    if (!d->host) {
        free(d);
        return NULL;
    }
    d->u = u;
    d->req.data = d;
    d->next = u->dns;
    u->dns = d;
    return d;
}

static void dns_unwait(struct up_conn *c)
{
    if (!c->dns) return;
    struct up_conn **pp = &c->dns->waiters;
    while (*pp && *pp != c)
        pp = &(*pp)->dnext;
    if (*pp) *pp = c->dnext;
    c->dns = NULL;
    c->dnext = NULL;
}

/* Starts the address phase of a new connection: literal, cached answer, or a
 * resolution shared with every connection that needs the same host. */
static void conn_resolve(struct up_conn *c)
{
    struct up_pool *pool = c->pool;
    struct bt_upstream *u = c->u;
    if (pool->literal) {
        if (!conn_take_addrs(c, &pool->lit, 1)) goto nomem;
        conn_connect_next(c);
        return;
    }
    struct up_dns *d = dns_get(u, pool->dial_host);
    if (!d) goto nomem;
    if (!d->resolving && d->naddrs && uv_now(u->loop) < d->expires) {
        if (!conn_take_addrs(c, d->addrs, d->naddrs)) goto nomem;
        conn_connect_next(c);
        return;
    }
    if (!d->resolving) {
        struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
        int r = uv_getaddrinfo(u->loop, &d->req, dns_on_resolved, d->host, NULL, &hints);
        if (r) {
            call_fail_later(c->call, BT_EDNS, uv_strerror(r));
            return;
        }
        d->resolving = true;
        u->pending++;
    }
    c->dns = d;
    c->dnext = d->waiters;
    d->waiters = c;
    return;
nomem:
    call_fail_later(c->call, BT_ENOMEM, "out of memory");
}

/* ---- connections ---------------------------------------------------------- */

static void conn_on_close(uv_handle_t *h);
static void conn_on_connect(uv_connect_t *req, int status);
static void conn_on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf);
static void conn_on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf);
static void conn_on_write(uv_write_t *req, int status);

static void reap_schedule(struct bt_upstream *u);

/* Opens waiting calls' connections while the pool has room. */
static void pool_spawn(struct up_pool *pool, struct bt_upstream *u)
{
    if (pool->spawning || u->freeing) return;
    pool->spawning = true;
    while (pool->wait_head && pool->nconns < u->opts.max_conns_per_origin) {
        struct bt_up_call *w = pool->wait_head;
        pool->wait_head = w->wnext;
        if (!pool->wait_head) pool->wait_tail = NULL;
        w->wnext = NULL;
        pool->nwait--;
        conn_open(pool, w);
    }
    pool->spawning = false;
}

static void idle_unlink(struct up_conn *c)
{
    struct up_pool *pool = c->pool;
    if (c->iprev)
        c->iprev->inext = c->inext;
    else
        pool->idle_head = c->inext;
    if (c->inext)
        c->inext->iprev = c->iprev;
    else
        pool->idle_tail = c->iprev;
    c->iprev = c->inext = NULL;
    pool->nidle--;
    c->u->stats.conns_idle--;
}

/* Closes a connection that no call uses any more. Its memory goes in
 * conn_on_close; its slot in the pool is free at once. */
static void conn_close(struct up_conn *c)
{
    if (c->state == CONN_CLOSING) return;
    assert(!c->call);
    struct up_pool *pool = c->pool;
    if (c->state == CONN_IDLE) idle_unlink(c);
    if (c->state == CONN_RESOLVING) dns_unwait(c);
    c->state = CONN_CLOSING;
    c->reconnecting = false;
    pool->nconns--;
    if (!uv_is_closing((uv_handle_t *)&c->tcp)) uv_close((uv_handle_t *)&c->tcp, conn_on_close);
    pool_spawn(pool, c->u);
}

static void conn_on_close(uv_handle_t *h)
{
    struct up_conn *c = h->data;
    struct bt_upstream *u = c->u;
    if (c->reconnecting && c->state == CONN_CONNECTING) {
        /* A failed attempt: same connection, next address, fresh socket. */
        c->reconnecting = false;
        uv_tcp_init(u->loop, &c->tcp);
        c->tcp.data = c;
        conn_connect_next(c);
        return;
    }
    if (c->prev)
        c->prev->next = c->next;
    else
        u->conns = c->next;
    if (c->next) c->next->prev = c->prev;
    free(c->addrs);
    if (c->ssl) {
        /* SSL_free without a shutdown marks the session not resumable, and the
         * pool's session may be this connection's. A connection we close on
         * purpose is fine to resume; one that failed in TLS is not. */
        if (!c->tls_bad) SSL_set_shutdown(c->ssl, SSL_SENT_SHUTDOWN | SSL_RECEIVED_SHUTDOWN);
        SSL_free(c->ssl); /* frees rbio and wbio */
    }
    bt_buf_free(&c->tbuf);
    bt_buf_free(&c->tun);
    free(c);
    u->pending--;
    maybe_free_upstream(u);
}

static void conn_open(struct up_pool *pool, struct bt_up_call *call)
{
    struct bt_upstream *u = call->u;
    struct up_conn *c = calloc(1, sizeof(*c));
    if (!c) {
        call_fail_later(call, BT_ENOMEM, "out of memory");
        return;
    }
    c->u = u;
    c->pool = pool;
    c->state = CONN_RESOLVING;
    c->last_err = UV_ECONNREFUSED;
    bt_buf_init(&c->tbuf, TLS_TX_MAX);
    bt_buf_init(&c->tun, TUNNEL_HEAD_MAX);
    uv_tcp_init(u->loop, &c->tcp); /* no socket yet: cannot fail on Linux */
    c->tcp.data = c;
    c->creq.data = c;
    c->wreq.data = c;
    c->next = u->conns;
    if (u->conns) u->conns->prev = c;
    u->conns = c;
    u->pending++;
    pool->nconns++;
    c->call = call;
    call->conn = c;
    call->state = CALL_CONNECTING;
    call_set_phase(call, PHASE_CONNECT, call->to.connect_ms);
    conn_resolve(c);
}

/* Closes the current attempt's socket; conn_on_close tries the next address. */
static void conn_reconnect(struct up_conn *c)
{
    c->reconnecting = true;
    uv_close((uv_handle_t *)&c->tcp, conn_on_close);
}

static void conn_connect_failed(struct up_conn *c)
{
    struct bt_up_call *call = c->call;
    const char *detail = c->last_err == UV_ETIMEDOUT ? "connect" : uv_strerror(c->last_err);
    if (c->pool->key.proxy_host && c->last_err != UV_ETIMEDOUT) {
        char pn[300];
        detail = call_detailf(call, "proxy %s: %s", proxy_name(c->pool, pn, sizeof(pn)), detail);
    }
    call_fail_later(call, map_uv_err(c->last_err), detail);
}

static void conn_connect_next(struct up_conn *c)
{
    struct bt_up_call *call = c->call;
    assert(call);
    c->state = CONN_CONNECTING;
    while (c->ai < c->naddrs) {
        const struct sockaddr *sa = (const struct sockaddr *)&c->addrs[c->ai++];
        int r = uv_tcp_connect(&c->creq, &c->tcp, sa, conn_on_connect);
        if (r == 0) {
            if (call->phase == PHASE_CONNECT && c->ai > 1)
                call_set_phase(call, PHASE_CONNECT, call->to.connect_ms);
            return;
        }
        c->last_err = r;
        if (c->ai < c->naddrs) {
            conn_reconnect(c); /* the socket may exist: start clean */
            return;
        }
    }
    conn_connect_failed(c);
}

static void conn_on_connect(uv_connect_t *req, int status)
{
    struct up_conn *c = req->data;
    if (status == UV_ECANCELED || c->state != CONN_CONNECTING || c->reconnecting) return;
    if (status < 0) {
        c->last_err = status;
        if (c->ai < c->naddrs)
            conn_reconnect(c);
        else
            conn_connect_failed(c);
        return;
    }
    struct bt_up_call *call = c->call;
    assert(call);
    free(c->addrs);
    c->addrs = NULL;
    c->naddrs = c->ai = 0;
    c->state = CONN_ACTIVE;
    c->u->stats.conns_opened++;
    /* One uv_write per request: Nagle would only delay the body segment. */
    uv_tcp_nodelay(&c->tcp, 1);
    uv_tcp_keepalive(&c->tcp, 1, 60);
    int r = uv_read_start((uv_stream_t *)&c->tcp, conn_on_alloc, conn_on_read);
    if (r) {
        call_fail_later(call, map_uv_err(r), uv_strerror(r));
        return;
    }
    if (c->pool->tunnel) {
        tunnel_start(c);
        return;
    }
    if (c->pool->key.tls) {
        conn_tls_begin(c, NULL, 0);
        return;
    }
    call_send(call);
}

/* Starts TLS on a connected socket (or an established tunnel). `early` holds
 * bytes that arrived behind the proxy's answer: the server's first records. */
static void conn_tls_begin(struct up_conn *c, const char *early, size_t nearly)
{
    /* The handshake belongs to the connect phase (and its timeout). */
    const char *why = tls_start(c);
    if (why) {
        call_fail_later(c->call, BT_ETLS, why);
        return;
    }
    if (nearly && BIO_write(c->rbio, early, (int)nearly) != (int)nearly) {
        call_fail_later(c->call, BT_ENOMEM, "out of memory");
        return;
    }
    tls_handshake(c);
}

/* ---- proxies: the CONNECT tunnel -------------------------------------------
 * https through a proxy: TCP to the proxy, `CONNECT host:port`, and once the
 * proxy says 2xx the socket is a byte pipe to the origin, where TLS starts as
 * on a direct connection. The proxy resolves the origin's name. All of it is
 * the connect phase. */

static void tunnel_start(struct up_conn *c)
{
    struct up_pool *pool = c->pool;
    c->state = CONN_TUNNEL;
    bt_buf_reset(&c->tbuf);
    if (bt_buf_append(&c->tbuf, pool->connect_req, pool->connect_req_len)) {
        call_fail_later(c->call, BT_ENOMEM, "out of memory");
        return;
    }
    uv_buf_t b = uv_buf_init(c->tbuf.p, (unsigned)c->tbuf.len);
    int r = uv_write(&c->wreq, (uv_stream_t *)&c->tcp, &b, 1, conn_on_write);
    if (r) {
        char pn[300];
        call_fail_later(c->call, map_uv_err(r),
                        call_detailf(c->call, "proxy %s: %s", proxy_name(pool, pn, sizeof(pn)),
                                     uv_strerror(r)));
        return;
    }
    c->write_pending = true;
}

/* Reads the proxy's answer to CONNECT: a head without a body when 2xx. Any
 * other status fails the call naming the proxy and its status line. */
static void tunnel_on_read(struct up_conn *c, ssize_t nread, const uv_buf_t *buf)
{
    struct bt_up_call *call = c->call;
    char pn[300];
    proxy_name(c->pool, pn, sizeof(pn));
    if (!call) { /* cannot happen: a tunnel is only built for a call */
        conn_close(c);
        return;
    }
    if (nread < 0) {
        call_fail_later(call, BT_EPROTO,
                        call_detailf(call, "proxy %s closed the connection during CONNECT (%s)", pn,
                                     uv_strerror((int)nread)));
        return;
    }
    if (bt_buf_append(&c->tun, buf->base, (size_t)nread)) {
        call_fail_later(call, BT_EPROTO,
                        call_detailf(call, "proxy %s: answer to CONNECT too large", pn));
        return;
    }
    const char *p = c->tun.p;
    size_t len = c->tun.len;
    const char *end = memmem(p, len, "\r\n\r\n", 4);
    if (!end) return;
    size_t head = (size_t)(end + 4 - p);
    /* "HTTP/1.x NNN reason" */
    int status = 0;
    if (len >= 12 && memcmp(p, "HTTP/1.", 7) == 0 && p[8] == ' ' && p[9] >= '1' && p[9] <= '5' &&
        p[10] >= '0' && p[10] <= '9' && p[11] >= '0' && p[11] <= '9')
        status = (p[9] - '0') * 100 + (p[10] - '0') * 10 + (p[11] - '0');
    if (status < 200 || status > 299) {
        /* The reason phrase, printable bytes only, for the message. */
        char reason[64];
        size_t rn = 0;
        const char *eol = memchr(p, '\r', head);
        for (const char *q = p + (len > 13 ? 13 : len);
             status && q < eol && rn < sizeof(reason) - 1; q++)
            reason[rn++] = (*q >= 32 && *q < 127) ? *q : '?';
        reason[rn] = 0;
        if (status)
            call_fail_later(call, BT_EPROTO,
                            call_detailf(call, "proxy refused CONNECT: %d%s%s (proxy %s)", status,
                                         rn ? " " : "", reason, pn));
        else
            call_fail_later(call, BT_EPROTO,
                            call_detailf(call,
                                         "proxy %s answered CONNECT with something that is "
                                         "not HTTP",
                                         pn));
        return;
    }
    c->u->stats.proxy_tunnels++;
    c->state = CONN_ACTIVE;
    /* Normally nothing follows: the server waits for our ClientHello. */
    size_t nearly = len - head;
    const char *early = p + head;
    if (c->pool->key.tls) {
        conn_tls_begin(c, early, nearly);
    } else {
        call_fail_later(call, BT_EPROTO, "CONNECT is only used for https"); /* not reached */
    }
    if (c->state != CONN_CLOSING) bt_buf_free(&c->tun);
}

/* A connection whose exchange ended cleanly: the next waiter gets it, else
 * the pool keeps it (unref'd, so an idle pool never keeps a loop alive). */
static void pool_put(struct up_conn *c)
{
    struct up_pool *pool = c->pool;
    struct bt_upstream *u = c->u;
    if (u->freeing || c->broken) {
        conn_close(c);
        return;
    }
    if (pool->wait_head) {
        struct bt_up_call *w = pool->wait_head;
        pool->wait_head = w->wnext;
        if (!pool->wait_head) pool->wait_tail = NULL;
        w->wnext = NULL;
        pool->nwait--;
        c->call = w;
        w->conn = c;
        u->stats.conns_reused++;
        call_send(w);
        return;
    }
    if (pool->nidle >= u->opts.max_idle_per_origin) {
        conn_close(c);
        return;
    }
    c->state = CONN_IDLE;
    c->idle_since = uv_now(u->loop);
    c->iprev = NULL;
    c->inext = pool->idle_head;
    if (pool->idle_head)
        pool->idle_head->iprev = c;
    else
        pool->idle_tail = c;
    pool->idle_head = c;
    pool->nidle++;
    u->stats.conns_idle++;
    uv_unref((uv_handle_t *)&c->tcp);
    reap_schedule(u);
}

/* Finds a connection for the call: an idle one, a new one, or a place in the
 * queue. `fresh` (the retry) skips idle connections. */
static void pool_acquire(struct up_pool *pool, struct bt_up_call *call, bool fresh)
{
    struct bt_upstream *u = call->u;
    if (!fresh && pool->idle_head) {
        struct up_conn *c = pool->idle_head;
        idle_unlink(c);
        c->state = CONN_ACTIVE;
        uv_ref((uv_handle_t *)&c->tcp);
        c->call = call;
        call->conn = c;
        u->stats.conns_reused++;
        call_send(call);
        return;
    }
    if (fresh && pool->nconns >= u->opts.max_conns_per_origin && pool->idle_tail)
        conn_close(pool->idle_tail); /* make room rather than wait behind idle ones */
    if (pool->nconns < u->opts.max_conns_per_origin) {
        conn_open(pool, call);
        return;
    }
    if (pool->nwait >= u->opts.max_queued_per_origin) {
        call_fail_later(call, BT_EBUSY, "too many requests waiting for this origin");
        return;
    }
    call->state = CALL_QUEUED;
    call->phase = PHASE_NONE;
    call->deadline_phase = 0;
    if (fresh) { /* a retry goes first: it has waited already */
        call->wnext = pool->wait_head;
        pool->wait_head = call;
        if (!pool->wait_tail) pool->wait_tail = call;
    } else {
        call->wnext = NULL;
        if (pool->wait_tail)
            pool->wait_tail->wnext = call;
        else
            pool->wait_head = call;
        pool->wait_tail = call;
    }
    pool->nwait++;
    call_arm(call);
}

/* ---- the exchange --------------------------------------------------------- */

/* Writes the request: head and borrowed body in one uv_write. */
static void call_send(struct bt_up_call *call)
{
    struct up_conn *c = call->conn;
    struct bt_upstream *u = call->u;
    c->nrequests++;
    call->on_reused = c->nrequests > 1;
    call->got_bytes = call->write_done = call->complete = call->interim = false;
    call->await_write = false;
    call->nh = 0;
    call->head_bytes = 0;
    bt_buf_reset(&call->rhead);
    llhttp_init(&c->parser, HTTP_RESPONSE, &u->settings);
    c->parser.data = c;
    uv_buf_t bufs[BT_UP_BODY_PARTS + 1];
    unsigned nb = 0;
    bufs[nb++] = uv_buf_init(call->out.p, (unsigned)call->out.len);
    for (uint32_t i = 0; i < call->nbody; i++)
        if (call->body[i].len) bufs[nb++] = uv_buf_init((char *)call->body[i].p, (unsigned)call->body[i].len);
    call->state = CALL_SENT;
    /* first_byte counts from the end of the write; until then it also bounds a
     * write the peer does not read (re-armed in conn_on_write). */
    call_set_phase(call, PHASE_FIRST_BYTE, call->to.first_byte_ms);
    int r;
    if (c->ssl) {
        c->tx_req = true;
        c->tx_off = 0;
        r = tls_pump(c);
    } else {
        /* Straight to the socket when it takes it all (the usual case): a
         * uv_write would also cost an epoll_ctl when it completes. */
        r = uv_try_write((uv_stream_t *)&c->tcp, bufs, nb);
        size_t done = r > 0 ? (size_t)r : 0;
        if (done == call->out.len + call->body_len) {
            call->write_done = true; /* the first_byte phase runs from here */
            r = 0;
        } else if (r >= 0 || r == UV_EAGAIN) {
            unsigned k = 0;
            while (k < nb && done >= bufs[k].len) done -= bufs[k++].len;
            bufs[k].base += done;
            bufs[k].len -= done;
            r = uv_write(&c->wreq, (uv_stream_t *)&c->tcp, bufs + k, nb - k, conn_on_write);
            if (!r) c->write_pending = true;
        }
    }
    if (r) {
        c->broken = true;
        if (!call_try_retry(call)) call_fail_later(call, map_uv_err(r), uv_strerror(r));
    }
}

/* The retry: a reused connection died before any response byte. */
static bool call_try_retry(struct bt_up_call *call)
{
    if (!call->on_reused || call->retried || call->got_bytes) return false;
    call->retried = true;
    call->conn->broken = true;
    call_detach(call);
    pool_acquire(call->pool, call, true);
    return true;
}

static void conn_on_write(uv_write_t *req, int status)
{
    struct up_conn *c = req->data;
    c->write_pending = false;
    struct bt_up_call *call = c->call;
    if (status == UV_ECANCELED || c->state == CONN_CLOSING) return;
    if (c->state == CONN_TUNNEL) { /* the CONNECT request */
        if (status < 0 && call) {
            char pn[300];
            call_fail_later(call, map_uv_err(status),
                            call_detailf(call, "proxy %s: %s", proxy_name(c->pool, pn, sizeof(pn)),
                                         uv_strerror(status)));
        }
        return;
    }
    bool was_req = true;
    if (c->ssl) {
        if (status == 0) {
            status = tls_pump(c); /* the next piece of the request, or other records */
            if (!status && c->write_pending) return;
            if (!status && !c->tx_req && !(call && call->await_write)) return; /* not the request */
        }
        was_req = c->tx_req;
        c->tx_req = false;
    }
    if (!call) return;
    call->busy++;
    if (call->await_write) {
        call->write_done = status == 0;
        call_complete(call, status == 0);
    } else if (status < 0) {
        c->broken = true;
        /* A reply under way decides on the read side (early 4xx, then close). */
        if (!call->got_bytes && !call_try_retry(call))
            call_finish(call, map_uv_err(status), uv_strerror(status));
    } else if (was_req) {
        call->write_done = true;
        if (call->state == CALL_SENT)
            call_set_phase(call, PHASE_FIRST_BYTE, call->to.first_byte_ms);
    }
    call_unbusy(call);
}

/* All of the request is in the kernel's hands; only the write callback that
 * says so is pending. */
static bool conn_tx_flushed(struct up_conn *c)
{
    if (c->tcp.write_queue_size) return false;
    if (!c->ssl) return true;
    struct bt_up_call *call = c->call;
    return call && c->tx_off == call->out.len + call->body_len && BIO_ctrl_pending(c->wbio) == 0;
}

/* The response ended cleanly: the connection goes back only if it can carry
 * another exchange. */
static void call_complete(struct bt_up_call *call, bool reusable)
{
    struct up_conn *c = call->conn;
    reusable = reusable && !c->broken && c->state == CONN_ACTIVE;
    if (reusable && c->write_pending && conn_tx_flushed(c) && !call->await_write) {
        /* The reply was parsed before libuv ran the write callback (it runs
         * one loop iteration later; all bytes are out). Wait for it rather
         * than lose a good connection: wreq must be free before reuse. */
        call->await_write = true;
        call->deadline_total = call->deadline_phase = 0;
        call_arm(call);
        return;
    }
    reusable = reusable && call->write_done && !c->write_pending;
    c->call = NULL;
    call->conn = NULL;
    if (reusable)
        pool_put(c);
    else
        conn_close(c);
    call_finish(call, BT_OK, NULL);
}

static void conn_on_bytes(struct up_conn *c, struct bt_up_call *call, const char *p, size_t n)
{
    if (call->await_write) { /* bytes after a complete reply */
        c->broken = true;
        call_complete(call, false);
        return;
    }
    call->got_bytes = true;
    call->pend_err = BT_OK;
    call->pend_detail = NULL;
    llhttp_errno_t e = llhttp_execute(&c->parser, p, n);
    if (call->state == CALL_DONE) return; /* cancelled from a callback */
    if (call->complete) {
        /* Bytes after the response mean the peer does not speak one exchange
         * at a time: do not trust the connection again. */
        const char *end = e == HPE_PAUSED ? llhttp_get_error_pos(&c->parser) : p + n;
        call_complete(call, end == p + n && llhttp_should_keep_alive(&c->parser));
        return;
    }
    if (e != HPE_OK) {
        if (call->pend_err)
            call_finish(call, call->pend_err, call->pend_detail);
        else
            call_finish(call, BT_EPROTO, llhttp_errno_name(e));
        return;
    }
    if (call->state == CALL_BODY && call->to.idle_ms)
        call->deadline_phase = uv_now(c->u->loop) + call->to.idle_ms; /* lazy: see call_arm */
    if (call->cb.on_flush && call->state == CALL_BODY) call->cb.on_flush(call->ud);
}

static void conn_on_end(struct up_conn *c, struct bt_up_call *call, ssize_t nread)
{
    c->broken = true;
    if (call->await_write) {
        call_complete(call, false);
        return;
    }
    if (nread == UV_EOF && call->got_bytes) {
        llhttp_errno_t e = llhttp_finish(&c->parser); /* close-delimited body ends here */
        if (call->state == CALL_DONE) return;
        if (call->complete) {
            call_complete(call, false);
            return;
        }
        (void)e;
        call_finish(call, BT_ECLOSED, "connection closed mid-response");
        return;
    }
    if (call_try_retry(call)) return;
    if (nread == UV_EOF)
        call_finish(call, BT_ECLOSED, "connection closed before the response");
    else
        call_finish(call, map_uv_err((int)nread), uv_strerror((int)nread));
}

static void conn_on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
    (void)hint;
    struct up_conn *c = h->data;
    struct bt_upstream *u = c->u;
    if (u->rbuf_busy) { /* cannot happen: libuv reads one stream at a time */
        *buf = uv_buf_init(NULL, 0);
        return;
    }
    u->rbuf_busy = true;
    *buf = uv_buf_init(u->rbuf, sizeof(u->rbuf));
}

static void conn_on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    struct up_conn *c = s->data;
    if (buf->base == c->u->rbuf) c->u->rbuf_busy = false; /* consumed before we return */
    if (nread == 0 || c->state == CONN_CLOSING) return;
    if (c->state == CONN_TUNNEL) {
        tunnel_on_read(c, nread, buf);
        return;
    }
    if (c->ssl) {
        tls_on_read(c, nread, buf);
        return;
    }
    struct bt_up_call *call = c->call;
    if (!call) {
        /* Idle: EOF or reset means the peer closed it; bytes mean it is confused. */
        conn_close(c);
        return;
    }
    call->busy++;
    if (nread > 0)
        conn_on_bytes(c, call, buf->base, (size_t)nread);
    else
        conn_on_end(c, call, nread);
    call_unbusy(call);
}

/* ---- TLS: OpenSSL on memory BIOs ----------------------------------------------
 * The uv stream carries ciphertext. What we read goes into rbio; what SSL wants
 * to send collects in wbio and tls_pump writes it out, one uv_write at a time,
 * from the connection's retained buffer. The request is encrypted piecewise as
 * writes complete, so a large body is never copied whole. */

/* TLS 1.3 tickets arrive after the handshake: keep the newest per origin. */
static int tls_new_session(SSL *ssl, SSL_SESSION *sess)
{
    struct up_conn *c = SSL_get_app_data(ssl);
    if (!c || c->state == CONN_CLOSING) return 0;
    if (c->pool->session) SSL_SESSION_free(c->pool->session);
    c->pool->session = sess;
    return 1; /* we keep the reference */
}

/* The context for the pool's TLS settings: found among those made before, or
 * made now. NULL with *why set when it cannot be made (an unreadable CA file);
 * failures are not remembered, so a fixed file works on the next attempt. */
static SSL_CTX *tls_ctx(struct bt_upstream *u, struct up_pool *pool, struct bt_up_call *call,
                        const char **why)
{
    if (pool->tctx) return pool->tctx->ctx;
    for (struct up_tlsctx *t = u->tctxs; t; t = t->next)
        if (t->no_verify == pool->key.no_verify && opt_streq(t->ca_file, pool->key.ca_file)) {
            pool->tctx = t;
            return t->ctx;
        }
    *why = "cannot set up TLS";
    struct up_tlsctx *t = calloc(1, sizeof(*t));
    if (!t) return NULL;
    if (pool->key.ca_file && !(t->ca_file = strdup(pool->key.ca_file))) {
        free(t);
        return NULL;
    }
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    if (!ctx) goto fail;
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_verify(ctx, pool->key.no_verify ? SSL_VERIFY_NONE : SSL_VERIFY_PEER, NULL);
    /* The system store (SSL_CERT_FILE / SSL_CERT_DIR override it). */
    if (SSL_CTX_set_default_verify_paths(ctx) != 1) goto fail;
    /* A provider's own CA is trusted in addition to the system store. */
    if (pool->key.ca_file && !pool->key.no_verify) {
        ERR_clear_error();
        if (SSL_CTX_load_verify_locations(ctx, pool->key.ca_file, NULL) != 1) {
            unsigned long e = ERR_peek_last_error();
            const char *r = e ? ERR_reason_error_string(e) : NULL;
            *why = call_detailf(call, "cannot load ca_file %s: %s", pool->key.ca_file,
                                r ? r : "unknown error");
            goto fail;
        }
    }
    /* No SSL_MODE_RELEASE_BUFFERS: it frees and re-allocates OpenSSL's record
     * buffers on every request (measured: 11 allocations, 67 KB per request).
     * An idle TLS connection keeps ~37 KB instead, bounded by max_idle. */
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
    SSL_CTX_sess_set_new_cb(ctx, tls_new_session);
    t->ctx = ctx;
    t->no_verify = pool->key.no_verify;
    t->next = u->tctxs;
    u->tctxs = t;
    u->stats.tls_contexts++;
    pool->tctx = t;
    return ctx;
fail:
    SSL_CTX_free(ctx);
    free(t->ca_file);
    free(t);
    return NULL;
}

/* A short reason for a failed handshake: what verification said, else what
 * OpenSSL said. Static strings only. */
static const char *tls_reason(struct up_conn *c)
{
    long v = SSL_get_verify_result(c->ssl);
    switch (v) {
    case X509_V_OK:
        break;
    case X509_V_ERR_CERT_HAS_EXPIRED:
        return "expired certificate";
    case X509_V_ERR_CERT_NOT_YET_VALID:
        return "certificate not yet valid";
    case X509_V_ERR_HOSTNAME_MISMATCH:
    case X509_V_ERR_IP_ADDRESS_MISMATCH:
        return "hostname mismatch";
    case X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT:
    case X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN:
    case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT:
    case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY:
    case X509_V_ERR_UNABLE_TO_VERIFY_LEAF_SIGNATURE:
    case X509_V_ERR_CERT_UNTRUSTED:
        return "untrusted certificate";
    default:
        return X509_verify_cert_error_string(v);
    }
    unsigned long e = ERR_peek_last_error();
    const char *r = e ? ERR_reason_error_string(e) : NULL;
    return r ? r : "TLS handshake failed";
}

/* Sets up the connection's SSL: SNI and name (or IP) verification for the
 * origin's host, the origin's last session for resumption. Returns NULL, or
 * why it could not (a static or call-scoped string). */
static const char *tls_start(struct up_conn *c)
{
    struct up_pool *pool = c->pool;
    const char *why = "cannot set up TLS";
    SSL_CTX *ctx = tls_ctx(c->u, pool, c->call, &why);
    if (!ctx) return why;
    c->ssl = SSL_new(ctx);
    if (!c->ssl) return why;
    c->rbio = BIO_new(BIO_s_mem());
    c->wbio = BIO_new(BIO_s_mem());
    if (!c->rbio || !c->wbio) {
        BIO_free(c->rbio);
        BIO_free(c->wbio);
        c->rbio = c->wbio = NULL;
        return why;
    }
    BIO_set_mem_eof_return(c->rbio, -1); /* empty means "wait", not EOF */
    SSL_set_bio(c->ssl, c->rbio, c->wbio);
    SSL_set_app_data(c->ssl, c);
    SSL_set_connect_state(c->ssl);
    /* With verification off the name is not checked either; SNI still goes
     * out, since the server may need it to pick a certificate. */
    if (pool->host_ip) {
        if (!pool->key.no_verify &&
            X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(c->ssl), pool->key.host) != 1)
            return why;
    } else {
        if (SSL_set_tlsext_host_name(c->ssl, pool->key.host) != 1) return why;
        if (!pool->key.no_verify && SSL_set1_host(c->ssl, pool->key.host) != 1) return why;
    }
    static const unsigned char alpn[] = "\x08http/1.1";
    SSL_set_alpn_protos(c->ssl, alpn, sizeof(alpn) - 1);
    if (pool->session) SSL_set_session(c->ssl, pool->session);
    c->handshaking = true;
    return NULL;
}

/* Moves ciphertext out: encrypts more of the request once the previous write
 * is done, then writes whatever SSL produced. Returns 0 or a libuv error. */
static int tls_pump(struct up_conn *c)
{
    if (c->write_pending || c->state == CONN_CLOSING) return 0;
    struct bt_up_call *call = c->call;
    if (c->tx_req && call && !c->handshaking) {
        size_t total = call->out.len + call->body_len;
        while (c->tx_off < total && BIO_ctrl_pending(c->wbio) < TLS_TX_CHUNK) {
            const char *p;
            size_t n;
            if (c->tx_off < call->out.len && total - c->tx_off <= TLS_PLAIN_SIZE &&
                call->body_len) {
                /* Head and a small body in one record: half the records, and
                 * half OpenSSL's per-record allocations. */
                size_t hn = call->out.len - c->tx_off;
                memcpy(c->u->tx_scratch, call->out.p + c->tx_off, hn);
                for (uint32_t i = 0; i < call->nbody; i++) {
                    memcpy(c->u->tx_scratch + hn, call->body[i].p, call->body[i].len);
                    hn += call->body[i].len;
                }
                p = c->u->tx_scratch;
                n = total - c->tx_off;
            } else if (c->tx_off < call->out.len) {
                p = call->out.p + c->tx_off;
                n = call->out.len - c->tx_off;
            } else { /* the rest of the body slice tx_off falls in */
                size_t off = c->tx_off - call->out.len;
                uint32_t i = 0;
                while (off >= call->body[i].len) off -= call->body[i++].len;
                p = call->body[i].p + off;
                n = call->body[i].len - off;
            }
            if (n > TLS_PLAIN_SIZE) n = TLS_PLAIN_SIZE;
            ERR_clear_error();
            int w = SSL_write(c->ssl, p, (int)n);
            if (w <= 0) return UV_EPROTO;
            c->tx_off += (size_t)w;
        }
    }
    size_t pend = BIO_ctrl_pending(c->wbio);
    if (!pend) return 0;
    if (pend > TLS_TX_MAX) pend = TLS_TX_MAX;
    bt_buf_reset(&c->tbuf);
    if (bt_buf_reserve(&c->tbuf, pend)) return UV_ENOMEM;
    int n = BIO_read(c->wbio, c->tbuf.p, (int)pend);
    if (n <= 0) return UV_EPROTO;
    c->tbuf.len = (size_t)n;
    uv_buf_t b = uv_buf_init(c->tbuf.p, (unsigned)n);
    int r = uv_write(&c->wreq, (uv_stream_t *)&c->tcp, &b, 1, conn_on_write);
    if (r) return r;
    c->write_pending = true;
    return 0;
}

/* Drives the handshake. Returns 1 when done (the request is on its way), 0
 * when it needs more bytes, -1 when it failed (reported via call_fail_later). */
static int tls_handshake(struct up_conn *c)
{
    struct bt_up_call *call = c->call;
    ERR_clear_error();
    int r = SSL_do_handshake(c->ssl);
    if (r != 1) {
        int e = SSL_get_error(c->ssl, r);
        if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE) {
            c->tls_bad = true;
            call_fail_later(call, BT_ETLS, tls_reason(c));
            return -1;
        }
    }
    int pr = tls_pump(c);
    if (pr) {
        call_fail_later(call, map_uv_err(pr), uv_strerror(pr));
        return -1;
    }
    if (r != 1) return 0;
    c->handshaking = false;
    c->u->stats.tls_handshakes++;
    if (SSL_session_reused(c->ssl)) c->u->stats.tls_resumed++;
    call_send(call);
    return 1;
}

static void tls_on_read(struct up_conn *c, ssize_t nread, const uv_buf_t *buf)
{
    struct bt_upstream *u = c->u;
    struct bt_up_call *call = c->call;
    if (nread < 0) {
        if (!call) {
            conn_close(c);
            return;
        }
        call->busy++;
        if (c->handshaking)
            call_finish(call, BT_ETLS, "connection closed during the TLS handshake");
        else
            conn_on_end(c, call, nread);
        call_unbusy(call);
        return;
    }
    if (BIO_write(c->rbio, buf->base, (int)nread) != (int)nread) {
        if (call)
            call_fail_later(call, BT_ENOMEM, "out of memory");
        else
            conn_close(c);
        return;
    }
    if (c->handshaking) {
        if (!call || tls_handshake(c) != 1) return;
        if (c->call != call || c->state == CONN_CLOSING) return;
    }
    for (;;) {
        if (c->state == CONN_CLOSING) return;
        ERR_clear_error();
        int n = SSL_read(c->ssl, u->pbuf, (int)sizeof(u->pbuf));
        call = c->call;
        if (n > 0) {
            if (!call) { /* plaintext on an idle connection: the peer is confused */
                conn_close(c);
                return;
            }
            call->busy++;
            conn_on_bytes(c, call, u->pbuf, (size_t)n);
            call_unbusy(call);
            continue;
        }
        int e = SSL_get_error(c->ssl, n);
        if (e == SSL_ERROR_WANT_READ) break;
        if (e != SSL_ERROR_ZERO_RETURN) c->tls_bad = true;
        if (!call) {
            conn_close(c);
            return;
        }
        call->busy++;
        if (e == SSL_ERROR_ZERO_RETURN) {
            conn_on_end(c, call, UV_EOF); /* close_notify */
        } else {
            c->tls_bad = true;
            call_finish(call, BT_ETLS, tls_reason(c));
        }
        call_unbusy(call);
        return;
    }
    int pr = tls_pump(c); /* records SSL_read produced (alerts, key updates) */
    if (pr && c->state != CONN_CLOSING) {
        call = c->call;
        if (!call) {
            conn_close(c);
            return;
        }
        call->busy++;
        call_finish(call, map_uv_err(pr), uv_strerror(pr));
        call_unbusy(call);
    }
}

/* ---- llhttp callbacks (response mode) ------------------------------------- */

static struct bt_up_call *parser_call(llhttp_t *p)
{
    struct up_conn *c = p->data;
    struct bt_up_call *call = c->call;
    return call && call->state != CALL_DONE ? call : NULL;
}

static int head_fail(struct bt_up_call *call, enum bt_err err, const char *detail)
{
    call->pend_err = err;
    call->pend_detail = detail;
    return -1;
}

static int head_count(struct bt_up_call *call, size_t n)
{
    call->head_bytes += n;
    if (call->head_bytes > call->max_head)
        return head_fail(call, BT_ETOOBIG, "response head too large");
    return 0;
}

static int on_message_begin(llhttp_t *p)
{
    struct bt_up_call *call = parser_call(p);
    if (!call) return -1;
    call->nh = 0;
    call->head_bytes = 0;
    call->in_field = false;
    bt_buf_reset(&call->rhead);
    return 0;
}

static int on_status(llhttp_t *p, const char *at, size_t n)
{
    (void)at;
    struct bt_up_call *call = parser_call(p);
    if (!call) return -1;
    return head_count(call, n + 16); /* "HTTP/1.1 200 " and CRLF */
}

static int on_header_field(llhttp_t *p, const char *at, size_t n)
{
    struct bt_up_call *call = parser_call(p);
    if (!call) return -1;
    if (head_count(call, n)) return -1;
    if (!call->in_field) {
        if (call->nh == call->hoffs_cap) {
            size_t cap = call->hoffs_cap ? call->hoffs_cap * 2 : 32;
            struct up_hoff *h = realloc(call->hoffs, cap * sizeof(*h));
            if (!h) return head_fail(call, BT_ENOMEM, "out of memory");
            call->hoffs = h;
            call->hoffs_cap = cap;
        }
        if (head_count(call, 4)) return -1; /* ": " and CRLF */
        call->hoffs[call->nh++] = (struct up_hoff){(uint32_t)call->rhead.len, 0, 0, 0};
        call->in_field = true;
    }
    if (bt_buf_append(&call->rhead, at, n)) return head_fail(call, BT_ENOMEM, "out of memory");
    call->hoffs[call->nh - 1].nl += (uint32_t)n;
    return 0;
}

static int on_header_field_complete(llhttp_t *p)
{
    struct bt_up_call *call = parser_call(p);
    if (!call) return -1;
    call->in_field = false;
    call->hoffs[call->nh - 1].vo = (uint32_t)call->rhead.len;
    return 0;
}

static int on_header_value(llhttp_t *p, const char *at, size_t n)
{
    struct bt_up_call *call = parser_call(p);
    if (!call) return -1;
    if (head_count(call, n)) return -1;
    if (bt_buf_append(&call->rhead, at, n)) return head_fail(call, BT_ENOMEM, "out of memory");
    call->hoffs[call->nh - 1].vl += (uint32_t)n;
    return 0;
}

static int on_headers_complete(llhttp_t *p)
{
    struct bt_up_call *call = parser_call(p);
    if (!call) return -1;
    int status = llhttp_get_status_code(p);
    if (status == 101) return head_fail(call, BT_EPROTO, "unexpected 101 Switching Protocols");
    if (status >= 100 && status < 200) { /* 100 Continue and friends: skip */
        call->interim = true;
        return 0;
    }
    if (call->nh > call->hdrs_cap) {
        struct bt_http_header *h = realloc(call->hdrs, call->nh * sizeof(*h));
        if (!h) return head_fail(call, BT_ENOMEM, "out of memory");
        call->hdrs = h;
        call->hdrs_cap = call->nh;
    }
    for (size_t i = 0; i < call->nh; i++) {
        const struct up_hoff *o = &call->hoffs[i];
        call->hdrs[i].name = (struct bt_str){call->rhead.p + o->no, o->nl};
        call->hdrs[i].value = (struct bt_str){o->vl ? call->rhead.p + o->vo : "", o->vl};
    }
    call->state = CALL_BODY;
    call_set_phase(call, PHASE_IDLE, call->to.idle_ms);
    if (call->cb.on_head) call->cb.on_head(call->ud, status, call->hdrs, call->nh);
    if (call->state == CALL_DONE) return -1;
    return call->head_method ? 1 : 0;
}

static int on_body(llhttp_t *p, const char *at, size_t n)
{
    struct bt_up_call *call = parser_call(p);
    if (!call) return -1;
    if (call->cb.on_data) call->cb.on_data(call->ud, at, n);
    return call->state == CALL_DONE ? -1 : 0;
}

static int on_message_complete(llhttp_t *p)
{
    struct bt_up_call *call = parser_call(p);
    if (!call) return -1;
    if (call->interim) {
        call->interim = false;
        return 0;
    }
    call->complete = true;
    return HPE_PAUSED; /* one exchange per connection at a time */
}

/* ---- pools ---------------------------------------------------------------- */

static void free_secret(char *s)
{
    if (!s) return;
    explicit_bzero(s, strlen(s));
    free(s);
}

static void pool_free(struct up_pool *pool)
{
    if (pool->session) SSL_SESSION_free(pool->session);
    free(pool->key.host);
    free(pool->key.ca_file);
    free(pool->key.proxy_host);
    free_secret(pool->key.proxy_auth);
    if (pool->connect_req) explicit_bzero(pool->connect_req, pool->connect_req_len);
    free(pool->connect_req);
    free(pool->host_hdr);
    free(pool);
}

/* A host without the brackets of an IPv6 literal ("[::1]" -> "::1"). */
static struct bt_str unbracket(const char *h)
{
    size_t n = strlen(h);
    if (n >= 2 && h[0] == '[' && h[n - 1] == ']') return (struct bt_str){h + 1, n - 2};
    return (struct bt_str){h, n};
}

/* The origin as the pool key sees it: no brackets, no proxy fields without a
 * proxy, no TLS settings without TLS. Strings of `o` stay borrowed; `hbuf` and
 * `pbuf` receive the unbracketed host and proxy host. */
static void origin_normalise(const struct bt_up_origin *o, struct bt_up_origin *k, char *hbuf,
                             size_t hcap, char *pbuf, size_t pcap, size_t *hl)
{
    *k = *o;
    struct bt_str h = unbracket(o->host);
    snprintf(hbuf, hcap, "%.*s", (int)h.len, h.p);
    k->host = hbuf;
    *hl = strlen(hbuf);
    if (!o->tls) {
        k->ca_file = NULL;
        k->tls_no_verify = false;
    }
    if (k->ca_file && !k->ca_file[0]) k->ca_file = NULL;
    if (!o->proxy_host || !o->proxy_host[0]) {
        k->proxy_host = NULL;
        k->proxy_port = 0;
        k->proxy_auth = NULL;
    } else {
        struct bt_str ph = unbracket(o->proxy_host);
        snprintf(pbuf, pcap, "%.*s", (int)ph.len, ph.p);
        k->proxy_host = pbuf;
        if (k->proxy_auth && !k->proxy_auth[0]) k->proxy_auth = NULL;
    }
}

static bool literal_addr(const char *host, struct sockaddr_storage *ss, bool *is_v6)
{
    struct sockaddr_in *v4 = (struct sockaddr_in *)ss;
    struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)ss;
    memset(ss, 0, sizeof(*ss));
    *is_v6 = false;
    if (inet_pton(AF_INET, host, &v4->sin_addr) == 1) {
        v4->sin_family = AF_INET;
        return true;
    }
    if (inet_pton(AF_INET6, host, &v6->sin6_addr) == 1) {
        v6->sin6_family = AF_INET6;
        *is_v6 = true;
        return true;
    }
    return false;
}

/* `key` is normalised (origin_normalise). */
static struct up_pool *pool_get(struct bt_upstream *u, const struct bt_up_origin *key, size_t hl)
{
    const struct bt_up_origin *o = key;
    for (struct up_pool *p = u->pools; p; p = p->next)
        if (key_eq(&p->key, key, hl)) return p;
    struct up_pool *pool = calloc(1, sizeof(*pool));
    if (!pool) return NULL;
    pool->key.tls = o->tls;
    pool->key.port = o->port;
    pool->key.host = bt_str_dup((struct bt_str){o->host, hl});
    pool->key.host_len = hl;
    if (!pool->key.host) goto fail;
    pool->key.no_verify = o->tls_no_verify;
    if (o->ca_file && !(pool->key.ca_file = strdup(o->ca_file))) goto fail;
    if (o->proxy_host) {
        pool->key.proxy_port = o->proxy_port;
        if (!(pool->key.proxy_host = strdup(o->proxy_host))) goto fail;
        if (o->proxy_auth && !(pool->key.proxy_auth = strdup(o->proxy_auth))) goto fail;
    }
    bool is_v6, dial_v6;
    struct sockaddr_storage tmp;
    pool->host_ip = literal_addr(pool->key.host, &tmp, &is_v6);
    pool->dial_host = pool->key.proxy_host ? pool->key.proxy_host : pool->key.host;
    pool->dial_port = pool->key.proxy_host ? pool->key.proxy_port : pool->key.port;
    pool->literal = literal_addr(pool->dial_host, &pool->lit, &dial_v6);
    pool->tunnel = pool->key.proxy_host && pool->key.tls;
    struct bt_buf hb;
    bt_buf_init(&hb, hl + 16);
    bool def_port = o->port == (o->tls ? 443 : 80);
    enum bt_err err =
        bt_buf_printf(&hb, "%s%s%s", is_v6 ? "[" : "", pool->key.host, is_v6 ? "]" : "");
    if (!err && !def_port) err = bt_buf_printf(&hb, ":%u", (unsigned)o->port);
    if (!err) err = bt_buf_cstr(&hb);
    if (err) {
        bt_buf_free(&hb);
        goto fail;
    }
    pool->host_hdr = bt_buf_steal(&hb, &pool->host_hdr_len);
    if (pool->tunnel) {
        /* CONNECT names the origin by host name: the proxy resolves it. */
        struct bt_buf cb;
        bt_buf_init(&cb, 2048 + (o->proxy_auth ? strlen(o->proxy_auth) : 0));
        for (int i = 0; i < 2 && !err; i++)
            err = bt_buf_printf(&cb, "%s%s%s%s:%u%s", i ? "Host: " : "CONNECT ", is_v6 ? "[" : "",
                                pool->key.host, is_v6 ? "]" : "", (unsigned)o->port,
                                i ? "\r\n" : " HTTP/1.1\r\n");
        if (!err && pool->key.proxy_auth)
            err = bt_buf_printf(&cb, "Proxy-Authorization: %s\r\n", pool->key.proxy_auth);
        if (!err) err = bt_buf_append_c(&cb, "\r\n");
        if (err) {
            if (cb.p) explicit_bzero(cb.p, cb.len);
            bt_buf_free(&cb);
            goto fail;
        }
        pool->connect_req = bt_buf_steal(&cb, &pool->connect_req_len);
        if (!pool->connect_req) {
            bt_buf_free(&cb);
            goto fail;
        }
    }
    pool->next = u->pools;
    u->pools = pool;
    return pool;
fail:
    pool_free(pool);
    return NULL;
}

/* ---- idle reaping ---------------------------------------------------------- */

static void reap_on_timer(uv_timer_t *t)
{
    struct bt_upstream *u = t->data;
    uint64_t now = uv_now(u->loop), next = 0, reap = u->opts.idle_reap_ms;
    for (struct up_pool *pool = u->pools; pool; pool = pool->next) {
        /* Oldest at the tail: close from there until a young one. */
        while (pool->idle_tail && now - pool->idle_tail->idle_since >= reap)
            conn_close(pool->idle_tail);
        if (pool->idle_tail) {
            uint64_t exp = pool->idle_tail->idle_since + reap;
            if (!next || exp < next) next = exp;
        }
    }
    /* Forget origins nobody uses any more, and stale DNS answers. */
    for (struct up_pool **pp = &u->pools; *pp;) {
        struct up_pool *pool = *pp;
        if (!pool->nconns && !pool->ncalls && !pool->nwait) {
            *pp = pool->next;
            pool_free(pool);
        } else {
            pp = &pool->next;
        }
    }
    for (struct up_dns **dp = &u->dns; *dp;) {
        struct up_dns *d = *dp;
        if (!d->resolving && !d->waiters && now >= d->expires) {
            *dp = d->next;
            free(d->addrs);
            free(d->host);
            free(d);
        } else {
            dp = &d->next;
        }
    }
    if (next) uv_timer_start(&u->reap, reap_on_timer, next > now ? next - now : 0, 0);
}

static void reap_schedule(struct bt_upstream *u)
{
    if (!uv_is_active((uv_handle_t *)&u->reap))
        uv_timer_start(&u->reap, reap_on_timer, u->opts.idle_reap_ms, 0);
}

/* ---- public API ------------------------------------------------------------ */

static void maybe_free_upstream(struct bt_upstream *u)
{
    if (!u->freeing || u->pending) return;
    while (u->pools) {
        struct up_pool *p = u->pools;
        u->pools = p->next;
        pool_free(p);
    }
    while (u->dns) {
        struct up_dns *d = u->dns;
        u->dns = d->next;
        free(d->addrs);
        free(d->host);
        free(d);
    }
    while (u->tctxs) {
        struct up_tlsctx *t = u->tctxs;
        u->tctxs = t->next;
        SSL_CTX_free(t->ctx);
        free(t->ca_file);
        free(t);
    }
    free(u);
}

static void reap_on_close(uv_handle_t *h)
{
    struct bt_upstream *u = h->data;
    u->pending--;
    maybe_free_upstream(u);
}

/* Creates the per-worker client on `loop` (borrowed; must outlive it until
 * bt_upstream_free's handles closed). `opts` is copied; NULL or zero fields take
 * the defaults. Returns NULL when out of memory. */
struct bt_upstream *bt_upstream_new(uv_loop_t *loop, const struct bt_upstream_opts *opts)
{
    struct bt_upstream *u = calloc(1, sizeof(*u));
    if (!u) return NULL;
    u->loop = loop;
    if (opts) u->opts = *opts;
    if (!u->opts.max_conns_per_origin) u->opts.max_conns_per_origin = DEFAULT_MAX_CONNS;
    if (!u->opts.max_idle_per_origin) u->opts.max_idle_per_origin = DEFAULT_MAX_IDLE;
    if (!u->opts.idle_reap_ms) u->opts.idle_reap_ms = DEFAULT_IDLE_REAP_MS;
    if (!u->opts.max_queued_per_origin) u->opts.max_queued_per_origin = DEFAULT_MAX_QUEUED;
    llhttp_settings_init(&u->settings);
    u->settings.on_message_begin = on_message_begin;
    u->settings.on_status = on_status;
    u->settings.on_header_field = on_header_field;
    u->settings.on_header_field_complete = on_header_field_complete;
    u->settings.on_header_value = on_header_value;
    u->settings.on_headers_complete = on_headers_complete;
    u->settings.on_body = on_body;
    u->settings.on_message_complete = on_message_complete;
    uv_timer_init(loop, &u->reap);
    u->reap.data = u;
    uv_unref((uv_handle_t *)&u->reap);
    u->pending = 1;
    return u;
}

/* Cancels every call without callbacks, closes every connection and frees the
 * client once the loop has run the close callbacks. NULL is ignored. */
void bt_upstream_free(struct bt_upstream *u)
{
    if (!u || u->freeing) return;
    u->freeing = true;
    for (struct bt_up_call *call = u->calls, *next; call; call = next) {
        next = call->next;
        if (call->state == CALL_DONE) continue; /* released by the frame that holds it */
        bt_upstream_cancel(call);
    }
    for (struct up_conn *c = u->conns; c; c = c->next) {
        if (c->state == CONN_CLOSING) continue;
        if (c->call) { /* cannot happen after the loop above; be defensive */
            c->call->conn = NULL;
            c->call = NULL;
        }
        conn_close(c);
    }
    for (struct up_dns *d = u->dns; d; d = d->next)
        if (d->resolving) uv_cancel((uv_req_t *)&d->req);
    while (u->free_calls) {
        struct bt_up_call *call = u->free_calls;
        u->free_calls = call->next;
        uv_close((uv_handle_t *)&call->timer, call_on_close);
    }
    u->nfree = 0;
    uv_close((uv_handle_t *)&u->reap, reap_on_close);
}

/* Builds the request head into call->out. Header names and values are checked
 * for bytes that would split the request (CR, LF, NUL). */
static bool tchar_ok(struct bt_str s)
{
    if (!s.len) return false;
    for (size_t i = 0; i < s.len; i++) {
        unsigned char ch = (unsigned char)s.p[i];
        if (ch <= 32 || ch >= 127 || strchr("\"(),/:;<=>?@[\\]{}", ch)) return false;
    }
    return true;
}

static bool field_ok(struct bt_str s)
{
    for (size_t i = 0; i < s.len; i++) {
        unsigned char ch = (unsigned char)s.p[i];
        if (ch == '\r' || ch == '\n' || ch == 0) return false;
    }
    return true;
}

static bool target_ok(struct bt_str s)
{
    if (!s.len) return false;
    for (size_t i = 0; i < s.len; i++) {
        unsigned char ch = (unsigned char)s.p[i];
        if (ch <= 32 || ch == 127) return false;
    }
    return true;
}

static bool is_hop_header(struct bt_str name)
{
    static const char *const hop[] = {"content-length", "connection",         "transfer-encoding",
                                      "keep-alive",     "proxy-connection",   "te",
                                      "upgrade",        "proxy-authorization"};
    for (size_t i = 0; i < sizeof(hop) / sizeof(hop[0]); i++)
        if (bt_str_caseeq_c(name, hop[i])) return true;
    return false;
}

static enum bt_err build_head(struct bt_up_call *call, const struct up_pool *pool,
                              const struct bt_up_request *req)
{
    struct bt_buf *b = &call->out;
    if (!tchar_ok(req->method) || !target_ok(req->target)) return BT_EINVAL;
    if (req->nheaders && !req->headers) return BT_EINVAL;
    for (uint32_t i = 0; i < call->nbody; i++)
        if (call->body[i].len && !call->body[i].p) return BT_EINVAL;
    bool has_host = false;
    for (size_t i = 0; i < req->nheaders; i++) {
        const struct bt_http_header *h = &req->headers[i];
        if (!tchar_ok(h->name) || !field_ok(h->value)) return BT_EINVAL;
        if (bt_str_caseeq_c(h->name, "host")) has_host = true;
    }
    enum bt_err err = BT_OK;
    /* Plain http through a proxy: the absolute form tells the proxy where the
     * request goes, and Proxy-Authorization is for the proxy alone. */
    bool absolute = pool->key.proxy_host && !pool->key.tls && req->target.p[0] == '/';
    if (!err) err = bt_buf_append_str(b, req->method);
    if (!err) err = bt_buf_append(b, " ", 1);
    if (!err && absolute) {
        err = bt_buf_append_c(b, "http://");
        if (!err) err = bt_buf_append(b, pool->host_hdr, pool->host_hdr_len);
    }
    if (!err) err = bt_buf_append_str(b, req->target);
    if (!err) err = bt_buf_append_c(b, " HTTP/1.1\r\n");
    if (!err && !has_host) {
        err = bt_buf_append_c(b, "Host: ");
        if (!err) err = bt_buf_append(b, pool->host_hdr, pool->host_hdr_len);
        if (!err) err = bt_buf_append(b, "\r\n", 2);
    }
    if (!err && absolute && pool->key.proxy_auth) {
        err = bt_buf_append_c(b, "Proxy-Authorization: ");
        if (!err) err = bt_buf_append_c(b, pool->key.proxy_auth);
        if (!err) err = bt_buf_append(b, "\r\n", 2);
    }
    for (size_t i = 0; !err && i < req->nheaders; i++) {
        const struct bt_http_header *h = &req->headers[i];
        if (is_hop_header(h->name)) continue; /* ours to set */
        err = bt_buf_append_str(b, h->name);
        if (!err) err = bt_buf_append(b, ": ", 2);
        if (!err) err = bt_buf_append_str(b, h->value);
        if (!err) err = bt_buf_append(b, "\r\n", 2);
    }
    bool needs_len = call->body_len || bt_str_eq_c(req->method, "POST") ||
                     bt_str_eq_c(req->method, "PUT") || bt_str_eq_c(req->method, "PATCH");
    if (!err && needs_len) {
        err = bt_buf_append_c(b, "Content-Length: ");
        if (!err) err = bt_buf_append_u64(b, call->body_len);
        if (!err) err = bt_buf_append(b, "\r\n", 2);
    }
    if (!err) err = bt_buf_append_c(b, "Connection: keep-alive\r\n\r\n");
    return err;
}

/* Starts a request (see upstream.h). Everything in `origin` and `req` except
 * req->body is copied before return; the body is borrowed until on_done or
 * cancel. Failures other than ENOMEM come through on_done from the loop. */
struct bt_up_call *bt_upstream_request(struct bt_upstream *u, const struct bt_up_origin *origin,
                                       const struct bt_up_request *req,
                                       const struct bt_up_callbacks *cb, void *ud)
{
    if (!u || !origin || !req || !cb || u->freeing) return NULL;
    struct bt_up_call *call = call_alloc(u);
    if (!call) return NULL;
    call->cb = *cb;
    call->ud = ud;
    call->to = req->timeouts;
    if (req->nbody_parts) {
        if (req->nbody_parts > BT_UP_BODY_PARTS || !req->body_parts) {
            call_fail_later(call, BT_EINVAL, "too many body parts");
            return call;
        }
        for (size_t i = 0; i < req->nbody_parts; i++) call->body[i] = req->body_parts[i];
        call->nbody = (uint32_t)req->nbody_parts;
    } else {
        call->body[0] = req->body;
        call->nbody = 1;
    }
    for (uint32_t i = 0; i < call->nbody; i++) call->body_len += call->body[i].len;
    call->max_head = req->max_head_bytes ? req->max_head_bytes : DEFAULT_MAX_HEAD;
    call->rhead.max = call->max_head;
    call->head_method = bt_str_eq_c(req->method, "HEAD");
    if (call->to.total_ms) call->deadline_total = uv_now(u->loop) + call->to.total_ms;
    if (!origin->host || !origin->host[0] || !origin->port) {
        call_fail_later(call, BT_EINVAL, "origin needs a host and a port");
        return call;
    }
    if (origin->proxy_host && origin->proxy_host[0] &&
        (!origin->proxy_port || (origin->proxy_auth && !field_ok(bt_str_c(origin->proxy_auth))))) {
        call_fail_later(call, BT_EINVAL, "invalid proxy settings");
        return call;
    }
    char hbuf[300], pbuf[300];
    struct bt_up_origin key;
    size_t hl;
    if (strlen(origin->host) >= sizeof(hbuf) ||
        (origin->proxy_host && strlen(origin->proxy_host) >= sizeof(pbuf))) {
        call_fail_later(call, BT_EINVAL, "host name too long");
        return call;
    }
    origin_normalise(origin, &key, hbuf, sizeof(hbuf), pbuf, sizeof(pbuf), &hl);

    struct up_pool *pool = pool_get(u, &key, hl);
    if (!pool) goto nomem;
    enum bt_err err = build_head(call, pool, req);
    if (err == BT_ENOMEM) goto nomem;
    if (err) {
        call_fail_later(call, err,
                        err == BT_ETOOBIG ? "request head too large" : "invalid request");
        return call;
    }
    call->pool = pool;
    pool->ncalls++;
    call->busy++; /* a sync failure below only schedules on_done */
    pool_acquire(pool, call, false);
    call_arm(call);
    call->busy--;
    return call;
nomem:
    call_end(call);
    call_release(call);
    return NULL;
}

/* Cancels `call`: no callback runs afterwards. Its connection is closed unless
 * it already went back to the pool. Safe inside the call's own callbacks; a
 * call must not be cancelled after on_done returned (its handle is recycled). */
void bt_upstream_cancel(struct bt_up_call *call)
{
    if (!call || call->state == CALL_DONE) return;
    call_detach(call);
    call_end(call);
    if (call->busy == 0) call_release(call);
}

void bt_upstream_stats(const struct bt_upstream *u, struct bt_upstream_stats *out)
{
    *out = u->stats;
}
