/* Provider adapters: encode a canonical request for a provider, start the call
 * on the right transport (our upstream HTTP client, or the in-process simulator),
 * and decode the provider's replies and stream chunks into canonical events.
 * Only the OpenAI-compatible wire format exists so far; `sim` speaks it too. */
#ifndef BT_PROVIDER_PROVIDER_H
#define BT_PROVIDER_PROVIDER_H

#include <stdbool.h>
#include <uv.h>

#include "canon/request.h"
#include "config/config.h"
#include "core/arena.h"
#include "core/buf.h"
#include "canon/event.h"
#include "config/fwd.h"
#include "upstream/upstream.h"

/* A call in flight on either transport. */
struct bt_pcall {
    struct bt_up_call *up;   /* openai type */
    struct bt_sim_call *sim; /* sim type */
};

/* What one attempt sends a provider beside baton's own headers: the body, as
 * slices sent one after the other, and the client headers it forwards. */
struct bt_pbody {
    struct bt_str parts[BT_UP_BODY_PARTS];
    size_t n;
    struct bt_http_header fwd[BT_FWD_MAX]; /* forward_headers picked from the client's */
    size_t nfwd;
};

/* Builds the body sent to provider `p` for request `r` into `out`: on the fast
 * path the client's bytes with `model` replaced by `upstream_model` and, for a
 * stream whose client did not ask for usage, `stream_options.include_usage`
 * added (then *added_usage is set so the usage chunk can be dropped again).
 * Nothing is copied: the slices are runs of the client's body and the new
 * values, which live in `arena` (or are static). Also picks the client headers
 * `p` forwards (bt_fwd_pick; none for the simulator); a value that may not be
 * forwarded is BT_EINVAL here too, though the front end answers that with a 400
 * (bt_provider_check_headers) before any attempt. */
BT_MUST_USE enum bt_err bt_provider_encode(const struct bt_provider *p, const struct bt_request *r,
                               struct bt_str upstream_model, struct bt_arena *arena,
                               struct bt_pbody *out, bool *added_usage);

/* The 400 a client gets for headers provider `p` would forward but cannot:
 * bt_fwd_pick's checks (a control character, a value over BT_FWD_VALUE_MAX bytes,
 * more than BT_FWD_MAX lines) over r->headers, without keeping anything. BT_OK,
 * or BT_EINVAL / BT_ETOOBIG with `msg` naming the header. A front end runs it
 * for every candidate of the plan, so the answer does not depend on which one
 * would have been tried. */
enum bt_err bt_provider_check_headers(const struct bt_provider *p, const struct bt_request *r,
                                      char *msg, size_t msgcap);

/* Starts the call. The body's bytes (and forwarded headers) are borrowed until
 * on_done or cancel.
 * Returns BT_ENOMEM when nothing could be started (no callback will come). */
BT_MUST_USE enum bt_err bt_provider_start(const struct bt_provider *p, uv_loop_t *loop,
                              struct bt_upstream *up, enum bt_op op, bool stream,
                              const struct bt_pbody *body, const struct bt_up_callbacks *cb,
                              void *ud, struct bt_pcall *call);
/* Cancels a call started by bt_provider_start; no callback afterwards. */
void bt_provider_cancel(struct bt_pcall *call);

/* Decodes one OpenAI chat.completion.chunk (already tokenized) into events. */
void bt_openai_decode_chunk(const struct bt_json_doc *doc, bt_event_cb cb, void *ud);
/* True when an OpenAI chunk's text shows none of what the stream relay must
 * decode: a `usage` or `error` member whose value is an object, or a non-null
 * `finish_reason`; and its braces pair up, so an event cut short after a '}' is
 * decoded (and refused) too. One pass finds each '{', '}' and '_' (16 bytes at a
 * time with SSE2) and only the bytes around them are looked at. A false
 * "not plain" only costs a full decode; a member name written with escapes, or an
 * `error` given as a bare string, is not recognised (`stream_check: full`
 * validates every event and finds those exactly). */
bool bt_openai_chunk_is_plain(struct bt_str data);
/* The same decision byte by byte: the reference the vector version is tested against. */
bool bt_openai_chunk_is_plain_bytes(struct bt_str data);
/* Decodes a whole OpenAI reply (chat.completion or embeddings list): emits
 * FINISH and USAGE events. */
void bt_openai_decode_response(const struct bt_json_doc *doc, bt_event_cb cb, void *ud);
/* Writes OpenAI's error object `{"error":{"message","type","param","code"}}` as the
 * next value of `w`; param and code may be NULL (JSON null). */
void bt_openai_write_error(struct bt_jw *w, struct bt_str message, const char *type,
                           const char *param, const char *code);
/* Writes one entry of OpenAI's model list (`created` 0) as the next value of `w`. */
void bt_openai_write_model(struct bt_jw *w, struct bt_str id, const char *owned_by);
/* Reads usage out of an OpenAI `usage` object token. */
void bt_openai_read_usage(const struct bt_json_doc *doc, int tok, struct bt_usage *u);

#endif
