/* exec's decisions on neutral facts (exec/policy.c), and the outcome classes the
 * OpenAI adapter decides from providers' error replies, which those decisions
 * read. */
#include "harness.h"

#include "core/outcome.h"
#include "exec/policy.h"
#include "provider/openai.h"

TEST(retry_by_class)
{
    /* what moves on to the next deployment, and what never does */
    CHECK(bt_exec_retryable(BT_OUTCOME_RATE_LIMIT));
    CHECK(bt_exec_retryable(BT_OUTCOME_SERVER_ERROR));
    CHECK(bt_exec_retryable(BT_OUTCOME_TIMEOUT));
    CHECK(bt_exec_retryable(BT_OUTCOME_CONNECTION));
    CHECK(bt_exec_retryable(BT_OUTCOME_AUTH));
    CHECK(!bt_exec_retryable(BT_OUTCOME_OK));
    CHECK(!bt_exec_retryable(BT_OUTCOME_BAD_REQUEST));
    CHECK(!bt_exec_retryable(BT_OUTCOME_CONTEXT_WINDOW));
    CHECK(!bt_exec_retryable(BT_OUTCOME_CONTENT_FILTER));
}

TEST(client_status)
{
    static const struct {
        int status, want;
    } cases[] = {
        {400, 400}, {404, 404}, {409, 409}, {413, 413}, {422, 422}, {429, 429},
        {401, 502}, {403, 502}, {408, 504}, {504, 504}, {503, 503}, {500, 502},
        {502, 502}, {599, 502}, {301, 502}, {307, 502}, {100, 502},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        enum bt_outcome c = bt_outcome_from_status(cases[i].status);
        int got = bt_exec_client_status(cases[i].status, c);
        if (got != cases[i].want)
            H_FAIL("HTTP %d (%s) -> %d, want %d", cases[i].status, bt_outcome_name(c), got,
                   cases[i].want);
    }
    /* a class the adapter refined keeps the 4xx */
    CHECK_INT(bt_exec_client_status(400, BT_OUTCOME_CONTEXT_WINDOW), 400);
    CHECK_INT(bt_exec_client_status(400, BT_OUTCOME_CONTENT_FILTER), 400);
}

TEST(outcome_names)
{
    for (int i = 0; i < BT_OUTCOME_COUNT; i++) {
        enum bt_outcome o;
        REQUIRE(bt_outcome_parse(bt_str_c(bt_outcome_name((enum bt_outcome)i)), &o));
        CHECK_INT(o, i);
    }
    enum bt_outcome o;
    CHECK(!bt_outcome_parse(BT_STR("ratelimit"), &o));
    CHECK_STR(bt_outcome_name((enum bt_outcome)99), "unknown");
    CHECK_STR(bt_outcome_name(BT_OUTCOME_CONTEXT_WINDOW), "context_window");
}

static struct bt_perror decode(int status, const char *body, struct bt_arena *a)
{
    struct bt_perror pe;
    bt_arena_reset(a);
    bt_adapter_openai.decode_error(status, bt_str_c(body), a, &pe);
    return pe;
}

TEST(openai_error_classes)
{
    struct bt_arena a;
    bt_arena_init(&a, 4096, 0);
    struct bt_perror pe = decode(400, "{\"error\":{\"message\":\"This model's maximum context "
                                      "length is 8192 tokens\",\"type\":\"invalid_request_error\","
                                      "\"param\":\"messages\",\"code\":\"context_length_exceeded\"}}",
                                 &a);
    CHECK_INT(pe.cls, BT_OUTCOME_CONTEXT_WINDOW);
    CHECK_SLICE(pe.param, "messages");
    CHECK_SLICE(pe.code, "context_length_exceeded");
    CHECK_SLICE(pe.type, "invalid_request_error");
    pe = decode(400, "{\"error\":{\"message\":\"flagged\",\"code\":\"content_filter\"}}", &a);
    CHECK_INT(pe.cls, BT_OUTCOME_CONTENT_FILTER);
    pe = decode(400, "{\"error\":{\"message\":\"dimensions is not supported\",\"param\":\"dimensions\"}}", &a);
    CHECK_INT(pe.cls, BT_OUTCOME_BAD_REQUEST);
    CHECK_SLICE(pe.message, "dimensions is not supported");
    pe = decode(429, "{\"error\":{\"message\":\"slow \\u0064own\"}}", &a);
    CHECK_INT(pe.cls, BT_OUTCOME_RATE_LIMIT);
    CHECK_SLICE(pe.message, "slow down");
    pe = decode(401, "{\"error\":\"bad key\"}", &a);
    CHECK_INT(pe.cls, BT_OUTCOME_AUTH);
    CHECK_SLICE(pe.message, "bad key");
    pe = decode(502, "<html>bad gateway</html>", &a);
    CHECK_INT(pe.cls, BT_OUTCOME_SERVER_ERROR);
    CHECK_INT((int)pe.message.len, 0);
    pe = decode(504, "", &a);
    CHECK_INT(pe.cls, BT_OUTCOME_TIMEOUT);
    bt_arena_free(&a);
}

int main(void)
{
    RUN(retry_by_class);
    RUN(client_status);
    RUN(outcome_names);
    RUN(openai_error_classes);
    return HARNESS_DONE();
}
