/* The anthropic, gemini and azure provider types: configuration, and each
 * adapter's encode / decode driven by the golden files under tests/golden/
 * (a request an OpenAI client sends -> the body the provider must get, or the
 * 400 it must cause; a provider's stream or reply -> the canonical events it
 * must give). Streams are also fed split at every byte boundary through the SSE
 * parser, with the same events expected. BATON_GOLDEN_WRITE=1 writes the
 * expected files that are missing (to be read and checked by hand before they
 * are committed); without it a missing file is a failure.
 * BATON_PROVIDER_DUMP=DIR writes every body the encoders make to DIR for
 * tests/integration/provider_schema.test.mjs. */
#include <dirent.h>
#include <stdlib.h>

#include "api/openai_chat.h"
#include "config/config.h"
#include "http/sse.h"
#include "harness.h"
#include "provider/anthropic.h"
#include "provider/gemini.h"
#include "provider/openai_azure.h"
#include "provider/provider.h"
#include "sim/sim.h"

#define GOLDEN "tests/golden"

/* ---- files ---- */

/* The names in `dir` ending in `suffix`, sorted; *n of them (caller frees). */
static char **list(const char *dir, const char *suffix, size_t *n)
{
    *n = 0;
    DIR *d = opendir(dir);
    if (!d) return NULL;
    char **names = NULL;
    size_t cap = 0;
    struct dirent *e;
    size_t sl = strlen(suffix);
    while ((e = readdir(d))) {
        size_t l = strlen(e->d_name);
        if (l <= sl || strcmp(e->d_name + l - sl, suffix) != 0) continue;
        if (*n == cap) {
            cap = cap ? cap * 2 : 16;
            names = realloc(names, cap * sizeof(*names));
        }
        names[(*n)++] = strdup(e->d_name);
    }
    closedir(d);
    if (*n) qsort(names, *n, sizeof(*names), h_cmp_names);
    return names;
}

/* Compares `got` with the file `path` (one trailing newline ignored); writes it
 * when missing and BATON_GOLDEN_WRITE is set. */
static bool golden_eq(const char *path, const char *got, size_t n)
{
    size_t el;
    char *exp = h_read_file(path, &el);
    if (!exp) return h_golden_missing(path, got, n);
    if (el && exp[el - 1] == '\n') el--;
    while (n && got[n - 1] == '\n') n--;
    bool ok = el == n && memcmp(exp, got, n) == 0;
    if (!ok) fprintf(stderr, "  %s differs; got:\n%.*s\n  expected:\n%.*s\n", path, (int)n, got,
                     (int)el, exp);
    free(exp);
    return ok;
}

static void dump(const char *kind, const char *name, struct bt_str body)
{
    const char *dir = getenv("BATON_PROVIDER_DUMP");
    if (!dir) return;
    char path[512];
    snprintf(path, sizeof(path), "%s/%s-%s", dir, kind, name);
    h_write_file(path, body.p, body.len);
}

/* ---- encoders over the golden requests ---- */

enum which { ANTHROPIC, GEMINI };

