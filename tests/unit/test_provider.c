#include "harness.h"

#include <stdlib.h>

#include "api/openai.h"
#include "provider/openai.h"

struct fixture {
    struct bt_arena arena;
    struct bt_request r;
    char msg[200];
    const char *param;
};

static enum bt_err decode(struct fixture *f, enum bt_op op, const char *body)
{
    bt_arena_init(&f->arena, 4096, 0);
    return bt_openai_decode_request(&f->r, op, bt_str_c(body), &f->arena, f->msg, sizeof(f->msg),
                                    &f->param);
}

static char *encode(struct fixture *f, const char *model, bool *added)
{
    struct bt_provider p = {.name = "p", .type = BT_PROVIDER_OPENAI};
    struct bt_pbody body;
    enum bt_err err = bt_provider_encode(&p, &f->r, bt_str_c(model), &f->arena, &body, added);
    if (err) return NULL;
    struct bt_buf out; /* the slices, joined */
    bt_buf_init(&out, 1 << 20);
    for (size_t i = 0; i < body.n; i++) bt_buf_append_str(&out, body.parts[i]);
    return bt_buf_steal(&out, NULL);
}

TEST(encode_splices_model_only)
{
    struct fixture f;
    const char *body = "{\"model\":\"chat\",\"temperature\":0.7,\"messages\":[{\"role\":\"user\","
                       "\"content\":\"\\ud55c\\uae00 hi\"}],\"x_vendor\":{\"k\":[1,2]}}";
    REQUIRE(decode(&f, BT_OP_CHAT, body) == BT_OK);
    CHECK_SLICE(f.r.model, "chat");
    CHECK(!f.r.stream);
    bool added = true;
    char *out = encode(&f, "gpt-4o-mini", &added);
    REQUIRE(out);
    CHECK_STR(out, "{\"model\":\"gpt-4o-mini\",\"temperature\":0.7,\"messages\":[{\"role\":\"user\","
                   "\"content\":\"\\ud55c\\uae00 hi\"}],\"x_vendor\":{\"k\":[1,2]}}");
    CHECK(!added);
    free(out);
    bt_arena_free(&f.arena);
}

TEST(encode_stream_adds_usage)
{
    struct fixture f;
    REQUIRE(decode(&f, BT_OP_CHAT, "{\"model\":\"m\",\"messages\":[{}],\"stream\":true}") == BT_OK);
    CHECK(f.r.stream && !f.r.include_usage);
    bool added = false;
    char *out = encode(&f, "a/b \"q\"", &added);
    REQUIRE(out);
    CHECK(added);
    CHECK_STR(out, "{\"model\":\"a/b \\\"q\\\"\",\"messages\":[{}],\"stream\":true,"
                   "\"stream_options\":{\"include_usage\":true}}");
    free(out);
    bt_arena_free(&f.arena);

    REQUIRE(decode(&f, BT_OP_CHAT,
                   "{\"model\":\"m\",\"messages\":[{}],\"stream\":true,\"stream_options\":{}}") ==
            BT_OK);
    out = encode(&f, "m2", &added);
    REQUIRE(out);
    CHECK(added);
    CHECK_STR(out, "{\"model\":\"m2\",\"messages\":[{}],\"stream\":true,"
                   "\"stream_options\":{\"include_usage\":true}}");
    free(out);
    bt_arena_free(&f.arena);

    REQUIRE(decode(&f, BT_OP_CHAT,
                   "{\"model\":\"m\",\"messages\":[{}],\"stream\":true,"
                   "\"stream_options\":{\"include_usage\":true}}") == BT_OK);
    CHECK(f.r.include_usage);
    out = encode(&f, "m", &added);
    REQUIRE(out);
    CHECK(!added);
    free(out);
    bt_arena_free(&f.arena);
}

