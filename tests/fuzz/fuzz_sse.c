/* libFuzzer target for the SSE parser (src/http/sse.c), the scanner that reads
 * every provider stream. Input: byte 0 picks how the rest is cut into feeds (the
 * parser sees arbitrary read boundaries, CRLF split across them included), byte 1
 * picks a small event cap; the rest is the stream.
 *
 * Checked:
 *  - no crash, leak or out-of-bounds access, whatever the bytes and cuts;
 *  - with a cap larger than the input, feeding it whole and feeding it in pieces
 *    give the same events (event name, data, raw bytes) and the same result;
 *  - each event's raw bytes appear in the input in order and end with a line end;
 *  - data and event name agree with a separate, deliberately simple reading of the
 *    raw bytes (lines split at CRLF, CR or LF; comments skipped; one leading space
 *    dropped; data lines joined with "\n"; the last event: line wins);
 *  - with the small cap, the parser either returns BT_ETOOBIG / BT_OK and every
 *    event that was buffered across feeds respects the cap.
 * Known and accepted: an event wholly inside one feed is parsed in place without
 * looking at the cap (the upstream client reads at most 64 KiB at a time and the
 * gateway's cap is 8 MiB, so this cannot matter there). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "http/sse.h"

#define CHECK(c)                                                                                \
    do {                                                                                       \
        if (!(c)) __builtin_trap();                                                            \
    } while (0)

#define MAX_EVENTS 4096

struct rec {
    char *event, *data, *raw;
    size_t event_len, data_len, raw_len;
    bool has_data;
};

struct run {
    struct rec ev[MAX_EVENTS];
    size_t n;
    const uint8_t *input;
    size_t input_len;
    size_t cursor; /* where the next raw must start at or after */
    size_t cap;    /* event cap of this run */
};

static char *dup_bytes(struct bt_str s)
{
    char *p = malloc(s.len + 1);
    CHECK(p);
    if (s.len) memcpy(p, s.p, s.len);
    p[s.len] = 0;
    return p;
}

/* The simple reading of one raw event: fills data/event as the spec says. */
static void reference(const char *raw, size_t n, char *data, size_t *data_len, const char **ev,
                      size_t *ev_len, bool *has_data)
{
    size_t i = 0, dl = 0;
    *has_data = false;
    *ev = NULL;
    *ev_len = 0;
    while (i < n) {
        size_t s = i;
        while (i < n && raw[i] != '\r' && raw[i] != '\n') i++;
        size_t e = i;
        if (i < n && raw[i] == '\r' && i + 1 < n && raw[i + 1] == '\n') i += 2;
        else if (i < n) i++;
        if (e == s || raw[s] == ':') continue;
        size_t c = s;
        while (c < e && raw[c] != ':') c++;
        size_t vs = c < e ? c + 1 : e;
        if (vs < e && raw[vs] == ' ') vs++;
        size_t name_len = c - s;
        if (name_len == 4 && memcmp(raw + s, "data", 4) == 0) {
            if (*has_data) data[dl++] = '\n';
            memcpy(data + dl, raw + vs, e - vs);
            dl += e - vs;
            *has_data = true;
        } else if (name_len == 5 && memcmp(raw + s, "event", 5) == 0) {
            *ev = raw + vs;
            *ev_len = e - vs;
        }
    }
    *data_len = dl;
}

static int on_event(void *ud, const struct bt_sse_event *e)
{
    struct run *r = ud;
    CHECK(e->raw.len > 0);
    char last = e->raw.p[e->raw.len - 1];
    CHECK(last == '\n' || last == '\r');
    CHECK(e->has_data || e->event.len > 0); /* comment-only blocks are not events */
    /* The raw bytes are the input's, in order. */
    CHECK(r->cursor + e->raw.len <= r->input_len);
    const uint8_t *at = memmem(r->input + r->cursor, r->input_len - r->cursor, e->raw.p, e->raw.len);
    CHECK(at != NULL);
    r->cursor = (size_t)(at - r->input) + e->raw.len;
    /* The simple reading agrees. */
    char *data = malloc(e->raw.len + 1);
    CHECK(data);
    size_t dl, el;
    const char *ev;
    bool hd;
    reference(e->raw.p, e->raw.len, data, &dl, &ev, &el, &hd);
    CHECK(hd == e->has_data);
    CHECK(dl == e->data.len && (dl == 0 || memcmp(data, e->data.p, dl) == 0));
    CHECK(el == e->event.len && (el == 0 || memcmp(ev, e->event.p, el) == 0));
    free(data);
    if (r->n < MAX_EVENTS) {
        struct rec *x = &r->ev[r->n++];
        x->event = dup_bytes(e->event);
        x->event_len = e->event.len;
        x->data = dup_bytes(e->data);
        x->data_len = e->data.len;
        x->raw = dup_bytes(e->raw);
        x->raw_len = e->raw.len;
        x->has_data = e->has_data;
    }
    return 0;
}

