/* The learned router: metrics on hand-made data whose APGR is known, the JSONL
 * reader, training on a separable toy set, the router file's round trip and
 * refusal of bad files. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"
#include "learn/learn.h"

#define CLOSE(a, b) (fabs((a) - (b)) < 1e-9)
#define CHECK_NEAR(a, b)                                                                   \
    do {                                                                                   \
        double h_x = (a), h_y = (b);                                                       \
        if (!CLOSE(h_x, h_y)) H_FAIL("%s == %s: %.12g != %.12g", #a, #b, h_x, h_y);        \
    } while (0)

/* Four rows: strong wins on rows 0 and 3, both right on 1, both wrong on 2. */
static const double S4[] = {1, 1, 0, 1}, W4[] = {0, 1, 0, 0};

TEST(metrics_perfect_router)
{
    const double score[] = {4, 1, 2, 3}; /* rows 0 and 3 first */
    struct bt_route_metrics m;
    REQUIRE(bt_learn_metrics(score, S4, W4, 4, &m) == BT_OK);
    /* PGR at k = 0..4 strong calls: 0, .5, 1, 1, 1 -> trapezoid area 0.75 */
    CHECK_NEAR(m.apgr, 0.75);
    CHECK_NEAR(m.cpt50, 0.25);
    CHECK_NEAR(m.cpt80, 0.4);
    CHECK_NEAR(m.strong_mean, 0.75);
    CHECK_NEAR(m.weak_mean, 0.25);
}

TEST(metrics_reversed_router)
{
    const double score[] = {-4, -1, -2, -3};
    struct bt_route_metrics m;
    REQUIRE(bt_learn_metrics(score, S4, W4, 4, &m) == BT_OK);
    /* PGR: 0, 0, 0, .5, 1 -> 0.25 */
    CHECK_NEAR(m.apgr, 0.25);
    CHECK_NEAR(m.cpt50, 0.75);
    CHECK_NEAR(m.cpt80, 0.9);
}

TEST(metrics_ties_are_random_routing)
{
    const double score[] = {7, 7, 7, 7};
    struct bt_route_metrics m;
    REQUIRE(bt_learn_metrics(score, S4, W4, 4, &m) == BT_OK);
    CHECK_NEAR(m.apgr, 0.5);
    CHECK_NEAR(m.cpt50, 0.5);
    CHECK_NEAR(m.cpt80, 0.8);
    /* a tie between the two winners is one block: same area as the perfect router */
    const double tied[] = {1, 0, 0, 1};
    REQUIRE(bt_learn_metrics(tied, S4, W4, 4, &m) == BT_OK);
    CHECK_NEAR(m.apgr, 0.75);
    CHECK_NEAR(m.cpt50, 0.25);
}

TEST(metrics_undefined)
{
    const double s[] = {1, 0}, w[] = {0, 1}, score[] = {1, 2};
    struct bt_route_metrics m;
    CHECK_INT(bt_learn_metrics(score, s, w, 2, &m), BT_EINVAL);
    CHECK_INT(bt_learn_metrics(score, s, w, 0, &m), BT_EINVAL);
}

static char *write_tmp(const char *text)
{
    char *path = strdup("/tmp/test_learn_XXXXXX");
    int fd = mkstemp(path);
    if (fd < 0) {
        free(path);
        return NULL;
    }
    size_t n = strlen(text);
    if (write(fd, text, n) != (ssize_t)n) n = 0;
    close(fd);
    return path;
}

TEST(data_reads_id_prompt_scores_only)
{
    char *p = write_tmp("{\"id\":\"a\",\"prompt\":\"caf\\u00e9?\",\"scores\":{\"S\":1,\"W\":0.5}}\n"
                        "\n"
                        "{\"task\":\"x\",\"scores\":{\"W\":0,\"S\":0},\"prompt\":\"b\",\"id\":\"b\"}\n");
    REQUIRE(p);
    struct bt_learn_data d;
    char msg[256] = "";
    REQUIRE(bt_learn_data_load(&d, p, "S", "W", msg, sizeof msg) == BT_OK);
    CHECK_INT(d.n, 2);
    CHECK_STR(d.id[0], "a");
    CHECK_STR(d.prompt[0], "caf\xc3\xa9?");
    CHECK_INT(d.plen[0], 6);
    CHECK_NEAR(d.s[0], 1);
    CHECK_NEAR(d.w[0], 0.5);
    bt_learn_data_free(&d);
    unlink(p);
    free(p);
}

