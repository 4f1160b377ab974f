/* Canonical response events: what provider adapters decode replies and streams
 * into, and what front ends encode for the client when the client's API and the
 * provider's differ. On the fast path (same API both sides) the bytes are
 * forwarded and these events only feed accounting (usage, finish reason, errors
 * inside a 200 stream). */
#ifndef BT_CANON_EVENT_H
#define BT_CANON_EVENT_H

#include <stdbool.h>
#include <stdint.h>

#include "core/outcome.h"
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
    BT_EV_BLOCK_STOP,     /* content block `block` of a choice ended (Anthropic
                             content_block_stop); APIs without blocks send none */
    BT_EV_REFUSAL,        /* refusal text delta in `text` (OpenAI delta.refusal) */
};
/* The last event type: for range checks. */
#define BT_EV_LAST BT_EV_REFUSAL

enum bt_finish {
    BT_FINISH_NONE = 0,
    BT_FINISH_STOP,
    BT_FINISH_LENGTH,
    BT_FINISH_TOOL_CALLS,
    BT_FINISH_CONTENT_FILTER,
    BT_FINISH_OTHER,
    BT_FINISH_STOP_SEQUENCE,  /* a stop sequence matched (Anthropic stop_sequence;
                                 OpenAI says "stop") */
    BT_FINISH_PAUSE_TURN,     /* the provider paused a long turn; send it back to
                                 continue (Anthropic pause_turn) */
};
/* The last finish reason: for range checks. */
#define BT_FINISH_LAST BT_FINISH_PAUSE_TURN

struct bt_usage {
    bool present;
    int64_t prompt_tokens;
    int64_t completion_tokens;
    int64_t total_tokens;
    union {
        int64_t cached_tokens;     /* prompt tokens served from cache, when reported */
        int64_t cache_read_tokens; /* the same count under the name the canonical
                                      model uses beside cache_write_tokens */
    };
    int64_t cache_write_tokens; /* prompt tokens written to the cache (Anthropic
                                   cache_creation_input_tokens), when reported.
                                   Both cache counts are part of prompt_tokens */
    int64_t reasoning_tokens; /* completion tokens spent reasoning, when reported */
    bool estimated;           /* counted by baton (a stream cut short before the
                                 provider reported usage), not the provider's figure */
    bool delta;               /* false (the default): running totals for the reply so
                                 far, which replace earlier figures; true: increments
                                 to add to them. bt_usage_merge folds either kind */
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
    /* Added for translation between APIs (docs/internals/events.md): */
    uint32_t block;           /* content-block index within the choice, for sources
                                 whose API has blocks (Anthropic content blocks);
                                 OpenAI decoders leave it 0 */
    enum bt_outcome outcome;  /* ERROR: the neutral class; BT_OUTCOME_OK = unclassified */
    struct bt_str signature;  /* REASONING: a signature fragment (Anthropic
                                 signature_delta), raw, escaped; text may be empty */
    bool redacted;            /* REASONING: `text` is opaque redacted reasoning data
                                 (Anthropic redacted_thinking), not readable text */
};

/* Receives decoded events; slices are valid during the call only. */
typedef void (*bt_event_cb)(void *ud, const struct bt_event *ev);

/* The canonical finish name, which for the first four is OpenAI's
 * ("stop", "length", "tool_calls", "content_filter", then "other",
 * "stop_sequence", "pause_turn"); "" for BT_FINISH_NONE. */
const char *bt_finish_name(enum bt_finish f);
/* The inverse of bt_finish_name, also taking OpenAI's legacy "function_call"
 * (tool calls); any other non-empty name is BT_FINISH_OTHER, "" is NONE. */
enum bt_finish bt_finish_parse(struct bt_str s);

/* Folds usage report `u` into the running total `acc` (start from all zeros):
 * running totals (u->delta false) keep the larger figure of each count, since
 * a later report may leave a count out (as 0) but never lowers one; increments
 * (u->delta true) are added. total_tokens becomes prompt + completion when no
 * report gave a larger one. `acc` stays a running total (acc->delta false). */
void bt_usage_merge(struct bt_usage *acc, const struct bt_usage *u);

#endif
