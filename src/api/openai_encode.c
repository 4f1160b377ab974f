/* Canonical events -> OpenAI chat.completion.chunk stream and chat.completion
 * (api/openai_encode.h).
 *
 * Output is written by hand rather than with bt_jw: every string arrives as an
 * escaped JSON body that goes back between quotes as it is, and each chunk is a
 * fixed head (`data: {"id":..,"object":..,"created":..,"model":..,`, built
 * once) plus a small tail, so a text delta costs a few appends. The unit tests
 * parse every byte written with cJSON and check it against the spec's required
 * members. */
#include "api/openai_encode.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json/jout.h"

int bt_openai_outcome_error(enum bt_outcome o, const char **type, const char **code)
{
    *code = NULL;
    switch (o) {
    case BT_OUTCOME_RATE_LIMIT:
        *type = "rate_limit_error";
        *code = "rate_limit_exceeded";
        return 429;
    case BT_OUTCOME_TIMEOUT:
        *type = "timeout_error";
        *code = "upstream_timeout";
        return 504;
    case BT_OUTCOME_CONNECTION:
        *type = "upstream_error";
        *code = "upstream_unreachable";
        return 502;
    case BT_OUTCOME_CONTEXT_WINDOW:
        *type = "invalid_request_error";
        *code = "context_length_exceeded";
        return 400;
    case BT_OUTCOME_CONTENT_FILTER:
        *type = "invalid_request_error";
        *code = "content_filter";
        return 400;
    case BT_OUTCOME_AUTH:
        /* baton's key for the provider, not the client's: not a 401 for them */
        *type = "upstream_error";
        *code = "upstream_auth_failed";
        return 502;
    case BT_OUTCOME_BAD_REQUEST: *type = "invalid_request_error"; return 400;
    case BT_OUTCOME_OK:
    case BT_OUTCOME_SERVER_ERROR: break;
    }
    *type = "upstream_error";
    return 502;
}

/* OpenAI's finish_reason for a canonical one: OpenAI has no stop_sequence,
 * pause_turn or other, and a strict client accepts only its five names. */
static const char *finish_name(enum bt_finish f, bool called_tools)
{
    switch (f) {
    case BT_FINISH_LENGTH: return "length";
    case BT_FINISH_TOOL_CALLS: return "tool_calls";
    case BT_FINISH_CONTENT_FILTER: return "content_filter";
    case BT_FINISH_NONE: return called_tools ? "tool_calls" : "stop";
    default: return "stop";
    }
}

/* A tool call's id, or one made up when the provider gave none (strict clients
 * require one): `call_<completion id>_<position>`, unique within the reply. */
static void put_call_id(struct bt_jout *w, struct bt_str id, struct bt_str reply_id, uint32_t k)
{
    if (id.len) {
        bt_jout_quoted(w, id);
        return;
    }
    BT_JOUT_LIT(w, "\"call_");
    bt_jout_str(w, reply_id);
    BT_JOUT_LIT(w, "_");
    bt_jout_int(w, k);
    BT_JOUT_LIT(w, "\"");
}

static void put_usage(struct bt_jout *w, const struct bt_usage *u)
{
    BT_JOUT_LIT(w, "{\"prompt_tokens\":");
    bt_jout_int(w, u->prompt_tokens);
    BT_JOUT_LIT(w, ",\"completion_tokens\":");
    bt_jout_int(w, u->completion_tokens);
    BT_JOUT_LIT(w, ",\"total_tokens\":");
    bt_jout_int(w, u->total_tokens);
    BT_JOUT_LIT(w, ",\"prompt_tokens_details\":{\"cached_tokens\":");
    bt_jout_int(w, u->cache_read_tokens);
    if (u->cache_write_tokens) {
        BT_JOUT_LIT(w, ",\"cache_write_tokens\":");
        bt_jout_int(w, u->cache_write_tokens);
    }
    BT_JOUT_LIT(w, "},\"completion_tokens_details\":{\"reasoning_tokens\":");
    bt_jout_int(w, u->reasoning_tokens);
    BT_JOUT_LIT(w, "}}");
}

/* The provider's word (an escaped body) when `theirs` is to be used and given,
 * else ours (bytes of our own; NULL writes null). */
