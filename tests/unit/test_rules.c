/* Rules and the router entry: each condition on prompts decoded from real
 * OpenAI request bodies (escapes resolved), first match wins, router choices,
 * chains, and what the loader refuses (with file:line:col). */
#include "harness.h"

#include <stdlib.h>
#include <unistd.h>

#include "api/openai_chat.h"
#include "canon/prompt.h"
#include "config/config.h"
#include "learn/learn.h"
#include "route/choose.h"
#include "route/route.h"

static char router_path[64];

/* A router that sends integral questions strong and capital questions weak. */
static void make_router(void)
{
    struct bt_learn_data d;
    memset(&d, 0, sizeof d);
    size_t n = 60;
    d.n = n;
    d.id = calloc(n, sizeof *d.id);
    d.prompt = calloc(n, sizeof *d.prompt);
    d.plen = calloc(n, sizeof *d.plen);
    d.s = calloc(n, sizeof *d.s);
    d.w = calloc(n, sizeof *d.w);
    for (size_t i = 0; i < n; i++) {
        char buf[128];
        bool hard = i % 3 == 0;
        snprintf(buf, sizeof buf, hard ? "Compute the integral of x^%zu dx from 0 to %zu." :
                                         "What is the capital of country number %zu?", i, i + 1);
        d.id[i] = strdup("r");
        d.prompt[i] = strdup(buf);
        d.plen[i] = strlen(buf);
        d.s[i] = 1;
        d.w[i] = hard ? 0 : 1;
    }
    struct bt_learn_opts o = {.hash_bits = 10, .strong_share = 1.0 / 3, .epochs = 3};
    struct bt_router r;
    if (bt_router_train(&r, &d, &o, "s", "w", NULL) != BT_OK) abort();
    snprintf(router_path, sizeof router_path, "/tmp/test_rules_router_XXXXXX");
    int fd = mkstemp(router_path);
    if (fd < 0) abort();
    close(fd);
    if (bt_router_save(&r, router_path) != BT_OK) abort();
    bt_router_free(&r);
    bt_learn_data_free(&d);
}

static struct bt_config *load_yaml(const char *yaml, char *diag, size_t cap)
{
    struct bt_config *c = NULL;
    struct bt_config_diags d = {0};
    bt_config_load_string("t.yaml", yaml, strlen(yaml), &c, &d);
    if (diag && cap) {
        diag[0] = 0;
        size_t o = 0;
        for (size_t i = 0; i < d.n && o < cap; i++)
            if (d.items[i].is_error)
                o += (size_t)snprintf(diag + o, cap - o, "%d:%d: %s\n", d.items[i].line,
                                      d.items[i].col, d.items[i].msg);
    }
    bt_config_diags_free(&d);
    return c;
}

static struct bt_config *cfg;

static const char *base =
    "providers:\n"
    "  a: {type: sim}\n"
    "models:\n"
    "  big: {provider: a, model: big-up}\n"
    "  small: {provider: a, model: small-up}\n"
    "  solar: {provider: a, model: solar-up}\n";

static struct bt_config *with(const char *models, char *diag, size_t cap)
{
    char y[4096];
    snprintf(y, sizeof y, "%s%s", base, models);
    return load_yaml(y, diag, cap);
}

/* The prompt of an OpenAI request body, in a fresh arena (freed by the caller). */
static bool prompt_of(const char *body, struct bt_arena *a, struct bt_prompt *p)
{
    bt_arena_init(a, 4096, 1 << 24);
    struct bt_json_doc doc;
    if (bt_json_parse(&doc, body, strlen(body), a, NULL, NULL)) return false;
    struct bt_chat chat;
    struct bt_chat_error err;
    if (bt_openai_chat_decode(&doc, a, &chat, &err)) return false;
    return bt_prompt_from_chat(&chat, a, p) == BT_OK;
}

/* The model the rules of `model` choose for `body` (with x-baton-tags `tags`
 * and end user `user`), or "?" */
