/* Values that fit a JSON Schema, for tool-call arguments and `json_schema`
 * content: `$ref` to local pointers, const, enum, anyOf/oneOf, allOf, type
 * names and lists, objects (required and about half of the optional members),
 * arrays (items, prefixItems, draft-4 tuples, min/maxItems), strings
 * (min/maxLength in code points, common formats; `pattern` is not honoured),
 * integers and numbers (bounds, exclusive bounds of both drafts, integer
 * multipleOf), booleans, null. Recursive schemas end: below half the depth cap
 * optional members and unconstrained arrays are left empty, and past the cap a
 * value is null. */
#ifndef BT_SIM_SCHEMA_H
#define BT_SIM_SCHEMA_H

#include "core/arena.h"
#include "core/buf.h"
#include "json/json.h"
#include "sim/rng.h"

/* Appends to `out` a JSON value that fits schema token `schema` of `doc`, drawn
 * from `r`; with `schema` -1, a small object ({"answer":WORD,"confidence":N}).
 * `arena` holds unescaped names for the call's duration. BT_OK, or the writer's
 * error (BT_ETOOBIG at out's cap, BT_ENOMEM); out then holds part of a value. */
enum bt_err bt_sim_schema_value(const struct bt_json_doc *doc, int schema, struct bt_arena *arena,
                                struct bt_sim_rng *r, struct bt_buf *out);

#endif