TEST(decode_rejects_bad_requests)
{
    struct fixture f;
    CHECK_INT(decode(&f, BT_OP_CHAT, "{\"model\":\"m\",\"messages\":[{}]"), BT_EPARSE);
    CHECK(strstr(f.msg, "not valid JSON") != NULL);
    bt_arena_free(&f.arena);
    CHECK_INT(decode(&f, BT_OP_CHAT, ""), BT_EPARSE);
    bt_arena_free(&f.arena);
    CHECK_INT(decode(&f, BT_OP_CHAT, "[1]"), BT_EINVAL);
    bt_arena_free(&f.arena);
    CHECK_INT(decode(&f, BT_OP_CHAT, "{\"messages\":[{}]}"), BT_EINVAL);
    CHECK_STR(f.param, "model");
    bt_arena_free(&f.arena);
    CHECK_INT(decode(&f, BT_OP_CHAT, "{\"model\":\"m\"}"), BT_EINVAL);
    CHECK_STR(f.param, "messages");
    bt_arena_free(&f.arena);
    CHECK_INT(decode(&f, BT_OP_CHAT, "{\"model\":\"m\",\"messages\":[]}"), BT_EINVAL);
    bt_arena_free(&f.arena);
    CHECK_INT(decode(&f, BT_OP_CHAT, "{\"model\":3,\"messages\":[{}]}"), BT_EINVAL);
    bt_arena_free(&f.arena);
    CHECK_INT(decode(&f, BT_OP_CHAT, "{\"model\":\"m\",\"messages\":[{}],\"stream\":\"yes\"}"),
              BT_EINVAL);
    CHECK_STR(f.param, "stream");
    bt_arena_free(&f.arena);
    CHECK_INT(decode(&f, BT_OP_EMBED, "{\"model\":\"m\"}"), BT_EINVAL);
    CHECK_STR(f.param, "input");
    bt_arena_free(&f.arena);
    CHECK_INT(decode(&f, BT_OP_EMBED, "{\"model\":\"m\",\"input\":\"x\"}"), BT_OK);
    bt_arena_free(&f.arena);
}

