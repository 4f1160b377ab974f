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

#define DEFAULT_BASE_URL "https://api.openai.com/v1"
#define MAX_DEPLOYMENTS 8 /* route.h's BT_PLAN_MAX: more would be ignored silently */

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

/* Splits an http(s) URL into the provider's tls/host/port/base_path. */
static bool parse_base_url(struct bt_cfg_loader *L, const struct bt_ynode *v, const char *pname,
                           struct bt_provider *p, const char *url, size_t len)
{
    size_t off;
    if (len >= 8 && bt_str_caseeq((struct bt_str){url, 8}, BT_STR("https://"))) {
        p->tls = true;
        off = 8;
    } else if (len >= 7 && bt_str_caseeq((struct bt_str){url, 7}, BT_STR("http://"))) {
        p->tls = false;
        off = 7;
    } else {
        bt_cfg_err(L, v,
                   "provider \"%s\": base_url must start with http:// or https:// (got \"%.*s\")",
                   pname, BT_CFG_SHOWN(len), url);
        return false;
    }
    if (memchr(url, '?', len) || memchr(url, '#', len)) {
        bt_cfg_err(L, v, "provider \"%s\": base_url may not have a query (?) or fragment (#)",
                   pname);
        return false;
    }
    if (memchr(url, ' ', len)) {
        bt_cfg_err(L, v, "provider \"%s\": base_url may not contain spaces", pname);
        return false;
    }
    const char *auth = url + off;
    const char *slash = memchr(auth, '/', len - off);
    size_t alen = slash ? (size_t)(slash - auth) : len - off;
    if (memchr(auth, '@', alen)) {
        bt_cfg_err(L, v,
                   "provider \"%s\": base_url may not contain user:password@; put the key in "
                   "api_key",
                   pname);
        return false;
    }
    struct bt_str hs, ps;
    bool v6;
    if (!bt_split_hostport((struct bt_str){auth, alen}, &hs, &ps, &v6)) goto bad;
    const char *host = hs.p, *port = ps.p;
    size_t hlen = hs.len, plen = ps.len;
    if (!v6 && alen && memchr(auth, ':', alen) != memrchr(auth, ':', alen)) {
        bt_cfg_err(L, v,
                   "provider \"%s\": base_url: write an IPv6 address in brackets, e.g. "
                   "http://[::1]:8000/v1",
                   pname);
        return false;
    }
    if (hlen == 0 || hlen > 253) {
        bt_cfg_err(L, v, "provider \"%s\": base_url has no host (got \"%.*s\")", pname,
                   BT_CFG_SHOWN(len), url);
        return false;
    }
    char hbuf[256];
    memcpy(hbuf, host, hlen);
    hbuf[hlen] = 0;
    if (v6) {
        if (!bt_cfg_is_ip(AF_INET6, hbuf)) {
            bt_cfg_err(L, v, "provider \"%s\": base_url: \"[%s]\" is not an IPv6 address", pname,
                       hbuf);
            return false;
        }
    } else {
        for (size_t i = 0; i < hlen; i++)
            if (!bt_host_char(hbuf[i])) {
                bt_cfg_err(L, v,
                           "provider \"%s\": base_url: invalid host \"%s\" (IPv6 addresses go in "
                           "brackets)",
                           pname, hbuf);
                return false;
            }
    }
    uint64_t pn = p->tls ? 443 : 80;
    if (port && (!bt_str_to_u64((struct bt_str){port, plen}, &pn) || pn < 1 || pn > 65535)) {
        bt_cfg_err(L, v, "provider \"%s\": base_url: port must be from 1 to 65535 (got \"%.*s\")",
                   pname, BT_CFG_SHOWN(plen), port);
        return false;
    }
    /* The path prefix, without trailing slashes: request paths ("/chat/...")
     * are appended to it. */
    size_t pathoff = off + alen;
    size_t pathlen = len - pathoff;
    while (pathlen && url[pathoff + pathlen - 1] == '/')
        pathlen--;
    p->host = bt_cfg_dup(L, hbuf, hlen);
    p->base_path = bt_cfg_dup(L, url + pathoff, pathlen);
    p->port = (uint16_t)pn;
    return p->host && p->base_path;
bad:
    bt_cfg_err(L, v, "provider \"%s\": base_url is not a valid URL (got \"%.*s\")", pname,
               BT_CFG_SHOWN(len), url);
    return false;
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

static void default_timeouts(struct bt_timeouts *t)
{
    t->connect_ms = 10000;
    t->first_byte_ms = 120000;
    t->idle_ms = 60000;
    t->total_ms = 600000;
}

static void default_sim(struct bt_sim_cfg *s)
{
    memset(s, 0, sizeof(*s));
    s->seed = 1;
    s->reply_tokens = 24;
    s->embedding_dims = 16;
    s->retry_after_s = 1;
}

static void load_timeouts(struct bt_cfg_loader *L, const struct bt_ynode *n, struct bt_provider *p)
{
    static const char *const keys[] = {"connect", "first_byte", "idle", "total", NULL};
    char ctx[BT_CFG_MAX_NAME + 40];
    snprintf(ctx, sizeof(ctx), "provider \"%s\" timeouts", p->name);
    const struct bt_ynode *m = bt_cfg_as_map(L, n, ctx);
    if (!m) return;
    uint64_t *dst[] = {&p->timeouts.connect_ms, &p->timeouts.first_byte_ms, &p->timeouts.idle_ms,
                       &p->timeouts.total_ms};
    for (size_t i = 0; i + 1 < m->n; i += 2) {
        int idx = bt_cfg_key_index(L, m->items[i], keys, ctx);
        if (idx < 0) continue;
        char what[BT_CFG_MAX_NAME + 60];
        snprintf(what, sizeof(what), "provider \"%s\": timeouts.%s", p->name, keys[idx]);
        bt_cfg_get_duration(L, m->items[i + 1], what, 1, BT_CFG_DAY_MS, dst[idx]);
    }
}

static void load_faults(struct bt_cfg_loader *L, const struct bt_ynode *n, struct bt_provider *p)
{
    static const char *const keys[] = {"429",          "500",         "503",       "no_answer",
                                       "reset_before", "reset_mid",   "stall_mid", "slow_bytes",
                                       "invalid_json", "error_event", NULL};
    char ctx[BT_CFG_MAX_NAME + 40];
    snprintf(ctx, sizeof(ctx), "provider \"%s\" faults", p->name);
    const struct bt_ynode *m = bt_cfg_as_map(L, n, ctx);
    if (!m) return;
    struct bt_sim_cfg *s = &p->sim;
    double *dst[] = {&s->fault_429,        &s->fault_500,          &s->fault_503,
                     &s->fault_no_answer,  &s->fault_reset_before, &s->fault_reset_mid,
                     &s->fault_stall_mid,  &s->fault_slow_bytes,   &s->fault_invalid_json,
                     &s->fault_error_event};
    bool ok = true;
    for (size_t i = 0; i + 1 < m->n; i += 2) {
        int idx = bt_cfg_key_index(L, m->items[i], keys, ctx);
        if (idx < 0) {
            ok = false;
            continue;
        }
        char what[BT_CFG_MAX_NAME + 60];
        snprintf(what, sizeof(what), "provider \"%s\": faults.%s", p->name, keys[idx]);
        if (!bt_cfg_get_double(L, m->items[i + 1], what, 0, 1, dst[idx])) ok = false;
    }
    if (!ok) return;
    double sum = 0;
    for (size_t i = 0; i < sizeof(dst) / sizeof(dst[0]); i++)
        sum += *dst[i];
    /* One uniform draw is checked against the rates in order: past 1 the later
     * faults would silently get less than asked. */
    if (sum > 1.0 + 1e-9)
        bt_cfg_err(L, m,
                   "provider \"%s\": fault rates add up to %g; at most one fault is drawn per "
                   "request, so they must add up to 1 or less",
                   p->name, sum);
}

/* ---- tls: and proxy: ---- */

/* A relative ca_file is taken from the config file's directory, so a config
 * and its CA can move together. Returns a malloc'd path. */
static char *resolve_path(struct bt_cfg_loader *L, const char *path)
{
    const char *cfg = L->cfg->path;
    const char *slash = cfg ? strrchr(cfg, '/') : NULL;
    if (path[0] == '/' || !slash) return bt_cfg_dup(L, path, strlen(path));
    struct bt_buf b;
    bt_buf_init(&b, 8192);
    if (bt_buf_append(&b, cfg, (size_t)(slash - cfg) + 1) || bt_buf_append_c(&b, path) ||
        bt_buf_cstr(&b)) {
        bt_buf_free(&b);
        L->oom = true;
        return NULL;
    }
    return bt_buf_steal(&b, NULL);
}

/* Checks now that ca_file can be read and holds a PEM certificate, so a typo
 * is a config error with a position rather than a 502 at the first request. */
static bool check_ca_file(struct bt_cfg_loader *L, const struct bt_ynode *v, const char *pname,
                          const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        bt_cfg_err(L, v, "provider \"%s\": tls.ca_file: cannot open %s: %s", pname, path,
                   strerror(errno));
        return false;
    }
    static const char marker[] = "-----BEGIN CERTIFICATE-----";
    char buf[8192];
    size_t keep = 0;
    bool found = false;
    for (size_t total = 0; !found && total < (16u << 20);) {
        size_t n = fread(buf + keep, 1, sizeof(buf) - 1 - keep, f);
        if (!n) break;
        total += n;
        buf[keep + n] = 0;
        found = memmem(buf, keep + n, marker, sizeof(marker) - 1) != NULL;
        /* Keep a marker's length of tail: it may straddle two reads. */
        size_t have = keep + n;
        keep = have < sizeof(marker) ? have : sizeof(marker);
        memmove(buf, buf + have - keep, keep);
    }
    fclose(f);
    if (!found)
        bt_cfg_err(L, v,
                   "provider \"%s\": tls.ca_file: %s holds no PEM certificate (-----BEGIN "
                   "CERTIFICATE-----)",
                   pname, path);
    return found;
}

