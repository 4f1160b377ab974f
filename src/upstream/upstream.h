/* Our HTTP/1.1 client on a worker's libuv loop: keep-alive pools per origin,
 * llhttp in response mode, bounded buffers, and timeouts for connect, first byte,
 * between chunks (idle) and in total. No redirect is followed (a 3xx is handed to
 * the caller like any status). A pooled connection the peer closed is detected;
 * the request is retried on a fresh connection only when none of it was sent.
 *
 * One struct bt_upstream per worker; not thread-safe. */
#ifndef BT_UPSTREAM_UPSTREAM_H
#define BT_UPSTREAM_UPSTREAM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "core/time.h"
#include "core/err.h"
#include "core/str.h"
#include "http/server.h" /* struct bt_http_header */

struct bt_upstream; /* opaque: per-worker pools */
struct bt_up_call;  /* opaque: one request in flight */

struct bt_upstream_opts {
    uint32_t max_conns_per_origin; /* default 256 */
    uint32_t max_idle_per_origin;  /* default 256 */
    uint64_t idle_reap_ms;         /* idle pooled connections closed after; default 30s */
    uint32_t
        max_queued_per_origin; /* requests waiting for a connection before BT_EBUSY; default 1024 */
};

/* Where to send a request, and how to reach it. Strings are borrowed for the
 * duration of bt_upstream_request only (the pool copies what it keeps). A
 * zeroed struct apart from tls/host/port means: system CA store, verification
 * on, no proxy. Every field is part of the pool key, so a connection set up
 * under one provider's TLS settings or proxy route never serves another's. */
struct bt_up_origin {
    bool tls;         /* https (issue: TLS) */
    const char *host; /* name or address literal */
    uint16_t port;
    const char *ca_file;    /* PEM file of extra trusted CAs (beside the system store); NULL none */
    bool tls_no_verify;     /* verification off (config `tls: {verify: false}`) */
    const char *proxy_host; /* HTTP proxy (name or literal); NULL = direct */
    uint16_t proxy_port;
    const char *proxy_auth; /* Proxy-Authorization value ("Basic ..."); NULL none */
};

#define BT_UP_BODY_PARTS 8

struct bt_up_request {
    struct bt_str method;                 /* "POST" */
    struct bt_str target;                 /* request target, e.g. "/v1/chat/completions" */
    const struct bt_http_header *headers; /* extra headers (Authorization, Content-Type...) */
    size_t nheaders;                      /* Host, Content-Length, Connection are added */
    struct bt_str body;                   /* borrowed until on_done or cancel */
    /* Or, when nbody_parts > 0, the body is these slices one after the other
     * (at most BT_UP_BODY_PARTS; the slices' bytes are borrowed like `body`,
     * the array only for the call): a spliced body goes out without a copy. */
    const struct bt_str *body_parts;
    size_t nbody_parts;
    struct bt_timeouts timeouts;          /* 0 = none for that phase */
    size_t max_head_bytes;                /* response head cap, default 64 KiB */
};

/* Callbacks, each invoked on the loop thread. After on_done nothing else is
 * called; after bt_upstream_cancel nothing at all is called. */
struct bt_up_callbacks {
    /* Response head arrived. Header slices are valid during the call only. */
    void (*on_head)(void *ud, int status, const struct bt_http_header *headers, size_t n);
    /* Body bytes, de-chunked, as they arrive. Valid during the call only, or,
     * when on_flush is set, until the next on_flush or on_done: a relay can
     * gather the pieces of one read and forward them in one write. */
    void (*on_data)(void *ud, const char *p, size_t n);
    /* Exactly once: BT_OK when the whole response arrived; otherwise the reason
     * (BT_ETIMEDOUT with `detail` naming the phase "connect"/"first_byte"/"idle"/
     * "total", BT_ECONNREFUSED, BT_ECONNRESET, BT_ECLOSED, BT_EDNS, BT_EPROTO,
     * BT_ETLS, BT_ETOOBIG...). `detail` is a static or call-scoped string. */
    void (*on_done)(void *ud, enum bt_err err, const char *detail);
    /* Optional: the on_data calls of one read are over (their bytes go away
     * after this returns). Not called when on_done ends the read. */
    void (*on_flush)(void *ud);
};

struct bt_upstream *bt_upstream_new(uv_loop_t *loop, const struct bt_upstream_opts *opts);
/* Closes all pooled connections and frees the pools once their handles closed.
 * Calls in flight are cancelled (no callbacks). */
void bt_upstream_free(struct bt_upstream *u);

/* Starts a request. Returns NULL only on ENOMEM (nothing will be called back);
 * every other failure is reported through on_done, never synchronously from
 * inside this function (it is deferred to the loop). */
struct bt_up_call *bt_upstream_request(struct bt_upstream *u, const struct bt_up_origin *origin,
                                       const struct bt_up_request *req,
                                       const struct bt_up_callbacks *cb, void *ud);
/* Cancels a call: the connection is closed (not returned to the pool if the
 * response was incomplete) and no callback runs afterwards. Safe to call from
 * inside a callback of the same call. */
void bt_upstream_cancel(struct bt_up_call *call);

/* Counters for tests and metrics. */
struct bt_upstream_stats {
    uint64_t conns_opened;   /* TCP connections opened in total */
    uint64_t conns_reused;   /* requests served on a pooled connection */
    uint32_t conns_idle;     /* currently idle in pools */
    uint64_t tls_handshakes; /* TLS handshakes completed */
    uint64_t tls_resumed;    /* ... of which resumed a previous session */
    uint64_t proxy_tunnels;  /* CONNECT tunnels the proxy accepted */
    uint32_t tls_contexts;   /* SSL_CTXs created (one per distinct TLS setting) */
};
void bt_upstream_stats(const struct bt_upstream *u, struct bt_upstream_stats *out);

#endif
