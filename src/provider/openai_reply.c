/* OpenAI replies and stream chunks -> canonical events (provider/openai_reply.h).
 *
 * One walk serves both shapes: a reply's `message` and a chunk's `delta` carry
 * the same members (content, reasoning_content / reasoning, refusal,
 * tool_calls, function_call); they differ in that a reply always starts its
 * choice and numbers tool calls by position, while a chunk starts a choice when
 * it names the role and numbers tool calls by their `index`. */
#include "provider/openai_reply.h"

#include <string.h>

#include "provider/openai.h"

struct walk {
    const struct bt_json_doc *d;
    bt_event_cb cb;
    void *ud;
    bool stream; /* chunk (delta) rather than whole reply (message) */
};

static bool is_str(const struct walk *w, int t)
{
    return bt_json_type(w->d, t) == BT_JSON_STRING;
}

static struct bt_str str_or_empty(const struct walk *w, int t)
{
    return is_str(w, t) ? bt_json_str_raw(w->d, t) : BT_STR_NULL;
}

static int64_t int_or_zero(const struct walk *w, int obj, const char *key)
{
    int64_t v = 0;
    int t = bt_json_get(w->d, obj, key);
    if (bt_json_type(w->d, t) != BT_JSON_NUMBER || bt_json_int(w->d, t, &v)) return 0;
    return v;
}

static bool contains(struct bt_str s, const char *needle)
{
    size_t n = strlen(needle);
    for (size_t i = 0; i + n <= s.len; i++)
        if (memcmp(s.p + i, needle, n) == 0) return true;
    return false;
}

enum bt_outcome bt_openai_error_outcome(struct bt_str type, struct bt_str code)
{
    if (contains(code, "context_length") || contains(type, "context_length"))
        return BT_OUTCOME_CONTEXT_WINDOW;
    if (contains(code, "rate_limit") || contains(type, "rate_limit") ||
        contains(code, "insufficient_quota") || contains(type, "insufficient_quota") ||
        contains(type, "overloaded") || bt_str_eq_c(type, "requests") ||
        bt_str_eq_c(type, "tokens"))
        return BT_OUTCOME_RATE_LIMIT;
    if (contains(code, "content_filter") || contains(code, "content_policy") ||
        contains(type, "content_filter"))
        return BT_OUTCOME_CONTENT_FILTER;
    if (contains(type, "authentication") || contains(type, "permission") ||
        contains(code, "invalid_api_key"))
        return BT_OUTCOME_AUTH;
    if (contains(type, "timeout") || contains(code, "timeout")) return BT_OUTCOME_TIMEOUT;
    if (bt_str_eq_c(type, "invalid_request_error") || bt_str_eq_c(type, "not_found_error"))
        return BT_OUTCOME_BAD_REQUEST;
    return BT_OUTCOME_SERVER_ERROR;
}

/* `{"error": {...}}` (or a bare string): one classified ERROR. */
static void error_event(const struct walk *w, int e)
{
    struct bt_event ev = {.type = BT_EV_ERROR};
    if (bt_json_type(w->d, e) == BT_JSON_OBJECT) {
        ev.err_type = str_or_empty(w, bt_json_get(w->d, e, "type"));
        ev.err_message = str_or_empty(w, bt_json_get(w->d, e, "message"));
        ev.err_code = str_or_empty(w, bt_json_get(w->d, e, "code"));
    } else {
        ev.err_message = str_or_empty(w, e);
    }
    ev.outcome = bt_openai_error_outcome(ev.err_type, ev.err_code);
    w->cb(w->ud, &ev);
}

/* A string member as a TEXT / REASONING / REFUSAL event. */
static void text_event(const struct walk *w, int obj, const char *key, enum bt_ev_type type,
                       uint32_t choice)
{
    int t = bt_json_get(w->d, obj, key);
    if (!is_str(w, t)) return;
    struct bt_event ev = {.type = type, .choice = choice, .text = bt_json_str_raw(w->d, t)};
    w->cb(w->ud, &ev);
}

/* One tool call (`fn` its function object; `id` -1 for a legacy function_call):
 * TOOL_START when it names itself (always in a reply), TOOL_ARGS when it has
 * an arguments string. */
static void call_events(const struct walk *w, uint32_t choice, uint32_t tool, int id, int fn)
{
    int name = bt_json_get(w->d, fn, "name");
    if (!w->stream || is_str(w, id) || is_str(w, name)) {
        struct bt_event ev = {.type = BT_EV_TOOL_START, .choice = choice, .tool_index = tool};
        ev.id = str_or_empty(w, id);
        ev.name = str_or_empty(w, name);
        w->cb(w->ud, &ev);
    }
    int args = bt_json_get(w->d, fn, "arguments");
    if (is_str(w, args)) {
        struct bt_event ev = {.type = BT_EV_TOOL_ARGS, .choice = choice, .tool_index = tool};
        ev.text = bt_json_str_raw(w->d, args);
        w->cb(w->ud, &ev);
    }
}