static void load_tls(struct bt_cfg_loader *L, const struct bt_ynode *n, struct bt_provider *p)
{
    static const char *const keys[] = {"ca_file", "verify", NULL};
    char ctx[BT_CFG_MAX_NAME + 40];
    snprintf(ctx, sizeof(ctx), "provider \"%s\" tls", p->name);
    const struct bt_ynode *m = bt_cfg_as_map(L, n, ctx);
    if (!m) return;
    if (!p->tls)
        bt_cfg_warn(L, n, "provider \"%s\": tls settings have no effect on an http:// base_url",
                    p->name);
    for (size_t i = 0; i + 1 < m->n; i += 2) {
        int idx = bt_cfg_key_index(L, m->items[i], keys, ctx);
        if (idx < 0) continue;
        const struct bt_ynode *v = m->items[i + 1];
        char what[BT_CFG_MAX_NAME + 60];
        snprintf(what, sizeof(what), "provider \"%s\": tls.%s", p->name, keys[idx]);
        if (idx == 0) {
            if (bt_ynode_is_null(v)) continue;
            char *s, var[BT_CONFIG_MAX_VARNAME + 1];
            size_t len;
            if (!bt_cfg_get_string(L, v, what, &s, &len, var)) continue;
            if (!len) {
                if (var[0])
                    bt_cfg_err(L, v, "%s is empty (%s is %s)", what, var,
                               getenv(var) ? "empty" : "not set");
                else
                    bt_cfg_err(L, v, "%s is empty", what);
                free(s);
                continue;
            }
            char *path = resolve_path(L, s);
            free(s);
            if (!path) continue;
            if (!check_ca_file(L, v, p->name, path)) {
                free(path);
                continue;
            }
            free(p->tls_ca_file);
            p->tls_ca_file = path;
        } else {
            bool verify = true;
            if (!bt_cfg_get_bool(L, v, what, &verify)) continue;
            p->tls_no_verify = !verify;
            if (!verify && p->tls)
                bt_cfg_warn(L, v,
                            "provider \"%s\": tls.verify is false: baton does not check this "
                            "provider's certificate, so anyone on the network path can read and "
                            "change its traffic (API key included)",
                            p->name);
        }
    }
}

