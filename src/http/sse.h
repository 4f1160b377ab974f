/* Incremental Server-Sent Events parser (the text/event-stream format of the
 * WHATWG HTML spec): feed bytes as they arrive, get one callback per complete
 * event with its `event:` name, its data (data lines joined by "\n") and its raw
 * bytes exactly as received (so the fast path can forward an event unchanged).
 * LF, CRLF and CR line endings; comments and unknown fields are skipped (but kept
 * in the raw bytes). A single event larger than the cap is BT_ETOOBIG. */
#ifndef BT_HTTP_SSE_H
#define BT_HTTP_SSE_H

#include <stdbool.h>
#include <stddef.h>

#include "core/buf.h"
#include "core/err.h"
#include "core/str.h"

struct bt_sse_event {
    struct bt_str event; /* `event:` value; empty when absent */
    struct bt_str data;  /* data lines joined with "\n"; empty when none */
    struct bt_str raw;   /* the event's bytes including its terminating blank line */
    bool has_data;       /* at least one data: line */
};

/* Return non-zero to stop parsing (bt_sse_feed then returns BT_ECANCELED). Slices
 * in `ev` are valid during the call only. */
typedef int (*bt_sse_cb)(void *ud, const struct bt_sse_event *ev);

struct bt_sse {
    struct bt_buf pending; /* bytes of an incomplete event */
    struct bt_buf scratch; /* joined data of multi-line events */
    size_t resume;         /* where scanning `pending` for the event's end continues */
    bool resume_empty;     /* the line at `resume` has no content so far */
    bt_sse_cb cb;
    void *ud;
};

/* Prepares a parser; max_event caps one event's raw size. Allocates nothing yet. */
void bt_sse_init(struct bt_sse *p, size_t max_event, bt_sse_cb cb, void *ud);
void bt_sse_free(struct bt_sse *p);
/* Parses `n` bytes, calling cb for each event completed by them. */
enum bt_err bt_sse_feed(struct bt_sse *p, const char *data, size_t n);
/* True when bytes of an unfinished event are buffered. */
static inline bool bt_sse_partial(const struct bt_sse *p) { return p->pending.len > 0; }

#endif