static void put_word(struct bt_jout *w, bool use_theirs, struct bt_str theirs, const char *ours)
{
    if (use_theirs && theirs.len) bt_jout_quoted(w, theirs);
    else if (ours) bt_jout_escaped(w, bt_str_c(ours));
    else BT_JOUT_LIT(w, "null");
}

/* OpenAI's error object for an ERROR event (its strings escaped bodies). A
 * classified error speaks OpenAI's words for its class; an unclassified one
 * keeps the provider's type and code. `why`, when not NULL, replaces the
 * message (our own text, escaped here). */
static void put_error(struct bt_jout *w, const struct bt_event *ev, const char *why)
{
    const char *type, *code;
    bt_openai_outcome_error(ev->outcome, &type, &code);
    bool unclassified = ev->outcome == BT_OUTCOME_OK;
    BT_JOUT_LIT(w, "{\"error\":{\"message\":");
    put_word(w, !why, ev->err_message, why ? why : "the provider reported an error");
    BT_JOUT_LIT(w, ",\"type\":");
    put_word(w, unclassified, ev->err_type, type);
    BT_JOUT_LIT(w, ",\"param\":null,\"code\":");
    put_word(w, unclassified, ev->err_code, code);
    BT_JOUT_LIT(w, "}}");
}

/* ---- streaming ---- */

void bt_openai_stream_init(struct bt_openai_stream *e, const struct bt_openai_enc_opts *opts)
{
    memset(e, 0, sizeof(*e));
    e->opts = *opts;
}

/* Builds the chunk head from START's id and model (escaped), else the options. */
static enum bt_err build_head(struct bt_openai_stream *e, const struct bt_event *start)
{
    struct bt_buf b;
    bt_buf_init(&b, sizeof(e->head));
    struct bt_jout w = {&b, BT_OK};
    BT_JOUT_LIT(&w, "data: {\"id\":");
    size_t id_at = b.len + 1;
    if (start && start->id.len) bt_jout_quoted(&w, start->id);
    else bt_jout_escaped(&w, e->opts.id);
    size_t id_len = w.err ? 0 : b.len - 1 - id_at;
    BT_JOUT_LIT(&w, ",\"object\":\"chat.completion.chunk\",\"created\":");
    bt_jout_int(&w, e->opts.created);
    BT_JOUT_LIT(&w, ",\"model\":");
    if (start && start->name.len) bt_jout_quoted(&w, start->name);
    else bt_jout_escaped(&w, e->opts.model);
    BT_JOUT_LIT(&w, ",");
    if (!w.err && id_len >= sizeof(e->id)) w.err = BT_ETOOBIG;
    if (!w.err) {
        memcpy(e->head, b.p, b.len);
        e->head_len = b.len;
        memcpy(e->id, b.p + id_at, id_len);
        e->id_len = id_len;
    }
    bt_buf_free(&b);
    return w.err;
}

/* Opens a chunk for choice `i`: the head, then the delta, with the role first
 * when the choice has not begun. `comma` tracks the delta's members. */
static void chunk_open(struct bt_openai_stream *e, struct bt_jout *w, uint32_t i, bool *comma)
{
    bt_jout_put(w, e->head, e->head_len);
    BT_JOUT_LIT(w, "\"choices\":[{\"index\":");
    bt_jout_int(w, i);
    BT_JOUT_LIT(w, ",\"delta\":{");
    *comma = false;
    if (!e->choice[i].began) {
        BT_JOUT_LIT(w, "\"role\":\"assistant\"");
        *comma = true;
        e->choice[i].began = true;
    }
}

static void chunk_member(struct bt_jout *w, bool *comma, const char *key)
{
    if (*comma) BT_JOUT_LIT(w, ",");
    bt_jout_str(w, bt_str_c(key));
    *comma = true;
}

static void chunk_close(const struct bt_openai_stream *e, struct bt_jout *w, const char *finish)
{
    BT_JOUT_LIT(w, "},\"logprobs\":null,\"finish_reason\":");
    if (finish) {
        BT_JOUT_LIT(w, "\"");
        bt_jout_str(w, bt_str_c(finish));
        BT_JOUT_LIT(w, "\"");
    } else {
        BT_JOUT_LIT(w, "null");
    }
    BT_JOUT_LIT(w, "}]");
    if (e->opts.include_usage) BT_JOUT_LIT(w, ",\"usage\":null");
    BT_JOUT_LIT(w, "}\n\n");
}