static bool set_proxy(struct bt_cfg_loader *L, struct bt_provider *p, struct bt_proxy_spec *sp,
                      const char *from)
{
    p->proxy_host = sp->host;
    p->proxy_port = sp->port;
    p->proxy_auth = sp->auth;
    p->proxy_shown = sp->shown;
    memset(sp, 0, sizeof(*sp));
    p->proxy_from = bt_cfg_dup(L, from, strlen(from));
    return p->proxy_from != NULL;
}

/* The provider's proxy: `proxy:` when written ("" or "none": direct), else
 * the environment as curl reads it: https_proxy / HTTPS_PROXY for https,
 * http_proxy / HTTP_PROXY for http (lowercase first), unless no_proxy /
 * NO_PROXY exempts the host. Read once, at load (and at every reload). */
static void load_proxy(struct bt_cfg_loader *L, const struct bt_ynode *k, const struct bt_ynode *v,
                       struct bt_provider *p)
{
    char why[160];
    struct bt_proxy_spec sp;
    if (v && !bt_ynode_is_null(v)) {
        char *s;
        size_t len;
        if (!bt_cfg_get_string(L, v, "proxy", &s, &len, NULL)) return;
        if (len == 0 || strcmp(s, "none") == 0) { /* explicitly direct */
            free(s);
            return;
        }
        enum bt_err e = bt_proxy_parse(s, len, &sp, why, sizeof(why));
        explicit_bzero(s, len);
        free(s);
        if (e == BT_ENOMEM) L->oom = true;
        if (e) {
            if (e != BT_ENOMEM) bt_cfg_err(L, v, "provider \"%s\": proxy: %s", p->name, why);
            return;
        }
        if (!set_proxy(L, p, &sp, "proxy")) bt_proxy_spec_free(&sp);
        return;
    }
    if (v) return; /* `proxy:` with no value: direct, like "" */
    const char *names[2][2] = {{"http_proxy", "HTTP_PROXY"}, {"https_proxy", "HTTPS_PROXY"}};
    const char *from = NULL, *url = NULL;
    for (int i = 0; i < 2 && !url; i++) {
        const char *e = getenv(names[p->tls][i]);
        if (e && e[0]) {
            url = e;
            from = names[p->tls][i];
        }
    }
    if (!url) return;
    const char *np = getenv("no_proxy");
    if (!np || !np[0]) np = getenv("NO_PROXY");
    if (bt_no_proxy_match(np, p->host, p->port)) return;
    enum bt_err e = bt_proxy_parse(url, strlen(url), &sp, why, sizeof(why));
    if (e == BT_ENOMEM) L->oom = true;
    if (e) {
        if (e != BT_ENOMEM)
            bt_cfg_err(L, k, "provider \"%s\": %s from the environment is not a usable proxy: %s",
                       p->name, from, why);
        return;
    }
    if (!set_proxy(L, p, &sp, from)) bt_proxy_spec_free(&sp);
}

