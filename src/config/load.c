/* The loader: reads a file (or a string), parses it into a YAML tree
 * (yaml.c), walks the top level and hands each section to its file (server.c,
 * providers.c, models.c), applies the command line, runs the whole-file
 * checks, and gives out the snapshot or the reasons it was refused. Also the
 * diagnostics every piece reports through: bt_cfg_err/bt_cfg_warn record a
 * message at a node's line:column, key lookup in a section names every key it
 * expected.
 *
 * The walk never stops at the first problem: it reports as many as it can, each
 * at the line:column of the offending key or value, so a user fixes a file in
 * one round. Any error discards the snapshot. */
#include "config/load.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config/yaml.h"
#include "core/buf.h"

/* ---- diagnostics ---- */

static void lmsg(struct bt_cfg_loader *L, bool is_error, const struct bt_ynode *at, const char *fmt,
                 va_list ap) __attribute__((format(printf, 4, 0)));
static void lmsg(struct bt_cfg_loader *L, bool is_error, const struct bt_ynode *at, const char *fmt,
                 va_list ap)
{
    if (is_error) L->nerrors++;
    if (bt_config_diag_addv(L->diags, is_error, at ? at->line : 0, at ? at->col : 0, fmt, ap))
        L->oom = true;
}

void bt_cfg_err(struct bt_cfg_loader *L, const struct bt_ynode *at, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    lmsg(L, true, at, fmt, ap);
    va_end(ap);
}

void bt_cfg_warn(struct bt_cfg_loader *L, const struct bt_ynode *at, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    lmsg(L, false, at, fmt, ap);
    va_end(ap);
}

const char *bt_cfg_kind_name(const struct bt_ynode *n)
{
    switch (n->kind) {
    case BT_Y_MAP:
        return "a mapping";
    case BT_Y_SEQ:
        return "a list";
    default:
        return "a scalar";
    }
}

char *bt_cfg_dup(struct bt_cfg_loader *L, const char *s, size_t len)
{
    char *d = bt_str_dup((struct bt_str){s, len});
    if (!d) L->oom = true;
    return d;
}

/* ---- keys ---- */

/* Index of key `k` in the NULL-terminated `keys`, or -1 after reporting an
 * unknown (or non-scalar) key. `what` names the enclosing section. */
int bt_cfg_key_index(struct bt_cfg_loader *L, const struct bt_ynode *k, const char *const *keys,
                     const char *what)
{
    if (k->kind != BT_Y_SCALAR) {
        bt_cfg_err(L, k, "%s: keys must be plain names, not %s", what, bt_cfg_kind_name(k));
        return -1;
    }
    for (int i = 0; keys[i]; i++)
        if (strlen(keys[i]) == k->len && memcmp(keys[i], k->text, k->len) == 0) return i;
    /* Every key, whole: the lists are short and fixed, so the message is too. */
    struct bt_buf list;
    bt_buf_init(&list, 1024);
    enum bt_err e = BT_OK;
    for (int i = 0; keys[i] && !e; i++)
        e = bt_buf_printf(&list, "%s%s", i ? ", " : "", keys[i]);
    if (!e) e = bt_buf_cstr(&list);
    if (e) {
        L->oom = true; /* only ENOMEM: the longest list is under 300 bytes */
        bt_buf_free(&list);
        return -1;
    }
    bt_cfg_err(L, k, "unknown key \"%.*s\" in %s (expected one of: %s)", BT_CFG_SHOW(k), what,
               list.p);
    bt_buf_free(&list);
    return -1;
}

/* The mapping to walk, or NULL when n is null (an empty section: defaults) or
 * not a mapping (reported). */
const struct bt_ynode *bt_cfg_as_map(struct bt_cfg_loader *L, const struct bt_ynode *n,
                                     const char *what)
{
    if (!n || bt_ynode_is_null(n)) return NULL;
    if (n->kind != BT_Y_MAP) {
        bt_cfg_err(L, n, "%s must be a mapping (key: value lines), not %s", what,
                   bt_cfg_kind_name(n));
        return NULL;
    }
    return n;
}

