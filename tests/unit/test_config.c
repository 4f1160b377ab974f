#include "harness.h"

#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config/config.h"
#include "config/yaml.h"
#include "core/buf.h"

/* The issue's example, verbatim. */
static const char *example =
    "server:\n"
    "  listen: 127.0.0.1:4000\n"
    "auth:\n"
    "  master_key: ${BATON_MASTER_KEY}\n"
    "providers:\n"
    "  openai:\n"
    "    type: openai\n"
    "    api_key: ${OPENAI_API_KEY}\n"
    "  deepseek: {type: openai, base_url: \"https://api.deepseek.com/v1\", api_key: "
    "\"${DEEPSEEK_API_KEY}\"}\n"
    "  local:    {type: openai, base_url: \"http://127.0.0.1:8000/v1\"}\n"
    "  sim:      {type: sim}\n"
    "models:\n"
    "  gpt-4o-mini: {provider: openai}\n"
    "  deepseek-chat: {provider: deepseek}\n"
    "  chat:\n"
    "    deployments:\n"
    "      - {provider: openai, model: gpt-4o-mini}\n"
    "      - {provider: deepseek, model: deepseek-chat}\n"
    "  demo: {provider: sim}\n";

static struct bt_config *load(const char *yaml, struct bt_config_diags *d, enum bt_err *err)
{
    struct bt_config *c = (struct bt_config *)0x1; /* must be overwritten */
    enum bt_err e = bt_config_load_string("t.yaml", yaml, strlen(yaml), &c, d);
    if (err) *err = e;
    return c;
}

static size_t count(const struct bt_config_diags *d, bool errors)
{
    size_t n = 0;
    for (size_t i = 0; i < d->n; i++)
        if (d->items[i].is_error == errors) n++;
    return n;
}

/* Loads yaml expecting failure with an error at line:col whose text contains
 * `needle`. Prints what it got on mismatch. */
static bool expect_error(const char *yaml, int line, int col, const char *needle)
{
    struct bt_config_diags d = {0};
    enum bt_err err;
    struct bt_config *c = load(yaml, &d, &err);
    bool ok = err == BT_ECONFIG && c == NULL && d.n > 0;
    bool found = false;
    for (size_t i = 0; ok && i < d.n; i++) {
        const struct bt_config_diag *g = &d.items[i];
        if (g->is_error && g->line == line && g->col == col && strstr(g->msg, needle)) found = true;
    }
    if (!ok || !found) {
        fprintf(stderr, "    expected %d:%d \"%s\" (err %d) for:\n%s    got:\n", line, col, needle,
                (int)err, yaml);
        bt_config_diags_print(&d, stderr);
    }
    if (c && c != (struct bt_config *)0x1) bt_config_unref(c);
    bt_config_diags_free(&d);
    return ok && found;
}

static struct bt_config *load_ok(const char *yaml)
{
    struct bt_config_diags d = {0};
    enum bt_err err;
    struct bt_config *c = load(yaml, &d, &err);
    if (err || count(&d, true)) {
        fprintf(stderr, "    unexpected failure %d for:\n%s", (int)err, yaml);
        bt_config_diags_print(&d, stderr);
    }
    bt_config_diags_free(&d);
    return err ? NULL : c;
}

static void unset_example_env(void)
{
    unsetenv("BATON_MASTER_KEY");
    unsetenv("OPENAI_API_KEY");
    unsetenv("DEEPSEEK_API_KEY");
}

TEST(example_loads_with_warnings_only)
{
    unset_example_env();
    struct bt_config_diags d = {0};
    enum bt_err err;
    struct bt_config *c = load(example, &d, &err);
    CHECK_INT(err, BT_OK);
    REQUIRE(c);
    CHECK_INT(count(&d, true), 0);
    CHECK_INT(count(&d, false), 2);
    REQUIRE(d.n == 2);
    CHECK_INT(d.items[0].line, 8);
    CHECK_INT(d.items[0].col, 14);
    CHECK(strstr(d.items[0].msg, "provider \"openai\""));
    CHECK(strstr(d.items[0].msg, "OPENAI_API_KEY is not set"));
    CHECK(strstr(d.items[0].msg, "answer with an error"));
    CHECK_INT(d.items[1].line, 9);
    CHECK(strstr(d.items[1].msg, "provider \"deepseek\""));
    CHECK(strstr(d.items[1].msg, "DEEPSEEK_API_KEY"));

    char *out = NULL;
    size_t outlen = 0;
    FILE *f = open_memstream(&out, &outlen);
    bt_config_diags_print(&d, f);
    fclose(f);
    CHECK(strstr(out, "t.yaml:8:14: warning: provider \"openai\": api_key is empty "
                      "(OPENAI_API_KEY is not set); its models will answer with an error\n"));
    free(out);
    bt_config_diags_free(&d);

    CHECK_STR(c->server.listen_host, "127.0.0.1");
    CHECK_INT(c->server.listen_port, 4000);
    CHECK(c->auth.master_key == NULL);
    CHECK_INT(c->refs, 1);
    CHECK_INT(c->nproviders, 4);
    CHECK_INT(c->nmodels, 4);

    const struct bt_provider *oa = bt_config_provider(c, BT_STR("openai"));
    REQUIRE(oa);
    CHECK_INT(oa->type, BT_PROVIDER_OPENAI);
    CHECK_STR(oa->base_url, "https://api.openai.com/v1");
    CHECK(oa->tls);
    CHECK_STR(oa->host, "api.openai.com");
    CHECK_INT(oa->port, 443);
    CHECK_STR(oa->base_path, "/v1");
    CHECK(oa->api_key == NULL);
    CHECK(oa->api_key_required);
    CHECK_STR(oa->api_key_env, "OPENAI_API_KEY");
    CHECK_INT(oa->line, 6);
    CHECK_INT(oa->col, 3);
    CHECK_INT(oa->timeouts.connect_ms, 10000);
    CHECK_INT(oa->timeouts.first_byte_ms, 120000);
    CHECK_INT(oa->timeouts.idle_ms, 60000);
    CHECK_INT(oa->timeouts.total_ms, 600000);

    const struct bt_provider *ds = bt_config_provider(c, BT_STR("deepseek"));
    REQUIRE(ds);
    CHECK_STR(ds->host, "api.deepseek.com");
    CHECK_STR(ds->base_path, "/v1");
    CHECK_STR(ds->api_key_env, "DEEPSEEK_API_KEY");
    CHECK(ds->api_key_required && !ds->api_key);

    const struct bt_provider *lo = bt_config_provider(c, BT_STR("local"));
    REQUIRE(lo);
    CHECK(!lo->tls);
    CHECK_STR(lo->host, "127.0.0.1");
    CHECK_INT(lo->port, 8000);
    CHECK_STR(lo->base_path, "/v1");
    CHECK(!lo->api_key_required && !lo->api_key && !lo->api_key_env);

    const struct bt_provider *sim = bt_config_provider(c, BT_STR("sim"));
    REQUIRE(sim);
    CHECK_INT(sim->type, BT_PROVIDER_SIM);
    CHECK_INT(sim->sim.seed, 1);
    CHECK_INT(sim->sim.reply_tokens, 24);
    CHECK_INT(sim->sim.embedding_dims, 16);
    CHECK_INT(sim->sim.retry_after_s, 1);
    CHECK(sim->sim.fault_429 == 0 && sim->sim.tokens_per_sec == 0);
    CHECK(bt_config_provider(c, BT_STR("nope")) == NULL);
    CHECK(bt_config_provider(c, BT_STR("sim2")) == NULL);
    CHECK(bt_config_provider(c, BT_STR("si")) == NULL);

    const struct bt_model *m = bt_config_model(c, BT_STR("gpt-4o-mini"));
    REQUIRE(m && m->ndeployments == 1);
    CHECK(m->deployments[0].provider == oa);
    CHECK_STR(m->deployments[0].model, "gpt-4o-mini"); /* defaults to the public name */
    CHECK_INT(m->deployments[0].weight, 1);
    CHECK_INT(m->line, 13);
    m = bt_config_model(c, BT_STR("chat"));
    REQUIRE(m && m->ndeployments == 2);
    CHECK(m->deployments[0].provider == oa);
    CHECK_STR(m->deployments[0].model, "gpt-4o-mini");
    CHECK(m->deployments[1].provider == ds);
    CHECK_STR(m->deployments[1].model, "deepseek-chat");
    m = bt_config_model(c, BT_STR("demo"));
    REQUIRE(m && m->ndeployments == 1);
    CHECK(m->deployments[0].provider == sim);
    CHECK_STR(m->deployments[0].model, "demo");
    CHECK(bt_config_model(c, BT_STR("cha")) == NULL);
    CHECK(bt_config_model(c, BT_STR("")) == NULL);
    bt_config_unref(c);
}

TEST(example_with_keys_set)
{
    setenv("BATON_MASTER_KEY", "sk-baton-MASTERsecret-55555-66666-77777", 1);
    setenv("OPENAI_API_KEY", "sk-proj-OPENAIsecretvalue0123456789abcdefXYZ", 1);
    setenv("DEEPSEEK_API_KEY", "", 1); /* set but empty */
    struct bt_config_diags d = {0};
    enum bt_err err;
    struct bt_config *c = load(example, &d, &err);
    CHECK_INT(err, BT_OK);
    REQUIRE(c);
    CHECK_INT(d.n, 1);
    CHECK(d.n == 1 && strstr(d.items[0].msg, "DEEPSEEK_API_KEY is empty"));
    bt_config_diags_free(&d);
    CHECK_STR(c->auth.master_key, "sk-baton-MASTERsecret-55555-66666-77777");
    const struct bt_provider *oa = bt_config_provider(c, BT_STR("openai"));
    REQUIRE(oa);
    CHECK_STR(oa->api_key, "sk-proj-OPENAIsecretvalue0123456789abcdefXYZ");
    CHECK_STR(oa->api_key_env, "OPENAI_API_KEY");

    /* The table masks every secret. */
    char *out = NULL;
    size_t outlen = 0;
    FILE *f = open_memstream(&out, &outlen);
    REQUIRE(f);
    bt_config_print_table(c, f);
    fclose(f);
    CHECK(!strstr(out, "sk-proj-OPENAIsecretvalue0123456789abcdefXYZ"));
    CHECK(!strstr(out, "OPENAIsecret"));
    CHECK(!strstr(out, "MASTERsecret"));
    CHECK(!strstr(out, "abcdefXYZ"));
    CHECK(strstr(out, "sk-...fXYZ"));
    CHECK(strstr(out, "(unset: DEEPSEEK_API_KEY)"));
    CHECK(strstr(out, "master_key set"));
    CHECK(strstr(out, "openai/gpt-4o-mini"));
    CHECK(strstr(out, "deepseek/deepseek-chat"));
    CHECK(strstr(out, "sim/demo"));
    CHECK(strstr(out, "https://api.deepseek.com/v1"));
    CHECK(strstr(out, "http://127.0.0.1:8000/v1"));
    free(out);
    bt_config_unref(c);
    unset_example_env();
}