static void encode_dir(enum which w)
{
    const char *dir = w == ANTHROPIC ? GOLDEN "/anthropic/encode" : GOLDEN "/gemini/encode";
    size_t n;
    char **names = list(dir, ".request.json", &n);
    CHECK(n >= 5);
    for (size_t i = 0; i < n; i++) {
        char path[512], stem[256];
        size_t sl = strlen(names[i]) - strlen(".request.json");
        snprintf(stem, sizeof(stem), "%.*s", (int)sl, names[i]);
        snprintf(path, sizeof(path), "%s/%s", dir, names[i]);
        size_t len;
        char *src = h_read_file(path, &len);
        REQUIRE(src);
        struct bt_arena arena;
        bt_arena_init(&arena, 4096, 1u << 24);
        struct bt_json_doc doc;
        struct bt_chat chat;
        struct bt_chat_error cerr;
        bool parsed = bt_json_parse(&doc, src, len, &arena, NULL, NULL) == BT_OK &&
                      bt_openai_chat_decode(&doc, &arena, &chat, &cerr) == BT_OK;
        if (!parsed) H_FAIL("%s: the OpenAI decoder refused it", path);
        struct bt_buf out;
        bt_buf_init(&out, 1u << 20);
        struct bt_chat_error refused;
        enum bt_err err = BT_EINVAL;
        if (parsed)
            err = w == ANTHROPIC
                      ? bt_anthropic_encode_chat(&chat, BT_STR("claude-test"), 4096, &arena, &out,
                                                 &refused)
                      : bt_gemini_encode_chat(&chat, &arena, &out, &refused);
        char rpath[512];
        snprintf(rpath, sizeof(rpath), "%s/%s.refused.txt", dir, stem);
        char *want = h_read_file(rpath, NULL);
        if (parsed && want) {
            /* line 1: the parameter; line 2: a piece of the message */
            char *nl = strchr(want, '\n');
            REQUIRE(nl);
            *nl = 0;
            char *msg = nl + 1;
            char *nl2 = strchr(msg, '\n');
            if (nl2) *nl2 = 0;
            if (err != BT_EINVAL || strcmp(refused.param, want) != 0 ||
                !strstr(refused.message, msg))
                H_FAIL("%s: expected a 400 on `%s` saying \"%s\"; got err %d, `%s`: %s", path, want,
                       msg, (int)err, refused.param, refused.message);
        } else if (parsed) {
            if (err) H_FAIL("%s: refused (%d): %s: %s", path, (int)err, refused.param,
                            refused.message);
            char epath[512];
            snprintf(epath, sizeof(epath), "%s/%s.expected.json", dir, stem);
            /* valid JSON, and the body we expect */
            struct bt_json_doc od;
            CHECK(bt_json_parse(&od, out.p, out.len, &arena, NULL, NULL) == BT_OK);
            if (!golden_eq(epath, out.p ? out.p : "", out.len)) H_FAIL("%s", epath);
            dump(w == ANTHROPIC ? "anthropic" : "gemini", names[i], bt_buf_str(&out));
        }
        free(want);
        bt_buf_free(&out);
        bt_arena_free(&arena);
        free(src);
    }
    h_free_list(names, n);
}

TEST(anthropic_encode_golden) { encode_dir(ANTHROPIC); }
TEST(gemini_encode_golden) { encode_dir(GEMINI); }

/* ---- events as text ---- */

struct evlog {
    struct bt_buf b;
};

static const char *finish_word(enum bt_finish f)
{
    const char *s = bt_finish_name(f);
    return *s ? s : "none";
}

static void on_ev(void *ud, const struct bt_event *ev)
{
    struct bt_buf *b = &((struct evlog *)ud)->b;
    switch (ev->type) {
    case BT_EV_START:
        bt_buf_printf(b, "START c=%u id=%.*s model=%.*s\n", ev->choice, BT_STR_FMT(ev->id),
                      BT_STR_FMT(ev->name));
        break;
    case BT_EV_TEXT:
        bt_buf_printf(b, "TEXT c=%u b=%u \"%.*s\"\n", ev->choice, ev->block, BT_STR_FMT(ev->text));
        break;
    case BT_EV_REASONING:
        bt_buf_printf(b, "REASONING c=%u b=%u%s \"%.*s\" sig=\"%.*s\"\n", ev->choice, ev->block,
                      ev->redacted ? " redacted" : "", BT_STR_FMT(ev->text),
                      BT_STR_FMT(ev->signature));
        break;
    case BT_EV_TOOL_START:
        bt_buf_printf(b, "TOOL_START c=%u i=%u b=%u id=%.*s name=%.*s\n", ev->choice,
                      ev->tool_index, ev->block, BT_STR_FMT(ev->id), BT_STR_FMT(ev->name));
        break;
    case BT_EV_TOOL_ARGS:
        bt_buf_printf(b, "TOOL_ARGS c=%u i=%u \"%.*s\"\n", ev->choice, ev->tool_index,
                      BT_STR_FMT(ev->text));
        break;
    case BT_EV_FINISH:
        bt_buf_printf(b, "FINISH c=%u %s\n", ev->choice, finish_word(ev->finish));
        break;
    case BT_EV_USAGE:
        bt_buf_printf(b,
                      "USAGE prompt=%lld completion=%lld total=%lld cache_read=%lld "
                      "cache_write=%lld reasoning=%lld\n",
                      (long long)ev->usage.prompt_tokens, (long long)ev->usage.completion_tokens,
                      (long long)ev->usage.total_tokens, (long long)ev->usage.cache_read_tokens,
                      (long long)ev->usage.cache_write_tokens,
                      (long long)ev->usage.reasoning_tokens);
        break;
    case BT_EV_ERROR:
        bt_buf_printf(b, "ERROR %s type=%.*s code=%.*s \"%.*s\"\n", bt_outcome_name(ev->outcome),
                      BT_STR_FMT(ev->err_type), BT_STR_FMT(ev->err_code),
                      BT_STR_FMT(ev->err_message));
        break;
    case BT_EV_DONE: bt_buf_printf(b, "DONE\n"); break;
    case BT_EV_BLOCK_STOP: bt_buf_printf(b, "BLOCK_STOP c=%u b=%u\n", ev->choice, ev->block); break;
    case BT_EV_REFUSAL:
        bt_buf_printf(b, "REFUSAL c=%u \"%.*s\"\n", ev->choice, BT_STR_FMT(ev->text));
        break;
    }
}

