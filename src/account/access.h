/* The access log: one JSON line per request (never a secret), written when the
 * request finishes. */
#ifndef BT_ACCOUNT_ACCESS_H
#define BT_ACCOUNT_ACCESS_H

#include <stdbool.h>
#include <stdint.h>

#include "core/str.h"
#include "obs/metrics.h"
#include "canon/event.h"

struct bt_access_rec {
    const char *id;           /* request id the client saw */
    struct bt_str method;
    struct bt_str path;
    struct bt_str model;      /* requested model, may be empty */
    const char *deployment;   /* "provider/model" or NULL */
    int status;               /* status sent to the client (499: client went away) */
    uint64_t latency_ns;      /* from first request byte to response finished */
    uint64_t ttft_ns;         /* to the first content event forwarded (streams); 0 = n/a */
    uint32_t attempts;
    bool stream;
    struct bt_usage usage;
    bool cost_known;          /* the deployment has a price and the usage is known */
    int64_t cost_pusd;        /* the request's cost in pico-USD (account/cost.h) */
    enum bt_finish finish;
    const char *error;        /* short error text or NULL */
    const char *key_id;       /* the virtual key's id, or NULL (master key or none) */
    struct bt_str metric_model; /* configured model name for metrics labels; empty = none */
    struct bt_str metric_deployment; /* its `deployment` label: a configured "provider/model",
                                        or the provider's name for a direct provider/model id
                                        (clients choose those ids: never a label); empty = none */
    struct bt_metrics_shard *metrics; /* the worker's shard, or NULL */
};

/* Formats `rec` as one JSON object and writes it to the access log, and counts the
 * request in the worker's metrics shard when one is given. */
void bt_access_write(const struct bt_access_rec *rec);

#endif
