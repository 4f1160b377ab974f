/* bench/micro_json: throughput of the JSON tokenizer and of the span splicer
 * (the fast path's one edit: replace "model" and write the body out) on the
 * benchmark's request fixtures. Built by bench/run.sh against
 * build/release/libbaton.a.
 *   micro_json FILE...   prints one line per file:
 *   micro_json file=F bytes=N parse_mb_s=X splice_mb_s=Y parse_ns=A splice_ns=B */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common.h"

#include "core/arena.h"
#include "core/buf.h"
#include "json/json.h"

struct ctx {
    const char *src;
    size_t len;
    struct bt_arena arena;
    struct bt_buf out;
    struct bt_json_doc doc;
    enum bt_err err;   /* any error seen, sticky */
    unsigned long sink; /* keeps the work observable */
};

static void do_parse(struct ctx *c)
{
    bt_arena_reset(&c->arena);
    if (bt_json_parse(&c->doc, c->src, c->len, &c->arena, NULL, NULL)) c->err = BT_EPARSE;
    c->sink += c->doc.ntoks;
}

/* The fast path's work on a request body: tokenize, replace "model", write out. */
static void do_splice(struct ctx *c)
{
    do_parse(c);
    struct bt_json_splice sp;
    bt_json_splice_init(&sp, &c->doc, &c->arena);
    enum bt_err e = bt_json_splice_set(&sp, 0, "model", BT_STR("\"gpt-4o-mini-2024-07-18\""));
    bt_buf_reset(&c->out);
    if (!e) e = bt_json_splice_apply(&sp, &c->out);
    if (e) c->err = e;
    c->sink += c->out.len;
}

/* Calls fn in batches until `secs` have passed; returns seconds per call. */
static double time_loop(double secs, void (*fn)(struct ctx *), struct ctx *c)
{
    long iters = 0;
    double t0 = now_s(), t;
    do {
        for (int k = 0; k < 64; k++) fn(c);
        iters += 64;
    } while ((t = now_s()) - t0 < secs);
    return (t - t0) / (double)iters;
}

int main(int argc, char **argv)
{
    double secs = getenv("MICRO_SECS") ? strtod(getenv("MICRO_SECS"), NULL) : 1.0;
    if (secs <= 0) secs = 1.0;
    int rc = 0;
    for (int i = 1; i < argc; i++) {
        size_t len = 0;
        char *src = read_file(argv[i], &len);
        if (!src) {
            fprintf(stderr, "micro_json: cannot read %s\n", argv[i]);
            return 1;
        }
        struct ctx c = {.src = src, .len = len};
        bt_arena_init(&c.arena, 64 * 1024, 0);
        bt_buf_init(&c.out, 64u << 20);
        double parse = time_loop(secs, do_parse, &c);
        double splice = time_loop(secs, do_splice, &c);
        if (c.err) {
            fprintf(stderr, "micro_json: %s: JSON error %d\n", argv[i], (int)c.err);
            rc = 1;
        }
        const char *base = strrchr(argv[i], '/');
        printf("micro_json file=%s bytes=%zu tokens=%u parse_mb_s=%.0f splice_mb_s=%.0f "
               "parse_ns=%.0f splice_ns=%.0f\n",
               base ? base + 1 : argv[i], len, c.doc.ntoks, (double)len / parse / 1e6,
               (double)len / splice / 1e6, parse * 1e9, splice * 1e9);
        bt_buf_free(&c.out);
        bt_arena_free(&c.arena);
        free(src);
    }
    return rc;
}