/* ---- the top level ---- */

static void load_root(struct bt_cfg_loader *L, const struct bt_ynode *root)
{
    static const char *const keys[] = {"server",  "auth",  "log", "providers", "models",
                                       "metrics", "store", NULL};
    if (!root || bt_ynode_is_null(root)) return; /* empty file: all defaults */
    if (root->kind != BT_Y_MAP) {
        bt_cfg_err(L, root,
                   "a config file is a mapping of sections (server, auth, log, providers, "
                   "models, metrics, store), not %s",
                   bt_cfg_kind_name(root));
        return;
    }
    const struct bt_ynode *sec[7] = {0};
    for (size_t i = 0; i + 1 < root->n; i += 2) {
        int idx = bt_cfg_key_index(L, root->items[i], keys, "the top level");
        if (idx >= 0) sec[idx] = root->items[i + 1];
    }
    /* Providers before models, whatever the order in the file. */
    bt_cfg_load_server(L, sec[0]);
    bt_cfg_load_auth(L, sec[1]);
    bt_cfg_load_log(L, sec[2]);
    bt_cfg_load_metrics(L, sec[5]);
    bt_cfg_load_store(L, sec[6]);
    bt_cfg_load_providers(L, sec[3]);
    if (!L->oom) bt_cfg_load_models(L, sec[4]);
}

/* ---- loading ---- */

static enum bt_err set_diag_path(struct bt_config_diags *d, const char *name)
{
    char *p = strdup(name);
    if (!p) return BT_ENOMEM;
    free(d->path);
    d->path = p;
    return BT_OK;
}

static enum bt_err load_common(const char *name, const char *yaml, size_t len,
                               const struct bt_config_load_opts *opts, struct bt_config **out,
                               struct bt_config_diags *diags)
{
    static const struct bt_config_load_opts none = {0};
    struct bt_ydoc doc;
    struct bt_cfg_loader L = {.diags = diags, .opts = opts ? opts : &none};
    enum bt_err err = bt_ydoc_parse(yaml, len, &doc, diags);
    if (err) {
        bt_ydoc_free(&doc);
        return err == BT_ENOMEM ? BT_ENOMEM : BT_ECONFIG;
    }
    L.cfg = bt_cfg_new(name);
    if (!L.cfg) {
        bt_ydoc_free(&doc);
        bt_config_diag_add(diags, true, 0, 0, "out of memory");
        return BT_ENOMEM;
    }
    load_root(&L, doc.root);
    if (!L.oom && L.opts->listen)
        bt_cfg_set_listen(&L, NULL, "--listen", L.opts->listen, strlen(L.opts->listen));
    if (L.opts->reuse_port) L.cfg->server.reuse_port = true;
    if (!L.oom) bt_cfg_check_whole(&L); /* points at nodes: before the document goes */
    bt_ydoc_free(&doc);
    if (L.oom) {
        bt_config_diag_add(diags, true, 0, 0, "out of memory");
        bt_cfg_free(L.cfg);
        return BT_ENOMEM;
    }
    if (L.nerrors) {
        bt_cfg_free(L.cfg);
        return BT_ECONFIG;
    }
    *out = L.cfg;
    return BT_OK;
}

enum bt_err bt_config_load_string(const char *name, const char *yaml, size_t len,
                                  struct bt_config **out, struct bt_config_diags *diags)
{
    return bt_config_load_string_opts(name, yaml, len, NULL, out, diags);
}

