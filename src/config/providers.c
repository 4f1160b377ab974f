/* The providers section: each entry's type (which decides the keys it may
 * have), base_url split into scheme, host, port and path, api_key (an empty one
 * is a warning, not an error), timeouts, tls (ca_file, verify), proxy (the key
 * or the environment, as curl reads it), the simulator's knobs and faults,
 * stream_check and forward_headers. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config/fwd.h"
#include "config/values.h"
#include "core/buf.h"
#include "upstream/proxy.h"

#define DEFAULT_BASE_URL "https://api.openai.com/v1"
#define DEFAULT_ANTHROPIC_VERSION "2023-06-01"
#define DEFAULT_MAX_TOKENS 4096

/* A version string as the APIs write them: letters, digits, '-', '.', '_'. */
static bool version_ok(const char *s, size_t n)
{
    if (!n || n > 64) return false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
              c == '-' || c == '.' || c == '_'))
            return false;
    }
    return true;
}

/* ---- base_url ---- */

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

/* ---- timeouts: and the simulator's knobs ---- */

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

/* ---- forward_headers: ---- */

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

/* ---- a provider ---- */

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
    PK_ANTHROPIC_VERSION,
    PK_API_VERSION,
    PK_MAX_TOKENS_DEFAULT,
    PK_MAX_TOKENS_PER_MODEL,
    PK_WIRE,
};
static const char *const provider_keys[] = {
    "type",           "base_url",     "api_key",         "timeouts",    "seed",   "ttft",
    "tokens_per_sec", "reply_tokens", "embedding_dims",  "retry_after", "faults", "tls",
    "proxy",          "stream_check", "forward_headers", "anthropic_version", "api_version",
    "max_tokens_default", "max_tokens_per_model", "wire", NULL};

const char *bt_provider_type_name(enum bt_provider_type t)
{
    switch (t) {
    case BT_PROVIDER_OPENAI: return "openai";
    case BT_PROVIDER_SIM: return "sim";
    case BT_PROVIDER_ANTHROPIC: return "anthropic";
    case BT_PROVIDER_GEMINI: return "gemini";
    case BT_PROVIDER_AZURE: return "azure";
    }
    return "?";
}

uint32_t bt_provider_max_tokens(const struct bt_provider *p, struct bt_str model)
{
    for (size_t i = 0; i < p->nmax_tokens_models; i++)
        if (bt_str_eq_c(model, p->max_tokens_models[i].model))
            return p->max_tokens_models[i].max_tokens;
    return p->max_tokens_default ? p->max_tokens_default : DEFAULT_MAX_TOKENS;
}

/* The base_url a type has when none is written; NULL: it must be written. */
static const char *default_base_url(enum bt_provider_type t)
{
    switch (t) {
    case BT_PROVIDER_OPENAI: return DEFAULT_BASE_URL;
    case BT_PROVIDER_ANTHROPIC: return "https://api.anthropic.com";
    case BT_PROVIDER_GEMINI: return "https://generativelanguage.googleapis.com";
    case BT_PROVIDER_AZURE:
    case BT_PROVIDER_SIM: break;
    }
    return NULL;
}