/* Client-chosen names that reach headers, logs and labels: one check at decode. */
TEST(decode_checks_names_and_duplicates)
{
    struct fixture f;
    static const char *const bad_models[] = {
        "sim/x\\r\\ny", "a\\u0000b", "tab\\there", "del\\u007f", "nl\\n", "",
    };
    char body[600];
    for (size_t i = 0; i < sizeof(bad_models) / sizeof(bad_models[0]); i++) {
        snprintf(body, sizeof(body), "{\"model\":\"%s\",\"messages\":[{}]}", bad_models[i]);
        CHECK_INT(decode(&f, BT_OP_CHAT, body), BT_EINVAL);
        CHECK_STR(f.param, "model");
        bt_arena_free(&f.arena);
    }
    CHECK_INT(decode(&f, BT_OP_CHAT, "{\"model\":\"sim/x\\r\\ny\",\"messages\":[{}]}"), BT_EINVAL);
    CHECK(strstr(f.msg, "\"sim/x\\x0d\\x0ay\"") != NULL);
    CHECK(strstr(f.msg, "0x0d at byte 5") != NULL);
    bt_arena_free(&f.arena);
    /* 256 bytes pass, 257 do not; the message is cut, never the buffer overrun */
    char longm[300];
    memset(longm, 'm', sizeof(longm));
    for (int n = 256; n <= 257; n++) {
        snprintf(body, sizeof(body), "{\"model\":\"%.*s\",\"messages\":[{}]}", n, longm);
        CHECK_INT(decode(&f, BT_OP_CHAT, body), n == 256 ? BT_OK : BT_EINVAL);
        bt_arena_free(&f.arena);
    }
    CHECK(strstr(f.msg, "257 bytes long") != NULL);
    /* user: a string, checked the same way; null is absent */
    CHECK_INT(decode(&f, BT_OP_CHAT, "{\"model\":\"m\",\"user\":\"a\\nb\",\"messages\":[{}]}"), BT_EINVAL);
    CHECK_STR(f.param, "user");
    bt_arena_free(&f.arena);
    CHECK_INT(decode(&f, BT_OP_EMBED, "{\"model\":\"m\",\"user\":7,\"input\":\"x\"}"), BT_EINVAL);
    CHECK_STR(f.param, "user");
    bt_arena_free(&f.arena);
    CHECK_INT(decode(&f, BT_OP_CHAT, "{\"model\":\"m\",\"user\":\"u-1 é\",\"messages\":[{}]}"), BT_OK);
    CHECK_SLICE(f.r.user, "u-1 é");
    bt_arena_free(&f.arena);
    CHECK_INT(decode(&f, BT_OP_CHAT, "{\"model\":\"m\",\"user\":null,\"messages\":[{}]}"), BT_OK);
    CHECK_INT((int)f.r.user.len, 0);
    bt_arena_free(&f.arena);
    /* a key baton reads may appear once, also when spelled with an escape */
    static const char *const dups[][2] = {
        {"{\"model\":\"a\",\"model\":\"b\",\"messages\":[{}]}", "model"},
        {"{\"model\":\"a\",\"mod\\u0065l\":\"b\",\"messages\":[{}]}", "model"},
        {"{\"model\":\"a\",\"messages\":[{}],\"stream\":true,\"stream\":false}", "stream"},
        {"{\"model\":\"a\",\"messages\":[{}],\"messages\":[{}]}", "messages"},
        {"{\"model\":\"a\",\"messages\":[{}],\"user\":\"x\",\"user\":\"y\"}", "user"},
        {"{\"model\":\"a\",\"messages\":[{}],\"stream_options\":{},\"stream_options\":{}}",
         "stream_options"},
        {"{\"model\":\"a\",\"messages\":[{}],\"stream_options\":{\"include_usage\":true,"
         "\"include_usage\":false}}", "stream_options.include_usage"},
    };
    for (size_t i = 0; i < sizeof(dups) / sizeof(dups[0]); i++) {
        CHECK_INT(decode(&f, BT_OP_CHAT, dups[i][0]), BT_EINVAL);
        CHECK_STR(f.param, dups[i][1]);
        bt_arena_free(&f.arena);
    }
    /* keys baton does not read may repeat: they go to the provider as sent */
    CHECK_INT(decode(&f, BT_OP_CHAT, "{\"model\":\"a\",\"messages\":[{}],\"x\":1,\"x\":2}"), BT_OK);
    bt_arena_free(&f.arena);
}

struct evlog {
    char text[512];
    int starts, tool_starts, finishes, errors;
    enum bt_finish finish;
    struct bt_usage usage;
    char tool_name[32];
};

static void on_ev(void *ud, const struct bt_event *ev)
{
    struct evlog *l = ud;
    switch (ev->type) {
    case BT_EV_START: l->starts++; break;
    case BT_EV_TEXT:
    case BT_EV_TOOL_ARGS:
    case BT_EV_REASONING:
        strncat(l->text, ev->text.p, ev->text.len < 100 ? ev->text.len : 100);
        break;
    case BT_EV_TOOL_START:
        l->tool_starts++;
        snprintf(l->tool_name, sizeof(l->tool_name), "%.*s", BT_STR_FMT(ev->name));
        break;
    case BT_EV_FINISH:
        l->finishes++;
        l->finish = ev->finish;
        break;
    case BT_EV_USAGE: l->usage = ev->usage; break;
    case BT_EV_ERROR: l->errors++; break;
    default: break;
    }
}

static void feed(struct evlog *l, const char *chunk)
{
    struct bt_arena a;
    bt_arena_init(&a, 1024, 0);
    struct bt_json_doc d;
    if (bt_json_parse(&d, chunk, strlen(chunk), &a, NULL, NULL) == BT_OK)
        bt_openai_decode_chunk(&d, on_ev, l);
    else
        l->errors += 100;
    bt_arena_free(&a);
}