enum pkey {
    PK_TYPE,
    PK_BASE_URL,
    PK_API_KEY,
    PK_TIMEOUTS,
    PK_SEED,
    PK_TTFT,
    PK_TPS,
    PK_REPLY_TOKENS,
    PK_EMBEDDING_DIMS,
    PK_RETRY_AFTER,
    PK_FAULTS,
    PK_TLS,
    PK_PROXY,
    PK_STREAM_CHECK,
    PK_FORWARD_HEADERS,
};
static const char *const provider_keys[] = {
    "type",           "base_url",     "api_key",         "timeouts",    "seed",   "ttft",
    "tokens_per_sec", "reply_tokens", "embedding_dims",  "retry_after", "faults", "tls",
    "proxy",          "stream_check", "forward_headers", NULL};

static bool provider_key_applies(int idx, enum bt_provider_type t)
{
    switch (idx) {
    case PK_TYPE:
    case PK_TIMEOUTS:
    case PK_STREAM_CHECK:
    case PK_FORWARD_HEADERS:
        return true;
    case PK_BASE_URL:
    case PK_API_KEY:
    case PK_TLS:
    case PK_PROXY:
        return t == BT_PROVIDER_OPENAI;
    default:
        return t == BT_PROVIDER_SIM;
    }
}

/* One name of a forward_headers list: false after reporting why it cannot be
 * listed. `kept[0..nkept)` are the names accepted before it, written at `at`. */
static bool forward_name_ok(struct bt_cfg_loader *L, const struct bt_ynode *it, const char *what,
                            struct bt_str name, const struct bt_str *kept, size_t nkept,
                            const struct bt_ynode *const *at)
{
    int shown = BT_CFG_SHOWN(name.len);
    const char *why;
    if (name.len == 0) {
        bt_cfg_err(L, it, "%s: a header name is empty", what);
        return false;
    }
    if (memchr(name.p, '*', name.len)) {
        bt_cfg_err(L, it, "%s: \"%.*s\": list header names, not patterns (no *)", what, shown,
                   name.p);
        return false;
    }
    if (!bt_fwd_name_ok(name)) {
        bt_cfg_err(
            L, it,
            "%s: \"%.*s\" is not a header name (1 to %d letters, digits and !#$%%&'+-.^_`|~)", what,
            shown, name.p, BT_FWD_NAME_MAX);
        return false;
    }
    if ((why = bt_fwd_refused(name))) {
        bt_cfg_err(L, it, "%s: %.*s is never forwarded (%s)", what, shown, name.p, why);
        return false;
    }
    for (size_t j = 0; j < nkept; j++) {
        if (bt_str_caseeq(name, kept[j])) {
            bt_cfg_err(L, it, "%s: %.*s is listed twice (first at %d:%d)", what, shown, name.p,
                       at[j]->line, at[j]->col);
            return false;
        }
    }
    return true;
}

/* forward_headers: a list of header names (see forward_name_ok). A null value
 * leaves the key unset: the type's default applies (set_forward_defaults). */
