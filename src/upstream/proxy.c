/* Proxy URL parsing and NO_PROXY matching (see proxy.h for the rules). */
#include "upstream/proxy.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/buf.h"
#include "core/str.h"

enum {
    PROXY_DEFAULT_PORT = 1080, /* curl's */
    PROXY_HOST_MAX = 253,
    PROXY_CRED_MAX = 512, /* user:password after decoding */
};

static void why_set(char *why, size_t cap, const char *msg)
{
    if (cap) snprintf(why, cap, "%s", msg);
}

static const char B64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

static enum bt_err base64_append(struct bt_buf *b, const unsigned char *p, size_t n)
{
    for (size_t i = 0; i < n; i += 3) {
        unsigned v = (unsigned)p[i] << 16;
        if (i + 1 < n) v |= (unsigned)p[i + 1] << 8;
        if (i + 2 < n) v |= p[i + 2];
        char q[4] = {B64[(v >> 18) & 63], B64[(v >> 12) & 63], i + 1 < n ? B64[(v >> 6) & 63] : '=',
                     i + 2 < n ? B64[v & 63] : '='};
        enum bt_err err = bt_buf_append(b, q, 4);
        if (err) return err;
    }
    return BT_OK;
}

bool bt_host_char(char ch)
{
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
           ch == '-' || ch == '.' || ch == '_';
}

bool bt_split_hostport(struct bt_str auth, struct bt_str *host, struct bt_str *port, bool *v6)
{
    *port = BT_STR_NULL;
    *v6 = false;
    if (auth.len && auth.p[0] == '[') {
        const char *rb = memchr(auth.p, ']', auth.len);
        if (!rb) return false;
        *host = (struct bt_str){auth.p + 1, (size_t)(rb - auth.p) - 1};
        *v6 = true;
        size_t rest = auth.len - (size_t)(rb - auth.p) - 1;
        if (rest) {
            if (rb[1] != ':') return false;
            *port = (struct bt_str){rb + 2, rest - 1};
        }
        return true;
    }
    long colon = bt_str_index(auth, ':');
    *host = (struct bt_str){auth.p, colon >= 0 ? (size_t)colon : auth.len};
    if (colon >= 0) *port = (struct bt_str){auth.p + colon + 1, auth.len - (size_t)colon - 1};
    return true;
}

void bt_proxy_spec_free(struct bt_proxy_spec *s)
{
    if (!s) return;
    free(s->host);
    if (s->auth) {
        explicit_bzero(s->auth, strlen(s->auth));
        free(s->auth);
    }
    free(s->shown);
    memset(s, 0, sizeof(*s));
}

