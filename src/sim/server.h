/* `baton sim --listen ADDR`: the simulated provider as a standalone
 * OpenAI-compatible HTTP server (base URL http://ADDR/v1), for tests, demos and
 * load tests. `x-sim-fault: NAME` forces a fault on one request; `GET /sim/stats`
 * reports connections, requests and cancellations as JSON. */
#ifndef BT_SIM_SERVER_H
#define BT_SIM_SERVER_H

#include <stdint.h>

#include "config/config.h"

/* Runs until SIGTERM/SIGINT; returns the process exit code. */
int bt_sim_serve_main(const char *host, uint16_t port, const struct bt_sim_cfg *cfg,
                      uint32_t workers);

#endif
