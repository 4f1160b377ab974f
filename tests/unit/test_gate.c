/* The gate: identifying a caller from the HTTP head (before decode), admitting a
 * decoded request (after). */
#include "harness.h"

#include <stdlib.h>

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
    bool ok = bt_gate_identify(cfg, &req, &caller, why);
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

int main(void)
{
    RUN(identify_master_key);
    RUN(no_key_configured_admits_everyone);
    RUN(admit_after_decode);
    return HARNESS_DONE();
}