/* The content of a reply's message or a chunk's delta `m`. */
static void message_events(const struct walk *w, int m, uint32_t choice)
{
    const struct bt_json_doc *d = w->d;
    if (!w->stream || is_str(w, bt_json_get(d, m, "role"))) {
        struct bt_event ev = {.type = BT_EV_START, .choice = choice};
        ev.id = str_or_empty(w, bt_json_get(d, 0, "id"));
        ev.name = str_or_empty(w, bt_json_get(d, 0, "model"));
        w->cb(w->ud, &ev);
    }
    text_event(w, m, "reasoning_content", BT_EV_REASONING, choice);
    text_event(w, m, "reasoning", BT_EV_REASONING, choice);
    text_event(w, m, "content", BT_EV_TEXT, choice);
    text_event(w, m, "refusal", BT_EV_REFUSAL, choice);
    int tcs = bt_json_get(d, m, "tool_calls");
    if (bt_json_type(d, tcs) == BT_JSON_ARRAY) {
        uint32_t j = 0;
        for (int tc = bt_json_first(d, tcs); j < d->toks[tcs].size; tc = (int)d->toks[tc].next, j++) {
            uint32_t tool = w->stream ? (uint32_t)int_or_zero(w, tc, "index") : j;
            call_events(w, choice, tool, bt_json_get(d, tc, "id"), bt_json_get(d, tc, "function"));
        }
    } else {
        int fc = bt_json_get(d, m, "function_call");
        if (bt_json_type(d, fc) == BT_JSON_OBJECT) call_events(w, choice, 0, -1, fc);
    }
}

/* Usage, with what bt_openai_read_usage leaves out: cache writes. */
static void usage_event(const struct walk *w, int u)
{
    struct bt_event ev = {.type = BT_EV_USAGE};
    bt_openai_read_usage(w->d, u, &ev.usage);
    int det = bt_json_get(w->d, u, "prompt_tokens_details");
    int64_t cw = int_or_zero(w, det, "cache_write_tokens");
    ev.usage.cache_write_tokens = cw < 0 ? 0 : cw > ((int64_t)1 << 40) ? (int64_t)1 << 40 : cw;
    w->cb(w->ud, &ev);
}

static void walk(const struct walk *w)
{
    const struct bt_json_doc *d = w->d;
    if (bt_json_type(d, 0) != BT_JSON_OBJECT) return;
    int e = bt_json_get(d, 0, "error");
    if (e >= 0 && bt_json_type(d, e) != BT_JSON_NULL) {
        error_event(w, e);
        return;
    }
    int choices = bt_json_get(d, 0, "choices");
    if (bt_json_type(d, choices) == BT_JSON_ARRAY) {
        uint32_t i = 0;
        for (int c = bt_json_first(d, choices); i < d->toks[choices].size;
             c = (int)d->toks[c].next, i++) {
            uint32_t idx = (uint32_t)int_or_zero(w, c, "index");
            int m = bt_json_get(d, c, w->stream ? "delta" : "message");
            if (bt_json_type(d, m) == BT_JSON_OBJECT) message_events(w, m, idx);
            int fr = bt_json_get(d, c, "finish_reason");
            if (is_str(w, fr)) {
                struct bt_event ev = {.type = BT_EV_FINISH, .choice = idx};
                ev.finish = bt_finish_parse(bt_json_str_raw(d, fr));
                w->cb(w->ud, &ev);
            }
        }
    }
    int usage = bt_json_get(d, 0, "usage");
    if (bt_json_type(d, usage) == BT_JSON_OBJECT) usage_event(w, usage);
    if (!w->stream) {
        struct bt_event ev = {.type = BT_EV_DONE};
        w->cb(w->ud, &ev);
    }
}

void bt_openai_reply_events(const struct bt_json_doc *doc, bt_event_cb cb, void *ud)
{
    struct walk w = {doc, cb, ud, false};
    walk(&w);
}

void bt_openai_chunk_events(const struct bt_json_doc *doc, bt_event_cb cb, void *ud)
{
    struct walk w = {doc, cb, ud, true};
    walk(&w);
}

enum bt_err bt_openai_stream_data(struct bt_str data, struct bt_arena *scratch, bt_event_cb cb,
                                  void *ud)
{
    if (bt_str_eq_c(data, "[DONE]")) {
        struct bt_event ev = {.type = BT_EV_DONE};
        cb(ud, &ev);
        return BT_OK;
    }
    struct bt_json_doc doc;
    enum bt_err err = bt_json_parse(&doc, data.p, data.len, scratch, NULL, NULL);
    if (err == BT_ENOMEM) return err;
    if (err || bt_json_type(&doc, 0) != BT_JSON_OBJECT) {
        struct bt_event ev = {.type = BT_EV_ERROR, .outcome = BT_OUTCOME_SERVER_ERROR};
        ev.err_type = BT_STR("upstream_error");
        ev.err_message = BT_STR("the provider sent an event that is not JSON");
        cb(ud, &ev);
        return BT_EPARSE;
    }
    bt_openai_chunk_events(&doc, cb, ud);
    return BT_OK;
}