/* A chunk whose delta is one string member `key` (e.g. `"content":`) holding
 * `text`; with an empty text only the role chunk of a choice not begun. */
static void delta_text(struct bt_openai_stream *e, struct bt_jout *w, uint32_t i, const char *key,
                       struct bt_str text)
{
    if (!text.len && e->choice[i].began) return;
    bool comma;
    chunk_open(e, w, i, &comma);
    chunk_member(w, &comma, key);
    bt_jout_quoted(w, text);
    chunk_close(e, w, NULL);
}

/* The output index of the choice's tool call with event index `src`, or -1. */
static long tool_slot(const struct bt_openai_stream *e, uint32_t i, uint32_t src)
{
    for (uint32_t k = 0; k < e->choice[i].ntools; k++)
        if (e->choice[i].tool_src[k] == src) return (long)k;
    return -1;
}

static enum bt_err tool_start(struct bt_openai_stream *e, struct bt_jout *w, const struct bt_event *ev,
                              char *why, size_t whycap)
{
    uint32_t i = ev->choice;
    if (tool_slot(e, i, ev->tool_index) >= 0) return BT_OK; /* a repeated start */
    if (!ev->name.len) {
        snprintf(why, whycap, "the provider started tool call %u without a name", ev->tool_index);
        return BT_EPROTO;
    }
    uint32_t k = e->choice[i].ntools;
    if (k == BT_OPENAI_ENC_MAX_TOOLS) {
        snprintf(why, whycap, "the provider made more than %d tool calls", BT_OPENAI_ENC_MAX_TOOLS);
        return BT_EPROTO;
    }
    e->choice[i].tool_src[k] = ev->tool_index;
    e->choice[i].ntools = k + 1;
    bool comma;
    chunk_open(e, w, i, &comma);
    chunk_member(w, &comma, "\"tool_calls\":[{\"index\":");
    bt_jout_int(w, k);
    BT_JOUT_LIT(w, ",\"id\":");
    put_call_id(w, ev->id, (struct bt_str){e->id, e->id_len}, k);
    BT_JOUT_LIT(w, ",\"type\":\"function\",\"function\":{\"name\":");
    bt_jout_quoted(w, ev->name);
    BT_JOUT_LIT(w, ",\"arguments\":\"\"}}]");
    chunk_close(e, w, NULL);
    return BT_OK;
}

static enum bt_err tool_args(struct bt_openai_stream *e, struct bt_jout *w, const struct bt_event *ev,
                             char *why, size_t whycap)
{
    uint32_t i = ev->choice;
    long k = tool_slot(e, i, ev->tool_index);
    if (k < 0) {
        snprintf(why, whycap, "the provider sent arguments for tool call %u before starting it",
                 ev->tool_index);
        return BT_EPROTO;
    }
    if (!ev->text.len) return BT_OK;
    bool comma;
    chunk_open(e, w, i, &comma);
    chunk_member(w, &comma, "\"tool_calls\":[{\"index\":");
    bt_jout_int(w, k);
    BT_JOUT_LIT(w, ",\"function\":{\"arguments\":");
    bt_jout_quoted(w, ev->text);
    BT_JOUT_LIT(w, "}}]");
    chunk_close(e, w, NULL);
    e->choice[i].args_sent[k / 64] |= (uint64_t)1 << (k % 64);
    return BT_OK;
}

/* Calls of choice `i` that got no argument bytes (an Anthropic tool_use of a
 * tool without parameters streams none) get `{}`, as OpenAI sends for them:
 * the arguments a client assembles must be a JSON object. */
