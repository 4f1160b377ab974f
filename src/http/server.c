/* HTTP/1.1 server: libuv TCP + llhttp. Design notes in docs/internals/http.md.
 *
 * One connection holds at most one live request. Its whole message (head and
 * de-chunked body) stays contiguous in the connection's receive buffer, so the
 * request's header and body slices point straight into it; header positions are
 * kept as offsets while the message is still arriving (the buffer may move then)
 * and turned into pointers when the request is handed to the handler (the buffer
 * is pinned from then until the response is finished). */
#include "http/server.h"

#include <arpa/inet.h>
#include <limits.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <llhttp.h>

#include "core/log.h"
#include "core/time.h"

enum {
    RBUF_INIT = 4 * 1024,          /* first receive buffer; pooled per server. Bigger
                                    * requests grow it once, sized from Content-Length;
                                    * small keeps memory per open stream low */
    MIN_READ = 4096,               /* free tail wanted before a read */
    OUT_HIGH_WATER = 256 * 1024,   /* stop answering pipelined requests above this */
    OUT_MAX = 64 * 1024 * 1024,    /* cap on bytes queued for one client */
    HEAD_OUT_MAX = 256 * 1024,     /* cap on one response head */
    MAX_HEADERS = 500,             /* request header lines; beyond: 431 */
    POOL_MAX = 64,                 /* receive buffers / arenas kept per server */
    ARENA_BLOCK = 4 * 1024,        /* request arena block (a 1.5 KB chat request fits) */
    LINGER_MS = 2000,              /* read-and-discard after our FIN */
    DISCARD_SIZE = 16 * 1024,
};

#define DEFAULT_HEADER_BYTES (32u * 1024)
#define DEFAULT_BODY_BYTES (16u * 1024 * 1024)
#define DEFAULT_HEADER_TIMEOUT_MS 30000u
#define DEFAULT_IDLE_TIMEOUT_MS 60000u
#define DEFAULT_BODY_TIMEOUT_MS 60000u
#define SEND_IOV_MAX (BT_HTTP_MAX_PARTS + 3) /* chunk size, parts, CRLF, held bytes */

/* Connection states; conn_set_state-style transitions happen in the functions
 * named after the state they enter (conn_idle, conn_dispatch, conn_closing...). */
enum conn_state {
    CS_IDLE,    /* between requests (pipelined bytes may wait in the buffer) */
    CS_HEAD,    /* reading a request head */
    CS_BODY,    /* reading a request body */
    CS_ACTIVE,  /* handler owns the request; parser paused, buffer pinned */
    CS_CLOSING, /* last response queued; flush, then shutdown */
    CS_LINGER,  /* FIN sent; discard input until EOF or LINGER_MS */
    CS_CLOSED,  /* uv_close called */
};

enum { HS_NONE, HS_FIELD, HS_VALUE };

/* A header's position relative to the message start, while the buffer may move. */
struct hdr_ref {
    uint32_t name, name_len, value, value_len;
};

struct bt_http_conn {
    uv_tcp_t tcp;
    uv_timer_t timer;
    uv_write_t wreq;
    uv_shutdown_t sreq;
    struct bt_http_server *srv;
    struct bt_http_conn *prev, *next; /* server's list */
    enum conn_state state;
    int handles;                      /* open uv handles (tcp, timer) */
    llhttp_t parser;

    /* receive buffer: [msg_start, rparsed) parsed part of the current message,
     * [rparsed, rlen) not yet given to llhttp (pipelined while ACTIVE) */
    char *rb;
    size_t rcap, rlen, rparsed, msg_start;

    /* current message, offsets relative to msg_start */
    struct hdr_ref *hdrs; /* malloc'd, kept across requests */
    uint32_t nhdrs, hdr_cap;
    int hdr_state;
    uint32_t url_off, url_len;
    size_t body_off, body_len;
    bool body_seen, chunked, expect_continue;
    size_t trailer_bytes;
    int fail_status;      /* set by a parser callback that rejects the message */
    const char *fail_msg;
    uint64_t head_deadline;

    /* the request */
    struct bt_http_req req;
    struct bt_arena arena;
    bool has_arena, req_active, resp_started, resp_chunked, resp_no_body, resp_close;
    bt_http_abort_cb abort_cb;
    void *abort_ud;

    /* output: `out` collects, `wout` is in flight from wout_off */
    struct bt_buf out, wout;
    size_t wout_off;
    bool writing, shutdown_started;
    uint64_t written_total, written_mark;

    bool in_process, read_on, peer_eof, failed, counted;
    uint64_t deadline, timer_due; /* uv_now() ms; 0 = none */
    bool timer_on;
    bool held;                          /* on the server's held list (see conn_hold) */
    struct bt_http_conn *hprev, *hnext;
    char remote[INET6_ADDRSTRLEN];
};

struct bt_http_server {
    uv_loop_t *loop;
    uv_tcp_t listener;
    struct bt_http_opts opts;
    atomic_uint own_count;
    atomic_uint *count;
    struct bt_http_conn *conns;
    size_t nconns;
    uv_check_t flush_check;            /* writes what conns hold (conn_hold) */
    struct bt_http_conn *held;
    int handles_closing;               /* listener and flush_check, while closing */
    uint64_t accepted; /* connections accepted since start */
    bool listening, listener_closing, listener_closed, draining, closing, in_finish;
    void (*drain_cb)(void *);
    void *drain_ud;
    void (*close_cb)(void *);
    void *close_ud;
    llhttp_settings_t settings;
    size_t rb_limit, arena_max;
    uint16_t port;
    int64_t date_sec;
    char date[32];
    uint32_t id_hi;
    uint64_t id_next;
    struct bt_buf hbuf; /* response head scratch (copied out before reuse) */
    struct bt_buf ebuf; /* error body scratch */
    char *rb_pool[POOL_MAX];
    size_t n_rb_pool;
    struct bt_arena arena_pool[POOL_MAX];
    size_t n_arena_pool;
    char discard[DISCARD_SIZE];
};

static void conn_process(struct bt_http_conn *c);
static void conn_close(struct bt_http_conn *c);
static void conn_closing(struct bt_http_conn *c);
static void conn_send_error(struct bt_http_conn *c, int status, const char *msg);
static void conn_flush(struct bt_http_conn *c);
static void conn_unhold(struct bt_http_conn *c);
static enum bt_err conn_send(struct bt_http_conn *c, uv_buf_t *iov, unsigned n);
static void req_abort(struct bt_http_conn *c);
static void server_maybe_finish(struct bt_http_server *s);

/* ---- small helpers ---- */

const char *bt_http_status_text(int status)
{
    switch (status) {
    case 100: return "Continue";
    case 101: return "Switching Protocols";
    case 200: return "OK";
    case 201: return "Created";
    case 202: return "Accepted";
    case 204: return "No Content";
    case 206: return "Partial Content";
    case 301: return "Moved Permanently";
    case 302: return "Found";
    case 303: return "See Other";
    case 304: return "Not Modified";
    case 307: return "Temporary Redirect";
    case 308: return "Permanent Redirect";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 402: return "Payment Required";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 406: return "Not Acceptable";
    case 408: return "Request Timeout";
    case 409: return "Conflict";
    case 410: return "Gone";
    case 411: return "Length Required";
    case 412: return "Precondition Failed";
    case 413: return "Payload Too Large";
    case 414: return "URI Too Long";
    case 415: return "Unsupported Media Type";
    case 416: return "Range Not Satisfiable";
    case 417: return "Expectation Failed";
    case 421: return "Misdirected Request";
    case 422: return "Unprocessable Entity";
    case 425: return "Too Early";
    case 426: return "Upgrade Required";
    case 428: return "Precondition Required";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 499: return "Client Closed Request";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    case 505: return "HTTP Version Not Supported";
    case 529: return "Site Overloaded";
    default: break;
    }
    if (status >= 100 && status < 200) return "Informational";
    if (status >= 200 && status < 300) return "OK";
    if (status >= 300 && status < 400) return "Redirection";
    if (status >= 400 && status < 500) return "Client Error";
    return "Server Error";
}

static const char hex_digits[] = "0123456789abcdef";