TEST(table_masks_literal_and_short_keys)
{
    const char *yaml = "providers:\n"
                       "  p1: {type: openai, base_url: \"http://127.0.0.1:9/v1\", api_key: "
                       "\"sk-literal-KEY-abcdefghijklmnopqrstuvwxyz012345\"}\n"
                       "  p2: {type: openai, api_key: tiny-key}\n"
                       "  p3: {type: openai, api_key: \"\"}\n"
                       "models:\n"
                       "  m: {provider: p1, model: up-1}\n";
    struct bt_config_diags d = {0};
    enum bt_err err;
    struct bt_config *c = load(yaml, &d, &err);
    REQUIRE(err == BT_OK && c);
    /* A literal empty key is a warning without a variable name. */
    CHECK_INT(d.n, 1);
    CHECK(d.n == 1 && !d.items[0].is_error && strstr(d.items[0].msg, "\"p3\": api_key is empty;"));
    CHECK(d.n == 1 && d.items[0].line == 4);
    bt_config_diags_free(&d);
    const struct bt_provider *p1 = bt_config_provider(c, BT_STR("p1"));
    REQUIRE(p1);
    CHECK_STR(p1->api_key, "sk-literal-KEY-abcdefghijklmnopqrstuvwxyz012345");
    CHECK(p1->api_key_env == NULL);
    char *out = NULL;
    size_t outlen = 0;
    FILE *f = open_memstream(&out, &outlen);
    REQUIRE(f);
    bt_config_print_table(c, f);
    fclose(f);
    CHECK(!strstr(out, "literal-KEY"));
    CHECK(!strstr(out, "abcdefghij"));
    CHECK(strstr(out, "sk-...2345"));
    CHECK(!strstr(out, "tiny"));
    CHECK(strstr(out, "**** (8 chars)"));
    CHECK(strstr(out, "(empty)"));
    CHECK(strstr(out, "p1/up-1"));
    CHECK(strstr(out, "master_key unset"));
    free(out);
    bt_config_unref(c);
}

TEST(defaults)
{
    struct bt_config *c = bt_config_new_default();
    REQUIRE(c);
    CHECK_INT(c->refs, 1);
    CHECK_STR(c->server.listen_host, "127.0.0.1");
    CHECK_INT(c->server.listen_port, 4000);
    CHECK_INT(c->server.workers, 0);
    CHECK_INT(c->server.max_connections, 10000);
    CHECK_INT(c->server.max_header_bytes, 64 * 1024);
    CHECK_INT(c->server.max_body_bytes, 32 * 1024 * 1024);
    CHECK_INT(c->server.header_timeout_ms, 30000);
    CHECK_INT(c->server.idle_timeout_ms, 120000);
    CHECK_INT(c->server.drain_timeout_ms, 30000);
    CHECK_INT(c->server.upstream_max_connections, 256);
    CHECK_INT(c->server.upstream_max_idle, 256); /* follows max_connections */
    CHECK_INT(c->server.upstream_max_queued, 1024);
    CHECK(!c->server.reuse_port);
    CHECK(c->auth.master_key == NULL && !c->auth.allow_anonymous);
    CHECK_STR(c->log.level, "info");
    CHECK(c->log.access == NULL && c->log.file == NULL);
    CHECK(c->nproviders == 0 && c->nmodels == 0 && !c->providers && !c->models);
    /* A caller may hand the snapshot a malloc'd string (tests do). */
    c->auth.master_key = strdup("sk-master-123");
    bt_config_unref(c);

    /* Empty files, comments only and empty sections all give defaults. */
    const char *empties[] = {"",
                             "# nothing\n",
                             "server:\nauth:\nlog:\nproviders:\nmodels:\n",
                             "server: {}\nproviders: {}\n",
                             "---\n",
                             "server: {workers: ~}\n"};
    for (size_t i = 0; i < sizeof(empties) / sizeof(empties[0]); i++) {
        c = load_ok(empties[i]);
        CHECK(c != NULL);
        if (!c) continue;
        CHECK_INT(c->server.listen_port, 4000);
        CHECK_INT(c->server.workers, 0);
        CHECK_STR(c->path, "t.yaml");
        CHECK(c->nproviders == 0 && c->nmodels == 0);
        bt_config_unref(c);
    }
}

TEST(every_key)
{
    setenv("BT_TEST_WORKERS", "3", 1);
    const char *yaml =
        "server:\n"
        "  listen: \"[::1]:8080\"\n"
        "  workers: ${BT_TEST_WORKERS}\n"
        "  max_connections: 500\n"
        "  max_header_bytes: 16KiB\n"
        "  max_body_bytes: 1MB\n"
        "  header_timeout: 250ms\n"
        "  idle_timeout: 10m\n"
        "  drain_timeout: 5\n"
        "  upstream_max_connections: 1000\n"
        "  upstream_max_idle: 100\n"
        "  upstream_max_queued: 5000\n"
        "  reuse_port: true\n"
        "auth: {master_key: literal-master, allow_anonymous: true}\n"
        "metrics: {require_key: true}\n"
        "log: {level: debug, access: /tmp/access.log, file: \"\"}\n"
        "providers:\n"
        "  up:\n"
        "    type: openai\n"
        "    base_url: \"https://[2001:db8::1]:8443/prefix/v1///\"\n"
        "    timeouts: {connect: 2s, first_byte: 30s, idle: 500ms, total: 1h}\n"
        "  s:\n"
        "    type: sim\n"
        "    seed: 42\n"
        "    ttft: 200ms\n"
        "    tokens_per_sec: 12.5\n"
        "    reply_tokens: 7\n"
        "    embedding_dims: 8\n"
        "    retry_after: 3s\n"
        "    timeouts: {total: 5s}\n"
        "    faults: {429: 0.1, 500: 0.05, 503: .05, no_answer: 0, reset_before: 0.01,\n"
        "             reset_mid: 0.01, stall_mid: 0.01, slow_bytes: 0.01, invalid_json: 0.01,\n"
        "             error_event: 0.01}\n"
        "models:\n"
        "  w:\n"
        "    deployments:\n"
        "      - {provider: up, model: a, weight: 3}\n"
        "      - {provider: s, weight: 1}\n"
        "  x: {provider: up, model: \"vendor/model-v1\"}\n";
    struct bt_config *c = load_ok(yaml);
    unsetenv("BT_TEST_WORKERS");
    REQUIRE(c);
    CHECK_STR(c->server.listen_host, "::1");
    CHECK_INT(c->server.listen_port, 8080);
    CHECK_INT(c->server.workers, 3);
    CHECK_INT(c->server.max_connections, 500);
    CHECK_INT(c->server.max_header_bytes, 16384);
    CHECK_INT(c->server.max_body_bytes, 1000000);
    CHECK_INT(c->server.header_timeout_ms, 250);
    CHECK_INT(c->server.idle_timeout_ms, 600000);
    CHECK_INT(c->server.drain_timeout_ms, 5000);
    CHECK_INT(c->server.upstream_max_connections, 1000);
    CHECK_INT(c->server.upstream_max_idle, 100);
    CHECK_INT(c->server.upstream_max_queued, 5000);
    CHECK(c->server.reuse_port);
    CHECK_STR(c->auth.master_key, "literal-master");
    CHECK(c->auth.allow_anonymous);
    CHECK(c->metrics.require_key);
    CHECK_STR(c->log.level, "debug");
    CHECK_STR(c->log.access, "/tmp/access.log");
    CHECK(c->log.file == NULL);
    const struct bt_provider *up = bt_config_provider(c, BT_STR("up"));
    REQUIRE(up);
    CHECK(up->tls);
    CHECK_STR(up->host, "2001:db8::1");
    CHECK_INT(up->port, 8443);
    CHECK_STR(up->base_path, "/prefix/v1");
    CHECK_STR(up->base_url, "https://[2001:db8::1]:8443/prefix/v1///");
    CHECK(!up->api_key_required);
    CHECK_INT(up->timeouts.connect_ms, 2000);
    CHECK_INT(up->timeouts.first_byte_ms, 30000);
    CHECK_INT(up->timeouts.idle_ms, 500);
    CHECK_INT(up->timeouts.total_ms, 3600000);
    const struct bt_provider *s = bt_config_provider(c, BT_STR("s"));
    REQUIRE(s);
    CHECK_INT(s->type, BT_PROVIDER_SIM);
    CHECK(s->base_url == NULL);
    CHECK_INT(s->sim.seed, 42);
    CHECK_INT(s->sim.ttft_ms, 200);
    CHECK(s->sim.tokens_per_sec == 12.5);
    CHECK_INT(s->sim.reply_tokens, 7);
    CHECK_INT(s->sim.embedding_dims, 8);
    CHECK_INT(s->sim.retry_after_s, 3);
    CHECK_INT(s->timeouts.total_ms, 5000);
    CHECK_INT(s->timeouts.connect_ms, 10000);
    CHECK(s->sim.fault_429 == 0.1 && s->sim.fault_500 == 0.05 && s->sim.fault_503 == 0.05);
    CHECK(s->sim.fault_no_answer == 0 && s->sim.fault_reset_before == 0.01);
    CHECK(s->sim.fault_reset_mid == 0.01 && s->sim.fault_stall_mid == 0.01);
    CHECK(s->sim.fault_slow_bytes == 0.01 && s->sim.fault_invalid_json == 0.01);
    CHECK(s->sim.fault_error_event == 0.01);
    const struct bt_model *w = bt_config_model(c, BT_STR("w"));
    REQUIRE(w && w->ndeployments == 2);
    CHECK(w->deployments[0].provider == up);
    CHECK_STR(w->deployments[0].model, "a");
    CHECK_INT(w->deployments[0].weight, 3);
    CHECK(w->deployments[1].provider == s);
    CHECK_STR(w->deployments[1].model, "w"); /* defaults to the public name */
    CHECK_INT(w->deployments[1].weight, 1);
    const struct bt_model *x = bt_config_model(c, BT_STR("x"));
    REQUIRE(x);
    CHECK_STR(x->deployments[0].model, "vendor/model-v1");
    bt_config_unref(c);
}