static void tool_empty_args(struct bt_openai_stream *e, struct bt_jout *w, uint32_t i)
{
    for (uint32_t k = 0; k < e->choice[i].ntools; k++) {
        if (e->choice[i].args_sent[k / 64] & ((uint64_t)1 << (k % 64))) continue;
        bool comma;
        chunk_open(e, w, i, &comma);
        chunk_member(w, &comma, "\"tool_calls\":[{\"index\":");
        bt_jout_int(w, k);
        BT_JOUT_LIT(w, ",\"function\":{\"arguments\":\"{}\"}}]");
        chunk_close(e, w, NULL);
        e->choice[i].args_sent[k / 64] |= (uint64_t)1 << (k % 64);
    }
}

/* The finish chunk of choice `i` (with its role when it never began). */
static void finish_choice(struct bt_openai_stream *e, struct bt_jout *w, uint32_t i, enum bt_finish f)
{
    if (e->choice[i].finished) return;
    tool_empty_args(e, w, i);
    bool comma;
    chunk_open(e, w, i, &comma);
    chunk_close(e, w, finish_name(f, e->choice[i].ntools > 0));
    e->choice[i].finished = true;
}

/* DONE: every begun choice finished (choice 0 at least), usage, [DONE]. */
static void end_stream(struct bt_openai_stream *e, struct bt_jout *w)
{
    bool any = false;
    for (uint32_t i = 0; i < BT_OPENAI_ENC_MAX_CHOICES; i++) {
        if (!e->choice[i].began) continue;
        any = true;
        finish_choice(e, w, i, BT_FINISH_NONE);
    }
    if (!any) finish_choice(e, w, 0, BT_FINISH_NONE);
    if (e->opts.include_usage && e->usage.present) {
        bt_jout_put(w, e->head, e->head_len);
        BT_JOUT_LIT(w, "\"choices\":[],\"usage\":");
        put_usage(w, &e->usage);
        BT_JOUT_LIT(w, "}\n\n");
    }
    BT_JOUT_LIT(w, "data: [DONE]\n\n");
}

/* Encodes a content event of choice ev->choice (the choice is in range). */
static enum bt_err encode(struct bt_openai_stream *e, struct bt_jout *w, const struct bt_event *ev,
                          char *why, size_t whycap)
{
    uint32_t i = ev->choice;
    switch (ev->type) {
    case BT_EV_START:
        if (!e->choice[i].began) delta_text(e, w, i, "\"content\":", BT_STR_NULL);
        break;
    case BT_EV_TEXT: delta_text(e, w, i, "\"content\":", ev->text); break;
    case BT_EV_REFUSAL: delta_text(e, w, i, "\"refusal\":", ev->text); break;
    case BT_EV_REASONING:
        /* signatures and redacted data have no place in OpenAI's reply */
        delta_text(e, w, i, "\"reasoning_content\":", ev->redacted ? BT_STR_NULL : ev->text);
        break;
    case BT_EV_TOOL_START: return tool_start(e, w, ev, why, whycap);
    case BT_EV_TOOL_ARGS: return tool_args(e, w, ev, why, whycap);
    case BT_EV_FINISH: finish_choice(e, w, i, ev->finish); break;
    default: break;
    }
    return BT_OK;
}

/* Ends the stream with an error event: the event's, or (`why`) our own. */
static enum bt_err fail_stream(struct bt_openai_stream *e, struct bt_buf *out,
                               const struct bt_event *ev, const char *why)
{
    size_t mark = out->len;
    struct bt_jout w = {out, BT_OK};
    BT_JOUT_LIT(&w, "data: ");
    put_error(&w, ev, why);
    BT_JOUT_LIT(&w, "\n\n");
    if (w.err) {
        out->len = mark;
        return w.err;
    }
    e->state = BT_OAS_FAILED;
    return why ? BT_EPROTO : BT_OK;
}

/* What a failed append must undo: the choices' flags and call counts (a call
 * slot past ntools is garbage anyway) and the head. */
struct undo {
    bool began[BT_OPENAI_ENC_MAX_CHOICES], finished[BT_OPENAI_ENC_MAX_CHOICES];
    uint32_t ntools[BT_OPENAI_ENC_MAX_CHOICES];
    uint64_t args_sent[BT_OPENAI_ENC_MAX_CHOICES][BT_OPENAI_ENC_MAX_TOOLS / 64];
    size_t head_len, out_len;
};

