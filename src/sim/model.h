/* The simulated model, in no wire format: what a chat reply says (text, JSON
 * fitting a schema, or a tool call's arguments, cut into tokens), when each
 * token comes (time to first token, tokens per second), and embedding vectors.
 * A renderer (sim.h) parses a request into a struct bt_sim_chat and hands it to
 * bt_sim_chat_render, which calls the renderer back for the bytes. */
#ifndef BT_SIM_MODEL_H
#define BT_SIM_MODEL_H

#include <stdbool.h>
#include <stdint.h>

#include "config/config.h"
#include "core/arena.h"
#include "core/buf.h"
#include "json/json.h"
#include "sim/sim.h"

enum bt_sim_out {
    BT_SIM_OUT_TEXT = 1, /* words */
    BT_SIM_OUT_JSON,     /* JSON content (a response format asked for it) */
    BT_SIM_OUT_TOOL,     /* a call to ch->tool with JSON arguments */
};

enum bt_sim_finish {
    BT_SIM_FINISH_STOP = 1, /* the reply is complete */
    BT_SIM_FINISH_LENGTH,   /* cut by max_tokens */
    BT_SIM_FINISH_TOOL,     /* a tool call is complete */
};

/* One choice (an alternative reply). */
struct bt_sim_choice {
    enum bt_sim_out kind;
    struct bt_buf text;        /* content, or the tool call's arguments */
    size_t *ends;              /* malloc'd: end offset in text of each token */
    uint32_t ntokens, cap;
    enum bt_sim_finish finish;
    uint64_t call_seed;        /* BT_SIM_OUT_TOOL: seeds the call's id (bt_sim_id_chars) */
};

/* A chat reply. The renderer fills the request's part; bt_sim_chat_render the
 * rest. */
struct bt_sim_chat {
    const struct bt_sim_cfg *cfg; /* borrowed */
    const struct bt_json_doc *doc; /* the request, for schemas; borrowed */
    struct bt_arena *arena;       /* scratch for the call */
    uint64_t h;                   /* the request hash (render_reply's `h`) */
    struct bt_str model;          /* as the request named it */
    bool stream;
    uint32_t n;                   /* choices, >= 1 */
    bool call_tool;               /* every choice calls `tool` */
    struct bt_str tool;           /* its name */
    int tool_params;              /* its parameters schema (token of doc), or -1 */
    bool json;                    /* JSON content (when no tool is called) */
    int json_schema;              /* its schema (token of doc), or -1 for any object */
    int64_t max_tokens;           /* tokens per choice, 0 = no cap */
    uint64_t prompt_tokens;
    void *wire;                   /* the renderer's own state for this reply */
    /* Set by bt_sim_chat_render while it calls the renderer: */
    struct bt_sim_choice *choices; /* n of them */
};

/* Generates ch's choices from ch->h and renders them with `rd`: a stream as
 * render_stream_step events (the head and first events after the cfg's
 * ttft_ms, one token every 1000 / tokens_per_sec ms after that), otherwise one
 * render_chat body due when the last token is generated. Sets out->status to
 * 200, or out->err when a cap is reached. The choices are freed on return. */
void bt_sim_chat_render(const struct bt_sim_renderer *rd, struct bt_sim_chat *ch,
                        struct bt_sim_reply *out);

/* Token `k` of choice `c` (a slice of c->text). */
struct bt_str bt_sim_chat_token(const struct bt_sim_choice *c, uint32_t k);
/* Tokens of all choices: the completion tokens of the usage. */
uint64_t bt_sim_chat_completion_tokens(const struct bt_sim_chat *ch);

/* Writes a deterministic unit vector of `dims` floats for `input` into v: seeded
 * by the cfg seed and the input's own bytes, so the same text embeds the same
 * way in any batch and any request. */
void bt_sim_embed_vector(float *v, uint32_t dims, const struct bt_sim_cfg *cfg, struct bt_str input);
/* Writes vector v as the next value of `w`: an array of numbers with 9
 * significant digits (exact for a float32), or with `base64` a string of its
 * little-endian float32 bytes in base64. Errors stick in w->err. */
void bt_sim_embed_write(struct bt_jw *w, const float *v, uint32_t dims, bool base64);

#endif
