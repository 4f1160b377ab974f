/* The simulated provider: an in-process OpenAI-compatible endpoint that answers
 * chat completions (text; tool calls when tools are given; JSON fitting a
 * `json_schema` response format; streaming with usage) and embeddings
 * (deterministic vectors, float or base64), deterministically for a given seed
 * and request, with knobs for time to first token, tokens per second and reply
 * length, and injectable faults.
 *
 * It produces exactly the bytes an OpenAI-compatible server would send, through
 * the same callbacks as the upstream client, so the gateway exercises one code
 * path for real and simulated providers. `baton sim --listen ADDR` serves the
 * same simulator over HTTP. */
#ifndef BT_SIM_SIM_H
#define BT_SIM_SIM_H

#include <uv.h>

#include "config/config.h"
#include "core/str.h"
#include "upstream/upstream.h"

enum bt_sim_fault {
    BT_SIM_FAULT_NONE = 0,
    BT_SIM_FAULT_429,          /* 429 with Retry-After (and retry-after-ms) */
    BT_SIM_FAULT_500,
    BT_SIM_FAULT_503,
    BT_SIM_FAULT_NO_ANSWER,    /* never answers (until cancelled) */
    BT_SIM_FAULT_RESET_BEFORE, /* connection reset before any response byte */
    BT_SIM_FAULT_RESET_MID,    /* reset after part of the body */
    BT_SIM_FAULT_STALL_MID,    /* part of the body, then silence forever */
    BT_SIM_FAULT_SLOW_BYTES,   /* the reply one byte at a time (10 ms apart) */
    BT_SIM_FAULT_INVALID_JSON, /* 200 with a body that is not valid JSON (or a broken SSE data line) */
    BT_SIM_FAULT_ERROR_EVENT,  /* stream: a few chunks, then an error event inside the 200 stream */
};

/* Parses a fault name as used in `x-sim-fault` ("429", "500", "503", "no_answer",
 * "reset_before", "reset_mid", "stall_mid", "slow_bytes", "invalid_json",
 * "error_event"); -1 when unknown. */
int bt_sim_fault_parse(struct bt_str name);

struct bt_sim_request {
    struct bt_str method;   /* "POST" / "GET" */
    struct bt_str path;     /* relative to the base path: "/chat/completions", "/embeddings", "/models" */
    struct bt_str body;     /* borrowed until on_done or cancel */
    int fault;              /* forced fault (enum bt_sim_fault), or -1 to draw from cfg rates */
};

struct bt_sim_call;

/* Starts a simulated call on `loop`. cfg is borrowed for the call's duration.
 * Reports through `cb` like bt_upstream_request (never synchronously: the first
 * callback comes from the loop). Bad requests get the 400 an OpenAI server would
 * send. Returns NULL only on ENOMEM. */
struct bt_sim_call *bt_sim_start(uv_loop_t *loop, const struct bt_sim_cfg *cfg,
                                 const struct bt_sim_request *req,
                                 const struct bt_up_callbacks *cb, void *ud);
/* Stops the call; no callback runs afterwards. Safe inside a callback. */
void bt_sim_cancel(struct bt_sim_call *call);

/* Default knobs (seed 1, 24 tokens, 16 dims, no faults). */
void bt_sim_cfg_default(struct bt_sim_cfg *cfg);

#endif
