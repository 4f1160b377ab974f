/* Cost: exact price parsing, the shipped price table, the cost formula and its
 * decimal form, baton's token estimate, prices in the config file, and the cost
 * strategy's order. */
#include "harness.h"

#include <stdlib.h>

#include "account/cost.h"
#include "config/config.h"
#include "core/arena.h"
#include "route/route.h"

static int64_t parsed(const char *s)
{
    int64_t v = -1;
    if (!bt_price_parse(bt_str_c(s), &v)) return -1;
    return v;
}

TEST(price_parse_is_exact)
{
    CHECK(parsed("2.50") == 2500000);
    CHECK(parsed("0.15") == 150000);
    CHECK(parsed("0.000001") == 1);
    CHECK(parsed("10") == 10000000);
    CHECK(parsed("0") == 0);
    CHECK(parsed(".5") == 500000);
    CHECK(parsed("5.") == 5000000);
    CHECK(parsed("1000000") == 1000000000000LL);
    CHECK(parsed("1000000.000001") == -1); /* above the cap */
    CHECK(parsed("0.0000001") == -1);      /* a 7th decimal */
    CHECK(parsed("-1") == -1);
    CHECK(parsed("1e-6") == -1);
    CHECK(parsed("") == -1);
    CHECK(parsed(".") == -1);
    CHECK(parsed(" 1") == -1);
    CHECK(parsed("1,5") == -1);
    CHECK(parsed("nan") == -1);
    CHECK(parsed("99999999999999999999") == -1);
}

static bool dflt(const char *model, struct bt_price *p)
{
    *p = (struct bt_price){0};
    return bt_price_default(bt_str_c(model), p);
}

TEST(default_prices)
{
    struct bt_price p;
    REQUIRE(dflt("gpt-4o-mini", &p));
    CHECK(p.source == BT_PRICE_DEFAULT);
    CHECK(p.input == 150000 && p.cached_input == 75000 && p.output == 600000);
    CHECK(p.cache_write == p.input && p.reasoning == p.output);
    REQUIRE(dflt("gpt-4o", &p)); /* not taken for gpt-4o-mini's prefix */
    CHECK(p.input == 2500000 && p.output == 10000000);
    REQUIRE(dflt("gpt-4o-2024-08-06", &p)); /* a dated snapshot */
    CHECK(p.input == 2500000);
    REQUIRE(dflt("gpt-4o-mini-2024-07-18", &p));
    CHECK(p.input == 150000);
    CHECK(!dflt("gpt-4o-audio-preview", &p)); /* another model, another price */
    CHECK(!dflt("gpt-4", &p));
    CHECK(!dflt("demo", &p));
    CHECK(!dflt("", &p));
    REQUIRE(dflt("claude-sonnet-4-5-20250929", &p));
    CHECK(p.input == 3000000 && p.cached_input == 300000 && p.cache_write == 3750000 &&
          p.output == 15000000);
    REQUIRE(dflt("claude-haiku-4-5", &p));
    CHECK(p.input == 1000000 && p.output == 5000000);
    REQUIRE(dflt("claude-opus-4-1-20250805", &p));
    CHECK(p.output == 75000000);
    REQUIRE(dflt("text-embedding-3-small", &p)); /* embeddings: input only */
    CHECK(p.input == 20000 && p.output == 0);
    REQUIRE(dflt("mistral-large-latest", &p));
    CHECK(p.input == 2000000 && p.cached_input == p.input);
    /* one per vendor, so a row that does not parse shows up (it would read 0) */
    static const char *const some[] = {"gpt-4.1", "gpt-4.1-mini", "gpt-4.1-nano", "gpt-5",
                                       "gpt-5-mini", "gpt-5-nano", "o3", "o3-mini", "o4-mini",
                                       "claude-opus-4-5", "claude-opus-4", "claude-sonnet-4",
                                       "claude-3-5-haiku", "gemini-2.5-pro", "gemini-2.5-flash",
                                       "gemini-2.5-flash-lite", "deepseek-chat",
                                       "deepseek-reasoner", "solar-pro2", "solar-mini",
                                       "mistral-medium", "mistral-small", "codestral"};
    for (size_t i = 0; i < sizeof(some) / sizeof(some[0]); i++) {
        REQUIRE(dflt(some[i], &p));
        if (p.input <= 0 || p.output <= 0 || p.cached_input <= 0 || p.cache_write <= 0)
            H_FAIL("%s: a price is not positive", some[i]);
    }
}

