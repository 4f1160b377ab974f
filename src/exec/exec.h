/* The executor: runs a routed request's plan. One attempt at a time against the
 * plan's candidates; a failure before anything reached the client (connect
 * error, timeout, 429/5xx, invalid reply) moves to the next candidate. It
 * commits at the first streamed byte: after that, a failure ends the client's
 * stream with an error event, never a fake clean finish. It enforces first-byte,
 * idle (between chunks) and total deadlines for every transport, relays streams
 * event by event, captures usage and finish reason, and writes the access log. */
#ifndef BT_EXEC_EXEC_H
#define BT_EXEC_EXEC_H

#include "canon/request.h"
#include "gate/gate.h"
#include "http/server.h"
#include "route/route.h"
#include "canon/worker.h"

/* Takes over answering `hreq` for the decoded request `r` (which lives in
 * hreq's arena) along the plan. Takes a reference on `cfg` for its lifetime.
 * `payer` (copied; its strings must live in hreq's arena or longer; NULL: the
 * master key) is who the request is accounted to: its cost is charged to the
 * key's budget counters before the response's last bytes are written (a
 * whole reply: before it is sent; a stream: before its end marker, or when
 * it ends otherwise), and one usage record per request goes to the ledger
 * (worker->keys) when it ends. */
void bt_exec_run(struct bt_worker *w, struct bt_http_req *hreq, struct bt_config *cfg,
                 struct bt_request *r, const struct bt_plan *plan, const struct bt_payer *payer);

/* Ends every request still running on worker `w` (a second SIGTERM or the drain
 * timeout): streams get an error event and end, others a 503. */
void bt_exec_shutdown_all(struct bt_worker *w);

#endif
