/* The sections about baton itself: server (listen address, limits, timeouts,
 * upstream pools), auth, metrics and log; and the checks made on the whole
 * result, which are what `baton serve` would refuse at start (an exposed
 * address without a master key, a log file it cannot open), so `baton check`,
 * a start and a reload give the same verdict. */
#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config/values.h"
#include "core/buf.h"
#include "core/log.h"

/* ---- sections ---- */

/* Sets server.listen from `s` (the key's value, or --listen when v is NULL). */
bool bt_cfg_set_listen(struct bt_cfg_loader *L, const struct bt_ynode *v, const char *what,
                       const char *s, size_t len)
{
    char host[BT_LISTEN_HOST_MAX], why[300];
    uint16_t port;
    if (!bt_config_parse_listen(s, len, what, host, sizeof(host), &port, why, sizeof(why))) {
        bt_cfg_err(L, v, "%s", why);
        return false;
    }
    char *h = bt_cfg_dup(L, host, strlen(host));
    if (!h) return false;
    free(L->cfg->server.listen_host);
    L->cfg->server.listen_host = h;
    L->cfg->server.listen_port = port;
    return true;
}

void bt_cfg_load_server(struct bt_cfg_loader *L, const struct bt_ynode *n)
{
    static const char *const keys[] = {
        "listen",         "workers",        "max_connections",          "max_header_bytes",
        "max_body_bytes", "header_timeout", "idle_timeout",             "drain_timeout",
        "upstream_max_connections",         "upstream_max_idle",        "upstream_max_queued",
        "reuse_port",     NULL};
    const struct bt_ynode *m = bt_cfg_as_map(L, n, "server");
    if (!m) return;
    struct bt_config *c = L->cfg;
    bool idle_written = false;
    for (size_t i = 0; i + 1 < m->n; i += 2) {
        const struct bt_ynode *k = m->items[i], *v = m->items[i + 1];
        char what[64];
        int idx = bt_cfg_key_index(L, k, keys, "server");
        if (idx < 0) continue;
        snprintf(what, sizeof(what), "server.%s", keys[idx]);
        switch (idx) {
        case 0: {
            char *s;
            size_t len;
            if (bt_cfg_get_string(L, v, what, &s, &len, NULL)) {
                bt_cfg_set_listen(L, v, "server.listen", s, len);
                free(s);
            }
            L->listen_node = v;
            break;
        }
        case 1: {
            uint64_t w = c->server.workers;
            if (bt_cfg_get_u64(L, v, what, 0, 1024, &w)) c->server.workers = (uint32_t)w;
            break;
        }
        case 2: {
            uint64_t w = c->server.max_connections;
            if (bt_cfg_get_u64(L, v, what, 1, 1000000, &w)) c->server.max_connections = (uint32_t)w;
            break;
        }
        case 3:
            bt_cfg_get_size(L, v, what, 1024, 16u << 20, &c->server.max_header_bytes);
            break;
        case 4:
            bt_cfg_get_size(L, v, what, 1024, 1u << 30, &c->server.max_body_bytes);
            break;
        case 5:
            bt_cfg_get_duration(L, v, what, 1, BT_CFG_DAY_MS, &c->server.header_timeout_ms);
            break;
        case 6:
            bt_cfg_get_duration(L, v, what, 1, BT_CFG_DAY_MS, &c->server.idle_timeout_ms);
            break;
        case 7:
            bt_cfg_get_duration(L, v, what, 0, BT_CFG_DAY_MS, &c->server.drain_timeout_ms);
            break;
        case 8:
        case 9:
        case 10: {
            uint32_t *dst = idx == 8   ? &c->server.upstream_max_connections
                            : idx == 9 ? &c->server.upstream_max_idle
                                       : &c->server.upstream_max_queued;
            uint64_t w = *dst;
            if (bt_cfg_get_u64(L, v, what, 1, 1000000, &w)) *dst = (uint32_t)w;
            idle_written |= idx == 9;
            break;
        }
        case 11:
            bt_cfg_get_bool(L, v, what, &c->server.reuse_port);
            break;
        }
    }
    if (!idle_written) c->server.upstream_max_idle = c->server.upstream_max_connections;
}