TEST(base_url_forms)
{
    static const struct {
        const char *url;
        bool tls;
        const char *host;
        int port;
        const char *path;
    } cases[] = {
        {"http://h", false, "h", 80, ""},
        {"https://h/", true, "h", 443, ""},
        {"HTTPS://Api.Example.com:444/v1/", true, "Api.Example.com", 444, "/v1"},
        {"http://[::1]/x", false, "::1", 80, "/x"},
        {"http://10.0.0.1:9", false, "10.0.0.1", 9, ""},
        {"http://my_host-1.internal:65535/a/b/c", false, "my_host-1.internal", 65535, "/a/b/c"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char yaml[256];
        snprintf(yaml, sizeof(yaml), "providers:\n  p: {type: openai, base_url: \"%s\"}\n",
                 cases[i].url);
        struct bt_config *c = load_ok(yaml);
        CHECK(c);
        if (!c) continue;
        const struct bt_provider *p = &c->providers[0];
        CHECK_INT(p->tls, cases[i].tls);
        CHECK_STR(p->host, cases[i].host);
        CHECK_INT(p->port, cases[i].port);
        CHECK_STR(p->base_path, cases[i].path);
        CHECK_STR(p->base_url, cases[i].url);
        bt_config_unref(c);
    }
}

TEST(listen_forms)
{
    struct bt_config *c = load_ok("server: {listen: \"0.0.0.0:80\"}\nauth: {master_key: k}\n");
    REQUIRE(c);
    CHECK_STR(c->server.listen_host, "0.0.0.0");
    CHECK_INT(c->server.listen_port, 80);
    bt_config_unref(c);
    c = load_ok("server: {listen: \"localhost:4001\"}\n");
    REQUIRE(c);
    CHECK_STR(c->server.listen_host, "127.0.0.1");
    CHECK_INT(c->server.listen_port, 4001);
    bt_config_unref(c);
    c = load_ok("server:\n  listen: '[::]:65535'\nauth: {allow_anonymous: true}\n");
    REQUIRE(c);
    CHECK_STR(c->server.listen_host, "::");
    CHECK_INT(c->server.listen_port, 65535);
    char *out = NULL;
    size_t outlen = 0;
    FILE *f = open_memstream(&out, &outlen);
    REQUIRE(f);
    bt_config_print_table(c, f);
    fclose(f);
    CHECK(strstr(out, "listen [::]:65535"));
    free(out);
    bt_config_unref(c);
}

TEST(store_ledger_keys)
{
    struct bt_config *c = load_ok("providers: {s: {type: sim}}\n");
    REQUIRE(c);
    CHECK_INT(c->store.ledger_interval_ms, 1000);
    CHECK_INT(c->store.ledger_batch, 500);
    bt_config_unref(c);
    c = load_ok("store: {ledger_interval: 250ms, ledger_batch: 7}\nproviders: {s: {type: sim}}\n");
    REQUIRE(c);
    CHECK_INT(c->store.ledger_interval_ms, 250);
    CHECK_INT(c->store.ledger_batch, 7);
    CHECK_INT(c->store.admin_timeout_ms, 10000);
    bt_config_unref(c);
    c = load_ok("store: {admin_timeout: 2s}\nproviders: {s: {type: sim}}\n");
    REQUIRE(c);
    CHECK_INT(c->store.admin_timeout_ms, 2000);
    bt_config_unref(c);
    CHECK(expect_error("store: {admin_timeout: 50ms}\n", 1, 24, "store.admin_timeout"));
    c = load_ok("providers: {s: {type: sim}}\n");
    REQUIRE(c);
    CHECK_INT(c->store.ledger_retention_ms, 0); /* kept forever */
    bt_config_unref(c);
    c = load_ok("store: {ledger_retention: 90d}\nproviders: {s: {type: sim}}\n");
    REQUIRE(c);
    CHECK_INT(c->store.ledger_retention_ms, 90ull * 86400000);
    bt_config_unref(c);
    /* shorter than a month: budgets would lose the period's spend */
    CHECK(expect_error("store: {ledger_retention: 30d}\n", 1, 27,
                       "store.ledger_retention must be from 31d to 36500d: budgets"));
    CHECK(expect_error("store: {ledger_retention: 7x}\n", 1, 27, "store.ledger_retention"));
}

TEST(errors_with_positions)
{
    /* Structure and keys */
    CHECK(expect_error("server:\n  listne: 127.0.0.1:4000\n", 2, 3,
                       "unknown key \"listne\" in server"));
    CHECK(expect_error("servers: {}\n", 1, 1, "unknown key \"servers\""));
    CHECK(expect_error("- a\n- b\n", 1, 1, "mapping of sections"));
    CHECK(expect_error("server: 5\n", 1, 9, "server must be a mapping"));
    CHECK(expect_error("server: [a]\n", 1, 9, "not a list"));
    CHECK(expect_error("auth: {bogus: 1}\n", 1, 8, "unknown key \"bogus\" in auth"));
    CHECK(expect_error("log:\n  levl: info\n", 2, 3, "unknown key \"levl\" in log"));
    CHECK(expect_error("store: {ledger_batch: 0}\n", 1, 23, "store.ledger_batch"));
    CHECK(expect_error("store: {ledger_interval: 2m}\n", 1, 26, "store.ledger_interval"));
    CHECK(expect_error("server:\n  ? [a, b]\n  : 1\n", 2, 5, "keys must be plain names"));
    CHECK(expect_error("server: {listen: {a: 1}}\n", 1, 18, "must be a single value"));
    /* Providers */
    CHECK(expect_error("providers:\n  p: {type: openai, bse_url: x}\n", 2, 21,
                       "unknown key \"bse_url\""));
    CHECK(expect_error("providers:\n  p: {type: carrier-pigeon}\n", 2, 13,
                       "unknown type \"carrier-pigeon\""));
    CHECK(expect_error("providers:\n  p: {base_url: \"http://x\"}\n", 2, 3, "type is required"));
    CHECK(expect_error("providers:\n  p:\n", 2, 3, "needs at least a type"));
    CHECK(expect_error("providers:\n  p: openai\n", 2, 6, "must be a mapping"));
    CHECK(expect_error("providers:\n  a/b: {type: sim}\n", 2, 3, "invalid provider name \"a/b\""));
    CHECK(expect_error("providers:\n  \"a b\": {type: sim}\n", 2, 3, "invalid provider name"));
    CHECK(expect_error("providers:\n  p: {type: openai, seed: 3}\n", 2, 21,
                       "\"seed\" does not apply to type openai"));
    CHECK(expect_error("providers:\n  p: {type: sim, api_key: k}\n", 2, 18,
                       "\"api_key\" does not apply to type sim"));
    CHECK(expect_error("providers:\n  p: {type: sim, base_url: \"http://x\"}\n", 2, 18,
                       "does not apply"));
    CHECK(expect_error("providers:\n  p: {type: sim, timeouts: {conect: 1s}}\n", 2, 29,
                       "unknown key \"conect\""));
    CHECK(expect_error("providers:\n  p: {type: sim, timeouts: {idle: 0}}\n", 2, 35,
                       "timeouts.idle must be from 1ms to 24h"));
    CHECK(expect_error("providers:\n  p: {type: sim, faults: {418: 0.5}}\n", 2, 27,
                       "unknown key \"418\""));
    CHECK(expect_error("providers:\n  p: {type: sim, faults: {429: 1.5}}\n", 2, 32,
                       "faults.429 must be a number from 0 to 1"));
    CHECK(
        expect_error("providers:\n  p: {type: sim, faults: {429: -0.1}}\n", 2, 32, "from 0 to 1"));
    CHECK(
        expect_error("providers:\n  p: {type: sim, faults: {429: 1e-1}}\n", 2, 32, "from 0 to 1"));
    CHECK(expect_error("providers:\n  p: {type: sim, faults: {429: 0.6, 500: 0.6}}\n", 2, 26,
                       "add up to 1.2"));
    CHECK(expect_error("providers:\n  p: {type: sim, seed: -1}\n", 2, 24,
                       "seed must be a whole number"));
    CHECK(expect_error("providers:\n  p: {type: sim, reply_tokens: 0}\n", 2, 32,
                       "reply_tokens must be a whole number from 1"));
    CHECK(expect_error("providers:\n  p: {type: sim, embedding_dims: 100000}\n", 2, 34,
                       "embedding_dims"));
    CHECK(expect_error("providers:\n  p: {type: sim, tokens_per_sec: fast}\n", 2, 34,
                       "tokens_per_sec must be a number"));
    CHECK(expect_error("providers:\n  p: {type: sim, ttft: 2 hours}\n", 2, 24,
                       "ttft must be a duration"));
    CHECK(expect_error("providers:\n  p: {type: sim, retry_after: 1500ms}\n", 2, 31,
                       "whole seconds"));
    /* base_url */
    CHECK(expect_error("providers:\n  p: {type: openai, base_url: \"ftp://x\"}\n", 2, 31,
                       "must start with http:// or https://"));
    CHECK(expect_error("providers:\n  p: {type: openai, base_url: \"https://u:pw@h/v1\"}\n", 2, 31,
                       "user:password@"));
    CHECK(expect_error("providers:\n  p: {type: openai, base_url: \"https://h/v1?x=1\"}\n", 2, 31,
                       "query"));
    CHECK(expect_error("providers:\n  p: {type: openai, base_url: \"https://h/v1#f\"}\n", 2, 31,
                       "fragment"));
    CHECK(expect_error("providers:\n  p: {type: openai, base_url: \"https://h:0/v1\"}\n", 2, 31,
                       "port must be from 1 to 65535"));
    CHECK(expect_error("providers:\n  p: {type: openai, base_url: \"https://h:99999\"}\n", 2, 31,
                       "port"));
    CHECK(expect_error("providers:\n  p: {type: openai, base_url: \"https://h:/v1\"}\n", 2, 31,
                       "port"));
    CHECK(expect_error("providers:\n  p: {type: openai, base_url: \"https:///v1\"}\n", 2, 31,
                       "no host"));
    CHECK(expect_error("providers:\n  p: {type: openai, base_url: \"http://[::g]/\"}\n", 2, 31,
                       "not an IPv6 address"));
    CHECK(expect_error("providers:\n  p: {type: openai, base_url: \"http://[::1/\"}\n", 2, 31,
                       "not a valid URL"));
    CHECK(expect_error("providers:\n  p: {type: openai, base_url: \"http://::1/\"}\n", 2, 31,
                       "in brackets"));
    CHECK(expect_error("providers:\n  p: {type: openai, base_url: \"http://a b/\"}\n", 2, 31,
                       "spaces"));
    CHECK(expect_error("providers:\n  p: {type: openai, base_url: \"\"}\n", 2, 31,
                       "base_url is empty"));
    /* Models */
    CHECK(expect_error("providers:\n  sim: {type: sim}\nmodels:\n  demo: {provider: sim}\n  "
                       "broken: {provider: nope}\n",
                       5, 22, "unknown provider \"nope\" (defined: sim)"));
    CHECK(expect_error("models:\n  m: {provider: nope}\n", 2, 17, "no providers are defined"));
    CHECK(expect_error(
        "providers: {s: {type: sim}}\nmodels:\n  m: {provider: s, deployments: [{provider: s}]}\n",
        3, 20, "not both"));
    CHECK(expect_error("providers: {s: {type: sim}}\nmodels:\n  m: {model: x}\n", 3, 3,
                       "needs provider"));
    CHECK(expect_error("providers: {s: {type: sim}}\nmodels:\n  m:\n", 3, 3, "must be a mapping"));
    CHECK(expect_error("providers: {s: {type: sim}}\nmodels:\n  m: {deployments: []}\n", 3, 20,
                       "deployments is empty"));
    CHECK(expect_error("providers: {s: {type: sim}}\nmodels:\n  m: {deployments: {provider: s}}\n",
                       3, 20, "must be a list"));
    CHECK(expect_error("providers: {s: {type: sim}}\nmodels:\n  m:\n    deployments:\n      - "
                       "{provider: s}\n      - {provider: s, wieght: 2}\n",
                       6, 23, "unknown key \"wieght\" in model \"m\" deployment 2"));
    CHECK(expect_error(
        "providers: {s: {type: sim}}\nmodels:\n  m:\n    deployments:\n      - {model: x}\n", 5, 9,
        "deployment 1: provider is required"));
    CHECK(expect_error("providers: {s: {type: sim}}\nmodels:\n  m:\n    deployments:\n      - "
                       "{provider: s, weight: 0}\n",
                       5, 31, "weight must be a whole number from 1"));
    CHECK(expect_error("providers: {s: {type: sim}}\nmodels:\n  m:\n    deployments:\n      - s\n",
                       5, 9, "must be a mapping"));
    CHECK(expect_error(
        "providers: {s: {type: sim}}\nmodels:\n  m: {deployments: [s,s,s,s,s,s,s,s,s]}\n", 3, 20,
        "at most 8 deployments"));
    CHECK(expect_error("providers: {s: {type: sim}}\nmodels:\n  m: {provider: s, model: \"\"}\n", 3,
                       27, "model is empty"));
    CHECK(expect_error("providers: {s: {type: sim}}\nmodels:\n  m: {provider: s, weight: 2}\n", 3,
                       20, "unknown key \"weight\""));
    /* Server values */
    CHECK(expect_error("server: {listen: \"127.0.0.1\"}\n", 1, 18, "HOST:PORT"));
    CHECK(
        expect_error("server: {listen: \"127.0.0.1:0\"}\n", 1, 18, "port must be from 1 to 65535"));
    CHECK(expect_error("server: {listen: \"127.0.0.1:http\"}\n", 1, 18, "port must be"));
    CHECK(expect_error("server: {listen: \":4000\"}\n", 1, 18, "host is missing"));
    CHECK(expect_error("server: {listen: \"::1:4000\"}\n", 1, 18, "in brackets"));
    CHECK(expect_error("server: {listen: \"example.com:4000\"}\n", 1, 18, "not an IP address"));
    CHECK(expect_error("server: {listen: \"[::1]4000\"}\n", 1, 18, "HOST:PORT"));
    CHECK(expect_error("server: {workers: many}\n", 1, 19,
                       "server.workers must be a whole number from 0 to 1024"));
    CHECK(expect_error("server: {workers: 5000}\n", 1, 19, "from 0 to 1024"));
    CHECK(expect_error("server: {max_connections: 0}\n", 1, 27, "max_connections"));
    CHECK(expect_error("server: {max_body_bytes: 32 MiBs}\n", 1, 26, "must be a size like"));
    CHECK(expect_error("server: {max_body_bytes: 2GiB}\n", 1, 26, "must be from 1024 to"));
    CHECK(expect_error("server: {max_header_bytes: 10}\n", 1, 28,
                       "max_header_bytes must be from 1024"));
    CHECK(expect_error("server: {header_timeout: soon}\n", 1, 26,
                       "server.header_timeout must be a duration"));
    CHECK(expect_error("server: {idle_timeout: 0ms}\n", 1, 24, "from 1ms to 24h"));
    CHECK(expect_error("server: {drain_timeout: 25h}\n", 1, 25, "to 24h"));
    CHECK(expect_error("server: {upstream_max_idle: 0}\n", 1, 29, "server.upstream_max_idle"));
    struct bt_config *up = load_ok("server: {upstream_max_connections: 1000}\n");
    REQUIRE(up);
    CHECK_INT(up->server.upstream_max_idle, 1000); /* follows upstream_max_connections */
    bt_config_unref(up);
    CHECK(expect_error("server: {upstream_max_connections: 2000000}\n", 1, 36, "server.upstream_max_connections"));
    CHECK(expect_error("auth: {allow_anonymous: yes}\n", 1, 25, "must be true or false"));
    CHECK(expect_error("log: {level: verbose}\n", 1, 14, "debug, info, warn or error"));
    /* YAML level: duplicates, tags, aliases, documents, syntax */
    CHECK(expect_error("server:\n  workers: 1\n  workers: 2\n", 3, 3,
                       "duplicate key \"workers\" (first at 2:3)"));
    CHECK(expect_error("providers:\n  a: {type: sim}\n  a: {type: sim}\n", 3, 3,
                       "duplicate key \"a\""));
    CHECK(expect_error("server:\n  workers: !!int 3\n", 2, 12, "tags (!...) are not supported"));
    CHECK(expect_error("server: *nope\n", 1, 9, "unknown alias *nope"));
    CHECK(expect_error("server: {}\n---\nserver: {}\n", 2, 1, "only one YAML document"));
    CHECK(expect_error("server:\n  listen: 127.0.0.1:4000\nproviders:\n  sim: {type: "
                       "sim\nmodels:\n  demo: {provider: sim}\n",
                       5, 7, "YAML syntax"));
    CHECK(expect_error("a: b: c\n", 1, 5, "YAML syntax"));
    CHECK(expect_error("server:\n\tlisten: x\n", 2, 1, "tab characters are not allowed"));
    /* libfyaml 0.7.12 crashes on this one (its issue #57); it must never see it. */
    CHECK(expect_error("? ::\t?", 1, 5, "tab characters are not allowed"));
    CHECK(expect_error("server: {}  # a\tcomment\n", 1, 16, "tab"));
    CHECK(expect_error("server: \"unterminated\n", 1, 10, "YAML syntax"));
    /* Expansion */
    CHECK(expect_error("server: {listen: \"${BT_T_LISTEN\"}\n", 1, 18, "unterminated \"${\""));
    CHECK(expect_error("server: {listen: \"${1ABC}\"}\n", 1, 18,
                       "invalid variable reference \"${1ABC}\""));
    CHECK(expect_error("server: {listen: \"${}\"}\n", 1, 18, "invalid variable reference"));
    CHECK(expect_error("server: {listen: \"${A-b}\"}\n", 1, 18, "unsupported form \"${A-b}\""));
    CHECK(expect_error("server: {listen: \"${A:=b}\"}\n", 1, 18, "unsupported form"));
    CHECK(expect_error("server: {listen: \"${A:-${B}}\"}\n", 1, 18, "nested"));
}

/* Joins a provider's forward_headers list with commas, for comparisons. */
static const char *fwd_list(const struct bt_provider *p, char *buf, size_t cap)
{
    size_t off = 0;
    buf[0] = 0;
    for (size_t i = 0; i < p->nforward_headers && off < cap; i++)
        off += (size_t)snprintf(buf + off, cap - off, "%s%.*s", i ? "," : "",
                                BT_STR_FMT(p->forward_headers[i]));
    return buf;
}

TEST(forward_headers_lists)
{
    setenv("BT_T_FWD", "X-From-Env", 1);
    const char *yaml = "providers:\n"
                       "  dflt: {type: openai}\n"
                       "  nulled: {type: openai, forward_headers: ~}\n"
                       "  listed:\n"
                       "    type: openai\n"
                       "    forward_headers:\n"
                       "      - openai-beta\n"
                       "      - X-Custom_1.v2\n"
                       "      - \"${BT_T_FWD}\"\n"
                       "  nothing: {type: openai, forward_headers: []}\n"
                       "  sim: {type: sim}\n"
                       "  simlisted: {type: sim, forward_headers: [OpenAI-Beta]}\n";
    struct bt_config *c = load_ok(yaml);
    REQUIRE(c);
    char buf[512];
    const struct bt_provider *p = bt_config_provider(c, BT_STR("dflt"));
    REQUIRE(p);
    CHECK_STR(fwd_list(p, buf, sizeof(buf)),
              "OpenAI-Organization,OpenAI-Project,OpenAI-Beta,Idempotency-Key");
    CHECK(!p->forward_headers_set);
    p = bt_config_provider(c, BT_STR("nulled")); /* null = not set: the default */
    REQUIRE(p);
    CHECK_INT(p->nforward_headers, 4);
    CHECK(!p->forward_headers_set);
    p = bt_config_provider(c, BT_STR("listed")); /* replaces the default */
    REQUIRE(p);
    CHECK_STR(fwd_list(p, buf, sizeof(buf)), "openai-beta,X-Custom_1.v2,X-From-Env");
    CHECK(p->forward_headers_set);
    p = bt_config_provider(c, BT_STR("nothing"));
    REQUIRE(p);
    CHECK_INT(p->nforward_headers, 0);
    CHECK(p->forward_headers_set);
    p = bt_config_provider(c, BT_STR("sim")); /* no default for the simulator */
    REQUIRE(p);
    CHECK_INT(p->nforward_headers, 0);
    p = bt_config_provider(c, BT_STR("simlisted")); /* accepted (and ignored when serving) */
    REQUIRE(p);
    CHECK_STR(fwd_list(p, buf, sizeof(buf)), "OpenAI-Beta");

    char *out = NULL;
    size_t outlen = 0;
    FILE *f = open_memstream(&out, &outlen);
    REQUIRE(f);
    bt_config_print_table(c, f);
    fclose(f);
    CHECK(strstr(out, "  dflt: forwards client headers OpenAI-Organization, OpenAI-Project, "
                      "OpenAI-Beta, Idempotency-Key (the default for its type)\n"));
    CHECK(strstr(out, "  listed: forwards client headers openai-beta, X-Custom_1.v2, X-From-Env "
                      "(forward_headers)\n"));
    CHECK(strstr(out, "  nothing: forwards no client headers (forward_headers)\n"));
    CHECK(strstr(out, "  simlisted: forwards client headers OpenAI-Beta (forward_headers: "
                      "checked; the simulator ignores them)\n"));
    CHECK(!strstr(out, "  sim: forwards"));
    free(out);
    bt_config_unref(c);
    unsetenv("BT_T_FWD");

    /* Sixteen names are allowed. */
    c = load_ok("providers:\n  p: {type: openai, forward_headers: [a1, a2, a3, a4, a5, a6, a7, "
                "a8, a9, b1, b2, b3, b4, b5, b6, b7]}\n");
    REQUIRE(c);
    CHECK_INT(c->providers[0].nforward_headers, 16);
    bt_config_unref(c);
}

TEST(forward_headers_refusals)
{
    /* Credentials, in any case: the provider gets baton's key, never the client's. */
    static const char *const creds[] = {
        "Authorization", "authorization", "x-api-key",           "X-API-Key",
        "api-key",       "Cookie",        "Proxy-Authorization", NULL};
    char yaml[256], needle[128];
    for (size_t i = 0; creds[i]; i++) {
        snprintf(yaml, sizeof(yaml), "providers:\n  p: {type: openai, forward_headers: [%s]}\n",
                 creds[i]);
        snprintf(needle, sizeof(needle), "forward_headers: %s is never forwarded (a credential",
                 creds[i]);
        CHECK(expect_error(yaml, 2, 39, needle));
    }
    /* Hop-by-hop and framing headers, and those baton writes itself. */
    static const char *const framing[] = {"Host",
                                          "Content-Length",
                                          "Transfer-Encoding",
                                          "Connection",
                                          "Keep-Alive",
                                          "TE",
                                          "Upgrade",
                                          "Trailer",
                                          "Expect",
                                          "Proxy-Connection",
                                          "Content-Encoding",
                                          "Accept-Encoding",
                                          NULL};
    for (size_t i = 0; framing[i]; i++) {
        snprintf(yaml, sizeof(yaml), "providers:\n  p: {type: openai, forward_headers: [%s]}\n",
                 framing[i]);
        CHECK(expect_error(yaml, 2, 39, "hop-by-hop or framing header"));
    }
    CHECK(expect_error("providers:\n  p: {type: openai, forward_headers: [content-type]}\n", 2, 39,
                       "content-type is never forwarded (set by baton itself)"));
    CHECK(expect_error("providers:\n  p: {type: openai, forward_headers: [Accept]}\n", 2, 39,
                       "set by baton itself"));
    CHECK(expect_error("providers:\n  p: {type: openai, forward_headers: [User-Agent]}\n", 2, 39,
                       "set by baton itself"));
    /* The position is the offending item's, in block lists too; the sim type is
     * checked the same way. */
    CHECK(
        expect_error("providers:\n  p:\n    type: sim\n    forward_headers:\n      - OpenAI-Beta\n"
                     "      - authorization\n",
                     6, 9, "provider \"p\": forward_headers: authorization is never forwarded"));
    /* Shapes and names */
    CHECK(expect_error("providers:\n  p: {type: openai, forward_headers: OpenAI-Beta}\n", 2, 38,
                       "forward_headers must be a list of header names"));
    CHECK(expect_error("providers:\n  p: {type: openai, forward_headers: {a: b}}\n", 2, 38,
                       "not a mapping"));
    CHECK(expect_error("providers:\n  p: {type: openai, forward_headers: [\"\"]}\n", 2, 39,
                       "a header name is empty"));
    CHECK(expect_error("providers:\n  p: {type: openai, forward_headers: [[a]]}\n", 2, 39,
                       "must be a single value"));
    CHECK(expect_error("providers:\n  p: {type: openai, forward_headers: [\"X Y\"]}\n", 2, 39,
                       "\"X Y\" is not a header name"));
    CHECK(expect_error("providers:\n  p: {type: openai, forward_headers: [\"X:Y\"]}\n", 2, 39,
                       "is not a header name"));
    CHECK(expect_error("providers:\n  p: {type: openai, forward_headers: [\"X-Stainless-*\"]}\n", 2,
                       39, "\"X-Stainless-*\": list header names, not patterns"));
    CHECK(expect_error("providers:\n  p: {type: openai, forward_headers: "
                       "[aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa]}\n",
                       2, 39, "1 to 64 letters"));
    CHECK(expect_error("providers:\n  p: {type: openai, forward_headers: [OpenAI-Beta, x, "
                       "openai-beta]}\n",
                       2, 55, "openai-beta is listed twice (first at 2:39)"));
    CHECK(expect_error("providers:\n  p: {type: openai, forward_headers: [a1, a2, a3, a4, a5, a6, "
                       "a7, a8, a9, b1, b2, b3, b4, b5, b6, b7, b8]}\n",
                       2, 38, "at most 16 names (got 17)"));
    /* A control character that arrives through a variable is refused like anywhere. */
    setenv("BT_T_FWD_BAD", "X-A\r\nX-B", 1);
    CHECK(expect_error("providers:\n  p: {type: openai, forward_headers: [\"${BT_T_FWD_BAD}\"]}\n",
                       2, 39, "line break or control character"));
    unsetenv("BT_T_FWD_BAD");
    /* Every problem of a list is reported in one run. */
    struct bt_config_diags d = {0};
    enum bt_err err;
    struct bt_config *c =
        load("providers:\n  p: {type: openai, forward_headers: [Host, Cookie, ok, \"a b\"]}\n", &d,
             &err);
    CHECK_INT(err, BT_ECONFIG);
    CHECK(c == NULL);
    CHECK_INT(count(&d, true), 3);
    bt_config_diags_free(&d);
}

TEST(several_errors_reported_at_once)
{
    const char *yaml = "server:\n"
                       "  workers: x\n"
                       "  bogus: 1\n"
                       "providers:\n"
                       "  p: {type: nope}\n"
                       "models:\n"
                       "  m: {provider: q}\n";
    struct bt_config_diags d = {0};
    enum bt_err err;
    struct bt_config *c = load(yaml, &d, &err);
    CHECK_INT(err, BT_ECONFIG);
    CHECK(c == NULL);
    CHECK_INT(count(&d, true), 4);
    char *out = NULL;
    size_t outlen = 0;
    FILE *f = open_memstream(&out, &outlen);
    REQUIRE(f);
    bt_config_diags_print(&d, f);
    fclose(f);
    CHECK(strstr(out, "t.yaml:2:12: error: server.workers"));
    CHECK(strstr(out, "t.yaml:3:3: error: unknown key \"bogus\""));
    CHECK(strstr(out, "t.yaml:5:13: error: provider \"p\": unknown type \"nope\""));
    CHECK(strstr(out, "t.yaml:7:17: error: model \"m\": unknown provider \"q\""));
    free(out);
    bt_config_diags_free(&d);

    /* Thousands of mistakes: the list is capped, the load still fails. */
    struct bt_buf_like {
        char *p;
        size_t len;
    } big = {0};
    FILE *g = open_memstream(&big.p, &big.len);
    REQUIRE(g);
    fputs("server:\n", g);
    for (int i = 0; i < 500; i++)
        fprintf(g, "  bad%d: 1\n", i);
    fclose(g);
    c = load(big.p, &d, &err);
    CHECK_INT(err, BT_ECONFIG);
    CHECK(c == NULL);
    CHECK_INT(d.n, BT_CONFIG_MAX_DIAGS);
    out = NULL;
    f = open_memstream(&out, &outlen);
    REQUIRE(f);
    bt_config_diags_print(&d, f);
    fclose(f);
    CHECK(strstr(out, "stopped after"));
    free(out);
    free(big.p);
    bt_config_diags_free(&d);
}

TEST(env_expansion)
{
    setenv("BT_T_HOST", "127.0.0.2", 1);
    setenv("BT_T_PORT", "4100", 1);
    setenv("BT_T_EMPTY", "", 1);
    unsetenv("BT_T_UNSET");
    setenv("BT_T_MODEL", "m-from-env", 1);
    const char *yaml = "server:\n"
                       "  listen: ${BT_T_HOST}:${BT_T_PORT}\n"
                       "  workers: ${BT_T_UNSET:-2}\n"
                       "  max_connections: ${BT_T_EMPTY:-77}\n"
                       "providers:\n"
                       "  s: {type: sim, seed: \"${BT_T_PORT:-1}\"}\n"
                       "models:\n"
                       "  a: {provider: s, model: \"${BT_T_MODEL}\"}\n"
                       "  b: {provider: s, model: 'pre-${BT_T_UNSET}-post'}\n"
                       "  c: {provider: s, model: \"cost$$5-$x-$\"}\n"
                       "  d: {provider: s, model: \"$${BT_T_MODEL}\"}\n"
                       "  e: {provider: s, model: \"${BT_T_UNSET:-up/def ault}\"}\n"
                       "  f:\n"
                       "    provider: s\n"
                       "    model: ${BT_T_UNSET:-}x\n";
    struct bt_config *c = load_ok(yaml);
    REQUIRE(c);
    CHECK_STR(c->server.listen_host, "127.0.0.2");
    CHECK_INT(c->server.listen_port, 4100);
    CHECK_INT(c->server.workers, 2);
    CHECK_INT(c->server.max_connections, 77); /* set-but-empty takes the default */
    CHECK_INT(c->providers[0].sim.seed, 4100);
    const struct bt_model *m;
    m = bt_config_model(c, BT_STR("a"));
    CHECK(m && strcmp(m->deployments[0].model, "m-from-env") == 0);
    m = bt_config_model(c, BT_STR("b"));
    CHECK(m && strcmp(m->deployments[0].model, "pre--post") == 0);
    m = bt_config_model(c, BT_STR("c"));
    CHECK(m && strcmp(m->deployments[0].model, "cost$5-$x-$") == 0);
    m = bt_config_model(c, BT_STR("d"));
    CHECK(m && strcmp(m->deployments[0].model, "${BT_T_MODEL}") == 0);
    m = bt_config_model(c, BT_STR("e"));
    CHECK(m && strcmp(m->deployments[0].model, "up/def ault") == 0);
    m = bt_config_model(c, BT_STR("f"));
    CHECK(m && strcmp(m->deployments[0].model, "x") == 0);
    bt_config_unref(c);

    /* Keys are never expanded. */
    CHECK(expect_error("server:\n  ${BT_T_KEY}: 1\n", 2, 3, "unknown key \"${BT_T_KEY}\""));
    /* An unset variable in a required value is an error naming it. */
    CHECK(expect_error("providers:\n  p: {type: openai, base_url: \"${BT_T_UNSET}\"}\n", 2, 31,
                       "base_url is empty (BT_T_UNSET is not set)"));
    CHECK(expect_error("providers:\n  p: {type: openai, base_url: \"${BT_T_EMPTY}\"}\n", 2, 31,
                       "(BT_T_EMPTY is empty)"));
    /* Master key from an empty variable counts as unset. */
    c = load_ok("auth: {master_key: \"${BT_T_EMPTY}\"}\n");
    REQUIRE(c);
    CHECK(c->auth.master_key == NULL);
    bt_config_unref(c);
    unsetenv("BT_T_HOST");
    unsetenv("BT_T_PORT");
    unsetenv("BT_T_EMPTY");
    unsetenv("BT_T_MODEL");
}

TEST(expand_function)
{
    setenv("BT_T_X", "val", 1);
    unsetenv("BT_T_NOPE");
    static const struct {
        const char *in, *out, *var;
    } ok[] = {
        {"", "", ""},
        {"plain", "plain", ""},
        {"${BT_T_X}", "val", "BT_T_X"},
        {"a${BT_T_X}b${BT_T_NOPE}c", "avalbc", "BT_T_X"},
        {"${BT_T_NOPE:-d}${BT_T_X}", "dval", "BT_T_NOPE"},
        {"${BT_T_X:-d}", "val", "BT_T_X"},
        {"$$", "$", ""},
        {"$$$$", "$$", ""},
        {"$", "$", ""},
        {"$x $ $1", "$x $ $1", ""},
        {"$${X}", "${X}", ""},
        {"${BT_T_NOPE:-a:b-c d}", "a:b-c d", "BT_T_NOPE"},
        {"${BT_T_NOPE:-$}", "$", "BT_T_NOPE"},
    };
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
        char *out = NULL, var[BT_CONFIG_MAX_VARNAME + 1], why[128];
        size_t len = 99;
        enum bt_err e = bt_config_expand(ok[i].in, strlen(ok[i].in), &out, &len, var, sizeof(var),
                                         why, sizeof(why));
        CHECK_INT(e, BT_OK);
        CHECK_STR(out, ok[i].out);
        CHECK_INT(len, strlen(ok[i].out));
        CHECK_STR(var, ok[i].var);
        free(out);
    }
    const char *bad[] = {"${",     "${X",    "${X:-y",     "a${}b", "${9}",
                         "${X+y}", "${X:y}", "${X:-${Y}}", "${-}"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char *out = (char *)0x1, why[128];
        size_t len;
        enum bt_err e =
            bt_config_expand(bad[i], strlen(bad[i]), &out, &len, NULL, 0, why, sizeof(why));
        CHECK_INT(e, BT_EPARSE);
        CHECK(out == NULL);
        CHECK(why[0] != 0);
    }
    /* A variable name past the limit. */
    char longname[BT_CONFIG_MAX_VARNAME + 8];
    memset(longname, 'A', sizeof(longname));
    longname[0] = '$';
    longname[1] = '{';
    longname[sizeof(longname) - 1] = '}';
    char *out = NULL, why[128];
    size_t len;
    CHECK_INT(bt_config_expand(longname, sizeof(longname), &out, &len, NULL, 0, why, sizeof(why)),
              BT_EPARSE);
    unsetenv("BT_T_X");
}

