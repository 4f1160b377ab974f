/* A growable byte buffer that is born with a size cap. Appending past the cap
 * fails with BT_ETOOBIG and leaves the buffer unchanged, so every limit (request
 * body, header block, SSE event, upstream reply) is enforced where bytes land. */
#ifndef BT_CORE_BUF_H
#define BT_CORE_BUF_H

#include <stdarg.h>
#include <stddef.h>

#include "core/err.h"
#include "core/str.h"

struct bt_buf {
    char *p;    /* malloc'd storage, owned by the buffer; NULL until first growth */
    size_t len; /* bytes in use */
    size_t cap; /* bytes allocated */
    size_t max; /* hard cap on len */
};

/* Initialises an empty buffer that may hold at most `max` bytes. Allocates nothing. */
void bt_buf_init(struct bt_buf *b, size_t max);
/* Frees the storage; the buffer is empty afterwards and may be reused. */
void bt_buf_free(struct bt_buf *b);
/* Forgets the contents, keeps the storage. */
static inline void bt_buf_reset(struct bt_buf *b) { b->len = 0; }
/* Ensures room for `n` more bytes. BT_ETOOBIG past max, BT_ENOMEM on failure. */
enum bt_err bt_buf_reserve(struct bt_buf *b, size_t n);
enum bt_err bt_buf_append(struct bt_buf *b, const void *p, size_t n);
static inline enum bt_err bt_buf_append_str(struct bt_buf *b, struct bt_str s)
{
    return bt_buf_append(b, s.p, s.len);
}
/* Appends s to b counted against a budget several buffers share: *used of
 * `max` bytes are spent (a buffer not yet begun gets `max` as its own cap).
 * BT_ETOOBIG past the budget, with nothing appended. */
static inline enum bt_err bt_buf_append_budget(struct bt_buf *b, struct bt_str s, size_t *used,
                                               size_t max)
{
    if (s.len > max - *used) return BT_ETOOBIG;
    if (!b->max) bt_buf_init(b, max);
    enum bt_err err = bt_buf_append_str(b, s);
    if (!err) *used += s.len;
    return err;
}
enum bt_err bt_buf_append_c(struct bt_buf *b, const char *s);
enum bt_err bt_buf_append_u64(struct bt_buf *b, unsigned long long v);
/* printf-style append (vsnprintf underneath). */
enum bt_err bt_buf_printf(struct bt_buf *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
enum bt_err bt_buf_vprintf(struct bt_buf *b, const char *fmt, va_list ap)
    __attribute__((format(printf, 2, 0)));
/* Appends `s` percent-decoded (a URL path segment, proxy credentials). BT_EPARSE
 * on a broken escape or a control byte (C0, DEL: it could end up in a header or a
 * log line), BT_ETOOBIG at the cap; the buffer may then hold part of it. */
enum bt_err bt_buf_append_pct_decoded(struct bt_buf *b, struct bt_str s);
/* Removes the first `n` bytes (n <= len), moving the rest to the front. */
void bt_buf_consume(struct bt_buf *b, size_t n);
/* Makes the contents NUL-terminated (the NUL is not counted in len). */
enum bt_err bt_buf_cstr(struct bt_buf *b);
/* Hands the storage to the caller (free()), leaving the buffer empty. */
char *bt_buf_steal(struct bt_buf *b, size_t *len);
static inline struct bt_str bt_buf_str(const struct bt_buf *b)
{
    return (struct bt_str){b->p, b->len};
}

#endif
