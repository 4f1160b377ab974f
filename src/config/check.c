/* `baton check`'s report of a loaded snapshot: the resolved model table, each
 * provider's URL and key state (secrets masked), how each is reached (proxy,
 * TLS), the client headers it forwards, and the server and auth settings. */
#include <stdio.h>

#include "learn/learn.h"
#include <string.h>

#include "config/load.h"

/* At most the last 4 characters of a secret, and only of a long one; "sk-" is
 * a public prefix and helps tell keys apart. */
static void mask_secret(const char *key, char *out, size_t cap)
{
    size_t len = strlen(key);
    if (len < 12) {
        snprintf(out, cap, "**** (%zu chars)", len);
        return;
    }
    bool sk = strncmp(key, "sk-", 3) == 0;
    snprintf(out, cap, "%s...%s", sk ? "sk-" : "", key + len - 4);
}

static void key_state(const struct bt_provider *p, char *out, size_t cap)
{
    if (p->type == BT_PROVIDER_SIM) {
        snprintf(out, cap, "-");
    } else if (p->api_key) {
        char m[48];
        mask_secret(p->api_key, m, sizeof(m));
        if (p->api_key_env)
            snprintf(out, cap, "%s (from %s)", m, p->api_key_env);
        else
            snprintf(out, cap, "%s", m);
    } else if (p->api_key_required) {
        if (p->api_key_env)
            snprintf(out, cap, "(unset: %s)", p->api_key_env);
        else
            snprintf(out, cap, "(empty)");
    } else {
        snprintf(out, cap, "(none)");
    }
}

static const char *shown_url(const struct bt_provider *p)
{
    if (p->type == BT_PROVIDER_SIM) return "(built-in simulator)";
    return p->base_url ? p->base_url : "-";
}

static int width_of(const char *s, int cur)
{
    int w = (int)strlen(s);
    return w > cur ? w : cur;
}

/* "  MODEL[ PROVIDER/MODEL]: limits rpm N, tpm N, concurrency N (per process|shared)"
 * when any is set. */
static void print_limits(FILE *f, const char *model, const char *prov, const char *dep,
                         const struct bt_limits *l, bool shared)
{
    if (!l->rpm && !l->tpm && !l->concurrency) return;
    fprintf(f, "  %s: limits%s%s%s", model, prov ? " " : "", prov ? prov : "", prov ? "/" : "");
    if (dep) fprintf(f, "%s", dep);
    const char *sep = " ";
    if (l->rpm) fprintf(f, "%srpm %lld", sep, (long long)l->rpm), sep = ", ";
    if (l->tpm) fprintf(f, "%stpm %lld", sep, (long long)l->tpm), sep = ", ";
    if (l->concurrency) fprintf(f, "%sconcurrency %lld", sep, (long long)l->concurrency);
    fprintf(f, " (%s)\n", shared ? "across instances, in redis" : "per process");
}

