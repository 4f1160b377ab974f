/* The OpenAI front end's decoder of a chat-completions request into the
 * canonical chat request (canon/chat.h), for when it must be translated for a
 * provider with another API. The fast path does not call it. */
#ifndef BT_API_OPENAI_CHAT_H
#define BT_API_OPENAI_CHAT_H

#include "canon/chat.h"
#include "json/json.h"

/* Decodes the tokenized request body `doc` (the bt_request's doc) into `out`.
 * Arrays come from `arena`; strings are slices of doc->src (see canon/chat.h),
 * so `out` is valid while both live. Validates what OpenAI documents for the
 * members it maps (types, required members, enums, ranges) and refuses what has
 * no canonical form (custom tools, allowed_tools, audio references).
 * Top-level members it does not map go to `extras`. BT_OK; BT_EINVAL with `err`
 * filled (answer 400 with err->message and err->param); BT_ENOMEM. */
BT_MUST_USE enum bt_err bt_openai_chat_decode(const struct bt_json_doc *doc,
                                              struct bt_arena *arena, struct bt_chat *out,
                                              struct bt_chat_error *err);

#endif
