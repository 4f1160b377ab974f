#include "serve/serve.h"

#include <arpa/inet.h>
#include <errno.h>
#include <malloc.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "exec/exec.h"
#include "core/log.h"
#include "route/health.h"
#include "serve/breakers.h"
#include "serve/worker.h"
#include "store/keys.h"

enum { CMD_DRAIN = 1, CMD_STOP = 2, CMD_CONFIG = 4 };

struct serve {
    uv_loop_t *loop;               /* main thread's loop: signals */
    struct bt_config *cfg;         /* main's ref to the current snapshot */
    const char *path;
    struct bt_config_load_opts opts; /* the command line's part, applied at every load */
    struct bt_worker *workers;
    uint32_t nworkers;
    _Atomic(struct bt_config *) *pending; /* per worker: next snapshot to adopt */
    atomic_uint conn_count;
    uv_signal_t sigterm, sigint, sighup, sigusr1;
    uv_timer_t drain_timer;
    bool draining;
    char host[256];
    uint16_t port;
    atomic_int running;            /* workers still running */
    uv_mutex_t reload_lock;        /* serialises reloads and log reopening */
    atomic_uint reloads_ok, reloads_failed;
    struct bt_metrics *metrics;
    uv_async_t worker_exit;        /* a worker finished */
    int probe_fd;                  /* holds the address until worker 0 binds; -1 none */
    struct bt_keys *keys;          /* the key service (store.sqlite), started before workers */
    char store_path[4096];         /* the store file in use (a reload does not change it) */
    struct bt_breaker_sync *breakers; /* breakers shared through store.redis; NULL: none */
};

/* ---- workers ---- */

static void drained(void *loop)
{
    uv_stop(loop);
}

static void stop_now(uv_timer_t *t)
{
    uv_stop(t->loop);
}

static void worker_wake(uv_async_t *a)
{
    struct bt_worker *w = a->data;
    struct serve *s = uv_loop_get_data(&w->loop);
    int cmd = atomic_exchange(&w->command, 0);
    if (cmd & CMD_CONFIG) {
        struct bt_config *next = atomic_exchange(&s->pending[w->index], NULL);
        if (next) {
            struct bt_config *old = w->cfg;
            w->cfg = next;
            bt_config_unref(old);
        }
    }
    if (cmd & CMD_STOP) {
        /* End what still runs with an error the client can see, let those last
         * bytes drain (at most a second), then stop. */
        atomic_store(&w->draining, true);
        bt_exec_shutdown_all(w);
        bt_http_server_drain(w->http, drained, &w->loop);
        uv_timer_start(&w->stop_timer, stop_now, 1000, 0);
    } else if (cmd & CMD_DRAIN) {
        atomic_store(&w->draining, true);
        /* The server answers in-flight requests with Connection: close and stops
         * the loop once the last connection is gone. */
        bt_http_server_drain(w->http, drained, &w->loop);
    }
}

static void close_walk(uv_handle_t *h, void *arg)
{
    (void)arg;
    if (!uv_is_closing(h)) uv_close(h, NULL);
}

static void worker_main(void *arg)
{
    struct bt_worker *w = arg;
    struct serve *s = uv_loop_get_data(&w->loop);
    enum bt_err open_err = bt_worker_open(w, &s->conn_count);
    /* Workers start one after another, so only worker 0 sees the probe: the
     * address is free from here to its bind a few system calls later. */
    if (s->probe_fd >= 0) {
        close(s->probe_fd);
        s->probe_fd = -1;
    }
    if (open_err) w->listen_err = BT_ENOMEM;
    else w->listen_err = bt_http_server_listen(w->http, s->host, s->port, true);
    if (w->listen_err == 0 && s->port == 0) s->port = bt_http_server_port(w->http);
    uv_timer_init(&w->loop, &w->stop_timer);
    uv_unref((uv_handle_t *)&w->stop_timer);
    uv_async_init(&w->loop, &w->wake, worker_wake);
    w->wake.data = w;
    uv_sem_post(&w->started);
    if (w->listen_err == 0) uv_run(&w->loop, UV_RUN_DEFAULT);
    bt_worker_close(w);
    uv_mutex_lock(&w->wake_lock);
    w->wake_closed = true;
    uv_mutex_unlock(&w->wake_lock);
    uv_run(&w->loop, UV_RUN_NOWAIT);
    uv_walk(&w->loop, close_walk, NULL);
    uv_run(&w->loop, UV_RUN_DEFAULT);
    if (uv_loop_close(&w->loop)) bt_warn("worker %d: loop not clean at exit", w->index);
    atomic_fetch_sub(&s->running, 1);
    uv_async_send(&s->worker_exit);
}