static void gen_id(struct bt_http_server *s, char *out)
{
    uint32_t hi = s->id_hi;
    uint64_t n = s->id_next++;
    for (int i = 7; i >= 0; i--, hi >>= 4) out[i] = hex_digits[hi & 15];
    for (int i = 23; i >= 8; i--, n >>= 4) out[i] = hex_digits[n & 15];
    out[24] = '\0';
}

static bool id_char_ok(char ch)
{
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
           ch == '.' || ch == '_' || ch == '-';
}

/* Copies a client-supplied id into `out` when it is 1-64 chars of [A-Za-z0-9._-]. */
static bool id_take(struct bt_str v, char *out)
{
    if (v.len == 0 || v.len > 64) return false;
    for (size_t i = 0; i < v.len; i++)
        if (!id_char_ok(v.p[i])) return false;
    memcpy(out, v.p, v.len);
    out[v.len] = '\0';
    return true;
}

/* IMF-fixdate, recomputed once per second. Written by hand because strftime's
 * day and month names follow the locale. */
static const char *server_date(struct bt_http_server *s)
{
    static const char days[7][4] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
    static const char months[12][4] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                        "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
    time_t now = time(NULL);
    if ((int64_t)now == s->date_sec) return s->date;
    struct tm tm;
    if (!gmtime_r(&now, &tm)) return s->date;
    char *d = s->date;
    int year = tm.tm_year + 1900;
    memcpy(d, days[tm.tm_wday % 7], 3);
    d[3] = ',';
    d[4] = ' ';
    d[5] = (char)('0' + tm.tm_mday / 10);
    d[6] = (char)('0' + tm.tm_mday % 10);
    d[7] = ' ';
    memcpy(d + 8, months[tm.tm_mon % 12], 3);
    d[11] = ' ';
    d[12] = (char)('0' + year / 1000 % 10);
    d[13] = (char)('0' + year / 100 % 10);
    d[14] = (char)('0' + year / 10 % 10);
    d[15] = (char)('0' + year % 10);
    d[16] = ' ';
    d[17] = (char)('0' + tm.tm_hour / 10);
    d[18] = (char)('0' + tm.tm_hour % 10);
    d[19] = ':';
    d[20] = (char)('0' + tm.tm_min / 10);
    d[21] = (char)('0' + tm.tm_min % 10);
    d[22] = ':';
    d[23] = (char)('0' + tm.tm_sec / 10 % 10);
    d[24] = (char)('0' + tm.tm_sec % 10);
    memcpy(d + 25, " GMT", 5);
    s->date_sec = (int64_t)now;
    return s->date;
}

/* Without a front end to ask, the message itself. */
static const char *default_format_error(struct bt_buf *out, struct bt_str path, int status,
                                        const char *msg)
{
    (void)path;
    (void)status;
    bt_buf_append_c(out, msg);
    bt_buf_append_c(out, "\n");
    return "text/plain; charset=utf-8";
}

static bool hdr_text_ok(struct bt_str s, bool name)
{
    if (name && s.len == 0) return false;
    for (size_t i = 0; i < s.len; i++) {
        unsigned char ch = (unsigned char)s.p[i];
        if (ch == '\r' || ch == '\n' || ch == '\0') return false;
        if (name && (ch == ':' || ch <= ' ' || ch == 0x7f)) return false;
    }
    return true;
}

/* ---- pools ---- */

static char *rb_get(struct bt_http_server *s)
{
    if (s->n_rb_pool) return s->rb_pool[--s->n_rb_pool];
    return malloc(RBUF_INIT);
}

static void conn_release_rb(struct bt_http_conn *c)
{
    struct bt_http_server *s = c->srv;
    if (!c->rb) return;
    if (c->rcap == RBUF_INIT && s->n_rb_pool < POOL_MAX) s->rb_pool[s->n_rb_pool++] = c->rb;
    else free(c->rb);
    c->rb = NULL;
    c->rcap = c->rlen = c->rparsed = c->msg_start = 0;
}

static void conn_take_arena(struct bt_http_conn *c)
{
    struct bt_http_server *s = c->srv;
    if (c->has_arena) return;
    if (s->n_arena_pool) c->arena = s->arena_pool[--s->n_arena_pool];
    else bt_arena_init(&c->arena, ARENA_BLOCK, s->arena_max);
    c->has_arena = true;
}

static void conn_release_arena(struct bt_http_conn *c)
{
    struct bt_http_server *s = c->srv;
    if (c->req.on_finish) { /* the request's memory goes: it is over, however it ended */
        void (*fn)(void *) = c->req.on_finish;
        c->req.on_finish = NULL;
        fn(c->req.on_finish_ud);
    }
    if (!c->has_arena) return;
    bt_arena_reset(&c->arena);
    if (s->n_arena_pool < POOL_MAX && !s->closing) s->arena_pool[s->n_arena_pool++] = c->arena;
    else bt_arena_free(&c->arena);
    c->has_arena = false;
}

/* ---- timers ---- */

/* Sets the connection's deadline. The uv timer is only restarted when the new
 * deadline is earlier than the one it is set for; a timer that fires early
 * re-arms itself, so the common request path costs no timer operations. */
static void on_timer(uv_timer_t *t);

static void conn_arm(struct bt_http_conn *c, uint64_t deadline)
{
    c->deadline = deadline;
    if (!deadline || c->state == CS_CLOSED) return;
    if (c->timer_on && c->timer_due <= deadline) return;
    uint64_t now = uv_now(c->srv->loop);
    uv_timer_start(&c->timer, on_timer, deadline > now ? deadline - now : 0, 0);
    c->timer_on = true;
    c->timer_due = deadline;
}

static uint64_t after_ms(struct bt_http_conn *c, uint64_t ms)
{
    return uv_now(c->srv->loop) + (ms ? ms : 1);
}

/* ---- reading ---- */

static bool conn_has_room(const struct bt_http_conn *c)
{
    switch (c->state) {
    case CS_HEAD:
    case CS_BODY:
    case CS_CLOSING:
    case CS_LINGER: return true;
    case CS_IDLE: return c->rparsed == c->rlen || c->rcap - c->rlen + c->msg_start > 0;
    case CS_ACTIVE: return c->rcap > c->rlen || !c->rb;
    case CS_CLOSED: return false;
    }
    return false;
}

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf);
static void on_read(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf);

static void conn_read_start(struct bt_http_conn *c)
{
    if (c->read_on || c->peer_eof || c->failed || c->state == CS_CLOSED) return;
    if (!conn_has_room(c)) return;
    if (uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) == 0) c->read_on = true;
}

static void conn_read_stop(struct bt_http_conn *c)
{
    if (!c->read_on) return;
    uv_read_stop((uv_stream_t *)&c->tcp);
    c->read_on = false;
}

static void conn_grow(struct bt_http_conn *c, size_t need)
{
    size_t limit = c->srv->rb_limit;
    if (need > limit) need = limit;
    if (need <= c->rcap) return;
    size_t cap = c->rcap * 2 > need ? c->rcap * 2 : need;
    if (cap > limit) cap = limit;
    char *p = realloc(c->rb, cap);
    if (!p) return;
    c->rb = p;
    c->rcap = cap;
}

/* Hands libuv the buffer tail. Only here (never inside llhttp callbacks) may the
 * receive buffer move: compaction drops consumed bytes before the current
 * message, growth makes room for the rest of it (sized from Content-Length). */