static void undo_save(const struct bt_openai_stream *e, const struct bt_buf *out, struct undo *u)
{
    for (uint32_t i = 0; i < BT_OPENAI_ENC_MAX_CHOICES; i++) {
        u->began[i] = e->choice[i].began;
        u->finished[i] = e->choice[i].finished;
        u->ntools[i] = e->choice[i].ntools;
        memcpy(u->args_sent[i], e->choice[i].args_sent, sizeof(u->args_sent[i]));
    }
    u->head_len = e->head_len;
    u->out_len = out->len;
}

static void undo_apply(struct bt_openai_stream *e, struct bt_buf *out, const struct undo *u)
{
    for (uint32_t i = 0; i < BT_OPENAI_ENC_MAX_CHOICES; i++) {
        e->choice[i].began = u->began[i];
        e->choice[i].finished = u->finished[i];
        e->choice[i].ntools = u->ntools[i];
        memcpy(e->choice[i].args_sent, u->args_sent[i], sizeof(u->args_sent[i]));
    }
    e->head_len = u->head_len;
    out->len = u->out_len;
}

enum bt_err bt_openai_stream_event(struct bt_openai_stream *e, const struct bt_event *ev,
                                   struct bt_buf *out)
{
    if (e->state != BT_OAS_OPEN) return BT_OK;
    char why[160] = "";
    static const struct bt_event invalid = {.type = BT_EV_ERROR,
                                            .err_type = BT_STR("upstream_error"),
                                            .err_code = BT_STR("upstream_invalid_stream")};
    switch (ev->type) {
    case BT_EV_USAGE: bt_usage_merge(&e->usage, &ev->usage); return BT_OK;
    case BT_EV_BLOCK_STOP: return BT_OK;
    case BT_EV_ERROR: return fail_stream(e, out, ev, NULL);
    default: break;
    }
    if (ev->type != BT_EV_DONE && ev->choice >= BT_OPENAI_ENC_MAX_CHOICES) {
        snprintf(why, sizeof(why), "the provider sent more than %d choices",
                 BT_OPENAI_ENC_MAX_CHOICES);
        return fail_stream(e, out, &invalid, why);
    }
    struct undo u;
    undo_save(e, out, &u);
    if (!e->head_len) {
        enum bt_err herr = build_head(e, ev->type == BT_EV_START ? ev : NULL);
        if (herr == BT_ETOOBIG) {
            snprintf(why, sizeof(why), "the provider's completion id or model name is too long");
            return fail_stream(e, out, &invalid, why);
        }
        if (herr) return herr;
    }
    struct bt_jout w = {out, BT_OK};
    enum bt_err err = BT_OK;
    if (ev->type == BT_EV_DONE) end_stream(e, &w);
    else err = encode(e, &w, ev, why, sizeof(why));
    if (err || w.err) {
        undo_apply(e, out, &u);
        return err ? fail_stream(e, out, &invalid, why) : w.err;
    }
    if (ev->type == BT_EV_DONE) e->state = BT_OAS_DONE;
    return BT_OK;
}

/* ---- aggregation ---- */

void bt_openai_agg_init(struct bt_openai_agg *a, const struct bt_openai_enc_opts *opts, size_t max)
{
    memset(a, 0, sizeof(*a));
    a->opts = *opts;
    a->max = max;
}

/* Appends an escaped body to one of the reply's buffers, within the cap. */
static enum bt_err keep(struct bt_openai_agg *a, struct bt_buf *b, struct bt_str s)
{
    return bt_buf_append_budget(b, s, &a->used, a->max);
}

static struct bt_openai_agg_tool *agg_tool(struct bt_openai_agg_choice *c, uint32_t src)
{
    for (uint32_t k = 0; k < c->ntools; k++)
        if (c->tools[k].src == src) return &c->tools[k];
    return NULL;
}

