#include "core/str.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>

bool bt_str_eq(struct bt_str a, struct bt_str b)
{
    return a.len == b.len && (a.len == 0 || memcmp(a.p, b.p, a.len) == 0);
}

static inline char lower(char c)
{
    return (c >= 'A' && c <= 'Z') ? (char)(c + 32) : c;
}

bool bt_str_caseeq(struct bt_str a, struct bt_str b)
{
    if (a.len != b.len) return false;
    for (size_t i = 0; i < a.len; i++)
        if (lower(a.p[i]) != lower(b.p[i])) return false;
    return true;
}

bool bt_str_starts_with(struct bt_str s, struct bt_str prefix)
{
    return s.len >= prefix.len && (prefix.len == 0 || memcmp(s.p, prefix.p, prefix.len) == 0);
}

long bt_str_index(struct bt_str s, char c)
{
    const char *hit = s.len ? memchr(s.p, c, s.len) : NULL;
    return hit ? (long)(hit - s.p) : -1;
}

struct bt_str bt_str_trim(struct bt_str s)
{
    while (s.len && (s.p[0] == ' ' || s.p[0] == '\t')) {
        s.p++;
        s.len--;
    }
    while (s.len && (s.p[s.len - 1] == ' ' || s.p[s.len - 1] == '\t')) s.len--;
    return s;
}

bool bt_str_to_u64(struct bt_str s, uint64_t *out)
{
    if (s.len == 0 || s.len > 20) return false;
    uint64_t v = 0;
    for (size_t i = 0; i < s.len; i++) {
        if (s.p[i] < '0' || s.p[i] > '9') return false;
        uint64_t d = (uint64_t)(s.p[i] - '0');
        if (v > (UINT64_MAX - d) / 10) return false;
        v = v * 10 + d;
    }
    *out = v;
    return true;
}

char *bt_str_dup(struct bt_str s)
{
    char *r = malloc(s.len + 1);
    if (!r) return NULL;
    if (s.len) memcpy(r, s.p, s.len);
    r[s.len] = '\0';
    return r;
}

size_t bt_str_decimal(char *buf, size_t cap, int64_t v, unsigned places)
{
    if (!buf || cap < BT_DECIMAL_MAX) return 0;
    buf[0] = 0;
    if (places > 18) return 0;
    char tmp[BT_DECIMAL_MAX]; /* '-', 19 integer digits, '.', 18 fraction digits */
    size_t i = sizeof(tmp);
    /* Work in unsigned so INT64_MIN negates without overflow. */
    uint64_t u = v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;
    bool frac = false; /* a fraction digit is written: zeros below it were dropped */
    for (unsigned k = 0; k < places; k++, u /= 10) {
        if (!frac && u % 10 == 0) continue;
        tmp[--i] = (char)('0' + u % 10);
        frac = true;
    }
    if (frac) tmp[--i] = '.';
    do {
        tmp[--i] = (char)('0' + u % 10);
        u /= 10;
    } while (u);
    if (v < 0) tmp[--i] = '-';
    size_t n = sizeof(tmp) - i;
    memcpy(buf, tmp + i, n);
    buf[n] = 0;
    return n;
}

void bt_str_mask_password(const char *conninfo, char *out, size_t cap)
{
    /* The spans of conninfo to hide, found in the source (not in a copy that
     * may be cut before the end of a password): a URI's password between the
     * ':' after "://" and the '@', and the value of each password=. */
    const char *hide_from[8], *hide_to[8];
    int nh = 0;
    const char *scheme = strstr(conninfo, "://");
    const char *at = scheme ? strchr(scheme + 3, '@') : NULL;
    if (scheme && at) {
        const char *colon = memchr(scheme + 3, ':', (size_t)(at - scheme - 3));
        if (colon) hide_from[nh] = colon + 1, hide_to[nh++] = at;
    }
    for (const char *pw = strstr(conninfo, "password="); pw && nh < 8; pw = strstr(pw + 9, "password=")) {
        const char *end = pw + 9;
        while (*end && *end != ' ') end++;
        hide_from[nh] = pw + 9, hide_to[nh++] = end;
    }
    size_t o = 0;
    for (const char *p = conninfo; *p && o + 1 < cap;) {
        int h = -1;
        for (int i = 0; i < nh; i++)
            if (p == hide_from[i]) h = i;
        if (h >= 0) {
            for (int k = 0; k < 3 && o + 1 < cap; k++) out[o++] = '*';
            p = hide_to[h];
            continue;
        }
        out[o++] = *p++;
    }
    if (cap) out[o] = 0;
}

bool bt_parse_redis_url(const char *url, char *host, size_t hostcap, int *port, int *db,
                        char *password, size_t pwcap, char *why, size_t whycap)
{
    *port = 6379;
    *db = 0;
    if (pwcap) password[0] = 0;
    if (strncmp(url, "redis://", 8) != 0) {
        snprintf(why, whycap, "must start with redis://");
        return false;
    }
    const char *p = url + 8, *at = strchr(p, '@');
    if (at) {
        const char *colon = memchr(p, ':', (size_t)(at - p));
        const char *pw = colon ? colon + 1 : p;
        size_t n = (size_t)(at - pw);
        if (n >= pwcap) {
            snprintf(why, whycap, "the password is too long");
            return false;
        }
        memcpy(password, pw, n);
        password[n] = 0;
        p = at + 1;
    }
    size_t hl = strcspn(p, ":/");
    if (hl == 0 || hl >= hostcap) {
        snprintf(why, whycap, "needs a host: redis://HOST:PORT/DB");
        return false;
    }
    memcpy(host, p, hl);
    host[hl] = 0;
    p += hl;
    if (*p == ':') {
        char *end;
        long v = strtol(p + 1, &end, 10);
        if (end == p + 1 || v < 1 || v > 65535 || (*end && *end != '/')) {
            snprintf(why, whycap, "the port must be from 1 to 65535");
            return false;
        }
        *port = (int)v;
        p = end;
    }
    if (*p == '/' && p[1]) {
        char *end;
        long v = strtol(p + 1, &end, 10);
        if (end == p + 1 || *end || v < 0 || v > 1000) {
            snprintf(why, whycap, "the database must be a number from 0 to 1000");
            return false;
        }
        *db = (int)v;
    } else if (*p && strcmp(p, "/") != 0) {
        snprintf(why, whycap, "unexpected \"%s\" after the host", p);
        return false;
    }
    return true;
}

void bt_str_catf(char *buf, size_t cap, const char *fmt, ...)
{
    if (!buf || !cap) return;
    size_t len = strnlen(buf, cap - 1);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf + len, cap - len, fmt, ap);
    va_end(ap);
}
