#include "serve/worker.h"

#include "api/dispatch.h"
#include "learn/learn.h"
#include "store/keys.h"
#include "store/redis.h"

enum bt_err bt_worker_open(struct bt_worker *w, atomic_uint *conn_count)
{
    const struct bt_config *cfg = w->cfg;
    struct bt_http_opts o = {
        .max_header_bytes = cfg->server.max_header_bytes,
        .max_body_bytes = cfg->server.max_body_bytes,
        .header_timeout_ms = cfg->server.header_timeout_ms,
        .idle_timeout_ms = cfg->server.idle_timeout_ms,
        .body_timeout_ms = cfg->server.header_timeout_ms,
        .max_connections = cfg->server.max_connections,
        .conn_count = conn_count,
        .handler = bt_api_handle,
        .handler_ud = w,
        .format_error = bt_api_server_error,
        .error_headers = bt_api_no_deployment,
        .nerror_headers = 2,
    };
    w->http = bt_http_server_new(&w->loop, &o);
    struct bt_upstream_opts uo = {
        .max_conns_per_origin = cfg->server.upstream_max_connections,
        .max_idle_per_origin = cfg->server.upstream_max_idle,
        .max_queued_per_origin = cfg->server.upstream_max_queued,
    };
    w->up = bt_upstream_new(&w->loop, &uo);
    if (cfg->store.redis && !(w->redis = bt_redis_new(&w->loop, cfg->store.redis, cfg->store.redis_timeout_ms))) return BT_ENOMEM;
    return w->http && w->up ? BT_OK : BT_ENOMEM;
}

void bt_worker_close(struct bt_worker *w)
{
    if (w->http) bt_http_server_close(w->http, NULL, NULL);
    /* after the server: its requests' admin jobs were let go by their abort */
    bt_keys_port_close(w->keys_port);
    w->keys_port = NULL;
    if (w->up) bt_upstream_free(w->up);
    w->http = NULL;
    w->up = NULL;
    bt_redis_free(w->redis);
    w->redis = NULL;
    bt_learn_scratch_free(w->learn);
    w->learn = NULL;
    bt_keytab_unref(w->keytab);
    w->keytab = NULL;
}
