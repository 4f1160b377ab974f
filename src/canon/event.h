/* Canonical response events: what provider adapters decode replies and streams
 * into, and what front ends encode for the client when the client's API and the
 * provider's differ. On the fast path (same API both sides) the bytes are
 * forwarded and these events only feed accounting (usage, finish reason, errors
 * inside a 200 stream). */
#ifndef BT_CANON_EVENT_H
#define BT_CANON_EVENT_H

#include <stdbool.h>
#include <stdint.h>

#include "core/str.h"

enum bt_ev_type {
    BT_EV_START = 1,      /* a message begins (id, model, role) */
    BT_EV_TEXT,           /* text delta */
    BT_EV_REASONING,      /* reasoning delta (reasoning_content / reasoning / thinking) */
    BT_EV_TOOL_START,     /* a tool call begins: tool_index, id, name */
    BT_EV_TOOL_ARGS,      /* a fragment of a tool call's JSON arguments */
    BT_EV_FINISH,         /* a choice finished: finish */
    BT_EV_USAGE,          /* token usage */
    BT_EV_ERROR,          /* an error reported inside the stream */
    BT_EV_DONE,           /* end of stream marker ([DONE] / message_stop) */
};

enum bt_finish {
    BT_FINISH_NONE = 0,
    BT_FINISH_STOP,
    BT_FINISH_LENGTH,
    BT_FINISH_TOOL_CALLS,
    BT_FINISH_CONTENT_FILTER,
    BT_FINISH_OTHER,
};

struct bt_usage {
    bool present;
    int64_t prompt_tokens;
    int64_t completion_tokens;
    int64_t total_tokens;
    int64_t cached_tokens;    /* prompt tokens served from cache, when reported */
    int64_t reasoning_tokens; /* completion tokens spent reasoning, when reported */
    bool estimated;           /* counted by baton (a stream cut short before the
                                 provider reported usage), not the provider's figure */
};

struct bt_event {
    enum bt_ev_type type;
    uint32_t choice;          /* choice index */
    uint32_t tool_index;      /* TOOL_START / TOOL_ARGS */
    struct bt_str id;         /* START: message id; TOOL_START: call id */
    struct bt_str name;       /* START: model; TOOL_START: function name */
    struct bt_str text;       /* TEXT / REASONING / TOOL_ARGS: raw JSON string body (escaped) */
    enum bt_finish finish;    /* FINISH */
    struct bt_usage usage;    /* USAGE */
    struct bt_str err_type;   /* ERROR */
    struct bt_str err_message;/* ERROR: raw JSON string body (escaped) */
    struct bt_str err_code;   /* ERROR: raw JSON string body (escaped), may be empty */
};

/* Receives decoded events; slices are valid during the call only. */
typedef void (*bt_event_cb)(void *ud, const struct bt_event *ev);

const char *bt_finish_name(enum bt_finish f);
enum bt_finish bt_finish_parse(struct bt_str s);

#endif
