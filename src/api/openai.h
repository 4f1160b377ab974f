/* The OpenAI front end: OpenAI's chat completions, embeddings and model list as a
 * client sees them. It decodes request bodies into the canonical request and
 * writes errors, in-stream errors and model entries in OpenAI's shapes. The path
 * table (api/dispatch.c) refers to it as bt_fe_openai. */
#ifndef BT_API_OPENAI_H
#define BT_API_OPENAI_H

#include "canon/frontend.h"
#include "canon/request.h"
#include "core/buf.h"
#include "http/server.h"

extern const struct bt_frontend bt_fe_openai;

/* Appends `{"error":{"message":..,"type":..,"param":..,"code":..}}` to out;
 * param and code may be NULL (JSON null). */
void bt_openai_error_json(struct bt_buf *out, const char *message, const char *type,
                          const char *param, const char *code);

/* Decodes an OpenAI chat-completions or embeddings body into `r` (tokens from
 * `arena`, slices into `body`). On a client error returns BT_EPARSE/BT_EINVAL
 * with a message in `msg` and the offending parameter in *param (or NULL). */
BT_MUST_USE enum bt_err bt_openai_decode_request(struct bt_request *r, enum bt_op op,
                                                 struct bt_str body, struct bt_arena *arena,
                                                 char *msg, size_t msgcap, const char **param);

#endif