void bt_config_print_table(const struct bt_config *c, void *file)
{
    FILE *f = file;
    if (!c || !f) return;
    char dep[2 * BT_CFG_MAX_NAME + 80];
    int wm = 5, wd = 10, wp = 4, wt = 6, wu = 8;
    for (size_t i = 0; i < c->nmodels; i++) {
        const struct bt_model *m = &c->models[i];
        wm = width_of(m->name, wm);
        for (size_t j = 0; j < m->ndeployments; j++) {
            const struct bt_deployment *d = &m->deployments[j];
            snprintf(dep, sizeof(dep), "%s/%s", d->provider ? d->provider->name : "?",
                     d->model ? d->model : "?");
            wd = width_of(dep, wd);
        }
    }
    for (size_t i = 0; i < c->nproviders; i++) {
        wp = width_of(c->providers[i].name, wp);
        wt = width_of(bt_provider_type_name(c->providers[i].type), wt);
        wu = width_of(shown_url(&c->providers[i]), wu);
    }
    fprintf(f, "models (%zu):\n", c->nmodels);
    if (c->nmodels)
        fprintf(f, "  %-*s  %-*s  %6s  %s\n", wm, "MODEL", wd, "DEPLOYMENT", "WEIGHT", "BASE_URL");
    for (size_t i = 0; i < c->nmodels; i++) {
        const struct bt_model *m = &c->models[i];
        for (size_t j = 0; j < m->ndeployments; j++) {
            const struct bt_deployment *d = &m->deployments[j];
            snprintf(dep, sizeof(dep), "%s/%s", d->provider ? d->provider->name : "?",
                     d->model ? d->model : "?");
            fprintf(f, "  %-*s  %-*s  %6u  %s\n", wm, j == 0 ? m->name : "", wd, dep, d->weight,
                    d->provider ? shown_url(d->provider) : "-");
        }
    }
    /* Models that choose another: their rules in order, or their router. */
    for (size_t i = 0; i < c->nmodels; i++) {
        const struct bt_model *m = &c->models[i];
        char d[600];
        for (size_t j = 0; j < m->nrules; j++) {
            bt_config_describe_rule(&m->rules[j], d, sizeof(d));
            fprintf(f, "  %-*s  rule %zu: %s -> %s\n", wm, j == 0 ? m->name : "", j + 1, d,
                    m->rules[j].model_name ? m->rules[j].model_name : "?");
        }
        if (m->kind == BT_MODEL_ROUTER) {
            const struct bt_router_cfg *rc = &m->router;
            fprintf(f, "  %-*s  router %s: strong %s, weak %s, threshold %.4f", wm, m->name,
                    rc->file ? rc->file : "?", rc->strong_name ? rc->strong_name : "?",
                    rc->weak_name ? rc->weak_name : "?", rc->threshold);
            if (rc->strong_share >= 0) fprintf(f, " (strong share %.2f)", rc->strong_share);
            else if (rc->router) fprintf(f, " (the file's, for strong share %.2f)", rc->router->strong_share);
            fprintf(f, "\n");
        }
    }
    /* Each priced deployment once, in USD per million tokens. */
    for (size_t i = 0; i < c->nmodels; i++) {
        const struct bt_model *m = &c->models[i];
        for (size_t j = 0; j < m->ndeployments; j++) {
            const struct bt_deployment *d = &m->deployments[j];
            const struct bt_price *p = &d->price;
            if (p->source == BT_PRICE_NONE || !d->provider || !d->model) continue;
            char v[5][BT_DECIMAL_MAX];
            const int64_t x[5] = {p->input, p->cached_input, p->cache_write, p->output,
                                  p->reasoning};
            for (int k = 0; k < 5; k++) bt_str_decimal(v[k], sizeof(v[k]), x[k], 6);
            fprintf(f, "  %s: price %s/%s USD per million tokens: input %s, cached_input %s, "
                       "cache_write %s, output %s, reasoning %s (%s)\n",
                    m->name, d->provider->name, d->model, v[0], v[1], v[2], v[3], v[4],
                    p->source == BT_PRICE_CONFIGURED ? "price" : "shipped default of " BT_PRICES_DATE);
        }
    }
    /* Limits of models and deployments. */
    for (size_t i = 0; i < c->nmodels; i++) {
        const struct bt_model *m = &c->models[i];
        print_limits(f, m->name, NULL, NULL, &m->limits, c->store.redis != NULL);
        for (size_t j = 0; j < m->ndeployments; j++) {
            const struct bt_deployment *d = &m->deployments[j];
            if (d->provider && d->model)
                print_limits(f, m->name, d->provider->name, d->model, &d->limits,
                             c->store.redis != NULL);
        }
    }
    fprintf(f, "providers (%zu):\n", c->nproviders);
    if (c->nproviders)
        fprintf(f, "  %-*s  %-*s  %-*s  %s\n", wp, "NAME", wt, "TYPE", wu, "BASE_URL",
                "API_KEY");
    for (size_t i = 0; i < c->nproviders; i++) {
        const struct bt_provider *p = &c->providers[i];
        char ks[BT_CFG_MAX_NAME + 96];
        key_state(p, ks, sizeof(ks));
        fprintf(f, "  %-*s  %-*s  %-*s  %s\n", wp, p->name, wt,
                bt_provider_type_name(p->type), wu, shown_url(p), ks);
    }
    /* How each provider is reached, when it is not the default (system CAs,
     * verified, direct). Proxy credentials never show. */
    for (size_t i = 0; i < c->nproviders; i++) {
        const struct bt_provider *p = &c->providers[i];
        if (p->type == BT_PROVIDER_SIM) continue;
        if (p->type == BT_PROVIDER_ANTHROPIC) {
            fprintf(f, "  %s: anthropic-version %s, max_tokens when the client gives none %u",
                    p->name, p->api_version ? p->api_version : "?",
                    (unsigned)p->max_tokens_default);
            for (size_t j = 0; j < p->nmax_tokens_models; j++)
                fprintf(f, "%s%s %u", j ? ", " : " (", p->max_tokens_models[j].model,
                        (unsigned)p->max_tokens_models[j].max_tokens);
            fprintf(f, "%s\n", p->nmax_tokens_models ? ")" : "");
        }
        if (p->type == BT_PROVIDER_AZURE)
            fprintf(f, "  %s: api-version %s (deployment = the deployment's model id)\n", p->name,
                    p->api_version ? p->api_version : "?");
        if (p->proxy_host)
            fprintf(f, "  %s: proxy %s (from %s)%s\n", p->name,
                    p->proxy_shown ? p->proxy_shown : "?", p->proxy_from ? p->proxy_from : "?",
                    p->tls ? ", CONNECT tunnel" : ", absolute-form requests");
        if (p->tls && p->tls_no_verify)
            fprintf(f, "  %s: tls verify OFF (certificate not checked)\n", p->name);
        else if (p->tls && p->tls_ca_file)
            fprintf(f, "  %s: tls ca_file %s (beside the system store)\n", p->name, p->tls_ca_file);
    }
    /* The client headers each provider passes on; the simulator takes none. */
    for (size_t i = 0; i < c->nproviders; i++) {
        const struct bt_provider *p = &c->providers[i];
        if (p->type == BT_PROVIDER_SIM && !p->nforward_headers) continue;
        fprintf(f, "  %s: forwards %s", p->name,
                p->nforward_headers ? "client headers " : "no client headers");
        for (size_t j = 0; j < p->nforward_headers; j++)
            fprintf(f, "%s%.*s", j ? ", " : "", BT_STR_FMT(p->forward_headers[j]));
        if (p->type == BT_PROVIDER_SIM)
            fprintf(f, " (forward_headers: checked; the simulator ignores them)\n");
        else
            fprintf(f, " (%s)\n",
                    p->forward_headers_set ? "forward_headers" : "the default for its type");
    }
    bool v6 = c->server.listen_host && strchr(c->server.listen_host, ':');
    fprintf(f, "server: listen %s%s%s:%u, workers %s", v6 ? "[" : "",
            c->server.listen_host ? c->server.listen_host : "?", v6 ? "]" : "",
            (unsigned)c->server.listen_port, c->server.workers ? "" : "auto");
    if (c->server.workers) fprintf(f, "%u", (unsigned)c->server.workers);
    fprintf(f, ", max_connections %u, max_header_bytes %llu, max_body_bytes %llu%s\n",
            (unsigned)c->server.max_connections, (unsigned long long)c->server.max_header_bytes,
            (unsigned long long)c->server.max_body_bytes,
            c->server.reuse_port ? ", reuse_port true" : "");
    fprintf(f, "auth: master_key %s, allow_anonymous %s\n", c->auth.master_key ? "set" : "unset",
            c->auth.allow_anonymous ? "true" : "false");
    if (c->store.postgres) {
        char shown[512];
        bt_str_mask_password(c->store.postgres, shown, sizeof(shown));
        fprintf(f, "store: postgres %s\n", shown);
    } else {
        fprintf(f, "store: sqlite %s\n", c->store.sqlite ? c->store.sqlite : "-");
    }
    fprintf(f, "ledger: written every %llu ms or %u records, ",
            (unsigned long long)c->store.ledger_interval_ms, (unsigned)c->store.ledger_batch);
    if (c->store.ledger_retention_ms)
        fprintf(f, "records kept %llu days (store.ledger_retention)\n",
                (unsigned long long)(c->store.ledger_retention_ms / 86400000));
    else
        fprintf(f, "records kept forever\n");
    if (c->store.redis) {
        char shown[512];
        bt_str_mask_password(c->store.redis, shown, sizeof(shown));
        fprintf(f, "limits: shared in redis %s (unavailable: %s, timeout %llu ms)\n", shown,
                c->store.redis_closed ? "closed" : "open",
                (unsigned long long)c->store.redis_timeout_ms);
    } else {
        fprintf(f, "limits: per process (no store.redis)\n");
    }
}
