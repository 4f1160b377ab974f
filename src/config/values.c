/* Scalar values of a config file, the helpers every section uses: strings
 * (with ${VAR} expansion and no control characters), whole numbers, sizes,
 * durations, booleans, decimals, names, and listen addresses
 * (bt_config_parse_listen, shared with --listen). Each getter reports a bad
 * value at its line:column and leaves the default in place. */
#include "config/values.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/time.h"

/* ---- scalar values ---- */

static bool has_ctl(const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x20 || c == 0x7f) return true;
    }
    return false;
}

/* Expands a scalar value. *out is malloc'd (caller frees); a null value gives
 * "". `var` (may be NULL, BT_CONFIG_MAX_VARNAME+1 bytes) receives the first
 * variable referenced. False after reporting. */
bool bt_cfg_get_string(struct bt_cfg_loader *L, const struct bt_ynode *v, const char *what,
                       char **out, size_t *outlen, char *var)
{
    *out = NULL;
    if (var) var[0] = 0;
    if (v->kind != BT_Y_SCALAR) {
        bt_cfg_err(L, v, "%s must be a single value, not %s", what, bt_cfg_kind_name(v));
        return false;
    }
    size_t len = 0;
    char why[200];
    enum bt_err e;
    if (bt_ynode_is_null(v))
        e = bt_config_expand("", 0, out, &len, var, BT_CONFIG_MAX_VARNAME + 1, why, sizeof(why));
    else
        e = bt_config_expand(v->text, v->len, out, &len, var, BT_CONFIG_MAX_VARNAME + 1, why,
                             sizeof(why));
    if (e == BT_ENOMEM) {
        L->oom = true;
        return false;
    }
    if (e) {
        bt_cfg_err(L, v, "%s: %s", what, why);
        return false;
    }
    /* Every value is one line: a line break or control byte that arrived
     * through a variable would otherwise reach an HTTP header (api_key) or a
     * log line. */
    if (has_ctl(*out, len)) {
        bt_cfg_err(L, v, "%s contains a line break or control character", what);
        free(*out);
        *out = NULL;
        return false;
    }
    if (outlen) *outlen = len;
    return true;
}

bool bt_cfg_get_u64(struct bt_cfg_loader *L, const struct bt_ynode *v, const char *what,
                    uint64_t min, uint64_t max, uint64_t *out)
{
    if (bt_ynode_is_null(v)) return true; /* keeps the default */
    char *s;
    size_t len;
    if (!bt_cfg_get_string(L, v, what, &s, &len, NULL)) return false;
    uint64_t n;
    bool ok = bt_str_to_u64((struct bt_str){s, len}, &n) && n >= min && n <= max;
    if (!ok)
        bt_cfg_err(L, v, "%s must be a whole number from %llu to %llu (got \"%.*s\")", what,
                   (unsigned long long)min, (unsigned long long)max, BT_CFG_SHOWN(len), s);
    else
        *out = n;
    free(s);
    return ok;
}

static bool parse_size(struct bt_str s, uint64_t *out)
{
    s = bt_str_trim(s);
    size_t i = 0;
    while (i < s.len && s.p[i] >= '0' && s.p[i] <= '9')
        i++;
    uint64_t n;
    if (!bt_str_to_u64((struct bt_str){s.p, i}, &n)) return false;
    struct bt_str u = bt_str_trim((struct bt_str){s.p + i, s.len - i});
    static const struct {
        const char *unit;
        uint64_t mul;
    } units[] = {{"", 1},           {"B", 1},           {"KB", 1000},
                 {"MB", 1000000},   {"GB", 1000000000}, {"KiB", 1u << 10},
                 {"MiB", 1u << 20}, {"GiB", 1u << 30}};
    for (size_t k = 0; k < sizeof(units) / sizeof(units[0]); k++) {
        if (!bt_str_caseeq_c(u, units[k].unit)) continue;
        if (n > UINT64_MAX / units[k].mul) return false;
        *out = n * units[k].mul;
        return true;
    }
    return false;
}

