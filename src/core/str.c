#include "core/str.h"

#include <stdlib.h>
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