static void load_forward_headers(struct bt_cfg_loader *L, const struct bt_ynode *v,
                                 struct bt_provider *p)
{
    if (bt_ynode_is_null(v)) return;
    if (v->kind != BT_Y_SEQ) {
        bt_cfg_err(L, v,
                   "provider \"%s\": forward_headers must be a list of header names, e.g. "
                   "[OpenAI-Beta], not %s",
                   p->name, bt_cfg_kind_name(v));
        return;
    }
    if (v->n > BT_FWD_MAX_NAMES) {
        bt_cfg_err(L, v, "provider \"%s\": forward_headers lists at most %d names (got %zu)",
                   p->name, BT_FWD_MAX_NAMES, v->n);
        return;
    }
    p->forward_headers_set = true;
    if (v->n == 0) return; /* []: nothing is forwarded */
    p->forward_headers = calloc(v->n, sizeof(*p->forward_headers));
    if (!p->forward_headers) {
        L->oom = true;
        return;
    }
    const struct bt_ynode *at[BT_FWD_MAX_NAMES]; /* where each kept name was written */
    char what[BT_CFG_MAX_NAME + 40];
    snprintf(what, sizeof(what), "provider \"%s\": forward_headers", p->name);
    for (size_t i = 0; i < v->n; i++) {
        char *s;
        size_t len;
        if (!bt_cfg_get_string(L, v->items[i], what, &s, &len, NULL)) continue;
        struct bt_str name = {s, len};
        if (!forward_name_ok(L, v->items[i], what, name, p->forward_headers, p->nforward_headers,
                             at)) {
            free(s);
            continue;
        }
        at[p->nforward_headers] = v->items[i];
        p->forward_headers[p->nforward_headers++] = name;
    }
}

/* A provider without a forward_headers key forwards its type's default list. */
static void set_forward_defaults(struct bt_cfg_loader *L, struct bt_provider *p)
{
    if (p->forward_headers_set || !p->type) return;
    const char *const *d = bt_fwd_defaults(p->type);
    size_t n = 0;
    while (d[n])
        n++;
    if (!n) return;
    p->forward_headers = calloc(n, sizeof(*p->forward_headers));
    if (!p->forward_headers) {
        L->oom = true;
        return;
    }
    for (size_t i = 0; i < n; i++) {
        char *s = bt_cfg_dup(L, d[i], strlen(d[i]));
        if (!s) return;
        p->forward_headers[p->nforward_headers++] = (struct bt_str){s, strlen(s)};
    }
}