static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
    (void)hint;
    struct bt_http_conn *c = h->data;
    struct bt_http_server *s = c->srv;
    if (c->state >= CS_CLOSING) {
        *buf = uv_buf_init(s->discard, sizeof(s->discard));
        return;
    }
    if (!c->rb) {
        c->rb = rb_get(s);
        c->rcap = c->rb ? RBUF_INIT : 0;
        c->rlen = c->rparsed = c->msg_start = 0;
        if (!c->rb) {
            *buf = uv_buf_init(NULL, 0);
            return;
        }
    }
    if (c->state != CS_ACTIVE) {
        size_t want = MIN_READ;
        bool blocked = c->state == CS_IDLE && c->rparsed < c->rlen;
        /* Room for the rest of the body and a read more: a buffer filled exactly
         * would stop reading until the response is out (two epoll_ctl calls). */
        if (c->state == CS_BODY && c->parser.content_length + MIN_READ > want)
            want = c->parser.content_length + MIN_READ < s->rb_limit
                       ? (size_t)c->parser.content_length + MIN_READ
                       : s->rb_limit;
        if (c->rcap - c->rlen < want) {
            if (c->msg_start > 0) {
                memmove(c->rb, c->rb + c->msg_start, c->rlen - c->msg_start);
                c->rlen -= c->msg_start;
                c->rparsed -= c->msg_start;
                c->msg_start = 0;
            }
            if (!blocked && c->rcap - c->rlen < want) conn_grow(c, c->rlen + want);
        }
    }
    size_t room = c->rcap - c->rlen;
    if (room > UINT_MAX) room = UINT_MAX;
    *buf = uv_buf_init(c->rb + c->rlen, (unsigned)room);
}

static void on_read(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf)
{
    (void)buf;
    struct bt_http_conn *c = st->data;
    if (nread == 0 || c->state == CS_CLOSED) return;
    if (nread == UV_ENOBUFS) {
        conn_read_stop(c);
        if (c->state == CS_HEAD) conn_send_error(c, 431, "request header fields too large");
        else if (c->state == CS_BODY) conn_send_error(c, 413, "request body too large");
        return;
    }
    if (nread < 0) {
        bool eof = nread == UV_EOF;
        conn_read_stop(c);
        c->peer_eof = true;
        switch (c->state) {
        case CS_ACTIVE:
            /* The client left while its response is pending: abort. */
            conn_close(c);
            req_abort(c);
            return;
        case CS_CLOSING:
            if (!eof) conn_close(c);
            return;
        case CS_LINGER: conn_close(c); return;
        default:
            if (!eof) conn_close(c);
            else conn_process(c);
            return;
        }
    }
    switch (c->state) {
    case CS_CLOSING:
    case CS_LINGER: return; /* discarded */
    case CS_ACTIVE:
        c->rlen += (size_t)nread; /* pipelined; parsed after this response */
        if (c->rlen == c->rcap) conn_read_stop(c);
        return;
    default:
        c->rlen += (size_t)nread;
        conn_process(c);
        return;
    }
}

/* ---- llhttp callbacks (never move the buffer, never call the handler) ---- */

static int fail_msg(struct bt_http_conn *c, int status, const char *msg)
{
    c->fail_status = status;
    c->fail_msg = msg;
    return -1;
}

static int head_span(struct bt_http_conn *c, const char *at, size_t len, uint32_t *off)
{
    size_t o = (size_t)(at - (c->rb + c->msg_start));
    if (o + len > c->srv->opts.max_header_bytes)
        return fail_msg(c, 431, "request header fields too large");
    *off = (uint32_t)o;
    return 0;
}

static int cb_message_begin(llhttp_t *p)
{
    struct bt_http_conn *c = p->data;
    c->state = CS_HEAD;
    c->nhdrs = 0;
    c->hdr_state = HS_NONE;
    c->url_off = c->url_len = 0;
    c->body_off = c->body_len = 0;
    c->body_seen = c->chunked = c->expect_continue = false;
    c->trailer_bytes = 0;
    c->fail_status = 0;
    c->fail_msg = NULL;
    c->req.id[0] = '\0';
    c->req.start_ns = bt_now_ns();
    c->head_deadline = after_ms(c, c->srv->opts.header_timeout_ms);
    return 0;
}

static int cb_url(llhttp_t *p, const char *at, size_t len)
{
    struct bt_http_conn *c = p->data;
    uint32_t off;
    if (head_span(c, at, len, &off)) return -1;
    if (c->url_len == 0) c->url_off = off;
    c->url_len += (uint32_t)len;
    return 0;
}

static int trailer_bytes(struct bt_http_conn *c, size_t len)
{
    /* Trailers are parsed but dropped (their bytes get overwritten by de-chunking). */
    c->trailer_bytes += len;
    if (c->trailer_bytes > c->srv->opts.max_header_bytes)
        return fail_msg(c, 431, "request trailer fields too large");
    return 0;
}

static int cb_header_field(llhttp_t *p, const char *at, size_t len)
{
    struct bt_http_conn *c = p->data;
    if (c->state == CS_BODY) return trailer_bytes(c, len);
    uint32_t off;
    if (head_span(c, at, len, &off)) return -1;
    if (c->hdr_state != HS_FIELD) {
        if (c->nhdrs == c->hdr_cap) {
            if (c->hdr_cap >= MAX_HEADERS) return fail_msg(c, 431, "too many header fields");
            uint32_t cap = c->hdr_cap ? c->hdr_cap * 2 : 32;
            if (cap > MAX_HEADERS) cap = MAX_HEADERS;
            struct hdr_ref *h = realloc(c->hdrs, cap * sizeof(*h));
            if (!h) return fail_msg(c, 503, "out of memory");
            c->hdrs = h;
            c->hdr_cap = cap;
        }
        c->hdrs[c->nhdrs++] = (struct hdr_ref){off, 0, off, 0};
        c->hdr_state = HS_FIELD;
    }
    /* A continuation (head split across reads) is contiguous with its start. */
    c->hdrs[c->nhdrs - 1].name_len += (uint32_t)len;
    return 0;
}

static int cb_header_value(llhttp_t *p, const char *at, size_t len)
{
    struct bt_http_conn *c = p->data;
    if (c->state == CS_BODY) return trailer_bytes(c, len);
    uint32_t off;
    if (head_span(c, at, len, &off)) return -1;
    if (!c->nhdrs) return 0;
    struct hdr_ref *h = &c->hdrs[c->nhdrs - 1];
    if (c->hdr_state != HS_VALUE) {
        h->value = off;
        h->value_len = 0;
        c->hdr_state = HS_VALUE;
    }
    h->value_len += (uint32_t)len;
    return 0;
}

static int cb_header_done(llhttp_t *p)
{
    struct bt_http_conn *c = p->data;
    c->hdr_state = HS_NONE;
    return 0;
}

static struct bt_str hdr_value(const struct bt_http_conn *c, const struct hdr_ref *h)
{
    struct bt_str v = {c->rb + c->msg_start + h->value, h->value_len};
    while (v.len && (v.p[v.len - 1] == ' ' || v.p[v.len - 1] == '\t')) v.len--;
    return v;
}

static int cb_headers_complete(llhttp_t *p)
{
    struct bt_http_conn *c = p->data;
    struct bt_http_server *s = c->srv;
    /* Upgrade (h2c, websocket) and CONNECT are not supported: answer them as
     * plain HTTP/1.1 requests instead of letting llhttp hand over the socket. */
    p->upgrade = 0;
    c->req.keep_alive = llhttp_should_keep_alive(p) != 0;
    const char *base = c->rb + c->msg_start;
    for (uint32_t i = 0; i < c->nhdrs; i++) {
        const struct hdr_ref *h = &c->hdrs[i];
        struct bt_str name = {base + h->name, h->name_len};
        if (h->name_len == 12 && bt_str_caseeq_c(name, "x-request-id") && !c->req.id[0])
            id_take(hdr_value(c, h), c->req.id);
        else if (h->name_len == 6 && bt_str_caseeq_c(name, "expect") &&
                 bt_str_caseeq_c(hdr_value(c, h), "100-continue"))
            c->expect_continue = true;
    }
    if (!c->req.id[0]) gen_id(s, c->req.id);
    if (p->flags & F_CHUNKED) {
        c->chunked = true;
    } else if ((p->flags & F_CONTENT_LENGTH) && p->content_length > s->opts.max_body_bytes) {
        return fail_msg(c, 413, "request body too large");
    }
    c->state = CS_BODY;
    if (c->expect_continue && p->http_minor == 1 &&
        (c->chunked || ((p->flags & F_CONTENT_LENGTH) && p->content_length > 0))) {
        static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
        uv_buf_t b = uv_buf_init((char *)cont, sizeof(cont) - 1);
        conn_send(c, &b, 1); /* a failure shows up on the final response */
    }
    return 0;
}

