/* The gate: identifying a caller from the HTTP head (before decode), admitting a
 * decoded request (after). */
#include "harness.h"

#include <stdlib.h>
#include <time.h>

#include "gate/gate.h"

static struct bt_config *cfg_with_key(const char *key)
{
    char yaml[256];
    snprintf(yaml, sizeof(yaml), "auth: {master_key: \"%s\"}\nproviders: {p: {type: sim}}\n", key);
    struct bt_config_diags d = {0};
    struct bt_config *c = NULL;
    if (bt_config_load_string("gate.yaml", yaml, strlen(yaml), &c, &d)) c = NULL;
    bt_config_diags_free(&d);
    return c;
}

static bool identify(const struct bt_config *cfg, const char *name, const char *value,
                     const char **why)
{
    struct bt_http_header h = {bt_str_c(name), bt_str_c(value)};
    struct bt_http_req req = {.headers = name ? &h : NULL, .nheaders = name ? 1 : 0};
    struct bt_caller caller = {0};
    bool ok = bt_gate_identify(cfg, NULL, &req, &caller, why);
    if (ok != caller.master) H_FAIL("identify said %d, the caller is master=%d", ok, caller.master);
    return ok;
}

TEST(identify_master_key)
{
    struct bt_config *c = cfg_with_key("sk-master-123456");
    REQUIRE(c);
    const char *why = NULL;
    CHECK(identify(c, "Authorization", "Bearer sk-master-123456", &why));
    CHECK(identify(c, "authorization", "  bearer   sk-master-123456 ", &why));
    CHECK(identify(c, "x-api-key", "sk-master-123456", &why));
    CHECK(!identify(c, NULL, NULL, &why));
    CHECK(why && strstr(why, "didn't provide"));
    CHECK(!identify(c, "Authorization", "Bearer sk-master-12345", &why));
    CHECK(why && strstr(why, "Incorrect"));
    CHECK(!identify(c, "Authorization", "Bearer sk-master-1234567", &why));
    CHECK(!identify(c, "Authorization", "Basic sk-master-123456", &why));
    CHECK(why && !strstr(why, "sk-master")); /* never echoes a key */
    bt_config_unref(c);
}

TEST(no_key_configured_admits_everyone)
{
    struct bt_config *c = bt_config_new_default();
    REQUIRE(c);
    const char *why = NULL;
    CHECK(identify(c, NULL, NULL, &why));
    CHECK(identify(c, "Authorization", "Bearer anything", &why));
    bt_config_unref(c);
}

TEST(admit_after_decode)
{
    struct bt_config *c = bt_config_new_default();
    REQUIRE(c);
    struct bt_request r = {.model = BT_STR("demo")};
    int status = 0;
    const char *code = NULL, *why = NULL;
    struct bt_caller master = {.master = true}, nobody = {.master = false};
    CHECK(bt_gate_admit(c, &master, &r, &status, &code, &why));
    CHECK(!bt_gate_admit(c, &nobody, &r, &status, &code, &why));
    CHECK_INT(status, 401);
    CHECK_STR(code, "invalid_api_key");
    bt_config_unref(c);
}

