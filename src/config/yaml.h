/* Internal to src/config: a small YAML tree with 1-based line:column on every
 * node, built from libfyaml's event stream, and `${VAR}` expansion of scalar
 * values. libfyaml 0.7's document API has no public way to ask where a mapping
 * or sequence starts, and config errors must point at them, so the loader builds
 * its own tree from events (each event carries its start mark). */
#ifndef BT_CONFIG_YAML_H
#define BT_CONFIG_YAML_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>

#include "config/config.h"
#include "core/arena.h"
#include "core/err.h"

enum bt_ynode_kind { BT_Y_SCALAR, BT_Y_MAP, BT_Y_SEQ };

struct bt_ynode {
    enum bt_ynode_kind kind;
    int line, col;           /* 1-based position of the node's first character */
    bool plain;              /* scalar written without quotes or block indicator */
    char *text;              /* scalar text as parsed, NUL-terminated (may hold NULs) */
    size_t len;              /* scalar text length */
    struct bt_ynode **items; /* map: key0, value0, key1, value1...; seq: items */
    size_t n;                /* number of entries in items (2 per map pair) */
    size_t cap;              /* allocated slots in items */
};

/* A parsed document: every node lives in the arena. */
struct bt_ydoc {
    struct bt_arena arena;
    struct bt_ynode *root; /* NULL for an empty document */
};

/* Limits that keep hostile input cheap (the fuzzer feeds arbitrary bytes). */
#define BT_CONFIG_MAX_BYTES (16u << 20) /* largest config file */
#define BT_CONFIG_MAX_DEPTH 32          /* nesting of mappings and sequences */
#define BT_CONFIG_MAX_DIAGS 64          /* diagnostics kept; later ones are counted */
#define BT_CONFIG_MAX_VALUE (1u << 20)  /* longest scalar value after expansion */
#define BT_CONFIG_MAX_VARNAME 128       /* longest ${NAME} */
#define BT_CONFIG_MAX_MSG 4096          /* backstop on one diagnostic's length */

/* Appends a diagnostic (printf-style message, stored whole in a malloc'd string
 * the diags own). Keeps at most BT_CONFIG_MAX_DIAGS entries; the rest are
 * dropped, but the caller's error count (it tracks its own) still sees them.
 * Returns BT_ENOMEM on allocation failure (nothing is added then). */
enum bt_err bt_config_diag_add(struct bt_config_diags *d, bool is_error, int line, int col,
                               const char *fmt, ...) __attribute__((format(printf, 5, 6)));
/* Same with a va_list (which it consumes). */
enum bt_err bt_config_diag_addv(struct bt_config_diags *d, bool is_error, int line, int col,
                                const char *fmt, va_list ap) __attribute__((format(printf, 5, 0)));

/* Parses `len` bytes of YAML into doc (which the caller releases with
 * bt_ydoc_free, also on failure). YAML syntax errors, duplicate keys, unknown
 * aliases, tags and extra documents are appended to `diags` as errors and give
 * BT_EPARSE; BT_ENOMEM when memory runs out. */
enum bt_err bt_ydoc_parse(const char *yaml, size_t len, struct bt_ydoc *doc,
                          struct bt_config_diags *diags);
void bt_ydoc_free(struct bt_ydoc *doc);

/* True for a plain scalar that YAML reads as null: empty, ~, null, Null, NULL. */
bool bt_ynode_is_null(const struct bt_ynode *n);

/* Expands ${NAME}, ${NAME:-default} and $$ in s[0..len) (see docs/config.md).
 * On success *out is a malloc'd NUL-terminated string owned by the caller and
 * *outlen its length; `var` (capacity varcap, may be NULL) receives the first
 * variable name referenced, or "" when none. On a malformed reference returns
 * BT_EPARSE with a message in why[0..whycap); BT_ETOOBIG past
 * BT_CONFIG_MAX_VALUE; BT_ENOMEM. Variables are read with getenv(). */
enum bt_err bt_config_expand(const char *s, size_t len, char **out, size_t *outlen, char *var,
                             size_t varcap, char *why, size_t whycap);

#endif