enum bt_err bt_config_load_string_opts(const char *name, const char *yaml, size_t len,
                                       const struct bt_config_load_opts *opts,
                                       struct bt_config **out, struct bt_config_diags *diags)
{
    if (!out || (!yaml && len)) return BT_EINVAL;
    *out = NULL;
    if (!name) name = "config";
    struct bt_config_diags local = {0};
    struct bt_config_diags *d = diags ? diags : &local;
    enum bt_err err = set_diag_path(d, name);
    if (!err) {
        if (len > BT_CONFIG_MAX_BYTES) {
            bt_config_diag_add(d, true, 0, 0, "the file is larger than %u bytes",
                               BT_CONFIG_MAX_BYTES);
            err = BT_ECONFIG;
        } else {
            err = load_common(name, yaml ? yaml : "", len, opts, out, d);
        }
    }
    bt_config_diags_free(&local);
    return err;
}

enum bt_err bt_config_load(const char *path, struct bt_config **out, struct bt_config_diags *diags)
{
    return bt_config_load_opts(path, NULL, out, diags);
}

struct bt_config *bt_config_load_for_store(const char *path, const char *cmd)
{
    struct bt_config *cfg = NULL;
    struct bt_config_diags d = {0};
    enum bt_err err = bt_config_load(path, &cfg, &d);
    bt_config_diags_print(&d, stderr);
    bt_config_diags_free(&d);
    if (err) {
        fprintf(stderr, "%s: invalid configuration\n", path);
        return NULL;
    }
    if (!cfg->store.sqlite) {
        fprintf(stderr, "%s: %s names no store\n", cmd, path);
        bt_config_unref(cfg);
        return NULL;
    }
    return cfg;
}

enum bt_err bt_config_load_opts(const char *path, const struct bt_config_load_opts *opts,
                                struct bt_config **out, struct bt_config_diags *diags)
{
    if (!path || !out) return BT_EINVAL;
    *out = NULL;
    struct bt_config_diags local = {0};
    struct bt_config_diags *d = diags ? diags : &local;
    struct bt_buf b;
    bt_buf_init(&b, BT_CONFIG_MAX_BYTES);
    enum bt_err err = set_diag_path(d, path);
    if (err) goto done;
    FILE *f = fopen(path, "rb");
    if (!f) {
        bt_config_diag_add(d, true, 0, 0, "cannot open: %s", strerror(errno));
        err = BT_EIO;
        goto done;
    }
    char chunk[16384];
    size_t n;
    while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0) {
        err = bt_buf_append(&b, chunk, n);
        if (err) break;
    }
    bool rerr = ferror(f);
    fclose(f);
    if (err == BT_ETOOBIG) {
        bt_config_diag_add(d, true, 0, 0, "the file is larger than %u bytes", BT_CONFIG_MAX_BYTES);
        err = BT_ECONFIG;
        goto done;
    }
    if (err) goto done;
    if (rerr) {
        bt_config_diag_add(d, true, 0, 0, "cannot read the file");
        err = BT_EIO;
        goto done;
    }
    err = load_common(path, b.p ? b.p : "", b.len, opts, out, d);
done:
    bt_buf_free(&b);
    bt_config_diags_free(&local);
    return err;
}

void bt_config_diags_free(struct bt_config_diags *d)
{
    if (!d) return;
    for (size_t i = 0; i < d->n; i++)
        free(d->items[i].msg);
    free(d->items);
    free(d->path);
    d->items = NULL;
    d->path = NULL;
    d->n = d->cap = 0;
}

void bt_config_diags_print(const struct bt_config_diags *d, void *file)
{
    FILE *f = file;
    if (!d || !f) return;
    const char *path = d->path ? d->path : "config";
    for (size_t i = 0; i < d->n; i++) {
        const struct bt_config_diag *g = &d->items[i];
        const char *kind = g->is_error ? "error" : "warning";
        if (g->line > 0)
            fprintf(f, "%s:%d:%d: %s: %s\n", path, g->line, g->col > 0 ? g->col : 1, kind, g->msg);
        else
            fprintf(f, "%s: %s: %s\n", path, kind, g->msg);
    }
    if (d->n >= BT_CONFIG_MAX_DIAGS)
        fprintf(f, "%s: note: stopped after %d messages\n", path, BT_CONFIG_MAX_DIAGS);
}
