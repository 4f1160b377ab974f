/* The OpenAI-compatible adapter's encoder of the canonical chat request
 * (canon/chat.h) into an OpenAI chat-completions body, for a client of another
 * API (Anthropic Messages) served by an OpenAI-wire provider. The fast path
 * (an OpenAI client) never calls it. docs/providers.md lists the mapping and
 * what is refused. */
#ifndef BT_PROVIDER_OPENAI_CHAT_ENCODE_H
#define BT_PROVIDER_OPENAI_CHAT_ENCODE_H

#include <stdbool.h>

#include "canon/chat.h"
#include "core/buf.h"

/* Appends the body for `c` with `model` (unescaped) as the provider's model to
 * `out`; `arena` holds conversions (tool arguments). A stream asks for usage
 * (stream_options.include_usage), which baton accounts. BT_EINVAL with `err`
 * filled when `c` holds something OpenAI's chat API cannot express (a 400 for
 * the client: top_k, a server-side parameter kept in extras, an image in a
 * tool result...); BT_ETOOBIG / BT_ENOMEM from `out`; BT_EPARSE for tool
 * arguments with a broken escape. Nothing is dropped silently except what
 * does not change the request's meaning (cache breakpoints, thinking
 * signatures, redacted thinking). */
BT_MUST_USE enum bt_err bt_openai_chat_encode(const struct bt_chat *c, struct bt_str model,
                                              struct bt_arena *arena, struct bt_buf *out,
                                              struct bt_chat_error *err);

/* The reasoning_effort sent for an Anthropic-style thinking budget: below 4096
 * tokens "low", below 16384 "medium", else "high". Static string. */
const char *bt_openai_effort_for_budget(int64_t budget);

#endif
