#include "exec/policy.h"

bool bt_exec_retryable(enum bt_outcome c)
{
    return c == BT_OUTCOME_RATE_LIMIT || c == BT_OUTCOME_SERVER_ERROR || c == BT_OUTCOME_TIMEOUT ||
           c == BT_OUTCOME_CONNECTION || c == BT_OUTCOME_AUTH;
}

int bt_exec_client_status(int status, enum bt_outcome c)
{
    if (c == BT_OUTCOME_AUTH) return 502;
    if (c == BT_OUTCOME_TIMEOUT) return 504;
    if (status == 503) return 503;
    if (status >= 500 || status < 400) return 502;
    return status;
}