bool bt_cfg_get_size(struct bt_cfg_loader *L, const struct bt_ynode *v, const char *what,
                     uint64_t min, uint64_t max, uint64_t *out)
{
    if (bt_ynode_is_null(v)) return true;
    char *s;
    size_t len;
    if (!bt_cfg_get_string(L, v, what, &s, &len, NULL)) return false;
    uint64_t n = 0;
    bool ok = parse_size((struct bt_str){s, len}, &n);
    if (!ok)
        bt_cfg_err(L, v,
                   "%s must be a size like 64KiB, 32MiB, 1MB or a number of bytes (got \"%.*s\")",
                   what, BT_CFG_SHOWN(len), s);
    else if (n < min || n > max) {
        ok = false;
        bt_cfg_err(L, v, "%s must be from %llu to %llu bytes (got \"%.*s\")", what,
                   (unsigned long long)min, (unsigned long long)max, BT_CFG_SHOWN(len), s);
    } else
        *out = n;
    free(s);
    return ok;
}

static void fmt_ms(uint64_t ms, char *buf, size_t cap)
{
    if (ms && ms % 3600000 == 0)
        snprintf(buf, cap, "%lluh", (unsigned long long)(ms / 3600000));
    else if (ms && ms % 60000 == 0)
        snprintf(buf, cap, "%llum", (unsigned long long)(ms / 60000));
    else if (ms && ms % 1000 == 0)
        snprintf(buf, cap, "%llus", (unsigned long long)(ms / 1000));
    else
        snprintf(buf, cap, "%llums", (unsigned long long)ms);
}

bool bt_cfg_get_duration(struct bt_cfg_loader *L, const struct bt_ynode *v, const char *what,
                         uint64_t min_ms, uint64_t max_ms, uint64_t *out)
{
    if (bt_ynode_is_null(v)) return true;
    char *s;
    size_t len;
    if (!bt_cfg_get_string(L, v, what, &s, &len, NULL)) return false;
    uint64_t ms = 0;
    bool ok = bt_parse_duration_ms((struct bt_str){s, len}, &ms);
    if (!ok)
        bt_cfg_err(L, v,
                   "%s must be a duration like 250ms, 10s, 10m, 1h or a number of seconds "
                   "(got \"%.*s\")",
                   what, BT_CFG_SHOWN(len), s);
    else if (ms < min_ms || ms > max_ms) {
        char lo[32], hi[32];
        fmt_ms(min_ms, lo, sizeof(lo));
        fmt_ms(max_ms, hi, sizeof(hi));
        bt_cfg_err(L, v, "%s must be from %s to %s (got \"%.*s\")", what, lo, hi, BT_CFG_SHOWN(len),
                   s);
        ok = false;
    } else
        *out = ms;
    free(s);
    return ok;
}

bool bt_cfg_get_bool(struct bt_cfg_loader *L, const struct bt_ynode *v, const char *what, bool *out)
{
    if (bt_ynode_is_null(v)) return true;
    char *s;
    size_t len;
    if (!bt_cfg_get_string(L, v, what, &s, &len, NULL)) return false;
    struct bt_str t = {s, len};
    bool ok = true;
    /* YAML 1.2 core schema booleans; yes/no/on/off are YAML 1.1 and would be
     * read differently by other tools. */
    if (bt_str_eq_c(t, "true") || bt_str_eq_c(t, "True") || bt_str_eq_c(t, "TRUE"))
        *out = true;
    else if (bt_str_eq_c(t, "false") || bt_str_eq_c(t, "False") || bt_str_eq_c(t, "FALSE"))
        *out = false;
    else {
        bt_cfg_err(L, v, "%s must be true or false (got \"%.*s\")", what, BT_CFG_SHOWN(len), s);
        ok = false;
    }
    free(s);
    return ok;
}

/* A plain decimal: digits with an optional fraction. No exponents, signs,
 * inf or nan: those are mistakes in a config file. */
static bool parse_decimal(const char *s, size_t len, double *out)
{
    size_t i = 0, digits = 0;
    while (i < len && s[i] >= '0' && s[i] <= '9')
        i++, digits++;
    if (i < len && s[i] == '.') {
        i++;
        while (i < len && s[i] >= '0' && s[i] <= '9')
            i++, digits++;
    }
    if (i != len || digits == 0 || len > 40) return false;
    char buf[48];
    memcpy(buf, s, len);
    buf[len] = 0;
    char *end = NULL;
    errno = 0;
    double d = strtod(buf, &end);
    if (errno || end != buf + len) return false;
    *out = d;
    return true;
}

bool bt_cfg_get_double(struct bt_cfg_loader *L, const struct bt_ynode *v, const char *what,
                       double min, double max, double *out)
{
    if (bt_ynode_is_null(v)) return true;
    char *s;
    size_t len;
    if (!bt_cfg_get_string(L, v, what, &s, &len, NULL)) return false;
    double d = 0;
    bool ok = parse_decimal(s, len, &d) && d >= min && d <= max;
    if (!ok)
        bt_cfg_err(L, v, "%s must be a number from %g to %g (got \"%.*s\")", what, min, max,
                   BT_CFG_SHOWN(len), s);
    else
        *out = d;
    free(s);
    return ok;
}

