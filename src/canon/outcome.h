/* The neutral class of how an attempt ended, whatever the provider's API: what
 * exec's retry, fallback, hedge and breaker decisions read (DESIGN.md, "Seams"),
 * and what an error event carries so that a front end can answer in its own
 * client API (an OpenAI `type`/`code`, an Anthropic `error.type`, a status). */
#ifndef BT_CANON_OUTCOME_H
#define BT_CANON_OUTCOME_H

enum bt_outcome {
    BT_OUTCOME_OK = 0,          /* success; on an error event: not classified */
    BT_OUTCOME_RATE_LIMIT,      /* 429, overloaded, quota: try later or elsewhere */
    BT_OUTCOME_SERVER_ERROR,    /* 5xx or a broken reply from the provider */
    BT_OUTCOME_TIMEOUT,         /* connect, first byte, idle or total deadline passed */
    BT_OUTCOME_CONNECTION,      /* DNS, refused, reset, TLS: nothing usable came back */
    BT_OUTCOME_CONTEXT_WINDOW,  /* the prompt (plus max tokens) does not fit the model */
    BT_OUTCOME_CONTENT_FILTER,  /* refused by the provider's safety system */
    BT_OUTCOME_AUTH,            /* the provider refused baton's credentials (401/403) */
    BT_OUTCOME_BAD_REQUEST,     /* the provider refused the request itself (other 4xx) */
};

/* Stable lower-case name ("ok", "rate_limit", "server_error", "timeout",
 * "connection", "context_window", "content_filter", "auth", "bad_request") for
 * logs, metrics and config; "" for a value outside the enum. Static storage. */
const char *bt_outcome_name(enum bt_outcome o);

#endif
