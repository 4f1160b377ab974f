/* HTTP/1.1 server on one libuv loop (llhttp parser). One bt_http_server per
 * worker thread; several may listen on the same address with SO_REUSEPORT.
 *
 * Connections: keep-alive; pipelining (requests queued on a connection are
 * parsed one at a time and answered strictly in order: the parser is paused at
 * each message end and resumed when that response is finished); chunked request
 * bodies; bounded head and body (431 / 413); a header-read timeout (408) and a
 * keep-alive idle timeout; a connection limit shared by all servers of a
 * process (503 then close). Errors the server produces itself go through
 * `opts.format_error` so they come in the caller's API shape. Every response
 * carries `x-request-id` (the request's id). */
#ifndef BT_HTTP_SERVER_H
#define BT_HTTP_SERVER_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "core/arena.h"
#include "core/buf.h"
#include "core/err.h"
#include "core/str.h"

struct bt_http_header {
    struct bt_str name;
    struct bt_str value;
};

struct bt_http_conn; /* opaque */
struct bt_http_server; /* opaque */

/* A parsed request. Owned by the server; valid from the handler call until the
 * response is finished (bt_http_respond / bt_http_stream_end / bt_http_reset)
 * or until the abort callback returns, whichever comes first. */
struct bt_http_req {
    struct bt_http_conn *conn;      /* the connection it came on */
    struct bt_arena *arena;         /* request-scoped memory, freed with the request */
    struct bt_str method;           /* "GET", "POST", ... */
    struct bt_str path;             /* without the query string, e.g. "/v1/models" */
    struct bt_str query;            /* after '?', empty when none */
    struct bt_http_header *headers; /* in arrival order; names as sent */
    size_t nheaders;
    struct bt_str body;             /* whole body, de-chunked (arena or conn buffer) */
    bool keep_alive;                /* what the client asked for (and HTTP version allows) */
    uint8_t http_minor;             /* 0 or 1 */
    uint64_t start_ns;              /* bt_now_ns() when the first byte of the head arrived */
    char id[65];                    /* request id (NUL-terminated): client's x-request-id if it is
                                       1-64 chars of [A-Za-z0-9._-], else 24 generated hex chars */
    struct bt_str remote;           /* peer address text, e.g. "127.0.0.1" */
    void *ud;                       /* free for the handler */
    const char *caller;             /* set by the handler: who sent it (a key id) for the
                                       access log, in the arena or static; NULL unknown */
    void (*on_finish)(void *ud);    /* set by the handler: called once when the request is
                                       over (answered, aborted or its connection gone),
                                       before its arena is released; NULL none */
    void *on_finish_ud;
};

typedef void (*bt_http_handler)(struct bt_http_req *req, void *ud);
/* Called once when the client goes away (or the server must drop the request)
 * before its response finished. The handler must stop all work for `req`
 * (cancel upstream calls, timers) before returning; `req` is freed afterwards. */
typedef void (*bt_http_abort_cb)(struct bt_http_req *req, void *ud);
/* Writes an error body for a server-generated error into `out` and returns the
 * content type: the caller's API shape is the front end's business (the path says
 * which front end). `msg` is human text. */
typedef const char *(*bt_http_error_fmt)(struct bt_buf *out, struct bt_str path, int status,
                                         const char *msg);

/* Zero numeric fields take defaults: 32 KiB head, 16 MiB body, 30 s header and
 * 60 s idle/body timeouts; max_connections 0 = unlimited. */
struct bt_http_opts {
    size_t max_header_bytes;     /* request line + headers; beyond: 431 */
    size_t max_body_bytes;       /* beyond: 413 (checked against Content-Length early) */
    uint64_t header_timeout_ms;  /* whole head must arrive within this: 408 */
    uint64_t idle_timeout_ms;    /* keep-alive connection idle between requests: close */
    uint64_t body_timeout_ms;    /* longest silence while reading a body: 408 */
    uint32_t max_connections;    /* across all servers sharing `conn_count` */
    atomic_uint *conn_count;     /* shared open-connection counter; NULL = private */
    bt_http_handler handler;
    void *handler_ud;
    bt_http_error_fmt format_error; /* NULL = the message as text/plain */
    const struct bt_http_header *error_headers; /* extra headers on server-made errors; borrowed */
    size_t nerror_headers;
};

