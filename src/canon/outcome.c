#include "canon/outcome.h"

const char *bt_outcome_name(enum bt_outcome o)
{
    switch (o) {
    case BT_OUTCOME_OK: return "ok";
    case BT_OUTCOME_RATE_LIMIT: return "rate_limit";
    case BT_OUTCOME_SERVER_ERROR: return "server_error";
    case BT_OUTCOME_TIMEOUT: return "timeout";
    case BT_OUTCOME_CONNECTION: return "connection";
    case BT_OUTCOME_CONTEXT_WINDOW: return "context_window";
    case BT_OUTCOME_CONTENT_FILTER: return "content_filter";
    case BT_OUTCOME_AUTH: return "auth";
    case BT_OUTCOME_BAD_REQUEST: return "bad_request";
    }
    return "";
}
