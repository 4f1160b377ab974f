/* Prices: the exact decimal parser for `price:` values and the shipped table of
 * list prices for common models (USD per million tokens, as the vendors publish
 * them; taken on BT_PRICES_DATE). A configured `price:` always wins over the
 * table. The table is data: update a row when a vendor changes a price, and the
 * date with it (docs/config.md lists the same rows). */
#include <string.h>

#include "config/config.h"

bool bt_price_parse(struct bt_str text, int64_t *out)
{
    const char *s = text.p;
    size_t n = text.len, i = 0;
    int64_t whole = 0, frac = 0;
    int fdigits = 0;
    bool any = false;
    for (; i < n && s[i] >= '0' && s[i] <= '9'; i++) {
        whole = whole * 10 + (s[i] - '0');
        if (whole > BT_PRICE_MAX_PUSD / 1000000) return false;
        any = true;
    }
    if (i < n && s[i] == '.') {
        for (i++; i < n && s[i] >= '0' && s[i] <= '9'; i++) {
            if (++fdigits > 6) return false;
            frac = frac * 10 + (s[i] - '0');
            any = true;
        }
    }
    if (!any || i != n) return false;
    for (int k = fdigits; k < 6; k++) frac *= 10;
    int64_t v = whole * 1000000 + frac;
    if (v > BT_PRICE_MAX_PUSD) return false;
    *out = v;
    return true;
}

/* One row: the upstream model id and its prices in USD per million tokens as
 * text (parsed with bt_price_parse, so the table is exact too); NULL = the
 * default (cached_input and cache_write: input; reasoning: output). */
struct row {
    const char *model;
    const char *input, *cached_input, *cache_write, *output;
};

/* Taken on BT_PRICES_DATE from the vendors' public price lists (standard tier,
 * not batch; Gemini 2.5 Pro's rate for prompts up to 200k tokens; Anthropic's
 * 5-minute cache write). */
static const struct row rows[] = {
    /* OpenAI */
    {"gpt-4o", "2.50", "1.25", NULL, "10.00"},
    {"gpt-4o-mini", "0.15", "0.075", NULL, "0.60"},
    {"gpt-4.1", "2.00", "0.50", NULL, "8.00"},
    {"gpt-4.1-mini", "0.40", "0.10", NULL, "1.60"},
    {"gpt-4.1-nano", "0.10", "0.025", NULL, "0.40"},
    {"gpt-5", "1.25", "0.125", NULL, "10.00"},
    {"gpt-5-mini", "0.25", "0.025", NULL, "2.00"},
    {"gpt-5-nano", "0.05", "0.005", NULL, "0.40"},
    {"o3", "2.00", "0.50", NULL, "8.00"},
    {"o3-mini", "1.10", "0.55", NULL, "4.40"},
    {"o4-mini", "1.10", "0.275", NULL, "4.40"},
    {"text-embedding-3-small", "0.02", NULL, NULL, "0"},
    {"text-embedding-3-large", "0.13", NULL, NULL, "0"},
    /* Anthropic */
    {"claude-opus-4-5", "5.00", "0.50", "6.25", "25.00"},
    {"claude-opus-4-1", "15.00", "1.50", "18.75", "75.00"},
    {"claude-opus-4-0", "15.00", "1.50", "18.75", "75.00"},
    {"claude-opus-4", "15.00", "1.50", "18.75", "75.00"},
    {"claude-sonnet-4-5", "3.00", "0.30", "3.75", "15.00"},
    {"claude-sonnet-4-0", "3.00", "0.30", "3.75", "15.00"},
    {"claude-sonnet-4", "3.00", "0.30", "3.75", "15.00"},
    {"claude-haiku-4-5", "1.00", "0.10", "1.25", "5.00"},
    {"claude-3-5-haiku", "0.80", "0.08", "1.00", "4.00"},
    /* Google */
    {"gemini-2.5-pro", "1.25", "0.125", NULL, "10.00"},
    {"gemini-2.5-flash", "0.30", "0.03", NULL, "2.50"},
    {"gemini-2.5-flash-lite", "0.10", "0.01", NULL, "0.40"},
    /* DeepSeek (V3.2: one price for both names) */
    {"deepseek-chat", "0.28", "0.028", NULL, "0.42"},
    {"deepseek-reasoner", "0.28", "0.028", NULL, "0.42"},
    /* Upstage */
    {"solar-pro2", "0.15", NULL, NULL, "0.60"},
    {"solar-mini", "0.15", NULL, NULL, "0.15"},
    /* Mistral */
    {"mistral-large", "2.00", NULL, NULL, "6.00"},
    {"mistral-medium", "0.40", NULL, NULL, "2.00"},
    {"mistral-small", "0.10", NULL, NULL, "0.30"},
    {"codestral", "0.30", NULL, NULL, "0.90"},
};

/* Whether `rest` (what follows a table id in a model id) is a dated snapshot
 * suffix: "-" then digits and '-' only, or "-latest". */
static bool snapshot_suffix(const char *rest, size_t n)
{
    if (n < 2 || rest[0] != '-') return false;
    if (n == 7 && memcmp(rest, "-latest", 7) == 0) return true;
    for (size_t i = 1; i < n; i++)
        if (!(rest[i] >= '0' && rest[i] <= '9') && rest[i] != '-') return false;
    return true;
}

static int64_t field(const char *text, int64_t dflt)
{
    int64_t v = dflt;
    if (text && !bt_price_parse(bt_str_c(text), &v)) v = dflt; /* never: rows are checked by tests */
    return v;
}

bool bt_price_default(struct bt_str model, struct bt_price *out)
{
    const struct row *best = NULL;
    size_t best_len = 0;
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        size_t n = strlen(rows[i].model);
        if (n > model.len || memcmp(model.p, rows[i].model, n) != 0) continue;
        if (n != model.len && !snapshot_suffix(model.p + n, model.len - n)) continue;
        if (n > best_len) best = &rows[i], best_len = n;
    }
    if (!best) return false;
    struct bt_price p = {.source = BT_PRICE_DEFAULT};
    p.input = field(best->input, 0);
    p.cached_input = field(best->cached_input, p.input);
    p.cache_write = field(best->cache_write, p.input);
    p.output = field(best->output, 0);
    p.reasoning = p.output;
    *out = p;
    return true;
}