/* Creates a server on `loop`; the options are copied. NULL on ENOMEM. */
struct bt_http_server *bt_http_server_new(uv_loop_t *loop, const struct bt_http_opts *opts);
/* Binds and listens. host may be an IPv4 or IPv6 literal. With `reuseport`, sets
 * SO_REUSEPORT so each worker has its own listening socket. Returns BT_EIO (and
 * logs why) when the address cannot be used. */
enum bt_err bt_http_server_listen(struct bt_http_server *s, const char *host, uint16_t port,
                                  bool reuseport);
/* Port actually bound (useful with port 0). */
uint16_t bt_http_server_port(const struct bt_http_server *s);
/* Drain: stop accepting, close idle connections, answer in-flight requests with
 * `Connection: close`. `done` runs when the last connection has closed. */
void bt_http_server_drain(struct bt_http_server *s, void (*done)(void *ud), void *ud);
/* Closes everything at once (in-flight requests get their abort callback) and
 * frees the server after all handles are closed; `done` may be NULL. */
void bt_http_server_close(struct bt_http_server *s, void (*done)(void *ud), void *ud);
/* Connections accepted since the server started (for tests and metrics). */
uint64_t bt_http_server_accepted(const struct bt_http_server *s);
/* Number of open connections of this server. */
size_t bt_http_server_connections(const struct bt_http_server *s);

/* ---- request helpers ---- */

/* First header named `name` (case-insensitive); empty slice with p == NULL if absent. */
struct bt_str bt_http_header_get(const struct bt_http_req *req, const char *name);
void bt_http_on_abort(struct bt_http_req *req, bt_http_abort_cb cb, void *ud);

/* ---- responses (exactly one of respond / stream_begin per request) ----
 * `headers` are extra headers; the server adds Content-Length or
 * Transfer-Encoding, Connection, Date and x-request-id itself. Header bytes are
 * copied before return.
 *
 * bt_http_respond always finishes the request, whatever it returns: when the
 * response cannot be sent as asked (a header or content type with CR, LF or NUL,
 * a status outside 100-999, a head too large) the client gets a 500 in the
 * server's error shape and the connection closes, and BT_EINVAL / BT_ETOOBIG
 * says so; BT_ECLOSED means the client was gone. Either way `req` must not be
 * used after the call. bt_http_stream_begin is the same on failure (the request
 * is finished, `req` is gone); on success the stream is open. */
BT_MUST_USE enum bt_err bt_http_respond(struct bt_http_req *req, int status,
                            const struct bt_http_header *headers, size_t nheaders,
                            struct bt_str content_type, struct bt_str body);
/* Starts a streamed response (chunked for HTTP/1.1, close-delimited for 1.0).
 * The head goes out with the first chunk, or when the loop has run the I/O
 * callbacks of its current pass, whichever comes first. */
BT_MUST_USE enum bt_err bt_http_stream_begin(struct bt_http_req *req, int status,
                                 const struct bt_http_header *headers, size_t nheaders,
                                 struct bt_str content_type);
/* Sends bytes as one chunk; copied before return. BT_ECLOSED when the client is
 * gone or its connection failed: the caller stops producing and ends the stream. */
BT_MUST_USE enum bt_err bt_http_stream_write(struct bt_http_req *req, struct bt_str data);
/* Like bt_http_stream_write for the concatenation of n slices (at most
 * BT_HTTP_MAX_PARTS), sent as one chunk: the relay forwards runs of events straight
 * from the upstream's read buffer this way. The slices are borrowed for the call. */
#define BT_HTTP_MAX_PARTS 32
BT_MUST_USE enum bt_err bt_http_stream_writev(struct bt_http_req *req, const struct bt_str *parts, size_t n);
/* Ends the stream; the request is finished and `req` must not be used after. */
void bt_http_stream_end(struct bt_http_req *req);
/* Sends `parts` (at most BT_HTTP_MAX_PARTS, borrowed for the call) as the last
 * chunk and ends the stream, in one write: bt_http_stream_writev followed by
 * bt_http_stream_end, without a separate write for the end of the body. */
void bt_http_stream_end_with(struct bt_http_req *req, const struct bt_str *parts, size_t n);
/* Drops the connection at once (RST when possible). The request is finished. */
void bt_http_reset(struct bt_http_req *req);
/* Bytes queued for the client but not yet written (for flow control). */
size_t bt_http_pending(const struct bt_http_req *req);

/* Status line text for a code ("Not Found"). */
const char *bt_http_status_text(int status);

#endif
