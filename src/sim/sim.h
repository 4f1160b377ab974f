/* The simulated provider: an in-process endpoint that speaks a provider's wire
 * format (OpenAI's, Anthropic's or Gemini's) and answers chat completions (text; tool calls when
 * tools are given; JSON fitting a `json_schema` response format; streaming with
 * usage) and embeddings (deterministic vectors, float or base64),
 * deterministically for a given seed and request, with knobs for time to first
 * token, tokens per second and reply length, and injectable faults.
 *
 * It produces exactly the bytes the provider's server would send, through the
 * same callbacks as the upstream client, so the gateway exercises one code path
 * for real and simulated providers. `baton sim --listen ADDR` serves the same
 * simulator over HTTP (sim/server.h).
 *
 * The files: run.c runs a call (faults, steps, timer, this header's API and the
 * renderer table); model.c is what the simulated model says and when, in no
 * wire format; schema.c generates values that fit a JSON Schema; rng.c is the
 * deterministic randomness; one renderer per wire format (openai.c,
 * anthropic.c, gemini.c) turns
 * requests into replies in that format. See docs/internals/sim.md. */
#ifndef BT_SIM_SIM_H
#define BT_SIM_SIM_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "canon/request.h" /* enum bt_api */
#include "config/config.h"
#include "core/buf.h"
#include "core/str.h"
#include "upstream/upstream.h"

enum bt_sim_fault {
    BT_SIM_FAULT_NONE = 0,
    BT_SIM_FAULT_429,          /* 429 with Retry-After (and retry-after-ms) */
    BT_SIM_FAULT_500,
    BT_SIM_FAULT_503,
    BT_SIM_FAULT_NO_ANSWER,    /* never answers (until cancelled) */
    BT_SIM_FAULT_RESET_BEFORE, /* connection reset before any response byte */
    BT_SIM_FAULT_RESET_MID,    /* reset after part of the body */
    BT_SIM_FAULT_STALL_MID,    /* part of the body, then silence forever */
    BT_SIM_FAULT_SLOW_BYTES,   /* the reply one byte at a time (10 ms apart) */
    BT_SIM_FAULT_INVALID_JSON, /* 200 with a body that is not valid JSON (or a broken SSE data line) */
    BT_SIM_FAULT_ERROR_EVENT,  /* stream: a few chunks, then an error event inside the 200 stream */
};

/* Parses a fault name as used in `x-sim-fault` ("429", "500", "503", "no_answer",
 * "reset_before", "reset_mid", "stall_mid", "slow_bytes", "invalid_json",
 * "error_event"); -1 when unknown. */
int bt_sim_fault_parse(struct bt_str name);

struct bt_sim_request {
    struct bt_str method;   /* "POST" / "GET" */
    struct bt_str path;     /* relative to the base path: "/chat/completions", "/embeddings", "/models" */
    struct bt_str body;     /* borrowed until on_done or cancel */
    int fault;              /* forced fault (enum bt_sim_fault), or -1 to draw from cfg rates */
};

struct bt_sim_call;

/* Starts a simulated call on `loop` that speaks wire format `wire`. cfg is
 * borrowed for the call's duration. Reports through `cb` like
 * bt_upstream_request (never synchronously: the first callback comes from the
 * loop). Bad requests get the 400 the provider's server would send. Returns NULL
 * on ENOMEM, or when no renderer speaks `wire` (bt_sim_renderer_find); nothing
 * is called back then. */
struct bt_sim_call *bt_sim_start(uv_loop_t *loop, enum bt_api wire, const struct bt_sim_cfg *cfg,
                                 const struct bt_sim_request *req,
                                 const struct bt_up_callbacks *cb, void *ud);
/* Stops the call; no callback runs afterwards. Safe inside a callback. */
void bt_sim_cancel(struct bt_sim_call *call);

/* Default knobs (seed 1, 24 tokens, 16 dims, no faults). */
void bt_sim_cfg_default(struct bt_sim_cfg *cfg);

/* ==== Renderers: the contract between the runner and one wire format ====
 *
 * A renderer turns a request into the reply a provider's server would send, in
 * its wire format, as a struct bt_sim_reply: a status, body bytes, and the
 * *pieces* of the body with the time each one is due (ms after the start of the
 * call): the whole JSON body as one piece, or one piece per stream event. The
 * runner (run.c) never looks inside the bytes: it sends the pieces when they are
 * due, and applies the faults by cutting, breaking or replacing pieces, asking
 * the renderer for the bytes only the wire knows (error bodies, the error event
 * inside a stream).
 *
 * Adding a wire format is one file (src/sim/WIRE.c defining a
 * `const struct bt_sim_renderer`) and one entry in the table in run.c. A
 * renderer owns its endpoints, request validation and every byte of its
 * replies; it leaves content and timing to the model (model.h): after parsing a
 * chat request into a struct bt_sim_chat it calls bt_sim_chat_render, which
 * generates the choices and calls back render_chat or render_stream_step for
 * each event in order, with its due time. Helpers it may use: rng.h (seeded
 * randomness and ids), schema.h, model.h (embedding vectors). All callbacks run
 * inside bt_sim_start, so a renderer may borrow the request until it returns.
 *
 * The runner adds the headers: content-type (application/json, or
 * text/event-stream; charset=utf-8 when `sse`), cache-control: no-cache on
 * streams, the renderer's request id header, retry-after and retry-after-ms on a
 * 429, and x-sim-fault when a fault applies. */

/* A cap on one rendered reply (and on a renderer's scratch buffers). */
#define BT_SIM_BODY_MAX ((size_t)64 << 20)

