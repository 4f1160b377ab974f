/* A front end: one client API (OpenAI's today; Anthropic's next). It decodes a
 * client's request into the canonical request and writes everything the client
 * reads in its API's shapes: error bodies, the error event that ends a stream, and
 * (for requests served by a provider of another API) the stream and reply encoded
 * from canonical events. Nothing else in baton knows a client API's shapes: exec
 * and the HTTP server ask the request's front end. */
#ifndef BT_CANON_FRONTEND_H
#define BT_CANON_FRONTEND_H

#include <stdbool.h>

#include "canon/chat.h"
#include "canon/event.h"
#include "core/outcome.h"
#include "canon/request.h"
#include "canon/worker.h"
#include "core/arena.h"
#include "core/buf.h"
#include "core/err.h"
#include "core/str.h"

/* An error the client gets, in no API's words; the front end chooses its type. */
struct bt_error {
    int status;             /* HTTP status (for an in-stream error, what it would have been) */
    enum bt_outcome cls;    /* what kind of failure (BT_OUTCOME_OK for the client's own
                               mistakes and baton's, which status says enough about) */
    bool upstream;          /* a provider failed (not baton itself, not the client) */
    struct bt_str message;  /* human text, no secret in it */
    const char *code;       /* short machine code ("upstream_timeout"), NULL = none */
    const char *param;      /* the request parameter at fault, NULL = none */
    struct bt_str type;     /* the provider's own error type, relayed as is when the
                               provider speaks the client's API; empty = the front
                               end's choice */
};

struct bt_frontend {
    const char *name;       /* "openai" */
    enum bt_api api;
    /* Decodes the body of a request for `op` into `r` (tokens from `arena`, slices
     * into `body`); sets r->fe. A client mistake is BT_EPARSE/BT_EINVAL with text
     * in msg and the parameter at fault in *param (or NULL); BT_ENOMEM otherwise. */
    enum bt_err (*decode)(struct bt_request *r, enum bt_op op, struct bt_str body,
                          struct bt_arena *arena, char *msg, size_t msgcap, const char **param);
    /* The canonical chat request of a decoded chat request `r` (canon/chat.h):
     * for translation, and for rules and routers that read its content. A
     * client mistake is BT_EINVAL with `err` filled (a 400); BT_ENOMEM. */
    enum bt_err (*chat)(const struct bt_request *r, struct bt_arena *arena, struct bt_chat *out,
                        struct bt_chat_error *err);
    /* Called when a provider of another API is about to serve `r` (translated):
     * BT_EINVAL with a message (and the parameter, or NULL) for what the client
     * asked in its own API's terms that no other API can carry and that changes
     * what the reply means (a 400); what can be left out without changing it is
     * left out (and logged at debug). NULL: nothing to check. */
    enum bt_err (*translate_check)(const struct bt_request *r, char *msg, size_t msgcap,
                                   const char **param);
    /* Appends the error body for `e` to `out`; returns its content type. */
    const char *(*error_body)(struct bt_buf *out, const struct bt_error *e);
    /* Appends the stream event(s) that report `e` to the client and end its stream
     * without the clean end marker. */
    enum bt_err (*stream_error)(struct bt_buf *out, const struct bt_error *e);
    /* Appends stream event `event` (an event of this API from a provider that
     * speaks it, parsed; its bytes borrowed) rewritten with the request's cost
     * added to its usage object as `cost_usd`, the raw JSON number `cost_usd`
     * (USD, a plain decimal), as one whole event. Edits come from `arena`.
     * BT_EINVAL when the event has no usage object (nothing is appended). */
    enum bt_err (*stream_usage_cost)(struct bt_buf *out, const struct bt_json_doc *event,
                                     struct bt_str cost_usd, struct bt_arena *arena);
    /* Answers a model list (`id` empty) or one model's entry for `req` from the
     * worker's config; NULL when the API has no such endpoint. */
    void (*models)(struct bt_http_req *req, struct bt_worker *w, struct bt_str id);

    /* ---- a response translated from canonical events (a provider speaking
     * another API answered): a stream, or one whole reply ---- */
    size_t stream_size;   /* bytes of the stream state the caller provides */
    /* Begins a stream for request `r` in `st` (stream_size bytes, caller-owned,
     * nothing to free); `model` names the model when the events do not. */
    void (*stream_begin)(void *st, const struct bt_request *r, struct bt_str model);
    /* Encodes one event, appending whole events to `out`. BT_ETOOBIG/BT_ENOMEM:
     * `out` is full and nothing changed (flush, then feed it again); BT_EPROTO:
     * the events broke the stream's rules, an error event was written and the
     * stream is over. */
    enum bt_err (*stream_event)(void *st, const struct bt_event *ev, struct bt_buf *out);
    /* Ends the stream: cleanly (`e` NULL: whatever the API writes last) or with
     * the error `e` (its error event, without the clean end). */
    enum bt_err (*stream_end)(void *st, const struct bt_error *e, struct bt_buf *out);
    /* A whole reply: reply_new returns a collector (NULL on ENOMEM) that takes
     * events as a bt_event_cb (`reply_event`), reply_write appends the reply body
     * and gives its status, reply_free frees the collector. `max` caps the bytes
     * it holds. */
    void *(*reply_new)(const struct bt_request *r, struct bt_str model, size_t max);
    bt_event_cb reply_event;
    enum bt_err (*reply_write)(void *reply, struct bt_buf *out, int *status);
    void (*reply_free)(void *reply);
};

/* r->chat, decoded by r's front end (fe->chat) into `arena` on first need and
 * kept, so rules, routers and a provider of another API share one decode.
 * BT_EINVAL with `err` filled (a 400); BT_ENOMEM, also for a front end without
 * `chat` (every front end that can be translated has one or sets r->chat). */
static inline enum bt_err bt_request_chat(struct bt_request *r, struct bt_arena *arena,
                                          struct bt_chat_error *err)
{
    if (r->chat) return BT_OK;
    struct bt_chat *c = r->fe && r->fe->chat ? bt_arena_alloc(arena, sizeof(*c)) : NULL;
    if (!c) return BT_ENOMEM;
    enum bt_err e = r->fe->chat(r, arena, c, err);
    if (!e) r->chat = c;
    return e;
}

#endif