static int cb_body(llhttp_t *p, const char *at, size_t len)
{
    struct bt_http_conn *c = p->data;
    if (c->body_len + len > c->srv->opts.max_body_bytes)
        return fail_msg(c, 413, "request body too large");
    if (!c->body_seen) {
        c->body_seen = true;
        c->body_off = (size_t)(at - (c->rb + c->msg_start));
    }
    /* De-chunk in place: move this piece down over the already-parsed chunk
     * framing; llhttp never looks back at bytes it has consumed. */
    char *dst = c->rb + c->msg_start + c->body_off + c->body_len;
    if (dst != at) memmove(dst, at, len);
    c->body_len += len;
    return 0;
}

static int cb_message_complete(llhttp_t *p)
{
    (void)p;
    return HPE_PAUSED; /* one request at a time: resumed when it is answered */
}

/* ---- writing ---- */

static void on_write(uv_write_t *w, int status);

/* libuv's write_queue_size tells how much of the in-flight write is still
 * unsent, so progress is visible before the write completes. */
static size_t conn_pending(const struct bt_http_conn *c)
{
    return c->out.len + (c->writing ? c->tcp.write_queue_size : 0);
}

static uint64_t conn_written(const struct bt_http_conn *c)
{
    if (!c->writing) return c->written_total;
    return c->written_total + (c->wout.len - c->wout_off) - c->tcp.write_queue_size;
}

/* Marks the connection broken after a synchronous write failure. The abort
 * callback must not run inside the handler's own call, so the timer delivers it. */
static void conn_fail_async(struct bt_http_conn *c)
{
    if (c->failed || c->state == CS_CLOSED) return;
    c->failed = true;
    conn_read_stop(c);
    uv_timer_start(&c->timer, on_timer, 0, 0);
    c->timer_on = true;
    c->timer_due = 0;
}

static void conn_start_write(struct bt_http_conn *c, size_t already)
{
    struct bt_buf tmp = c->wout;
    c->wout = c->out;
    c->out = tmp;
    c->out.len = 0;
    c->wout_off = already;
    uv_buf_t b = uv_buf_init(c->wout.p + already, (unsigned)(c->wout.len - already));
    c->wreq.data = c;
    if (uv_write(&c->wreq, (uv_stream_t *)&c->tcp, &b, 1, on_write)) {
        c->wout.len = 0;
        conn_fail_async(c);
        return;
    }
    c->writing = true;
}

/* Writes what `out` holds: directly when the socket takes it, else one uv_write. */
static void conn_flush(struct bt_http_conn *c)
{
    conn_unhold(c);
    if (c->writing || !c->out.len || c->failed || c->state == CS_CLOSED) return;
    uv_buf_t b = uv_buf_init(c->out.p, (unsigned)c->out.len);
    int r = uv_try_write((uv_stream_t *)&c->tcp, &b, 1);
    if (r < 0 && r != UV_EAGAIN) {
        c->out.len = 0;
        conn_fail_async(c);
        return;
    }
    size_t done = r > 0 ? (size_t)r : 0;
    c->written_total += done;
    if (done == c->out.len) {
        c->out.len = 0;
        return;
    }
    conn_start_write(c, done);
}

/* ---- held output ----
 * A stream's head is not written on its own: it waits in `out` for the stream's
 * first chunk, which takes it along in one writev (conn_send). What is still held
 * once the loop has run this pass's I/O callbacks goes out from the check phase,
 * before the loop can block. */

static void conn_unhold(struct bt_http_conn *c)
{
    if (!c->held) return;
    c->held = false;
    if (c->hprev) c->hprev->hnext = c->hnext;
    else c->srv->held = c->hnext;
    if (c->hnext) c->hnext->hprev = c->hprev;
    c->hprev = c->hnext = NULL;
}

static void flush_held(struct bt_http_server *s)
{
    while (s->held) conn_flush(s->held); /* conn_flush unholds */
}

static void on_flush_check(uv_check_t *h)
{
    struct bt_http_server *s = h->data;
    flush_held(s);
    uv_check_stop(h);
}

/* Like conn_send, but the bytes may wait for the next conn_send or the check
 * phase. Only when nothing else is queued: held bytes always go first. */
static enum bt_err conn_hold(struct bt_http_conn *c, uv_buf_t *iov, unsigned n)
{
    struct bt_http_server *s = c->srv;
    if (c->state == CS_CLOSED || c->failed) return BT_ECLOSED;
    size_t total = 0;
    for (unsigned i = 0; i < n; i++) total += iov[i].len;
    if (c->writing || c->out.len || c->in_process || s->listener_closing ||
        bt_buf_reserve(&c->out, total))
        return conn_send(c, iov, n);
    for (unsigned i = 0; i < n; i++) bt_buf_append(&c->out, iov[i].base, iov[i].len);
    c->held = true;
    c->hprev = NULL;
    c->hnext = s->held;
    if (s->held) s->held->hprev = c;
    s->held = c;
    if (!uv_is_active((uv_handle_t *)&s->flush_check))
        uv_check_start(&s->flush_check, on_flush_check);
    return BT_OK;
}

/* Queues iovecs for the client. Tries the socket first; whatever it does not
 * take is copied into `out`, so callers' bytes are free again on return. While
 * pipelined requests are being answered in one pass, responses are collected
 * and flushed together at the end of the pass. */
static enum bt_err conn_send(struct bt_http_conn *c, uv_buf_t *iov, unsigned n)
{
    if (c->state == CS_CLOSED || c->failed) return BT_ECLOSED;
    size_t total = 0;
    for (unsigned i = 0; i < n; i++) total += iov[i].len;
    if (!total) return BT_OK;
    size_t done = 0;
    bool tried = false;
    bool cork = c->in_process && c->rparsed < c->rlen && c->out.len + total <= OUT_HIGH_WATER;
    bool held = c->held; /* `out` holds bytes that go first, in the same write */
    conn_unhold(c);
    if (!c->writing && (!c->out.len || held) && !cork && n < SEND_IOV_MAX) {
        uv_buf_t v[SEND_IOV_MAX];
        size_t pre = c->out.len;
        unsigned k = 0;
        if (pre) v[k++] = uv_buf_init(c->out.p, (unsigned)pre);
        memcpy(v + k, iov, n * sizeof(*iov));
        int r = uv_try_write((uv_stream_t *)&c->tcp, v, k + n);
        if (r < 0 && r != UV_EAGAIN) {
            c->out.len = 0;
            conn_fail_async(c);
            return BT_ECLOSED;
        }
        done = r > 0 ? (size_t)r : 0;
        c->written_total += done;
        if (done == pre + total) {
            c->out.len = 0;
            return BT_OK;
        }
        if (done >= pre) {
            done -= pre;
            c->out.len = 0;
        } else { /* part of the held bytes went: keep the rest first */
            memmove(c->out.p, c->out.p + done, pre - done);
            c->out.len = pre - done;
            done = 0;
        }
        tried = true;
    }
    enum bt_err err = bt_buf_reserve(&c->out, total - done);
    if (err) {
        conn_fail_async(c); /* part of a message went out: the stream is broken */
        return err;
    }
    for (unsigned i = 0; i < n; i++) {
        size_t len = iov[i].len;
        if (done >= len) {
            done -= len;
            continue;
        }
        bt_buf_append(&c->out, iov[i].base + done, len - done);
        done = 0;
    }
    if (!cork && !c->writing) {
        if (tried) conn_start_write(c, 0); /* the socket is full: no second try */
        else conn_flush(c);
    }
    return BT_OK;
}

static void conn_shutdown_cb(uv_shutdown_t *r, int status);

static void conn_shutdown(struct bt_http_conn *c)
{
    if (c->shutdown_started || c->state == CS_CLOSED) return;
    c->sreq.data = c;
    if (uv_shutdown(&c->sreq, (uv_stream_t *)&c->tcp, conn_shutdown_cb)) {
        conn_close(c);
        return;
    }
    c->shutdown_started = true;
}