void bt_cfg_load_auth(struct bt_cfg_loader *L, const struct bt_ynode *n)
{
    static const char *const keys[] = {"master_key", "allow_anonymous", NULL};
    const struct bt_ynode *m = bt_cfg_as_map(L, n, "auth");
    if (!m) return;
    struct bt_config *c = L->cfg;
    for (size_t i = 0; i + 1 < m->n; i += 2) {
        const struct bt_ynode *k = m->items[i], *v = m->items[i + 1];
        int idx = bt_cfg_key_index(L, k, keys, "auth");
        if (idx == 0) {
            char *s;
            size_t len;
            if (!bt_cfg_get_string(L, v, "auth.master_key", &s, &len, NULL)) continue;
            /* An empty key (e.g. an unset ${VAR}) is no key: serve then applies
             * its loopback / allow_anonymous rule instead of accepting "". */
            if (len == 0) free(s), s = NULL;
            free(c->auth.master_key);
            c->auth.master_key = s;
        } else if (idx == 1) {
            bt_cfg_get_bool(L, v, "auth.allow_anonymous", &c->auth.allow_anonymous);
            L->anon_node = v;
        }
    }
}

void bt_cfg_load_metrics(struct bt_cfg_loader *L, const struct bt_ynode *n)
{
    static const char *const keys[] = {"require_key", NULL};
    const struct bt_ynode *m = bt_cfg_as_map(L, n, "metrics");
    if (!m) return;
    for (size_t i = 0; i + 1 < m->n; i += 2) {
        const struct bt_ynode *k = m->items[i], *v = m->items[i + 1];
        if (bt_cfg_key_index(L, k, keys, "metrics") == 0) {
            bt_cfg_get_bool(L, v, "metrics.require_key", &L->cfg->metrics.require_key);
            L->require_key_node = v;
        }
    }
}

void bt_cfg_load_log(struct bt_cfg_loader *L, const struct bt_ynode *n)
{
    static const char *const keys[] = {"level", "access", "file", NULL};
    const struct bt_ynode *m = bt_cfg_as_map(L, n, "log");
    if (!m) return;
    struct bt_config *c = L->cfg;
    for (size_t i = 0; i + 1 < m->n; i += 2) {
        const struct bt_ynode *k = m->items[i], *v = m->items[i + 1];
        int idx = bt_cfg_key_index(L, k, keys, "log");
        if (idx < 0) continue;
        char what[32];
        snprintf(what, sizeof(what), "log.%s", keys[idx]);
        char *s;
        size_t len;
        if (!bt_cfg_get_string(L, v, what, &s, &len, NULL)) continue;
        if (idx == 0) {
            if (len == 0) { /* keep the default */
                free(s);
                continue;
            }
            if (bt_log_level_parse(s) < 0) {
                bt_cfg_err(L, v, "log.level must be debug, info, warn or error (got \"%.*s\")",
                           BT_CFG_SHOWN(len), s);
                free(s);
                continue;
            }
            free(c->log.level);
            c->log.level = s;
        } else {
            char **dst = idx == 1 ? &c->log.access : &c->log.file;
            if (idx == 1)
                L->log_access_node = v;
            else
                L->log_file_node = v;
            if (len == 0) free(s), s = NULL; /* empty: stderr */
            free(*dst);
            *dst = s;
        }
    }
}

/* A path written in the file, taken from the config file's directory when
 * relative (malloc'd), so the server's working directory does not matter. */
static char *beside_config(struct bt_cfg_loader *L, const char *path)
{
    if (path[0] == '/') return bt_cfg_dup(L, path, strlen(path));
    const char *cfg = L->cfg->path ? L->cfg->path : "";
    const char *slash = strrchr(cfg, '/');
    struct bt_buf b;
    bt_buf_init(&b, 8192);
    enum bt_err e = slash ? bt_buf_printf(&b, "%.*s/%s", (int)(slash - cfg), cfg, path)
                          : bt_buf_append_c(&b, path);
    if (!e) e = bt_buf_cstr(&b);
    if (e) {
        bt_buf_free(&b);
        L->oom = true;
        return NULL;
    }
    return bt_buf_steal(&b, NULL);
}

