/* The canonical chat request: what a front end decodes a client's chat request
 * into when it must be translated for a provider that speaks another API
 * (OpenAI chat <-> Anthropic messages <-> Gemini). The fast path (same API both
 * sides) never builds it: it forwards the client's bytes (canon/request.h).
 *
 * Memory: everything lives in the request's arena (arrays) or in the client's
 * body (slices), so a bt_chat is valid while both are; nothing is freed alone.
 *
 * Strings: every `struct bt_str` below holds JSON text, never decoded bytes:
 * - a "string" field is a JSON string's body, still escaped, as in the client's
 *   body (bt_json_str_raw), so an encoder writes it back between quotes without
 *   a copy (an Anthropic or Gemini body is JSON too);
 * - a "raw" field is a whole JSON value (an object, a schema) copied as is.
 * Empty means absent unless a `given` bit or a flag says otherwise.
 *
 * What an API cannot express: optional settings record whether the client gave
 * them (`given`, BT_GIVEN_*), so an encoder can refuse with a 400 naming the
 * parameter (bt_chat_given_name) instead of dropping it silently; members a
 * decoder does not map are kept in `extras`. See docs/internals/events.md. */
#ifndef BT_CANON_CHAT_H
#define BT_CANON_CHAT_H

#include <stdbool.h>
#include <stdint.h>

#include "core/arena.h"
#include "core/err.h"
#include "core/str.h"

enum bt_role {
    BT_ROLE_SYSTEM = 1, /* instructions from the application (OpenAI system) */
    BT_ROLE_DEVELOPER,  /* OpenAI developer: system-like, kept distinct because
                           OpenAI's reasoning models treat the two differently */
    BT_ROLE_USER,
    BT_ROLE_ASSISTANT,
    BT_ROLE_TOOL,       /* results of tool calls (OpenAI tool / function); Anthropic
                           puts tool results in user messages: see TOOL_RESULT */
};

enum bt_part_type {
    BT_PART_TEXT = 1,          /* text */
    BT_PART_IMAGE,             /* image */
    BT_PART_AUDIO,             /* input audio */
    BT_PART_FILE,              /* a document (PDF...) by data or by provider file id */
    BT_PART_TOOL_CALL,         /* assistant: a call of a tool */
    BT_PART_TOOL_RESULT,       /* the result of a tool call */
    BT_PART_THINKING,          /* assistant: reasoning text, with its signature */
    BT_PART_REDACTED_THINKING, /* assistant: opaque reasoning data to send back */
    BT_PART_REFUSAL,           /* assistant: a refusal (OpenAI refusal) */
};

enum bt_image_detail {
    BT_DETAIL_UNSET = 0,
    BT_DETAIL_AUTO,
    BT_DETAIL_LOW,
    BT_DETAIL_HIGH,
};

/* A prompt-cache breakpoint: the prefix up to and including what carries it may
 * be cached (Anthropic cache_control, OpenAI prompt_cache_breakpoint). */
struct bt_cache_mark {
    bool set;          /* a breakpoint is here (all are "ephemeral") */
    struct bt_str ttl; /* string: "5m", "1h", "30m"; empty = the provider's default */
};

struct bt_chat_part {
    enum bt_part_type type;
    struct bt_cache_mark cache;
    union {
        struct bt_str text; /* TEXT, REFUSAL: string */
        struct {
            struct bt_str url;        /* string: an http(s) URL; empty for inline data */
            struct bt_str media_type; /* string: "image/png"..., with `data` */
            struct bt_str data;       /* string: base64 bytes (no data: prefix) */
            enum bt_image_detail detail;
        } image;
        struct {
            struct bt_str data;   /* string: base64 bytes */
            struct bt_str format; /* string: "wav", "mp3" */
        } audio;
        struct {
            struct bt_str data;       /* string: base64 bytes, or empty with file_id */
            struct bt_str media_type; /* string: "application/pdf"...; may be empty */
            struct bt_str file_id;    /* string: a file the provider stores */
            struct bt_str filename;   /* string: may be empty */
        } file;
        struct {
            struct bt_str id;   /* string: the call's id, echoed by its result */
            struct bt_str name; /* string: the tool's name */
            struct bt_str args; /* the arguments' JSON text: see args_escaped */
            bool args_escaped;  /* true: `args` is a string's escaped body whose value
                                   is the JSON text (OpenAI's `arguments`); false:
                                   `args` is a raw JSON value (Anthropic's `input`).
                                   Convert with bt_chat_args_json/_string */
        } tool_call;
        struct {
            struct bt_str call_id;       /* string: the call answered; empty for a
                                            legacy OpenAI function message */
            struct bt_str name;          /* string: the tool's name when the API says
                                            it (OpenAI function, Gemini); may be empty */
            struct bt_chat_part *parts;  /* the result's content: TEXT, IMAGE... */
            uint32_t nparts;
            bool is_error;               /* the tool failed (Anthropic is_error) */
        } tool_result;
        struct {
            struct bt_str text;      /* string: THINKING text; REDACTED: opaque data */
            struct bt_str signature; /* string: must go back unchanged; may be empty */
        } thinking;
    };
};