static void conn_shutdown_cb(uv_shutdown_t *r, int status)
{
    struct bt_http_conn *c = r->data;
    if (c->state == CS_CLOSED) return;
    if (status < 0 || c->peer_eof) {
        conn_close(c);
        return;
    }
    /* Read and drop what the client still sends so our last response is not
     * destroyed by an RST, until it closes too or LINGER_MS pass. */
    c->state = CS_LINGER;
    conn_arm(c, after_ms(c, LINGER_MS));
    conn_read_start(c);
}

static void on_write(uv_write_t *w, int status)
{
    struct bt_http_conn *c = w->data;
    c->writing = false;
    if (c->state == CS_CLOSED) {
        c->wout.len = 0;
        return;
    }
    if (status < 0) {
        c->wout.len = 0;
        c->failed = true;
        conn_close(c);
        req_abort(c);
        return;
    }
    c->written_total += c->wout.len - c->wout_off;
    c->wout.len = 0;
    c->wout_off = 0;
    if (c->wout.cap > OUT_HIGH_WATER) bt_buf_free(&c->wout);
    if (c->out.len) {
        conn_flush(c);
        if (c->writing) return;
    }
    if (c->state == CS_CLOSING && !c->out.len) {
        conn_shutdown(c);
        return;
    }
    if (c->state == CS_IDLE && c->rparsed < c->rlen && !c->in_process) conn_process(c);
}

/* ---- response heads ---- */

static enum bt_err build_head(struct bt_http_conn *c, struct bt_buf *h, int status,
                              const struct bt_http_header *headers, size_t nheaders,
                              struct bt_str ctype, bool chunked, bool has_length,
                              uint64_t length, bool close)
{
    struct bt_http_server *s = c->srv;
    if (status < 100 || status > 999) return BT_EINVAL;
    bt_buf_reset(h);
    enum bt_err err = bt_buf_reserve(h, 256);
    if (err) return err;
    char code[3] = {(char)('0' + status / 100), (char)('0' + status / 10 % 10),
                    (char)('0' + status % 10)};
    bt_buf_append(h, "HTTP/1.1 ", 9);
    bt_buf_append(h, code, 3);
    bt_buf_append(h, " ", 1);
    bt_buf_append_c(h, bt_http_status_text(status));
    bt_buf_append(h, "\r\nDate: ", 8);
    bt_buf_append(h, server_date(s), 29);
    bt_buf_append(h, "\r\n", 2);
    if (ctype.len) {
        bt_buf_append(h, "Content-Type: ", 14);
        bt_buf_append_str(h, ctype);
        bt_buf_append(h, "\r\n", 2);
    }
    if (chunked) {
        bt_buf_append_c(h, "Transfer-Encoding: chunked\r\n");
    } else if (has_length) {
        bt_buf_append(h, "Content-Length: ", 16);
        bt_buf_append_u64(h, length);
        bt_buf_append(h, "\r\n", 2);
    }
    if (close) bt_buf_append_c(h, "Connection: close\r\n");
    else if (c->req.http_minor == 0) bt_buf_append_c(h, "Connection: keep-alive\r\n");
    bt_buf_append(h, "x-request-id: ", 14);
    bt_buf_append_c(h, c->req.id);
    bt_buf_append(h, "\r\n", 2);
    for (size_t i = 0; i < nheaders; i++) {
        bt_buf_append_str(h, headers[i].name);
        bt_buf_append(h, ": ", 2);
        bt_buf_append_str(h, headers[i].value);
        bt_buf_append(h, "\r\n", 2);
    }
    return bt_buf_append(h, "\r\n", 2);
}

static void conn_send_error(struct bt_http_conn *c, int status, const char *msg)
{
    struct bt_http_server *s = c->srv;
    if (c->state >= CS_CLOSING || c->state == CS_ACTIVE) return;
    struct bt_str path = BT_STR_NULL;
    if (c->url_len && c->rb) {
        path = (struct bt_str){c->rb + c->msg_start + c->url_off, c->url_len};
        long q = bt_str_index(path, '?');
        if (q >= 0) path.len = (size_t)q;
    }
    bt_buf_reset(&s->ebuf);
    const char *ctype = s->opts.format_error(&s->ebuf, path, status, msg);
    if (!c->req.id[0]) gen_id(s, c->req.id);
    if (!build_head(c, &s->hbuf, status, s->opts.error_headers, s->opts.nerror_headers,
                    bt_str_c(ctype), false, true, s->ebuf.len, true)) {
        uv_buf_t iov[2] = {uv_buf_init(s->hbuf.p, (unsigned)s->hbuf.len),
                           uv_buf_init(s->ebuf.p, (unsigned)s->ebuf.len)};
        conn_send(c, iov, 2);
    }
    conn_closing(c); /* also stops the parser: only IDLE/HEAD/BODY are parsed */
}

/* ---- connection lifecycle ---- */

static void conn_free(struct bt_http_conn *c)
{
    struct bt_http_server *s = c->srv;
    if (c->prev) c->prev->next = c->next;
    else s->conns = c->next;
    if (c->next) c->next->prev = c->prev;
    s->nconns--;
    if (c->counted) atomic_fetch_sub(s->count, 1);
    conn_unhold(c);
    conn_release_rb(c);
    conn_release_arena(c);
    free(c->hdrs);
    bt_buf_free(&c->out);
    bt_buf_free(&c->wout);
    free(c);
    server_maybe_finish(s);
}

static void on_conn_handle_closed(uv_handle_t *h)
{
    struct bt_http_conn *c = h->data;
    if (--c->handles == 0 && !c->req_active) conn_free(c);
}

static void conn_close(struct bt_http_conn *c)
{
    if (c->state == CS_CLOSED) return;
    conn_unhold(c);
    c->state = CS_CLOSED;
    c->read_on = false;
    uv_close((uv_handle_t *)&c->timer, on_conn_handle_closed);
    uv_close((uv_handle_t *)&c->tcp, on_conn_handle_closed);
}

static void conn_reset(struct bt_http_conn *c)
{
    if (c->state == CS_CLOSED) return;
    conn_unhold(c);
    c->state = CS_CLOSED;
    c->read_on = false;
    uv_close((uv_handle_t *)&c->timer, on_conn_handle_closed);
    if (c->shutdown_started || uv_tcp_close_reset(&c->tcp, on_conn_handle_closed) != 0)
        uv_close((uv_handle_t *)&c->tcp, on_conn_handle_closed);
}

/* Enters CS_CLOSING: the last response is queued; flush it, then FIN. */
static void conn_closing(struct bt_http_conn *c)
{
    if (c->state >= CS_CLOSING) return;
    c->state = CS_CLOSING;
    c->written_mark = conn_written(c);
    conn_arm(c, after_ms(c, c->srv->opts.idle_timeout_ms));
    if (!c->in_process) conn_flush(c);
    if (c->state != CS_CLOSING) return;
    if (!c->writing && !c->out.len) conn_shutdown(c);
    conn_read_start(c);
}

/* The client is gone (or the server closes) while the handler owns a request:
 * tell the handler once, then free the request. Without an abort callback the
 * request stays allocated (the connection is already closed) until the handler
 * finishes it, which then only frees it. */
static void req_abort(struct bt_http_conn *c)
{
    if (!c->req_active || !c->abort_cb) return;
    bt_http_abort_cb cb = c->abort_cb;
    c->abort_cb = NULL;
    cb(&c->req, c->abort_ud);
    if (c->req_active) {
        c->req_active = false;
        conn_release_arena(c);
    }
}

