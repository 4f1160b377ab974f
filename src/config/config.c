/* Configuration loading and validation: the YAML tree from yaml.c is walked
 * against a fixed schema (docs/config.md) and turned into a struct bt_config
 * whose every string is malloc'd and owned by the snapshot.
 *
 * The walk never stops at the first problem: it reports as many as it can, each
 * at the line:column of the offending key or value, so a user fixes a file in
 * one round. Any error discards the snapshot. */
#include "config/config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config/load.h"
#include "config/values.h"
#include "config/yaml.h"
#include "core/buf.h"
#include "core/log.h"
#include "core/time.h"
#include "config/fwd.h"
#include "upstream/proxy.h"

/* ---- diagnostics ---- */

static void lmsg(struct bt_cfg_loader *L, bool is_error, const struct bt_ynode *at, const char *fmt,
                 va_list ap) __attribute__((format(printf, 4, 0)));
static void lmsg(struct bt_cfg_loader *L, bool is_error, const struct bt_ynode *at, const char *fmt,
                 va_list ap)
{
    if (is_error) L->nerrors++;
    if (bt_config_diag_addv(L->diags, is_error, at ? at->line : 0, at ? at->col : 0, fmt, ap))
        L->oom = true;
}

void bt_cfg_err(struct bt_cfg_loader *L, const struct bt_ynode *at, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    lmsg(L, true, at, fmt, ap);
    va_end(ap);
}

void bt_cfg_warn(struct bt_cfg_loader *L, const struct bt_ynode *at, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    lmsg(L, false, at, fmt, ap);
    va_end(ap);
}

const char *bt_cfg_kind_name(const struct bt_ynode *n)
{
    switch (n->kind) {
    case BT_Y_MAP:
        return "a mapping";
    case BT_Y_SEQ:
        return "a list";
    default:
        return "a scalar";
    }
}

char *bt_cfg_dup(struct bt_cfg_loader *L, const char *s, size_t len)
{
    char *d = bt_str_dup((struct bt_str){s, len});
    if (!d) L->oom = true;
    return d;
}

/* ---- keys ---- */

/* Index of key `k` in the NULL-terminated `keys`, or -1 after reporting an
 * unknown (or non-scalar) key. `what` names the enclosing section. */
int bt_cfg_key_index(struct bt_cfg_loader *L, const struct bt_ynode *k, const char *const *keys,
                     const char *what)
{
    if (k->kind != BT_Y_SCALAR) {
        bt_cfg_err(L, k, "%s: keys must be plain names, not %s", what, bt_cfg_kind_name(k));
        return -1;
    }
    for (int i = 0; keys[i]; i++)
        if (strlen(keys[i]) == k->len && memcmp(keys[i], k->text, k->len) == 0) return i;
    /* Every key, whole: the lists are short and fixed, so the message is too. */
    struct bt_buf list;
    bt_buf_init(&list, 1024);
    enum bt_err e = BT_OK;
    for (int i = 0; keys[i] && !e; i++)
        e = bt_buf_printf(&list, "%s%s", i ? ", " : "", keys[i]);
    if (!e) e = bt_buf_cstr(&list);
    if (e) {
        L->oom = true; /* only ENOMEM: the longest list is under 300 bytes */
        bt_buf_free(&list);
        return -1;
    }
    bt_cfg_err(L, k, "unknown key \"%.*s\" in %s (expected one of: %s)", BT_CFG_SHOW(k), what,
               list.p);
    bt_buf_free(&list);
    return -1;
}

/* The mapping to walk, or NULL when n is null (an empty section: defaults) or
 * not a mapping (reported). */
const struct bt_ynode *bt_cfg_as_map(struct bt_cfg_loader *L, const struct bt_ynode *n,
                                     const char *what)
{
    if (!n || bt_ynode_is_null(n)) return NULL;
    if (n->kind != BT_Y_MAP) {
        bt_cfg_err(L, n, "%s must be a mapping (key: value lines), not %s", what,
                   bt_cfg_kind_name(n));
        return NULL;
    }
    return n;
}

