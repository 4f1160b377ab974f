/* The Anthropic front end's encoders of canonical events (canon/event.h), for
 * a Messages client served by a provider of another API:
 *
 * - a streaming state machine that writes Anthropic's named SSE events in
 *   Anthropic's order: message_start (and a ping), then per content block
 *   content_block_start, content_block_delta (text_delta, thinking_delta,
 *   signature_delta, input_json_delta), content_block_stop, one block open at
 *   a time; then message_delta (stop_reason, usage) and message_stop. An error
 *   is `event: error` and the stream ends without message_stop. Parallel tool
 *   calls whose argument fragments interleave (OpenAI streams them per index)
 *   are serialised: the first call streams live, later ones are held and
 *   written whole when the open call's block closes;
 * - an aggregator that turns a whole event sequence into one Message object.
 *
 * Event strings are JSON string bodies, still escaped, and go back between
 * quotes as they are. docs/providers.md lists the mapping. */
#ifndef BT_API_ANTHROPIC_ENCODE_H
#define BT_API_ANTHROPIC_ENCODE_H

#include <stdbool.h>
#include <stdint.h>

#include "canon/event.h"
#include "core/buf.h"
#include "core/outcome.h"

#define BT_ANTHROPIC_ENC_MAX_TOOLS 128        /* tool calls per reply */
#define BT_ANTHROPIC_ENC_QUEUE (64u << 10)    /* bytes of held tool calls */
#define BT_ANTHROPIC_ENC_ID_MAX 256           /* escaped message id */
#define BT_ANTHROPIC_ENC_MODEL_MAX 512        /* escaped model name */

/* Anthropic's error type for an HTTP status and outcome class ("api_error",
 * "rate_limit_error", ...). Static string. */
const char *bt_anthropic_error_type(int status, enum bt_outcome cls);
/* The HTTP status a whole reply that failed with outcome `o` is answered with. */
int bt_anthropic_outcome_status(enum bt_outcome o);

/* What the client side decides rather than the provider. */
struct bt_anthropic_enc_opts {
    struct bt_str id;    /* message id when START gives none, unescaped; borrowed */
    struct bt_str model; /* model named when START gives none, unescaped; borrowed */
};

enum bt_anthropic_block {
    BT_ANB_NONE = 0,
    BT_ANB_TEXT,
    BT_ANB_THINKING,
    BT_ANB_TOOL,
};

enum bt_anthropic_stream_state {
    BT_ANS_OPEN = 0, /* events are encoded */
    BT_ANS_DONE,     /* message_stop written: later events are ignored */
    BT_ANS_FAILED,   /* an error event written: later events are ignored */
};

struct bt_anthropic_stream {
    struct bt_anthropic_enc_opts opts;
    enum bt_anthropic_stream_state state;
    bool started;                 /* message_start went out */
    char id[BT_ANTHROPIC_ENC_ID_MAX + 8]; /* escaped "msg_..." */
    size_t id_len;
    char model[BT_ANTHROPIC_ENC_MODEL_MAX]; /* escaped */
    size_t model_len;
    uint32_t nblocks;             /* content blocks started (the next one's index) */
    enum bt_anthropic_block open; /* the block open now */
    uint32_t open_tool;           /* BT_ANB_TOOL: its slot */
    enum bt_finish finish;        /* the first FINISH of choice 0 */
    struct bt_usage usage;        /* every USAGE folded */
    uint32_t ntools;
    struct {
        uint32_t src;             /* the event tool_index */
        uint8_t state;            /* 0 held, 1 open, 2 closed */
    } tools[BT_ANTHROPIC_ENC_MAX_TOOLS];
    size_t qlen;                  /* bytes used in `queue` */
    /* Held calls: records {kind, slot, len, bytes} (kind: id, name, args) in
     * arrival order. Last member: an undo copies everything before it. */
    char queue[BT_ANTHROPIC_ENC_QUEUE];
};

/* Prepares an encoder (nothing allocated; nothing to free). */
void bt_anthropic_stream_init(struct bt_anthropic_stream *e, const struct bt_anthropic_enc_opts *o);
/* Encodes one event, appending whole SSE events to `out`. BT_OK (possibly
 * nothing written); BT_ETOOBIG / BT_ENOMEM: `out` is full and neither it nor
 * the encoder changed; BT_EPROTO: the events broke the stream's rules
 * (arguments of a call never started or already closed, too many calls, held
 * calls over BT_ANTHROPIC_ENC_QUEUE bytes): an error event was written and the
 * stream is over. ERROR writes `event: error` (BT_OK, FAILED); DONE closes the
 * open block, writes held calls, message_delta and message_stop (DONE). Only
 * choice 0 is encoded (Anthropic has one). */
enum bt_err bt_anthropic_stream_event(struct bt_anthropic_stream *e, const struct bt_event *ev,
                                      struct bt_buf *out);

static inline bool bt_anthropic_stream_ended(const struct bt_anthropic_stream *e)
{
    return e->state != BT_ANS_OPEN;
}

/* ---- one Message ---- */

struct bt_anthropic_agg_block {
    enum bt_anthropic_block kind;
    bool redacted;               /* THINKING: redacted_thinking (`text` is its data) */
    uint32_t src;                /* TOOL: the event tool_index */
    struct bt_buf text;          /* escaped bodies: text, thinking, tool arguments */
    struct bt_buf sig;           /* THINKING: signature */
    struct bt_buf id, name;      /* TOOL */
};

struct bt_anthropic_agg {
    struct bt_anthropic_enc_opts opts;
    size_t max, used;
    enum bt_err err;             /* sticky: BT_ETOOBIG, BT_ENOMEM, BT_EPROTO */
    struct bt_buf id, model;     /* escaped, from START */
    struct bt_usage usage;
    enum bt_finish finish;
    bool failed;
    enum bt_outcome outcome;
    struct bt_buf err_message;   /* escaped */
    struct bt_anthropic_agg_block *blocks; /* malloc'd */
    uint32_t nblocks, cap;
};

void bt_anthropic_agg_init(struct bt_anthropic_agg *a, const struct bt_anthropic_enc_opts *o,
                           size_t max);
enum bt_err bt_anthropic_agg_event(struct bt_anthropic_agg *a, const struct bt_event *ev);
/* bt_anthropic_agg_event as a bt_event_cb (`ud` is the aggregator). */
void bt_anthropic_agg_cb(void *ud, const struct bt_event *ev);
/* Appends the Message (*status 200) or, after an ERROR event, Anthropic's error
 * object (*status from the outcome). Returns the sticky error instead (nothing
 * written), BT_EPROTO when a tool call's arguments are not a JSON object, or
 * BT_ETOOBIG / BT_ENOMEM from `out`. */
enum bt_err bt_anthropic_agg_write(const struct bt_anthropic_agg *a, struct bt_buf *out,
                                   int *status);
void bt_anthropic_agg_free(struct bt_anthropic_agg *a);

#endif