enum bt_err bt_proxy_parse(const char *url, size_t len, struct bt_proxy_spec *out, char *why,
                           size_t whycap)
{
    memset(out, 0, sizeof(*out));
    if (!url) {
        why_set(why, whycap, "no proxy URL");
        return BT_EINVAL;
    }
    struct bt_buf cred;
    bt_buf_init(&cred, PROXY_CRED_MAX);
    enum bt_err err = BT_EINVAL;
    while (len && (url[len - 1] == ' ' || url[len - 1] == '/'))
        len--; /* "http://proxy:3128/" */
    while (len && url[0] == ' ') {
        url++;
        len--;
    }
    const char *sep = NULL;
    for (size_t i = 0; i + 3 <= len && !sep; i++)
        if (url[i] == ':' && url[i + 1] == '/' && url[i + 2] == '/') sep = url + i;
    size_t off = 0;
    if (sep) {
        struct bt_str scheme = {url, (size_t)(sep - url)};
        if (!bt_str_caseeq_c(scheme, "http")) {
            why_set(why, whycap,
                    bt_str_caseeq_c(scheme, "https")
                        ? "https:// proxies (TLS to the proxy) are not supported; use http://"
                        : "only http:// proxies are supported (the scheme is not http)");
            goto fail;
        }
        off = (size_t)(sep - url) + 3;
    }
    const char *auth = url + off;
    size_t alen = len - off;
    if (memchr(auth, '/', alen) || memchr(auth, '?', alen) || memchr(auth, '#', alen)) {
        why_set(why, whycap, "a proxy URL has no path, query or fragment");
        goto fail;
    }
    const char *at = memrchr(auth, '@', alen);
    if (at) {
        size_t ulen = (size_t)(at - auth);
        const char *colon = memchr(auth, ':', ulen);
        size_t un = colon ? (size_t)(colon - auth) : ulen;
        if (bt_buf_append_pct_decoded(&cred, (struct bt_str){auth, un}) ||
            bt_buf_append(&cred, ":", 1) ||
            (colon && bt_buf_append_pct_decoded(&cred, (struct bt_str){colon + 1, ulen - un - 1}))) {
            why_set(why, whycap, "the proxy credentials are not valid (bad %-escape or too long)");
            goto fail;
        }
        alen -= ulen + 1;
        auth = at + 1;
    }
    /* host[:port] */
    struct bt_str hs, ps;
    bool v6;
    if (!bt_split_hostport((struct bt_str){auth, alen}, &hs, &ps, &v6)) goto bad_host;
    const char *host = hs.p, *port = ps.p;
    size_t hlen = hs.len, plen = ps.len;
    if (hlen == 0 || hlen > PROXY_HOST_MAX) goto bad_host;
    char hbuf[PROXY_HOST_MAX + 1];
    memcpy(hbuf, host, hlen);
    hbuf[hlen] = 0;
    if (v6) {
        unsigned char tmp[16];
        if (inet_pton(AF_INET6, hbuf, tmp) != 1) goto bad_host;
    } else {
        for (size_t i = 0; i < hlen; i++)
            if (!bt_host_char(hbuf[i])) goto bad_host;
    }
    uint64_t pn = PROXY_DEFAULT_PORT;
    if (port && (!bt_str_to_u64((struct bt_str){port, plen}, &pn) || pn < 1 || pn > 65535)) {
        why_set(why, whycap, "the proxy port must be from 1 to 65535");
        goto fail;
    }
    err = BT_ENOMEM;
    out->port = (uint16_t)pn;
    out->host = strdup(hbuf);
    if (!out->host) goto fail;
    struct bt_buf sb;
    bt_buf_init(&sb, 512);
    if (bt_buf_printf(&sb, "http://%s%s%s%s:%u", at ? "***@" : "", v6 ? "[" : "", hbuf,
                      v6 ? "]" : "", (unsigned)out->port) ||
        bt_buf_cstr(&sb)) {
        bt_buf_free(&sb);
        goto fail;
    }
    out->shown = bt_buf_steal(&sb, NULL);
    if (at) {
        struct bt_buf ab;
        bt_buf_init(&ab, 16 + PROXY_CRED_MAX * 2);
        if (bt_buf_append_c(&ab, "Basic ") ||
            base64_append(&ab, (const unsigned char *)cred.p, cred.len) || bt_buf_cstr(&ab)) {
            if (ab.p) explicit_bzero(ab.p, ab.len);
            bt_buf_free(&ab);
            goto fail;
        }
        out->auth = bt_buf_steal(&ab, NULL);
    }
    if (cred.p) explicit_bzero(cred.p, cred.cap);
    bt_buf_free(&cred);
    return BT_OK;
bad_host:
    why_set(why, whycap, "the proxy host is missing or not valid (IPv6 addresses go in brackets)");
fail:
    if (cred.p) explicit_bzero(cred.p, cred.cap);
    bt_buf_free(&cred);
    bt_proxy_spec_free(out);
    return err;
}

/* ---- NO_PROXY ---- */