struct bt_sim_piece {
    size_t off, len; /* into reply.body */
    double due;      /* ms after the start of the call */
};

struct bt_sim_reply {
    int status;                  /* HTTP status; 200 at init */
    bool sse;                    /* a stream: one piece per event */
    struct bt_buf body;          /* capped at BT_SIM_BODY_MAX */
    struct bt_sim_piece *pieces; /* malloc'd, in order of `due` */
    size_t npieces, cap;
    double head_due;             /* when the head is sent */
    enum bt_err err;             /* first rendering error, sticky (BT_ETOOBIG, BT_ENOMEM) */
};

/* An empty 200 reply (allocates nothing); bt_sim_reply_free releases it. */
void bt_sim_reply_init(struct bt_sim_reply *r);
void bt_sim_reply_free(struct bt_sim_reply *r);
/* Makes body bytes [off, off+len) a piece due at `due` (no-op after an error). */
void bt_sim_reply_piece(struct bt_sim_reply *r, size_t off, size_t len, double due);
/* Appends `bytes` to the body as one piece of their own. */
void bt_sim_reply_emit(struct bt_sim_reply *r, struct bt_str bytes, double due);
/* Appends the SSE event `data: DATA\n\n` as one piece. */
void bt_sim_reply_data(struct bt_sim_reply *r, struct bt_str data, double due);
/* Forgets what was rendered, to render an error reply with `status` instead:
 * clears a sticky error too, unless it is BT_ENOMEM (then returns false and the
 * reply stays failed). The new reply is not a stream and its head is due at 0. */
bool bt_sim_reply_reset(struct bt_sim_reply *r, int status);

/* The errors a renderer writes in its own shape (status, message, type, code are
 * the wire's to choose). */
enum bt_sim_error {
    BT_SIM_ERR_RATE_LIMIT = 1, /* the 429 fault */
    BT_SIM_ERR_SERVER,         /* the 500 fault */
    BT_SIM_ERR_OVERLOADED,     /* the 503 fault */
    BT_SIM_ERR_SIMULATED,      /* the error_event fault on a reply that is not a stream (a 500) */
    BT_SIM_ERR_RENDER,         /* the reply did not fit a cap (a 500) */
    BT_SIM_ERR_UNKNOWN_URL,    /* `baton sim`: a path outside the API's base (a 404) */
    BT_SIM_ERR_BAD_FAULT,      /* `baton sim`: an unknown x-sim-fault value (a 400) */
};
#define BT_SIM_NERRORS (BT_SIM_ERR_BAD_FAULT + 1)

/* The events of a streamed chat reply, in the order bt_sim_chat_render asks for
 * them: BEGIN; OPEN for each choice; DELTA for each token, by token position
 * then choice; FINISH for each choice; USAGE; END. A step may render any number
 * of events (none, when the wire has nothing to say then). */
enum bt_sim_step_kind {
    BT_SIM_STEP_BEGIN = 1, /* before any choice (a message_start, say) */
    BT_SIM_STEP_OPEN,      /* choice `choice` begins: role, or the tool call's id and name */
    BT_SIM_STEP_DELTA,     /* token `token` of choice `choice` */
    BT_SIM_STEP_FINISH,    /* choice `choice` ends with its finish reason */
    BT_SIM_STEP_USAGE,     /* after every choice: the usage */
    BT_SIM_STEP_END,       /* the end of the stream */
};

struct bt_sim_step {
    enum bt_sim_step_kind kind;
    uint32_t choice; /* OPEN, DELTA, FINISH */
    uint32_t token;  /* DELTA */
    double due;      /* when its events are sent */
};

struct bt_sim_chat; /* model.h */

/* One wire format. Every function renders into `out`, whose sticky `err` it
 * sets on failure (a cap reached, no memory) rather than returning one. */
struct bt_sim_renderer {
    enum bt_api wire;
    const char *request_id_header; /* e.g. "x-request-id" */
    /* The reply to `req`: routes method and path (404 / 405 for the rest),
     * validates the body as the wire's servers do (a 400 in the wire's shape)
     * and renders the reply, a chat through bt_sim_chat_render. `h` hashes the
     * cfg seed with the request's path and body: every generated byte derives
     * from it. */
    void (*render_reply)(const struct bt_sim_cfg *cfg, const struct bt_sim_request *req,
                         uint64_t h, struct bt_sim_reply *out);
    /* A whole chat reply (not a stream): appends its body to out->body; the
     * model makes it one piece, due when the last token is generated. */
    void (*render_chat)(const struct bt_sim_chat *ch, struct bt_sim_reply *out);
    /* One step of a streamed chat reply: appends its events as pieces due at
     * step->due (bt_sim_reply_emit). */
    void (*render_stream_step)(const struct bt_sim_chat *ch, const struct bt_sim_step *step,
                               struct bt_sim_reply *out);
    /* The event that breaks a stream inside its 200 (the error_event fault),
     * appended as one piece due at `due`. */
    void (*render_stream_error)(struct bt_sim_reply *out, double due);
    /* Replaces whatever was rendered by error `e` (bt_sim_reply_reset, then one
     * piece due at 0). */
    void (*render_error)(struct bt_sim_reply *out, enum bt_sim_error e);
};

/* The renderer that speaks `wire`, or NULL when there is none. */
const struct bt_sim_renderer *bt_sim_renderer_find(enum bt_api wire);

/* The renderers (one per file). */
extern const struct bt_sim_renderer bt_sim_openai_renderer;
extern const struct bt_sim_renderer bt_sim_anthropic_renderer; /* /v1/messages */
extern const struct bt_sim_renderer bt_sim_gemini_renderer;    /* /v1beta/models/M:METHOD */

#endif