/* Turns the parsed message into a bt_http_req and calls the handler. */
static void conn_dispatch(struct bt_http_conn *c)
{
    struct bt_http_server *s = c->srv;
    struct bt_http_req *r = &c->req;
    conn_take_arena(c);
    const char *base = c->rb + c->msg_start;
    struct bt_http_header *hs = NULL;
    if (c->nhdrs) {
        hs = bt_arena_alloc(&c->arena, c->nhdrs * sizeof(*hs));
        if (!hs) {
            conn_release_arena(c);
            conn_send_error(c, 503, "out of memory");
            return;
        }
        for (uint32_t i = 0; i < c->nhdrs; i++) {
            hs[i].name = (struct bt_str){base + c->hdrs[i].name, c->hdrs[i].name_len};
            hs[i].value = hdr_value(c, &c->hdrs[i]);
        }
    }
    r->conn = c;
    r->arena = &c->arena;
    r->method = bt_str_c(llhttp_method_name((llhttp_method_t)c->parser.method));
    struct bt_str url = {base + c->url_off, c->url_len};
    long q = bt_str_index(url, '?');
    if (q >= 0) {
        r->path = (struct bt_str){url.p, (size_t)q};
        r->query = (struct bt_str){url.p + q + 1, url.len - (size_t)q - 1};
    } else {
        r->path = url;
        r->query = (struct bt_str){url.p + url.len, 0};
    }
    r->headers = hs;
    r->nheaders = c->nhdrs;
    r->body = c->body_seen ? (struct bt_str){base + c->body_off, c->body_len}
                           : (struct bt_str){"", 0};
    r->http_minor = c->parser.http_minor;
    r->remote = bt_str_c(c->remote);
    r->ud = NULL;
    r->caller = NULL; /* the struct is reused by the connection's next request */
    r->on_finish = NULL;
    r->on_finish_ud = NULL;
    c->state = CS_ACTIVE;
    c->req_active = true;
    c->resp_started = c->resp_chunked = c->resp_no_body = c->resp_close = false;
    c->abort_cb = NULL;
    c->abort_ud = NULL;
    c->deadline = 0;
    s->opts.handler(r, s->opts.handler_ud);
}

/* Feeds buffered bytes to llhttp, one message at a time, dispatching each. Not
 * re-entrant: a response finished inside a handler only changes state and the
 * loop here carries on with the next pipelined request. */
static void conn_process(struct bt_http_conn *c)
{
    struct bt_http_server *s = c->srv;
    if (c->in_process) return;
    c->in_process = true;
    while (c->rparsed < c->rlen) {
        if (c->state == CS_IDLE) {
            if (conn_pending(c) > OUT_HIGH_WATER) break;
            c->msg_start = c->rparsed;
        } else if (c->state != CS_HEAD && c->state != CS_BODY) {
            break;
        }
        const char *p = c->rb + c->rparsed;
        llhttp_errno_t e = llhttp_execute(&c->parser, p, c->rlen - c->rparsed);
        if (e == HPE_OK) {
            c->rparsed = c->rlen;
            /* the framing behind the de-chunked body is dead: reuse its room */
            if (c->state == CS_BODY && c->chunked && c->body_seen)
                c->rlen = c->rparsed = c->msg_start + c->body_off + c->body_len;
            break;
        }
        if (e == HPE_PAUSED) {
            c->rparsed = (size_t)(llhttp_get_error_pos(&c->parser) - c->rb);
            llhttp_resume(&c->parser);
            conn_dispatch(c);
            continue;
        }
        if (c->fail_status) {
            conn_send_error(c, c->fail_status, c->fail_msg);
        } else {
            char msg[160];
            snprintf(msg, sizeof(msg), "malformed HTTP request: %s",
                     llhttp_get_error_reason(&c->parser));
            conn_send_error(c, 400, msg);
        }
        break;
    }
    if (c->state == CS_HEAD && c->rlen - c->msg_start > s->opts.max_header_bytes)
        conn_send_error(c, 431, "request header fields too large");
    if (c->state == CS_IDLE && c->rparsed == c->rlen) {
        c->rlen = c->rparsed = c->msg_start = 0;
        conn_release_rb(c); /* idle keep-alive connections hold no buffer */
    }
    if (c->peer_eof) {
        if (c->state == CS_HEAD || c->state == CS_BODY ||
            (c->state == CS_IDLE && c->rparsed == c->rlen))
            conn_closing(c); /* flush earlier answers; an unfinished request gets none */
    }
    switch (c->state) {
    case CS_HEAD: conn_arm(c, c->head_deadline); break;
    case CS_BODY: {
        /* Silence between body bytes is bounded by body_timeout, and the whole
         * request by header_timeout + body_timeout from its first byte, so a body
         * trickled a byte at a time cannot hold a connection forever. */
        uint64_t idle = after_ms(c, s->opts.body_timeout_ms);
        uint64_t total = c->head_deadline + s->opts.body_timeout_ms;
        conn_arm(c, idle < total ? idle : total);
        break;
    }
    default: break;
    }
    c->in_process = false;
    if (c->state == CS_CLOSED) return;
    conn_flush(c);
    if (c->state == CS_CLOSING && !c->writing && !c->out.len) conn_shutdown(c);
    if (c->state != CS_CLOSED && !c->read_on) conn_read_start(c);
}

/* The response is finished (or abandoned): free request memory and move on. */
static void req_done(struct bt_http_conn *c, bool close)
{
    c->req_active = false;
    c->abort_cb = NULL;
    conn_release_arena(c);
    if (c->state == CS_CLOSED) {
        if (!c->handles) conn_free(c);
        return;
    }
    if (c->failed) {
        conn_close(c);
        return;
    }
    if (close) {
        c->state = CS_IDLE;
        conn_closing(c);
        return;
    }
    c->state = CS_IDLE;
    c->msg_start = c->rparsed;
    c->written_mark = conn_written(c);
    conn_arm(c, after_ms(c, c->srv->opts.idle_timeout_ms));
    if (!c->in_process) conn_process(c);
}

static void conn_timeout(struct bt_http_conn *c)
{
    switch (c->state) {
    case CS_IDLE:
    case CS_CLOSING:
        /* Still writing to a slow reader that makes progress: give it another period. */
        if (conn_pending(c) && conn_written(c) != c->written_mark) {
            c->written_mark = conn_written(c);
            conn_arm(c, after_ms(c, c->srv->opts.idle_timeout_ms));
            return;
        }
        conn_close(c);
        return;
    case CS_HEAD:
    case CS_BODY: conn_send_error(c, 408, "request timed out"); return;
    case CS_LINGER: conn_close(c); return;
    default: return;
    }
}

static void on_timer(uv_timer_t *t)
{
    struct bt_http_conn *c = t->data;
    c->timer_on = false;
    if (c->state == CS_CLOSED) return;
    if (c->failed) {
        conn_close(c);
        req_abort(c);
        return;
    }
    if (!c->deadline) return;
    uint64_t now = uv_now(c->srv->loop);
    if (now < c->deadline) {
        conn_arm(c, c->deadline);
        return;
    }
    c->deadline = 0;
    conn_timeout(c);
}

static void on_connection(uv_stream_t *ls, int status)
{
    struct bt_http_server *s = ls->data;
    if (status < 0) {
        bt_warn("http: accept: %s", uv_strerror(status));
        return;
    }
    struct bt_http_conn *c = calloc(1, sizeof(*c));
    if (!c) {
        /* accept and drop so the listener does not spin on the pending socket */
        int lfd = -1;
        if (uv_fileno((uv_handle_t *)ls, &lfd) == 0) {
            int cfd = accept(lfd, NULL, NULL);
            if (cfd >= 0) close(cfd);
        }
        return;
    }
    c->srv = s;
    uv_tcp_init(s->loop, &c->tcp);
    uv_timer_init(s->loop, &c->timer);
    c->tcp.data = c;
    c->timer.data = c;
    c->handles = 2;
    c->state = CS_IDLE;
    bt_buf_init(&c->out, OUT_MAX);
    bt_buf_init(&c->wout, OUT_MAX);
    c->next = s->conns;
    if (s->conns) s->conns->prev = c;
    s->conns = c;
    s->nconns++;
    s->accepted++;
    if (uv_accept(ls, (uv_stream_t *)&c->tcp)) {
        conn_close(c);
        return;
    }
    unsigned n = atomic_fetch_add(s->count, 1) + 1;
    c->counted = true;
    uv_tcp_nodelay(&c->tcp, 1);
    struct sockaddr_storage ss;
    int len = sizeof(ss);
    if (uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&ss, &len) == 0) {
        if (ss.ss_family == AF_INET6)
            uv_ip6_name((struct sockaddr_in6 *)&ss, c->remote, sizeof(c->remote));
        else
            uv_ip4_name((struct sockaddr_in *)&ss, c->remote, sizeof(c->remote));
    }
    llhttp_init(&c->parser, HTTP_REQUEST, &s->settings);
    /* Lenient flags stay off (llhttp_init clears them): CL+TE, duplicate
     * Content-Length and bad chunk framing are all rejected with 400. */
    c->parser.data = c;
    if (s->opts.max_connections && n > s->opts.max_connections) {
        conn_send_error(c, 503, "too many connections");
        return;
    }
    /* the first request must start within the header timeout */
    conn_arm(c, after_ms(c, s->opts.header_timeout_ms));
    conn_read_start(c);
}