TEST(data_refuses_bad_lines_with_line_number)
{
    const char *bad[] = {
        "{\"id\":\"a\",\"prompt\":\"x\",\"scores\":{\"S\":1}}\n",
        "{\"id\":\"a\",\"prompt\":\"x\",\"scores\":{\"S\":1,\"W\":\"1\"}}\n",
        "{\"id\":\"a\",\"scores\":{\"S\":1,\"W\":0}}\n",
        "[1]\n",
        "{\"id\":\"a\",\"prompt\":\"x\",\"scores\":{\"S\":1,\"W\":0}\n",
        "\n\n",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char *p = write_tmp(bad[i]);
        REQUIRE(p);
        struct bt_learn_data d;
        char msg[256] = "";
        CHECK(bt_learn_data_load(&d, p, "S", "W", msg, sizeof msg) != BT_OK);
        CHECK(strstr(msg, p) != NULL);
        CHECK(i == 5 || strstr(msg, ":1:") != NULL);
        CHECK_INT(d.n, 0);
        unlink(p);
        free(p);
    }
    struct bt_learn_data d;
    char msg[256] = "";
    CHECK_INT(bt_learn_data_load(&d, "/nonexistent/x.jsonl", "S", "W", msg, sizeof msg), BT_EIO);
}

/* A toy set: prompts with "integral" need the strong model, "capital" ones do not. */
static void toy(struct bt_learn_data *d, size_t n)
{
    memset(d, 0, sizeof *d);
    d->n = n;
    d->id = calloc(n, sizeof *d->id);
    d->prompt = calloc(n, sizeof *d->prompt);
    d->plen = calloc(n, sizeof *d->plen);
    d->s = calloc(n, sizeof *d->s);
    d->w = calloc(n, sizeof *d->w);
    for (size_t i = 0; i < n; i++) {
        char buf[128];
        bool hard = i % 3 == 0;
        snprintf(buf, sizeof buf, hard ? "Compute the integral of x^%zu dx from 0 to %zu." :
                                         "What is the capital of country number %zu?", i, i + 1);
        d->id[i] = strdup("r");
        d->prompt[i] = strdup(buf);
        d->plen[i] = strlen(buf);
        d->s[i] = 1;
        d->w[i] = hard ? 0 : 1;
    }
}

static void reseal(uint8_t *p, size_t len)
{
    uint64_t h = bt_router_checksum(p, len - 8);
    for (int i = 0; i < 8; i++) p[len - 8 + i] = (uint8_t)(h >> (8 * i));
}

static uint8_t *read_all(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *b = malloc((size_t)n);
    if (b && fread(b, 1, (size_t)n, f) != (size_t)n) {
        free(b);
        b = NULL;
    }
    fclose(f);
    *len = (size_t)n;
    return b;
}

