/* `baton route train|eval`: the learned router's command line (main.c hands
 * over argv). Kept beside the router so main.c's edit stays one line. */
#include "learn/learn_cli.h"

#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/buf.h"
#include "json/json.h"
#include "learn/learn.h"

static void usage(FILE *f)
{
    fprintf(f,
            "usage: baton route train --data FILE.jsonl --strong M --weak M -o ROUTER_FILE\n"
            "                         [--strong-share 0.3]\n"
            "       baton route eval --data FILE.jsonl --router FILE --strong M --weak M\n"
            "                        [--scores OUT.jsonl]\n"
            "       baton route explain -c CONFIG [-H 'NAME: VALUE']... REQUEST.json\n"
            "\n"
            "train fits the learned router on JSONL rows {\"id\", \"prompt\", \"scores\": {M: x}}\n"
            "(nothing else is read) and writes ROUTER_FILE; the threshold is calibrated on\n"
            "out-of-fold scores so that about --strong-share of unseen prompts go strong.\n"
            "eval prints APGR, CPT(50%%) and CPT(80%%) with the random baseline; --scores\n"
            "writes one {\"id\",\"score\"} line per prompt (higher = needs the strong model).\n"
            "Tuning options of train: --mode two|label, --bits N, --epochs N, --folds N,\n"
            "--lr X, --l2 X, --features words,chars,shape, --seed N. See docs/routing.md.\n");
}

static int parse_features(const char *s, uint32_t *out)
{
    uint32_t f = 0;
    char buf[128];
    snprintf(buf, sizeof buf, "%s", s);
    for (char *save = NULL, *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        if (strcmp(t, "words") == 0) f |= BT_LEARN_F_WORDS;
        else if (strcmp(t, "chars") == 0) f |= BT_LEARN_F_CHARS;
        else if (strcmp(t, "shape") == 0) f |= BT_LEARN_F_SHAPE;
        else return -1;
    }
    if (!f) return -1;
    *out = f;
    return 0;
}

static bool num(const char *s, double lo, double hi, double *out)
{
    char *end;
    double v = strtod(s, &end);
    if (end == s || *end || !(v >= lo && v <= hi)) return false;
    *out = v;
    return true;
}

static int print_metrics(const struct bt_learn_data *d, const double *score)
{
    struct bt_route_metrics m, rnd;
    if (bt_learn_metrics(score, d->s, d->w, d->n, &m)) {
        fprintf(stderr, "baton route eval: the two models' mean scores are equal: PGR is undefined\n");
        return 1;
    }
    /* A seeded random order, beside the exact expectation of random routing (0.5). */
    double *r = malloc(d->n * sizeof *r);
    if (!r) return 1;
    uint64_t x = 0x9e3779b97f4a7c15ULL;
    for (size_t i = 0; i < d->n; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        r[i] = (double)(x >> 11);
    }
    int e = bt_learn_metrics(r, d->s, d->w, d->n, &rnd);
    free(r);
    if (e) return 1;
    printf("rows %zu  strong mean %.4f  weak mean %.4f\n", d->n, m.strong_mean, m.weak_mean);
    printf("APGR %.4f  (random: 0.5000 expected, %.4f for one seeded random order)\n", m.apgr,
           rnd.apgr);
    printf("CPT(50%%) %.4f  (random: 0.5000 expected, %.4f)\n", m.cpt50, rnd.cpt50);
    printf("CPT(80%%) %.4f  (random: 0.8000 expected, %.4f)\n", m.cpt80, rnd.cpt80);
    return 0;
}

static int cmd_train(int argc, char **argv)
{
    static const struct option opts[] = {
        {"data", required_argument, NULL, 'd'},   {"strong", required_argument, NULL, 's'},
        {"weak", required_argument, NULL, 'w'},   {"output", required_argument, NULL, 'o'},
        {"strong-share", required_argument, NULL, 'S'},
        {"mode", required_argument, NULL, 'm'},   {"bits", required_argument, NULL, 'b'},
        {"epochs", required_argument, NULL, 'e'}, {"folds", required_argument, NULL, 'f'},
        {"lr", required_argument, NULL, 'l'},     {"features", required_argument, NULL, 'F'},
        {"seed", required_argument, NULL, 'r'},   {"l2", required_argument, NULL, 'L'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0}};
    const char *data = NULL, *strong = NULL, *weak = NULL, *out = NULL;
    struct bt_learn_opts o = {.strong_share = 0.3, .progress = stderr};
    double v;
    int c;
    while ((c = getopt_long(argc, argv, "d:s:w:o:h", opts, NULL)) != -1) {
        switch (c) {
        case 'd': data = optarg; break;
        case 's': strong = optarg; break;
        case 'w': weak = optarg; break;
        case 'o': out = optarg; break;
        case 'S':
            if (!num(optarg, 0, 1, &o.strong_share)) goto bad;
            break;
        case 'm':
            if (strcmp(optarg, "two") == 0) o.mode = BT_LEARN_TWO;
            else if (strcmp(optarg, "label") == 0) o.mode = BT_LEARN_LABEL;
            else goto bad;
            break;
        case 'b':
            if (!num(optarg, BT_LEARN_MIN_BITS, BT_LEARN_MAX_BITS, &v)) goto bad;
            o.hash_bits = (uint32_t)v;
            break;
        case 'e':
            if (!num(optarg, 1, 100, &v)) goto bad;
            o.epochs = (uint32_t)v;
            break;
        case 'f':
            if (!num(optarg, 2, 50, &v)) goto bad;
            o.folds = (uint32_t)v;
            break;
        case 'l':
            if (!num(optarg, 1e-6, 100, &o.lr)) goto bad;
            break;
        case 'L':
            if (!num(optarg, 1e-12, 1, &o.l2)) goto bad;
            break;
        case 'F':
            if (parse_features(optarg, &o.features)) goto bad;
            break;
        case 'r':
            if (!num(optarg, 1, 1e15, &v)) goto bad;
            o.seed = (uint64_t)v;
            break;
        case 'h': usage(stdout); return 0;
        default: return 2;
        }
    }
    if (!data || !strong || !weak || !out || optind < argc) {
        fprintf(stderr, "baton route train: --data, --strong, --weak and -o are required (try --help)\n");
        return 2;
    }
    struct bt_learn_data d;
    char msg[512];
    if (bt_learn_data_load(&d, data, strong, weak, msg, sizeof msg)) {
        fprintf(stderr, "baton route train: %s\n", msg);
        return 1;
    }
    struct bt_router r;
    enum bt_err e = bt_router_train(&r, &d, &o, strong, weak, NULL);
    bt_learn_data_free(&d);
    if (e) {
        fprintf(stderr, "baton route train: %s%s\n", bt_strerror(e),
                e == BT_EINVAL ? " (too few rows for the folds, or a bad option)" : "");
        return 1;
    }
    e = bt_router_save(&r, out);
    bt_router_free(&r);
    if (e) {
        fprintf(stderr, "baton route train: cannot write %s: %s\n", out, bt_strerror(e));
        return 1;
    }
    fprintf(stderr, "route train: wrote %s\n", out);
    return 0;
bad:
    fprintf(stderr, "baton route train: bad value '%s' for --%s\n", optarg,
            c == 'S' ? "strong-share" : c == 'm' ? "mode (two, label)" : c == 'F' ? "features" : "option");
    return 2;
}