static const char *chosen(const char *model, const char *body, const char *tags, const char *user)
{
    static char out[64];
    struct bt_arena a;
    struct bt_prompt p;
    snprintf(out, sizeof out, "?");
    if (prompt_of(body, &a, &p)) {
        p.tags = bt_str_c(tags);
        p.user = bt_str_c(user);
        struct bt_route_facts f;
        bt_route_facts_init(&f);
        struct bt_learn_scratch *s = bt_learn_scratch_new();
        const struct bt_model *m = bt_route_choose(bt_config_model(cfg, bt_str_c(model)), &p, s, &f,
                                                   NULL, 0);
        if (m) snprintf(out, sizeof out, "%s", m->name);
        bt_learn_scratch_free(s);
    }
    bt_arena_free(&a);
    return out;
}

#define USER(text) "{\"model\":\"x\",\"messages\":[{\"role\":\"user\",\"content\":\"" text "\"}]}"

TEST(setup)
{
    make_router();
    char y[2048], diag[1024];
    snprintf(y, sizeof y,
             "  auto: {router: {file: %s, strong: big, weak: small, threshold: 0.25}}\n"
             "  lang:\n"
             "    rules:\n"
             "      - {when: {language: ko}, model: solar}\n"
             "      - {when: {language: [ja, zh], language_share: 0.5}, model: big}\n"
             "      - {model: small}\n"
             "  feat:\n"
             "    rules:\n"
             "      - {when: {tools: true}, model: big}\n"
             "      - {when: {images: true}, model: solar}\n"
             "      - {when: {json_schema: true}, model: big}\n"
             "      - {model: small}\n"
             "  meta:\n"
             "    rules:\n"
             "      - {when: {metadata: {tier: free, app: x}}, model: small}\n"
             "      - {when: {tags: [batch, offline]}, model: solar}\n"
             "      - {when: {user: [alice, bob]}, model: big}\n"
             "      - {model: auto}\n"
             "  re:\n"
             "    rules:\n"
             "      - {when: {regex: \"(?i)prove|theorem\"}, model: big}\n"
             "      - {when: {regex: \"^[0-9]+$\", tools: false}, model: solar}\n"
             "      - {model: small}\n"
             "  toks:\n"
             "    rules:\n"
             "      - {when: {prompt_tokens: \"> 40\"}, model: big}\n"
             "      - {when: {prompt_tokens: \"<=10\"}, model: solar}\n"
             "      - {model: small}\n",
             router_path);
    cfg = with(y, diag, sizeof diag);
    if (!cfg) H_FAIL("config refused:\n%s", diag);
}

TEST(language_by_script_share)
{
    CHECK_STR(chosen("lang", USER("안녕하세요, 오늘 날씨 어때요?"), "", ""), "solar");
    /* the same text written with \u escapes: conditions read decoded text */
    CHECK_STR(chosen("lang", USER("\\uc548\\ub155\\ud558\\uc138\\uc694"), "", ""), "solar");
    CHECK_STR(chosen("lang", USER("Hello, how is the weather today?"), "", ""), "small");
    /* 30% Hangul letters is enough by default; 10% is not */
    CHECK_STR(chosen("lang", USER("abcdefg 가나다"), "", ""), "solar");
    CHECK_STR(chosen("lang", USER("abcdefghijklmnopqrstuvwxyz 가나다"), "", ""), "small");
    /* kana makes Han characters Japanese; Han alone is Chinese; both reach big */
    CHECK_STR(chosen("lang", USER("今日は天気がいいですね"), "", ""), "big");
    CHECK_STR(chosen("lang", USER("今天天气很好"), "", ""), "big");
    /* language_share 0.5: a third of the letters is not enough */
    CHECK_STR(chosen("lang", USER("abcdefghijkl 今天天气很好"), "", ""), "small");
    /* only user messages count: a Korean system prompt does not make it Korean */
    CHECK_STR(chosen("lang", "{\"model\":\"x\",\"messages\":[{\"role\":\"system\",\"content\":"
                             "\"한국어로 답하세요\"},{\"role\":\"user\",\"content\":\"hi there\"}]}",
                     "", ""),
              "small");
    /* no letters at all: no language matches */
    CHECK_STR(chosen("lang", USER("12345 !!!"), "", ""), "small");
}

