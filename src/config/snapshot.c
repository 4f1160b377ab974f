/* The snapshot's lifetime: a new one with every default (bt_cfg_new, and
 * bt_config_new_default for tests and `baton sim`), the refcount that lets a
 * reload swap snapshots under running requests, freeing (secrets wiped), and
 * the name lookups requests make on it. */
#include <stdlib.h>
#include <string.h>

#include "config/load.h"

static void set_defaults(struct bt_config *c)
{
    atomic_init(&c->refs, 1);
    c->server.listen_port = 4000;
    c->server.workers = 0;
    c->server.max_connections = 10000;
    c->server.max_header_bytes = 64u << 10;
    c->server.max_body_bytes = 32u << 20;
    c->server.header_timeout_ms = 30000;
    c->server.idle_timeout_ms = 120000;
    c->server.drain_timeout_ms = 30000;
    c->server.upstream_max_connections = 256;
    c->server.upstream_max_idle = 256; /* unless written: upstream_max_connections */
    c->server.upstream_max_queued = 1024;
    c->auth.allow_anonymous = false;
}

/* Secrets are wiped before their memory goes back to the allocator. */
static void free_secret(char *s)
{
    if (!s) return;
    explicit_bzero(s, strlen(s));
    free(s);
}

void bt_cfg_free(struct bt_config *c)
{
    if (!c) return;
    free(c->path);
    free(c->server.listen_host);
    free_secret(c->auth.master_key);
    free(c->log.level);
    free(c->log.access);
    free(c->log.file);
    free(c->store.sqlite);
    for (size_t i = 0; i < c->nproviders; i++) {
        struct bt_provider *p = &c->providers[i];
        free(p->name);
        free(p->base_url);
        free(p->host);
        free(p->base_path);
        free_secret(p->api_key);
        free(p->api_key_env);
        free(p->tls_ca_file);
        free(p->proxy_host);
        free_secret(p->proxy_auth);
        free(p->proxy_shown);
        free(p->proxy_from);
        for (size_t j = 0; j < p->nforward_headers; j++)
            free((char *)p->forward_headers[j].p);
        free(p->forward_headers);
    }
    free(c->providers);
    for (size_t i = 0; i < c->nmodels; i++) {
        struct bt_model *m = &c->models[i];
        free(m->name);
        for (uint32_t j = 0; j < m->fallback.n; j++) free(m->fallback.names[j]);
        bt_cfg_free_choices(m);
        for (size_t j = 0; j < m->ndeployments; j++)
            free(m->deployments[j].model);
        free(m->deployments);
    }
    free(c->models);
    free(c);
}

struct bt_config *bt_cfg_new(const char *path)
{
    struct bt_config *c = calloc(1, sizeof(*c));
    if (!c) return NULL;
    set_defaults(c);
    c->path = strdup(path);
    c->server.listen_host = strdup("127.0.0.1");
    c->log.level = strdup("info");
    if (!c->path || !c->server.listen_host || !c->log.level) {
        bt_cfg_free(c);
        return NULL;
    }
    return c;
}

struct bt_config *bt_config_new_default(void)
{
    return bt_cfg_new("(defaults)");
}

struct bt_config *bt_config_ref(struct bt_config *c)
{
    if (c) atomic_fetch_add_explicit(&c->refs, 1, memory_order_relaxed);
    return c;
}

void bt_config_unref(struct bt_config *c)
{
    if (!c) return;
    /* acq_rel: the freeing thread must see every other thread's last reads
     * finished before it tears the snapshot down. */
    if (atomic_fetch_sub_explicit(&c->refs, 1, memory_order_acq_rel) == 1) bt_cfg_free(c);
}

/* ---- lookups ---- */

const struct bt_model *bt_config_model(const struct bt_config *c, struct bt_str name)
{
    if (!c || !name.len) return NULL;
    for (size_t i = 0; i < c->nmodels; i++)
        if (bt_str_eq_c(name, c->models[i].name)) return &c->models[i];
    return NULL;
}

const struct bt_provider *bt_config_provider(const struct bt_config *c, struct bt_str name)
{
    if (!c || !name.len) return NULL;
    for (size_t i = 0; i < c->nproviders; i++)
        if (bt_str_eq_c(name, c->providers[i].name)) return &c->providers[i];
    return NULL;
}