struct feed {
    const struct bt_adapter *ad;
    struct evlog *log;
    int kinds[8]; /* classify results seen, by kind */
};

static int on_sse(void *ud, const struct bt_sse_event *ev)
{
    struct feed *f = ud;
    enum bt_ev_kind k = f->ad->classify_event(ev, false, true);
    if (k > 0 && k < 8) f->kinds[k]++;
    if (!ev->has_data) return 0;
    struct bt_arena a;
    bt_arena_init(&a, 4096, 1u << 22);
    struct bt_json_doc doc;
    if (bt_json_parse(&doc, ev->data.p, ev->data.len, &a, NULL, NULL) == BT_OK)
        f->ad->decode_event(&doc, on_ev, f->log);
    else
        bt_buf_printf(&f->log->b, "INVALID\n");
    bt_arena_free(&a);
    return 0;
}

/* The events of `src` fed in two pieces split at `cut`. */
static void feed_stream(const struct bt_adapter *ad, const char *src, size_t len, size_t cut,
                        struct evlog *log, int *kinds)
{
    struct feed f = {.ad = ad, .log = log};
    struct bt_sse p;
    bt_sse_init(&p, 1u << 20, on_sse, &f);
    CHECK(bt_sse_feed(&p, src, cut) == BT_OK);
    CHECK(bt_sse_feed(&p, src + cut, len - cut) == BT_OK);
    CHECK(!bt_sse_partial(&p));
    bt_sse_free(&p);
    if (kinds) memcpy(kinds, f.kinds, sizeof(f.kinds));
}

static void events_dir(const struct bt_adapter *ad, const char *dir)
{
    size_t n;
    char **names = list(dir, "", &n);
    size_t seen = 0;
    for (size_t i = 0; i < n; i++) {
        size_t l = strlen(names[i]);
        bool sse = l > 4 && strcmp(names[i] + l - 4, ".sse") == 0;
        bool json = l > 5 && strcmp(names[i] + l - 5, ".json") == 0;
        if (!sse && !json) continue;
        seen++;
        char path[512], epath[512];
        snprintf(path, sizeof(path), "%s/%s", dir, names[i]);
        snprintf(epath, sizeof(epath), "%s/%.*s.events", dir, (int)(l - (sse ? 4 : 5)), names[i]);
        size_t len;
        char *src = h_read_file(path, &len);
        REQUIRE(src);
        struct evlog whole = {0};
        bt_buf_init(&whole.b, 1u << 20);
        if (sse) {
            int kinds[8];
            feed_stream(ad, src, len, len, &whole, kinds);
            CHECK(kinds[BT_EVK_INVALID] == 0);
            for (size_t cut = 0; cut < len; cut++) {
                struct evlog part = {0};
                bt_buf_init(&part.b, 1u << 20);
                feed_stream(ad, src, len, cut, &part, NULL);
                if (part.b.len != whole.b.len || memcmp(part.b.p, whole.b.p, part.b.len) != 0) {
                    H_FAIL("%s split at %zu gives other events", path, cut);
                    bt_buf_free(&part.b);
                    break;
                }
                bt_buf_free(&part.b);
            }
        } else {
            struct bt_arena a;
            bt_arena_init(&a, 4096, 1u << 22);
            struct bt_json_doc doc;
            CHECK(bt_json_parse(&doc, src, len, &a, NULL, NULL) == BT_OK);
            ad->decode_reply(&doc, on_ev, &whole);
            bt_arena_free(&a);
        }
        if (!golden_eq(epath, whole.b.p ? whole.b.p : "", whole.b.len)) H_FAIL("%s", epath);
        bt_buf_free(&whole.b);
        free(src);
    }
    CHECK(seen >= 5);
    h_free_list(names, n);
}

TEST(anthropic_events_golden) { events_dir(&bt_adapter_anthropic, GOLDEN "/anthropic/events"); }
TEST(gemini_events_golden) { events_dir(&bt_adapter_gemini, GOLDEN "/gemini/events"); }