static void send_all(struct serve *s, int cmd)
{
    for (uint32_t i = 0; i < s->nworkers; i++) {
        struct bt_worker *w = &s->workers[i];
        atomic_fetch_or(&w->command, cmd);
        uv_mutex_lock(&w->wake_lock);
        if (w->started_ok && !w->wake_closed) uv_async_send(&w->wake);
        uv_mutex_unlock(&w->wake_lock);
    }
}

/* ---- signals ---- */

static void stop_main(struct serve *s)
{
    uv_signal_stop(&s->sigterm);
    uv_signal_stop(&s->sigint);
    uv_signal_stop(&s->sighup);
    uv_signal_stop(&s->sigusr1);
}

static void on_worker_exit(uv_async_t *a)
{
    struct serve *s = a->data;
    if (atomic_load(&s->running) == 0) {
        stop_main(s);
        uv_timer_stop(&s->drain_timer);
        uv_stop(s->loop);
    }
}

static void on_drain_timeout(uv_timer_t *t)
{
    struct serve *s = t->data;
    bt_warn("drain timeout reached: closing the remaining connections");
    send_all(s, CMD_STOP);
}

static void on_term(uv_signal_t *sig, int signum)
{
    struct serve *s = sig->data;
    if (s->draining) {
        bt_warn("second signal: stopping now");
        send_all(s, CMD_STOP);
        return;
    }
    s->draining = true;
    bt_info("signal %d: draining (up to %llu ms)", signum,
            (unsigned long long)s->cfg->server.drain_timeout_ms);
    send_all(s, CMD_DRAIN);
    uv_timer_start(&s->drain_timer, on_drain_timeout, s->cfg->server.drain_timeout_ms, 0);
}

static void log_diags(const struct bt_config_diags *d, const char *path)
{
    for (size_t i = 0; i < d->n; i++) {
        const struct bt_config_diag *g = &d->items[i];
        const char *kind = g->is_error ? "error" : "warning", *file = d->path ? d->path : path;
        if (g->line > 0)
            bt_log(g->is_error ? BT_LOG_ERROR : BT_LOG_WARN, "%s:%d:%d: %s: %s", file, g->line,
                   g->col, kind, g->msg);
        else /* not tied to a line, as bt_config_diags_print writes it */
            bt_log(g->is_error ? BT_LOG_ERROR : BT_LOG_WARN, "%s: %s: %s", file, kind, g->msg);
    }
}

/* True when host:port names the same socket address as host2:port2 (both as
 * bt_config_parse_listen wrote them; IPv6 may be spelt in several ways). */
static bool same_address(const char *host, uint16_t port, const char *host2, uint16_t port2)
{
    if (port != port2) return false;
    unsigned char a[16], b[16];
    if (inet_pton(AF_INET, host, a) == 1 && inet_pton(AF_INET, host2, b) == 1)
        return memcmp(a, b, 4) == 0;
    if (inet_pton(AF_INET6, host, a) == 1 && inet_pton(AF_INET6, host2, b) == 1)
        return memcmp(a, b, 16) == 0;
    return strcmp(host, host2) == 0;
}