static const char *fmt(int64_t pusd)
{
    static char buf[BT_DECIMAL_MAX];
    bt_cost_format(pusd, buf, sizeof(buf));
    return buf;
}

TEST(cost_arithmetic)
{
    struct bt_price p = {.source = BT_PRICE_CONFIGURED, .input = 2500000, .cached_input = 1250000,
                         .cache_write = 3125000, .output = 10000000, .reasoning = 12000000};
    /* 1000 prompt of which 400 cached and 100 written, 300 completion of which
     * 200 reasoning: 500*2.5 + 400*1.25 + 100*3.125 + 100*10 + 200*12 (USD/M) */
    struct bt_usage u = {.present = true, .prompt_tokens = 1000, .completion_tokens = 300,
                         .cached_tokens = 400, .cache_write_tokens = 100,
                         .reasoning_tokens = 200};
    int64_t c = bt_cost_pusd(&p, &u);
    CHECK(c == 500 * 2500000LL + 400 * 1250000LL + 100 * 3125000LL + 100 * 10000000LL +
                   200 * 12000000LL);
    CHECK_STR(fmt(c), "0.0054625");
    /* the sim case: 3 prompt and 24 completion tokens at 0.15 / 0.60 */
    struct bt_price q = {.input = 150000, .cached_input = 150000, .cache_write = 150000,
                         .output = 600000, .reasoning = 600000};
    struct bt_usage v = {.present = true, .prompt_tokens = 3, .completion_tokens = 24};
    CHECK_STR(fmt(bt_cost_pusd(&q, &v)), "0.00001485");
    /* exact at the smallest price: one token at 0.000001 USD/M */
    struct bt_price tiny = {.input = 1, .output = 1};
    struct bt_usage one = {.present = true, .prompt_tokens = 1};
    CHECK_STR(fmt(bt_cost_pusd(&tiny, &one)), "0.000000000001");
    /* parts larger than their wholes are cut; negatives are 0 */
    struct bt_usage odd = {.present = true, .prompt_tokens = 10, .completion_tokens = 5,
                           .cached_tokens = 50, .cache_write_tokens = 7, .reasoning_tokens = 9};
    CHECK(bt_cost_pusd(&p, &odd) == 10 * 1250000LL + 5 * 12000000LL);
    struct bt_usage neg = {.present = true, .prompt_tokens = -5, .completion_tokens = -1};
    CHECK(bt_cost_pusd(&p, &neg) == 0);
    /* saturates instead of wrapping */
    struct bt_price huge = {.input = BT_PRICE_MAX_PUSD, .output = BT_PRICE_MAX_PUSD};
    struct bt_usage lots = {.present = true, .prompt_tokens = INT64_MAX / 2,
                            .completion_tokens = INT64_MAX / 2};
    CHECK(bt_cost_pusd(&huge, &lots) == INT64_MAX);
    CHECK_STR(fmt(0), "0");
    CHECK_STR(fmt(1500000000000LL), "1.5");
    CHECK_STR(fmt(12000000000000LL), "12");
    CHECK_STR(fmt(INT64_MAX), "9223372.036854775807");
}

