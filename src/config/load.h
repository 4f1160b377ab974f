/* What the pieces of the config loader share: the loader's state, its
 * diagnostics (each at a node's line:column), key lookup in a section, and the
 * snapshot's birth and death. Internal to src/config (config.h is the public
 * API); the files and how a load goes are described in
 * docs/internals/config.md. */
#ifndef BT_CONFIG_LOAD_H
#define BT_CONFIG_LOAD_H

#include <stdbool.h>
#include <stddef.h>

#include "config/config.h"
#include "config/yaml.h"

#define BT_CFG_MAX_NAME 128 /* provider and model names */
#define BT_CFG_DAY_MS (24ull * 3600 * 1000)

/* One load in progress: what every section's walk reads and writes. */
struct bt_cfg_loader {
    struct bt_config_diags *diags;          /* where messages go (the caller's) */
    struct bt_config *cfg;                  /* the snapshot being filled, refs == 1 */
    const struct bt_config_load_opts *opts; /* never NULL */
    int nerrors;                            /* errors reported so far (warnings not counted) */
    bool oom;                               /* memory ran out: the load fails with BT_ENOMEM */
    /* Where some values were written, for the checks made once the whole file
     * is read (NULL: not written). */
    const struct bt_ynode *listen_node, *anon_node, *require_key_node, *log_file_node,
        *log_access_node, *store_node;
};

/* ---- diagnostics ---- */

/* Report an error (the load fails) or a warning at node `at`'s line:column
 * (NULL: no position). The message is printf-style and copied. */
void bt_cfg_err(struct bt_cfg_loader *L, const struct bt_ynode *at, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void bt_cfg_warn(struct bt_cfg_loader *L, const struct bt_ynode *at, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Length-limited view of a scalar for quoting in messages: `"%.*s"` takes
 * BT_CFG_SHOWN(len), text or BT_CFG_SHOW(node). */
#define BT_CFG_SHOW_MAX 60
#define BT_CFG_SHOWN(len) (int)((len) > BT_CFG_SHOW_MAX ? BT_CFG_SHOW_MAX : (len))
#define BT_CFG_SHOW(n) BT_CFG_SHOWN((n)->len), (n)->text

/* "a mapping", "a list" or "a scalar", for messages about a node of the wrong kind. */
const char *bt_cfg_kind_name(const struct bt_ynode *n);
/* A malloc'd copy of s[0..len) (the caller owns it), or NULL with L->oom set. */
char *bt_cfg_dup(struct bt_cfg_loader *L, const char *s, size_t len);

/* ---- keys ---- */

/* Index of key `k` in the NULL-terminated `keys`, or -1 after reporting an
 * unknown (or non-scalar) key, with every key of the list in the message
 * ("expected one of: ..."). `what` names the enclosing section. */
int bt_cfg_key_index(struct bt_cfg_loader *L, const struct bt_ynode *k, const char *const *keys,
                     const char *what);
/* The mapping to walk, or NULL when n is NULL or null (an empty section:
 * defaults) or not a mapping (reported, naming `what`). */
const struct bt_ynode *bt_cfg_as_map(struct bt_cfg_loader *L, const struct bt_ynode *n,
                                     const char *what);

/* ---- sections ---- */

/* Each fills its part of L->cfg from the section's node (NULL or null: the
 * section is absent, defaults stay), reporting every problem it finds.
 * server:, auth:, metrics: and log: are in server.c. */
void bt_cfg_load_server(struct bt_cfg_loader *L, const struct bt_ynode *n);
void bt_cfg_load_auth(struct bt_cfg_loader *L, const struct bt_ynode *n);
void bt_cfg_load_metrics(struct bt_cfg_loader *L, const struct bt_ynode *n);
void bt_cfg_load_log(struct bt_cfg_loader *L, const struct bt_ynode *n);
/* store: (server.c); the default path is set by bt_cfg_check_whole. */
void bt_cfg_load_store(struct bt_cfg_loader *L, const struct bt_ynode *n);
/* providers: (providers.c). Sets L->oom and stops when memory runs out. */
void bt_cfg_load_providers(struct bt_cfg_loader *L, const struct bt_ynode *n);
/* models: (models.c), after providers: its provider names are looked up in
 * L->cfg. Sets L->oom and stops when memory runs out. */
void bt_cfg_load_models(struct bt_cfg_loader *L, const struct bt_ynode *n);
/* models.NAME.rules / .router (config/rules.c): set m->kind and fill it. */
void bt_cfg_load_rules(struct bt_cfg_loader *L, const struct bt_ynode *v, struct bt_model *m);
void bt_cfg_load_router(struct bt_cfg_loader *L, const struct bt_ynode *v, struct bt_model *m);
/* Once every model is read: the names rules and routers point to, cycles. */
void bt_cfg_resolve_choices(struct bt_cfg_loader *L);
/* Frees what rules and a router own. */
void bt_cfg_free_choices(struct bt_model *m);

/* Sets server.listen from s[0..len), checked as bt_config_parse_listen does;
 * `what` names it in messages ("server.listen", or "--listen" with v NULL).
 * False after reporting. */
bool bt_cfg_set_listen(struct bt_cfg_loader *L, const struct bt_ynode *v, const char *what,
                       const char *s, size_t len);
/* The checks on the whole result, once every section is read and the command
 * line applied, before the YAML document is freed (the messages point at its
 * nodes): what `baton serve` would refuse at start (server.c). */
void bt_cfg_check_whole(struct bt_cfg_loader *L);

/* ---- the snapshot ---- */

/* A snapshot with every default set (docs/config.md) and refs == 1; `path` is
 * copied. NULL when memory runs out. */
struct bt_config *bt_cfg_new(const char *path);
/* Frees c and everything it owns, secrets wiped first; NULL is a no-op. Only
 * for a snapshot no one else holds (bt_config_unref decides that). */
void bt_cfg_free(struct bt_config *c);

#endif
