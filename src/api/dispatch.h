/* The path table: every URL baton answers, outside any front end. It sends each
 * request to a front end's pipeline or model list, to health, metrics or the
 * admin API, and answers what matches nothing in the API the path belongs to. */
#ifndef BT_API_DISPATCH_H
#define BT_API_DISPATCH_H

#include "canon/frontend.h"
#include "core/buf.h"
#include "http/server.h"

/* The HTTP handler of a gateway worker; `ud` is the struct bt_worker. */
void bt_api_handle(struct bt_http_req *req, void *ud);

/* The x-baton-* headers of a response no deployment served (deployment none,
 * 0 attempts): on baton's own answers and on the HTTP server's errors. */
extern const struct bt_http_header bt_api_no_deployment[2];

/* The front end whose API a path belongs to (OpenAI's for anything unknown). */
const struct bt_frontend *bt_api_frontend_for(struct bt_str path);

/* bt_http_error_fmt for the errors the HTTP server makes itself: in the shape of
 * the front end the path belongs to. */
const char *bt_api_server_error(struct bt_buf *out, struct bt_str path, int status,
                                const char *msg);

#endif
