/* The prompt as routing reads it: what rules and the learned router look at to
 * choose a model by the request's content, in no API's format. Built from the
 * canonical chat request (canon/chat.h) only when the requested model decides
 * by content; a request for a plain group never builds it.
 *
 * Text is decoded: JSON escapes such as \uXXXX are resolved, so a condition
 * sees the characters the user wrote. Memory: slices of the client's body
 * (text without escapes) or copies in the request's arena. */
#ifndef BT_CANON_PROMPT_H
#define BT_CANON_PROMPT_H

#include <stdbool.h>
#include <stdint.h>

#include "canon/chat.h"
#include "core/arena.h"
#include "core/err.h"
#include "core/str.h"

/* One message's text: its text parts (and a tool result's text parts) decoded
 * and joined with "\n"; empty for a message without text. */
struct bt_prompt_msg {
    enum bt_role role;
    struct bt_str text;
};

/* A member of the request's metadata: key and value decoded (a value that is
 * not a string is its JSON text). */
struct bt_prompt_kv {
    struct bt_str key, value;
};

struct bt_prompt {
    struct bt_prompt_msg *msgs; /* a top-level system prompt first, then the messages */
    uint32_t nmsgs;
    int32_t last_user;          /* index of the last user message, -1 when none */
    bool tools;                 /* the request offers tools */
    bool images;                /* some message holds an image */
    bool json_schema;           /* the reply must follow a JSON schema */
    struct bt_prompt_kv *meta;  /* the request's metadata, in order */
    uint32_t nmeta;
    struct bt_str user;         /* the end user (body or x-baton-user): set by the caller */
    struct bt_str tags;         /* x-baton-tags, comma-separated: set by the caller */
    double budget_left;         /* the share of its key's budget left in the period (0..1),
                                   or -1 when the caller has no budget: set by the caller */
};

/* Fills `out` from `c` (user and tags left empty). BT_EPARSE for a broken
 * escape or metadata that is not an object, BT_ENOMEM. */
BT_MUST_USE enum bt_err bt_prompt_from_chat(const struct bt_chat *c, struct bt_arena *arena,
                                            struct bt_prompt *out);

/* The text of the last user message (empty when none); when not empty, a NUL
 * follows it. */
struct bt_str bt_prompt_last_user(const struct bt_prompt *p);

/* The value of metadata member `key`, or a NULL slice. */
struct bt_str bt_prompt_meta(const struct bt_prompt *p, struct bt_str key);

#endif