TEST(decode_stream_chunks)
{
    struct evlog l;
    memset(&l, 0, sizeof(l));
    feed(&l, "{\"id\":\"c1\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"}}]}");
    feed(&l, "{\"choices\":[{\"index\":0,\"delta\":{\"reasoning_content\":\"think \"}}]}");
    feed(&l, "{\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hel\"}}]}");
    feed(&l, "{\"choices\":[{\"index\":0,\"delta\":{\"content\":\"lo\"}}]}");
    feed(&l, "{\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"id\":\"call_1\","
             "\"type\":\"function\",\"function\":{\"name\":\"get_weather\",\"arguments\":\"\"}}]}}]}");
    feed(&l, "{\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":"
             "{\"arguments\":\"{\\\"city\\\"\"}}]}}]}");
    feed(&l, "{\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"tool_calls\"}],\"usage\":null}");
    feed(&l, "{\"choices\":[],\"usage\":{\"prompt_tokens\":11,\"completion_tokens\":7,"
             "\"total_tokens\":18,\"completion_tokens_details\":{\"reasoning_tokens\":3}}}");
    CHECK_INT(l.starts, 1);
    CHECK_STR(l.text, "think Hello{\\\"city\\\"");
    CHECK_INT(l.tool_starts, 1);
    CHECK_STR(l.tool_name, "get_weather");
    CHECK_INT(l.finishes, 1);
    CHECK_INT(l.finish, BT_FINISH_TOOL_CALLS);
    CHECK(l.usage.present);
    CHECK_INT(l.usage.prompt_tokens, 11);
    CHECK_INT(l.usage.completion_tokens, 7);
    CHECK_INT(l.usage.total_tokens, 18);
    CHECK_INT(l.usage.reasoning_tokens, 3);
    CHECK_INT(l.errors, 0);
    feed(&l, "{\"error\":{\"message\":\"boom\",\"type\":\"server_error\"}}");
    CHECK_INT(l.errors, 1);
}

TEST(error_json_shape)
{
    struct bt_buf b;
    bt_buf_init(&b, 4096);
    bt_openai_error_json(&b, "bad \"thing\"", "invalid_request_error", "model", NULL);
    REQUIRE(bt_buf_cstr(&b) == BT_OK);
    CHECK_STR(b.p, "{\"error\":{\"message\":\"bad \\\"thing\\\"\",\"type\":\"invalid_request_error\","
                   "\"param\":\"model\",\"code\":null}}");
    bt_buf_free(&b);
}

TEST(chunk_is_plain)
{
    const char *plain[] = {
        "{\"id\":\"c\",\"system_fingerprint\":\"fp_1\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"{x}\"},\"finish_reason\":null}],\"usage\":null}",
        "{\"choices\":[{\"delta\":{\"content\":\"a_reason\\\"\"},\"finish_reason\" : null}]}",
        "{\"choices\":[{\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\"{\\\"a\\\":1}\"}}]}}]}",
        "{}",
    };
    for (size_t i = 0; i < sizeof(plain) / sizeof(*plain); i++)
        if (!bt_openai_chunk_is_plain(bt_str_c(plain[i]))) H_FAIL("[%zu] not plain: %s", i, plain[i]);
    const char *matters[] = {
        "{\"choices\":[{\"delta\":{},\"finish_reason\":\"stop\"}]}",
        "{\"choices\":[{\"delta\":{},\"finish_reason\" :\n \"length\"}]}",
        "{\"choices\":[],\"usage\":{\"prompt_tokens\":1}}",
        "{\"choices\":[],\"usage\" : {\"prompt_tokens\":1}}",
        "{\"error\":{\"message\":\"boom\"}}",
        "{\"choices\":[{\"delta\":{\"content\":\"x\"}",
        "{\"choices\":[{\"delta\":{\"content\":\"}\"}}]}",
        "{\"choices\":[{\"delta\":{\"content\":\"x\"},\"finish_reason\":null}],\"usage\":{\"total_tokens\":9}}",
    };
    for (size_t i = 0; i < sizeof(matters) / sizeof(*matters); i++)
        if (bt_openai_chunk_is_plain(bt_str_c(matters[i]))) H_FAIL("[%zu] plain: %s", i, matters[i]);
}

