/* Prometheus metrics. Each worker thread owns one shard and updates it on the
 * request path without locks or locked instructions (one writer per shard, so an
 * increment is a relaxed load and a relaxed store); a scrape sums the shards and
 * writes the text exposition format 0.0.4. Labelled series (model, deployment,
 * status; provider, class) are created on first use in the worker's shard, bounded
 * by a process-wide cap past which new label sets fold into the value "other".
 * Design and cost: docs/internals/metrics.md. */
#ifndef BT_OBS_METRICS_H
#define BT_OBS_METRICS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/buf.h"
#include "core/err.h"
#include "core/str.h"

struct bt_metrics;       /* the process-wide registry */
struct bt_metrics_shard; /* one worker's counters; updated by that worker only */

/* Content-Type of the rendered text, for the /metrics response. */
#define BT_METRICS_CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"
/* Default cap on labelled series (summed over all shards). */
#define BT_METRICS_DEFAULT_MAX_SERIES 10000
/* Label values longer than this are cut (at a UTF-8 boundary) before use. */
#define BT_METRICS_MAX_LABEL 200

/* Why an upstream attempt failed, the `class` label of baton_upstream_errors_total. */
enum bt_metrics_upclass {
    BT_UPCLASS_TIMEOUT,      /* connect, first-byte, idle or total deadline */
    BT_UPCLASS_RESET,        /* connection reset or closed mid-reply */
    BT_UPCLASS_REFUSED,      /* connection refused */
    BT_UPCLASS_DNS,          /* name resolution failed */
    BT_UPCLASS_TLS,          /* handshake or certificate failure */
    BT_UPCLASS_RATE_LIMITED, /* HTTP 429 */
    BT_UPCLASS_4XX,          /* any other 4xx (and 3xx: redirects are not followed) */
    BT_UPCLASS_5XX,          /* HTTP 5xx */
    BT_UPCLASS_INVALID,      /* unparsable reply or stream, protocol violation */
    BT_UPCLASS_OTHER,        /* anything else */
    BT_UPCLASS_COUNT,
};

struct bt_metrics_opts {
    unsigned shards;     /* number of worker shards, >= 1 */
    size_t max_series;   /* cap on labelled series over all shards; 0 = default */
    const char *version; /* baton_build_info{version}; NULL = BT_VERSION. Copied. */
};

/* Creates a registry with `o->shards` zeroed shards. The process start time and
 * the "last successful config load" time are set to now (the config was loaded
 * before the registry exists). On success *out is owned by the caller
 * (bt_metrics_free). BT_EINVAL for shards == 0, BT_ENOMEM. */
enum bt_err bt_metrics_create(const struct bt_metrics_opts *o, struct bt_metrics **out);
/* Frees the registry and its shards. No thread may use it any more (workers
 * joined, no scrape running). NULL is ignored. */
void bt_metrics_free(struct bt_metrics *m);
/* Shard i (< shards), owned by the registry and valid until bt_metrics_free. Give
 * each worker its own: every bt_metrics_* function taking a shard must only be
 * called from the one thread that owns that shard. */
struct bt_metrics_shard *bt_metrics_shard(struct bt_metrics *m, unsigned i);

/* One finished request (any status). All pointers are borrowed for the call only;
 * label values are copied the first time a label set is seen. Label values must be
 * names from the config (a configured model alias, "provider/model"), never
 * anything a client can choose freely and never a secret; empty slices render as
 * "none". */
struct bt_metrics_req {
    struct bt_str model;      /* configured model the client asked for; empty = none */
    struct bt_str deployment; /* "provider/model" that answered last; empty = none */
    int status;               /* HTTP status sent to the client (499: client left) */
    uint64_t latency_ns;      /* request start to response end */
    uint64_t ttft_ns;         /* request start to first token; 0 = no token observed */
    int64_t tokens_in;        /* prompt tokens reported by the provider; < 0 = unknown */
    int64_t tokens_out;       /* completion tokens; < 0 = unknown */
};

/* Counts a finished request in baton_requests_total, the latency and TTFT
 * histograms and baton_tokens_total. Lock-free; a first-seen label set costs one
 * malloc. Statuses outside 100..599 are counted as status="other". */
void bt_metrics_request_done(struct bt_metrics_shard *s, const struct bt_metrics_req *r);
/* Adds delta (+1 when a request starts, -1 when it finishes) to
 * baton_requests_in_flight. */
void bt_metrics_inflight_add(struct bt_metrics_shard *s, int delta);
/* Adds delta to, or sets, this shard's part of baton_open_connections (unused when
 * a connections function is installed, see bt_metrics_set_connections_fn). */
void bt_metrics_connections_add(struct bt_metrics_shard *s, int delta);
void bt_metrics_connections_set(struct bt_metrics_shard *s, int64_t n);
/* Counts one failed upstream attempt of `provider` (a provider name from the
 * config; borrowed for the call). */
void bt_metrics_upstream_error(struct bt_metrics_shard *s, struct bt_str provider,
                               enum bt_metrics_upclass cls);

/* Maps a transport error / an upstream HTTP status (>= 300) to its class. */
enum bt_metrics_upclass bt_metrics_upclass_from_err(enum bt_err err);
enum bt_metrics_upclass bt_metrics_upclass_from_status(int status);
/* The label value of a class ("timeout", "4xx", ...); "other" when out of range. */
const char *bt_metrics_upclass_name(enum bt_metrics_upclass cls);

/* Records the result of a config reload (SIGHUP or POST /admin/reload): counts it
 * in baton_config_reloads_total{result} and, when ok, sets the last-success
 * timestamp. Any thread. */
void bt_metrics_reload(struct bt_metrics *m, bool ok);
/* Installs a function returning the current number of open client connections,
 * called from the scraping thread during bt_metrics_render (so it must be safe to
 * call from any thread, e.g. read atomics). When set it replaces the sum of the
 * shards' connection gauges. fn == NULL removes it. Any thread (it takes the
 * scrape mutex). */
void bt_metrics_set_connections_fn(struct bt_metrics *m, int64_t (*fn)(void *ud), void *ud);

/* Appends the exposition text of every family to `out` (which keeps its own
 * cap: BT_ETOOBIG when the text does not fit; `out` then holds a partial text the
 * caller must discard). Any thread; concurrent scrapes are serialized by a mutex
 * the request path never takes. BT_ENOMEM when scratch memory runs out. */
enum bt_err bt_metrics_render(struct bt_metrics *m, struct bt_buf *out);

#endif