/* Loads the file again and hands the new snapshot to every worker. Callable from
 * the main thread (SIGHUP) and from workers (POST /admin/reload): serialised by
 * reload_lock. Returns 0 or -1 with a reason in msg. */
static int reload(struct serve *s, char *msg, size_t cap)
{
    struct bt_config *next = NULL;
    struct bt_config_diags d = {0};
    enum bt_err err = bt_config_load_opts(s->path, &s->opts, &next, &d);
    log_diags(&d, s->path);
    int rc = 0;
    uv_mutex_lock(&s->reload_lock);
    char why[400];
    /* The loader judged the address in the file; the one in use may differ
     * (a changed server.listen waits for a restart) and it is the one exposed. */
    if (!err && !bt_config_exposure_ok(next, s->host, "the address in use", why, sizeof(why))) {
        bt_error("%s", why);
        snprintf(msg, cap, "%s: %s", s->path, why);
        bt_error("reload refused: the previous configuration keeps serving");
        bt_config_unref(next);
        atomic_fetch_add(&s->reloads_failed, 1);
        bt_metrics_reload(s->metrics, false);
        rc = -1;
        goto out;
    }
    if (err) {
        const struct bt_config_diag *first = NULL;
        for (size_t i = 0; i < d.n && !first; i++)
            if (d.items[i].is_error) first = &d.items[i];
        if (first && first->line > 0)
            snprintf(msg, cap, "%s:%d:%d: %s", s->path, first->line, first->col, first->msg);
        else if (first) /* not tied to a line: --listen, an unreadable file */
            snprintf(msg, cap, "%s: %s", s->path, first->msg);
        else
            snprintf(msg, cap, "%s: %s", s->path, bt_strerror(err));
        bt_error("reload refused: %s has errors; the previous configuration keeps serving",
                 s->path);
        atomic_fetch_add(&s->reloads_failed, 1);
        bt_metrics_reload(s->metrics, false);
        rc = -1;
        goto out;
    }
    /* Against the address in use, not the previous file: a listen changed and
     * then restored is back to what runs. (With --listen the loader put the
     * flag's address in `next`, so the file's is not compared at all.) */
    if (!same_address(next->server.listen_host, next->server.listen_port, s->host, s->port)) {
        bool v6 = strchr(next->server.listen_host, ':'), v6b = strchr(s->host, ':');
        bt_warn("reload: server.listen changed to %s%s%s:%u; baton keeps listening on %s%s%s:%u "
                "until a restart",
                v6 ? "[" : "", next->server.listen_host, v6 ? "]" : "",
                (unsigned)next->server.listen_port, v6b ? "[" : "", s->host, v6b ? "]" : "",
                (unsigned)s->port);
    }
    if (s->keys && next->store.sqlite && strcmp(next->store.sqlite, s->store_path) != 0)
        bt_warn("reload: store.sqlite changed to %s; baton keeps using %s until a restart",
                next->store.sqlite, s->store_path);
    bt_health_attach(next); /* deployments that still exist keep their state */
    for (uint32_t i = 0; i < s->nworkers; i++) {
        struct bt_config *old = atomic_exchange(&s->pending[i], bt_config_ref(next));
        if (old) bt_config_unref(old);
    }
    send_all(s, CMD_CONFIG);
    bt_config_unref(s->cfg);
    s->cfg = next;
    atomic_fetch_add(&s->reloads_ok, 1);
    bt_metrics_reload(s->metrics, true);
    snprintf(msg, cap, "configuration reloaded from %s (%zu models)", s->path, next->nmodels);
    bt_info("%s", msg);
out:
    uv_mutex_unlock(&s->reload_lock);
    bt_config_diags_free(&d);
    return rc;
}

static int64_t open_connections(void *ud)
{
    struct serve *s = ud;
    return (int64_t)atomic_load(&s->conn_count);
}

static int worker_reload(void *ctx, char *msg, size_t cap)
{
    return reload(ctx, msg, cap);
}