/* The vector scan (16 bytes a step, brace counts summed every 64 steps, an
 * overlapping tail) against the byte-by-byte reference: every needle at every
 * offset of fillers of every length up to 300, so that block edges and the tail
 * fall everywhere, and a run of random strings over the bytes the scan looks for. */
TEST(chunk_is_plain_matches_bytes)
{
    static const char *needles[] = {"\"usage\":{", "\"error\" :\n{", "\"finish_reason\":\"stop\"",
                                     "\"finish_reason\": null", "{", "}", "_r", ":{", "\x80{"};
    char buf[400];
    size_t checked = 0;
    for (size_t len = 0; len <= 300; len++) {
        for (size_t k = 0; k < sizeof(needles) / sizeof(*needles); k++) {
            size_t nl = strlen(needles[k]);
            for (size_t off = 0; off + nl <= len; off++) {
                for (size_t i = 0; i < len; i++) buf[i] = "ab c:d e"[i % 8];
                if (len >= 2) {
                    buf[0] = '{';
                    buf[len - 1] = '}';
                }
                memcpy(buf + off, needles[k], nl);
                struct bt_str d = {buf, len};
                if (bt_openai_chunk_is_plain(d) != bt_openai_chunk_is_plain_bytes(d)) {
                    H_FAIL("len %zu needle %zu at %zu: the scans disagree", len, k, off);
                    return; /* the first disagreement says enough */
                }
                checked++;
            }
        }
    }
    uint32_t x = 2463534242u; /* xorshift32, fixed seed */
    static const char alphabet[] = "{}_r:\" usagerorfinsh_\n\x80" "a";
    for (int n = 0; n < 20000; n++) {
        x ^= x << 13, x ^= x >> 17, x ^= x << 5;
        size_t len = x % 400;
        for (size_t i = 0; i < len; i++) {
            x ^= x << 13, x ^= x >> 17, x ^= x << 5;
            buf[i] = alphabet[x % (sizeof(alphabet) - 1)];
        }
        struct bt_str d = {buf, len};
        if (bt_openai_chunk_is_plain(d) != bt_openai_chunk_is_plain_bytes(d)) {
            H_FAIL("random case %d (len %zu): the scans disagree", n, len);
            return;
        }
        checked++;
    }
    CHECK(checked > 100000);
}

#define HDR(n, v) ((struct bt_http_header){BT_STR(n), BT_STR(v)})

TEST(fwd_rules)
{
    /* The openai default: short, every name listable. */
    const char *const *d = bt_fwd_defaults(BT_PROVIDER_OPENAI);
    size_t n = 0;
    for (; d[n]; n++) {
        CHECK(bt_fwd_name_ok(bt_str_c(d[n])));
        CHECK(bt_fwd_refused(bt_str_c(d[n])) == NULL);
    }
    CHECK_INT(n, 4);
    CHECK_STR(d[0], "OpenAI-Organization");
    CHECK_STR(d[3], "Idempotency-Key");
    CHECK(bt_fwd_defaults(BT_PROVIDER_SIM)[0] == NULL);
    /* Refused in any case, with the reason. */
    CHECK(strstr(bt_fwd_refused(BT_STR("AUTHORIZATION")), "credential"));
    CHECK(strstr(bt_fwd_refused(BT_STR("x-Api-Key")), "credential"));
    CHECK(strstr(bt_fwd_refused(BT_STR("api-key")), "credential"));
    CHECK(strstr(bt_fwd_refused(BT_STR("cookie")), "credential"));
    CHECK(strstr(bt_fwd_refused(BT_STR("proxy-authorization")), "credential"));
    CHECK(strstr(bt_fwd_refused(BT_STR("Transfer-Encoding")), "framing"));
    CHECK(strstr(bt_fwd_refused(BT_STR("te")), "framing"));
    CHECK(strstr(bt_fwd_refused(BT_STR("content-type")), "baton itself"));
    CHECK(bt_fwd_refused(BT_STR("x-api-keys")) == NULL);
    CHECK(bt_fwd_refused(BT_STR("tee")) == NULL);
    CHECK(bt_fwd_refused(BT_STR("anthropic-beta")) == NULL);
    /* Names: RFC 9110 tokens, no pattern, 1-64 characters. */
    CHECK(bt_fwd_name_ok(BT_STR("X-a_b.c~d!#$%&'+^`|9")));
    CHECK(!bt_fwd_name_ok(BT_STR("")));
    CHECK(!bt_fwd_name_ok(BT_STR("a b")));
    CHECK(!bt_fwd_name_ok(BT_STR("a:b")));
    CHECK(!bt_fwd_name_ok(BT_STR("x-*")));
    CHECK(!bt_fwd_name_ok(BT_STR("\xc3\xa9")));
    CHECK(!bt_fwd_name_ok((struct bt_str){"a\0b", 3}));
    char name[66];
    memset(name, 'a', sizeof(name));
    CHECK(bt_fwd_name_ok((struct bt_str){name, 64}));
    CHECK(!bt_fwd_name_ok((struct bt_str){name, 65}));
}