/* ---- classify ---- */

static enum bt_ev_kind classify(const struct bt_adapter *ad, const char *event, const char *data,
                                bool first_seen)
{
    struct bt_sse_event ev = {.event = bt_str_c(event), .data = bt_str_c(data),
                              .has_data = *data != 0};
    return ad->classify_event(&ev, first_seen, false);
}

TEST(classify_events)
{
    const struct bt_adapter *a = &bt_adapter_anthropic, *g = &bt_adapter_gemini;
    CHECK_INT(classify(a, "message_stop", "{\"type\":\"message_stop\"}", true), BT_EVK_DONE);
    CHECK_INT(classify(a, "ping", "{\"type\":\"ping\"}", true), BT_EVK_RELAY);
    CHECK_INT(classify(a, "content_block_delta", "{\"type\":\"content_block_delta\"}", true),
              BT_EVK_PLAIN);
    CHECK_INT(classify(a, "content_block_delta", "{\"type\":\"content_block_delta\"}", false),
              BT_EVK_DECODE);
    CHECK_INT(classify(a, "message_delta", "{\"type\":\"message_delta\"}", true), BT_EVK_DECODE);
    CHECK_INT(classify(a, "error", "{\"type\":\"error\"}", true), BT_EVK_DECODE);
    CHECK_INT(classify(a, "content_block_delta", "{\"type\":", true), BT_EVK_INVALID);
    CHECK_INT(classify(g, "", "{\"candidates\":[{\"content\":{}}]}", true), BT_EVK_PLAIN);
    CHECK_INT(classify(g, "", "{\"candidates\":[{\"finishReason\":\"STOP\"}]}", true),
              BT_EVK_DECODE);
    CHECK_INT(classify(g, "", "[{\"error\":{}}]", true), BT_EVK_DECODE);
    CHECK_INT(classify(g, "", "{\"candidates\":[]}", false), BT_EVK_DECODE);
    CHECK_INT(classify(g, "", "not json", true), BT_EVK_INVALID);
}

/* ---- errors ---- */

static enum bt_outcome err_class(const struct bt_adapter *ad, int status, const char *body)
{
    struct bt_arena a;
    bt_arena_init(&a, 4096, 1u << 20);
    struct bt_perror pe;
    ad->decode_error(status, bt_str_c(body), &a, &pe);
    bt_arena_free(&a);
    return pe.cls;
}

TEST(error_classes)
{
    const struct bt_adapter *a = &bt_adapter_anthropic, *g = &bt_adapter_gemini;
#define AERR(t, m) "{\"type\":\"error\",\"error\":{\"type\":\"" t "\",\"message\":\"" m "\"}}"
    CHECK_INT(err_class(a, 429, AERR("rate_limit_error", "slow down")), BT_OUTCOME_RATE_LIMIT);
    CHECK_INT(err_class(a, 529, AERR("overloaded_error", "Overloaded")), BT_OUTCOME_SERVER_ERROR);
    CHECK_INT(err_class(a, 500, AERR("api_error", "oops")), BT_OUTCOME_SERVER_ERROR);
    CHECK_INT(err_class(a, 400, AERR("invalid_request_error", "prompt is too long: 210000 tokens "
                                                              "> 200000 maximum")),
              BT_OUTCOME_CONTEXT_WINDOW);
    CHECK_INT(err_class(a, 400, AERR("invalid_request_error", "max_tokens: field required")),
              BT_OUTCOME_BAD_REQUEST);
    CHECK_INT(err_class(a, 401, AERR("authentication_error", "invalid x-api-key")),
              BT_OUTCOME_AUTH);
    CHECK_INT(err_class(a, 403, AERR("permission_error", "no")), BT_OUTCOME_AUTH);
    CHECK_INT(err_class(a, 413, AERR("request_too_large", "too big")), BT_OUTCOME_BAD_REQUEST);
    CHECK_INT(err_class(a, 502, "<html>bad gateway</html>"), BT_OUTCOME_SERVER_ERROR);
#define GERR(c, s, m) "{\"error\":{\"code\":" c ",\"message\":\"" m "\",\"status\":\"" s "\"}}"
    CHECK_INT(err_class(g, 429, GERR("429", "RESOURCE_EXHAUSTED", "quota")), BT_OUTCOME_RATE_LIMIT);
    CHECK_INT(err_class(g, 400, GERR("400", "INVALID_ARGUMENT", "bad field")),
              BT_OUTCOME_BAD_REQUEST);
    CHECK_INT(err_class(g, 400, GERR("400", "INVALID_ARGUMENT",
                                     "The input token count (1200000) exceeds the maximum number "
                                     "of tokens allowed (1048576).")),
              BT_OUTCOME_CONTEXT_WINDOW);
    CHECK_INT(err_class(g, 403, GERR("403", "PERMISSION_DENIED", "key")), BT_OUTCOME_AUTH);
    CHECK_INT(err_class(g, 401, GERR("401", "UNAUTHENTICATED", "key")), BT_OUTCOME_AUTH);
    CHECK_INT(err_class(g, 503, GERR("503", "UNAVAILABLE", "overloaded")),
              BT_OUTCOME_SERVER_ERROR);
    CHECK_INT(err_class(g, 429, "[" GERR("429", "RESOURCE_EXHAUSTED", "q") "]"),
              BT_OUTCOME_RATE_LIMIT);
    struct bt_arena ar;
    bt_arena_init(&ar, 4096, 1u << 20);
    struct bt_perror pe;
    a->decode_error(429, bt_str_c(AERR("rate_limit_error", "slow \\\"down\\\"")), &ar, &pe);
    CHECK_SLICE(pe.type, "rate_limit_error");
    CHECK_SLICE(pe.message, "slow \"down\"");
    bt_arena_free(&ar);
}

