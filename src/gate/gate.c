#include "gate/gate.h"

#include <string.h>

#include <openssl/crypto.h>

bool bt_gate_check_master(const struct bt_config *cfg, const struct bt_http_req *req,
                          const char **why)
{
    const char *key = cfg->auth.master_key;
    if (!key || !*key) return true;
    struct bt_str given = BT_STR_NULL;
    struct bt_str auth = bt_http_header_get(req, "authorization");
    if (auth.p) {
        auth = bt_str_trim(auth);
        if (auth.len > 7 && bt_str_caseeq(( struct bt_str){auth.p, 7}, BT_STR("Bearer ")))
            given = bt_str_trim((struct bt_str){auth.p + 7, auth.len - 7});
    }
    if (!given.p) {
        struct bt_str x = bt_http_header_get(req, "x-api-key");
        if (x.p) given = bt_str_trim(x);
    }
    if (!given.p || given.len == 0) {
        *why = "You didn't provide an API key. Provide it as 'Authorization: Bearer KEY'.";
        return false;
    }
    size_t klen = strlen(key);
    if (given.len != klen || CRYPTO_memcmp(given.p, key, klen) != 0) {
        *why = "Incorrect API key provided.";
        return false;
    }
    return true;
}

bool bt_gate_identify(const struct bt_config *cfg, const struct bt_http_req *req,
                      struct bt_caller *caller, const char **why)
{
    caller->master = bt_gate_check_master(cfg, req, why);
    return caller->master;
}

bool bt_gate_admit(const struct bt_config *cfg, const struct bt_caller *caller,
                   const struct bt_request *r, int *status, const char **code, const char **why)
{
    (void)cfg;
    (void)r;
    if (caller->master) return true;
    *status = 401;
    *code = "invalid_api_key";
    *why = "The caller was not identified.";
    return false;
}