/* ---- addresses ---- */

bool bt_cfg_is_ip(int af, const char *s)
{
    unsigned char buf[16];
    return inet_pton(af, s, buf) == 1;
}

bool bt_config_parse_listen(const char *s, size_t len, const char *what, char *host, size_t hostcap,
                            uint16_t *port, char *why, size_t whycap)
{
    const char *h = NULL, *p = NULL;
    size_t hlen = 0;
    int shown = BT_CFG_SHOWN(len);
    if (len && s[0] == '[') {
        const char *rb = memchr(s, ']', len);
        if (!rb || (size_t)(rb - s) + 1 >= len || rb[1] != ':') goto bad;
        h = s + 1;
        hlen = (size_t)(rb - s) - 1;
        p = rb + 2;
    } else {
        const char *colon = memchr(s, ':', len);
        if (!colon) goto bad;
        if (memchr(colon + 1, ':', len - (size_t)(colon - s) - 1)) {
            snprintf(why, whycap,
                     "%s: write an IPv6 address in brackets, e.g. [::1]:4000 (got \"%.*s\")", what,
                     shown, s);
            return false;
        }
        h = s;
        hlen = (size_t)(colon - s);
        p = colon + 1;
    }
    size_t plen = len - (size_t)(p - s);
    uint64_t pn = 0;
    if (!bt_str_to_u64((struct bt_str){p, plen}, &pn) || pn < 1 || pn > 65535) {
        snprintf(why, whycap, "%s: port must be from 1 to 65535 (got \"%.*s\")", what,
                 BT_CFG_SHOWN(plen), p);
        return false;
    }
    if (hlen == 0) {
        snprintf(why, whycap,
                 "%s: the host is missing; write 0.0.0.0:%llu to listen on every address, or "
                 "127.0.0.1:%llu for this machine only",
                 what, (unsigned long long)pn, (unsigned long long)pn);
        return false;
    }
    char hbuf[BT_LISTEN_HOST_MAX];
    if (hlen >= sizeof(hbuf) || hostcap < sizeof(hbuf)) goto badhost;
    memcpy(hbuf, h, hlen);
    hbuf[hlen] = 0;
    if (s[0] != '[' && strcmp(hbuf, "localhost") == 0) {
        memcpy(hbuf, "127.0.0.1", sizeof("127.0.0.1"));
    } else if (s[0] == '[' ? !bt_cfg_is_ip(AF_INET6, hbuf) : !bt_cfg_is_ip(AF_INET, hbuf)) {
        goto badhost;
    }
    memcpy(host, hbuf, strlen(hbuf) + 1);
    *port = (uint16_t)pn;
    return true;
badhost:
    snprintf(why, whycap,
             "%s: \"%.*s\" is not an IP address (use an IPv4 address, [IPv6] in brackets, or "
             "localhost; names are not resolved)",
             what, BT_CFG_SHOWN(hlen), h);
    return false;
bad:
    snprintf(why, whycap, "%s must be HOST:PORT or [IPV6]:PORT, e.g. 127.0.0.1:4000 (got \"%.*s\")",
             what, shown, s);
    return false;
}

/* ---- names ---- */

static bool valid_name(const char *s, size_t len, bool allow_slash)
{
    if (len == 0 || len > BT_CFG_MAX_NAME) return false;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c <= 0x20 || c == 0x7f || (!allow_slash && c == '/')) return false;
    }
    return true;
}

bool bt_cfg_name_ok(struct bt_cfg_loader *L, const struct bt_ynode *k, const char *kind,
                    bool allow_slash)
{
    if (k->kind != BT_Y_SCALAR) {
        bt_cfg_err(L, k, "%ss: a %s name must be a plain name, not %s", kind, kind,
                   bt_cfg_kind_name(k));
        return false;
    }
    if (!valid_name(k->text, k->len, allow_slash)) {
        bt_cfg_err(L, k,
                   "invalid %s name \"%.*s\": 1 to %d characters, no %sspaces or control "
                   "characters",
                   kind, BT_CFG_SHOW(k), BT_CFG_MAX_NAME, allow_slash ? "" : "\"/\", ");
        return false;
    }
    return true;
}