TEST(no_yaml_injection)
{
    /* A value that looks like YAML stays one string. */
    setenv("BT_T_EVIL", "x\", provider: other, model: y}  # {a: [", 1);
    const char *yaml = "providers:\n"
                       "  s: {type: sim}\n"
                       "models:\n"
                       "  m: {provider: s, model: \"${BT_T_EVIL}\"}\n";
    struct bt_config *c = load_ok(yaml);
    REQUIRE(c);
    CHECK_INT(c->nmodels, 1);
    CHECK_INT(c->nproviders, 1);
    CHECK_STR(c->models[0].deployments[0].model, "x\", provider: other, model: y}  # {a: [");
    bt_config_unref(c);

    /* A line break through a variable would reach an HTTP header: refused. */
    setenv("BT_T_EVIL", "sk-abc\r\nX-Injected: 1", 1);
    CHECK(expect_error("providers:\n  p: {type: openai, api_key: \"${BT_T_EVIL}\"}\n", 2, 30,
                       "api_key contains a line break"));
    setenv("BT_T_EVIL", "m\nmodels: {}", 1);
    CHECK(expect_error(yaml, 4, 27, "contains a line break"));
    unsetenv("BT_T_EVIL");
    /* And written literally, a control character is refused too. */
    CHECK(expect_error("log: {file: \"a\\tb\"}\n", 1, 13, "log.file contains"));
}

