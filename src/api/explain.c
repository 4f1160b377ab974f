/* baton route explain -c CONFIG REQUEST.json: the routing decision for one
 * request, made exactly as serve makes it (the front end's decode, the prompt,
 * rules and routers, the group's plan), with no call made. */
#include "api/explain.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/openai.h"
#include "canon/prompt.h"
#include "core/arena.h"
#include "learn/learn.h"
#include "route/choose.h"
#include "route/route.h"

#define MAX_REQUEST (32u << 20)
#define MAX_HEADERS 16

static const char *const strategies[] = {"weighted", "round_robin", "least_busy", "latency",
                                          "cost"};

static void usage(FILE *f)
{
    fprintf(f,
            "usage: baton route explain -c CONFIG [-H 'NAME: VALUE']... REQUEST.json\n"
            "\n"
            "Prints how baton routes the chat request in REQUEST.json (an OpenAI chat\n"
            "completions body; - reads standard input): each rule tried, the learned\n"
            "router's score and threshold, the model chosen and its deployments in the\n"
            "order of its strategy (live state such as breakers and latency is not known\n"
            "here). No provider is called. -H adds a request header (x-baton-user,\n"
            "x-baton-tags). Exits 0 with a decision, 1 when the config or the request is\n"
            "refused (the message says why), 2 on bad usage.\n");
}

static char *read_file(const char *path, size_t *len)
{
    FILE *f = strcmp(path, "-") == 0 ? stdin : fopen(path, "rb");
    if (!f) return NULL;
    size_t cap = 1 << 16, n = 0;
    char *b = malloc(cap);
    while (b) {
        size_t got = fread(b + n, 1, cap - n, f);
        n += got;
        if (got == 0) break;
        if (n == cap) {
            char *nb = cap < MAX_REQUEST ? realloc(b, cap * 2) : NULL;
            if (!nb) {
                free(b);
                b = NULL;
                break;
            }
            b = nb;
            cap *= 2;
        }
    }
    if (f != stdin) fclose(f);
    *len = n;
    return b;
}

static struct bt_str header(const struct bt_http_header *h, size_t n, const char *name)
{
    for (size_t i = 0; i < n; i++)
        if (h[i].name.len == strlen(name) && strncasecmp(h[i].name.p, name, h[i].name.len) == 0)
            return h[i].value;
    return BT_STR_NULL;
}

/* Prints the steps rules and routers take from m, as bt_route_choose takes them. */
static void print_choices(const struct bt_model *m, const struct bt_prompt *p,
                          struct bt_learn_scratch *s)
{
    struct bt_route_facts f;
    bt_route_facts_init(&f);
    char d[600];
    for (int hop = 0; m && m->kind != BT_MODEL_DEPLOYMENTS && hop < 8; hop++) {
        if (m->kind == BT_MODEL_RULES) {
            size_t i = 0;
            for (; i < m->nrules; i++) {
                bool last = i + 1 == m->nrules;
                bool hit = last || bt_route_rule_matches(&m->rules[i], p, &f);
                bt_config_describe_rule(&m->rules[i], d, sizeof(d));
                printf("%s: rule %zu (%s): %s\n", m->name, i + 1, d,
                       hit ? (last && m->rules[i].conds ? "default" : "match") : "no");
                if (hit) break;
            }
            m = m->rules[i < m->nrules ? i : m->nrules - 1].model;
        } else {
            const struct bt_router_cfg *rc = &m->router;
            double sc = bt_route_router_score(rc, p, s);
            bool strong = sc > rc->threshold;
            printf("%s: router score %.4f, threshold %.4f: %s (%s)\n", m->name, sc, rc->threshold,
                   strong ? "strong" : "weak", strong ? rc->strong_name : rc->weak_name);
            m = strong ? rc->strong : rc->weak;
        }
    }
}

