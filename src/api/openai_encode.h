/* The OpenAI front end's encoders of canonical events (canon/event.h), for the
 * translate path (a provider with another API answered an OpenAI client):
 *
 * - a streaming state machine that turns events into `chat.completion.chunk`
 *   server-sent events, with what strict clients require (CLIENTS.md): the
 *   first delta of a choice carries `role`; the first delta of each tool call
 *   carries index, id, type and function.name, later ones only index and an
 *   arguments fragment; every choice gets a finish_reason; the usage chunk only
 *   when the client asked for it; `data: [DONE]` at a clean end, and an
 *   `{"error":{...}}` event and no [DONE] when the stream failed;
 * - an aggregator that turns a whole event sequence into one `chat.completion`.
 *
 * Both take the event strings as JSON string bodies, still escaped (what every
 * decoder gives), and write them back between quotes without unescaping.
 * docs/internals/events.md describes the mapping. */
#ifndef BT_API_OPENAI_ENCODE_H
#define BT_API_OPENAI_ENCODE_H

#include <stdbool.h>
#include <stdint.h>

#include "canon/event.h"
#include "core/outcome.h"
#include "core/buf.h"

#define BT_OPENAI_ENC_MAX_CHOICES 8  /* choices (n) one encoder follows */
#define BT_OPENAI_ENC_MAX_TOOLS 128  /* tool calls per choice */
#define BT_OPENAI_ENC_ID_MAX 256     /* escaped completion id, bytes */
#define BT_OPENAI_ENC_HEAD_MAX 1024  /* a chunk's fixed head: id, object, created, model */

/* What the client side decides rather than the provider. */
struct bt_openai_enc_opts {
    struct bt_str id;    /* completion id when START gives none ("chatcmpl-..."),
                            unescaped; borrowed for the encoder's life */
    struct bt_str model; /* model named when START gives none, unescaped; borrowed */
    int64_t created;     /* unix seconds for `created` */
    bool include_usage;  /* stream: stream_options.include_usage (a usage chunk at the
                            end, `"usage":null` on the others, as OpenAI does) */
};

/* The OpenAI error `type` and `code` (NULL: JSON null) and the HTTP status a
 * front end answers an error of class `o` with. BT_OUTCOME_OK (unclassified)
 * is answered as a provider failure (502). Static strings. */
int bt_openai_outcome_error(enum bt_outcome o, const char **type, const char **code);

/* ---- streaming ---- */

enum bt_openai_stream_state {
    BT_OAS_OPEN = 0, /* events are encoded */
    BT_OAS_DONE,     /* [DONE] written: later events are ignored */
    BT_OAS_FAILED,   /* an error event written (no [DONE]): later events are ignored */
};

struct bt_openai_stream {
    struct bt_openai_enc_opts opts;
    enum bt_openai_stream_state state;
    /* `data: {"id":"..","object":"chat.completion.chunk","created":..,"model":"..",`,
     * built at the first chunk (from START's id and model, else opts) */
    char head[BT_OPENAI_ENC_HEAD_MAX];
    size_t head_len;
    char id[BT_OPENAI_ENC_ID_MAX]; /* the escaped id in the head (for made-up call ids) */
    size_t id_len;
    struct bt_usage usage; /* every USAGE folded (bt_usage_merge) */
    struct {
        bool began;        /* the role chunk went out */
        bool finished;     /* the finish_reason chunk went out */
        uint32_t ntools;   /* tool calls started; their output index is their position */
        uint32_t tool_src[BT_OPENAI_ENC_MAX_TOOLS]; /* each call's event tool_index */
        uint64_t args_sent[BT_OPENAI_ENC_MAX_TOOLS / 64]; /* bit k: call k got argument
                                                              bytes (else `{}` at its finish) */
    } choice[BT_OPENAI_ENC_MAX_CHOICES];
};

/* Prepares an encoder (nothing allocated; nothing to free). */
void bt_openai_stream_init(struct bt_openai_stream *e, const struct bt_openai_enc_opts *opts);