static void on_hup(uv_signal_t *sig, int signum)
{
    (void)signum;
    char msg[512];
    reload(sig->data, msg, sizeof(msg));
}

static void on_usr1(uv_signal_t *sig, int signum)
{
    (void)signum;
    struct serve *s = sig->data;
    uv_mutex_lock(&s->reload_lock);
    int rc = bt_log_access_open(s->cfg->log.access);
    if (rc) bt_error("cannot reopen access log %s: %s", s->cfg->log.access, strerror(-rc));
    int rc2 = bt_log_open(s->cfg->log.file);
    if (rc2) bt_error("cannot reopen log file %s: %s", s->cfg->log.file, strerror(-rc2));
    uv_mutex_unlock(&s->reload_lock);
    if (!rc && !rc2) bt_info("logs reopened");
}

/* Every worker listens on its own socket with SO_REUSEPORT, and the kernel
 * spreads connections over them. The same option would let a second baton (or
 * any program of the same user that sets it) bind the address too and silently
 * take part of the connections. So unless server.reuse_port asks for sharing
 * (a zero-downtime binary swap), a probe socket WITHOUT SO_REUSEPORT is bound
 * first: the kernel refuses it with EADDRINUSE while any socket, sharing or
 * not, listens there. The probe is kept until worker 0 is about to bind, so
 * the address is unguarded only for the few system calls between that close
 * and the bind; another instance would have to probe and then bind inside that
 * window to slip in. (Holding it longer is not possible: a socket without
 * SO_REUSEPORT on the address makes every SO_REUSEPORT bind fail.) `baton
 * check` does not probe: it runs while the server it checks for is up.
 * Returns the bound probe, or -1 after logging why the address cannot be used. */
static int probe_address(const char *host, uint16_t port)
{
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof(ss));
    int family = AF_INET;
    if (uv_ip4_addr(host, port, (struct sockaddr_in *)&ss) != 0) {
        family = AF_INET6;
        if (uv_ip6_addr(host, port, (struct sockaddr_in6 *)&ss) != 0) return -1;
    }
    int fd = socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        bt_error("cannot listen on %s:%u: socket: %s", host, (unsigned)port, strerror(errno));
        return -1;
    }
    int one = 1;
    /* as the workers do: connections of a previous run in TIME_WAIT are no holder */
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    int zero = 0; /* dual-stack like the workers' sockets (libuv's default bind) */
    if (family == AF_INET6) setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof(zero));
    socklen_t len = family == AF_INET ? sizeof(struct sockaddr_in) : sizeof(struct sockaddr_in6);
    if (bind(fd, (struct sockaddr *)&ss, len) == 0) return fd;
    int e = errno;
    close(fd);
    if (e == EADDRINUSE)
        bt_error("cannot listen on %s:%u: address already in use (another process, perhaps "
                 "another baton, listens there). To share it on purpose, e.g. for a "
                 "zero-downtime binary swap, set server.reuse_port: true or pass --reuse-port.",
                 host, (unsigned)port);
    else
        bt_error("cannot listen on %s:%u: %s", host, (unsigned)port, strerror(e));
    return -1;
}

/* glibc gives freed memory back to the kernel as soon as an arena's free top
 * passes 128 KiB, and maps blocks above a threshold that adapts. A request with
 * a 50 KB body frees about that much, so every such request paid an madvise and
 * page faults on the next one. Keeping a few MiB per arena (worker threads each
 * have one) and mapping only blocks of 1 MiB and more makes buffers reusable;
 * memory peaks are still returned, above the threshold. */
static void tune_malloc(void)
{
#ifdef M_TRIM_THRESHOLD
    mallopt(M_TRIM_THRESHOLD, 4 << 20);
    mallopt(M_MMAP_THRESHOLD, 1 << 20);
#endif
}