static enum bt_err agg_tool_start(struct bt_openai_agg *a, struct bt_openai_agg_choice *c,
                                  const struct bt_event *ev)
{
    struct bt_openai_agg_tool *t = agg_tool(c, ev->tool_index);
    if (!t) {
        if (c->ntools == BT_OPENAI_ENC_MAX_TOOLS) return BT_EPROTO;
        if (c->ntools == c->cap) {
            uint32_t cap = c->cap ? c->cap * 2 : 4;
            if (cap > BT_OPENAI_ENC_MAX_TOOLS) cap = BT_OPENAI_ENC_MAX_TOOLS;
            void *p = realloc(c->tools, cap * sizeof(*c->tools));
            if (!p) return BT_ENOMEM;
            c->tools = p;
            c->cap = cap;
        }
        t = &c->tools[c->ntools++];
        memset(t, 0, sizeof(*t));
        t->src = ev->tool_index;
    }
    /* a repeated start may complete what the first one left out */
    enum bt_err err = BT_OK;
    if (!t->id.len) err = keep(a, &t->id, ev->id);
    if (!err && !t->name.len) err = keep(a, &t->name, ev->name);
    return err;
}

static enum bt_err agg_event(struct bt_openai_agg *a, const struct bt_event *ev)
{
    switch (ev->type) {
    case BT_EV_USAGE: bt_usage_merge(&a->usage, &ev->usage); return BT_OK;
    case BT_EV_DONE: a->done = true; return BT_OK;
    case BT_EV_BLOCK_STOP: return BT_OK;
    case BT_EV_ERROR: {
        a->failed = true;
        a->outcome = ev->outcome;
        enum bt_err err = keep(a, &a->err_type, ev->err_type);
        if (!err) err = keep(a, &a->err_code, ev->err_code);
        if (!err) err = keep(a, &a->err_message, ev->err_message);
        return err;
    }
    default: break;
    }
    if (ev->choice >= BT_OPENAI_ENC_MAX_CHOICES) return BT_EPROTO;
    struct bt_openai_agg_choice *c = &a->choice[ev->choice];
    if (ev->choice >= a->nchoices) a->nchoices = ev->choice + 1;
    c->began = true;
    switch (ev->type) {
    case BT_EV_START: {
        enum bt_err err = BT_OK;
        if (!a->id.len) err = keep(a, &a->id, ev->id);
        if (!err && !a->model.len) err = keep(a, &a->model, ev->name);
        return err;
    }
    case BT_EV_TEXT: return keep(a, &c->content, ev->text);
    case BT_EV_REFUSAL: return keep(a, &c->refusal, ev->text);
    case BT_EV_REASONING: return ev->redacted ? BT_OK : keep(a, &c->reasoning, ev->text);
    case BT_EV_TOOL_START: return agg_tool_start(a, c, ev);
    case BT_EV_TOOL_ARGS: {
        struct bt_openai_agg_tool *t = agg_tool(c, ev->tool_index);
        return t ? keep(a, &t->args, ev->text) : BT_EPROTO;
    }
    case BT_EV_FINISH:
        if (!c->finish) c->finish = ev->finish;
        return BT_OK;
    default: return BT_OK;
    }
}

enum bt_err bt_openai_agg_event(struct bt_openai_agg *a, const struct bt_event *ev)
{
    if (!a->err && !a->failed) a->err = agg_event(a, ev);
    return a->err;
}

void bt_openai_agg_cb(void *ud, const struct bt_event *ev)
{
    (void)bt_openai_agg_event(ud, ev);
}

/* A buffer that was begun (bt_buf max set) holds a string, even an empty one. */
static bool kept(const struct bt_buf *b)
{
    return b->max != 0;
}

static void put_kept_or_null(struct bt_jout *w, const struct bt_buf *b)
{
    if (kept(b)) bt_jout_quoted(w, bt_buf_str(b));
    else BT_JOUT_LIT(w, "null");
}