TEST(budget_admit)
{
    struct bt_config *c = bt_config_new_default();
    REQUIRE(c);
    struct bt_request r = {.model = BT_STR("demo")};
    int status = 0;
    const char *code = NULL, *why = NULL;
    struct bt_key_live live;
    memset(&live, 0, sizeof(live));
    struct bt_key_rec k;
    bt_key_rec_init(&k);
    snprintf(k.id, sizeof(k.id), "key_0123456789abcdef");
    k.live = &live;
    k.budget_micro_usd = 5000000; /* 5 USD */
    k.budget_period = BT_PERIOD_WEEK;
    struct bt_caller caller = {.key = &k};
    CHECK(bt_gate_admit(c, &caller, &r, &status, &code, &why));
    CHECK_STR(caller.budget_warning, "");
    /* 3.99 USD spent: no warning; 4 USD (80%): the warning */
    atomic_store(&live.spent_pusd, 3990000000000);
    CHECK(bt_gate_admit(c, &caller, &r, &status, &code, &why));
    CHECK_STR(caller.budget_warning, "");
    bt_key_charge(&live, 10000000000);
    CHECK_INT(bt_key_spent(&k), 4000000000000);
    CHECK(bt_gate_admit(c, &caller, &r, &status, &code, &why));
    CHECK_STR(caller.budget_warning, "80% of 5 USD week budget used");
    CHECK(atomic_load(&live.warned));
    /* one pico-USD below the budget still passes (no reservation); at it, refused */
    atomic_store(&live.spent_pusd, 5000000000000 - 1 - 10000000000);
    CHECK(bt_gate_admit(c, &caller, &r, &status, &code, &why));
    CHECK_STR(caller.budget_warning, "99% of 5 USD week budget used");
    bt_key_charge(&live, 1);
    CHECK(!bt_gate_admit(c, &caller, &r, &status, &code, &why));
    CHECK_INT(status, 429);
    CHECK_STR(code, "insufficient_quota");
    CHECK(strstr(why, "budget of 5 USD for the week") != NULL);
    CHECK(strstr(why, "T00:00:00Z") != NULL);
    /* a new period: below 80% again, the next crossing warns again */
    atomic_store(&live.spent_pusd, 0);
    atomic_store(&live.pending_pusd, 0);
    CHECK(bt_gate_admit(c, &caller, &r, &status, &code, &why));
    CHECK(!atomic_load(&live.warned));
    /* a budget of 0 refuses everything; none set checks nothing */
    k.budget_micro_usd = 0;
    CHECK(!bt_gate_admit(c, &caller, &r, &status, &code, &why));
    k.budget_micro_usd = -1;
    atomic_store(&live.spent_pusd, INT64_MAX / 2);
    CHECK(bt_gate_admit(c, &caller, &r, &status, &code, &why));
    /* the team's budget holds the key too, named in the message and the warning */
    struct bt_key_live team;
    memset(&team, 0, sizeof(team));
    char tname[] = "red";
    k.team = tname;
    k.owner[BT_OWNER_TEAM].live = &team;
    k.owner[BT_OWNER_TEAM].budget_micro_usd = 1000000;
    k.owner[BT_OWNER_TEAM].period = BT_PERIOD_DAY;
    atomic_store(&team.spent_pusd, 900000000000);
    CHECK(bt_gate_admit(c, &caller, &r, &status, &code, &why));
    CHECK_STR(caller.budget_warning, "team: 90% of 1 USD day budget used");
    atomic_store(&team.pending_pusd, 100000000000);
    CHECK(!bt_gate_admit(c, &caller, &r, &status, &code, &why));
    CHECK_STR(code, "insufficient_quota");
    CHECK(strstr(why, "The team 'red' of this API key has used its budget of 1 USD for the day"));
    /* the team's concurrency: the key's slot and the team's, both given back
     * when the team refuses; the message names the team */
    atomic_store(&team.pending_pusd, 0);
    k.owner[BT_OWNER_TEAM].concurrency = 1;
    k.concurrency = 5;
    CHECK(bt_gate_admit(c, &caller, &r, &status, &code, &why));
    CHECK(caller.held && caller.slots.live[0] == &live && caller.slots.live[1] == &team);
    struct bt_caller second = {.key = &k};
    CHECK(!bt_gate_admit(c, &second, &r, &status, &code, &why));
    CHECK_STR(code, "rate_limit_exceeded");
    CHECK(strstr(why, "The team 'red' of this API key has as many requests in flight") != NULL);
    CHECK_INT(atomic_load(&live.inflight), 1); /* the second's key slot was given back */
    CHECK(!second.held);
    bt_key_release_slots(&caller.slots);
    CHECK_INT(atomic_load(&live.inflight), 0);
    CHECK_INT(atomic_load(&team.inflight), 0);
    /* the team's tpm: the key's tokens given back when the team's refuse */
    k.owner[BT_OWNER_TEAM].concurrency = -1;
    k.owner[BT_OWNER_TEAM].tpm = 10;
    k.tpm = 100;
    caller.tokens = 8;
    CHECK(bt_gate_admit(c, &caller, &r, &status, &code, &why));
    CHECK(caller.tpm_lives[0] == &live && caller.tpm_lives[1] == &team);
    second.tokens = 8;
    CHECK(!bt_gate_admit(c, &second, &r, &status, &code, &why));
    CHECK(strstr(why, "team 'red' of this API key is over its tokens per minute") != NULL);
    CHECK_INT(atomic_load(&live.tokens), 8);
    CHECK_INT(atomic_load(&team.tokens), 8);
    k.team = NULL; /* not the record's to free */
    bt_config_unref(c);
}

