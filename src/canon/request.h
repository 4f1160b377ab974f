/* The canonical request: what every front end (OpenAI chat/embeddings today,
 * Anthropic messages next) decodes a client's request into, and what routing,
 * governance and provider adapters read. It is a view over the client's JSON
 * bytes (token indices into a bt_json_doc), not a deep copy: the fast path
 * forwards those bytes with only `model` spliced. */
#ifndef BT_CANON_REQUEST_H
#define BT_CANON_REQUEST_H

#include <stdbool.h>
#include <stdint.h>

#include "core/str.h"
#include "json/json.h"

/* Longest model id or user id a client may send (bytes). */
#define BT_NAME_MAX 256

struct bt_http_header;
struct bt_frontend;
struct bt_chat;

enum bt_api {
    BT_API_OPENAI = 1,  /* OpenAI REST shapes */
    BT_API_ANTHROPIC,   /* Anthropic messages */
    BT_API_GEMINI,      /* Google Gemini generateContent (provider side only) */
};

enum bt_op {
    BT_OP_CHAT = 1,     /* chat completions / messages */
    BT_OP_EMBED,        /* embeddings */
};

struct bt_request {
    enum bt_api api;          /* the client's API: errors and replies speak it */
    const struct bt_frontend *fe; /* the front end that decoded it (canon/frontend.h) */
    enum bt_op op;
    struct bt_json_doc doc;   /* the client's body, tokenized (view over req body) */
    struct bt_str model;      /* requested model (unescaped; checked by bt_api_name_ok) */
    struct bt_str user;       /* end user id (`user`), empty when absent; checked too */
    bool stream;              /* `stream: true` */
    bool include_usage;       /* client asked for stream_options.include_usage */
    int tok_model;            /* token of the `model` value */
    int tok_messages;         /* chat: messages array */
    int tok_tools;            /* chat: tools array or -1 */
    int tok_stream_options;   /* object or -1 */
    int tok_input;            /* embeddings: input */
    int64_t max_tokens;       /* -1 when absent */
    uint32_t body_bytes;      /* size of the client's body */
    uint64_t timeout_ms;      /* client's x-baton-timeout: caps every deadline; 0 = none */
    /* The canonical chat request (canon/chat.h) when the front end built one,
     * in the request's arena: an adapter whose wire is not `api` encodes from
     * it. NULL on the fast path's front end (OpenAI), which needs none. */
    const struct bt_chat *chat;
    bool include_cost;        /* x-baton-include-cost: true: a stream's usage chunk
                                 carries the request's cost */
    bool est_done;            /* est_tokens is counted (account/cost.h) */
    int64_t est_tokens;       /* the estimate tpm limits take: prompt + max_tokens */
    /* The client's headers, borrowed from the HTTP request (set by the front end):
     * a provider's forward_headers are picked from them. */
    const struct bt_http_header *headers;
    size_t nheaders;
};

#endif
