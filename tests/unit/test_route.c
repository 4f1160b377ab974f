#include "harness.h"

#include <stdlib.h>

#include "config/config.h"
#include "gate/gate.h"
#include "route/health.h"
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
    "      - {provider: b, model: y, weight: 1}\n"
    "  rr:\n"
    "    strategy: round_robin\n"
    "    deployments: [{provider: a, model: r1}, {provider: b, model: r2}, {provider: a, model: r3}]\n"
    "  busy:\n"
    "    strategy: least_busy\n"
    "    deployments: [{provider: a, model: b1}, {provider: b, model: b2}, {provider: a, model: b3}]\n"
    "  fast:\n"
    "    strategy: latency\n"
    "    deployments: [{provider: a, model: l1}, {provider: b, model: l2}]\n"
    "  stick:\n"
    "    sticky: user\n"
    "    breaker: {failures: 1, cooldown: 1h}\n"
    "    deployments: [{provider: a, model: k1}, {provider: b, model: k2}, {provider: a, model: k3}]\n"
    "  guarded:\n"
    "    breaker: {failures: 2, cooldown: 50ms}\n"
    "    deployments: [{provider: a, model: g1}, {provider: b, model: g2}]\n"
    "  hedged:\n"
    "    hedge: {after: 50ms}\n"
    "    breaker: {failures: 2, cooldown: 1h}\n"
    "    deployments: [{provider: a, model: h1}, {provider: b, model: h2}]\n";

static struct bt_config *load(void)
{
    struct bt_config *c = NULL;
    struct bt_config_diags d = {0};
    enum bt_err err = bt_config_load_string("t.yaml", yaml, strlen(yaml), &c, &d);
    if (err) bt_config_diags_print(&d, stderr);
    bt_config_diags_free(&d);
    if (c) bt_health_attach(c);
    return c;
}

static struct bt_health *health_of(struct bt_config *c, const char *model, size_t i)
{
    return c->models[bt_config_model(c, bt_str_c(model)) - c->models].deployments[i].health;
}

/* The upstream model ids of the plan, joined with ',' (e.g. "r2,r3,r1"). */
static const char *ids(const struct bt_plan *p, char *buf, size_t cap)
{
    size_t o = 0;
    buf[0] = 0;
    for (uint32_t i = 0; i < p->n && o < cap; i++)
        o += (size_t)snprintf(buf + o, cap - o, "%s%.*s", i ? "," : "", BT_STR_FMT(p->c[i].model));
    return buf;
}

static const char *plan_ids(struct bt_config *c, const char *model, uint64_t rr, char *buf, size_t cap)
{
    struct bt_plan p;
    if (bt_route_plan(c, bt_str_c(model), rr, &p)) return "(none)";
    return ids(&p, buf, cap);
}

TEST(strategies)
{
    struct bt_config *c = load();
    REQUIRE(c);
    char b[128];
    /* round robin: each first in turn, the rest after it in order */
    CHECK_STR(plan_ids(c, "rr", 0, b, sizeof(b)), "r1,r2,r3");
    CHECK_STR(plan_ids(c, "rr", 1, b, sizeof(b)), "r2,r3,r1");
    CHECK_STR(plan_ids(c, "rr", 5, b, sizeof(b)), "r3,r1,r2");
    /* least busy: fewest in flight first; ties keep the rotation */
    for (int i = 0; i < 2; i++) bt_health_begin(health_of(c, "busy", 0));
    bt_health_begin(health_of(c, "busy", 1));
    CHECK_STR(plan_ids(c, "busy", 0, b, sizeof(b)), "b3,b2,b1");
    bt_health_begin(health_of(c, "busy", 2));
    bt_health_begin(health_of(c, "busy", 2));
    CHECK_STR(plan_ids(c, "busy", 0, b, sizeof(b)), "b2,b1,b3");
    /* latency: of the two compared, the lower average first; unmeasured counts as fastest */
    struct bt_breaker_cfg none = {0};
    bt_health_begin(health_of(c, "fast", 0));
    bt_health_end(health_of(c, "fast", 0), &none, true, BT_OUTCOME_OK, 9000, 0);
    CHECK_STR(plan_ids(c, "fast", 0, b, sizeof(b)), "l2,l1");
    bt_health_begin(health_of(c, "fast", 1));
    bt_health_end(health_of(c, "fast", 1), &none, true, BT_OUTCOME_OK, 20000, 0);
    CHECK_STR(plan_ids(c, "fast", 0, b, sizeof(b)), "l1,l2");
    CHECK_STR(plan_ids(c, "fast", 1, b, sizeof(b)), "l1,l2");
    /* a reload keeps a deployment's state: the same entry for the same deployment */
    struct bt_config *c2 = load();
    REQUIRE(c2);
    CHECK(health_of(c2, "busy", 2) == health_of(c, "busy", 2));
    CHECK(health_of(c2, "busy", 0) != health_of(c, "busy", 2));
    bt_config_unref(c2);
    bt_config_unref(c);
}

