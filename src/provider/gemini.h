/* The Gemini adapter (provider type `gemini`: Google AI Studio's
 * generateContent, POST {base_url}/v1beta/models/{model}:generateContent or
 * :streamGenerateContent?alt=sse, the key in x-goog-api-key). Every client is
 * encoded from the canonical chat request (r->chat); replies, stream chunks
 * and errors decode into canonical events and outcome classes. The limits of
 * the translation are in docs/providers.md. */
#ifndef BT_PROVIDER_GEMINI_H
#define BT_PROVIDER_GEMINI_H

#include "provider/provider.h"

extern const struct bt_adapter bt_adapter_gemini;

/* A GenerateContentRequest body for `c` into `out` (the model goes in the
 * path, not the body). BT_EINVAL with *refused filled for what Gemini cannot
 * express (docs/providers.md); BT_ETOOBIG when `out` is full; BT_ENOMEM. */
BT_MUST_USE enum bt_err bt_gemini_encode_chat(const struct bt_chat *c, struct bt_arena *arena,
                                              struct bt_buf *out, struct bt_chat_error *refused);

/* The target after the base path: /v1beta/models/{model}:generateContent, or
 * :streamGenerateContent?alt=sse for a stream (a leading "models/" in the id
 * is taken as written once). In `arena`; a NULL slice on BT_ENOMEM. */
struct bt_str bt_gemini_path(struct bt_str model, bool stream, struct bt_arena *arena);

/* One GenerateContentResponse (a stream chunk or a whole reply, already
 * tokenized) into events: per candidate START (id = responseId, name =
 * modelVersion), its parts in order (text TEXT, thought text REASONING,
 * thoughtSignature a REASONING signature, functionCall TOOL_START and one
 * TOOL_ARGS with the whole args object; block and tool_index = the part's
 * position), FINISH when finishReason is set (STOP with a function call is
 * TOOL_CALLS); then USAGE from usageMetadata; a prompt blocked by
 * promptFeedback.blockReason is an ERROR (content_filter). Gemini's stream has
 * no end marker: a chunk with a finishReason is its last, and gives DONE after
 * its USAGE. An `error` member gives one ERROR. Stateless. */
void bt_gemini_decode(const struct bt_json_doc *doc, bt_event_cb cb, void *ud);

/* The outcome class of a Gemini error `status` ("RESOURCE_EXHAUSTED", ...)
 * and message (raw string bodies). */
enum bt_outcome bt_gemini_error_outcome(struct bt_str status, struct bt_str message);

#endif