TEST(train_save_load_round_trip_and_bad_files)
{
    struct bt_learn_data d;
    toy(&d, 60);
    struct bt_learn_opts o = {.hash_bits = 12, .strong_share = 1.0 / 3, .epochs = 3};
    struct bt_router r;
    double oof[60];
    REQUIRE(bt_router_train(&r, &d, &o, "strong-m", "weak-m", oof) == BT_OK);
    struct bt_route_metrics m;
    REQUIRE(bt_learn_metrics(oof, d.s, d.w, d.n, &m) == BT_OK);
    /* out-of-fold, separable by one word: the best order has PGR 1 from share 1/3 on */
    CHECK(m.apgr > 1 - 1.0 / 6 - 1e-6);
    size_t strong_n = 0;
    for (size_t i = 0; i < d.n; i++) strong_n += oof[i] > r.threshold;
    CHECK_INT(strong_n, 20);
    /* the calibration table: each whole-percent share sends that share strong
     * (the nearest whole prompt; tied scores go together, so the share lies
     * between the scores above the threshold and those at or above it) */
    for (int pct = 0; pct <= 100; pct += 10) {
        double t = bt_router_threshold_for(&r, pct / 100.0);
        size_t above = 0, at_or_above = 0, want = (size_t)(pct * 60 / 100);
        for (size_t i = 0; i < d.n; i++) above += oof[i] > t, at_or_above += oof[i] >= t;
        if (above > want || at_or_above < want)
            H_FAIL("share %d%%: %zu above, %zu at or above the threshold", pct, above, at_or_above);
    }
    CHECK(bt_router_threshold_for(&r, 0.2) >= bt_router_threshold_for(&r, 0.25));

    char path[] = "/tmp/test_learn_router_XXXXXX";
    int fd = mkstemp(path);
    REQUIRE(fd >= 0);
    close(fd);
    REQUIRE(bt_router_save(&r, path) == BT_OK);
    struct bt_router q;
    char msg[256] = "";
    REQUIRE(bt_router_load(&q, path, msg, sizeof msg) == BT_OK);
    CHECK_STR(q.strong, "strong-m");
    CHECK_STR(q.weak, "weak-m");
    CHECK_INT(q.hash_bits, 12);
    CHECK_NEAR(q.threshold, r.threshold);
    CHECK_NEAR(q.strong_share, 1.0 / 3);
    struct bt_learn_scratch *s = bt_learn_scratch_new();
    REQUIRE(s);
    for (size_t i = 0; i < d.n; i++)
        CHECK_NEAR(bt_router_score(&q, s, d.prompt[i], d.plen[i]),
                   bt_router_score(&r, s, d.prompt[i], d.plen[i]));
    const char *hard = "Compute the integral of sin(x) dx.", *easy = "What is the capital of France?";
    CHECK(bt_router_score(&q, s, hard, strlen(hard)) > q.threshold);
    CHECK(bt_router_score(&q, s, easy, strlen(easy)) < q.threshold);
    CHECK(isfinite(bt_router_score(&q, s, "", 0)));
    bt_router_free(&q);

    size_t len;
    uint8_t *b = read_all(path, &len);
    REQUIRE(b);
    const size_t W_LAST = len - 8 - BT_LEARN_CAL * 8 - 1; /* top byte of the last weight */
    struct {
        const char *what;
        size_t at;  /* byte to change (SIZE_MAX: none) */
        uint8_t to;
        size_t len; /* length to load */
        int reseal;
    } cases[] = {
        {"empty", SIZE_MAX, 0, 0, 0},
        {"bad magic", 0, 'X', len, 1},
        {"truncated", SIZE_MAX, 0, len - 1, 0},
        {"a flipped weight byte", len - 100, 0xAA, len, 0},
        {"version 1", 8, 1, len, 1},
        {"hash bits 30", 12, 30, len, 1},
        {"mode 7", 16, 7, len, 1},
        {"features 0", 20, 0, len, 1},
        {"a NaN weight", W_LAST, 0xFF, len, 1},
        {"a NaN calibration entry", len - 9, 0xFF, len, 1},
        {"a calibration entry above the one before", len - 9, 0x40, len, 1},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        uint8_t *c = malloc(len);
        REQUIRE(c);
        memcpy(c, b, len);
        if (cases[i].at != SIZE_MAX) {
            c[cases[i].at] = cases[i].to;
            if (cases[i].at == W_LAST) c[W_LAST - 1] = 0xFF; /* f32: exponent all ones, mantissa set */
            if (cases[i].at == len - 9 && cases[i].to == 0xFF)
                c[len - 10] = 0xFF; /* f64: exponent all ones, mantissa set */
        }
        if (cases[i].reseal) reseal(c, cases[i].len);
        msg[0] = 0;
        enum bt_err e = bt_router_load_mem(&q, c, cases[i].len, msg, sizeof msg);
        if (e != BT_EPARSE) H_FAIL("%s: accepted (%d)", cases[i].what, e);
        if (!msg[0]) H_FAIL("%s: no message", cases[i].what);
        CHECK(q.idf == NULL && q.w[0] == NULL);
        free(c);
    }
    CHECK_INT(bt_router_load(&q, "/nonexistent/router.bin", msg, sizeof msg), BT_EIO);
    free(b);
    unlink(path);
    bt_learn_scratch_free(s);
    bt_router_free(&r);
    bt_learn_data_free(&d);
}

TEST(training_is_deterministic)
{
    struct bt_learn_data d;
    toy(&d, 30);
    struct bt_learn_opts o = {.hash_bits = 10, .strong_share = 0.5, .folds = 3};
    struct bt_router a, b;
    REQUIRE(bt_router_train(&a, &d, &o, "s", "w", NULL) == BT_OK);
    REQUIRE(bt_router_train(&b, &d, &o, "s", "w", NULL) == BT_OK);
    CHECK(memcmp(a.w[0], b.w[0], sizeof(float) << 10) == 0);
    CHECK(memcmp(a.w[1], b.w[1], sizeof(float) << 10) == 0);
    CHECK(a.threshold == b.threshold);
    bt_router_free(&a);
    bt_router_free(&b);
    o.folds = 20; /* more folds than rows allow */
    CHECK_INT(bt_router_train(&a, &d, &o, "s", "w", NULL), BT_EINVAL);
    bt_learn_data_free(&d);
}

int main(void)
{
    RUN(metrics_perfect_router);
    RUN(metrics_reversed_router);
    RUN(metrics_ties_are_random_routing);
    RUN(metrics_undefined);
    RUN(data_reads_id_prompt_scores_only);
    RUN(data_refuses_bad_lines_with_line_number);
    RUN(train_save_load_round_trip_and_bad_files);
    RUN(training_is_deterministic);
    return HARNESS_DONE();
}