/* Whether `host` (an address literal) lies in addr/bits. */
static bool ip_in(const char *host, const char *net, int bits)
{
    unsigned char a[16], b[16];
    int alen;
    if (inet_pton(AF_INET, host, a) == 1 && inet_pton(AF_INET, net, b) == 1)
        alen = 4;
    else if (inet_pton(AF_INET6, host, a) == 1 && inet_pton(AF_INET6, net, b) == 1)
        alen = 16;
    else
        return false;
    if (bits < 0 || bits > alen * 8) bits = alen * 8;
    int full = bits / 8, rest = bits % 8;
    if (memcmp(a, b, (size_t)full) != 0) return false;
    if (!rest) return true;
    unsigned char mask = (unsigned char)(0xff << (8 - rest));
    return (a[full] & mask) == (b[full] & mask);
}

static bool is_literal(const char *h)
{
    unsigned char tmp[16];
    return inet_pton(AF_INET, h, tmp) == 1 || inet_pton(AF_INET6, h, tmp) == 1;
}

/* One NO_PROXY entry e[0..n) against host:port. */
static bool entry_match(const char *e, size_t n, const char *host, size_t hl, uint16_t port)
{
    if (n == 1 && e[0] == '*') return true;
    /* An optional port: "[v6]:port", "name:port"; a bare IPv6 has several colons. */
    const char *ent = e;
    size_t en = n;
    if (n && e[0] == '[') {
        const char *rb = memchr(e, ']', n);
        if (!rb) return false;
        ent = e + 1;
        en = (size_t)(rb - e) - 1;
        size_t rest = n - (size_t)(rb - e) - 1;
        if (rest) {
            uint64_t p;
            if (rb[1] != ':' || !bt_str_to_u64((struct bt_str){rb + 2, rest - 1}, &p) || p != port)
                return false;
        }
    } else {
        const char *c1 = memchr(e, ':', n);
        if (c1 && c1 == memrchr(e, ':', n)) {
            uint64_t p;
            if (!bt_str_to_u64((struct bt_str){c1 + 1, n - (size_t)(c1 - e) - 1}, &p) || p != port)
                return false;
            en = (size_t)(c1 - e);
        }
    }
    if (!en || en > 300) return false;
    char eb[301];
    memcpy(eb, ent, en);
    eb[en] = 0;
    /* A range: address/bits. */
    char *slash = strchr(eb, '/');
    if (slash) {
        *slash = 0;
        uint64_t bits;
        if (!bt_str_to_u64(bt_str_c(slash + 1), &bits) || bits > 128) return false;
        return ip_in(host, eb, (int)bits);
    }
    if (is_literal(eb)) return ip_in(host, eb, -1);
    if (is_literal(host)) return false; /* names never match an address */
    /* A name: itself or any subdomain, leading dot or not, trailing dot ignored. */
    const char *name = eb;
    size_t nl = en;
    if (name[0] == '.') {
        name++;
        nl--;
    }
    if (nl && name[nl - 1] == '.') nl--;
    if (hl && host[hl - 1] == '.') hl--;
    if (!nl || nl > hl) return false;
    if (strncasecmp(host + hl - nl, name, nl) != 0) return false;
    return hl == nl || host[hl - nl - 1] == '.';
}

bool bt_no_proxy_match(const char *list, const char *host, uint16_t port)
{
    if (!list || !host) return false;
    struct bt_str h = bt_str_c(host);
    if (h.len >= 2 && h.p[0] == '[' && h.p[h.len - 1] == ']') {
        h.p++;
        h.len -= 2;
    }
    char hb[300];
    if (h.len >= sizeof(hb)) return false;
    memcpy(hb, h.p, h.len);
    hb[h.len] = 0;
    const char *p = list;
    while (*p) {
        while (*p == ',' || *p == ' ' || *p == '\t')
            p++;
        const char *s = p;
        while (*p && *p != ',' && *p != ' ' && *p != '\t')
            p++;
        if (p > s && entry_match(s, (size_t)(p - s), hb, h.len, port)) return true;
    }
    return false;
}
