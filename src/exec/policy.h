/* exec's decisions, as pure functions of neutral facts (an attempt's outcome
 * class, the provider's status): which failures move on to the next deployment,
 * and what status the client gets when none is left. Unit-tested on their own. */
#ifndef BT_EXEC_POLICY_H
#define BT_EXEC_POLICY_H

#include <stdbool.h>

#include "core/outcome.h"

/* True for an attempt worth following with the next deployment: rate limits,
 * server errors, timeouts, connection failures, and a provider refusing baton's
 * own credential (not the client's fault). Never the client's own mistakes
 * (bad_request, context_window, content_filter), nor ok. */
bool bt_exec_retryable(enum bt_outcome c);

/* The status a client gets for a provider's non-2xx `status` of class `c`: a 4xx
 * about the request passes through (429 too); a refused credential is 502 (the
 * provider refused baton, not the caller); a timeout 504; 503 stays 503; other
 * 5xx and 3xx (redirects are not followed) are 502. */
int bt_exec_client_status(int status, enum bt_outcome c);

#endif
