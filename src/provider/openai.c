/* The OpenAI-compatible adapter: request encoding (the fast path's splice), its
 * headers, and reply / stream-event / error decoding. */
#include "provider/openai.h"

#include <string.h>
#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#include "core/log.h"
#include "provider/openai_chat_encode.h"
#include "provider/openai_reply.h"

/* A client of another API: the body encoded from the canonical chat request
 * (usage is always asked for; the translate path folds it into the client's
 * own usage report, so nothing is dropped). */
static enum bt_err encode_translated(const struct bt_request *r, struct bt_str upstream_model,
                                     struct bt_arena *arena, struct bt_pbody *out)
{
    memset(&out->refused, 0, sizeof(out->refused));
    if (r->op != BT_OP_CHAT || !r->chat) {
        snprintf(out->refused.message, sizeof(out->refused.message),
                 "this operation cannot be translated for an OpenAI-compatible provider");
        return BT_EINVAL;
    }
    struct bt_buf b;
    bt_buf_init(&b, (size_t)r->body_bytes * 2 + (1u << 20));
    enum bt_err err = bt_openai_chat_encode(r->chat, upstream_model, arena, &b, &out->refused);
    if (!err) {
        struct bt_str s = bt_arena_strdup(arena, bt_buf_str(&b));
        if (!s.p) err = BT_ENOMEM;
        out->parts[0] = s;
        out->n = 1;
    }
    bt_buf_free(&b);
    return err;
}

/* The fast path's body: the client's bytes with `model` replaced and, for a stream
 * whose client did not ask for usage, `stream_options.include_usage` added. */
static enum bt_err openai_encode(const struct bt_request *r, struct bt_str upstream_model,
                                 struct bt_arena *arena, struct bt_pbody *out, bool *added_usage)
{
    *added_usage = false;
    if (r->api != BT_API_OPENAI) return encode_translated(r, upstream_model, arena, out);
    struct bt_json_splice sp;
    bt_json_splice_init(&sp, &r->doc, arena);
    struct bt_buf model;
    bt_buf_init(&model, upstream_model.len * 6 + 16);
    enum bt_err err = bt_json_escape(&model, upstream_model);
    if (err) goto done;
    struct bt_str mv = bt_arena_strdup(arena, bt_buf_str(&model));
    if (!mv.p) {
        err = BT_ENOMEM;
        goto done;
    }
    err = bt_json_splice_replace(&sp, r->tok_model, mv);
    if (err) goto done;
    if (r->op == BT_OP_CHAT && r->stream && !r->include_usage) {
        /* Usage is only reported in a stream when asked for; we always want it
         * for accounting, and drop the extra chunk before the client sees it. */
        if (r->tok_stream_options >= 0)
            err = bt_json_splice_set(&sp, r->tok_stream_options, "include_usage", BT_STR("true"));
        else
            err = bt_json_splice_set(&sp, 0, "stream_options", BT_STR("{\"include_usage\":true}"));
        if (err) goto done;
        *added_usage = true;
    }
    err = bt_json_splice_slices(&sp, out->parts, BT_UP_BODY_PARTS, &out->n);
done:
    bt_buf_free(&model);
    return err;
}

static int64_t get_int(const struct bt_json_doc *doc, int obj, const char *key)
{
    int64_t v = 0;
    int t = bt_json_get(doc, obj, key);
    if (t >= 0 && bt_json_type(doc, t) == BT_JSON_NUMBER && bt_json_int(doc, t, &v) == BT_OK)
        return v;
    return 0;
}

/* A token count from a provider: clamped to [0, 2^40] so a hostile reply cannot
 * overflow the sums made from it. */
static int64_t get_count(const struct bt_json_doc *doc, int obj, const char *key)
{
    int64_t v = get_int(doc, obj, key);
    if (v < 0) return 0;
    return v > ((int64_t)1 << 40) ? (int64_t)1 << 40 : v;
}

void bt_openai_read_usage(const struct bt_json_doc *doc, int tok, struct bt_usage *u)
{
    if (bt_json_type(doc, tok) != BT_JSON_OBJECT) return;
    u->present = true;
    u->prompt_tokens = get_count(doc, tok, "prompt_tokens");
    u->completion_tokens = get_count(doc, tok, "completion_tokens");
    u->total_tokens = get_count(doc, tok, "total_tokens");
    int d = bt_json_get(doc, tok, "prompt_tokens_details");
    if (d >= 0) u->cached_tokens = get_count(doc, d, "cached_tokens");
    d = bt_json_get(doc, tok, "completion_tokens_details");
    if (d >= 0) u->reasoning_tokens = get_count(doc, d, "reasoning_tokens");
    if (!u->total_tokens) u->total_tokens = u->prompt_tokens + u->completion_tokens;
}

