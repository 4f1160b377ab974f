/* Reading scalar values of a config file, for every section's walk. Internal
 * to src/config (see load.h, docs/internals/config.md).
 *
 * Every getter takes the value node `v` and `what`, the name used in messages
 * ("server.max_body_bytes", "provider \"x\": timeouts.connect"). On a bad value
 * it reports an error at v's line:column and returns false, leaving *out as it
 * was (the default). A null value (`key:` alone, `~`) also leaves *out as it
 * was and returns true, except for bt_cfg_get_string. */
#ifndef BT_CONFIG_VALUES_H
#define BT_CONFIG_VALUES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config/load.h"

/* The value with ${VAR}, ${VAR:-default} and $$ expanded (see docs/config.md).
 * *out is malloc'd and NUL-terminated (the caller frees it); a null value
 * gives "". outlen may be NULL. `var` (NULL, or BT_CONFIG_MAX_VARNAME+1 bytes)
 * receives the first variable referenced, "" when none. Refuses a mapping or a
 * list, a malformed reference, and a result holding a line break or other
 * control character; false then, with *out NULL. */
bool bt_cfg_get_string(struct bt_cfg_loader *L, const struct bt_ynode *v, const char *what,
                       char **out, size_t *outlen, char *var);
/* A whole number from min to max. */
bool bt_cfg_get_u64(struct bt_cfg_loader *L, const struct bt_ynode *v, const char *what,
                    uint64_t min, uint64_t max, uint64_t *out);
/* A size in bytes from min to max: a number, or one with a unit (B, KB, MB,
 * GB, KiB, MiB, GiB; case-insensitive). */
bool bt_cfg_get_size(struct bt_cfg_loader *L, const struct bt_ynode *v, const char *what,
                     uint64_t min, uint64_t max, uint64_t *out);
/* A duration in milliseconds from min_ms to max_ms: 250ms, 10s, 10m, 1h, or a
 * number of seconds (bt_parse_duration_ms). */
bool bt_cfg_get_duration(struct bt_cfg_loader *L, const struct bt_ynode *v, const char *what,
                         uint64_t min_ms, uint64_t max_ms, uint64_t *out);
/* true/True/TRUE or false/False/FALSE (YAML 1.2; yes/no/on/off are refused). */
bool bt_cfg_get_bool(struct bt_cfg_loader *L, const struct bt_ynode *v, const char *what,
                     bool *out);
/* A plain decimal (digits, an optional fraction; no sign, exponent, inf or
 * nan) from min to max. */
bool bt_cfg_get_double(struct bt_cfg_loader *L, const struct bt_ynode *v, const char *what,
                       double min, double max, double *out);

/* True when NUL-terminated s is an address literal of family af (AF_INET,
 * AF_INET6), without brackets. */
bool bt_cfg_is_ip(int af, const char *s);
/* Whether key `k` of providers: or models: may name one (`kind` is "provider"
 * or "model"): a scalar of 1 to BT_CFG_MAX_NAME bytes, no space or control
 * character, and no '/' unless allow_slash. False after reporting why not. */
bool bt_cfg_name_ok(struct bt_cfg_loader *L, const struct bt_ynode *k, const char *kind,
                    bool allow_slash);

#endif
