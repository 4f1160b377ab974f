/* Cost: what a request cost in USD, from the usage the provider reported (or
 * baton's estimate when it reported none) and the deployment's price
 * (config.h's struct bt_price, pico-USD per token). Money is kept in integers:
 * a cost is a whole number of pico-USD (10^-12 USD), exact for prices with up
 * to 6 decimals in USD per million tokens, and printed as a plain decimal in
 * USD. The formula is in docs/governance.md. */
#ifndef BT_ACCOUNT_COST_H
#define BT_ACCOUNT_COST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "canon/event.h"
#include "canon/request.h"
#include "config/config.h"
#include "core/str.h"

/* The cost of usage `u` at price `p`, in pico-USD. Prompt tokens are split into
 * cache reads (cached_input), cache writes (cache_write) and the rest (input);
 * completion tokens into reasoning (reasoning) and the rest (output). Cache and
 * reasoning counts are parts of the prompt and completion counts (canon's
 * usage), so nothing is counted twice; a part larger than its whole is cut to
 * it, negative counts are 0. Saturates at INT64_MAX (9.2 million USD). */
int64_t bt_cost_pusd(const struct bt_price *p, const struct bt_usage *u);

/* Writes `pusd` as USD, a plain decimal with no exponent and no trailing zeros
 * ("0.00001845", "0", "12.5"), NUL-terminated, into buf (cap >= BT_DECIMAL_MAX).
 * Returns its length. */
size_t bt_cost_format(int64_t pusd, char *buf, size_t cap);

/* baton's count of a request's prompt tokens with the built-in tokenizer (the
 * encoding of `model`, see bt_tok_encoding_for_model): chat messages' text
 * (string contents and the text of content parts, names, tool call arguments)
 * plus 3 tokens per message and 3 for the reply's priming, as OpenAI counts
 * them; embeddings' input strings. -1 when the tokenizer could not be loaded.
 * Borrows r. */
int64_t bt_cost_count_prompt(const struct bt_request *r, struct bt_str model);

/* The tokens a limit in tokens per minute takes for `r` before the call: its
 * prompt (bt_cost_count_prompt with the requested model's tokenizer) plus its
 * max_tokens, each counted as 0 when unknown. Counted once, kept in r. */
int64_t bt_cost_estimate_tokens(struct bt_request *r);

/* Tokens in `escaped`, the body of a JSON string (escapes decoded first), with
 * the encoding of `model`; 0 for an empty or broken string, -1 when the
 * tokenizer could not be loaded. */
int64_t bt_cost_count_text(struct bt_str escaped, struct bt_str model);

#endif