/* ---- server ---- */

struct bt_http_server *bt_http_server_new(uv_loop_t *loop, const struct bt_http_opts *opts)
{
    if (!loop || !opts || !opts->handler) return NULL;
    struct bt_http_server *s = calloc(1, sizeof(*s));
    if (!s) return NULL;
    s->loop = loop;
    s->opts = *opts;
    if (!s->opts.max_header_bytes) s->opts.max_header_bytes = DEFAULT_HEADER_BYTES;
    if (s->opts.max_header_bytes > (1u << 30)) s->opts.max_header_bytes = 1u << 30;
    if (!s->opts.max_body_bytes) s->opts.max_body_bytes = DEFAULT_BODY_BYTES;
    if (!s->opts.header_timeout_ms) s->opts.header_timeout_ms = DEFAULT_HEADER_TIMEOUT_MS;
    if (!s->opts.idle_timeout_ms) s->opts.idle_timeout_ms = DEFAULT_IDLE_TIMEOUT_MS;
    if (!s->opts.body_timeout_ms) s->opts.body_timeout_ms = DEFAULT_BODY_TIMEOUT_MS;
    if (!s->opts.format_error) s->opts.format_error = default_format_error;
    atomic_init(&s->own_count, 0);
    s->count = opts->conn_count ? opts->conn_count : &s->own_count;
    s->rb_limit = s->opts.max_header_bytes + s->opts.max_body_bytes + 4 * MIN_READ;
    s->arena_max = s->opts.max_body_bytes * 4 + (16u << 20);
    s->date_sec = -1;
    uint64_t seed[2] = {0, 0};
    if (getrandom(seed, sizeof(seed), GRND_NONBLOCK) != (ssize_t)sizeof(seed)) {
        seed[0] = bt_now_ns() ^ ((uint64_t)getpid() << 32) ^ (uint64_t)(uintptr_t)s;
        seed[1] = seed[0] * 0x9e3779b97f4a7c15u;
    }
    s->id_hi = (uint32_t)seed[0];
    s->id_next = seed[1];
    bt_buf_init(&s->hbuf, HEAD_OUT_MAX);
    bt_buf_init(&s->ebuf, 64 * 1024);
    llhttp_settings_init(&s->settings);
    s->settings.on_message_begin = cb_message_begin;
    s->settings.on_url = cb_url;
    s->settings.on_header_field = cb_header_field;
    s->settings.on_header_value = cb_header_value;
    s->settings.on_header_field_complete = cb_header_done;
    s->settings.on_header_value_complete = cb_header_done;
    s->settings.on_headers_complete = cb_headers_complete;
    s->settings.on_body = cb_body;
    s->settings.on_message_complete = cb_message_complete;
    if (uv_tcp_init(loop, &s->listener)) {
        free(s);
        return NULL;
    }
    s->listener.data = s;
    uv_check_init(loop, &s->flush_check);
    s->flush_check.data = s;
    return s;
}

enum bt_err bt_http_server_listen(struct bt_http_server *s, const char *host, uint16_t port,
                                  bool reuseport)
{
    if (!s || !host || s->listening || s->listener_closing) return BT_EINVAL;
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof(ss));
    int family;
    if (uv_ip4_addr(host, port, (struct sockaddr_in *)&ss) == 0) family = AF_INET;
    else if (uv_ip6_addr(host, port, (struct sockaddr_in6 *)&ss) == 0) family = AF_INET6;
    else {
        bt_error("http: listen: '%s' is not an IPv4 or IPv6 address", host);
        return BT_EIO;
    }
    int fd = socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        bt_error("http: listen: socket: %s", strerror(errno));
        return BT_EIO;
    }
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (reuseport && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one))) {
        bt_error("http: listen: SO_REUSEPORT: %s", strerror(errno));
        close(fd);
        return BT_EIO;
    }
    int r = uv_tcp_open(&s->listener, fd);
    if (r) {
        close(fd);
        bt_error("http: listen: %s", uv_strerror(r));
        return BT_EIO;
    }
    r = uv_tcp_bind(&s->listener, (struct sockaddr *)&ss, 0);
    if (!r) r = uv_listen((uv_stream_t *)&s->listener, 4096, on_connection);
    if (r) {
        bt_error("http: listen on %s port %u: %s", host, (unsigned)port, uv_strerror(r));
        return BT_EIO;
    }
    struct sockaddr_storage bound;
    int blen = sizeof(bound);
    if (uv_tcp_getsockname(&s->listener, (struct sockaddr *)&bound, &blen) == 0)
        s->port = ntohs(bound.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&bound)->sin6_port
                                                     : ((struct sockaddr_in *)&bound)->sin_port);
    s->listening = true;
    return BT_OK;
}

uint16_t bt_http_server_port(const struct bt_http_server *s)
{
    return s ? s->port : 0;
}

uint64_t bt_http_server_accepted(const struct bt_http_server *s)
{
    return s ? s->accepted : 0;
}

size_t bt_http_server_connections(const struct bt_http_server *s)
{
    return s ? s->nconns : 0;
}

static void on_listener_closed(uv_handle_t *h)
{
    struct bt_http_server *s = h->data;
    if (--s->handles_closing) return;
    s->listener_closed = true;
    server_maybe_finish(s);
}

/* Closes the listener and the flush check (nothing is held from now on). */
static void server_close_listener(struct bt_http_server *s)
{
    if (s->listener_closing) return;
    s->listener_closing = true;
    flush_held(s);
    s->handles_closing = 2;
    uv_close((uv_handle_t *)&s->flush_check, on_listener_closed);
    uv_close((uv_handle_t *)&s->listener, on_listener_closed);
}

static void server_free(struct bt_http_server *s)
{
    for (size_t i = 0; i < s->n_rb_pool; i++) free(s->rb_pool[i]);
    for (size_t i = 0; i < s->n_arena_pool; i++) bt_arena_free(&s->arena_pool[i]);
    bt_buf_free(&s->hbuf);
    bt_buf_free(&s->ebuf);
    free(s);
}

static void server_maybe_finish(struct bt_http_server *s)
{
    if (s->in_finish || s->nconns || !s->listener_closed) return;
    s->in_finish = true;
    if (s->drain_cb) {
        void (*cb)(void *) = s->drain_cb;
        s->drain_cb = NULL;
        cb(s->drain_ud); /* may call bt_http_server_close */
    }
    s->in_finish = false;
    if (s->closing && !s->nconns && s->listener_closed) {
        void (*cb)(void *) = s->close_cb;
        void *ud = s->close_ud;
        server_free(s);
        if (cb) cb(ud);
    }
}

void bt_http_server_drain(struct bt_http_server *s, void (*done)(void *ud), void *ud)
{
    if (!s || s->closing) return;
    s->draining = true;
    s->drain_cb = done;
    s->drain_ud = ud;
    server_close_listener(s);
    for (struct bt_http_conn *c = s->conns; c; c = c->next) {
        if (c->state == CS_IDLE && !c->req_active && c->rparsed == c->rlen) {
            if (conn_pending(c)) conn_closing(c);
            else conn_close(c);
        }
    }
    server_maybe_finish(s);
}

void bt_http_server_close(struct bt_http_server *s, void (*done)(void *ud), void *ud)
{
    if (!s || s->closing) return;
    s->closing = true;
    s->close_cb = done;
    s->close_ud = ud;
    server_close_listener(s);
    for (struct bt_http_conn *c = s->conns; c; c = c->next) {
        conn_close(c);
        req_abort(c);
    }
    server_maybe_finish(s);
}

/* ---- request helpers and responses ---- */

