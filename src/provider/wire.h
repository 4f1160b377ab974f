/* Pieces the translating adapters (anthropic.c, gemini.c) share: writing the
 * canonical request's JSON-text strings (canon/chat.h: still escaped) into a
 * body, the 400 for what a wire cannot express, reading token counts, and
 * turning a raw JSON value into the escaped body of a string (a tool call's
 * arguments for a TOOL_ARGS event). */
#ifndef BT_PROVIDER_WIRE_H
#define BT_PROVIDER_WIRE_H

#include <stdbool.h>
#include <stdint.h>

#include "canon/chat.h"
#include "canon/event.h"
#include "json/json.h"
#include "provider/provider.h"

/* Writes `s`, a JSON string's body still escaped, as a string value: between
 * quotes, without re-escaping. Errors stick in w->err. */
void bt_wire_raw_str(struct bt_jw *w, struct bt_str s);

/* Fills *e ("`param`: message") and returns BT_EINVAL: the client's 400. */
enum bt_err bt_wire_refuse(struct bt_chat_error *e, const char *param, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* A 400 for each BT_GIVEN_* bit of `c->given` that is in `refused`: the first
 * one, named by the client's parameter, "`provider` has no counterpart". BT_OK
 * when none of them was given. */
enum bt_err bt_wire_refuse_given(const struct bt_chat *c, uint32_t refused, const char *provider,
                                 struct bt_chat_error *e);

/* The 400 for the client's first unmapped member (c->extras[0]). */
enum bt_err bt_wire_refuse_extra(const struct bt_chat *c, const char *provider,
                                 struct bt_chat_error *e);

/* A token count from a provider (a number member of `obj`), clamped to
 * [0, 2^40] so that sums made from it cannot overflow; 0 when absent. */
int64_t bt_wire_count(const struct bt_json_doc *doc, int obj, const char *key);

/* Calls cb with a TOOL_ARGS event whose text is the raw JSON value `tok`
 * escaped as a string body (`{\"a\":1}`); `base` gives choice, tool_index and
 * block. Allocates a bounded scratch buffer for the call only. */
void bt_wire_args_event(const struct bt_json_doc *doc, int tok, const struct bt_event *base,
                        bt_event_cb cb, void *ud);

/* The thinking budget (tokens) of a reasoning effort when the client gave no
 * budget: minimal 1024, low 2048, medium 8192, high 16384, xhigh 24576, max
 * 32000; 0 for none or unset. */
int64_t bt_wire_effort_budget(enum bt_effort e);

/* Parses `json` (JSON text in `arena`) and says whether it is one object. */
bool bt_wire_is_object(struct bt_str json, struct bt_arena *arena);

/* Content-Type, Accept (SSE for a stream), User-Agent and, when `key` is set,
 * the type's one credential header `cred: key` into hs (room for cap);
 * returns how many, or 0 with *err = BT_ETOOBIG when cap is under 5. */
size_t bt_wire_headers(bool stream, const char *cred, const char *key, struct bt_http_header *hs,
                       size_t cap, enum bt_err *err);

/* A string member of `obj` unescaped into `arena`; empty when absent. */
struct bt_str bt_wire_field(const struct bt_json_doc *doc, int obj, const char *key,
                            struct bt_arena *arena);

/* `prefix` + `model` percent-encoded (all but letters, digits, '-', '_', '.')
 * + `tail`, in `arena`; a NULL slice on BT_ENOMEM. */
struct bt_str bt_wire_path(const char *prefix, struct bt_str model, const char *tail,
                           struct bt_arena *arena);

/* `b`'s bytes copied into `arena` as the one body part of `out`. */
enum bt_err bt_wire_body(const struct bt_buf *b, struct bt_arena *arena, struct bt_pbody *out);

#endif