TEST(tools_images_json_schema)
{
    CHECK_STR(chosen("feat", "{\"model\":\"x\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],"
                             "\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"f\"}}]}",
                     "", ""),
              "big");
    CHECK_STR(chosen("feat", "{\"model\":\"x\",\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":"
                             "\"text\",\"text\":\"what\"},{\"type\":\"image_url\",\"image_url\":{\"url\":"
                             "\"https://x/y.png\"}}]}]}",
                     "", ""),
              "solar");
    CHECK_STR(chosen("feat", "{\"model\":\"x\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],"
                             "\"response_format\":{\"type\":\"json_schema\",\"json_schema\":{\"name\":"
                             "\"s\",\"schema\":{\"type\":\"object\"}}}}",
                     "", ""),
              "big");
    CHECK_STR(chosen("feat", "{\"model\":\"x\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],"
                             "\"response_format\":{\"type\":\"json_object\"}}",
                     "", ""),
              "small");
    CHECK_STR(chosen("feat", USER("hi"), "", ""), "small");
}

TEST(metadata_tags_user)
{
    CHECK_STR(chosen("meta", "{\"model\":\"x\",\"messages\":[{\"role\":\"user\",\"content\":\"What is the "
                             "capital of country number 5?\"}],\"metadata\":{\"app\":\"x\",\"tier\":\"free\"}}",
                     "", ""),
              "small");
    /* every pair must be there */
    CHECK_STR(chosen("meta", "{\"model\":\"x\",\"messages\":[{\"role\":\"user\",\"content\":\"What is the "
                             "capital of country number 5?\"}],\"metadata\":{\"tier\":\"free\"}}",
                     "", ""),
              "small" /* the router: a capital question goes weak */);
    CHECK_STR(chosen("meta", USER("Compute the integral of x^3 dx from 0 to 2."), "", ""), "big");
    CHECK_STR(chosen("meta", "{\"model\":\"x\",\"messages\":[{\"role\":\"user\",\"content\":\"Compute the "
                             "integral of x^3 dx from 0 to 2.\"}],\"metadata\":{\"tier\":\"paid\"}}",
                     "", ""),
              "big");
    /* tags: any listed, from x-baton-tags or metadata.tags, comma-separated */
    CHECK_STR(chosen("meta", USER("Compute the integral of x^3 dx from 0 to 2."), "a, offline ,b", ""),
              "solar");
    CHECK_STR(chosen("meta", "{\"model\":\"x\",\"messages\":[{\"role\":\"user\",\"content\":\"Compute the "
                             "integral of x^3 dx.\"}],\"metadata\":{\"tags\":\"batch\"}}",
                     "", ""),
              "solar");
    CHECK_STR(chosen("meta", USER("Compute the integral of x^3 dx from 0 to 2."), "batchy", ""), "big");
    /* user: any listed */
    CHECK_STR(chosen("meta", USER("What is the capital of country number 5?"), "", "bob"), "big");
    CHECK_STR(chosen("meta", USER("What is the capital of country number 5?"), "", "carol"), "small");
}

TEST(regex_on_the_last_user_message)
{
    CHECK_STR(chosen("re", USER("Please PROVE this"), "", ""), "big");
    /* escapes resolved before matching: \u0050 is P */
    CHECK_STR(chosen("re", USER("\\u0050rove it"), "", ""), "big");
    CHECK_STR(chosen("re", USER("12345"), "", ""), "solar");
    CHECK_STR(chosen("re", USER("12345 apples"), "", ""), "small");
    /* an earlier user message does not count */
    CHECK_STR(chosen("re", "{\"model\":\"x\",\"messages\":[{\"role\":\"user\",\"content\":\"prove it\"},"
                           "{\"role\":\"assistant\",\"content\":\"ok\"},{\"role\":\"user\",\"content\":"
                           "\"thanks\"}]}",
                     "", ""),
              "small");
}