/* Encodes one event, appending whole SSE events (`data: ...\n\n`) to `out`.
 * - BT_OK: done (possibly nothing written: USAGE is held for the end,
 *   BLOCK_STOP and repeated STARTs and FINISHes write nothing).
 * - BT_ETOOBIG / BT_ENOMEM: `out` is full; neither `out` nor the encoder
 *   changed, so the caller may flush and feed the same event again.
 * - BT_EPROTO: the events broke the stream's rules (tool arguments before the
 *   call started, a call without a name, too many choices or calls): an error
 *   event has been written and the stream is over (BT_OAS_FAILED).
 * An ERROR event writes the error event and ends the stream (BT_OK, FAILED);
 * DONE finishes every choice still open (finish_reason "tool_calls" when it
 * called tools, else "stop"; a call that got no argument bytes gets `{}`
 * before any finish), writes the usage chunk when asked for and
 * reported, then `data: [DONE]` (BT_OAS_DONE). A stream that breaks without
 * either must be ended by the caller with an ERROR event. */
enum bt_err bt_openai_stream_event(struct bt_openai_stream *e, const struct bt_event *ev,
                                   struct bt_buf *out);

static inline bool bt_openai_stream_ended(const struct bt_openai_stream *e)
{
    return e->state != BT_OAS_OPEN;
}

/* ---- aggregation into one chat.completion ---- */

struct bt_openai_agg_tool {
    uint32_t src;       /* the event tool_index */
    struct bt_buf id;   /* quoted JSON strings, ready to write */
    struct bt_buf name;
    struct bt_buf args;
};

struct bt_openai_agg_choice {
    bool began;
    enum bt_finish finish;
    struct bt_buf content, reasoning, refusal; /* quoted JSON strings once begun */
    struct bt_openai_agg_tool *tools;          /* malloc'd, grown to at most MAX_TOOLS */
    uint32_t ntools, cap;
};

struct bt_openai_agg {
    struct bt_openai_enc_opts opts;
    size_t max;                   /* cap on the bytes held for the reply */
    size_t used;
    enum bt_err err;              /* first error, sticky: BT_ETOOBIG, BT_ENOMEM, BT_EPROTO */
    struct bt_buf id, model;      /* quoted JSON strings from START, or empty */
    struct bt_usage usage;
    bool done;                    /* DONE seen */
    bool failed;                  /* an ERROR event came: the reply is an error */
    enum bt_outcome outcome;      /* failed: its class */
    struct bt_buf err_type, err_code, err_message; /* failed: quoted, or empty */
    uint32_t nchoices;            /* 1 + the highest choice index seen */
    struct bt_openai_agg_choice choice[BT_OPENAI_ENC_MAX_CHOICES];
};

/* Prepares an aggregator that holds at most `max` bytes of reply text (the
 * response size limit); allocates nothing yet. Free with bt_openai_agg_free. */
void bt_openai_agg_init(struct bt_openai_agg *a, const struct bt_openai_enc_opts *opts, size_t max);
/* Takes one event; the slices are copied. Returns the sticky error (BT_OK while
 * all is well): BT_ETOOBIG past `max`, BT_EPROTO for arguments of a call never
 * started or too many choices or calls, BT_ENOMEM. */
enum bt_err bt_openai_agg_event(struct bt_openai_agg *a, const struct bt_event *ev);
/* bt_openai_agg_event as a bt_event_cb (`ud` is the aggregator). */
void bt_openai_agg_cb(void *ud, const struct bt_event *ev);
/* Appends the reply to `out`: a `chat.completion` object (*status 200), or
 * when an ERROR event came, OpenAI's error object (*status from its outcome,
 * bt_openai_outcome_error). Returns the sticky error instead when there is
 * one (nothing written), or BT_ETOOBIG / BT_ENOMEM from `out`. A sequence
 * without DONE is written as it stands: the caller decides whether a cut reply
 * is an error. */
enum bt_err bt_openai_agg_write(const struct bt_openai_agg *a, struct bt_buf *out, int *status);
/* Frees what the aggregator holds. */
void bt_openai_agg_free(struct bt_openai_agg *a);

#endif
