/* Helpers over the canonical chat request (canon/chat.h). */
#include "canon/chat.h"

#include <stdarg.h>
#include <stdio.h>

#include "core/buf.h"
#include "json/json.h"

enum bt_err bt_chat_fail(struct bt_chat_error *e, const char *param, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->message, sizeof(e->message), fmt, ap);
    va_end(ap);
    snprintf(e->param, sizeof(e->param), "%s", param ? param : "");
    return BT_EINVAL;
}

const char *bt_chat_given_name(uint32_t bit)
{
    switch (bit) {
    case BT_GIVEN_TEMPERATURE: return "temperature";
    case BT_GIVEN_TOP_P: return "top_p";
    case BT_GIVEN_TOP_K: return "top_k";
    case BT_GIVEN_MAX_TOKENS: return "max_tokens";
    case BT_GIVEN_STOP: return "stop";
    case BT_GIVEN_SEED: return "seed";
    case BT_GIVEN_N: return "n";
    case BT_GIVEN_PRESENCE_PENALTY: return "presence_penalty";
    case BT_GIVEN_FREQUENCY_PENALTY: return "frequency_penalty";
    case BT_GIVEN_LOGPROBS: return "logprobs";
    case BT_GIVEN_TOP_LOGPROBS: return "top_logprobs";
    case BT_GIVEN_PARALLEL_TOOL_CALLS: return "parallel_tool_calls";
    case BT_GIVEN_REASONING_EFFORT: return "reasoning_effort";
    case BT_GIVEN_REASONING_BUDGET: return "reasoning_budget";
    case BT_GIVEN_RESPONSE_FORMAT: return "response_format";
    case BT_GIVEN_METADATA: return "metadata";
    case BT_GIVEN_USER: return "user";
    case BT_GIVEN_CACHE_KEY: return "prompt_cache_key";
    default: return "";
    }
}

/* Copies what `conv` made of `in` into the arena; `quoted` drops the quotes
 * bt_json_escape puts around its output. */
static enum bt_err to_arena(struct bt_buf *b, bool quoted, struct bt_arena *arena,
                            struct bt_str *out)
{
    struct bt_str s = bt_buf_str(b);
    if (quoted) s = (struct bt_str){s.p + 1, s.len - 2};
    *out = bt_arena_strdup(arena, s);
    bt_buf_free(b);
    return out->p ? BT_OK : BT_ENOMEM;
}

enum bt_err bt_chat_args_json(const struct bt_chat_part *call, struct bt_arena *arena,
                              struct bt_str *out)
{
    struct bt_str a = call->tool_call.args;
    if (!a.len) {
        *out = BT_STR("{}");
        return BT_OK;
    }
    if (!call->tool_call.args_escaped) {
        *out = a;
        return BT_OK;
    }
    struct bt_buf b;
    bt_buf_init(&b, a.len + 1); /* unescaping never grows */
    enum bt_err err = bt_json_unescape(a, &b);
    if (err) {
        bt_buf_free(&b);
        return err;
    }
    return to_arena(&b, false, arena, out);
}

enum bt_err bt_chat_args_string(const struct bt_chat_part *call, struct bt_arena *arena,
                                struct bt_str *out)
{
    struct bt_str a = call->tool_call.args;
    if (!a.len) {
        *out = BT_STR("{}");
        return BT_OK;
    }
    if (call->tool_call.args_escaped) {
        *out = a;
        return BT_OK;
    }
    struct bt_buf b;
    bt_buf_init(&b, a.len * 6 + 2); /* \u00XX per byte at worst, and the quotes */
    enum bt_err err = bt_json_escape(&b, a);
    if (err) {
        bt_buf_free(&b);
        return err;
    }
    return to_arena(&b, true, arena, out);
}