TEST(sticky_user)
{
    struct bt_config *c = load();
    REQUIRE(c);
    struct bt_plan p;
    char first[32] = "";
    int moved = 0;
    /* one user: the same first deployment whatever the rotation */
    for (uint64_t rr = 0; rr < 12; rr++) {
        REQUIRE(bt_route_plan_for(c, BT_STR("stick"), BT_STR("alice"), rr, &p) == BT_OK);
        CHECK_INT(p.n, 3);
        char now[32];
        snprintf(now, sizeof(now), "%.*s", BT_STR_FMT(p.c[0].model));
        if (!first[0]) snprintf(first, sizeof(first), "%s", now);
        if (strcmp(first, now) != 0) moved++;
    }
    CHECK_INT(moved, 0);
    /* users spread over the deployments */
    int hits[3] = {0};
    char name[16];
    for (int u = 0; u < 300; u++) {
        snprintf(name, sizeof(name), "user-%d", u);
        REQUIRE(bt_route_plan_for(c, BT_STR("stick"), bt_str_c(name), 0, &p) == BT_OK);
        hits[p.c[0].model.p[1] - '1']++;
    }
    for (int i = 0; i < 3; i++) CHECK(hits[i] > 60);
    /* no user: the rotation */
    REQUIRE(bt_route_plan_for(c, BT_STR("stick"), BT_STR_NULL, 1, &p) == BT_OK);
    CHECK_SLICE(p.c[0].model, "k2");
    /* alice's deployment fails (its breaker opens): she moves, and only while it is open */
    const struct bt_model *m = bt_config_model(c, BT_STR("stick"));
    size_t ai = (size_t)(first[1] - '1');
    struct bt_health *h = m->deployments[ai].health;
    bt_health_begin(h);
    bt_health_end(h, &m->breaker, true, BT_OUTCOME_SERVER_ERROR, 0, bt_health_now_ms());
    REQUIRE(bt_route_plan_for(c, BT_STR("stick"), BT_STR("alice"), 0, &p) == BT_OK);
    CHECK_INT(p.n, 2);
    CHECK(p.c[0].model.p[1] != first[1]);
    bt_health_begin(h);
    bt_health_end(h, &m->breaker, true, BT_OUTCOME_OK, 100, bt_health_now_ms());
    REQUIRE(bt_route_plan_for(c, BT_STR("stick"), BT_STR("alice"), 5, &p) == BT_OK);
    CHECK(p.c[0].model.p[1] == first[1]);
    bt_config_unref(c);
}