TEST(prompt_estimate)
{
    const char *body =
        "{\"model\":\"gpt-4o\",\"messages\":[{\"role\":\"system\",\"content\":\"Be brief.\"},"
        "{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"hello world\"}]},"
        "{\"role\":\"assistant\",\"content\":null,\"tool_calls\":[{\"id\":\"c\",\"type\":"
        "\"function\",\"function\":{\"name\":\"f\",\"arguments\":\"{\\\"a\\\":1}\"}}]}]}";
    struct bt_arena a;
    bt_arena_init(&a, 4096, 0);
    struct bt_request r = {.op = BT_OP_CHAT, .tok_input = -1};
    REQUIRE(bt_json_parse(&r.doc, body, strlen(body), &a, NULL, NULL) == BT_OK);
    r.tok_messages = bt_json_get(&r.doc, 0, "messages");
    /* o200k: "Be brief." 3, "hello world" 2, {"a":1} 5; 3 per message, 3 priming */
    int64_t n = bt_cost_count_prompt(&r, BT_STR("gpt-4o"));
    CHECK(n == 3 + 2 + 5 + 3 * 3 + 3);
    if (n != 22) H_FAIL("counted %lld", (long long)n);
    CHECK(bt_cost_count_text(BT_STR("hello world"), BT_STR("gpt-4o")) == 2);
    CHECK(bt_cost_count_text(BT_STR("\\u0068ello world"), BT_STR("gpt-4o")) == 2);
    CHECK(bt_cost_count_text(BT_STR(""), BT_STR("gpt-4o")) == 0);
    const char *emb = "{\"model\":\"e\",\"input\":[\"hello world\",\"hi\"]}";
    struct bt_request e = {.op = BT_OP_EMBED, .tok_messages = -1};
    REQUIRE(bt_json_parse(&e.doc, emb, strlen(emb), &a, NULL, NULL) == BT_OK);
    e.tok_input = bt_json_get(&e.doc, 0, "input");
    CHECK(bt_cost_count_prompt(&e, BT_STR("text-embedding-3-small")) == 3);
    bt_arena_free(&a);
}

static struct bt_config *load(const char *yaml, struct bt_config_diags *d)
{
    struct bt_config *c = NULL;
    bt_config_load_string("t.yaml", yaml, strlen(yaml), &c, d);
    return c;
}

/* The first error's "line:col: text" for a file that must be refused. */
static const char *refused(const char *yaml)
{
    static char out[600];
    struct bt_config_diags d = {0};
    struct bt_config *c = load(yaml, &d);
    snprintf(out, sizeof(out), "%s", c ? "(loaded)" : "(no error)");
    for (size_t i = 0; !c && i < d.n; i++)
        if (d.items[i].is_error) {
            snprintf(out, sizeof(out), "%d:%d: %s", d.items[i].line, d.items[i].col,
                     d.items[i].msg);
            break;
        }
    if (c) bt_config_unref(c);
    bt_config_diags_free(&d);
    return out;
}

static bool has(const char *s, const char *needle)
{
    if (strstr(s, needle)) return true;
    fprintf(stderr, "    got: %s\n    want: %s\n", s, needle);
    return false;
}

