/* Client headers forwarded to a provider (config `providers.NAME.forward_headers`,
 * docs/config.md). baton never passes a client's headers on blindly: each provider
 * has an allow-list of names, written in the file or, when the key is absent, the
 * default of its type (one table row per type). This module holds the rules
 * (which names a list may hold, the defaults) and the per-request pick.
 *
 * The pick is on every request's path, so its common case is cheap: with nothing
 * listed it returns at once, otherwise it is one pass over the client's headers
 * comparing lengths first against a list of a few names. */
#ifndef BT_CONFIG_FWD_H
#define BT_CONFIG_FWD_H

#include <stdbool.h>
#include <stddef.h>

#include "config/config.h"
#include "core/err.h"
#include "core/str.h"
#include "http/server.h" /* struct bt_http_header */

#define BT_FWD_MAX_NAMES 16   /* names in one forward_headers list */
#define BT_FWD_NAME_MAX 64    /* longest name in a list */
#define BT_FWD_MAX 16         /* header lines forwarded with one request */
#define BT_FWD_VALUE_MAX 1024 /* longest forwarded value, in bytes */

/* The names forwarded when a provider of type `t` has no forward_headers key:
 * a NULL-terminated static list, empty (never NULL) for a type without one. */
const char *const *bt_fwd_defaults(enum bt_provider_type t);

/* Why `name` (any case) may never be forwarded even when listed: "a credential",
 * "a hop-by-hop or framing header" or "set by baton itself"; NULL when it may. */
const char *bt_fwd_refused(struct bt_str name);

/* True when `name` can be listed: 1 to BT_FWD_NAME_MAX characters of an HTTP
 * field name (RFC 9110 token), no '*' (lists hold names, not patterns). */
bool bt_fwd_name_ok(struct bt_str name);

/* Picks the client headers `hs[0..n)` that provider `p` forwards, in the order
 * the client sent them, each under the name as listed in the config. `out` (room
 * for BT_FWD_MAX, or NULL to only check) gets slices borrowed from `hs` and from
 * `p`; *nout their number. Errors, with `msg` (msgcap bytes, may be 0) saying
 * which header, meant for a 400 to the client:
 *   BT_EINVAL  a value holds a control character (CR, LF, NUL, tab, other C0,
 *              DEL) or is longer than BT_FWD_VALUE_MAX bytes;
 *   BT_ETOOBIG more than BT_FWD_MAX lines would be forwarded. */
enum bt_err bt_fwd_pick(const struct bt_provider *p, const struct bt_http_header *hs, size_t n,
                        struct bt_http_header *out, size_t *nout, char *msg, size_t msgcap);

#endif
