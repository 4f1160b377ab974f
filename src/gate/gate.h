/* The gate: who is calling, and may they make this request. Two steps around the
 * front end's decode: bt_gate_identify reads the caller's key from the HTTP head
 * (before the body is decoded, so an unknown caller learns nothing about request
 * validation), bt_gate_admit judges the decoded request (per-key model rights,
 * limits and budgets go there; with only the master key today, every identified
 * caller is admitted). */
#ifndef BT_GATE_GATE_H
#define BT_GATE_GATE_H

#include <stdbool.h>

#include "canon/request.h"
#include "config/config.h"
#include "http/server.h"

/* Who a request comes from. */
struct bt_caller {
    bool master;      /* presented the master key, or none is configured */
};

/* True when the request may pass. With a master key configured the request must
 * carry `Authorization: Bearer KEY` (or `x-api-key: KEY`); the comparison takes
 * constant time. On refusal *why says what is wrong (never echoing the key). */
bool bt_gate_check_master(const struct bt_config *cfg, const struct bt_http_req *req,
                          const char **why);

/* Step one: identifies the caller of `req` into *caller. False (a 401 for the
 * client) with *why set when the key is missing or wrong. */
bool bt_gate_identify(const struct bt_config *cfg, const struct bt_http_req *req,
                      struct bt_caller *caller, const char **why);

/* Step two: may `caller` make the decoded request `r`? False with *status (403,
 * 429, ...), *code and *why set when not. */
bool bt_gate_admit(const struct bt_config *cfg, const struct bt_caller *caller,
                   const struct bt_request *r, int *status, const char **code, const char **why);

#endif
