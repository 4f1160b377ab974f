#include "core/buf.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void bt_buf_init(struct bt_buf *b, size_t max)
{
    b->p = NULL;
    b->len = 0;
    b->cap = 0;
    b->max = max;
}

void bt_buf_free(struct bt_buf *b)
{
    free(b->p);
    b->p = NULL;
    b->len = 0;
    b->cap = 0;
}

enum bt_err bt_buf_reserve(struct bt_buf *b, size_t n)
{
    if (n > b->max || b->len > b->max - n) return BT_ETOOBIG;
    size_t need = b->len + n;
    if (need <= b->cap) return BT_OK;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < need) cap = cap > SIZE_MAX / 2 ? need : cap * 2;
    /* +1 leaves room for bt_buf_cstr()'s terminator without another growth. */
    if (b->max < SIZE_MAX && cap > b->max + 1) cap = b->max + 1;
    char *p = realloc(b->p, cap);
    if (!p) return BT_ENOMEM;
    b->p = p;
    b->cap = cap;
    return BT_OK;
}

enum bt_err bt_buf_append(struct bt_buf *b, const void *p, size_t n)
{
    if (n == 0) return BT_OK;
    enum bt_err err = bt_buf_reserve(b, n);
    if (err) return err;
    memcpy(b->p + b->len, p, n);
    b->len += n;
    return BT_OK;
}

enum bt_err bt_buf_append_c(struct bt_buf *b, const char *s)
{
    return bt_buf_append(b, s, strlen(s));
}

enum bt_err bt_buf_append_u64(struct bt_buf *b, unsigned long long v)
{
    char tmp[24];
    size_t i = sizeof(tmp);
    do {
        tmp[--i] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    return bt_buf_append(b, tmp + i, sizeof(tmp) - i);
}

enum bt_err bt_buf_vprintf(struct bt_buf *b, const char *fmt, va_list ap)
{
    va_list ap2;
    va_copy(ap2, ap);
    char small[256];
    int n = vsnprintf(small, sizeof(small), fmt, ap2);
    va_end(ap2);
    if (n < 0) return BT_EINVAL;
    if ((size_t)n < sizeof(small)) return bt_buf_append(b, small, (size_t)n);
    enum bt_err err = bt_buf_reserve(b, (size_t)n + 1);
    if (err) return err;
    vsnprintf(b->p + b->len, (size_t)n + 1, fmt, ap);
    b->len += (size_t)n;
    return BT_OK;
}

enum bt_err bt_buf_printf(struct bt_buf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    enum bt_err err = bt_buf_vprintf(b, fmt, ap);
    va_end(ap);
    return err;
}

void bt_buf_consume(struct bt_buf *b, size_t n)
{
    if (n >= b->len) {
        b->len = 0;
        return;
    }
    memmove(b->p, b->p + n, b->len - n);
    b->len -= n;
}

enum bt_err bt_buf_cstr(struct bt_buf *b)
{
    if (b->len + 1 > b->cap) {
        size_t cap = b->len + 1;
        char *p = realloc(b->p, cap);
        if (!p) return BT_ENOMEM;
        b->p = p;
        b->cap = cap;
    }
    b->p[b->len] = '\0';
    return BT_OK;
}

char *bt_buf_steal(struct bt_buf *b, size_t *len)
{
    if (bt_buf_cstr(b)) return NULL;
    char *p = b->p;
    if (len) *len = b->len;
    b->p = NULL;
    b->len = b->cap = 0;
    return p;
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

enum bt_err bt_buf_append_pct_decoded(struct bt_buf *b, struct bt_str s)
{
    for (size_t i = 0; i < s.len; i++) {
        unsigned char ch = (unsigned char)s.p[i];
        if (ch == '%') {
            if (i + 2 >= s.len) return BT_EPARSE;
            int hi = hexval(s.p[i + 1]), lo = hexval(s.p[i + 2]);
            if (hi < 0 || lo < 0) return BT_EPARSE;
            ch = (unsigned char)(hi * 16 + lo);
            i += 2;
        }
        if (ch < 0x20 || ch == 0x7f) return BT_EPARSE;
        enum bt_err err = bt_buf_append(b, &ch, 1);
        if (err) return err;
    }
    return BT_OK;
}