/* ---- config, headers, paths ---- */

static struct bt_config *load(const char *yaml)
{
    struct bt_config_diags d = {0};
    struct bt_config *c = NULL;
    enum bt_err err = bt_config_load_string("t.yaml", yaml, strlen(yaml), &c, &d);
    if (err) bt_config_diags_print(&d, stderr);
    bt_config_diags_free(&d);
    return err ? NULL : c;
}

static const char *const CONFIG =
    "providers:\n"
    "  claude: {type: anthropic, api_key: sk-ant-k, max_tokens_default: 1000,\n"
    "           max_tokens_per_model: {big: 32000}}\n"
    "  gem: {type: gemini, api_key: AIza-k}\n"
    "  az: {type: azure, base_url: \"https://r.openai.azure.com\", api_key: azk,\n"
    "       api_version: \"2024-10-21\"}\n";

static size_t count_cred(const struct bt_http_header *hs, size_t n, const char **name)
{
    static const char *const creds[] = {"authorization", "x-api-key", "x-goog-api-key", "api-key"};
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        for (size_t j = 0; j < 4; j++)
            if (bt_str_caseeq_c(hs[i].name, creds[j])) {
                k++;
                *name = creds[j];
            }
    return k;
}

static struct bt_str header(const struct bt_http_header *hs, size_t n, const char *name)
{
    for (size_t i = 0; i < n; i++)
        if (bt_str_caseeq_c(hs[i].name, name)) return hs[i].value;
    return BT_STR_NULL;
}

TEST(config_and_headers)
{
    struct bt_config *c = load(CONFIG);
    REQUIRE(c);
    const struct bt_provider *pa = bt_config_provider(c, BT_STR("claude"));
    const struct bt_provider *pg = bt_config_provider(c, BT_STR("gem"));
    const struct bt_provider *pz = bt_config_provider(c, BT_STR("az"));
    REQUIRE(pa && pg && pz);
    CHECK_STR(pa->base_url, "https://api.anthropic.com");
    CHECK_STR(pa->base_path, "");
    CHECK_STR(pg->base_url, "https://generativelanguage.googleapis.com");
    CHECK_STR(pa->api_version, "2023-06-01");
    CHECK_INT(bt_provider_max_tokens(pa, BT_STR("big")), 32000);
    CHECK_INT(bt_provider_max_tokens(pa, BT_STR("small")), 1000);
    CHECK(bt_adapter_for(pa) == &bt_adapter_anthropic);
    CHECK(bt_adapter_for(pg) == &bt_adapter_gemini);
    CHECK(bt_adapter_for(pz) == &bt_adapter_azure);
    CHECK_STR(bt_provider_type_name(pz->type), "azure");
    struct {
        const struct bt_provider *p;
        const char *cred;
        const char *key;
    } cases[] = {{pa, "x-api-key", "sk-ant-k"}, {pg, "x-goog-api-key", "AIza-k"},
                 {pz, "api-key", "azk"}};
    for (size_t i = 0; i < 3; i++) {
        struct bt_http_header hs[8];
        char scratch[256];
        enum bt_err err;
        size_t n = bt_adapter_for(cases[i].p)->headers(cases[i].p, true, hs, 8, scratch,
                                                       sizeof(scratch), &err);
        CHECK_INT(err, BT_OK);
        const char *name = NULL;
        CHECK_INT(count_cred(hs, n, &name), 1); /* exactly one credential header, its own */
        CHECK_STR(name, cases[i].cred);
        CHECK_SLICE(header(hs, n, cases[i].cred), cases[i].key);
        CHECK_SLICE(header(hs, n, "accept"), "text/event-stream");
        CHECK_SLICE(header(hs, n, "content-type"), "application/json");
    }
    struct bt_http_header hs[8];
    char scratch[64];
    enum bt_err err;
    size_t n = bt_adapter_anthropic.headers(pa, false, hs, 8, scratch, sizeof(scratch), &err);
    CHECK_SLICE(header(hs, n, "anthropic-version"), "2023-06-01");
    bt_config_unref(c);
}

