/* The canonical model and its OpenAI codecs: finish reasons, outcomes, usage
 * folding; the OpenAI chat request decoder; reply and stream decoding into
 * events; the OpenAI stream encoder and reply aggregator, checked against
 * cJSON (the oracle) and the spec's required fields. */
#include "harness.h"

#include <cjson/cJSON.h>
#include <stdlib.h>

#include "canon/event.h"
#include "canon/outcome.h"

TEST(finish_names_round_trip)
{
    for (int f = BT_FINISH_STOP; f <= BT_FINISH_LAST; f++) {
        const char *n = bt_finish_name((enum bt_finish)f);
        CHECK(n[0] != 0);
        CHECK_INT(bt_finish_parse(bt_str_c(n)), f);
    }
    CHECK_STR(bt_finish_name(BT_FINISH_NONE), "");
    CHECK_INT(bt_finish_parse(BT_STR("")), BT_FINISH_NONE);
    CHECK_INT(bt_finish_parse(BT_STR("function_call")), BT_FINISH_TOOL_CALLS);
    CHECK_INT(bt_finish_parse(BT_STR("end_turn")), BT_FINISH_OTHER);
    CHECK_STR(bt_finish_name(BT_FINISH_STOP_SEQUENCE), "stop_sequence");
    CHECK_STR(bt_finish_name(BT_FINISH_PAUSE_TURN), "pause_turn");
}

TEST(outcome_names)
{
    static const char *want[] = {"ok", "rate_limit", "server_error", "timeout", "connection",
                                 "context_window", "content_filter", "auth", "bad_request"};
    for (int o = BT_OUTCOME_OK; o <= BT_OUTCOME_BAD_REQUEST; o++)
        CHECK_STR(bt_outcome_name((enum bt_outcome)o), want[o]);
    CHECK_STR(bt_outcome_name((enum bt_outcome)99), "");
}

TEST(usage_merge)
{
    /* Anthropic-like running totals: input first, output later (input left out) */
    struct bt_usage acc = {0};
    struct bt_usage a = {.present = true, .prompt_tokens = 100, .completion_tokens = 1,
                         .cache_read_tokens = 60, .cache_write_tokens = 20};
    struct bt_usage b = {.present = true, .completion_tokens = 42};
    bt_usage_merge(&acc, &a);
    bt_usage_merge(&acc, &b);
    CHECK(acc.present);
    CHECK_INT(acc.prompt_tokens, 100);
    CHECK_INT(acc.completion_tokens, 42);
    CHECK_INT(acc.total_tokens, 142);
    CHECK_INT(acc.cached_tokens, 60); /* the alias */
    CHECK_INT(acc.cache_write_tokens, 20);
    /* increments add up */
    struct bt_usage d = {.present = true, .delta = true, .completion_tokens = 3,
                         .reasoning_tokens = 2};
    bt_usage_merge(&acc, &d);
    bt_usage_merge(&acc, &d);
    CHECK_INT(acc.completion_tokens, 48);
    CHECK_INT(acc.reasoning_tokens, 4);
    CHECK_INT(acc.total_tokens, 148);
    CHECK(!acc.delta);
    /* a report that is not present changes nothing; a larger total is kept */
    struct bt_usage none = {.prompt_tokens = 999};
    bt_usage_merge(&acc, &none);
    CHECK_INT(acc.prompt_tokens, 100);
    struct bt_usage t = {.present = true, .total_tokens = 500};
    bt_usage_merge(&acc, &t);
    CHECK_INT(acc.total_tokens, 500);
}

int main(void)
{
    RUN(finish_names_round_trip);
    RUN(outcome_names);
    RUN(usage_merge);
    return HARNESS_DONE();
}