static int explain(const char *config, const char *path, const struct bt_http_header *hs,
                   size_t nh)
{
    struct bt_config *cfg = NULL;
    struct bt_config_diags diags = {0};
    enum bt_err err = bt_config_load_opts(config, NULL, &cfg, &diags);
    bt_config_diags_print(&diags, stderr);
    bt_config_diags_free(&diags);
    if (err) {
        fprintf(stderr, "%s: invalid configuration\n", config);
        return 1;
    }
    size_t len = 0;
    char *body = read_file(path, &len);
    if (!body) {
        fprintf(stderr, "baton route explain: %s: cannot be read\n", path);
        bt_config_unref(cfg);
        return 1;
    }
    int rc = 1;
    struct bt_arena arena;
    bt_arena_init(&arena, 1 << 16, 256u << 20);
    struct bt_learn_scratch *scratch = bt_learn_scratch_new();
    const struct bt_frontend *fe = &bt_fe_openai;
    struct bt_request *r = bt_arena_calloc(&arena, 1, sizeof(*r));
    char msg[300] = "";
    const char *param = NULL;
    if (!r || !scratch) {
        fprintf(stderr, "baton route explain: out of memory\n");
        goto done;
    }
    err = fe->decode(r, BT_OP_CHAT, (struct bt_str){body, len}, &arena, msg, sizeof(msg), &param);
    if (err) {
        fprintf(stderr, "request refused (400%s%s): %s\n", param ? ", " : "", param ? param : "",
                err == BT_ENOMEM ? "out of memory" : msg);
        goto done;
    }
    struct bt_str user = r->user.len ? r->user : header(hs, nh, "x-baton-user");
    struct bt_route_req q = {.model = r->model, .user = user, .scratch = scratch};
    struct bt_prompt prompt;
    printf("request: model \"%.*s\"", BT_STR_FMT(r->model));
    if (user.len) printf(", user \"%.*s\"", BT_STR_FMT(user));
    printf("\n");
    if (bt_route_needs_prompt(cfg, r->model)) {
        struct bt_chat_error cerr = {{0}, {0}};
        err = bt_request_chat(r, &arena, &cerr);
        if (!err) err = bt_prompt_from_chat(r->chat, &arena, &prompt);
        if (err) {
            fprintf(stderr, "request refused (400%s%s): %s\n", cerr.param[0] ? ", " : "",
                    cerr.param, cerr.message[0] ? cerr.message : "its content cannot be read");
            goto done;
        }
        prompt.user = user;
        prompt.tags = header(hs, nh, "x-baton-tags");
        q.prompt = &prompt;
        struct bt_route_facts f;
        bt_route_facts_init(&f);
        struct bt_str last = bt_prompt_last_user(&prompt);
        printf("prompt: %u messages, about %lld tokens, last user message %zu bytes; tools %s, "
               "images %s, json_schema %s\n",
               prompt.nmsgs, (long long)bt_route_prompt_tokens(&f, &prompt), last.len,
               prompt.tools ? "yes" : "no", prompt.images ? "yes" : "no",
               prompt.json_schema ? "yes" : "no");
        print_choices(bt_config_model(cfg, r->model), &prompt, scratch);
    }
    struct bt_plan plan;
    if (bt_route(cfg, &q, &plan)) {
        fprintf(stderr, "request refused (404): the model \"%.*s\" does not exist\n",
                BT_STR_FMT(r->model));
        goto done;
    }
    if (plan.model) {
        const struct bt_model *m = plan.model;
        printf("model: %s, strategy %s%s, %u deployment%s", m->name,
               (unsigned)m->strategy < 5 ? strategies[m->strategy] : "?",
               m->sticky_user ? " (sticky user)" : "", plan.n_own, plan.n_own == 1 ? "" : "s");
        if (plan.n > plan.n_own) printf(", then %u from fallback models", plan.n - plan.n_own);
        printf("\n");
    } else {
        printf("model: direct to provider %s\n", plan.c[0].provider->name);
    }
    for (uint32_t i = 0; i < plan.n; i++)
        printf("  %u. %s/%.*s%s\n", i + 1, plan.c[i].provider->name, BT_STR_FMT(plan.c[i].model),
               i >= plan.n_own ? " (fallback)" : "");
    if (plan.model)
        printf("x-baton-route begins: %s%s (%s%s): \n", plan.why, plan.model->name,
               (unsigned)plan.model->strategy < 5 ? strategies[plan.model->strategy] : "?",
               plan.n > plan.n_own ? ", fallback" : "");
    else
        printf("x-baton-route begins: direct: \n");
    rc = 0;
done:
    bt_learn_scratch_free(scratch);
    bt_arena_free(&arena);
    free(body);
    bt_config_unref(cfg);
    return rc;
}

int bt_explain_cli(int argc, char **argv)
{
    static const struct option opts[] = {{"config", required_argument, NULL, 'c'},
                                         {"header", required_argument, NULL, 'H'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    const char *config = NULL;
    struct bt_http_header hs[MAX_HEADERS];
    size_t nh = 0;
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "c:H:h", opts, NULL)) != -1) {
        switch (c) {
        case 'c': config = optarg; break;
        case 'H': {
            const char *colon = strchr(optarg, ':');
            if (!colon || colon == optarg || nh == MAX_HEADERS) {
                fprintf(stderr, "baton route explain: -H wants 'NAME: VALUE' (at most %d)\n",
                        MAX_HEADERS);
                return 2;
            }
            hs[nh].name = (struct bt_str){optarg, (size_t)(colon - optarg)};
            hs[nh].value = bt_str_trim(bt_str_c(colon + 1));
            nh++;
            break;
        }
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (!config || optind + 1 != argc) {
        usage(stderr);
        return 2;
    }
    return explain(config, argv[optind], hs, nh);
}
