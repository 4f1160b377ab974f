/* bench/micro_relay: what the stream relay does per plain event, and what it would
 * cost to strip the `"usage":null` that a provider adds to every chunk once baton
 * asks for usage on the client's behalf (stream_options.include_usage). Built by
 * bench/run.sh against build/release/libbaton.a.
 *   micro_relay FILE.sse   events of FILE, each given a `,"usage":null` tail as the
 *                          provider sends them; prints one line:
 *   micro_relay events=N check_ns=A strip_ns=B added_pct=C
 * check: the relay's per-event work today (the chunk pre-check; the bytes then go
 * out zero-copy from the read buffer). strip: the same check, then the tail found
 * and the event copied without it (a copy is what removal needs: the event can no
 * longer leave as a run of the read buffer merged with its neighbours). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"

#include "core/buf.h"
#include "provider/openai.h"

#define TAIL ",\"usage\":null}"
#define MAX_EVENTS 4096

struct ctx {
    struct bt_str ev[MAX_EVENTS]; /* the JSON of each event ("data: " removed) */
    size_t n;
    struct bt_buf out;
    unsigned long sink;
};

static void do_check(struct ctx *c)
{
    for (size_t i = 0; i < c->n; i++) c->sink += bt_openai_chunk_is_plain(c->ev[i]);
}

static void do_strip(struct ctx *c)
{
    bt_buf_reset(&c->out);
    for (size_t i = 0; i < c->n; i++) {
        struct bt_str d = c->ev[i];
        c->sink += bt_openai_chunk_is_plain(d);
        size_t t = sizeof(TAIL) - 1;
        bt_buf_append_c(&c->out, "data: ");
        if (d.len >= t && memcmp(d.p + d.len - t, TAIL, t) == 0) {
            bt_buf_append(&c->out, d.p, d.len - t);
            bt_buf_append(&c->out, "}\n\n", 3);
        } else {
            bt_buf_append(&c->out, d.p, d.len);
            bt_buf_append(&c->out, "\n\n", 2);
        }
    }
    c->sink += c->out.len;
}

static double time_loop(double secs, void (*fn)(struct ctx *), struct ctx *c)
{
    long iters = 0;
    double t0 = now_s(), t;
    do {
        for (int k = 0; k < 16; k++) fn(c);
        iters += 16;
    } while ((t = now_s()) - t0 < secs);
    return (t - t0) / (double)iters / (double)c->n;
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: micro_relay FILE.sse\n");
        return 2;
    }
    double secs = getenv("MICRO_SECS") ? strtod(getenv("MICRO_SECS"), NULL) : 1.0;
    if (secs <= 0) secs = 1.0;
    size_t len = 0;
    char *src = read_file(argv[1], &len);
    if (!src) {
        fprintf(stderr, "micro_relay: cannot read %s\n", argv[1]);
        return 1;
    }
    /* Each `data: {...}` line becomes `{...,"usage":null}`, as a provider sends it. */
    struct bt_buf text;
    bt_buf_init(&text, 64u << 20);
    static struct ctx c;
    size_t offs[MAX_EVENTS], lens[MAX_EVENTS];
    for (char *p = src, *end = src + len; p < end && c.n < MAX_EVENTS;) {
        char *nl = memchr(p, '\n', (size_t)(end - p));
        if (!nl) nl = end;
        if (nl - p > 8 && memcmp(p, "data: {", 7) == 0 && nl[-1] == '}') {
            offs[c.n] = text.len;
            bt_buf_append(&text, p + 6, (size_t)(nl - p - 7));
            bt_buf_append_c(&text, TAIL);
            lens[c.n] = text.len - offs[c.n];
            c.n++;
        }
        p = nl + 1;
    }
    if (!c.n) {
        fprintf(stderr, "micro_relay: no JSON events in %s\n", argv[1]);
        return 1;
    }
    for (size_t i = 0; i < c.n; i++) c.ev[i] = (struct bt_str){text.p + offs[i], lens[i]};
    bt_buf_init(&c.out, 64u << 20);
    double check = time_loop(secs, do_check, &c);
    double strip = time_loop(secs, do_strip, &c);
    printf("micro_relay events=%zu check_ns=%.1f strip_ns=%.1f added_pct=%.0f\n", c.n,
           check * 1e9, strip * 1e9, (strip - check) / check * 100.0);
    bt_buf_free(&c.out);
    bt_buf_free(&text);
    free(src);
    return c.sink == 0; /* never: keeps the work observable */
}