TEST(config_prices)
{
    const char *yaml = "providers: {s: {type: sim}, o: {type: openai, base_url: \"http://127.0.0.1:9/v1\"}}\n"
                       "models:\n"
                       "  a: {provider: s, price: {input: 0.15, output: 0.6}}\n"
                       "  b:\n"
                       "    deployments:\n"
                       "      - {provider: s, model: m, price: {input: \"2.5\", cached_input: 1.25, "
                       "cache_write: 3.125, output: 10, reasoning: 12}}\n"
                       "      - {provider: o, model: gpt-4o-mini}\n"
                       "      - {provider: o, model: gpt-4o-mini, price: {input: 1, output: 2}}\n"
                       "      - {provider: s, model: other}\n"
                       "  c: {provider: s, model: gpt-4o-mini}\n";
    struct bt_config_diags d = {0};
    struct bt_config *c = load(yaml, &d);
    REQUIRE(c);
    const struct bt_model *a = bt_config_model(c, BT_STR("a"));
    const struct bt_model *b = bt_config_model(c, BT_STR("b"));
    REQUIRE(a && b && b->ndeployments == 4);
    const struct bt_price *p = &a->deployments[0].price;
    CHECK(p->source == BT_PRICE_CONFIGURED && p->input == 150000 && p->output == 600000 &&
          p->cached_input == 150000 && p->cache_write == 150000 && p->reasoning == 600000);
    p = &b->deployments[0].price;
    CHECK(p->input == 2500000 && p->cached_input == 1250000 && p->cache_write == 3125000 &&
          p->output == 10000000 && p->reasoning == 12000000);
    CHECK(b->deployments[1].price.source == BT_PRICE_DEFAULT);
    CHECK(b->deployments[1].price.input == 150000);
    CHECK(b->deployments[2].price.source == BT_PRICE_CONFIGURED); /* configured wins */
    CHECK(b->deployments[2].price.input == 1000000);
    CHECK(b->deployments[3].price.source == BT_PRICE_NONE);
    const struct bt_model *sim = bt_config_model(c, BT_STR("c")); /* no shipped price for sim */
    REQUIRE(sim);
    CHECK(sim->deployments[0].price.source == BT_PRICE_NONE);
    bt_config_unref(c);
    bt_config_diags_free(&d);

    const char *head = "providers: {s: {type: sim}}\nmodels:\n";
    char y[1024];
#define Y(body) (snprintf(y, sizeof(y), "%s%s", head, body), y)
    CHECK(has(refused(Y("  a: {provider: s, price: {input: -1, output: 1}}\n")),
              "3:35: model \"a\" price: input must be a plain decimal number of USD per million "
              "tokens"));
    CHECK(has(refused(Y("  a: {provider: s, price: {input: 1, output: 1e-6}}\n")),
              "3:46: model \"a\" price: output must be a plain decimal"));
    CHECK(has(refused(Y("  a: {provider: s, price: {input: 1, output: abc}}\n")), "(got \"abc\")"));
    CHECK(has(refused(Y("  a: {provider: s, price: {input: 0.0000001, output: 1}}\n")),
              "at most 6 decimals"));
    CHECK(has(refused(Y("  a: {provider: s, price: {input: 1}}\n")),
              "3:27: model \"a\" price needs output"));
    CHECK(has(refused(Y("  a: {provider: s, price: {cached_input: 1}}\n")),
              "price needs input and output"));
    CHECK(has(refused(Y("  a: {provider: s, price: {input: 1, output: 1, cahced_input: 1}}\n")),
              "unknown key \"cahced_input\""));
    CHECK(has(refused(Y("  a: {provider: s, price: 5}\n")), "price must be a mapping"));
    CHECK(has(refused(Y("  a: {price: {input: 1, output: 1}, deployments: [{provider: s}]}\n")),
              "price goes beside provider:"));
}

TEST(config_cost_strategy)
{
    const char *head = "providers: {s: {type: sim}, o: {type: openai, base_url: \"http://127.0.0.1:9/v1\"}}\n"
                       "models:\n";
    char y[1024];
    snprintf(y, sizeof(y), "%s%s", head,
             "  c:\n"
             "    strategy: cost\n"
             "    deployments:\n"
             "      - {provider: o, model: gpt-4o}\n"
             "      - {provider: s, model: mine}\n");
    CHECK(has(refused(y), "7:9: model \"c\": strategy cost needs a price for every deployment, "
                          "and deployment 2 (s/mine) has none"));
    snprintf(y, sizeof(y), "%s%s", head, "  c: {provider: s, strategy: cost}\n");
    CHECK(has(refused(y), "3:3: model \"c\": strategy cost needs a price"));
    snprintf(y, sizeof(y), "%s%s", head, "  c: {provider: s, strategy: cheapest}\n");
    CHECK(has(refused(y), "expected one of: weighted, round_robin, least_busy, latency, cost"));
    snprintf(y, sizeof(y), "%s%s", head,
             "  c:\n"
             "    strategy: cost\n"
             "    deployments:\n"
             "      - {provider: o, model: gpt-4o}\n"
             "      - {provider: s, model: mine, price: {input: 1, output: 1}}\n");
    CHECK(has(refused(y), "(loaded)"));
}

