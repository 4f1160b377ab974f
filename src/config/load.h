/* What the pieces of the config loader share: the snapshot's birth and death.
 * Internal to src/config (config.h is the public API); the files and how a load
 * goes are described in docs/internals/config.md. */
#ifndef BT_CONFIG_LOAD_H
#define BT_CONFIG_LOAD_H

#include "config/config.h"

#define BT_CFG_MAX_NAME 128 /* provider and model names */

/* A snapshot with every default set (docs/config.md) and refs == 1; `path` is
 * copied. NULL when memory runs out. */
struct bt_config *bt_cfg_new(const char *path);
/* Frees c and everything it owns, secrets wiped first; NULL is a no-op. Only
 * for a snapshot no one else holds (bt_config_unref decides that). */
void bt_cfg_free(struct bt_config *c);

#endif
