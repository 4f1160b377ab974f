/* Decoding what an OpenAI-compatible provider replies into canonical events
 * (canon/event.h), for the translate path: a whole chat.completion gives the
 * same events its stream would have, so a front end has one encoder per shape
 * of its own API and never cares which one the provider sent.
 *
 * Event slices point into the decoded document and are valid during the
 * callback only. Strings (text, ids, names, error message) are JSON string
 * bodies, still escaped, as canon/event.h says. */
#ifndef BT_PROVIDER_OPENAI_REPLY_H
#define BT_PROVIDER_OPENAI_REPLY_H

#include "canon/event.h"
#include "core/outcome.h"
#include "core/arena.h"
#include "json/json.h"

/* A whole reply (`chat.completion`, already tokenized): for each choice in
 * order START (id, name = model), REASONING (`reasoning_content`, then
 * `reasoning`), TEXT, REFUSAL, then per tool call TOOL_START (tool_index = its
 * position, id, name) and TOOL_ARGS (its arguments, in one piece), then FINISH;
 * after the choices USAGE (with cached, cache-write and reasoning tokens) when
 * reported, and DONE. A legacy `function_call` is tool call 0. A body with an
 * `error` member gives one ERROR (type, message, code, outcome) and nothing
 * else; a body that is not an object gives nothing. */
void bt_openai_reply_events(const struct bt_json_doc *doc, bt_event_cb cb, void *ud);

/* One stream chunk (`chat.completion.chunk`): the events
 * bt_openai_decode_chunk gives (same order, fields and conditions), and also
 * REFUSAL for `delta.refusal`, the model as START's name, legacy
 * `function_call` deltas as tool call 0, cache-write tokens in USAGE, and the
 * outcome and code of an ERROR. */
void bt_openai_chunk_events(const struct bt_json_doc *doc, bt_event_cb cb, void *ud);

/* The data of one SSE event of an OpenAI stream: `[DONE]` gives DONE; a JSON
 * object gives its chunk's events (tokenized into `scratch`, which the caller
 * may reset after the call); anything else gives an ERROR (server_error, "the
 * provider sent an event that is not JSON") and returns BT_EPARSE. BT_ENOMEM
 * when the arena is full (no event). */
enum bt_err bt_openai_stream_data(struct bt_str data, struct bt_arena *scratch, bt_event_cb cb,
                                  void *ud);

/* The outcome class of an OpenAI-style error object from its `type` and `code`
 * (raw string bodies, either may be empty): context_length_exceeded, rate
 * limits and quota, overload, content filter, auth, timeouts, invalid requests;
 * anything else is a server error. For an error read from a body; where there
 * is an HTTP status, the status says more. */
enum bt_outcome bt_openai_error_outcome(struct bt_str type, struct bt_str code);

#endif
