/* Folding usage reports: providers report usage as running totals (OpenAI's one
 * final figure, Anthropic's message_start then message_delta, Gemini's
 * usageMetadata on every chunk) or, rarely, as increments. */
#include "canon/event.h"

static void fold(int64_t *acc, int64_t v, bool delta)
{
    if (delta) *acc += v;
    else if (v > *acc) *acc = v;
}

void bt_usage_merge(struct bt_usage *acc, const struct bt_usage *u)
{
    if (!u->present) return;
    acc->present = true;
    fold(&acc->prompt_tokens, u->prompt_tokens, u->delta);
    fold(&acc->completion_tokens, u->completion_tokens, u->delta);
    fold(&acc->total_tokens, u->total_tokens, u->delta);
    fold(&acc->cache_read_tokens, u->cache_read_tokens, u->delta);
    fold(&acc->cache_write_tokens, u->cache_write_tokens, u->delta);
    fold(&acc->reasoning_tokens, u->reasoning_tokens, u->delta);
    acc->estimated = acc->estimated || u->estimated;
    acc->delta = false;
    if (acc->total_tokens < acc->prompt_tokens + acc->completion_tokens)
        acc->total_tokens = acc->prompt_tokens + acc->completion_tokens;
}
