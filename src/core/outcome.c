#include "core/outcome.h"

static const char *const names[BT_OUTCOME_COUNT] = {
    [BT_OUTCOME_OK] = "ok",
    [BT_OUTCOME_RATE_LIMIT] = "rate_limit",
    [BT_OUTCOME_SERVER_ERROR] = "server_error",
    [BT_OUTCOME_TIMEOUT] = "timeout",
    [BT_OUTCOME_CONNECTION] = "connection",
    [BT_OUTCOME_CONTEXT_WINDOW] = "context_window",
    [BT_OUTCOME_CONTENT_FILTER] = "content_filter",
    [BT_OUTCOME_AUTH] = "auth",
    [BT_OUTCOME_BAD_REQUEST] = "bad_request",
};

const char *bt_outcome_name(enum bt_outcome o)
{
    return (unsigned)o < BT_OUTCOME_COUNT ? names[o] : "unknown";
}

bool bt_outcome_parse(struct bt_str s, enum bt_outcome *out)
{
    for (int i = 0; i < BT_OUTCOME_COUNT; i++) {
        if (bt_str_eq_c(s, names[i])) {
            *out = (enum bt_outcome)i;
            return true;
        }
    }
    return false;
}

enum bt_outcome bt_outcome_from_status(int status)
{
    if (status >= 200 && status < 300) return BT_OUTCOME_OK;
    if (status == 429) return BT_OUTCOME_RATE_LIMIT;
    if (status == 408 || status == 504) return BT_OUTCOME_TIMEOUT;
    if (status == 401 || status == 403) return BT_OUTCOME_AUTH;
    if (status >= 400 && status < 500) return BT_OUTCOME_BAD_REQUEST;
    return BT_OUTCOME_SERVER_ERROR;
}
