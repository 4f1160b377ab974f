/* bench/micro_route: the router's time per decision (bt_route_plan) on a
 * configuration with many models. Built by bench/run.sh against
 * build/release/libbaton.a.
 *   micro_route [NMODELS]   (default 1000) prints one line per case:
 *   micro_route case=NAME models=N ns=X */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common.h"

#include "config/config.h"
#include "core/buf.h"
#include "route/route.h"

/* Seconds per bt_route_plan call for `model`, measured over about `secs`. */
static double time_plan(const struct bt_config *cfg, const char *model, double secs, int *status)
{
    struct bt_str m = bt_str_c(model);
    struct bt_plan plan;
    long iters = 0;
    unsigned long sink = 0;
    double t0 = now_s(), t;
    do {
        for (int k = 0; k < 256; k++) {
            *status = bt_route_plan(cfg, m, (uint64_t)iters + (uint64_t)k, &plan);
            sink += plan.n;
        }
        iters += 256;
    } while ((t = now_s()) - t0 < secs);
    if (sink == 1) fputc('\n', stderr); /* keeps the loop from being optimised away */
    return (t - t0) / (double)iters;
}

int main(int argc, char **argv)
{
    long nmodels = argc > 1 ? strtol(argv[1], NULL, 10) : 1000;
    if (nmodels < 1 || nmodels > 100000) nmodels = 1000;
    double secs = getenv("MICRO_SECS") ? strtod(getenv("MICRO_SECS"), NULL) : 0.5;
    if (secs <= 0) secs = 0.5;

    struct bt_buf y;
    bt_buf_init(&y, 64u << 20);
    enum bt_err e = bt_buf_append_c(&y, "providers:\n");
    for (int p = 0; p < 4 && !e; p++)
        e = bt_buf_printf(&y, "  p%d: {type: openai, base_url: \"http://127.0.0.1:%d/v1\", "
                              "api_key: sk-bench}\n", p, 30100 + p);
    if (!e) e = bt_buf_append_c(&y, "models:\n");
    for (long i = 0; i < nmodels && !e; i++)
        e = bt_buf_printf(&y, "  model-%ld: {provider: p%ld, model: upstream-%ld}\n", i, i % 4, i);
    if (!e)
        e = bt_buf_append_c(&y, "  group:\n    deployments:\n"
                                "      - {provider: p0, model: a, weight: 3}\n"
                                "      - {provider: p1, model: b, weight: 1}\n"
                                "      - {provider: p2, model: c}\n"
                                "      - {provider: p3, model: d}\n");
    if (e) {
        fprintf(stderr, "micro_route: building the config failed\n");
        return 1;
    }
    struct bt_config *cfg = NULL;
    struct bt_config_diags d = {0};
    if (bt_config_load_string("micro_route.yaml", y.p, y.len, &cfg, &d)) {
        bt_config_diags_print(&d, stderr);
        bt_config_diags_free(&d);
        bt_buf_free(&y);
        return 1;
    }
    bt_config_diags_free(&d);
    bt_buf_free(&y);

    char last[64];
    snprintf(last, sizeof(last), "model-%ld", nmodels - 1);
    const struct {
        const char *name, *model;
        int want;
    } cases[] = {
        {"first_model", "model-0", BT_OK},
        {"last_model", last, BT_OK},
        {"group_4_weighted", "group", BT_OK},
        {"provider_slash_model", "p2/some-model-id", BT_OK},
        {"unknown_model", "no-such-model", BT_ENOTFOUND},
    };
    int rc = 0;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        int status = 0;
        double s = time_plan(cfg, cases[i].model, secs, &status);
        if (status != cases[i].want) {
            fprintf(stderr, "micro_route: %s: unexpected result %d\n", cases[i].name, status);
            rc = 1;
        }
        printf("micro_route case=%s models=%ld ns=%.1f\n", cases[i].name, nmodels + 1, s * 1e9);
    }
    bt_config_unref(cfg);
    return rc;
}