static void load_provider(struct bt_cfg_loader *L, const struct bt_ynode *k,
                          const struct bt_ynode *v, struct bt_provider *p)
{
    p->line = k->line;
    p->col = k->col;
    default_timeouts(&p->timeouts);
    default_sim(&p->sim);
    char ctx[BT_CFG_MAX_NAME + 20];
    snprintf(ctx, sizeof(ctx), "provider \"%s\"", p->name);
    if (bt_ynode_is_null(v)) {
        bt_cfg_err(L, k, "provider \"%s\" needs at least a type, e.g. {type: openai}", p->name);
        return;
    }
    const struct bt_ynode *m = bt_cfg_as_map(L, v, ctx);
    if (!m) return;

    /* The type decides which other keys are allowed, so find it first. */
    const struct bt_ynode *tv = NULL;
    for (size_t i = 0; i + 1 < m->n; i += 2) {
        const struct bt_ynode *kk = m->items[i];
        if (kk->kind == BT_Y_SCALAR && kk->len == 4 && memcmp(kk->text, "type", 4) == 0)
            tv = m->items[i + 1];
    }
    if (!tv || bt_ynode_is_null(tv)) {
        bt_cfg_err(L, tv ? tv : k, "provider \"%s\": type is required (openai or sim)", p->name);
    } else {
        char *t;
        size_t tl;
        if (bt_cfg_get_string(L, tv, "type", &t, &tl, NULL)) {
            if (strcmp(t, "openai") == 0)
                p->type = BT_PROVIDER_OPENAI;
            else if (strcmp(t, "sim") == 0)
                p->type = BT_PROVIDER_SIM;
            else
                bt_cfg_err(L, tv, "provider \"%s\": unknown type \"%.*s\" (expected openai or sim)",
                           p->name, BT_CFG_SHOWN(tl), t);
            free(t);
        }
    }

    const struct bt_ynode *key_node = NULL, *url_node = NULL, *tls_node = NULL, *proxy_node = NULL;
    for (size_t i = 0; i + 1 < m->n; i += 2) {
        const struct bt_ynode *kk = m->items[i], *vv = m->items[i + 1];
        int idx = bt_cfg_key_index(L, kk, provider_keys, ctx);
        if (idx < 0 || idx == PK_TYPE) continue;
        if (!p->type) continue; /* unknown type: its keys cannot be judged */
        if (!provider_key_applies(idx, p->type)) {
            bt_cfg_err(L, kk, "provider \"%s\": \"%s\" does not apply to type %s", p->name,
                       provider_keys[idx], p->type == BT_PROVIDER_SIM ? "sim" : "openai");
            continue;
        }
        char what[BT_CFG_MAX_NAME + 40];
        snprintf(what, sizeof(what), "provider \"%s\": %s", p->name, provider_keys[idx]);
        struct bt_sim_cfg *s = &p->sim;
        uint64_t u;
        switch ((enum pkey)idx) {
        case PK_TYPE:
            break;
        case PK_BASE_URL:
            url_node = vv;
            break;
        case PK_API_KEY:
            key_node = vv;
            break;
        case PK_TIMEOUTS:
            load_timeouts(L, vv, p);
            break;
        case PK_SEED:
            bt_cfg_get_u64(L, vv, what, 0, UINT64_MAX, &s->seed);
            break;
        case PK_TTFT:
            bt_cfg_get_duration(L, vv, what, 0, 3600000, &s->ttft_ms);
            break;
        case PK_TPS:
            bt_cfg_get_double(L, vv, what, 0, 1000000, &s->tokens_per_sec);
            break;
        case PK_REPLY_TOKENS:
            u = s->reply_tokens;
            if (bt_cfg_get_u64(L, vv, what, 1, 1000000, &u)) s->reply_tokens = (uint32_t)u;
            break;
        case PK_EMBEDDING_DIMS:
            u = s->embedding_dims;
            if (bt_cfg_get_u64(L, vv, what, 1, 65536, &u)) s->embedding_dims = (uint32_t)u;
            break;
        case PK_RETRY_AFTER:
            u = s->retry_after_s * 1000;
            if (bt_cfg_get_duration(L, vv, what, 0, BT_CFG_DAY_MS, &u)) {
                if (u % 1000)
                    bt_cfg_err(L, vv, "%s is sent in whole seconds (got %llums)", what,
                               (unsigned long long)u);
                else
                    s->retry_after_s = u / 1000;
            }
            break;
        case PK_FAULTS:
            load_faults(L, vv, p);
            break;
        case PK_TLS:
            tls_node = vv;
            break;
        case PK_PROXY:
            proxy_node = vv;
            break;
        case PK_STREAM_CHECK: {
            char *t;
            size_t tl;
            if (!bt_cfg_get_string(L, vv, what, &t, &tl, NULL)) break;
            if (strcmp(t, "full") == 0)
                p->stream_check_full = true;
            else if (strcmp(t, "light") == 0)
                p->stream_check_full = false;
            else
                bt_cfg_err(L, vv, "%s: expected light or full, got \"%.*s\"", what,
                           BT_CFG_SHOWN(tl), t);
            free(t);
            break;
        }
        case PK_FORWARD_HEADERS:
            load_forward_headers(L, vv, p);
            break;
        }
    }
    set_forward_defaults(L, p);
    if (p->type != BT_PROVIDER_OPENAI) {
        if (p->type == BT_PROVIDER_SIM) p->base_path = bt_cfg_dup(L, "", 0);
        return;
    }

    /* base_url */
    char *url = NULL;
    size_t ulen = 0;
    if (url_node) {
        char var[BT_CONFIG_MAX_VARNAME + 1];
        if (!bt_cfg_get_string(L, url_node, "base_url", &url, &ulen, var)) return;
        if (ulen == 0) {
            if (var[0])
                bt_cfg_err(L, url_node, "provider \"%s\": base_url is empty (%s is %s)", p->name,
                           var, getenv(var) ? "empty" : "not set");
            else
                bt_cfg_err(L, url_node, "provider \"%s\": base_url is empty", p->name);
            free(url);
            return;
        }
    } else {
        url = bt_cfg_dup(L, DEFAULT_BASE_URL, strlen(DEFAULT_BASE_URL));
        if (!url) return;
        ulen = strlen(url);
    }
    p->base_url = url;
    bool url_ok = parse_base_url(L, url_node ? url_node : k, p->name, p, url, ulen);
    if (tls_node) load_tls(L, tls_node, p);
    if (url_ok) load_proxy(L, k, proxy_node, p);

    /* api_key: a written key that came out empty is a warning, not an error,
     * so one missing secret does not take down every other provider. */
    if (key_node) {
        char var[BT_CONFIG_MAX_VARNAME + 1];
        char *key;
        size_t klen;
        p->api_key_required = true;
        if (!bt_cfg_get_string(L, key_node, "api_key", &key, &klen, var)) return;
        if (var[0]) {
            p->api_key_env = bt_cfg_dup(L, var, strlen(var));
            if (!p->api_key_env) {
                free(key);
                return;
            }
        }
        if (klen == 0) {
            free(key);
            if (var[0])
                bt_cfg_warn(
                    L, key_node,
                    "provider \"%s\": api_key is empty (%s is %s); its models will answer with "
                    "an error",
                    p->name, var, getenv(var) ? "empty" : "not set");
            else
                bt_cfg_warn(
                    L, key_node,
                    "provider \"%s\": api_key is empty; its models will answer with an error",
                    p->name);
        } else {
            p->api_key = key;
        }
    }
}