struct bt_chat_msg {
    enum bt_role role;
    struct bt_str name;          /* string: participant name (OpenAI `name`) */
    struct bt_chat_part *parts;  /* in order; assistant: thinking, text/refusal, calls */
    uint32_t nparts;
    struct bt_cache_mark cache;  /* a breakpoint on the message as a whole */
};

struct bt_chat_tool {
    struct bt_str name;          /* string */
    struct bt_str description;   /* string; may be empty */
    struct bt_str parameters;    /* raw: JSON-schema object; empty = none given */
    bool strict;                 /* structured-output strictness asked for */
    bool strict_given;
    struct bt_cache_mark cache;
};

enum bt_tool_choice {
    BT_TOOL_CHOICE_UNSET = 0, /* not given: the provider's default (auto with tools) */
    BT_TOOL_CHOICE_AUTO,
    BT_TOOL_CHOICE_NONE,
    BT_TOOL_CHOICE_REQUIRED,  /* some tool must be called (Anthropic "any") */
    BT_TOOL_CHOICE_NAMED,     /* this tool must be called: tool_choice_name */
};

enum bt_effort {
    BT_EFFORT_UNSET = 0,
    BT_EFFORT_NONE,    /* reasoning off */
    BT_EFFORT_MINIMAL,
    BT_EFFORT_LOW,
    BT_EFFORT_MEDIUM,
    BT_EFFORT_HIGH,
    BT_EFFORT_XHIGH,
    BT_EFFORT_MAX,
};

enum bt_format {
    BT_FORMAT_UNSET = 0,
    BT_FORMAT_TEXT,
    BT_FORMAT_JSON_OBJECT, /* any JSON object */
    BT_FORMAT_JSON_SCHEMA, /* JSON matching format_schema */
};

/* Which optional settings the client gave (bits of bt_chat.given). */
enum bt_given {
    BT_GIVEN_TEMPERATURE = 1u << 0,
    BT_GIVEN_TOP_P = 1u << 1,
    BT_GIVEN_TOP_K = 1u << 2,
    BT_GIVEN_MAX_TOKENS = 1u << 3,
    BT_GIVEN_STOP = 1u << 4,
    BT_GIVEN_SEED = 1u << 5,
    BT_GIVEN_N = 1u << 6,
    BT_GIVEN_PRESENCE_PENALTY = 1u << 7,
    BT_GIVEN_FREQUENCY_PENALTY = 1u << 8,
    BT_GIVEN_LOGPROBS = 1u << 9,
    BT_GIVEN_TOP_LOGPROBS = 1u << 10,
    BT_GIVEN_PARALLEL_TOOL_CALLS = 1u << 11,
    BT_GIVEN_REASONING_EFFORT = 1u << 12,
    BT_GIVEN_REASONING_BUDGET = 1u << 13,
    BT_GIVEN_RESPONSE_FORMAT = 1u << 14,
    BT_GIVEN_METADATA = 1u << 15,
    BT_GIVEN_USER = 1u << 16,
    BT_GIVEN_CACHE_KEY = 1u << 17,
};
#define BT_GIVEN_LAST BT_GIVEN_CACHE_KEY

/* A top-level member the decoder does not map, kept for an encoder of the same
 * API family to pass on, or for any encoder to refuse by name. */
struct bt_chat_extra {
    struct bt_str key;   /* string */
    struct bt_str value; /* raw */
};