static void put_choice(const struct bt_openai_agg *a, struct bt_jout *w, uint32_t i, struct bt_str id)
{
    const struct bt_openai_agg_choice *c = &a->choice[i];
    BT_JOUT_LIT(w, "{\"index\":");
    bt_jout_int(w, i);
    BT_JOUT_LIT(w, ",\"message\":{\"role\":\"assistant\",\"content\":");
    put_kept_or_null(w, &c->content);
    if (kept(&c->reasoning)) {
        BT_JOUT_LIT(w, ",\"reasoning_content\":");
        bt_jout_quoted(w, bt_buf_str(&c->reasoning));
    }
    BT_JOUT_LIT(w, ",\"refusal\":");
    put_kept_or_null(w, &c->refusal);
    if (c->ntools) {
        BT_JOUT_LIT(w, ",\"tool_calls\":[");
        for (uint32_t k = 0; k < c->ntools; k++) {
            const struct bt_openai_agg_tool *t = &c->tools[k];
            if (k) BT_JOUT_LIT(w, ",");
            BT_JOUT_LIT(w, "{\"id\":");
            put_call_id(w, bt_buf_str(&t->id), id, k);
            BT_JOUT_LIT(w, ",\"type\":\"function\",\"function\":{\"name\":");
            bt_jout_quoted(w, bt_buf_str(&t->name));
            BT_JOUT_LIT(w, ",\"arguments\":");
            bt_jout_quoted(w, bt_buf_str(&t->args));
            BT_JOUT_LIT(w, "}}");
        }
        BT_JOUT_LIT(w, "]");
    }
    BT_JOUT_LIT(w, "},\"logprobs\":null,\"finish_reason\":\"");
    bt_jout_str(w, bt_str_c(finish_name(c->finish, c->ntools > 0)));
    BT_JOUT_LIT(w, "\"}");
}

enum bt_err bt_openai_agg_write(const struct bt_openai_agg *a, struct bt_buf *out, int *status)
{
    if (a->err) return a->err;
    size_t mark = out->len;
    struct bt_jout w = {out, BT_OK};
    if (a->failed) {
        const char *type, *code;
        *status = bt_openai_outcome_error(a->outcome, &type, &code);
        struct bt_event ev = {.type = BT_EV_ERROR, .outcome = a->outcome,
                              .err_type = bt_buf_str(&a->err_type),
                              .err_code = bt_buf_str(&a->err_code),
                              .err_message = bt_buf_str(&a->err_message)};
        put_error(&w, &ev, NULL);
    } else {
        *status = 200;
        /* the id as written, escaped, for made-up tool call ids */
        struct bt_buf idb;
        bt_buf_init(&idb, a->opts.id.len * 6 + 2);
        struct bt_str id = bt_buf_str(&a->id);
        if (!id.len && !(w.err = bt_json_escape(&idb, a->opts.id)))
            id = (struct bt_str){idb.p + 1, idb.len - 2}; /* without the quotes */
        BT_JOUT_LIT(&w, "{\"id\":");
        bt_jout_quoted(&w, id);
        BT_JOUT_LIT(&w, ",\"object\":\"chat.completion\",\"created\":");
        bt_jout_int(&w, a->opts.created);
        BT_JOUT_LIT(&w, ",\"model\":");
        if (a->model.len) bt_jout_quoted(&w, bt_buf_str(&a->model));
        else bt_jout_escaped(&w, a->opts.model);
        BT_JOUT_LIT(&w, ",\"choices\":[");
        uint32_t n = a->nchoices ? a->nchoices : 1;
        for (uint32_t i = 0; i < n; i++) {
            if (i) BT_JOUT_LIT(&w, ",");
            put_choice(a, &w, i, id);
        }
        BT_JOUT_LIT(&w, "]");
        if (a->usage.present) {
            BT_JOUT_LIT(&w, ",\"usage\":");
            put_usage(&w, &a->usage);
        }
        BT_JOUT_LIT(&w, "}");
        bt_buf_free(&idb);
    }
    if (w.err) out->len = mark;
    return w.err;
}

void bt_openai_agg_free(struct bt_openai_agg *a)
{
    bt_buf_free(&a->id);
    bt_buf_free(&a->model);
    bt_buf_free(&a->err_type);
    bt_buf_free(&a->err_code);
    bt_buf_free(&a->err_message);
    for (uint32_t i = 0; i < BT_OPENAI_ENC_MAX_CHOICES; i++) {
        struct bt_openai_agg_choice *c = &a->choice[i];
        bt_buf_free(&c->content);
        bt_buf_free(&c->reasoning);
        bt_buf_free(&c->refusal);
        for (uint32_t k = 0; k < c->ntools; k++) {
            bt_buf_free(&c->tools[k].id);
            bt_buf_free(&c->tools[k].name);
            bt_buf_free(&c->tools[k].args);
        }
        free(c->tools);
    }
    memset(a, 0, sizeof(*a));
}
