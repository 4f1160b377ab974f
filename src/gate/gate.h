/* The gate: who is calling. For now the master key (virtual keys, limits and
 * budgets come with governance). */
#ifndef BT_GATE_GATE_H
#define BT_GATE_GATE_H

#include <stdbool.h>

#include "config/config.h"
#include "http/server.h"

/* True when the request may pass. With a master key configured the request must
 * carry `Authorization: Bearer KEY` (or `x-api-key: KEY`); the comparison takes
 * constant time. On refusal *why says what is wrong (never echoing the key). */
bool bt_gate_check_master(const struct bt_config *cfg, const struct bt_http_req *req,
                          const char **why);

#endif