static const char *plan_of(const struct bt_config *c, const char *model, uint64_t rr)
{
    static char out[256];
    struct bt_plan p;
    if (bt_route_plan(c, bt_str_c(model), rr, &p)) return "(none)";
    size_t n = 0;
    out[0] = 0;
    for (uint32_t i = 0; i < p.n && n < sizeof(out); i++)
        n += (size_t)snprintf(out + n, sizeof(out) - n, "%s%.*s", i ? "," : "",
                              BT_STR_FMT(p.c[i].model));
    return out;
}

TEST(cost_strategy_order)
{
    const char *yaml =
        "providers: {s: {type: sim}, o: {type: openai, base_url: \"http://127.0.0.1:9/v1\"}}\n"
        "models:\n"
        "  c:\n"
        "    strategy: cost\n"
        "    deployments:\n"
        "      - {provider: o, model: gpt-4o}\n"                                 /* 4.375 */
        "      - {provider: s, model: t1, price: {input: 1, output: 1}, weight: 3}\n" /* 1 */
        "      - {provider: o, model: gpt-4o-mini}\n"                           /* 0.2625 */
        "      - {provider: s, model: t2, price: {input: 0.5, output: 2.5}}\n"  /* 1 */
        "  direct_default: {provider: o, model: gpt-4.1}\n";
    struct bt_config_diags d = {0};
    struct bt_config *c = load(yaml, &d);
    REQUIRE(c);
    /* cheapest first; t1 and t2 tie and keep the weighted rotation's order: of
     * the total weight 6, picks 0 (gpt-4o) and 1..3 (t1) put t1 before t2,
     * picks 4 (gpt-4o-mini) and 5 (t2) put t2 first */
    CHECK_STR(plan_of(c, "c", 0), "gpt-4o-mini,t1,t2,gpt-4o");
    CHECK_STR(plan_of(c, "c", 1), "gpt-4o-mini,t1,t2,gpt-4o");
    CHECK_STR(plan_of(c, "c", 3), "gpt-4o-mini,t1,t2,gpt-4o");
    CHECK_STR(plan_of(c, "c", 4), "gpt-4o-mini,t2,t1,gpt-4o");
    CHECK_STR(plan_of(c, "c", 5), "gpt-4o-mini,t2,t1,gpt-4o");
    /* a plan carries each candidate's price; direct addressing gets the shipped one */
    struct bt_plan p;
    REQUIRE(bt_route_plan(c, BT_STR("c"), 0, &p) == BT_OK);
    CHECK(p.c[0].price.source == BT_PRICE_DEFAULT && p.c[0].price.input == 150000);
    REQUIRE(bt_route_plan(c, BT_STR("o/gpt-4o-2024-08-06"), 0, &p) == BT_OK);
    CHECK(p.c[0].price.source == BT_PRICE_DEFAULT && p.c[0].price.output == 10000000);
    REQUIRE(bt_route_plan(c, BT_STR("s/unknown"), 0, &p) == BT_OK);
    CHECK(p.c[0].price.source == BT_PRICE_NONE);
    REQUIRE(bt_route_plan(c, BT_STR("s/gpt-4o"), 0, &p) == BT_OK);
    CHECK(p.c[0].price.source == BT_PRICE_NONE); /* the simulator's ids are free */
    bt_config_unref(c);
    bt_config_diags_free(&d);
}

int main(void)
{
    RUN(price_parse_is_exact);
    RUN(default_prices);
    RUN(cost_arithmetic);
    RUN(prompt_estimate);
    RUN(config_prices);
    RUN(config_cost_strategy);
    RUN(cost_strategy_order);
    return HARNESS_DONE();
}
