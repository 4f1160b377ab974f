/* A worker: one thread, one libuv loop, its own listening socket (SO_REUSEPORT),
 * upstream pools and its own reference to the current config snapshot. Nothing on
 * the request path is shared between workers except atomics. */
#ifndef BT_CANON_WORKER_H
#define BT_CANON_WORKER_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "config/config.h"
#include "http/server.h"
#include "obs/metrics.h"
#include "upstream/upstream.h"

struct bt_exec;
struct bt_learn_scratch;
struct bt_keys;   /* store/keys.h */
struct bt_redis;  /* store/redis.h */
struct bt_keytab;
struct bt_keys_port;
struct bt_key_rec;

struct bt_worker {
    uv_loop_t loop;               /* this worker's loop */
    uv_thread_t thread;
    uv_async_t wake;              /* commands from the main thread */
    uv_timer_t stop_timer;        /* bounds the flush after a forced stop */
    struct bt_http_server *http;  /* listening server */
    struct bt_upstream *up;       /* upstream pools */
    struct bt_metrics *metrics;   /* process-wide registry (render on /metrics) */
    struct bt_metrics_shard *mshard; /* this worker's counters */
    struct bt_config *cfg;        /* this worker's ref to the current snapshot */
    uint64_t rr;                  /* round-robin counter for routing */
    struct bt_learn_scratch *learn; /* the learned router's working memory, made on first use */
    struct bt_keys *keys;         /* the key service (process-wide, borrowed); NULL: none */
    struct bt_redis *redis;       /* this worker's Redis connection (store.redis); NULL: none */
    struct bt_keytab *keytab;     /* this worker's ref to the key table it last saw */
    uint64_t keys_gen;            /* the service's generation of `keytab` */
    struct bt_keys_port *keys_port; /* where the admin API's store jobs come back to this
                                    loop (made on first use); NULL: none yet */
    const struct bt_key_rec *caller_key; /* the virtual key of the request whose model list
                                    is being answered (set around fe->models), so the list
                                    shows only the models it may use; NULL: all */
    struct bt_exec *execs;        /* requests in flight on this worker (exec's list) */
    int index;
    atomic_int command;           /* BT_WORKER_CMD_* bits */
    atomic_bool draining;         /* /health/ready answers 503 */
    int listen_err;               /* set by the thread when listen failed */
    uv_sem_t started;             /* posted once listening (or failed) */
    uv_mutex_t wake_lock;         /* guards wake_closed against main-thread sends */
    bool wake_closed;             /* `wake` is closing: send nothing more */
    bool started_ok;              /* main thread: the thread is running */
    /* Reloads the configuration (POST /admin/reload); 0 or -1 with a reason in msg. */
    int (*reload)(void *ctx, char *msg, size_t cap);
    void *reload_ctx;
};

#endif