/* max_tokens_per_model: {MODEL: N, ...} */
static void load_max_tokens_models(struct bt_cfg_loader *L, const struct bt_ynode *v,
                                   struct bt_provider *p)
{
    char ctx[BT_CFG_MAX_NAME + 40];
    snprintf(ctx, sizeof(ctx), "provider \"%s\": max_tokens_per_model", p->name);
    const struct bt_ynode *m = bt_cfg_as_map(L, v, ctx);
    if (!m || m->n < 2) return;
    p->max_tokens_models = calloc(m->n / 2, sizeof(*p->max_tokens_models));
    if (!p->max_tokens_models) {
        L->oom = true;
        return;
    }
    for (size_t i = 0; i + 1 < m->n; i += 2) {
        const struct bt_ynode *k = m->items[i], *vv = m->items[i + 1];
        if (k->kind != BT_Y_SCALAR || !k->len) {
            bt_cfg_err(L, k, "%s: a model id is expected as the key", ctx);
            continue;
        }
        char what[2 * BT_CFG_MAX_NAME + 60];
        snprintf(what, sizeof(what), "%s.%.*s", ctx, BT_CFG_SHOW(k));
        uint64_t u = 0;
        if (!bt_cfg_get_u64(L, vv, what, 1, 1000000, &u)) continue;
        char *name = bt_cfg_dup(L, k->text, k->len);
        if (!name) return;
        p->max_tokens_models[p->nmax_tokens_models++] =
            (struct bt_model_max_tokens){name, (uint32_t)u};
    }
}

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
        return t != BT_PROVIDER_SIM;
    case PK_ANTHROPIC_VERSION:
    case PK_MAX_TOKENS_DEFAULT:
    case PK_MAX_TOKENS_PER_MODEL:
        return t == BT_PROVIDER_ANTHROPIC;
    case PK_API_VERSION:
        return t == BT_PROVIDER_AZURE;
    default:
        return t == BT_PROVIDER_SIM;
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
        bt_cfg_err(L, tv ? tv : k,
                   "provider \"%s\": type is required (openai, anthropic, gemini, azure or sim)",
                   p->name);
    } else {
        char *t;
        size_t tl;
        if (bt_cfg_get_string(L, tv, "type", &t, &tl, NULL)) {
            for (int ty = BT_PROVIDER_OPENAI; ty <= BT_PROVIDER_AZURE; ty++)
                if (strcmp(t, bt_provider_type_name((enum bt_provider_type)ty)) == 0)
                    p->type = (enum bt_provider_type)ty;
            if (!p->type)
                bt_cfg_err(L, tv,
                           "provider \"%s\": unknown type \"%.*s\" (expected openai, anthropic, "
                           "gemini, azure or sim)",
                           p->name, BT_CFG_SHOWN(tl), t);
            free(t);
        }
    }

    const struct bt_ynode *key_node = NULL, *url_node = NULL, *tls_node = NULL, *proxy_node = NULL,
                          *version_node = NULL;
    for (size_t i = 0; i + 1 < m->n; i += 2) {
        const struct bt_ynode *kk = m->items[i], *vv = m->items[i + 1];
        int idx = bt_cfg_key_index(L, kk, provider_keys, ctx);
        if (idx < 0 || idx == PK_TYPE) continue;
        if (!p->type) continue; /* unknown type: its keys cannot be judged */
        if (!provider_key_applies(idx, p->type)) {
            bt_cfg_err(L, kk, "provider \"%s\": \"%s\" does not apply to type %s", p->name,
                       provider_keys[idx], bt_provider_type_name(p->type));
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
        case PK_ANTHROPIC_VERSION:
        case PK_API_VERSION: {
            char *t;
            size_t tl;
            if (!bt_cfg_get_string(L, vv, what, &t, &tl, NULL)) break;
            if (!version_ok(t, tl)) {
                bt_cfg_err(L, vv, "%s: expected a version such as %s, got \"%.*s\"", what,
                           idx == PK_API_VERSION ? "2024-10-21" : "2023-06-01", BT_CFG_SHOWN(tl),
                           t);
                free(t);
                break;
            }
            free(p->api_version);
            p->api_version = t;
            version_node = vv;
            break;
        }
        case PK_MAX_TOKENS_DEFAULT:
            u = DEFAULT_MAX_TOKENS;
            if (bt_cfg_get_u64(L, vv, what, 1, 1000000, &u)) p->max_tokens_default = (uint32_t)u;
            break;
        case PK_MAX_TOKENS_PER_MODEL:
            load_max_tokens_models(L, vv, p);
            break;
        case PK_WIRE: {
            char *t;
            size_t tl;
            if (!bt_cfg_get_string(L, vv, what, &t, &tl, NULL)) break;
            if (strcmp(t, "openai") == 0)
                p->sim_wire = BT_PROVIDER_OPENAI;
            else if (strcmp(t, "anthropic") == 0)
                p->sim_wire = BT_PROVIDER_ANTHROPIC;
            else if (strcmp(t, "gemini") == 0)
                p->sim_wire = BT_PROVIDER_GEMINI;
            else
                bt_cfg_err(L, vv, "%s: expected openai, anthropic or gemini, got \"%.*s\"", what,
                           BT_CFG_SHOWN(tl), t);
            free(t);
            break;
        }
        }
    }
    set_forward_defaults(L, p);
    if (!p->type) return;
    if (p->type == BT_PROVIDER_SIM) {
        p->base_path = bt_cfg_dup(L, "", 0);
        return;
    }
    if (p->type == BT_PROVIDER_ANTHROPIC) {
        if (!p->max_tokens_default) p->max_tokens_default = DEFAULT_MAX_TOKENS;
        if (!p->api_version)
            p->api_version = bt_cfg_dup(L, DEFAULT_ANTHROPIC_VERSION,
                                        strlen(DEFAULT_ANTHROPIC_VERSION));
    }
    if (p->type == BT_PROVIDER_AZURE && !p->api_version && !version_node)
        bt_cfg_err(L, k,
                   "provider \"%s\": api_version is required for type azure (e.g. api_version: "
                   "\"2024-10-21\")",
                   p->name);
    if (p->type == BT_PROVIDER_AZURE && !url_node) {
        bt_cfg_err(L, k,
                   "provider \"%s\": base_url is required for type azure (e.g. "
                   "https://RESOURCE.openai.azure.com)",
                   p->name);
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
        const char *d = default_base_url(p->type);
        url = bt_cfg_dup(L, d, strlen(d));
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

void bt_cfg_load_providers(struct bt_cfg_loader *L, const struct bt_ynode *n)
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
        if (!bt_cfg_name_ok(L, k, "provider", false)) continue;
        struct bt_provider *p = &c->providers[c->nproviders];
        p->name = bt_cfg_dup(L, k->text, k->len);
        if (!p->name) return;
        c->nproviders++;
        load_provider(L, k, v, p);
        if (L->oom) return;
    }
}