TEST(aliases_and_order)
{
    /* Anchors reuse values; models may come before providers. */
    const char *yaml =
        "models:\n"
        "  m: {provider: a, model: x}\n"
        "providers:\n"
        "  a: {type: openai, base_url: \"http://h/v1\", timeouts: &t {connect: 1s}}\n"
        "  b: {type: openai, base_url: \"http://h/v2\", timeouts: *t}\n";
    struct bt_config *c = load_ok(yaml);
    REQUIRE(c);
    CHECK_INT(c->nproviders, 2);
    CHECK_INT(c->providers[1].timeouts.connect_ms, 1000);
    CHECK(bt_config_model(c, BT_STR("m"))->deployments[0].provider == &c->providers[0]);
    bt_config_unref(c);
    /* Merge keys are not YAML 1.2: "<<" is just an unknown key. */
    CHECK(expect_error("providers:\n  a: &d {type: sim}\n  b: {<<: *d}\n", 3, 7,
                       "unknown key \"<<\""));
}

TEST(refcount)
{
    struct bt_config *c = load_ok(example);
    REQUIRE(c);
    CHECK(bt_config_ref(c) == c);
    CHECK(bt_config_ref(c) == c);
    CHECK_INT(atomic_load(&c->refs), 3);
    bt_config_unref(c);
    bt_config_unref(c);
    CHECK_INT(atomic_load(&c->refs), 1);
    CHECK_STR(c->models[0].name, "gpt-4o-mini"); /* still alive */
    bt_config_unref(c);                          /* frees: ASan/valgrind check */
    bt_config_unref(NULL);
    CHECK(bt_config_ref(NULL) == NULL);
}

