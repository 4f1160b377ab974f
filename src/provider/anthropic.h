/* The Anthropic adapter (provider type `anthropic`: the Messages API,
 * POST {base_url}/v1/messages with x-api-key and anthropic-version). A client
 * of the Anthropic API is relayed with only `model` spliced; any other client
 * is encoded from the canonical chat request (r->chat). Replies, stream events
 * and errors decode into canonical events and outcome classes. The limits of
 * the translation are in docs/providers.md. */
#ifndef BT_PROVIDER_ANTHROPIC_H
#define BT_PROVIDER_ANTHROPIC_H

#include "provider/provider.h"

extern const struct bt_adapter bt_adapter_anthropic;

/* A Messages request body for `c` with `model` as the model id, into `out`.
 * `max_tokens` is sent when the client gave none (Anthropic requires it); with
 * thinking on and no client max_tokens, the budget is added to it. BT_EINVAL
 * with *refused filled for what Anthropic cannot express (docs/providers.md);
 * BT_ETOOBIG when `out` is full; BT_ENOMEM. `arena` holds conversions (tool
 * arguments); `out` is written only up to the failure. */
BT_MUST_USE enum bt_err bt_anthropic_encode_chat(const struct bt_chat *c, struct bt_str model,
                                                 uint32_t max_tokens, struct bt_arena *arena,
                                                 struct bt_buf *out,
                                                 struct bt_chat_error *refused);

/* One stream event's data (tokenized; its `type` member names it) into
 * canonical events: message_start START and USAGE; content_block_start TEXT /
 * TOOL_START / REASONING; content_block_delta TEXT, TOOL_ARGS, REASONING (text
 * or signature); content_block_stop BLOCK_STOP; message_delta FINISH and USAGE;
 * message_stop DONE; error ERROR; ping nothing. `block` and `tool_index` are
 * Anthropic's content-block index. Stateless. */
void bt_anthropic_decode_event(const struct bt_json_doc *doc, bt_event_cb cb, void *ud);

/* A whole Messages reply into the events its stream would have given (START,
 * per block its content events and BLOCK_STOP, FINISH, USAGE, DONE), or an
 * `{"type":"error"}` body into one ERROR. */
void bt_anthropic_decode_reply(const struct bt_json_doc *doc, bt_event_cb cb, void *ud);

/* The outcome class of an Anthropic error `type` (raw string body) and
 * message: rate_limit_error rate_limit; overloaded_error and api_error
 * server_error; authentication_error, permission_error auth;
 * invalid_request_error bad_request, or context_window when the message says
 * the prompt is too long; timeout_error timeout; others server_error. */
enum bt_outcome bt_anthropic_error_outcome(struct bt_str type, struct bt_str message);

#endif