TEST(config_refusals)
{
    static const char *const bad[] = {
        "providers: {az: {type: azure, base_url: \"https://r.openai.azure.com\"}}\n",
        "providers: {az: {type: azure, api_version: \"2024-10-21\"}}\n",
        "providers: {c: {type: anthropic, api_version: \"1\"}}\n",
        "providers: {c: {type: anthropic, anthropic_version: \"a b\"}}\n",
        "providers: {c: {type: anthropic, max_tokens_default: 0}}\n",
        "providers: {c: {type: anthropic, max_tokens_per_model: {m: -1}}}\n",
        "providers: {g: {type: gemini, max_tokens_default: 10}}\n",
        "providers: {g: {type: gemini, seed: 1}}\n",
        "providers: {g: {type: vertex}}\n",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct bt_config_diags d = {0};
        struct bt_config *c = NULL;
        enum bt_err err = bt_config_load_string("t.yaml", bad[i], strlen(bad[i]), &c, &d);
        if (err != BT_ECONFIG) H_FAIL("accepted: %s", bad[i]);
        CHECK(d.n > 0 && d.items[0].line >= 1 && d.items[0].col >= 1);
        if (c) bt_config_unref(c);
        bt_config_diags_free(&d);
    }
}

/* bt_provider_encode: the provider's settings reach the encoder (max_tokens
 * per model), and the per-request path is set (Gemini's method, Azure's
 * deployment and api-version). */
TEST(provider_encode_paths)
{
    struct bt_config *c = load(CONFIG);
    REQUIRE(c);
    const char *body = "{\"model\":\"x\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],"
                       "\"stream\":true}";
    struct bt_arena arena;
    bt_arena_init(&arena, 4096, 1u << 22);
    struct bt_request r = {.api = BT_API_OPENAI, .op = BT_OP_CHAT, .stream = true,
                           .body_bytes = (uint32_t)strlen(body)};
    REQUIRE(bt_json_parse(&r.doc, body, strlen(body), &arena, NULL, NULL) == BT_OK);
    r.tok_model = bt_json_get(&r.doc, 0, "model");
    struct bt_chat chat;
    struct bt_chat_error cerr;
    REQUIRE(bt_openai_chat_decode(&r.doc, &arena, &chat, &cerr) == BT_OK);
    r.chat = &chat;
    struct bt_pbody pb;
    bool added;
    const struct bt_provider *pa = bt_config_provider(c, BT_STR("claude"));
    CHECK_INT(bt_provider_encode(pa, &r, BT_STR("big"), &arena, &pb, &added), BT_OK);
    CHECK_INT(pb.n, 1);
    CHECK(pb.n == 1 && memmem(pb.parts[0].p, pb.parts[0].len, "\"max_tokens\":32000", 18));
    CHECK_INT(pb.path.len, 0);
    CHECK(!added);
    const struct bt_provider *pg = bt_config_provider(c, BT_STR("gem"));
    CHECK_INT(bt_provider_encode(pg, &r, BT_STR("models/gemini-2.5-flash"), &arena, &pb, &added),
              BT_OK);
    CHECK_SLICE(pb.path, "/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse");
    const struct bt_provider *pz = bt_config_provider(c, BT_STR("az"));
    CHECK_INT(bt_provider_encode(pz, &r, BT_STR("my gpt4o"), &arena, &pb, &added), BT_OK);
    CHECK_SLICE(pb.path, "/openai/deployments/my%20gpt4o/chat/completions?api-version=2024-10-21");
    CHECK(added); /* the OpenAI fast path asks for stream usage */
    /* without a canonical request, a translating adapter refuses with a 400 */
    r.chat = NULL;
    CHECK_INT(bt_provider_encode(pg, &r, BT_STR("g"), &arena, &pb, &added), BT_EINVAL);
    CHECK(pb.refused.message[0] != 0);
    /* an Anthropic client to an Anthropic provider: its bytes, model spliced */
    r.api = BT_API_ANTHROPIC;
    CHECK_INT(bt_provider_encode(pa, &r, BT_STR("claude-x"), &arena, &pb, &added), BT_OK);
    struct bt_buf joined;
    bt_buf_init(&joined, 1 << 16);
    for (size_t i = 0; i < pb.n; i++) bt_buf_append_str(&joined, pb.parts[i]);
    CHECK(joined.len && memmem(joined.p, joined.len, "\"model\":\"claude-x\"", 18));
    bt_buf_free(&joined);
    struct bt_str gp = bt_gemini_path(BT_STR("gemini-2.0-flash"), false, &arena);
    CHECK_SLICE(gp, "/v1beta/models/gemini-2.0-flash:generateContent");
    bt_arena_free(&arena);
    bt_config_unref(c);
}

