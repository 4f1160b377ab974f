/* One gateway worker's request machinery on its own loop: the HTTP server that
 * answers through the path table, and the upstream pools. `baton serve` opens one
 * per worker thread; tests and the pipeline fuzz target open one on their loop. */
#ifndef BT_SERVE_WORKER_H
#define BT_SERVE_WORKER_H

#include <stdatomic.h>

#include "canon/worker.h"
#include "core/err.h"

/* Creates w->http (bt_api_handle on `w`, the server limits of w->cfg, server-made
 * errors in the front end's shape; `conn_count` shared by the process's workers,
 * or NULL) and w->up (pools sized by w->cfg) on w->loop. Listens on nothing yet.
 * BT_ENOMEM; what was created is left for bt_worker_close. */
enum bt_err bt_worker_open(struct bt_worker *w, atomic_uint *conn_count);
/* Closes the server (requests in flight get their abort callback) and frees the
 * pools; the loop must run afterwards for the handles to close. */
void bt_worker_close(struct bt_worker *w);

#endif
