/* The Anthropic front end's decoder of a Messages request (`POST /v1/messages`,
 * `/v1/messages/count_tokens`) into the canonical chat request (canon/chat.h).
 * Every Anthropic request is translated (no provider speaks Anthropic's wire
 * yet), so the front end always builds it. */
#ifndef BT_API_ANTHROPIC_MSG_H
#define BT_API_ANTHROPIC_MSG_H

#include <stdbool.h>

#include "canon/chat.h"
#include "json/json.h"

/* Decodes the tokenized body `doc` into `out`. Arrays come from `arena`;
 * strings are slices of doc->src (escaped bodies, see canon/chat.h), so `out`
 * is valid while both live. `count_only`: the count_tokens shape (max_tokens
 * not required). Checks what Anthropic documents (types, required members,
 * enums, ranges: temperature and top_p 0..1, max_tokens >= 1, budget_tokens
 * >= 1024 and below max_tokens) and refuses what has no canonical form (server
 * tools, file and URL documents, search results...). Top-level members it does
 * not map go to `extras`. BT_OK; BT_EINVAL with `err` filled (answer 400);
 * BT_ENOMEM. */
BT_MUST_USE enum bt_err bt_anthropic_msg_decode(const struct bt_json_doc *doc,
                                                struct bt_arena *arena, bool count_only,
                                                struct bt_chat *out, struct bt_chat_error *err);

#endif