TEST(budget_left_below)
{
    char diag[512];
    struct bt_config *c = with("  thrifty:\n    rules:\n      - {when: {budget_left_below: 0.2}, model: small}\n"
                               "      - {model: big}\n", diag, sizeof diag);
    if (!c) H_FAIL("config refused:\n%s", diag);
    REQUIRE(c);
    struct bt_arena a;
    struct bt_prompt p;
    REQUIRE(prompt_of(USER("hello"), &a, &p));
    const struct bt_model *m = bt_config_model(c, BT_STR("thrifty"));
    const double lefts[] = {-1, 0, 0.1, 0.19, 0.2, 0.9};
    const char *want[] = {"big", "small", "small", "small", "big", "big"};
    for (size_t i = 0; i < 6; i++) {
        p.budget_left = lefts[i];
        struct bt_route_facts f;
        bt_route_facts_init(&f);
        const struct bt_model *got = bt_route_choose(m, &p, NULL, &f, NULL, 0);
        if (!got || strcmp(got->name, want[i]) != 0)
            H_FAIL("budget left %.2f: %s, want %s", lefts[i], got ? got->name : "?", want[i]);
    }
    bt_arena_free(&a);
    bt_config_unref(c);
}

TEST(prompt_tokens_compare_the_estimate)
{
    struct bt_arena a;
    struct bt_prompt p;
    REQUIRE(prompt_of(USER("hello"), &a, &p));
    struct bt_route_facts f;
    bt_route_facts_init(&f);
    CHECK_INT(bt_route_prompt_tokens(&f, &p), 7); /* 1 token, 3 for the message, 3 primed */
    bt_arena_free(&a);
    CHECK_STR(chosen("toks", USER("hello"), "", ""), "solar");
    CHECK_STR(chosen("toks", USER("one two three four five"), "", ""), "small");
    CHECK_STR(chosen("toks", USER("one two three four five six seven eight nine ten eleven twelve "
                                  "thirteen fourteen fifteen sixteen seventeen eighteen nineteen "
                                  "twenty twenty-one twenty-two twenty-three twenty-four twenty-five "
                                  "twenty-six twenty-seven twenty-eight twenty-nine thirty"),
                     "", ""),
              "big");
}

TEST(router_entry_and_plan_why)
{
    struct bt_arena a;
    struct bt_prompt p;
    REQUIRE(prompt_of(USER("Compute the integral of x^7 dx from 0 to 1."), &a, &p));
    struct bt_learn_scratch *s = bt_learn_scratch_new();
    struct bt_route_req q = {.model = BT_STR("meta"), .prompt = &p, .scratch = s};
    struct bt_plan plan;
    REQUIRE(bt_route(cfg, &q, &plan) == BT_OK);
    CHECK_STR(plan.model->name, "big");
    CHECK_STR(plan.asked->name, "meta");
    CHECK(strncmp(plan.why, "meta: rule 4 -> auto: router ", 29) == 0);
    CHECK(strstr(plan.why, " strong -> ") != NULL);
    CHECK_INT(plan.n, 1);
    CHECK_STR(plan.c[0].model.p, "big-up");
    /* without a prompt a choosing model is refused; a group needs none */
    q.prompt = NULL;
    CHECK_INT(bt_route(cfg, &q, &plan), BT_EINVAL);
    q.model = BT_STR("small");
    REQUIRE(bt_route(cfg, &q, &plan) == BT_OK);
    CHECK_STR(plan.why, "");
    CHECK(!bt_route_needs_prompt(cfg, BT_STR("small")));
    CHECK(bt_route_needs_prompt(cfg, BT_STR("auto")));
    bt_learn_scratch_free(s);
    bt_arena_free(&a);
    CHECK_STR(chosen("auto", USER("What is the capital of country number 9?"), "", ""), "small");
}