static void emit_error(const struct bt_json_doc *doc, int e, bt_event_cb cb, void *ud)
{
    struct bt_event ev = {.type = BT_EV_ERROR};
    if (bt_json_type(doc, e) == BT_JSON_OBJECT) {
        int t = bt_json_get(doc, e, "type");
        if (bt_json_type(doc, t) == BT_JSON_STRING) ev.err_type = bt_json_str_raw(doc, t);
        t = bt_json_get(doc, e, "message");
        if (bt_json_type(doc, t) == BT_JSON_STRING) ev.err_message = bt_json_str_raw(doc, t);
        t = bt_json_get(doc, e, "code");
        if (bt_json_type(doc, t) == BT_JSON_STRING) ev.err_code = bt_json_str_raw(doc, t);
    } else if (bt_json_type(doc, e) == BT_JSON_STRING) {
        ev.err_message = bt_json_str_raw(doc, e);
    }
    cb(ud, &ev);
}

static void decode_choice_end(const struct bt_json_doc *doc, int choice, uint32_t idx,
                              bt_event_cb cb, void *ud)
{
    int fr = bt_json_get(doc, choice, "finish_reason");
    if (bt_json_type(doc, fr) == BT_JSON_STRING) {
        struct bt_event ev = {.type = BT_EV_FINISH, .choice = idx};
        ev.finish = bt_finish_parse(bt_json_str_raw(doc, fr));
        cb(ud, &ev);
    }
}

/* The deltas of one chunk choice: start, reasoning, text, tool-call pieces. */
static void decode_delta(const struct bt_json_doc *doc, int c, int64_t idx, bt_event_cb cb,
                         void *ud)
{
    int delta = bt_json_get(doc, c, "delta");
    if (bt_json_type(doc, delta) == BT_JSON_OBJECT) {
        int role = bt_json_get(doc, delta, "role");
        if (bt_json_type(doc, role) == BT_JSON_STRING) {
            struct bt_event ev = {.type = BT_EV_START, .choice = (uint32_t)idx};
            int id = bt_json_get(doc, 0, "id");
            if (bt_json_type(doc, id) == BT_JSON_STRING) ev.id = bt_json_str_raw(doc, id);
            cb(ud, &ev);
        }
        static const char *reasoning_keys[] = {"reasoning_content", "reasoning"};
        for (int k = 0; k < 2; k++) {
            int rc = bt_json_get(doc, delta, reasoning_keys[k]);
            if (bt_json_type(doc, rc) == BT_JSON_STRING) {
                struct bt_event ev = {.type = BT_EV_REASONING, .choice = (uint32_t)idx};
                ev.text = bt_json_str_raw(doc, rc);
                cb(ud, &ev);
            }
        }
        int content = bt_json_get(doc, delta, "content");
        if (bt_json_type(doc, content) == BT_JSON_STRING) {
            struct bt_event ev = {.type = BT_EV_TEXT, .choice = (uint32_t)idx};
            ev.text = bt_json_str_raw(doc, content);
            cb(ud, &ev);
        }
        int tcs = bt_json_get(doc, delta, "tool_calls");
        if (bt_json_type(doc, tcs) == BT_JSON_ARRAY) {
            uint32_t j = 0;
            for (int tc = bt_json_first(doc, tcs); tc >= 0 && j < doc->toks[tcs].size;
                 tc = (int)doc->toks[tc].next, j++) {
                int64_t ti = get_int(doc, tc, "index");
                int fn = bt_json_get(doc, tc, "function");
                int id = bt_json_get(doc, tc, "id");
                int name = bt_json_get(doc, fn, "name");
                if (bt_json_type(doc, id) == BT_JSON_STRING ||
                    bt_json_type(doc, name) == BT_JSON_STRING) {
                    struct bt_event ev = {.type = BT_EV_TOOL_START,
                                          .choice = (uint32_t)idx,
                                          .tool_index = (uint32_t)ti};
                    if (bt_json_type(doc, id) == BT_JSON_STRING)
                        ev.id = bt_json_str_raw(doc, id);
                    if (bt_json_type(doc, name) == BT_JSON_STRING)
                        ev.name = bt_json_str_raw(doc, name);
                    cb(ud, &ev);
                }
                int args = bt_json_get(doc, fn, "arguments");
                if (bt_json_type(doc, args) == BT_JSON_STRING) {
                    struct bt_event ev = {.type = BT_EV_TOOL_ARGS,
                                          .choice = (uint32_t)idx,
                                          .tool_index = (uint32_t)ti};
                    ev.text = bt_json_str_raw(doc, args);
                    cb(ud, &ev);
                }
            }
        }
    }
}