void bt_cfg_load_store(struct bt_cfg_loader *L, const struct bt_ynode *n)
{
    static const char *const keys[] = {"sqlite",          "postgres",     "redis",
                                       "redis_unavailable", "ledger_interval", "ledger_batch",
                                       "redis_timeout",   "admin_timeout", "ledger_retention",
                                       NULL};
    const struct bt_ynode *m = bt_cfg_as_map(L, n, "store");
    if (!m) return;
    for (size_t i = 0; i + 1 < m->n; i += 2) {
        const struct bt_ynode *k = m->items[i], *v = m->items[i + 1];
        int idx = bt_cfg_key_index(L, k, keys, "store");
        if (idx == 4) {
            bt_cfg_get_duration(L, v, "store.ledger_interval", 10, 60000,
                                &L->cfg->store.ledger_interval_ms);
            continue;
        }
        if (idx == 8) {
            /* Budgets sum the current period's spend from the ledger: a
             * month's rows must survive, and a month has up to 31 days. */
            uint64_t ms = 0;
            if (!bt_cfg_get_duration(L, v, "store.ledger_retention", 0, UINT64_MAX, &ms)) continue;
            if (ms < 31ull * 86400000 || ms > 36500ull * 86400000)
                bt_cfg_err(L, v,
                           "store.ledger_retention must be from 31d to 36500d: budgets read the "
                           "current month's spend from the ledger, so a month (up to 31 days) "
                           "must be kept; leave it out to keep the ledger forever");
            else L->cfg->store.ledger_retention_ms = ms;
            continue;
        }
        if (idx == 7) {
            bt_cfg_get_duration(L, v, "store.admin_timeout", 100, 600000,
                                &L->cfg->store.admin_timeout_ms);
            continue;
        }
        if (idx == 6) {
            bt_cfg_get_duration(L, v, "store.redis_timeout", 10, 60000,
                                &L->cfg->store.redis_timeout_ms);
            continue;
        }
        if (idx == 5) {
            uint64_t b;
            if (bt_cfg_get_u64(L, v, "store.ledger_batch", 1, 100000, &b))
                L->cfg->store.ledger_batch = (uint32_t)b;
            continue;
        }
        char *s;
        size_t len;
        if (idx == 1) {
            if (!bt_cfg_get_string(L, v, "store.postgres", &s, &len, NULL)) continue;
            if (len < 11 || (strncmp(s, "postgresql://", 13) != 0 && strncmp(s, "postgres://", 11) != 0)) {
                bt_cfg_err(L, v, "store.postgres must be a URI such as "
                                 "postgresql://USER:PASSWORD@HOST:5432/DB");
                free(s);
                continue;
            }
            free(L->cfg->store.postgres);
            L->cfg->store.postgres = s;
            continue;
        }
        if (idx == 2) {
            if (!bt_cfg_get_string(L, v, "store.redis", &s, &len, NULL)) continue;
            char host[256], pw[256], why[128];
            int port, db;
            if (!bt_parse_redis_url(s, host, sizeof(host), &port, &db, pw, sizeof(pw), why,
                                    sizeof(why))) {
                bt_cfg_err(L, v, "store.redis: %s (e.g. redis://127.0.0.1:6379/0)", why);
                free(s);
                continue;
            }
            free(L->cfg->store.redis);
            L->cfg->store.redis = s;
            continue;
        }
        if (idx == 3) {
            if (v->kind == BT_Y_SCALAR && strcmp(v->text, "open") == 0) L->cfg->store.redis_closed = false;
            else if (v->kind == BT_Y_SCALAR && strcmp(v->text, "closed") == 0) L->cfg->store.redis_closed = true;
            else bt_cfg_err(L, v, "store.redis_unavailable must be open or closed");
            continue;
        }
        if (idx != 0) continue;
        if (!bt_cfg_get_string(L, v, "store.sqlite", &s, &len, NULL)) continue;
        if (len == 0 || memchr(s, 0, len)) {
            if (len) bt_cfg_err(L, v, "store.sqlite must be a file path");
            free(s); /* empty: the default */
            continue;
        }
        char *p = beside_config(L, s);
        free(s);
        if (!p) return;
        free(L->cfg->store.sqlite);
        L->cfg->store.sqlite = p;
        L->store_node = v;
    }
}