TEST(load_from_file)
{
    char path[] = "/tmp/bt_test_config_XXXXXX";
    int fd = mkstemp(path);
    REQUIRE(fd >= 0);
    FILE *f = fdopen(fd, "w");
    REQUIRE(f);
    fputs("providers:\n  s: {type: sim}\nmodels:\n  demo: {provider: s}\n", f);
    fclose(f);
    struct bt_config *c = NULL;
    struct bt_config_diags d = {0};
    CHECK_INT(bt_config_load(path, &c, &d), BT_OK);
    CHECK_INT(d.n, 0);
    REQUIRE(c);
    CHECK_STR(c->path, path);
    CHECK(bt_config_model(c, BT_STR("demo")) != NULL);
    bt_config_unref(c);
    bt_config_diags_free(&d);

    f = fopen(path, "w");
    REQUIRE(f);
    fputs("server:\n  listne: 1\n", f);
    fclose(f);
    c = NULL;
    CHECK_INT(bt_config_load(path, &c, &d), BT_ECONFIG);
    CHECK(c == NULL);
    char *out = NULL;
    size_t outlen = 0;
    FILE *m = open_memstream(&out, &outlen);
    REQUIRE(m);
    bt_config_diags_print(&d, m);
    fclose(m);
    char want[128];
    snprintf(want, sizeof(want), "%s:2:3: error: unknown key \"listne\"", path);
    CHECK(strstr(out, want));
    free(out);
    bt_config_diags_free(&d);
    unlink(path);

    /* A missing file names itself. */
    CHECK_INT(bt_config_load(path, &c, &d), BT_EIO);
    CHECK(c == NULL);
    CHECK_INT(d.n, 1);
    CHECK_STR(d.path, path);
    CHECK(d.n == 1 && strstr(d.items[0].msg, "No such file"));
    out = NULL;
    m = open_memstream(&out, &outlen);
    REQUIRE(m);
    bt_config_diags_print(&d, m);
    fclose(m);
    snprintf(want, sizeof(want), "%s: error: cannot open", path);
    CHECK(strstr(out, want));
    free(out);
    bt_config_diags_free(&d);

    /* diags may be NULL; arguments are validated. */
    CHECK_INT(bt_config_load(path, &c, NULL), BT_EIO);
    CHECK_INT(bt_config_load(NULL, &c, NULL), BT_EINVAL);
    CHECK_INT(bt_config_load_string("x", NULL, 3, &c, NULL), BT_EINVAL);
    CHECK_INT(bt_config_load_string(NULL, "", 0, &c, NULL), BT_OK);
    bt_config_unref(c);
}