/* One walk for both shapes: an error, then each choice (with its delta for stream
 * chunks) and its finish reason, then usage. */
static void decode(const struct bt_json_doc *doc, bool chunk, bt_event_cb cb, void *ud)
{
    if (bt_json_type(doc, 0) != BT_JSON_OBJECT) return;
    int e = bt_json_get(doc, 0, "error");
    if (e >= 0) {
        emit_error(doc, e, cb, ud);
        return;
    }
    int choices = bt_json_get(doc, 0, "choices");
    if (bt_json_type(doc, choices) == BT_JSON_ARRAY) {
        uint32_t i = 0;
        for (int c = bt_json_first(doc, choices); c >= 0 && i < doc->toks[choices].size;
             c = (int)doc->toks[c].next, i++) {
            int64_t idx = get_int(doc, c, "index");
            if (chunk) decode_delta(doc, c, idx, cb, ud);
            decode_choice_end(doc, c, (uint32_t)idx, cb, ud);
        }
    }
    int usage = bt_json_get(doc, 0, "usage");
    if (bt_json_type(doc, usage) == BT_JSON_OBJECT) {
        struct bt_event ev = {.type = BT_EV_USAGE};
        bt_openai_read_usage(doc, usage, &ev.usage);
        cb(ud, &ev);
    }
}

static bool blank(char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; }

/* True when the '{' at `brace` is the value of member `key`: `"key"`, blanks, ':',
 * blanks just before it. */
static bool member_before(const char *s, const char *brace, const char *key, size_t klen)
{
    const char *p = brace;
    while (p > s && blank(p[-1])) p--;
    if (p == s || *--p != ':') return false;
    while (p > s && blank(p[-1])) p--;
    if (p == s || *--p != '"') return false;
    return (size_t)(p - s) >= klen + 1 && p[-(ptrdiff_t)klen - 1] == '"' &&
           memcmp(p - klen, key, klen) == 0;
}

/* What the pre-check found at one position: a '{' that opens a usage or error
 * object, or a '_' inside a non-null "finish_reason" member. */
static bool matters_at(const char *s, const char *end, const char *p)
{
    if (*p == '{') return member_before(s, p, "usage", 5) || member_before(s, p, "error", 5);
    if ((size_t)(end - p) < 8 || memcmp(p, "_reason\"", 8) != 0 || p - s < 7 ||
        memcmp(p - 7, "\"finish", 7) != 0)
        return false;
    const char *q = p + 8;
    while (q < end && blank(*q)) q++;
    if (q == end || *q != ':') return false;
    q++;
    while (q < end && blank(*q)) q++;
    return q < end && *q != 'n';
}

/* Byte by byte: braces counted, every '{' and '_' looked at. */
static bool is_plain_bytes(const char *s, const char *end)
{
    long depth = 0; /* '{' minus '}' */
    for (const char *p = s; p < end; p++) {
        if (*p == '}') depth--;
        else if (*p == '{' || *p == '_') {
            depth += *p == '{';
            if (matters_at(s, end, p)) return false;
        }
    }
    return depth == 0; /* unpaired braces: cut short (or braces in text), so decode */
}

#if defined(__SSE2__)
/* Lanes of one 16-byte block worth a matters_at look: a '{' after ':' or a
 * blank (any byte below '!', non-ASCII included: a superset) may open a usage or
 * error object; a '_' before an 'r' may start "_reason". `before` and `after`
 * are the block shifted by one byte either way; `open` gets the '{' lanes. */
static inline __m128i candidates(__m128i v, __m128i before, __m128i after, __m128i *open)
{
    *open = _mm_cmpeq_epi8(v, _mm_set1_epi8('{'));
    __m128i lead = _mm_or_si128(_mm_cmpeq_epi8(before, _mm_set1_epi8(':')),
                                _mm_cmplt_epi8(before, _mm_set1_epi8('!')));
    __m128i reason = _mm_and_si128(_mm_cmpeq_epi8(v, _mm_set1_epi8('_')),
                                   _mm_cmpeq_epi8(after, _mm_set1_epi8('r')));
    return _mm_or_si128(_mm_and_si128(*open, lead), reason);
}

/* Adds up signed per-lane counts. */
static long lane_sum(__m128i acc)
{
    __m128i sums = _mm_sad_epu8(_mm_xor_si128(acc, _mm_set1_epi8((char)0x80)), _mm_setzero_si128());
    return (long)_mm_cvtsi128_si32(sums) + (long)_mm_extract_epi16(sums, 4) - 16 * 128;
}
#endif

