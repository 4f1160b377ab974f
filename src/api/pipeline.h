/* The one path a generation request takes, whatever its client API:
 * identify the caller → decode (the front end) → admit (the gate) → route (the
 * plan) → exec (attempts, relay) → account (exec writes the access line and the
 * metrics when the response ends). */
#ifndef BT_API_PIPELINE_H
#define BT_API_PIPELINE_H

#include "canon/frontend.h"
#include "canon/worker.h"
#include "http/server.h"

/* Runs request `req` on worker `w` for operation `op` of front end `fe`. The
 * request is answered by the pipeline (an error) or handed to exec. */
void bt_pipeline_run(struct bt_worker *w, struct bt_http_req *req, const struct bt_frontend *fe,
                     enum bt_op op);

#endif