static int write_scores(const char *path, const struct bt_learn_data *d, const double *score)
{
    FILE *f = fopen(path, "wb");
    if (!f) return 1;
    struct bt_buf b;
    bt_buf_init(&b, 1u << 20);
    int rc = 0;
    for (size_t i = 0; i < d->n && !rc; i++) {
        bt_buf_reset(&b);
        struct bt_jw w;
        bt_jw_init(&w, &b);
        bt_jw_obj_begin(&w);
        bt_jw_key(&w, "id");
        bt_jw_cstr(&w, d->id[i]);
        bt_jw_key(&w, "score");
        bt_jw_double(&w, score[i]);
        bt_jw_obj_end(&w);
        if (w.err || bt_buf_append(&b, "\n", 1) || fwrite(b.p, 1, b.len, f) != b.len) rc = 1;
    }
    bt_buf_free(&b);
    if (fclose(f) != 0) rc = 1;
    return rc;
}

static int cmd_eval(int argc, char **argv)
{
    static const struct option opts[] = {
        {"data", required_argument, NULL, 'd'},   {"router", required_argument, NULL, 'r'},
        {"strong", required_argument, NULL, 's'}, {"weak", required_argument, NULL, 'w'},
        {"scores", required_argument, NULL, 'o'}, {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0}};
    const char *data = NULL, *router = NULL, *strong = NULL, *weak = NULL, *scores = NULL;
    int c;
    while ((c = getopt_long(argc, argv, "d:r:s:w:o:h", opts, NULL)) != -1) {
        switch (c) {
        case 'd': data = optarg; break;
        case 'r': router = optarg; break;
        case 's': strong = optarg; break;
        case 'w': weak = optarg; break;
        case 'o': scores = optarg; break;
        case 'h': usage(stdout); return 0;
        default: return 2;
        }
    }
    if (!data || !router || !strong || !weak || optind < argc) {
        fprintf(stderr, "baton route eval: --data, --router, --strong and --weak are required (try --help)\n");
        return 2;
    }
    char msg[512];
    struct bt_router r;
    if (bt_router_load(&r, router, msg, sizeof msg)) {
        fprintf(stderr, "baton route eval: %s: %s\n", router, msg);
        return 1;
    }
    if (strcmp(r.strong, strong) != 0 || strcmp(r.weak, weak) != 0)
        fprintf(stderr, "baton route eval: note: the router was trained for strong %s, weak %s\n",
                r.strong, r.weak);
    struct bt_learn_data d;
    if (bt_learn_data_load(&d, data, strong, weak, msg, sizeof msg)) {
        fprintf(stderr, "baton route eval: %s\n", msg);
        bt_router_free(&r);
        return 1;
    }
    int rc = 1;
    double *score = malloc(d.n * sizeof *score);
    struct bt_learn_scratch *s = bt_learn_scratch_new();
    if (score && s) {
        size_t strong_n = 0;
        for (size_t i = 0; i < d.n; i++) {
            score[i] = bt_router_score(&r, s, d.prompt[i], d.plen[i]);
            if (score[i] > r.threshold) strong_n++;
        }
        rc = print_metrics(&d, score);
        if (!rc)
            printf("at the file's threshold %.6f: %.1f%% of these prompts go strong (calibrated "
                   "for %.1f%%)\n",
                   r.threshold, 100.0 * (double)strong_n / (double)d.n, 100.0 * r.strong_share);
        if (!rc && scores && write_scores(scores, &d, score)) {
            fprintf(stderr, "baton route eval: cannot write %s\n", scores);
            rc = 1;
        }
    }
    bt_learn_scratch_free(s);
    free(score);
    bt_learn_data_free(&d);
    bt_router_free(&r);
    return rc;
}

int bt_learn_cli(int argc, char **argv)
{
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    if (strcmp(argv[1], "train") == 0) return cmd_train(argc - 1, argv + 1);
    if (strcmp(argv[1], "eval") == 0) return cmd_eval(argc - 1, argv + 1);
    fprintf(stderr, "baton route: unknown subcommand '%s' (train, eval, explain)\n", argv[1]);
    return 2;
}