/* One pass over the chunk, 16 bytes per step where SSE2 exists: braces are
 * counted per lane (+1 '{', -1 '}') and added up every 64 steps, before a lane
 * can overflow; the few candidate positions (usually "delta":{ and
 * finish_reason) get a closer look. The last 1..16 bytes are one more block that
 * ends at the chunk's end, its lanes already seen masked off, so no byte loop
 * runs (a chunk is a few hundred bytes: loop ends cost as much as the scan). */
bool bt_openai_chunk_is_plain(struct bt_str data)
{
    const char *s = data.p, *end = data.p + data.len;
#if defined(__SSE2__)
    if (data.len < 33) return is_plain_bytes(s, end);
    const __m128i rb = _mm_set1_epi8('}');
    long depth = *s == '{' ? 1 : *s == '}' ? -1 : 0; /* byte 0 has no byte before it */
    if (*s == '_' && matters_at(s, end, s)) return false;
    const char *p = s + 1;
    __m128i acc = _mm_setzero_si128(), open;
    int steps = 0;
    for (; end - p >= 17; p += 16) {
        __m128i v = _mm_loadu_si128((const __m128i *)(const void *)p);
        __m128i cand = candidates(v, _mm_loadu_si128((const __m128i *)(const void *)(p - 1)),
                                  _mm_loadu_si128((const __m128i *)(const void *)(p + 1)), &open);
        acc = _mm_add_epi8(acc, _mm_sub_epi8(_mm_cmpeq_epi8(v, rb), open));
        for (unsigned m = (unsigned)_mm_movemask_epi8(cand); m; m &= m - 1)
            if (matters_at(s, end, p + __builtin_ctz(m))) return false;
        if (++steps == 64) {
            depth += lane_sum(acc);
            acc = _mm_setzero_si128();
            steps = 0;
        }
    }
    /* the tail: the last 16 bytes, lanes before p dropped; lane 15 has no byte
     * after it, and a '_' there cannot start "_reason\"" anyway */
    const char *q = end - 16;
    __m128i v = _mm_loadu_si128((const __m128i *)(const void *)q);
    __m128i keep = _mm_cmpgt_epi8(_mm_setr_epi8(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
                                  _mm_set1_epi8((char)(p - q - 1)));
    __m128i cand = candidates(v, _mm_loadu_si128((const __m128i *)(const void *)(q - 1)),
                              _mm_srli_si128(v, 1), &open);
    acc = _mm_add_epi8(acc, _mm_and_si128(keep, _mm_sub_epi8(_mm_cmpeq_epi8(v, rb), open)));
    for (unsigned m = (unsigned)_mm_movemask_epi8(_mm_and_si128(cand, keep)); m; m &= m - 1)
        if (matters_at(s, end, q + __builtin_ctz(m))) return false;
    return depth + lane_sum(acc) == 0; /* unpaired braces: cut short (or braces in text) */
#else
    return is_plain_bytes(s, end);
#endif
}

bool bt_openai_chunk_is_plain_bytes(struct bt_str data)
{
    return is_plain_bytes(data.p, data.p + data.len);
}

void bt_openai_decode_chunk(const struct bt_json_doc *doc, bt_event_cb cb, void *ud)
{
    decode(doc, true, cb, ud);
}

void bt_openai_decode_response(const struct bt_json_doc *doc, bt_event_cb cb, void *ud)
{
    decode(doc, false, cb, ud);
}

/* ---- the adapter's table ---- */

static const char *openai_path(enum bt_op op)
{
    return op == BT_OP_EMBED ? "/embeddings" : "/chat/completions";
}

static size_t openai_headers(const struct bt_provider *p, bool stream, struct bt_http_header *hs,
                             size_t cap, char *scratch, size_t scratch_cap, enum bt_err *err)
{
    size_t n = 0;
    *err = BT_OK;
    if (cap < 4) {
        *err = BT_ETOOBIG;
        return 0;
    }
    hs[n++] = (struct bt_http_header){BT_STR("Content-Type"), BT_STR("application/json")};
    hs[n++] = (struct bt_http_header){BT_STR("Accept"), stream ? BT_STR("text/event-stream")
                                                              : BT_STR("application/json")};
    hs[n++] = (struct bt_http_header){BT_STR("User-Agent"), BT_STR("baton")};
    if (p->api_key) {
        int an = snprintf(scratch, scratch_cap, "Bearer %s", p->api_key);
        if (an < 0 || (size_t)an >= scratch_cap) {
            *err = BT_ETOOBIG;
            return 0;
        }
        hs[n++] = (struct bt_http_header){BT_STR("Authorization"), {scratch, (size_t)an}};
    }
    return n;
}

static enum bt_ev_kind openai_classify(const struct bt_sse_event *ev, bool decoded_first, bool full)
{
    if (!ev->has_data) return BT_EVK_RELAY;
    if (ev->data.len == 6 && memcmp(ev->data.p, "[DONE]", 6) == 0) return BT_EVK_DONE;
    /* Only events that can change what is accounted or forwarded (the first
     * content, a finish reason, usage, an error) are decoded; every other one is a
     * plain delta relayed as it came. `full` validates it as JSON and finds those
     * members exactly; otherwise it must be framed as a JSON object and
     * bt_openai_chunk_is_plain looks for them, which keeps the relay's cost per
     * event near a copy's. */
    if (!decoded_first) return BT_EVK_DECODE;
    struct bt_str d = bt_str_trim(ev->data);
    if (d.len < 2 || d.p[0] != '{' || d.p[d.len - 1] != '}') return BT_EVK_INVALID;
    if (full) {
        struct bt_json_watch w[3] = {{"usage", 5, 1, false},
                                     {"error", 5, 1, false},
                                     {"finish_reason", 13, 3, false}};
        if (bt_json_validate(d.p, d.len, 0, w, 3) != BT_OK) return BT_EVK_INVALID;
        return !w[0].hit && !w[1].hit && !w[2].hit ? BT_EVK_PLAIN : BT_EVK_DECODE;
    }
    return bt_openai_chunk_is_plain(d) ? BT_EVK_PLAIN : BT_EVK_DECODE;
}

/* The usage chunk a stream_options.include_usage adds: no choices, a usage object. */
static bool openai_added_usage_event(const struct bt_json_doc *doc)
{
    int ch = bt_json_get(doc, 0, "choices");
    int us = bt_json_get(doc, 0, "usage");
    return bt_json_type(doc, ch) == BT_JSON_ARRAY && doc->toks[ch].size == 0 &&
           bt_json_type(doc, us) == BT_JSON_OBJECT;
}

static struct bt_str field(const struct bt_json_doc *doc, int obj, const char *key,
                           struct bt_arena *arena)
{
    int t = bt_json_get(doc, obj, key);
    struct bt_str v = BT_STR_NULL;
    if (bt_json_type(doc, t) == BT_JSON_STRING && bt_json_str(doc, t, arena, &v) == BT_OK) return v;
    return BT_STR_NULL;
}

/* `{"error":{"message","type","param","code"}}` (or `"error":"text"`); the class
 * from the status, refined by the codes OpenAI-compatible servers use for a prompt
 * over the context window and for their content filter. */
static void openai_decode_error(int status, struct bt_str body, struct bt_arena *arena,
                                struct bt_perror *out)
{
    memset(out, 0, sizeof(*out));
    out->cls = bt_outcome_from_status(status);
    struct bt_json_doc doc;
    if (!body.len || bt_json_parse(&doc, body.p, body.len, arena, NULL, NULL) != BT_OK) return;
    int e = bt_json_get(&doc, 0, "error");
    if (bt_json_type(&doc, e) == BT_JSON_OBJECT) {
        out->message = field(&doc, e, "message", arena);
        out->code = field(&doc, e, "code", arena);
        out->param = field(&doc, e, "param", arena);
        out->type = field(&doc, e, "type", arena);
    } else if (bt_json_type(&doc, e) == BT_JSON_STRING) {
        bt_json_str(&doc, e, arena, &out->message);
    }
    if (out->cls == BT_OUTCOME_BAD_REQUEST) {
        if (bt_str_eq_c(out->code, "context_length_exceeded") ||
            bt_str_eq_c(out->code, "string_above_max_length"))
            out->cls = BT_OUTCOME_CONTEXT_WINDOW;
        else if (bt_str_eq_c(out->code, "content_filter") ||
                 bt_str_eq_c(out->code, "content_policy_violation"))
            out->cls = BT_OUTCOME_CONTENT_FILTER;
    }
}

const struct bt_adapter bt_adapter_openai = {
    .name = "openai",
    .wire = BT_API_OPENAI,
    .encode = openai_encode,
    .path = openai_path,
    .headers = openai_headers,
    .decode_reply = bt_openai_reply_events,
    .classify_event = openai_classify,
    .decode_event = bt_openai_chunk_events,
    .added_usage_event = openai_added_usage_event,
    .decode_error = openai_decode_error,
};
