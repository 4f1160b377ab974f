/* The provider layer: one adapter per provider type (the API it speaks on the
 * wire: encode a request for it, its headers, decode its replies, stream events
 * and errors into canonical events and outcome classes), and the transport that
 * carries an attempt (our upstream HTTP client, or the in-process simulator, which
 * renders any adapter's wire). The transport is chosen here, outside the adapters,
 * so every adapter runs against the simulator; nothing outside src/provider/ looks
 * at a provider's type. */
#ifndef BT_PROVIDER_PROVIDER_H
#define BT_PROVIDER_PROVIDER_H

#include <stdbool.h>
#include <uv.h>

#include "canon/chat.h"
#include "canon/event.h"
#include "core/outcome.h"
#include "canon/request.h"
#include "config/config.h"
#include "config/fwd.h"
#include "core/arena.h"
#include "core/buf.h"
#include "http/sse.h"
#include "upstream/upstream.h"

/* A call in flight on either transport. */
struct bt_pcall {
    struct bt_up_call *up;   /* our HTTP client */
    struct bt_sim_call *sim; /* the simulator */
};

/* What one attempt sends a provider beside baton's own headers: the body, as
 * slices sent one after the other, and the client headers it forwards. */
struct bt_pbody {
    /* The target after the provider's base path when the adapter builds it per
     * request (Gemini: the model and the method; Azure: the deployment and
     * api-version); empty: the adapter's path(op). In the arena given to encode. */
    struct bt_str path;
    struct bt_str parts[BT_UP_BODY_PARTS];
    size_t n;
    struct bt_http_header fwd[BT_FWD_MAX]; /* forward_headers picked from the client's */
    size_t nfwd;
    struct bt_chat_error refused; /* encode's BT_EINVAL: why the request cannot be
                                     translated for this provider (a 400) */
};

/* A provider's error reply, decoded: its class and what the client should read.
 * Slices point into the reply or the arena given to decode_error; empty = absent. */
struct bt_perror {
    enum bt_outcome cls;
    struct bt_str message;
    struct bt_str code;
    struct bt_str param;
    struct bt_str type;     /* the provider's own error type */
};

/* What the stream relay does with one event of a provider's stream. */
enum bt_ev_kind {
    BT_EVK_RELAY = 1, /* no data (a comment, a keep-alive): forward as it came */
    BT_EVK_PLAIN,     /* content only, nothing to account: forward as it came */
    BT_EVK_DECODE,    /* may carry usage, a finish reason or an error: decode it */
    BT_EVK_DONE,      /* the wire's clean end marker: forward it, the stream is complete */
    BT_EVK_INVALID,   /* not an event of this wire: the stream is broken */
};

/* One provider type's wire. Every function is pure: no I/O, no state. */
struct bt_adapter {
    const char *name;     /* "openai" */
    enum bt_api wire;     /* the API it speaks (the simulator renders it; the same
                             API on both sides is the fast path) */
    /* The body for request `r` with `model` as the provider's model id, as slices
     * (the client's bytes and new values in `arena`). *added_usage: the adapter
     * asked the provider for usage the client did not ask for, and
     * added_usage_event below recognises the event to drop. A client of another
     * API (r->api != wire) is encoded from r->chat; what the wire cannot express
     * is BT_EINVAL with out->refused filled (the client gets a 400). */
    enum bt_err (*encode)(const struct bt_request *r, struct bt_str model,
                          struct bt_arena *arena, struct bt_pbody *out, bool *added_usage);
    /* The path after the provider's base path for `op` ("/chat/completions"). */
    const char *(*path)(enum bt_op op);
    /* Baton's own headers for an attempt at `p` (content type, accept, the
     * credential) into hs (room for cap); `scratch` holds values it builds.
     * Returns how many, or BT_ETOOBIG through *err. */
    size_t (*headers)(const struct bt_provider *p, bool stream, struct bt_http_header *hs,
                      size_t cap, char *scratch, size_t scratch_cap, enum bt_err *err);
    /* A whole 2xx reply (tokenized) into canonical events. */
    void (*decode_reply)(const struct bt_json_doc *doc, bt_event_cb cb, void *ud);
    /* What to do with a stream event. `decoded_first`: the relay has already seen
     * the first content (only events that can matter need decoding now); `full`:
     * the provider's stream_check is full (validate every event). */
    enum bt_ev_kind (*classify_event)(const struct bt_sse_event *ev, bool decoded_first,
                                      bool full);
    /* One stream event (its data tokenized) into canonical events. */
    void (*decode_event)(const struct bt_json_doc *doc, bt_event_cb cb, void *ud);
    /* True for the usage-only event that exists because encode asked for usage. */
    bool (*added_usage_event)(const struct bt_json_doc *doc);
    /* A non-2xx reply (`body` may be anything, even empty) into *out. */
    void (*decode_error)(int status, struct bt_str body, struct bt_arena *arena,
                         struct bt_perror *out);
    /* Optional: encode with the provider's settings at hand (Anthropic's
     * max_tokens default, Azure's api-version in out->path); the same contract
     * as encode, which bt_provider_encode calls when this is NULL. */
    enum bt_err (*encode_for)(const struct bt_provider *p, const struct bt_request *r,
                              struct bt_str model, struct bt_arena *arena, struct bt_pbody *out,
                              bool *added_usage);
};

/* The adapter for provider `p` (by its type). Never NULL for a loaded config. */
const struct bt_adapter *bt_adapter_for(const struct bt_provider *p);

/* False when `p` cannot be tried at all (its API key is required and not set),
 * with the reason in msg. */
bool bt_provider_ready(const struct bt_provider *p, char *msg, size_t msgcap);

/* Builds what an attempt at `p` sends for request `r`: the adapter's body and the
 * client headers `p` forwards (bt_fwd_pick; none toward the simulator). A value
 * that may not be forwarded is BT_EINVAL here too, though the pipeline answers
 * that with a 400 (bt_provider_check_headers) before any attempt. */
BT_MUST_USE enum bt_err bt_provider_encode(const struct bt_provider *p, const struct bt_request *r,
                                           struct bt_str upstream_model, struct bt_arena *arena,
                                           struct bt_pbody *out, bool *added_usage);

/* The 400 a client gets for headers provider `p` would forward but cannot:
 * bt_fwd_pick's checks (a control character, a value over BT_FWD_VALUE_MAX bytes,
 * more than BT_FWD_MAX lines) over r->headers, without keeping anything. BT_OK,
 * or BT_EINVAL / BT_ETOOBIG with `msg` naming the header. The pipeline runs it
 * for every candidate of the plan, so the answer does not depend on which one
 * would have been tried. */
enum bt_err bt_provider_check_headers(const struct bt_provider *p, const struct bt_request *r,
                                      char *msg, size_t msgcap);

/* Starts the attempt on the transport `p` is reached by. The body's bytes (and
 * forwarded headers) are borrowed until on_done or cancel. Returns BT_ENOMEM /
 * BT_ETOOBIG when nothing could be started (no callback will come). */
BT_MUST_USE enum bt_err bt_provider_start(const struct bt_provider *p, uv_loop_t *loop,
                                          struct bt_upstream *up, enum bt_op op, bool stream,
                                          const struct bt_pbody *body,
                                          const struct bt_up_callbacks *cb, void *ud,
                                          struct bt_pcall *call);
/* Cancels a call started by bt_provider_start; no callback afterwards. */
void bt_provider_cancel(struct bt_pcall *call);

#endif