struct bt_str bt_http_header_get(const struct bt_http_req *req, const char *name)
{
    if (!req || !name) return BT_STR_NULL;
    struct bt_str n = bt_str_c(name);
    for (size_t i = 0; i < req->nheaders; i++)
        if (bt_str_caseeq(req->headers[i].name, n)) return req->headers[i].value;
    return BT_STR_NULL;
}

void bt_http_on_abort(struct bt_http_req *req, bt_http_abort_cb cb, void *ud)
{
    if (!req) return;
    req->conn->abort_cb = cb;
    req->conn->abort_ud = ud;
}

size_t bt_http_pending(const struct bt_http_req *req)
{
    return req ? conn_pending(req->conn) : 0;
}

static bool headers_ok(const struct bt_http_header *headers, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!hdr_text_ok(headers[i].name, true) || !hdr_text_ok(headers[i].value, false))
            return false;
    return true;
}

static bool status_has_body(int status)
{
    return !(status < 200 || status == 204 || status == 304);
}

static bool req_is_head(const struct bt_http_req *req)
{
    return req->method.len == 4 && memcmp(req->method.p, "HEAD", 4) == 0;
}

static bool resp_should_close(const struct bt_http_conn *c)
{
    return !c->req.keep_alive || c->srv->draining || c->srv->closing;
}

/* A handler asked for a response that cannot be sent as asked (a header value
 * with CR, LF or NUL, a bad status, a head over its buffer's cap). The request
 * still gets an answer and is finished here, exactly once: a 500 in the
 * caller's error shape without the handler's headers, then close. */
static enum bt_err refuse_response(struct bt_http_conn *c, enum bt_err why)
{
    struct bt_http_server *s = c->srv;
    bt_log(BT_LOG_ERROR, "request %s: the response could not be formed (%s); answering 500",
           c->req.id, bt_strerror(why));
    bt_buf_reset(&s->ebuf);
    const char *ctype =
        s->opts.format_error(&s->ebuf, c->req.path, 500, "baton could not form its response");
    c->resp_started = true;
    if (build_head(c, &s->hbuf, 500, s->opts.error_headers, s->opts.nerror_headers,
                   bt_str_c(ctype), false, true, s->ebuf.len, true) == BT_OK) {
        uv_buf_t iov[2] = {uv_buf_init(s->hbuf.p, (unsigned)s->hbuf.len),
                           uv_buf_init(s->ebuf.p, (unsigned)s->ebuf.len)};
        conn_send(c, iov, req_is_head(&c->req) ? 1 : 2); /* a failure closes below */
    } else {
        conn_reset(c);
    }
    req_done(c, true);
    return why;
}

enum bt_err bt_http_respond(struct bt_http_req *req, int status,
                            const struct bt_http_header *headers, size_t nheaders,
                            struct bt_str content_type, struct bt_str body)
{
    if (!req) return BT_EINVAL;
    struct bt_http_conn *c = req->conn;
    if (!c->req_active || c->resp_started) return BT_EINVAL;
    if (c->state == CS_CLOSED || c->failed) {
        req_done(c, true);
        return BT_ECLOSED;
    }
    if (!headers_ok(headers, nheaders) || !hdr_text_ok(content_type, false) || status < 100 ||
        status > 999)
        return refuse_response(c, BT_EINVAL);
    struct bt_http_server *s = c->srv;
    bool close = resp_should_close(c);
    bool with_body = status_has_body(status);
    enum bt_err err = build_head(c, &s->hbuf, status, headers, nheaders, content_type, false,
                                 with_body, body.len, close);
    if (err) return refuse_response(c, err);
    c->resp_started = true;
    uv_buf_t iov[2] = {uv_buf_init(s->hbuf.p, (unsigned)s->hbuf.len),
                       uv_buf_init((char *)body.p, (unsigned)body.len)};
    unsigned n = (with_body && !req_is_head(req) && body.len) ? 2 : 1;
    err = conn_send(c, iov, n);
    req_done(c, close || err);
    return err;
}

enum bt_err bt_http_stream_begin(struct bt_http_req *req, int status,
                                 const struct bt_http_header *headers, size_t nheaders,
                                 struct bt_str content_type)
{
    if (!req) return BT_EINVAL;
    struct bt_http_conn *c = req->conn;
    if (!c->req_active || c->resp_started) return BT_EINVAL;
    if (c->state == CS_CLOSED || c->failed) {
        req_done(c, true);
        return BT_ECLOSED;
    }
    if (!headers_ok(headers, nheaders) || !hdr_text_ok(content_type, false) || status < 100 ||
        status > 999)
        return refuse_response(c, BT_EINVAL);
    c->resp_no_body = req_is_head(req) || !status_has_body(status);
    c->resp_chunked = req->http_minor >= 1 && !c->resp_no_body;
    /* HTTP/1.0 has no chunked coding: the body ends when we close. */
    c->resp_close = resp_should_close(c) || (req->http_minor == 0 && !c->resp_no_body);
    struct bt_http_server *s = c->srv;
    enum bt_err err = build_head(c, &s->hbuf, status, headers, nheaders, content_type,
                                 c->resp_chunked, false, 0, c->resp_close);
    if (err) return refuse_response(c, err);
    c->resp_started = true;
    uv_buf_t b = uv_buf_init(s->hbuf.p, (unsigned)s->hbuf.len);
    err = conn_hold(c, &b, 1);
    if (err) req_done(c, true);
    return err;
}

enum bt_err bt_http_stream_write(struct bt_http_req *req, struct bt_str data)
{
    return bt_http_stream_writev(req, &data, 1);
}

/* Sends `parts` as one chunk (as they are without chunked coding) and, when
 * `last`, the end of the body in the same write. */
static enum bt_err stream_send(struct bt_http_conn *c, const struct bt_str *parts, size_t n,
                               bool last)
{
    uv_buf_t iov[BT_HTTP_MAX_PARTS + 2];
    size_t total = 0;
    unsigned k = 1;
    for (size_t i = 0; i < n; i++) {
        if (!parts[i].len) continue;
        iov[k++] = uv_buf_init((char *)parts[i].p, (unsigned)parts[i].len);
        total += parts[i].len;
    }
    if (c->resp_no_body) return BT_OK;
    if (!c->resp_chunked) return total ? conn_send(c, iov + 1, k - 1) : BT_OK;
    if (!total) {
        if (!last) return BT_OK;
        uv_buf_t b = uv_buf_init("0\r\n\r\n", 5);
        return conn_send(c, &b, 1);
    }
    char size[20];
    size_t i = sizeof(size);
    size[--i] = '\n';
    size[--i] = '\r';
    size_t v = total;
    do {
        size[--i] = hex_digits[v & 15];
        v >>= 4;
    } while (v);
    iov[0] = uv_buf_init(size + i, (unsigned)(sizeof(size) - i));
    iov[k++] = last ? uv_buf_init("\r\n0\r\n\r\n", 7) : uv_buf_init("\r\n", 2);
    return conn_send(c, iov, k);
}

enum bt_err bt_http_stream_writev(struct bt_http_req *req, const struct bt_str *parts, size_t n)
{
    if (!req || n > BT_HTTP_MAX_PARTS) return BT_EINVAL;
    struct bt_http_conn *c = req->conn;
    if (!c->req_active || !c->resp_started) return BT_EINVAL;
    if (c->state == CS_CLOSED || c->failed) return BT_ECLOSED;
    return stream_send(c, parts, n, false);
}

void bt_http_stream_end_with(struct bt_http_req *req, const struct bt_str *parts, size_t n)
{
    if (!req) return;
    struct bt_http_conn *c = req->conn;
    if (!c->req_active) return;
    if (c->resp_started && c->state != CS_CLOSED && !c->failed && n <= BT_HTTP_MAX_PARTS)
        stream_send(c, parts, n, true);
    req_done(c, c->resp_close || !c->resp_started);
}

void bt_http_stream_end(struct bt_http_req *req)
{
    bt_http_stream_end_with(req, NULL, 0);
}

void bt_http_reset(struct bt_http_req *req)
{
    if (!req) return;
    struct bt_http_conn *c = req->conn;
    if (!c->req_active) return;
    conn_reset(c);
    req_done(c, true);
}
