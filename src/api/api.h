/* What the handlers of the api folder share: answering a request that baton
 * answers itself (an error in the front end's shape, a JSON body), each with its
 * access-log line. Internal to src/api/. */
#ifndef BT_API_API_H
#define BT_API_API_H

#include "canon/frontend.h"
#include "canon/worker.h"
#include "core/str.h"
#include "gate/gate.h"
#include "http/server.h"

/* True when `v`, a client-chosen name (`field` says which: "model", "user"), may
 * reach headers, logs, labels and upstream requests: 1 to BT_NAME_MAX bytes
 * without control characters. Otherwise writes a message naming the field and
 * the value (control bytes shown as \xNN, cut to under 100 bytes) into msg. */
bool bt_api_name_ok(struct bt_str v, const char *field, char *msg, size_t msgcap);

/* Answers `req` with `e` in front end `fe`'s error shape and logs it (`model` as
 * requested, may be empty). Finishes the request. */
void bt_api_error(struct bt_http_req *req, const struct bt_frontend *fe, const struct bt_error *e,
                  struct bt_str model);
/* Shorthand for a client-side or baton-side error (not a provider's). */
void bt_api_fail(struct bt_http_req *req, const struct bt_frontend *fe, int status,
                 const char *code, const char *param, const char *msg, struct bt_str model);
/* bt_api_fail with `Retry-After: retry_after_s` (when > 0), for a 429. */
void bt_api_fail_retry(struct bt_http_req *req, const struct bt_frontend *fe, int status,
                       const char *code, const char *msg, struct bt_str model, int64_t retry_after_s);
/* Identifies the caller of `req` (the master key or a virtual key from the
 * worker's key table, refreshed from the key service when it changed) into
 * *caller, and records a virtual key's id on the request for the access log.
 * False after answering 401 in `fe`'s shape. caller->key is valid until this
 * worker's next call. */
bool bt_api_identify(struct bt_worker *w, struct bt_http_req *req, const struct bt_frontend *fe,
                     struct bt_caller *caller);
/* The admin API's /admin/keys routes (admin_keys.c), for a caller already
 * known to hold the master key. */
void bt_api_admin_keys(struct bt_http_req *req, struct bt_worker *w, const struct bt_frontend *fe);
/* GET /admin/usage (admin_keys.c): the usage ledger summed, filtered and
 * grouped by query parameters (docs/governance.md); master key only. */
void bt_api_admin_usage(struct bt_http_req *req, struct bt_worker *w, const struct bt_frontend *fe);
/* /admin/teams and /admin/users (admin_keys.c): GET the list, GET / PUT /
 * PATCH / DELETE one by name (percent-encoded in the path): its budget. */
void bt_api_admin_owners(struct bt_http_req *req, struct bt_worker *w, const struct bt_frontend *fe,
                         enum bt_owner_kind kind);
/* Answers `req` with a JSON body and the x-baton headers of a request no deployment
 * served, without an access-log line. Finishes the request. */
void bt_api_json(struct bt_http_req *req, int status, struct bt_str body);
/* Same, with the access-log line (status, latency). */
void bt_api_json_logged(struct bt_http_req *req, int status, struct bt_str body);

#endif