/* The loader's message for a models: section, or "" when it loads. */
static const char *refusal(const char *models)
{
    static char diag[1024];
    struct bt_config *c = with(models, diag, sizeof diag);
    if (c) {
        bt_config_unref(c);
        return "";
    }
    return diag;
}

#define REFUSED(models, text)                                                        \
    do {                                                                             \
        const char *m_ = refusal(models);                                            \
        if (!strstr(m_, text)) H_FAIL("%s: want \"%s\", got \"%s\"", #models, text, m_); \
    } while (0)

TEST(loader_refusals)
{
    REFUSED("  r:\n    rules:\n      - {when: {regex: \"a(b\"}, model: big}\n      - {model: small}\n",
            "9:24: model \"r\" rules 1: regex \"a(b\" does not compile");
    REFUSED("  r:\n    rules:\n      - {when: {regex: \"(a)\\\\1\"}, model: big}\n      - {model: small}\n",
            "back-references");
    REFUSED("  r:\n    rules:\n      - {when: {tools: true}, model: big}\n", "the last rule is the default");
    REFUSED("  r:\n    rules:\n      - {model: big}\n      - {model: small}\n", "has no when");
    REFUSED("  r:\n    rules:\n      - {model: nope}\n", "unknown model \"nope\"");
    REFUSED("  r:\n    rules:\n      - {when: {language: xx}, model: big}\n      - {model: small}\n",
            "unknown language \"xx\"");
    REFUSED("  r:\n    rules:\n      - {when: {prompt_tokens: \"lots\"}, model: big}\n      - {model: small}\n",
            "prompt_tokens must be a comparison");
    REFUSED("  r:\n    rules:\n      - {when: {color: red}, model: big}\n      - {model: small}\n",
            "color");
    REFUSED("  r:\n    rules:\n      - {when: {language_share: 0.5}, model: big}\n      - {model: small}\n",
            "language_share needs language");
    REFUSED("  r: {rules: [{model: s}]}\n  s: {rules: [{model: r}]}\n", "lead back to it");
    REFUSED("  r:\n    rules:\n      - {when: {budget_left_below: 2}, model: big}\n      - {model: small}\n",
            "budget_left_below");
    REFUSED("  r: {provider: a, rules: [{model: big}]}\n", "takes no provider");
    REFUSED("  r: {strategy: round_robin, rules: [{model: big}]}\n", "applies to deployments");
    REFUSED("  r: {rules: [{model: big}], router: {file: x, strong: big, weak: small}}\n",
            "not both");
    REFUSED("  r: {router: {file: /nonexistent/r.bin, strong: big, weak: small}}\n", "cannot be read");
    REFUSED("  r: {router: {strong: big, weak: small}}\n", "needs file");
    REFUSED("  r: {rules: [{model: big}]}\n  g: {provider: a, fallback: {models: [r]}}\n",
            "a fallback names a model with deployments");
    char y[256];
    snprintf(y, sizeof y, "  r: {router: {file: %s, strong: big, weak: nope}}\n", router_path);
    REFUSED(y, "router weak: unknown model \"nope\"");
    snprintf(y, sizeof y, "  r: {router: {file: %s, strong: big, weak: small, threshold: 0.1, strong_share: 0.2}}\n",
             router_path);
    REFUSED(y, "not both");
    snprintf(y, sizeof y, "  r: {router: {file: %s, strong: big, weak: small, strong_share: 0.2}}\n",
             router_path);
    CHECK_STR(refusal(y), "");
}

TEST(teardown)
{
    bt_config_unref(cfg);
    unlink(router_path);
}

int main(void)
{
    RUN(setup);
    if (!cfg) return HARNESS_DONE();
    RUN(language_by_script_share);
    RUN(tools_images_json_schema);
    RUN(metadata_tags_user);
    RUN(regex_on_the_last_user_message);
    RUN(prompt_tokens_compare_the_estimate);
    RUN(budget_left_below);
    RUN(router_entry_and_plan_why);
    RUN(loader_refusals);
    RUN(teardown);
    return HARNESS_DONE();
}
