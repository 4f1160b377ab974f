#include "account/cost.h"

#include "core/buf.h"
#include "json/json.h"
#include "tok/tok.h"

static int64_t nonneg(int64_t v)
{
    return v > 0 ? v : 0;
}

int64_t bt_cost_pusd(const struct bt_price *p, const struct bt_usage *u)
{
    int64_t prompt = nonneg(u->prompt_tokens), completion = nonneg(u->completion_tokens);
    int64_t cached = nonneg(u->cache_read_tokens);
    if (cached > prompt) cached = prompt;
    int64_t written = nonneg(u->cache_write_tokens);
    if (written > prompt - cached) written = prompt - cached;
    int64_t reasoning = nonneg(u->reasoning_tokens);
    if (reasoning > completion) reasoning = completion;
    __int128 c = (__int128)(prompt - cached - written) * p->input +
                 (__int128)cached * p->cached_input + (__int128)written * p->cache_write +
                 (__int128)(completion - reasoning) * p->output +
                 (__int128)reasoning * p->reasoning;
    return c > INT64_MAX ? INT64_MAX : c < 0 ? 0 : (int64_t)c;
}

size_t bt_cost_format(int64_t pusd, char *buf, size_t cap)
{
    return bt_str_decimal(buf, cap, pusd, 12);
}

static const struct bt_tok *tok_for(struct bt_str model)
{
    return bt_tok_get(bt_tok_encoding_for_model(model));
}

static int64_t count_raw(const struct bt_tok *t, struct bt_str escaped, struct bt_buf *scratch)
{
    bt_buf_reset(scratch);
    if (!escaped.len || bt_json_unescape(escaped, scratch)) return 0;
    size_t n = bt_tok_count(t, scratch->p, scratch->len);
    return n == SIZE_MAX ? 0 : (int64_t)n;
}

int64_t bt_cost_count_text(struct bt_str escaped, struct bt_str model)
{
    const struct bt_tok *t = tok_for(model);
    if (!t) return -1;
    struct bt_buf b;
    bt_buf_init(&b, 64u << 20);
    int64_t n = count_raw(t, escaped, &b);
    bt_buf_free(&b);
    return n;
}

/* Tokens of the string token `tok`, or of every string member `key` of the
 * objects in array `tok` (content parts' text); 0 for anything else. */
static int64_t count_value(const struct bt_tok *t, const struct bt_json_doc *d, int tok,
                           const char *key, struct bt_buf *b)
{
    if (tok < 0) return 0;
    int type = bt_json_type(d, tok);
    if (type == BT_JSON_STRING) return count_raw(t, bt_json_str_raw(d, tok), b);
    if (type != BT_JSON_ARRAY) return 0;
    int64_t n = 0;
    uint32_t end = d->toks[tok].next;
    for (int c = bt_json_first(d, tok); c >= 0 && (uint32_t)c < end; c = (int)d->toks[c].next) {
        int s = bt_json_type(d, c) == BT_JSON_STRING ? c : key ? bt_json_get(d, c, key) : -1;
        if (s >= 0 && bt_json_type(d, s) == BT_JSON_STRING)
            n += count_raw(t, bt_json_str_raw(d, s), b);
    }
    return n;
}

int64_t bt_cost_estimate_tokens(struct bt_request *r)
{
    if (!r->est_done) {
        int64_t prompt = bt_cost_count_prompt(r, r->model);
        r->est_tokens = (prompt > 0 ? prompt : 0) + (r->max_tokens > 0 ? r->max_tokens : 0);
        r->est_done = true;
    }
    return r->est_tokens;
}

int64_t bt_cost_count_prompt(const struct bt_request *r, struct bt_str model)
{
    const struct bt_tok *t = tok_for(model);
    if (!t) return -1;
    const struct bt_json_doc *d = &r->doc;
    struct bt_buf b;
    bt_buf_init(&b, 64u << 20);
    int64_t n = 0;
    if (r->op == BT_OP_EMBED) {
        n = count_value(t, d, r->tok_input, NULL, &b);
    } else if (r->tok_messages >= 0 && bt_json_type(d, r->tok_messages) == BT_JSON_ARRAY) {
        uint32_t end = d->toks[r->tok_messages].next;
        for (int m = bt_json_first(d, r->tok_messages); m >= 0 && (uint32_t)m < end;
             m = (int)d->toks[m].next) {
            n += 3;
            n += count_value(t, d, bt_json_get(d, m, "content"), "text", &b);
            n += count_value(t, d, bt_json_get(d, m, "name"), NULL, &b);
            int calls = bt_json_get(d, m, "tool_calls");
            for (uint32_t i = 0; calls >= 0; i++) {
                int c = bt_json_at(d, calls, i);
                if (c < 0) break;
                n += count_value(t, d, bt_json_path(d, c, "function", "arguments", NULL), NULL,
                                 &b);
            }
        }
        n += 3;
    }
    bt_buf_free(&b);
    return n;
}
