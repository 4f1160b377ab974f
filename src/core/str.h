/* Slices: a pointer and a length into memory someone else owns (a receive buffer,
 * an arena, a config snapshot). A slice never owns its bytes and is not
 * NUL-terminated unless said otherwise. */
#ifndef BT_CORE_STR_H
#define BT_CORE_STR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

struct bt_str {
    const char *p; /* first byte; may be NULL when len == 0 */
    size_t len;    /* number of bytes */
};

#define BT_STR(lit) ((struct bt_str){(lit), sizeof(lit) - 1})
#define BT_STR_NULL ((struct bt_str){NULL, 0})
/* printf helper: printf("%.*s", BT_STR_FMT(s)) */
#define BT_STR_FMT(s) (int)(s).len, (s).p

/* Slice over a NUL-terminated string (borrowed); NULL gives an empty slice.
 * Inline, with the _c comparisons below, so that the length of a literal is
 * known when compiling: header names are compared this way on every request. */
static inline struct bt_str bt_str_c(const char *s)
{
    return s ? (struct bt_str){s, strlen(s)} : BT_STR_NULL;
}
bool bt_str_eq(struct bt_str a, struct bt_str b);
static inline bool bt_str_eq_c(struct bt_str a, const char *b)
{
    return bt_str_eq(a, bt_str_c(b));
}
/* ASCII case-insensitive comparison (for HTTP header names). */
bool bt_str_caseeq(struct bt_str a, struct bt_str b);
static inline bool bt_str_caseeq_c(struct bt_str a, const char *b)
{
    return bt_str_caseeq(a, bt_str_c(b));
}
bool bt_str_starts_with(struct bt_str s, struct bt_str prefix);
/* Index of the first `c` in s, or -1. */
long bt_str_index(struct bt_str s, char c);
/* Slice with leading and trailing spaces and tabs removed. */
struct bt_str bt_str_trim(struct bt_str s);
/* Parses a whole slice as an unsigned decimal number; false on any other byte,
 * empty input or overflow. */
bool bt_str_to_u64(struct bt_str s, uint64_t *out);
/* FNV-1a over n bytes, continuing from h (start from BT_FNV_OFFSET): a fast,
 * non-cryptographic hash for tables, checksums and deterministic draws. */
#define BT_FNV_OFFSET 0xcbf29ce484222325ULL
static inline uint64_t bt_fnv1a(uint64_t h, const void *p, size_t n)
{
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++) h = (h ^ b[i]) * 0x100000001b3ULL;
    return h;
}
/* v / 10^places written exactly in decimal, no binary floating point, no
 * exponent, trailing fraction zeros dropped: (12345, 3) -> "12.345",
 * (12300, 3) -> "12.3", (5, 3) -> "0.005", (12000, 3) -> "12", (0, 6) -> "0".
 * places is at most 18. Writes a NUL-terminated string into buf (cap >=
 * BT_DECIMAL_MAX) and returns its length; 0 (and "") when places or cap is out
 * of range. */
#define BT_DECIMAL_MAX 48
size_t bt_str_decimal(char *buf, size_t cap, int64_t v, unsigned places);
/* Copies s into a new malloc'd NUL-terminated string owned by the caller
 * (free()); NULL when out of memory. */
char *bt_str_dup(struct bt_str s);

/* Appends printf-style text to the NUL-terminated string in buf[0..cap), cut
 * at cap (buf NULL or cap 0: nothing). */
void bt_str_catf(char *buf, size_t cap, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* A connection string (a URI's user:password@, or password=... pairs) with
 * the password replaced by "***", into out[0..cap), for messages and logs. */
void bt_str_mask_password(const char *conninfo, char *out, size_t cap);
/* Parses redis://[:PASSWORD@]HOST[:PORT][/DB] (HOST an address or a name;
 * PORT default 6379, DB default 0). False with a reason when malformed. */
bool bt_parse_redis_url(const char *url, char *host, size_t hostcap, int *port, int *db,
                        char *password, size_t pwcap, char *why, size_t whycap);

#endif