int bt_serve_main(const char *config_path, const struct bt_config_load_opts *opts)
{
    tune_malloc();
    struct serve s;
    memset(&s, 0, sizeof(s));
    s.probe_fd = -1;
    s.path = config_path;
    if (opts) s.opts = *opts;
    uv_mutex_init(&s.reload_lock);
    struct bt_config_diags d = {0};
    enum bt_err err = bt_config_load_opts(config_path, &s.opts, &s.cfg, &d);
    bt_config_diags_print(&d, stderr);
    bt_config_diags_free(&d);
    if (err) {
        fprintf(stderr, "baton: %s: configuration has errors; not starting\n", config_path);
        return 1;
    }
    bt_health_attach(s.cfg);
    int rc = 1;
    if (s.cfg->log.level) {
        int lv = bt_log_level_parse(s.cfg->log.level);
        if (lv >= 0) bt_log_set_level((enum bt_log_level)lv);
    }
    if (s.cfg->log.file && bt_log_open(s.cfg->log.file)) {
        bt_error("cannot open log file %s", s.cfg->log.file);
        goto out;
    }
    if (bt_log_access_open(s.cfg->log.access)) {
        bt_error("cannot open access log %s", s.cfg->log.access);
        goto out;
    }
    /* --listen is already in the snapshot, and the loader refused what serve
     * must not do (a non-loopback address without a key, unusable log paths). */
    snprintf(s.host, sizeof(s.host), "%s", s.cfg->server.listen_host);
    s.port = s.cfg->server.listen_port;
    if (!s.cfg->auth.master_key && bt_config_is_loopback(s.host))
        bt_warn("no master key set: serving without authentication, on loopback (%s) only", s.host);
    if (!s.cfg->server.reuse_port && (s.probe_fd = probe_address(s.host, s.port)) < 0) goto out;
    if (s.cfg->store.sqlite) {
        char why[600];
        struct bt_store_where where = {s.cfg->store.sqlite, s.cfg->store.postgres};
        struct bt_keys_opts ko = {.ledger_interval_ms = s.cfg->store.ledger_interval_ms,
                                  .ledger_batch = s.cfg->store.ledger_batch,
                                  .ledger_retention_ms = s.cfg->store.ledger_retention_ms};
        if (bt_keys_start(&where, &ko, &s.keys, why, sizeof(why))) {
            bt_error("cannot open the store: %s", why);
            goto out;
        }
        snprintf(s.store_path, sizeof(s.store_path), "%s", s.cfg->store.sqlite);
        if (s.cfg->store.postgres) {
            char shown[512];
            bt_str_mask_password(s.cfg->store.postgres, shown, sizeof(shown));
            bt_info("store: postgres %s", shown);
        } else {
            bt_info("store: sqlite %s", s.cfg->store.sqlite);
        }
    }
    if (s.cfg->store.redis) {
        char shown[512];
        bt_str_mask_password(s.cfg->store.redis, shown, sizeof(shown));
        if (!(s.breakers = bt_breaker_sync_start(s.cfg->store.redis))) {
            bt_error("store.redis: cannot start the breakers' sync");
            goto out;
        }
        bt_info("store: redis %s (limits and breakers shared by every instance)", shown);
    }
    signal(SIGPIPE, SIG_IGN);
    s.loop = uv_default_loop();
    s.nworkers = s.cfg->server.workers ? s.cfg->server.workers
                                       : (uint32_t)uv_available_parallelism();
    if (s.nworkers == 0) s.nworkers = 1;
    s.workers = calloc(s.nworkers, sizeof(*s.workers));
    s.pending = calloc(s.nworkers, sizeof(*s.pending));
    if (!s.workers || !s.pending) goto out;
    struct bt_metrics_opts mo = {.shards = s.nworkers};
    if (bt_metrics_create(&mo, &s.metrics)) goto out;
    bt_metrics_set_connections_fn(s.metrics, open_connections, &s);
    uv_async_init(s.loop, &s.worker_exit, on_worker_exit);
    s.worker_exit.data = &s;
    uv_timer_init(s.loop, &s.drain_timer);
    s.drain_timer.data = &s;
    /* The signal handlers go in before the first worker listens: a SIGHUP or
     * SIGTERM sent as soon as the port answers must reach them, not the default
     * action (which ends the process). They run once the loop runs, below. */
    uv_signal_init(s.loop, &s.sigterm);
    uv_signal_init(s.loop, &s.sigint);
    uv_signal_init(s.loop, &s.sighup);
    uv_signal_init(s.loop, &s.sigusr1);
    s.sigterm.data = s.sigint.data = s.sighup.data = s.sigusr1.data = &s;
    uv_signal_start(&s.sigterm, on_term, SIGTERM);
    uv_signal_start(&s.sigint, on_term, SIGINT);
    uv_signal_start(&s.sighup, on_hup, SIGHUP);
    uv_signal_start(&s.sigusr1, on_usr1, SIGUSR1);
    uint32_t started = 0;
    for (uint32_t i = 0; i < s.nworkers; i++) {
        struct bt_worker *w = &s.workers[i];
        w->index = (int)i;
        w->reload = worker_reload;
        w->metrics = s.metrics;
        w->mshard = bt_metrics_shard(s.metrics, i);
        w->reload_ctx = &s;
        w->keys = s.keys;
        w->cfg = bt_config_ref(s.cfg);
        uv_loop_init(&w->loop);
        uv_loop_set_data(&w->loop, &s);
        uv_sem_init(&w->started, 0);
        uv_mutex_init(&w->wake_lock);
        atomic_fetch_add(&s.running, 1);
        if (uv_thread_create(&w->thread, worker_main, w)) {
            atomic_fetch_sub(&s.running, 1);
            bt_config_unref(w->cfg);
            uv_loop_close(&w->loop);
            bt_error("cannot start worker thread %u", i);
            break;
        }
        uv_sem_wait(&w->started);
        w->started_ok = true;
        started++;
        if (w->listen_err) break;
    }
    bool ok = started == s.nworkers;
    for (uint32_t i = 0; i < started; i++)
        if (s.workers[i].listen_err) ok = false;
    if (!ok) {
        bt_error("cannot listen on %s:%u", s.host, s.port);
        stop_main(&s); /* the loop runs only until the workers are gone */
        send_all(&s, CMD_STOP);
    } else {
        bt_info("baton listening on %s:%u with %u worker%s, %zu models", s.host, s.port,
                s.nworkers, s.nworkers == 1 ? "" : "s", s.cfg->nmodels);
        rc = 0;
    }
    if (atomic_load(&s.running) > 0) uv_run(s.loop, UV_RUN_DEFAULT);
    for (uint32_t i = 0; i < started; i++) {
        uv_thread_join(&s.workers[i].thread);
        uv_sem_destroy(&s.workers[i].started);
        uv_mutex_destroy(&s.workers[i].wake_lock);
        bt_config_unref(s.workers[i].cfg);
        struct bt_config *p = atomic_exchange(&s.pending[i], NULL);
        if (p) bt_config_unref(p);
    }
    uv_walk(s.loop, close_walk, NULL);
    uv_run(s.loop, UV_RUN_DEFAULT);
    uv_loop_close(s.loop);
    if (rc == 0) bt_info("baton stopped");
out:
    if (s.probe_fd >= 0) close(s.probe_fd); /* worker 0 never ran */
    bt_keys_stop(s.keys); /* after the workers: they borrow it */
    bt_breaker_sync_stop(s.breakers);
    free(s.workers);
    free(s.pending);
    bt_metrics_free(s.metrics);
    if (s.cfg) bt_config_unref(s.cfg);
    bt_log_access_open(NULL);
    bt_log_open(NULL);
    uv_mutex_destroy(&s.reload_lock);
    return rc;
}