/* ---- checks on the whole file ----
 *
 * What `baton serve` would refuse at start, decided here so that `baton check`
 * (the systemd ExecStartPre), a start and a reload give the same verdict. */

bool bt_config_is_loopback(const char *host)
{
    if (!host) return false;
    if (strcmp(host, "localhost") == 0) return true;
    unsigned char a[16];
    if (inet_pton(AF_INET, host, a) == 1) return a[0] == 127;
    static const unsigned char v6_loopback[16] = {[15] = 1};
    return inet_pton(AF_INET6, host, a) == 1 && memcmp(a, v6_loopback, 16) == 0;
}

bool bt_config_exposure_ok(const struct bt_config *c, const char *host, const char *what, char *why,
                           size_t whycap)
{
    if (c->auth.master_key || c->auth.allow_anonymous || bt_config_is_loopback(host)) return true;
    snprintf(why, whycap,
             "%s: refusing to serve on %s without a master key: set auth.master_key, listen on a "
             "loopback address, or set auth.allow_anonymous: true",
             what, host);
    return false;
}

/* serve opens log files for appending (creating them) at start and on SIGUSR1:
 * a path it cannot open is an error now, not a failed start. Looked at with
 * stat and access only, so checking creates nothing. */
static void check_log_path(struct bt_cfg_loader *L, const struct bt_ynode *v, const char *what,
                           const char *path)
{
    struct stat st;
    if (stat(path, &st) == 0) {
        if (S_ISDIR(st.st_mode))
            bt_cfg_err(L, v, "%s: %s is a directory, not a file", what, path);
        else if (access(path, W_OK) != 0)
            bt_cfg_err(L, v, "%s: cannot open %s for appending: %s", what, path, strerror(errno));
        return;
    }
    if (errno != ENOENT) {
        bt_cfg_err(L, v, "%s: cannot open %s: %s", what, path, strerror(errno));
        return;
    }
    char *dir = bt_cfg_dup(L, path, strlen(path));
    if (!dir) return;
    char *slash = strrchr(dir, '/');
    const char *d = dir;
    if (!slash)
        d = ".";
    else if (slash == dir)
        d = "/";
    else
        *slash = 0;
    if (access(d, W_OK | X_OK) != 0)
        bt_cfg_err(L, v, "%s: cannot create %s: %s", what, path,
                   errno == ENOENT ? "its directory does not exist" : strerror(errno));
    free(dir);
}

void bt_cfg_check_whole(struct bt_cfg_loader *L)
{
    struct bt_config *c = L->cfg;
    const char *what = L->opts->listen ? "--listen" : "server.listen";
    const struct bt_ynode *at = L->opts->listen ? NULL : L->listen_node;
    char why[400];
    if (!bt_config_exposure_ok(c, c->server.listen_host, what, why, sizeof(why)))
        bt_cfg_err(L, at, "%s", why);
    else if (!c->auth.master_key && !bt_config_is_loopback(c->server.listen_host))
        bt_cfg_warn(L, L->anon_node,
                    "no master key and auth.allow_anonymous is true: anyone who reaches %s can use "
                    "every model",
                    c->server.listen_host);
    if (c->metrics.require_key && !c->auth.master_key)
        bt_cfg_warn(L, L->require_key_node,
                    "metrics.require_key has no effect without auth.master_key: GET /metrics stays "
                    "open");
    if (!c->store.ledger_interval_ms) c->store.ledger_interval_ms = 1000;
    if (!c->store.ledger_batch) c->store.ledger_batch = 500;
    if (!c->store.redis_timeout_ms) c->store.redis_timeout_ms = 500;
    if (!c->store.admin_timeout_ms) c->store.admin_timeout_ms = 10000;
    if (!c->store.sqlite) c->store.sqlite = beside_config(L, "baton.db");
    else check_log_path(L, L->store_node, "store.sqlite", c->store.sqlite);
    if (c->log.file) check_log_path(L, L->log_file_node, "log.file", c->log.file);
    if (c->log.access) check_log_path(L, L->log_access_node, "log.access", c->log.access);
}
