/* How an attempt at a provider ended, in words that belong to no API: the class an
 * adapter decides from the provider's reply (its status, its error body, a broken
 * transfer), that exec's retry and fallback decisions read, and that a front end
 * turns into its own API's error. */
#ifndef BT_CORE_OUTCOME_H
#define BT_CORE_OUTCOME_H

#include <stdbool.h>

#include "core/str.h"

enum bt_outcome {
    BT_OUTCOME_OK = 0,
    BT_OUTCOME_RATE_LIMIT,     /* the provider said slow down (429) */
    BT_OUTCOME_SERVER_ERROR,   /* the provider failed (5xx, an invalid or cut reply) */
    BT_OUTCOME_TIMEOUT,        /* no answer in time (a deadline, 408, 504) */
    BT_OUTCOME_CONNECTION,     /* could not reach it, or the connection broke */
    BT_OUTCOME_CONTEXT_WINDOW, /* the prompt is too long for this model */
    BT_OUTCOME_CONTENT_FILTER, /* the provider's filter refused the request */
    BT_OUTCOME_AUTH,           /* the provider refused baton's own credential (401/403) */
    BT_OUTCOME_BAD_REQUEST,    /* the provider refused the request itself (other 4xx) */
};
#define BT_OUTCOME_COUNT (BT_OUTCOME_BAD_REQUEST + 1)

/* The class's name as config and logs write it ("rate_limit", "server_error", ...);
 * "unknown" out of range. */
const char *bt_outcome_name(enum bt_outcome o);
/* The inverse of bt_outcome_name; false for any other text. */
bool bt_outcome_parse(struct bt_str s, enum bt_outcome *out);
/* The class an HTTP status of a provider's reply gives on its own (an adapter may
 * refine it from the body, e.g. a 400 that says the context is too long): 2xx ok,
 * 429 rate_limit, 408/504 timeout, 401/403 auth, other 4xx bad_request, 5xx and
 * anything else (3xx: redirects are not followed) server_error. */
enum bt_outcome bt_outcome_from_status(int status);

#endif
