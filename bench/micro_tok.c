/* bench/micro_tok: throughput of the BPE tokenizer (src/tok) on a text file,
 * for both encodings: bt_tok_count (what the gateway calls per request) and
 * bt_tok_encode (ids into a caller array). bench/tok_tiktoken.mjs measures npm
 * tiktoken's encode on the same file with the same repetitions; bench/run.sh
 * prints both and their ratio. Built by bench/run.sh against
 * build/release/libbaton.a.
 *   micro_tok FILE   (TOK_REPS repetitions after 3 warm-up runs; default 50)
 * Each repetition is timed in process CPU time and the fastest one is reported
 * (the machine may be shared; tok_tiktoken.mjs does the same).
 * prints one line per encoding:
 *   micro_tok enc=E file=F bytes=N tokens=T reps=R count_mb_s=X count_tok_s=Y
 *             encode_mb_s=Z build_ms=B */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common.h"

#include "tok/tok.h"

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: micro_tok FILE\n");
        return 2;
    }
    long reps = getenv("TOK_REPS") ? strtol(getenv("TOK_REPS"), NULL, 10) : 50;
    if (reps <= 0) reps = 50;
    size_t len = 0;
    char *src = read_file(argv[1], &len);
    if (!src) {
        fprintf(stderr, "micro_tok: cannot read %s\n", argv[1]);
        return 1;
    }
    uint32_t *ids = malloc((len + 1) * sizeof(uint32_t));
    if (!ids) return 1;
    const char *base = strrchr(argv[1], '/');
    int rc = 0;
    for (int e = 0; e < BT_TOK_N_ENCODINGS; e++) {
        double t0 = now_s();
        const struct bt_tok *t = bt_tok_get((enum bt_tok_encoding)e);
        double build = now_s() - t0;
        if (!t) {
            fprintf(stderr, "micro_tok: cannot build %s\n", bt_tok_encoding_name(e));
            rc = 1;
            continue;
        }
        size_t tokens = 0, n = 0;
        for (int w = 0; w < 3; w++)
            tokens = bt_tok_count(t, src, len);
        double count_s = 1e9, encode_s = 1e9;
        for (long r = 0; r < reps; r++) {
            t0 = cpu_s();
            if (bt_tok_count(t, src, len) != tokens) rc = 1;
            double d = cpu_s() - t0;
            if (d < count_s) count_s = d;
        }
        for (int w = 0; w < 3; w++)
            (void)bt_tok_encode(t, src, len, ids, len + 1, &n);
        for (long r = 0; r < reps; r++) {
            t0 = cpu_s();
            if (bt_tok_encode(t, src, len, ids, len + 1, &n) || n != tokens) rc = 1;
            double d = cpu_s() - t0;
            if (d < encode_s) encode_s = d;
        }
        printf("micro_tok enc=%s file=%s bytes=%zu tokens=%zu reps=%ld count_mb_s=%.1f "
               "count_tok_s=%.0f encode_mb_s=%.1f build_ms=%.0f\n",
               bt_tok_encoding_name(e), base ? base + 1 : argv[1], len, tokens, reps,
               (double)len / count_s / 1e6, (double)tokens / count_s, (double)len / encode_s / 1e6,
               build * 1e3);
    }
    if (rc) fprintf(stderr, "micro_tok: inconsistent results between runs\n");
    free(ids);
    free(src);
    return rc;
}