static void bt_cfg_load_providers(struct bt_cfg_loader *L, const struct bt_ynode *n)
{
    const struct bt_ynode *m = bt_cfg_as_map(L, n, "providers");
    if (!m || m->n < 2) return;
    struct bt_config *c = L->cfg;
    c->providers = calloc(m->n / 2, sizeof(*c->providers));
    if (!c->providers) {
        L->oom = true;
        return;
    }
    for (size_t i = 0; i + 1 < m->n; i += 2) {
        const struct bt_ynode *k = m->items[i], *v = m->items[i + 1];
        if (k->kind != BT_Y_SCALAR) {
            bt_cfg_err(L, k, "providers: a provider name must be a plain name, not %s",
                       bt_cfg_kind_name(k));
            continue;
        }
        if (!bt_cfg_valid_name(k->text, k->len, false)) {
            bt_cfg_err(L, k,
                       "invalid provider name \"%.*s\": 1 to %d characters, no \"/\", spaces or "
                       "control characters",
                       BT_CFG_SHOW(k), BT_CFG_MAX_NAME);
            continue;
        }
        struct bt_provider *p = &c->providers[c->nproviders];
        p->name = bt_cfg_dup(L, k->text, k->len);
        if (!p->name) return;
        c->nproviders++;
        load_provider(L, k, v, p);
        if (L->oom) return;
    }
}

static const struct bt_provider *find_provider(const struct bt_config *c, const char *name,
                                               size_t len)
{
    return bt_config_provider(c, (struct bt_str){name, len});
}

/* Resolves `provider:` of a model or deployment; reports unknown names. */
static struct bt_provider *resolve_provider(struct bt_cfg_loader *L, const struct bt_ynode *v,
                                            const char *ctx)
{
    char what[BT_CFG_MAX_NAME + 60];
    snprintf(what, sizeof(what), "%s: provider", ctx);
    char *s;
    size_t len;
    if (!bt_cfg_get_string(L, v, what, &s, &len, NULL)) return NULL;
    const struct bt_provider *p = len ? find_provider(L->cfg, s, len) : NULL;
    if (!p) {
        if (len == 0)
            bt_cfg_err(L, v, "%s: provider is empty", ctx);
        else {
            /* Whole names only: a file may define hundreds of providers, so the
             * list stops at a few hundred bytes and says how many it left out. */
            struct bt_buf known;
            bt_buf_init(&known, 1024);
            size_t nc = L->cfg->nproviders, shown = 0;
            enum bt_err e = BT_OK;
            for (; shown < nc && !e; shown++) {
                const char *name = L->cfg->providers[shown].name;
                if (shown && known.len + strlen(name) > 300) break;
                e = bt_buf_printf(&known, "%s%s", shown ? ", " : "", name);
            }
            if (!e && shown < nc) e = bt_buf_printf(&known, " and %zu more", nc - shown);
            if (!e) e = bt_buf_cstr(&known);
            if (e)
                L->oom = true;
            else
                bt_cfg_err(L, v, "%s: unknown provider \"%.*s\" (%s%s)", ctx, BT_CFG_SHOWN(len), s,
                           nc ? "defined: " : "no providers are defined", nc ? known.p : "");
            bt_buf_free(&known);
        }
    }
    free(s);
    return (struct bt_provider *)p;
}

static bool get_model_id(struct bt_cfg_loader *L, const struct bt_ynode *v, const char *ctx,
                         char **out)
{
    char what[BT_CFG_MAX_NAME + 60];
    snprintf(what, sizeof(what), "%s: model", ctx);
    size_t len;
    if (!bt_cfg_get_string(L, v, what, out, &len, NULL)) return false;
    if (len == 0) {
        bt_cfg_err(L, v, "%s: model is empty", ctx);
        free(*out);
        *out = NULL;
        return false;
    }
    return true;
}

static void load_deployment(struct bt_cfg_loader *L, const struct bt_ynode *n, struct bt_model *m,
                            struct bt_deployment *d, size_t index)
{
    static const char *const keys[] = {"provider", "model", "weight", NULL};
    char ctx[BT_CFG_MAX_NAME + 60];
    snprintf(ctx, sizeof(ctx), "model \"%s\" deployment %zu", m->name, index + 1);
    d->weight = 1;
    if (n->kind != BT_Y_MAP) {
        bt_cfg_err(L, n, "%s must be a mapping like {provider: NAME, model: ID}, not %s", ctx,
                   bt_cfg_kind_name(n));
        return;
    }
    const struct bt_ynode *pv = NULL;
    for (size_t i = 0; i + 1 < n->n; i += 2) {
        const struct bt_ynode *k = n->items[i], *v = n->items[i + 1];
        int idx = bt_cfg_key_index(L, k, keys, ctx);
        if (idx == 0)
            pv = v;
        else if (idx == 1) {
            free(d->model);
            d->model = NULL;
            get_model_id(L, v, ctx, &d->model);
        } else if (idx == 2) {
            char what[BT_CFG_MAX_NAME + 70];
            snprintf(what, sizeof(what), "%s: weight", ctx);
            uint64_t w = 1;
            if (bt_cfg_get_u64(L, v, what, 1, 1000000, &w)) d->weight = (uint32_t)w;
        }
    }
    if (!pv)
        bt_cfg_err(L, n, "%s: provider is required", ctx);
    else
        d->provider = resolve_provider(L, pv, ctx);
    if (!d->model) d->model = bt_cfg_dup(L, m->name, strlen(m->name));
}