/* ---- the simulator in each wire, read back by the adapter ---- */

struct col {
    int status;
    struct bt_buf body;
    enum bt_err err;
    bool done;
};

static void c_head(void *ud, int status, const struct bt_http_header *h, size_t n)
{
    (void)h;
    (void)n;
    ((struct col *)ud)->status = status;
}

static void c_data(void *ud, const char *p, size_t n)
{
    bt_buf_append(&((struct col *)ud)->body, p, n);
}

static void c_done(void *ud, enum bt_err err, const char *detail)
{
    (void)detail;
    struct col *c = ud;
    c->err = err;
    c->done = true;
}

static const struct bt_up_callbacks col_cbs = {c_head, c_data, c_done, NULL};

/* Encodes an OpenAI-shaped request for provider `p` (a sim with `wire:`),
 * runs it on the simulator, and returns the events its reply decodes into,
 * as text. The raw reply goes to BATON_PROVIDER_DUMP as `sim-NAME`. */
static void sim_run(const struct bt_provider *p, const char *body, const char *name,
                    struct bt_buf *events, int *status, const char *fault)
{
    struct bt_arena arena;
    bt_arena_init(&arena, 4096, 1u << 22);
    struct bt_request r = {.api = BT_API_OPENAI, .op = BT_OP_CHAT,
                           .body_bytes = (uint32_t)strlen(body)};
    if (bt_json_parse(&r.doc, body, strlen(body), &arena, NULL, NULL) != BT_OK) {
        H_FAIL("bad test body");
        return;
    }
    struct bt_chat chat;
    struct bt_chat_error cerr;
    if (bt_openai_chat_decode(&r.doc, &arena, &chat, &cerr) != BT_OK) {
        H_FAIL("decode: %s", cerr.message);
        return;
    }
    r.chat = &chat;
    r.stream = chat.stream;
    struct bt_pbody pb;
    bool added;
    if (bt_provider_encode(p, &r, BT_STR("sim-model"), &arena, &pb, &added) != BT_OK) {
        H_FAIL("encode: %s", pb.refused.message);
        return;
    }
    const struct bt_adapter *ad = bt_adapter_for(p);
    struct bt_sim_cfg cfg = p->sim;
    if (fault) {
        int f = bt_sim_fault_parse(bt_str_c(fault));
        if (f == BT_SIM_FAULT_429) cfg.fault_429 = 1;
        if (f == BT_SIM_FAULT_503) cfg.fault_503 = 1;
        if (f == BT_SIM_FAULT_ERROR_EVENT) cfg.fault_error_event = 1;
    }
    struct bt_provider sp = *p;
    sp.sim = cfg;
    uv_loop_t loop;
    uv_loop_init(&loop);
    struct col c = {0};
    bt_buf_init(&c.body, 1u << 22);
    struct bt_pcall call;
    CHECK_INT(bt_provider_start(&sp, &loop, NULL, BT_OP_CHAT, r.stream, &pb, &col_cbs, &c, &call),
              BT_OK);
    uv_run(&loop, UV_RUN_DEFAULT);
    uv_loop_close(&loop);
    CHECK(c.done);
    *status = c.status;
    dump("sim", name, bt_buf_str(&c.body));
    struct evlog log = {0};
    bt_buf_init(&log.b, 1u << 20);
    if (c.status != 200) {
        struct bt_perror pe;
        ad->decode_error(c.status, bt_buf_str(&c.body), &arena, &pe);
        bt_buf_printf(&log.b, "HTTP %d %s\n", c.status, bt_outcome_name(pe.cls));
    } else if (r.stream) {
        int kinds[8];
        feed_stream(ad, c.body.p ? c.body.p : "", c.body.len, c.body.len, &log, kinds);
        CHECK(kinds[BT_EVK_INVALID] == 0);
    } else {
        struct bt_json_doc doc;
        CHECK(bt_json_parse(&doc, c.body.p, c.body.len, &arena, NULL, NULL) == BT_OK);
        ad->decode_reply(&doc, on_ev, &log);
    }
    bt_buf_append_str(events, bt_buf_str(&log.b));
    bt_buf_free(&log.b);
    bt_buf_free(&c.body);
    bt_arena_free(&arena);
}