static void run_free(struct run *r)
{
    for (size_t i = 0; i < r->n; i++) {
        free(r->ev[i].event);
        free(r->ev[i].data);
        free(r->ev[i].raw);
    }
}

/* Feeds `n` bytes in pieces chosen by `mode`; stops at the first error. */
static enum bt_err feed(struct run *r, const uint8_t *p, size_t n, uint8_t mode)
{
    struct bt_sse sse;
    bt_sse_init(&sse, r->cap, on_event, r);
    enum bt_err err = BT_OK;
    size_t off = 0;
    uint32_t state = mode * 2654435761u + 1;
    while (off < n && !err) {
        size_t piece;
        switch (mode & 3) {
        case 0: piece = n; break;          /* whole */
        case 1: piece = 1; break;          /* byte by byte */
        case 2: piece = 1 + (mode >> 2); break; /* fixed small pieces */
        default:                           /* pseudo-random pieces */
            state = state * 1103515245u + 12345u;
            piece = 1 + (state >> 16) % 97;
        }
        if (piece > n - off) piece = n - off;
        err = bt_sse_feed(&sse, (const char *)p + off, piece);
        off += piece;
    }
    bt_sse_free(&sse);
    return err;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2) return 0;
    uint8_t mode = data[0];
    size_t small_cap = 16 + (size_t)data[1] * 4;
    const uint8_t *p = data + 2;
    size_t n = size - 2;

    /* Static: the event tables are large; only the header fields need resetting. */
    static struct run whole, pieces, small;
    whole.n = pieces.n = small.n = 0;
    whole.cursor = pieces.cursor = small.cursor = 0;
    whole.input = pieces.input = small.input = p;
    whole.input_len = pieces.input_len = small.input_len = n;
    whole.cap = pieces.cap = n + 16;
    small.cap = small_cap;

    enum bt_err e1 = feed(&whole, p, n, 0);
    /* Byte by byte only for short inputs: the parser rescans its pending event on
     * every feed, so long inputs fed that way only slow the fuzzer down. */
    enum bt_err e2 = feed(&pieces, p, n, n <= 1024 ? (mode | 1) : (mode | 3));
    CHECK(e1 == BT_OK && e2 == BT_OK);
    CHECK(whole.n == pieces.n);
    for (size_t i = 0; i < whole.n; i++) {
        struct rec *a = &whole.ev[i], *b = &pieces.ev[i];
        CHECK(a->has_data == b->has_data);
        CHECK(a->raw_len == b->raw_len && memcmp(a->raw, b->raw, a->raw_len) == 0);
        CHECK(a->data_len == b->data_len && memcmp(a->data, b->data, a->data_len) == 0);
        CHECK(a->event_len == b->event_len && memcmp(a->event, b->event, a->event_len) == 0);
    }

    uint8_t smode = (mode & 3) == 1 && n > 1024 ? (mode | 3) : mode;
    enum bt_err e3 = feed(&small, p, n, smode);
    CHECK(e3 == BT_OK || e3 == BT_ETOOBIG);
    /* Whatever the small-cap run delivered is a prefix of the whole run. */
    CHECK(small.n <= whole.n);
    for (size_t i = 0; i < small.n; i++)
        CHECK(small.ev[i].raw_len == whole.ev[i].raw_len &&
              memcmp(small.ev[i].raw, whole.ev[i].raw, small.ev[i].raw_len) == 0);
    /* Fed byte by byte nothing is parsed in place, so the cap holds for every event. */
    if ((smode & 3) == 1)
        for (size_t i = 0; i < small.n; i++) CHECK(small.ev[i].raw_len <= small.cap);

    run_free(&whole);
    run_free(&pieces);
    run_free(&small);
    return 0;
}