TEST(fwd_pick)
{
    struct bt_str list[] = {BT_STR("OpenAI-Beta"), BT_STR("X-Tag")};
    struct bt_provider p = {
        .name = "p", .type = BT_PROVIDER_OPENAI, .forward_headers = list, .nforward_headers = 2};
    struct bt_http_header hs[] = {
        HDR("Host", "x"), HDR("openai-beta", "v1"),         HDR("Authorization", "Bearer k"),
        HDR("x-tag", ""), HDR("OPENAI-BETA", "v2\xc3\xa9"), HDR("x-tagg", "no")};
    struct bt_http_header out[BT_FWD_MAX];
    size_t n = 99;
    char msg[200] = "";
    CHECK_INT(bt_fwd_pick(&p, hs, 6, out, &n, msg, sizeof(msg)), BT_OK);
    REQUIRE(n == 3);
    /* the client's order, under the listed spelling; empty and obs-text values pass */
    CHECK_SLICE(out[0].name, "OpenAI-Beta");
    CHECK_SLICE(out[0].value, "v1");
    CHECK_SLICE(out[1].name, "X-Tag");
    CHECK_SLICE(out[1].value, "");
    CHECK_SLICE(out[2].name, "OpenAI-Beta");
    CHECK_SLICE(out[2].value, "v2\xc3\xa9");
    CHECK_STR(msg, "");
    /* Only counting. */
    CHECK_INT(bt_fwd_pick(&p, hs, 6, NULL, &n, NULL, 0), BT_OK);
    CHECK_INT(n, 3);

    /* Control characters anywhere in a listed value: refused, naming the header. */
    static const char *const bad[] = {
        "a\r\n x-injected: 1", "a\rb", "a\nb", "\tb", "a\x01", "a\x7f", "\x1f"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct bt_http_header h1[] = {HDR("x-ok", "1"), {BT_STR("X-TAG"), bt_str_c(bad[i])}};
        msg[0] = 0;
        CHECK_INT(bt_fwd_pick(&p, h1, 2, out, &n, msg, sizeof(msg)), BT_EINVAL);
        CHECK(strstr(msg, "The X-TAG header contains a control character"));
    }
    struct bt_http_header nul[] = {{BT_STR("x-tag"), {"a\0b", 3}}};
    CHECK_INT(bt_fwd_pick(&p, nul, 1, out, &n, NULL, 0), BT_EINVAL);
    /* ... but not in an unlisted one, and not at all with an empty list. */
    struct bt_http_header other[] = {HDR("X-Other", "a\r\nb"), HDR("x-tag", "fine")};
    CHECK_INT(bt_fwd_pick(&p, other, 2, out, &n, msg, sizeof(msg)), BT_OK);
    CHECK_INT(n, 1);
    struct bt_provider none = {.name = "n", .type = BT_PROVIDER_OPENAI};
    CHECK_INT(bt_fwd_pick(&none, nul, 1, out, &n, msg, sizeof(msg)), BT_OK);
    CHECK_INT(n, 0);

    /* Length: up to BT_FWD_VALUE_MAX bytes. */
    char big[BT_FWD_VALUE_MAX + 1];
    memset(big, 'v', sizeof(big));
    struct bt_http_header lh[] = {{BT_STR("openai-beta"), {big, BT_FWD_VALUE_MAX}}};
    CHECK_INT(bt_fwd_pick(&p, lh, 1, out, &n, msg, sizeof(msg)), BT_OK);
    CHECK_INT(out[0].value.len, BT_FWD_VALUE_MAX);
    lh[0].value.len++;
    CHECK_INT(bt_fwd_pick(&p, lh, 1, out, &n, msg, sizeof(msg)), BT_EINVAL);
    CHECK(strstr(msg, "The openai-beta header is longer than 1024 bytes"));

    /* Count: up to BT_FWD_MAX lines. */
    struct bt_http_header many[BT_FWD_MAX + 1];
    for (size_t i = 0; i <= BT_FWD_MAX; i++)
        many[i] = HDR("X-Tag", "t");
    CHECK_INT(bt_fwd_pick(&p, many, BT_FWD_MAX, out, &n, msg, sizeof(msg)), BT_OK);
    CHECK_INT(n, BT_FWD_MAX);
    CHECK_INT(bt_fwd_pick(&p, many, BT_FWD_MAX + 1, out, &n, msg, sizeof(msg)), BT_ETOOBIG);
    CHECK(strstr(msg, "at most 16"));
    CHECK_INT(bt_fwd_pick(&p, many, BT_FWD_MAX + 1, NULL, &n, NULL, 0), BT_ETOOBIG);
}

