/* The OpenAI-compatible front end: routes HTTP requests to endpoints, checks the
 * caller's key, decodes chat/embeddings bodies into the canonical request, and
 * speaks OpenAI's error shape. */
#ifndef BT_API_OPENAI_H
#define BT_API_OPENAI_H

#include "canon/request.h"
#include "core/buf.h"
#include "http/server.h"

/* The HTTP handler for a gateway worker; `ud` is the struct bt_worker. */
void bt_api_handle(struct bt_http_req *req, void *ud);

/* Appends `{"error":{"message":..,"type":..,"param":..,"code":..}}` to out;
 * param and code may be NULL (JSON null). */
void bt_openai_error_json(struct bt_buf *out, const char *message, const char *type,
                          const char *param, const char *code);
/* bt_http_error_fmt for the server's own errors (OpenAI shape). */
const char *bt_openai_error_fmt(struct bt_buf *out, struct bt_str path, int status,
                                const char *type, const char *msg);

/* True when `v`, a client-chosen name (`field` says which: "model", "user"), may
 * reach headers, logs, labels and upstream requests: 1 to BT_NAME_MAX bytes
 * without control characters. Otherwise writes a message naming the field and
 * the value (control bytes shown as \xNN, cut to under 100 bytes) into msg. */
bool bt_api_name_ok(struct bt_str v, const char *field, char *msg, size_t msgcap);

/* Decodes an OpenAI chat-completions or embeddings body into `r` (tokens from
 * `arena`, slices into `body`). On a client error returns BT_EPARSE/BT_EINVAL
 * with a message in `msg` and the offending parameter in *param (or NULL). */
BT_MUST_USE enum bt_err bt_openai_decode_request(struct bt_request *r, enum bt_op op, struct bt_str body,
                                     struct bt_arena *arena, char *msg, size_t msgcap,
                                     const char **param);

#endif