/* A table of two virtual keys: `ok` (models: chat) and `old` (expired). */
static struct bt_keytab *two_keys(char ok[BT_KEY_LEN + 1], char old[BT_KEY_LEN + 1])
{
    struct bt_key_list l = {calloc(2, sizeof(struct bt_key_rec)), 2};
    if (!l.items) return NULL;
    bt_key_rec_init(&l.items[0]);
    bt_key_rec_init(&l.items[1]);
    struct bt_keytab *t = NULL;
    if (bt_key_generate(ok, &l.items[0]) || bt_key_generate(old, &l.items[1])) goto out;
    l.items[0].models = calloc(1, sizeof(char *));
    if (!l.items[0].models || !(l.items[0].models[0] = strdup("chat"))) goto out;
    l.items[0].nmodels = 1;
    l.items[1].expires_at = (int64_t)time(NULL) - 1;
    if (bt_keytab_build(&l, &t)) t = NULL;
out:
    bt_key_list_free(&l);
    return t;
}

static bool identify_k(const struct bt_config *cfg, const struct bt_keytab *t, const char *bearer,
                       struct bt_caller *caller, const char **why)
{
    char v[128];
    snprintf(v, sizeof(v), "Bearer %s", bearer);
    struct bt_http_header h = {BT_STR("Authorization"), bt_str_c(v)};
    struct bt_http_req req = {.headers = &h, .nheaders = 1};
    return bt_gate_identify(cfg, t, &req, caller, why);
}

TEST(virtual_keys)
{
    char ok[BT_KEY_LEN + 1], old[BT_KEY_LEN + 1];
    struct bt_keytab *t = two_keys(ok, old);
    REQUIRE(t);
    struct bt_config *c = cfg_with_key("sk-master-123456");
    REQUIRE(c);
    struct bt_caller caller;
    const char *why = NULL, *code = NULL;
    int status = 0;
    CHECK(identify_k(c, t, ok, &caller, &why));
    CHECK(!caller.master && caller.key);
    struct bt_request r = {.model = BT_STR("chat")};
    CHECK(bt_gate_admit(c, &caller, &r, &status, &code, &why));
    r.model = BT_STR("other");
    CHECK(!bt_gate_admit(c, &caller, &r, &status, &code, &why));
    CHECK_INT(status, 403);
    CHECK_STR(code, "model_not_allowed");
    CHECK(!identify_k(c, t, old, &caller, &why));
    CHECK(why && strstr(why, "expired"));
    char wrong[BT_KEY_LEN + 1];
    memcpy(wrong, ok, sizeof(wrong));
    wrong[BT_KEY_LEN - 1] = wrong[BT_KEY_LEN - 1] == 'A' ? 'B' : 'A';
    CHECK(!identify_k(c, t, wrong, &caller, &why));
    CHECK(!identify_k(c, NULL, ok, &caller, &why)); /* no table: unknown */
    CHECK(identify_k(c, t, "sk-master-123456", &caller, &why));
    CHECK(caller.master && !caller.key);
    bt_config_unref(c);

    /* Without a master key: no key or another key passes as before, but a
     * virtual key is still judged. */
    c = bt_config_new_default();
    REQUIRE(c);
    CHECK(identify_k(c, t, "anything", &caller, &why) && caller.master);
    CHECK(identify_k(c, t, ok, &caller, &why) && caller.key && !caller.master);
    CHECK(!identify_k(c, t, old, &caller, &why));
    CHECK(!identify_k(c, t, wrong, &caller, &why));
    bt_config_unref(c);
    bt_keytab_unref(t);
}

int main(void)
{
    RUN(identify_master_key);
    RUN(no_key_configured_admits_everyone);
    RUN(admit_after_decode);
    RUN(budget_admit);
    RUN(virtual_keys);
    return HARNESS_DONE();
}