struct bt_chat {
    struct bt_str model;               /* string: the model the client asked for */
    /* The top-level system prompt of APIs that have one (Anthropic `system`,
     * Gemini systemInstruction): TEXT parts. OpenAI allows system and developer
     * messages anywhere, so its decoder leaves this empty and keeps them in
     * `msgs` in place; an encoder for a top-level-system API hoists them. */
    struct bt_chat_part *system;
    uint32_t nsystem;
    struct bt_chat_msg *msgs;
    uint32_t nmsgs;
    struct bt_chat_tool *tools;
    uint32_t ntools;
    enum bt_tool_choice tool_choice;
    struct bt_str tool_choice_name;    /* string: NAMED */
    bool parallel_tool_calls;          /* BT_GIVEN_PARALLEL_TOOL_CALLS */

    uint32_t given;                    /* BT_GIVEN_* */
    double temperature;                /* BT_GIVEN_TEMPERATURE */
    double top_p;                      /* BT_GIVEN_TOP_P */
    int64_t top_k;                     /* BT_GIVEN_TOP_K */
    int64_t max_tokens;                /* BT_GIVEN_MAX_TOKENS: output tokens, reasoning included */
    struct bt_str *stop;               /* BT_GIVEN_STOP: strings */
    uint32_t nstop;
    int64_t seed;                      /* BT_GIVEN_SEED */
    int64_t n;                         /* BT_GIVEN_N: choices wanted */
    double presence_penalty;           /* BT_GIVEN_PRESENCE_PENALTY */
    double frequency_penalty;          /* BT_GIVEN_FREQUENCY_PENALTY */
    bool logprobs;                     /* BT_GIVEN_LOGPROBS */
    int64_t top_logprobs;              /* BT_GIVEN_TOP_LOGPROBS */

    enum bt_effort reasoning_effort;   /* BT_GIVEN_REASONING_EFFORT */
    int64_t reasoning_budget;          /* BT_GIVEN_REASONING_BUDGET: thinking tokens
                                          (Anthropic budget_tokens) */

    enum bt_format format;             /* BT_GIVEN_RESPONSE_FORMAT */
    struct bt_str format_name;         /* string: JSON_SCHEMA */
    struct bt_str format_description;  /* string: JSON_SCHEMA, may be empty */
    struct bt_str format_schema;       /* raw: JSON_SCHEMA, may be empty */
    bool format_strict;                /* JSON_SCHEMA */

    struct bt_str metadata;            /* raw object: BT_GIVEN_METADATA */
    struct bt_str user;                /* string: end-user id, BT_GIVEN_USER */
    struct bt_str cache_key;           /* string: prompt-cache routing key (OpenAI
                                          prompt_cache_key), BT_GIVEN_CACHE_KEY */
    bool stream;                       /* reply as a stream */
    bool include_usage;                /* stream: the client wants a usage chunk */

    struct bt_chat_extra *extras;
    uint32_t nextras;
};

/* Why a decoder refused a client's request: the 400 a front end answers with. */
struct bt_chat_error {
    char message[320]; /* a sentence for the client, naming the parameter and value */
    char param[128];   /* the offending parameter as a path, e.g.
                          "messages[2].content[0].image_url.url"; "" when none */
};

/* Fills `e` (message from fmt, the parameter path `param`, "" for NULL; both
 * cut to their buffers) and returns BT_EINVAL: what every decoder and encoder
 * of the canonical request answers a refusal with. */
__attribute__((format(printf, 3, 4))) enum bt_err bt_chat_fail(struct bt_chat_error *e,
                                                               const char *param,
                                                               const char *fmt, ...);

/* The client-API parameter name of one BT_GIVEN_* bit ("temperature",
 * "max_tokens", ...), for an encoder's "cannot be expressed" 400; "" for
 * anything else. Static storage. */
const char *bt_chat_given_name(uint32_t bit);

/* A tool call's arguments as JSON text (`{"city":"Paris"}`): `args` itself when
 * it is raw, else the string unescaped into `arena`; "{}" when empty. BT_EPARSE
 * for a broken escape, BT_ENOMEM. The result lives as long as the arena and the
 * client's body. Whether the text is valid JSON is not checked: models write
 * broken arguments, and only an encoder that must embed them as a value (an
 * Anthropic `input`) needs to parse them. */
BT_MUST_USE enum bt_err bt_chat_args_json(const struct bt_chat_part *call, struct bt_arena *arena,
                                          struct bt_str *out);
/* The arguments as an escaped JSON string body (OpenAI's `arguments`): `args`
 * itself when already escaped, else the raw value escaped into `arena`. */
BT_MUST_USE enum bt_err bt_chat_args_string(const struct bt_chat_part *call, struct bt_arena *arena,
                                            struct bt_str *out);

#endif
