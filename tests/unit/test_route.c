#include "harness.h"

#include <stdlib.h>

#include "config/config.h"
#include "gate/gate.h"
#include "route/route.h"

static const char *yaml =
    "providers:\n"
    "  a: {type: sim}\n"
    "  b: {type: sim}\n"
    "  hf: {type: openai, base_url: \"http://127.0.0.1:9/v1\"}\n"
    "models:\n"
    "  one: {provider: a, model: up-one}\n"
    "  group:\n"
    "    deployments:\n"
    "      - {provider: a, model: x, weight: 3}\n"
    "      - {provider: b, model: y, weight: 1}\n";

static struct bt_config *load(void)
{
    struct bt_config *c = NULL;
    struct bt_config_diags d = {0};
    enum bt_err err = bt_config_load_string("t.yaml", yaml, strlen(yaml), &c, &d);
    if (err) bt_config_diags_print(&d, stderr);
    bt_config_diags_free(&d);
    return c;
}

TEST(public_model)
{
    struct bt_config *c = load();
    REQUIRE(c);
    struct bt_plan p;
    CHECK_INT(bt_route_plan(c, BT_STR("one"), 0, &p), BT_OK);
    CHECK_INT(p.n, 1);
    CHECK_STR(p.c[0].provider->name, "a");
    CHECK_SLICE(p.c[0].model, "up-one");
    CHECK(p.model != NULL);
    bt_config_unref(c);
}

TEST(group_weighted_first_then_fallbacks)
{
    struct bt_config *c = load();
    REQUIRE(c);
    int first_a = 0;
    for (uint64_t rr = 0; rr < 400; rr++) {
        struct bt_plan p;
        REQUIRE(bt_route_plan(c, BT_STR("group"), rr, &p) == BT_OK);
        CHECK_INT(p.n, 2);
        CHECK(p.c[0].provider != p.c[1].provider);
        if (strcmp(p.c[0].provider->name, "a") == 0) first_a++;
    }
    CHECK_INT(first_a, 300); /* weight 3 of 4 */
    bt_config_unref(c);
}

TEST(direct_provider_addressing)
{
    struct bt_config *c = load();
    REQUIRE(c);
    struct bt_plan p;
    CHECK_INT(bt_route_plan(c, BT_STR("hf/meta-llama/Llama-3-8B"), 0, &p), BT_OK);
    CHECK_STR(p.c[0].provider->name, "hf");
    CHECK_SLICE(p.c[0].model, "meta-llama/Llama-3-8B");
    CHECK(p.model == NULL);
    CHECK_INT(bt_route_plan(c, BT_STR("nope/x"), 0, &p), BT_ENOTFOUND);
    CHECK_INT(bt_route_plan(c, BT_STR("hf/"), 0, &p), BT_ENOTFOUND);
    CHECK_INT(bt_route_plan(c, BT_STR("/x"), 0, &p), BT_ENOTFOUND);
    CHECK_INT(bt_route_plan(c, BT_STR("unknown"), 0, &p), BT_ENOTFOUND);
    bt_config_unref(c);
}

static struct bt_http_req req_with(struct bt_http_header *h, size_t n)
{
    struct bt_http_req r;
    memset(&r, 0, sizeof(r));
    r.headers = h;
    r.nheaders = n;
    return r;
}

TEST(master_key_gate)
{
    struct bt_config *c = bt_config_new_default();
    REQUIRE(c);
    const char *why = NULL;
    struct bt_http_req none = req_with(NULL, 0);
    CHECK(bt_gate_check_master(c, &none, &why)); /* no key configured */
    c->auth.master_key = strdup("sk-master-123");
    CHECK(!bt_gate_check_master(c, &none, &why));
    CHECK(why && strstr(why, "didn't provide"));
    struct bt_http_header good = {BT_STR("Authorization"), BT_STR("Bearer sk-master-123")};
    struct bt_http_req r = req_with(&good, 1);
    CHECK(bt_gate_check_master(c, &r, &why));
    struct bt_http_header lower = {BT_STR("authorization"), BT_STR("bearer sk-master-123 ")};
    r = req_with(&lower, 1);
    CHECK(bt_gate_check_master(c, &r, &why));
    struct bt_http_header bad = {BT_STR("Authorization"), BT_STR("Bearer sk-master-12")};
    r = req_with(&bad, 1);
    CHECK(!bt_gate_check_master(c, &r, &why));
    CHECK(why && !strstr(why, "sk-master"));
    struct bt_http_header xk = {BT_STR("x-api-key"), BT_STR("sk-master-123")};
    r = req_with(&xk, 1);
    CHECK(bt_gate_check_master(c, &r, &why));
    bt_config_unref(c);
}

int main(void)
{
    RUN(public_model);
    RUN(group_weighted_first_then_fallbacks);
    RUN(direct_provider_addressing);
    RUN(master_key_gate);
    return HARNESS_DONE();
}