TEST(encode_picks_forwarded_headers)
{
    struct fixture f;
    REQUIRE(decode(&f, BT_OP_CHAT, "{\"model\":\"m\",\"messages\":[{\"role\":\"user\"}]}") ==
            BT_OK);
    struct bt_http_header hs[] = {HDR("OpenAI-Beta", "b1"), HDR("authorization", "Bearer c")};
    f.r.headers = hs;
    f.r.nheaders = 2;
    struct bt_str list[] = {BT_STR("openai-beta")};
    struct bt_provider p = {
        .name = "p", .type = BT_PROVIDER_OPENAI, .forward_headers = list, .nforward_headers = 1};
    struct bt_pbody body;
    bool added;
    CHECK_INT(bt_provider_encode(&p, &f.r, BT_STR("up"), &f.arena, &body, &added), BT_OK);
    REQUIRE(body.nfwd == 1);
    CHECK_SLICE(body.fwd[0].name, "openai-beta");
    CHECK_SLICE(body.fwd[0].value, "b1");
    char msg[200];
    CHECK_INT(bt_provider_check_headers(&p, &f.r, msg, sizeof(msg)), BT_OK);
    /* the simulator takes none */
    p.type = BT_PROVIDER_SIM;
    CHECK_INT(bt_provider_encode(&p, &f.r, BT_STR("up"), &f.arena, &body, &added), BT_OK);
    CHECK_INT(body.nfwd, 0);
    /* an unsafe value is refused by the check and by encode itself */
    p.type = BT_PROVIDER_OPENAI;
    hs[0].value = BT_STR("b1\r\nx: y");
    CHECK_INT(bt_provider_check_headers(&p, &f.r, msg, sizeof(msg)), BT_EINVAL);
    CHECK(strstr(msg, "OpenAI-Beta"));
    CHECK_INT(bt_provider_encode(&p, &f.r, BT_STR("up"), &f.arena, &body, &added), BT_EINVAL);
    bt_arena_free(&f.arena);
}

int main(void)
{
    RUN(encode_splices_model_only);
    RUN(encode_stream_adds_usage);
    RUN(decode_rejects_bad_requests);
    RUN(decode_checks_names_and_duplicates);
    RUN(decode_stream_chunks);
    RUN(error_json_shape);
    RUN(chunk_is_plain);
    RUN(chunk_is_plain_matches_bytes);
    RUN(fwd_rules);
    RUN(fwd_pick);
    RUN(encode_picks_forwarded_headers);
    return HARNESS_DONE();
}
