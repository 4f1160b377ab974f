/* The Anthropic front end: Anthropic's Messages API (`POST /v1/messages`,
 * `POST /v1/messages/count_tokens`) as a client sees it, so the Anthropic SDKs
 * work with baton's root URL as their base URL. It decodes requests into the
 * canonical chat request (every one is translated: no provider speaks
 * Anthropic's wire yet), and writes errors, streams and replies in Anthropic's
 * shapes. The path table refers to it as bt_fe_anthropic. docs/providers.md
 * lists what it supports and each translation limit. */
#ifndef BT_API_ANTHROPIC_H
#define BT_API_ANTHROPIC_H

#include "canon/frontend.h"
#include "canon/worker.h"
#include "http/server.h"

extern const struct bt_frontend bt_fe_anthropic;

/* POST /v1/messages/count_tokens (the caller already identified): the request
 * decoded as for /v1/messages (max_tokens not required), admitted by the gate
 * and its model checked like a chat request's (404 when nothing serves it), then `{"input_tokens":N}`
 * counted with baton's o200k_base tokenizer: an estimate (see
 * docs/providers.md). Finishes the request. */
void bt_anthropic_count_tokens(struct bt_http_req *req, struct bt_worker *w);

#endif