TEST(breaker)
{
    struct bt_config *c = load();
    REQUIRE(c);
    const struct bt_model *m = bt_config_model(c, BT_STR("guarded"));
    struct bt_health *g1 = health_of(c, "guarded", 0);
    char b[128];
    uint64_t t = bt_health_now_ms();
    CHECK_STR(plan_ids(c, "guarded", 0, b, sizeof(b)), "g1,g2");
    /* one failure: still closed; a client's mistake never counts */
    bt_health_begin(g1);
    bt_health_end(g1, &m->breaker, true, BT_OUTCOME_SERVER_ERROR, 0, t);
    CHECK_STR(plan_ids(c, "guarded", 0, b, sizeof(b)), "g1,g2");
    /* the second in a row opens it: g1 is left out */
    bt_health_begin(g1);
    bt_health_end(g1, &m->breaker, true, BT_OUTCOME_SERVER_ERROR, 0, t);
    CHECK_STR(plan_ids(c, "guarded", 0, b, sizeof(b)), "g2");
    CHECK_STR(plan_ids(c, "guarded", 1, b, sizeof(b)), "g2");
    /* both open: the one whose cooldown ends first is still tried */
    struct bt_health *g2 = health_of(c, "guarded", 1);
    for (int i = 0; i < 2; i++) {
        bt_health_begin(g2);
        bt_health_end(g2, &m->breaker, true, BT_OUTCOME_SERVER_ERROR, 0, t + 10);
    }
    CHECK_STR(plan_ids(c, "guarded", 0, b, sizeof(b)), "g1");
    /* after the cooldown one probe goes; while it is out, nobody else */
    CHECK(bt_health_available(g1, &m->breaker, t + 60));
    bt_health_begin(g1);
    CHECK(!bt_health_available(g1, &m->breaker, t + 60));
    /* the probe fails: open again for a whole cooldown */
    bt_health_end(g1, &m->breaker, true, BT_OUTCOME_SERVER_ERROR, 0, t + 60);
    CHECK(!bt_health_available(g1, &m->breaker, t + 100));
    CHECK(bt_health_available(g1, &m->breaker, t + 111));
    /* a successful probe closes it */
    bt_health_begin(g1);
    bt_health_end(g1, &m->breaker, true, BT_OUTCOME_OK, 1000, t + 111);
    CHECK(bt_health_available(g1, &m->breaker, t + 112));
    CHECK_INT(atomic_load(&g1->failures), 0);
    /* a client leaving teaches nothing and frees the probe */
    bt_health_begin(g2);
    bt_health_end(g2, &m->breaker, false, BT_OUTCOME_OK, 0, t + 200);
    CHECK_INT(atomic_load(&g2->inflight), 0);
    bt_config_unref(c);
}

TEST(hedge_counts)
{
    /* An attempt a hedge cancelled is not a failure: two failures around one
     * cancelled attempt still open the breaker only at the second; the counters
     * reach /metrics. */
    struct bt_config *c = load();
    REQUIRE(c);
    const struct bt_model *m = bt_config_model(c, BT_STR("hedged"));
    CHECK_INT((int)m->hedge.after_ms, 50);
    struct bt_health *h1 = health_of(c, "hedged", 0), *h2 = health_of(c, "hedged", 1);
    uint64_t t = bt_health_now_ms();
    char b[128];
    bt_health_begin(h1);
    bt_health_end(h1, &m->breaker, true, BT_OUTCOME_TIMEOUT, 0, t);
    bt_health_begin(h1);
    bt_health_begin(h2);
    bt_health_hedge(h2, BT_HEDGE_STARTED);
    bt_health_end(h2, &m->breaker, true, BT_OUTCOME_OK, 100, t);
    bt_health_hedge(h2, BT_HEDGE_WON);
    bt_health_end(h1, &m->breaker, false, BT_OUTCOME_OK, 0, t); /* hedged out */
    bt_health_hedge(h1, BT_HEDGE_CANCELLED);
    CHECK_INT(atomic_load(&h1->inflight), 0);
    CHECK_INT((int)atomic_load(&h1->failures), 1);
    CHECK_STR(plan_ids(c, "hedged", 0, b, sizeof(b)), "h1,h2");
    bt_health_begin(h1);
    bt_health_end(h1, &m->breaker, true, BT_OUTCOME_TIMEOUT, 0, t);
    CHECK_STR(plan_ids(c, "hedged", 0, b, sizeof(b)), "h2");
    bt_health_hedge(NULL, BT_HEDGE_WON); /* untracked: nothing */
    struct bt_buf out;
    bt_buf_init(&out, 1 << 20);
    CHECK_INT(bt_health_render(&out), BT_OK);
    CHECK_INT(bt_buf_cstr(&out), BT_OK);
    CHECK(strstr(out.p, "# TYPE baton_deployment_hedges_won_total counter\n") != NULL);
    CHECK(strstr(out.p, "baton_deployment_hedges_total{deployment=\"b/h2\"} 1\n") != NULL);
    CHECK(strstr(out.p, "baton_deployment_hedges_won_total{deployment=\"b/h2\"} 1\n") != NULL);
    CHECK(strstr(out.p, "baton_deployment_hedges_won_total{deployment=\"a/h1\"} 0\n") != NULL);
    CHECK(strstr(out.p, "baton_deployment_hedged_out_total{deployment=\"a/h1\"} 1\n") != NULL);
    CHECK(strstr(out.p, "baton_deployment_in_flight{deployment=\"a/h1\"} 0\n") != NULL);
    bt_buf_free(&out);
    bt_config_unref(c);
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
    RUN(strategies);
    RUN(breaker);
    RUN(hedge_counts);
    RUN(sticky_user);
    return HARNESS_DONE();
}