/* Sets server.listen from `s` (the key's value, or --listen when v is NULL). */
static bool bt_cfg_set_listen(struct bt_cfg_loader *L, const struct bt_ynode *v, const char *what,
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

/* ---- sections ---- */

static void bt_cfg_load_server(struct bt_cfg_loader *L, const struct bt_ynode *n)
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

static void bt_cfg_load_auth(struct bt_cfg_loader *L, const struct bt_ynode *n)
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

static void bt_cfg_load_metrics(struct bt_cfg_loader *L, const struct bt_ynode *n)
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

static void bt_cfg_load_log(struct bt_cfg_loader *L, const struct bt_ynode *n)
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

static void load_root(struct bt_cfg_loader *L, const struct bt_ynode *root)
{
    static const char *const keys[] = {"server", "auth",    "log", "providers",
                                       "models", "metrics", NULL};
    if (!root || bt_ynode_is_null(root)) return; /* empty file: all defaults */
    if (root->kind != BT_Y_MAP) {
        bt_cfg_err(L, root,
                   "a config file is a mapping of sections (server, auth, log, providers, "
                   "models, metrics), not %s",
                   bt_cfg_kind_name(root));
        return;
    }
    const struct bt_ynode *sec[6] = {0};
    for (size_t i = 0; i + 1 < root->n; i += 2) {
        int idx = bt_cfg_key_index(L, root->items[i], keys, "the top level");
        if (idx >= 0) sec[idx] = root->items[i + 1];
    }
    /* Providers before models, whatever the order in the file. */
    bt_cfg_load_server(L, sec[0]);
    bt_cfg_load_auth(L, sec[1]);
    bt_cfg_load_log(L, sec[2]);
    bt_cfg_load_metrics(L, sec[5]);
    bt_cfg_load_providers(L, sec[3]);
    if (!L->oom) bt_cfg_load_models(L, sec[4]);
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

static void bt_cfg_check_whole(struct bt_cfg_loader *L)
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
    if (c->log.file) check_log_path(L, L->log_file_node, "log.file", c->log.file);
    if (c->log.access) check_log_path(L, L->log_access_node, "log.access", c->log.access);
}

/* ---- loading ---- */

static enum bt_err set_diag_path(struct bt_config_diags *d, const char *name)
{
    char *p = strdup(name);
    if (!p) return BT_ENOMEM;
    free(d->path);
    d->path = p;
    return BT_OK;
}

static enum bt_err load_common(const char *name, const char *yaml, size_t len,
                               const struct bt_config_load_opts *opts, struct bt_config **out,
                               struct bt_config_diags *diags)
{
    static const struct bt_config_load_opts none = {0};
    struct bt_ydoc doc;
    struct bt_cfg_loader L = {.diags = diags, .opts = opts ? opts : &none};
    enum bt_err err = bt_ydoc_parse(yaml, len, &doc, diags);
    if (err) {
        bt_ydoc_free(&doc);
        return err == BT_ENOMEM ? BT_ENOMEM : BT_ECONFIG;
    }
    L.cfg = bt_cfg_new(name);
    if (!L.cfg) {
        bt_ydoc_free(&doc);
        bt_config_diag_add(diags, true, 0, 0, "out of memory");
        return BT_ENOMEM;
    }
    load_root(&L, doc.root);
    if (!L.oom && L.opts->listen)
        bt_cfg_set_listen(&L, NULL, "--listen", L.opts->listen, strlen(L.opts->listen));
    if (L.opts->reuse_port) L.cfg->server.reuse_port = true;
    if (!L.oom) bt_cfg_check_whole(&L); /* points at nodes: before the document goes */
    bt_ydoc_free(&doc);
    if (L.oom) {
        bt_config_diag_add(diags, true, 0, 0, "out of memory");
        bt_cfg_free(L.cfg);
        return BT_ENOMEM;
    }
    if (L.nerrors) {
        bt_cfg_free(L.cfg);
        return BT_ECONFIG;
    }
    *out = L.cfg;
    return BT_OK;
}

enum bt_err bt_config_load_string(const char *name, const char *yaml, size_t len,
                                  struct bt_config **out, struct bt_config_diags *diags)
{
    return bt_config_load_string_opts(name, yaml, len, NULL, out, diags);
}

enum bt_err bt_config_load_string_opts(const char *name, const char *yaml, size_t len,
                                       const struct bt_config_load_opts *opts,
                                       struct bt_config **out, struct bt_config_diags *diags)
{
    if (!out || (!yaml && len)) return BT_EINVAL;
    *out = NULL;
    if (!name) name = "config";
    struct bt_config_diags local = {0};
    struct bt_config_diags *d = diags ? diags : &local;
    enum bt_err err = set_diag_path(d, name);
    if (!err) {
        if (len > BT_CONFIG_MAX_BYTES) {
            bt_config_diag_add(d, true, 0, 0, "the file is larger than %u bytes",
                               BT_CONFIG_MAX_BYTES);
            err = BT_ECONFIG;
        } else {
            err = load_common(name, yaml ? yaml : "", len, opts, out, d);
        }
    }
    bt_config_diags_free(&local);
    return err;
}

enum bt_err bt_config_load(const char *path, struct bt_config **out, struct bt_config_diags *diags)
{
    return bt_config_load_opts(path, NULL, out, diags);
}

enum bt_err bt_config_load_opts(const char *path, const struct bt_config_load_opts *opts,
                                struct bt_config **out, struct bt_config_diags *diags)
{
    if (!path || !out) return BT_EINVAL;
    *out = NULL;
    struct bt_config_diags local = {0};
    struct bt_config_diags *d = diags ? diags : &local;
    struct bt_buf b;
    bt_buf_init(&b, BT_CONFIG_MAX_BYTES);
    enum bt_err err = set_diag_path(d, path);
    if (err) goto done;
    FILE *f = fopen(path, "rb");
    if (!f) {
        bt_config_diag_add(d, true, 0, 0, "cannot open: %s", strerror(errno));
        err = BT_EIO;
        goto done;
    }
    char chunk[16384];
    size_t n;
    while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0) {
        err = bt_buf_append(&b, chunk, n);
        if (err) break;
    }
    bool rerr = ferror(f);
    fclose(f);
    if (err == BT_ETOOBIG) {
        bt_config_diag_add(d, true, 0, 0, "the file is larger than %u bytes", BT_CONFIG_MAX_BYTES);
        err = BT_ECONFIG;
        goto done;
    }
    if (err) goto done;
    if (rerr) {
        bt_config_diag_add(d, true, 0, 0, "cannot read the file");
        err = BT_EIO;
        goto done;
    }
    err = load_common(path, b.p ? b.p : "", b.len, opts, out, d);
done:
    bt_buf_free(&b);
    bt_config_diags_free(&local);
    return err;
}

void bt_config_diags_free(struct bt_config_diags *d)
{
    if (!d) return;
    for (size_t i = 0; i < d->n; i++)
        free(d->items[i].msg);
    free(d->items);
    free(d->path);
    d->items = NULL;
    d->path = NULL;
    d->n = d->cap = 0;
}

void bt_config_diags_print(const struct bt_config_diags *d, void *file)
{
    FILE *f = file;
    if (!d || !f) return;
    const char *path = d->path ? d->path : "config";
    for (size_t i = 0; i < d->n; i++) {
        const struct bt_config_diag *g = &d->items[i];
        const char *kind = g->is_error ? "error" : "warning";
        if (g->line > 0)
            fprintf(f, "%s:%d:%d: %s: %s\n", path, g->line, g->col > 0 ? g->col : 1, kind, g->msg);
        else
            fprintf(f, "%s: %s: %s\n", path, kind, g->msg);
    }
    if (d->n >= BT_CONFIG_MAX_DIAGS)
        fprintf(f, "%s: note: stopped after %d messages\n", path, BT_CONFIG_MAX_DIAGS);
}