TEST(bytes_with_nul_and_garbage)
{
    /* NUL bytes, binary junk and deep nesting are refused without crashing. */
    const char junk[] = "server:\n  listen: \"a\\0b:1\"\n";
    struct bt_config *c = NULL;
    struct bt_config_diags d = {0};
    CHECK_INT(bt_config_load_string("t", junk, sizeof(junk) - 1, &c, &d), BT_ECONFIG);
    bt_config_diags_free(&d);
    const char bin[] = {'\x01', '\xff', '\0', ':', '[', '{'};
    CHECK(bt_config_load_string("t", bin, sizeof(bin), &c, &d) != BT_OK);
    CHECK(c == NULL);
    CHECK(d.n >= 1);
    bt_config_diags_free(&d);
    /* Bytes libfyaml must never see (0.7.12 hangs on an incomplete UTF-8
     * sequence in a directive). */
    CHECK(expect_error("%\xcf", 1, 2, "not valid UTF-8 (byte 0xcf)"));
    CHECK(expect_error("server:\n  listen: \"\xc3\xa9\xff\"\n", 2, 13, "not valid UTF-8"));
    CHECK(expect_error("server:\n  \x01listen: 1\n", 2, 3, "control character 0x01"));
    CHECK(expect_error("a: \xed\xa0\x80\n", 1, 4, "not valid UTF-8")); /* a surrogate */
    CHECK(expect_error("a: \xc0\xaf\n", 1, 4, "not valid UTF-8"));     /* overlong */
    /* Valid non-ASCII text is fine, and columns count characters. */
    struct bt_config *u = load_ok("# caf\xc3\xa9\nmodels: {}\n");
    CHECK(u != NULL);
    bt_config_unref(u);
    CHECK(expect_error("log: {l\xc3\xa9vel: x}\n", 1, 7, "unknown key"));
    /* libfyaml 0.7.12 leaks on some '' escapes (fuzzer finds), so baton
     * unescapes single-line ones itself and refuses multi-line ones. */
    struct bt_config *q = load_ok("log: {file: 'it''s ''quoted'''}\n");
    CHECK(q && strcmp(q->log.file, "it's 'quoted'") == 0);
    bt_config_unref(q);
    q = load_ok("log:\n  file: '''''''''''x'\n  access: '''g''''a'''''\n");
    CHECK(q && strcmp(q->log.file, "'''''x") == 0);
    CHECK(q && strcmp(q->log.access, "'g''a''") == 0);
    bt_config_unref(q);
    q = load_ok("log:\n  file: 'plain\n    folded'\n  access: ''\n");
    CHECK(q && strcmp(q->log.file, "plain folded") == 0 && q->log.access == NULL);
    bt_config_unref(q);
    CHECK(expect_error("log:\n  file: 'a''b\n    c'\n", 2, 9, "may not span lines"));
    char deep[400];
    size_t n = 0;
    n += (size_t)snprintf(deep, sizeof(deep), "server: ");
    for (int i = 0; i < 100; i++)
        deep[n++] = '[';
    CHECK(bt_config_load_string("t", deep, n, &c, &d) != BT_OK);
    CHECK(d.n >= 1);
    bt_config_diags_free(&d);
}

/* The first error's message for yaml (malloc'd, caller frees), or NULL when the
 * file loads. */
static char *first_error(const char *yaml)
{
    struct bt_config_diags d = {0};
    struct bt_config *c = load(yaml, &d, NULL);
    char *msg = NULL;
    for (size_t i = 0; i < d.n && !msg; i++)
        if (d.items[i].is_error) msg = strdup(d.items[i].msg);
    if (c && c != (struct bt_config *)0x1) bt_config_unref(c);
    bt_config_diags_free(&d);
    return msg;
}

static bool ends_with(const char *s, const char *tail)
{
    size_t n = strlen(s), t = strlen(tail);
    return n >= t && strcmp(s + n - t, tail) == 0;
}

TEST(messages_are_whole)
{
    /* Each list of expected keys is complete, whatever its length: the server
     * list used to end "upstream_max_idle, u)". */
    static const struct {
        const char *yaml, *tail;
    } lists[] = {
        {"nope: 1\n", "providers, models, metrics, store)"},
        {"store: {nope: 1}\n", "sqlite, postgres, redis, redis_unavailable, ledger_interval, "
                                "ledger_batch, redis_timeout, admin_timeout, ledger_retention)"},
        {"server: {nope: 1}\n", "upstream_max_idle, upstream_max_queued, reuse_port)"},
        {"auth: {nope: 1}\n", "master_key, allow_anonymous)"},
        {"log: {nope: 1}\n", "level, access, file)"},
        {"metrics: {nope: 1}\n", "(expected one of: require_key)"},
        {"providers: {p: {type: sim, nope: 1}}\n", "max_tokens_per_model, wire)"},
        {"providers: {p: {type: sim, timeouts: {nope: 1}}}\n", "idle, total)"},
        {"providers: {p: {type: sim, faults: {nope: 1}}}\n", "invalid_json, error_event)"},
        {"providers: {p: {type: openai, tls: {nope: 1}}}\n", "ca_file, verify)"},
        {"providers: {p: {type: sim}}\nmodels: {m: {provider: p, nope: 1}}\n",
         "retry, fallback, sticky, price, hedge, rules, router, limits)"},
        {"providers: {p: {type: sim}}\nmodels: {m: {deployments: [{provider: p, nope: 1}]}}\n",
         "provider, model, weight, price, limits)"},
    };
    for (size_t i = 0; i < sizeof(lists) / sizeof(lists[0]); i++) {
        char *m = first_error(lists[i].yaml);
        CHECK(m && strstr(m, "unknown key \"nope\"") && ends_with(m, lists[i].tail));
        if (m && !ends_with(m, lists[i].tail)) fprintf(stderr, "    got: %s\n", m);
        free(m);
    }
    /* A 128-character provider name and the longest key list fit in one message. */
    char name[129];
    memset(name, 'p', 128);
    name[128] = 0;
    char yaml[512];
    snprintf(yaml, sizeof(yaml), "providers:\n  %s: {type: sim, nope: 1}\n", name);
    char *m = first_error(yaml);
    CHECK(m && strstr(m, name) && ends_with(m, "max_tokens_per_model, wire)"));
    free(m);
    /* Defined providers are listed as whole names; a long list says how many it
     * left out instead of stopping mid-name. */
    struct bt_buf b;
    bt_buf_init(&b, 1 << 20);
    bt_buf_append_c(&b, "providers:\n");
    for (int i = 0; i < 40; i++)
        bt_buf_printf(&b, "  provider-number-%02d: {type: sim}\n", i);
    bt_buf_append_c(&b, "models: {m: {provider: zz}}\n");
    bt_buf_cstr(&b);
    m = first_error(b.p);
    bt_buf_free(&b);
    REQUIRE(m != NULL);
    const char *list = strstr(m, "(defined: ");
    CHECK(list && ends_with(m, " more)"));
    if (list) {
        /* every item but the count is a full name */
        char *copy = strdup(list + 10), *save = NULL;
        char *and = strstr(copy, " and ");
        if (and) *and = 0;
        int n = 0;
        for (char *t = strtok_r(copy, ", ", &save); t; t = strtok_r(NULL, ", ", &save), n++)
            CHECK(strlen(t) == 18 && strncmp(t, "provider-number-", 16) == 0);
        CHECK(n >= 5 && n < 40);
        free(copy);
    }
    free(m);
}

TEST(hedge_key)
{
    static const char two[] = "providers: {p: {type: sim}}\nmodels:\n  m:\n";
    struct bt_config *c = load_ok("providers: {p: {type: sim}}\nmodels:\n  m:\n"
                                  "    hedge: {after: 800ms}\n"
                                  "    deployments: [{provider: p, model: a}, {provider: p, model: b}]\n"
                                  "  n: {provider: p}\n");
    REQUIRE(c != NULL);
    CHECK_INT((int)c->models[0].hedge.after_ms, 800);
    CHECK_INT((int)c->models[1].hedge.after_ms, 0); /* no key: no hedge */
    bt_config_unref(c);
    char yaml[512];
#define HEDGE(v) (snprintf(yaml, sizeof(yaml), "%s    hedge: %s\n    deployments: [{provider: p, " \
                           "model: a}, {provider: p, model: b}]\n", two, v), yaml)
    CHECK(expect_error(HEDGE("{after: 0ms}"), 4, 20, "model \"m\" hedge: after"));
    CHECK(expect_error(HEDGE("{after: -5ms}"), 4, 20, "model \"m\" hedge: after"));
    CHECK(expect_error(HEDGE("{after: soon}"), 4, 20, "model \"m\" hedge: after"));
    CHECK(expect_error(HEDGE("{after: 20m}"), 4, 20, "model \"m\" hedge: after"));
    CHECK(expect_error(HEDGE("{after: 1s, count: 2}"), 4, 24, "unknown key \"count\""));
    CHECK(expect_error(HEDGE("{}"), 4, 12, "needs after: DURATION"));
    CHECK(expect_error(HEDGE("800ms"), 4, 12, "must be a mapping like {after: 800ms}"));