static bool has_line(const struct bt_buf *b, const char *prefix)
{
    return b->len && memmem(b->p, b->len, prefix, strlen(prefix)) != NULL;
}

TEST(sim_renders_each_wire)
{
    struct bt_config *c = load("providers:\n"
                               "  sa: {type: sim, wire: anthropic, reply_tokens: 5}\n"
                               "  sg: {type: sim, wire: gemini, reply_tokens: 5}\n");
    REQUIRE(c);
    const char *text = "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]";
    const char *tools = "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"w?\"}],"
                        "\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"get_weather\","
                        "\"parameters\":{\"type\":\"object\",\"properties\":{\"city\":{\"type\":"
                        "\"string\"}},\"required\":[\"city\"]}}}]";
    const char *names[] = {"sa", "sg"};
    for (int wi = 0; wi < 2; wi++) {
        const struct bt_provider *p = bt_config_provider(c, bt_str_c(names[wi]));
        REQUIRE(p);
        for (int t = 0; t < 2; t++)
            for (int stream = 0; stream < 2; stream++) {
                char body[1024], name[64];
                snprintf(body, sizeof body, "%s%s}", t ? tools : text,
                         stream ? ",\"stream\":true" : "");
                snprintf(name, sizeof name, "%s-%s-%s.%s", names[wi], t ? "tools" : "text",
                         stream ? "stream" : "whole", stream ? "sse" : "json");
                struct bt_buf ev;
                bt_buf_init(&ev, 1u << 20);
                int status = 0;
                sim_run(p, body, name, &ev, &status, NULL);
                CHECK_INT(status, 200);
                bool ok = has_line(&ev, "START c=0") && has_line(&ev, "USAGE prompt=") &&
                          has_line(&ev, "\nDONE") &&
                          (t ? has_line(&ev, "TOOL_START c=0") && has_line(&ev, "TOOL_ARGS") &&
                                   has_line(&ev, "FINISH c=0 tool_calls")
                             : has_line(&ev, "TEXT c=0") && has_line(&ev, "FINISH c=0 stop"));
                if (!ok) H_FAIL("%s: events:\n%.*s", name, (int)ev.len, ev.p ? ev.p : "");
                bt_buf_free(&ev);
            }
        /* faults in the wire's own error shapes */
        static const struct {
            const char *fault, *want;
        } faults[] = {{"429", "HTTP 429 rate_limit"}, {"503", "server_error"},
                      {"error_event", "ERROR server_error"}};
        for (size_t f = 0; f < 3; f++) {
            char body[256];
            snprintf(body, sizeof body, "%s,\"stream\":true}", text);
            struct bt_buf ev;
            bt_buf_init(&ev, 1u << 20);
            int status = 0;
            sim_run(p, body, "fault", &ev, &status, faults[f].fault);
            if (!has_line(&ev, faults[f].want))
                H_FAIL("%s fault %s: %.*s", names[wi], faults[f].fault, (int)ev.len,
                       ev.p ? ev.p : "");
            CHECK(!has_line(&ev, "DONE"));
            bt_buf_free(&ev);
        }
    }
    bt_config_unref(c);
}

int main(void)
{
    RUN(anthropic_encode_golden);
    RUN(gemini_encode_golden);
    RUN(anthropic_events_golden);
    RUN(gemini_events_golden);
    RUN(classify_events);
    RUN(error_classes);
    RUN(config_and_headers);
    RUN(config_refusals);
    RUN(provider_encode_paths);
    RUN(sim_renders_each_wire);
    return HARNESS_DONE();
}