static void load_model(struct bt_cfg_loader *L, const struct bt_ynode *k, const struct bt_ynode *v,
                       struct bt_model *m)
{
    static const char *const keys[] = {"provider", "model", "deployments", NULL};
    m->line = k->line;
    m->col = k->col;
    char ctx[BT_CFG_MAX_NAME + 20];
    snprintf(ctx, sizeof(ctx), "model \"%s\"", m->name);
    if (v->kind != BT_Y_MAP) {
        bt_cfg_err(L, bt_ynode_is_null(v) ? k : v,
                   "model \"%s\" must be a mapping like {provider: NAME} or {deployments: [...]}",
                   m->name);
        return;
    }
    const struct bt_ynode *pv = NULL, *mv = NULL, *dv = NULL, *dk = NULL;
    for (size_t i = 0; i + 1 < v->n; i += 2) {
        int idx = bt_cfg_key_index(L, v->items[i], keys, ctx);
        if (idx == 0)
            pv = v->items[i + 1];
        else if (idx == 1)
            mv = v->items[i + 1];
        else if (idx == 2)
            dv = v->items[i + 1], dk = v->items[i];
    }
    if (dv && (pv || mv)) {
        bt_cfg_err(L, dk, "%s: use either provider/model or deployments, not both", ctx);
        return;
    }
    if (!dv && !pv) {
        bt_cfg_err(L, k, "%s needs provider: NAME (or a deployments: list)", ctx);
        return;
    }
    if (pv) {
        m->deployments = calloc(1, sizeof(*m->deployments));
        if (!m->deployments) {
            L->oom = true;
            return;
        }
        m->ndeployments = 1;
        struct bt_deployment *d = &m->deployments[0];
        d->weight = 1;
        d->provider = resolve_provider(L, pv, ctx);
        if (mv)
            get_model_id(L, mv, ctx, &d->model);
        else
            d->model = bt_cfg_dup(L, m->name, strlen(m->name)); /* same id upstream */
        return;
    }
    if (dv->kind != BT_Y_SEQ) {
        bt_cfg_err(L, dv,
                   "%s: deployments must be a list (- {provider: NAME, model: ID} lines), not %s",
                   ctx, bt_ynode_is_null(dv) ? "empty" : bt_cfg_kind_name(dv));
        return;
    }
    if (dv->n == 0) {
        bt_cfg_err(L, dv, "%s: deployments is empty", ctx);
        return;
    }
    if (dv->n > MAX_DEPLOYMENTS) {
        bt_cfg_err(L, dv, "%s: at most %d deployments per model (got %zu)", ctx, MAX_DEPLOYMENTS,
                   dv->n);
        return;
    }
    m->deployments = calloc(dv->n, sizeof(*m->deployments));
    if (!m->deployments) {
        L->oom = true;
        return;
    }
    m->ndeployments = dv->n;
    for (size_t i = 0; i < dv->n; i++)
        load_deployment(L, dv->items[i], m, &m->deployments[i], i);
}

static void bt_cfg_load_models(struct bt_cfg_loader *L, const struct bt_ynode *n)
{
    const struct bt_ynode *m = bt_cfg_as_map(L, n, "models");
    if (!m || m->n < 2) return;
    struct bt_config *c = L->cfg;
    c->models = calloc(m->n / 2, sizeof(*c->models));
    if (!c->models) {
        L->oom = true;
        return;
    }
    for (size_t i = 0; i + 1 < m->n; i += 2) {
        const struct bt_ynode *k = m->items[i], *v = m->items[i + 1];
        if (k->kind != BT_Y_SCALAR) {
            bt_cfg_err(L, k, "models: a model name must be a plain name, not %s",
                       bt_cfg_kind_name(k));
            continue;
        }
        if (!bt_cfg_valid_name(k->text, k->len, true)) {
            bt_cfg_err(L, k,
                       "invalid model name \"%.*s\": 1 to %d characters, no spaces or control "
                       "characters",
                       BT_CFG_SHOW(k), BT_CFG_MAX_NAME);
            continue;
        }
        struct bt_model *md = &c->models[c->nmodels];
        md->name = bt_cfg_dup(L, k->text, k->len);
        if (!md->name) return;
        c->nmodels++;
        load_model(L, k, v, md);
        if (L->oom) return;
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