#undef HEDGE
    /* one deployment: there is no other to hedge on */
    CHECK(expect_error("providers: {p: {type: sim}}\nmodels:\n  m: {provider: p, hedge: {after: 1s}}\n",
                       3, 20, "hedge needs at least two deployments"));
    CHECK(expect_error("providers: {p: {type: sim}}\nmodels:\n  m:\n    hedge: {after: 1s}\n"
                       "    deployments: [{provider: p}]\n",
                       4, 5, "hedge needs at least two deployments"));
}

TEST(listen_parsing)
{
    /* server.listen and every --listen flag share one parser and its messages. */
    char host[BT_LISTEN_HOST_MAX], why[300];
    uint16_t port = 0;
#define PL(s, w)                                                                                   \
    bt_config_parse_listen(s, strlen(s), w, host, sizeof(host), &port, why, sizeof(why))
    CHECK(PL("127.0.0.1:4000", "--listen"));
    CHECK_STR(host, "127.0.0.1");
    CHECK_INT(port, 4000);
    CHECK(PL("[::1]:8080", "--listen"));
    CHECK_STR(host, "::1");
    CHECK_INT(port, 8080);
    CHECK(PL("localhost:27016", "--listen"));
    CHECK_STR(host, "127.0.0.1");
    CHECK_INT(port, 27016);
    CHECK(!PL("foo:1", "--listen"));
    CHECK_STR(why, "--listen: \"foo\" is not an IP address (use an IPv4 address, [IPv6] in "
                   "brackets, or localhost; names are not resolved)");
    CHECK(!PL("foo:1", "server.listen") && strncmp(why, "server.listen: \"foo\" is not", 27) == 0);
    CHECK(!PL(":5", "--listen") && strstr(why, "the host is missing"));
    CHECK(!PL("127.0.0.1", "--listen") && strstr(why, "HOST:PORT"));
    CHECK(!PL("h:70000", "--listen") && strstr(why, "port must be from 1 to 65535"));
    CHECK(!PL("127.0.0.1:0", "--listen") && strstr(why, "port must be"));
    CHECK(!PL("[::1:80", "--listen"));
    CHECK(!PL("::1:80", "--listen") && strstr(why, "in brackets"));
#undef PL
    CHECK(bt_config_is_loopback("127.0.0.1"));
    CHECK(bt_config_is_loopback("127.3.2.1"));
    CHECK(bt_config_is_loopback("::1"));
    CHECK(bt_config_is_loopback("localhost"));
    CHECK(!bt_config_is_loopback("0.0.0.0"));
    CHECK(!bt_config_is_loopback("10.0.0.1"));
    CHECK(!bt_config_is_loopback("::"));
    /* The flag replaces the file's address and is judged like it. */
    static const char yaml[] = "server: {listen: \"127.0.0.1:4000\"}\n";
    struct bt_config_load_opts lo = {.listen = "localhost:27016"};
    struct bt_config *c = NULL;
    struct bt_config_diags d = {0};
    CHECK_INT(bt_config_load_string_opts("t", yaml, sizeof(yaml) - 1, &lo, &c, &d), BT_OK);
    CHECK(c && strcmp(c->server.listen_host, "127.0.0.1") == 0 && c->server.listen_port == 27016);
    bt_config_unref(c);
    bt_config_diags_free(&d);
    lo.listen = "foo:1";
    CHECK_INT(bt_config_load_string_opts("t", yaml, sizeof(yaml) - 1, &lo, &c, &d), BT_ECONFIG);
    CHECK(d.n == 1 && d.items[0].line == 0 &&
          strstr(d.items[0].msg, "--listen: \"foo\" is not an IP"));
    bt_config_diags_free(&d);
}

/* Loads yaml with opts; returns the number of errors and warnings and the
 * first message of each kind in e/w (may be "" ). */
static enum bt_err load_with(const char *yaml, const char *listen, size_t *nerr, size_t *nwarn,
                             char *e, char *w, size_t cap, int *eline)
{
    struct bt_config_load_opts lo = {.listen = listen};
    struct bt_config *c = NULL;
    struct bt_config_diags d = {0};
    enum bt_err err = bt_config_load_string_opts("t.yaml", yaml, strlen(yaml), &lo, &c, &d);
    *nerr = count(&d, true);
    *nwarn = count(&d, false);
    e[0] = w[0] = 0;
    *eline = -1;
    for (size_t i = d.n; i-- > 0;) {
        if (d.items[i].is_error) {
            snprintf(e, cap, "%s", d.items[i].msg);
            *eline = d.items[i].line;
        } else {
            snprintf(w, cap, "%s", d.items[i].msg);
        }
    }
    if (c) bt_config_unref(c);
    bt_config_diags_free(&d);
    return err;
}

TEST(serve_refusals_are_config_errors)
{
    /* What serve refuses at start is a load error, so `baton check` (systemd's
     * ExecStartPre) says the same. */
    size_t ne, nw;
    int line;
    char e[512], w[512];
    CHECK_INT(
        load_with("server:\n  listen: 0.0.0.0:27990\n", NULL, &ne, &nw, e, w, sizeof(e), &line),
        BT_ECONFIG);
    CHECK(ne == 1 && line == 2);
    CHECK_STR(e,
              "server.listen: refusing to serve on 0.0.0.0 without a master key: set "
              "auth.master_key, listen on a loopback address, or set auth.allow_anonymous: true");
    CHECK_INT(load_with("server: {listen: \"[::]:1\"}\nauth: {master_key: \"${BT_T_UNSET}\"}\n",
                        NULL, &ne, &nw, e, w, sizeof(e), &line),
              BT_ECONFIG);
    CHECK(strstr(e, "refusing to serve on :: without a master key"));
    /* --listen is judged the same way, with its own name and no position. */
    CHECK_INT(load_with("server: {listen: 127.0.0.1:1}\n", "0.0.0.0:27990", &ne, &nw, e, w,
                        sizeof(e), &line),
              BT_ECONFIG);
    CHECK(line == 0 && strncmp(e, "--listen: refusing to serve on 0.0.0.0", 38) == 0);
    CHECK_INT(load_with("server: {listen: 0.0.0.0:1}\n", "127.0.0.1:27990", &ne, &nw, e, w,
                        sizeof(e), &line),
              BT_OK);
    /* A key, loopback, or allow_anonymous (which warns) make it fine. */
    CHECK_INT(load_with("server: {listen: 0.0.0.0:1}\nauth: {master_key: k}\n", NULL, &ne, &nw, e,
                        w, sizeof(e), &line),
              BT_OK);
    CHECK(ne == 0 && nw == 0);
    CHECK_INT(load_with("server: {listen: 0.0.0.0:1}\nauth: {allow_anonymous: true}\n", NULL, &ne,
                        &nw, e, w, sizeof(e), &line),
              BT_OK);
    CHECK(nw == 1 && strstr(w, "anyone who reaches 0.0.0.0 can use every model"));
    CHECK_INT(load_with("auth: {allow_anonymous: true}\n", NULL, &ne, &nw, e, w, sizeof(e), &line),
              BT_OK);
    CHECK(nw == 0);
    /* metrics.require_key without a key protects nothing: said, not refused. */
    CHECK_INT(load_with("metrics: {require_key: true}\n", NULL, &ne, &nw, e, w, sizeof(e), &line),
              BT_OK);
    CHECK(nw == 1 && strstr(w, "metrics.require_key has no effect without auth.master_key"));
    /* Log paths serve could not open for appending. */
    char dir[] = "/tmp/bt-config-test-XXXXXX";
    REQUIRE(mkdtemp(dir));
    char yaml[512];
    snprintf(yaml, sizeof(yaml), "log:\n  file: %s/missing/baton.log\n  access: %s\n", dir, dir);
    CHECK_INT(load_with(yaml, NULL, &ne, &nw, e, w, sizeof(e), &line), BT_ECONFIG);
    CHECK(ne == 2 && strstr(e, "log.file: cannot create ") &&
          strstr(e, "its directory does not exist"));
    CHECK(line == 2);
    snprintf(yaml, sizeof(yaml), "log: {access: %s}\n", dir);
    CHECK_INT(load_with(yaml, NULL, &ne, &nw, e, w, sizeof(e), &line), BT_ECONFIG);
    CHECK(strstr(e, "log.access: ") && strstr(e, "is a directory"));
    snprintf(yaml, sizeof(yaml), "log: {access: %s/a.log, file: %s/b.log}\n", dir, dir);
    CHECK_INT(load_with(yaml, NULL, &ne, &nw, e, w, sizeof(e), &line), BT_OK);
    char path[256];
    snprintf(path, sizeof(path), "%s/a.log", dir);
    CHECK(access(path, F_OK) != 0); /* checking creates nothing */
    if (geteuid() != 0) {           /* root may write anywhere */
        snprintf(path, sizeof(path), "%s/ro.log", dir);
        FILE *f = fopen(path, "w");
        REQUIRE(f);
        fclose(f);
        chmod(path, 0444);
        snprintf(yaml, sizeof(yaml), "log: {file: %s}\n", path);
        CHECK_INT(load_with(yaml, NULL, &ne, &nw, e, w, sizeof(e), &line), BT_ECONFIG);
        CHECK(strstr(e, "cannot open") && strstr(e, "for appending: Permission denied"));
        unlink(path);
    }
    rmdir(dir);
}

int main(void)
{
    RUN(example_loads_with_warnings_only);
    RUN(example_with_keys_set);
    RUN(table_masks_literal_and_short_keys);
    RUN(defaults);
    RUN(every_key);
    RUN(base_url_forms);
    RUN(listen_forms);
    RUN(store_ledger_keys);
    RUN(errors_with_positions);
    RUN(forward_headers_lists);
    RUN(forward_headers_refusals);
    RUN(several_errors_reported_at_once);
    RUN(env_expansion);
    RUN(expand_function);
    RUN(no_yaml_injection);
    RUN(aliases_and_order);
    RUN(refcount);
    RUN(load_from_file);
    RUN(bytes_with_nul_and_garbage);
    RUN(messages_are_whole);
    RUN(hedge_key);
    RUN(listen_parsing);
    RUN(serve_refusals_are_config_errors);
    return HARNESS_DONE();
}
