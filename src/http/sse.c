#include "http/sse.h"

#include <string.h>

void bt_sse_init(struct bt_sse *p, size_t max_event, bt_sse_cb cb, void *ud)
{
    bt_buf_init(&p->pending, max_event);
    bt_buf_init(&p->scratch, max_event);
    p->resume = 0;
    p->resume_empty = true;
    p->cb = cb;
    p->ud = ud;
}

void bt_sse_free(struct bt_sse *p)
{
    bt_buf_free(&p->pending);
    bt_buf_free(&p->scratch);
}

/* Finds the end of the first event in s: the offset just past the blank line that
 * terminates it, or 0 when s holds no complete event. Scanning starts at
 * *pos (with *line_empty telling whether the current line has content so far) and,
 * when no end is found, both are left where a later call on a longer s continues,
 * so a dribbled event is scanned once, not once per read. A CR at the very end is
 * not trusted as a terminator (a LF may follow). */
static size_t event_end(const char *s, size_t n, size_t *pos, bool *line_empty)
{
    size_t i = *pos;
    bool empty = *line_empty;
    while (i < n) {
        char c = s[i];
        if (c == '\n' || c == '\r') {
            size_t next = i + 1;
            if (c == '\r') {
                if (next == n) break; /* wait: CRLF may be split */
                if (s[next] == '\n') next++;
            }
            if (empty) return next;
            empty = true;
            i = next;
            continue;
        }
        empty = false;
        const char *nl = memchr(s + i, '\n', n - i);
        const char *cr = memchr(s + i, '\r', (nl ? (size_t)(nl - s) : n) - i);
        const char *hit = cr ? cr : nl;
        i = hit ? (size_t)(hit - s) : n;
    }
    *pos = i;
    *line_empty = empty;
    return 0;
}

/* Parses one complete event in raw[0..n) and calls the callback. */
static int dispatch(struct bt_sse *p, const char *raw, size_t n)
{
    struct bt_sse_event ev = {.raw = {raw, n}};
    size_t ndata = 0;
    size_t i = 0;
    bt_buf_reset(&p->scratch);
    while (i < n) {
        size_t start = i;
        const char *nl = memchr(raw + start, '\n', n - start);
        i = nl ? (size_t)(nl - raw) : n;
        const char *cr = memchr(raw + start, '\r', i - start);
        if (cr) i = (size_t)(cr - raw);
        struct bt_str line = {raw + start, i - start};
        if (i < n && raw[i] == '\r' && i + 1 < n && raw[i + 1] == '\n') i++;
        i++;
        if (line.len == 0 || line.p[0] == ':') continue;
        long colon = bt_str_index(line, ':');
        struct bt_str name = line, value = BT_STR_NULL;
        if (colon >= 0) {
            name.len = (size_t)colon;
            value = (struct bt_str){line.p + colon + 1, line.len - (size_t)colon - 1};
            if (value.len && value.p[0] == ' ') {
                value.p++;
                value.len--;
            }
        }
        if (bt_str_eq_c(name, "data")) {
            if (ndata == 0) {
                ev.data = value;
            } else {
                if (ndata == 1) {
                    bt_buf_reset(&p->scratch);
                    if (bt_buf_append_str(&p->scratch, ev.data)) return -1;
                }
                if (bt_buf_append(&p->scratch, "\n", 1) || bt_buf_append_str(&p->scratch, value))
                    return -1;
                ev.data = bt_buf_str(&p->scratch);
            }
            ndata++;
        } else if (bt_str_eq_c(name, "event")) {
            ev.event = value;
        }
    }
    ev.has_data = ndata > 0;
    if (!ev.has_data && ev.event.len == 0) return 0; /* comment-only block */
    return p->cb(p->ud, &ev) ? 1 : 0;
}

/* The common event, one `data:` line and a blank line with LF endings, parsed
 * without the general line splitter. `cr` is the first CR at or after data (or
 * NULL): a CR inside the event sends it the general way. Returns the event's
 * length (after calling cb; *rc holds dispatch's result), or 0 when not that shape. */
static size_t fast_event(struct bt_sse *p, const char *data, size_t n, const char *cr, int *rc)
{
    if (n < 7 || memcmp(data, "data:", 5) != 0) return 0;
    const char *nl = memchr(data + 5, '\n', n - 5);
    if (!nl || (size_t)(nl - data) + 1 >= n || nl[1] != '\n' || (cr && cr < nl)) return 0;
    size_t end = (size_t)(nl - data) + 2;
    const char *v = data + 5;
    if (v < nl && *v == ' ') v++;
    struct bt_sse_event ev = {.raw = {data, end}, .data = {v, (size_t)(nl - v)}, .has_data = true};
    *rc = p->cb(p->ud, &ev) ? 1 : 0;
    return end;
}

enum bt_err bt_sse_feed(struct bt_sse *p, const char *data, size_t n)
{
    const char *cr = NULL; /* the first CR at or after data, once looked for */
    bool cr_known = false;
    while (n) {
        if (p->pending.len == 0) {
            /* Zero-copy: events wholly inside this chunk are parsed in place. */
            if (!cr_known || (cr && cr < data)) {
                cr = memchr(data, '\r', n);
                cr_known = true;
            }
            int frc = 0;
            size_t fend = fast_event(p, data, n, cr, &frc);
            if (fend) {
                if (frc) return BT_ECANCELED;
                data += fend;
                n -= fend;
                continue;
            }
            size_t pos = 0;
            bool empty = true;
            size_t end = event_end(data, n, &pos, &empty);
            if (end == 0) break;
            int rc = dispatch(p, data, end);
            if (rc < 0) return BT_ETOOBIG;
            if (rc > 0) return BT_ECANCELED;
            data += end;
            n -= end;
            continue;
        }
        /* Complete the buffered event: append only up to its end. */
        size_t old = p->pending.len;
        size_t take = n;
        if (take > p->pending.max - old) take = p->pending.max - old;
        if (bt_buf_append(&p->pending, data, take)) return BT_ENOMEM;
        size_t end = event_end(p->pending.p, p->pending.len, &p->resume, &p->resume_empty);
        if (end == 0) {
            if (take < n) return BT_ETOOBIG;
            return BT_OK;
        }
        int rc = dispatch(p, p->pending.p, end);
        size_t used = end - old;
        bt_buf_reset(&p->pending);
        p->resume = 0;
        p->resume_empty = true;
        if (rc < 0) return BT_ETOOBIG;
        if (rc > 0) return BT_ECANCELED;
        data += used;
        n -= used;
    }
    if (n) {
        if (n > p->pending.max) return BT_ETOOBIG;
        if (bt_buf_append(&p->pending, data, n)) return BT_ETOOBIG;
    }
    return BT_OK;
}
