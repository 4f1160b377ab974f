/* The Anthropic adapter: the Messages request from the canonical chat request,
 * headers, and replies / stream events / errors into canonical events. See
 * anthropic.h and docs/providers.md. */
#include "provider/anthropic.h"

#include <stdio.h>
#include <string.h>

#include "provider/wire.h"

/* ---- the request ---- */

/* What the encoder is writing: the body, the open message's role. */
struct aenc {
    struct bt_jw w;
    const struct bt_chat *c;
    struct bt_arena *arena;
    struct bt_chat_error *refused;
    const char *open_role; /* the message being written ("user", "assistant"), or NULL */
};

static enum bt_err cache_mark(struct aenc *e, const struct bt_cache_mark *m, const char *where)
{
    if (!m->set) return BT_OK;
    if (m->ttl.len && !bt_str_eq_c(m->ttl, "5m") && !bt_str_eq_c(m->ttl, "1h"))
        return bt_wire_refuse(e->refused, where,
                              "a cache breakpoint's ttl toward Anthropic must be 5m or 1h (got "
                              "%.*s)",
                              (int)(m->ttl.len > 16 ? 16 : m->ttl.len), m->ttl.p);
    bt_jw_key(&e->w, "cache_control");
    bt_jw_obj_begin(&e->w);
    bt_jw_key(&e->w, "type");
    bt_jw_cstr(&e->w, "ephemeral");
    if (m->ttl.len) {
        bt_jw_key(&e->w, "ttl");
        bt_wire_raw_str(&e->w, m->ttl);
    }
    bt_jw_obj_end(&e->w);
    return BT_OK;
}

static void text_block(struct aenc *e, struct bt_str text)
{
    bt_jw_obj_begin(&e->w);
    bt_jw_key(&e->w, "type");
    bt_jw_cstr(&e->w, "text");
    bt_jw_key(&e->w, "text");
    bt_wire_raw_str(&e->w, text);
}

static void image_block(struct aenc *e, const struct bt_chat_part *p)
{
    bt_jw_obj_begin(&e->w);
    bt_jw_key(&e->w, "type");
    bt_jw_cstr(&e->w, "image");
    bt_jw_key(&e->w, "source");
    bt_jw_obj_begin(&e->w);
    bt_jw_key(&e->w, "type");
    if (p->image.url.len) {
        bt_jw_cstr(&e->w, "url");
        bt_jw_key(&e->w, "url");
        bt_wire_raw_str(&e->w, p->image.url);
    } else {
        bt_jw_cstr(&e->w, "base64");
        bt_jw_key(&e->w, "media_type");
        bt_wire_raw_str(&e->w, p->image.media_type);
        bt_jw_key(&e->w, "data");
        bt_wire_raw_str(&e->w, p->image.data);
    }
    bt_jw_obj_end(&e->w);
}

/* One part that may sit in a user message or a tool result: text, image,
 * document. Leaves the block object open (for cache_control); false when the
 * part was skipped (empty text). */
static enum bt_err content_block(struct aenc *e, const struct bt_chat_part *p, const char *where,
                                 bool *written)
{
    *written = false;
    switch (p->type) {
    case BT_PART_TEXT:
    case BT_PART_REFUSAL:
        if (!p->text.len) return BT_OK; /* Anthropic refuses empty text blocks */
        text_block(e, p->text);
        break;
    case BT_PART_IMAGE:
        image_block(e, p);
        break;
    case BT_PART_FILE:
        if (p->file.file_id.len || !p->file.data.len)
            return bt_wire_refuse(e->refused, where,
                                  "a file given by id cannot be sent to Anthropic; send its data");
        if (p->file.media_type.len && !bt_str_eq_c(p->file.media_type, "application/pdf"))
            return bt_wire_refuse(e->refused, where,
                                  "Anthropic takes PDF documents only (got %.*s)",
                                  (int)(p->file.media_type.len > 60 ? 60 : p->file.media_type.len),
                                  p->file.media_type.p);
        bt_jw_obj_begin(&e->w);
        bt_jw_key(&e->w, "type");
        bt_jw_cstr(&e->w, "document");
        bt_jw_key(&e->w, "source");
        bt_jw_obj_begin(&e->w);
        bt_jw_key(&e->w, "type");
        bt_jw_cstr(&e->w, "base64");
        bt_jw_key(&e->w, "media_type");
        bt_jw_cstr(&e->w, "application/pdf");
        bt_jw_key(&e->w, "data");
        bt_wire_raw_str(&e->w, p->file.data);
        bt_jw_obj_end(&e->w);
        if (p->file.filename.len) {
            bt_jw_key(&e->w, "title");
            bt_wire_raw_str(&e->w, p->file.filename);
        }
        break;
    case BT_PART_AUDIO:
        return bt_wire_refuse(e->refused, where, "Anthropic models take no audio input");
    default:
        return bt_wire_refuse(e->refused, where, "this kind of content cannot be sent here");
    }
    *written = true;
    return BT_OK;
}

/* Opens a message of `role` unless one of that role is open: Anthropic wants
 * user and assistant turns to alternate, so consecutive same-role messages
 * (a tool message then a user message) become one. */
static void open_msg(struct aenc *e, const char *role)
{
    if (e->open_role && strcmp(e->open_role, role) == 0) return;
    if (e->open_role) {
        bt_jw_arr_end(&e->w);
        bt_jw_obj_end(&e->w);
    }
    bt_jw_obj_begin(&e->w);
    bt_jw_key(&e->w, "role");
    bt_jw_cstr(&e->w, role);
    bt_jw_key(&e->w, "content");
    bt_jw_arr_begin(&e->w);
    e->open_role = role;
}

static enum bt_err tool_result(struct aenc *e, const struct bt_chat_part *p, const char *where)
{
    if (!p->tool_result.call_id.len)
        return bt_wire_refuse(e->refused, where,
                              "a tool result without a tool_call_id cannot be sent to Anthropic");
    bt_jw_obj_begin(&e->w);
    bt_jw_key(&e->w, "type");
    bt_jw_cstr(&e->w, "tool_result");
    bt_jw_key(&e->w, "tool_use_id");
    bt_wire_raw_str(&e->w, p->tool_result.call_id);
    if (p->tool_result.is_error) {
        bt_jw_key(&e->w, "is_error");
        bt_jw_bool(&e->w, true);
    }
    bt_jw_key(&e->w, "content");
    bt_jw_arr_begin(&e->w);
    for (uint32_t i = 0; i < p->tool_result.nparts; i++) {
        const struct bt_chat_part *q = &p->tool_result.parts[i];
        if (q->type != BT_PART_TEXT && q->type != BT_PART_IMAGE && q->type != BT_PART_FILE)
            return bt_wire_refuse(e->refused, where,
                                  "a tool result toward Anthropic holds text, images or documents");
        bool written;
        enum bt_err err = content_block(e, q, where, &written);
        if (err) return err;
        if (written) bt_jw_obj_end(&e->w);
    }
    bt_jw_arr_end(&e->w);
    return cache_mark(e, &p->cache, where);
}

static enum bt_err tool_use(struct aenc *e, const struct bt_chat_part *p, const char *where)
{
    if (!p->tool_call.id.len || !p->tool_call.name.len)
        return bt_wire_refuse(e->refused, where,
                              "a tool call without an id or a name cannot be sent to Anthropic");
    struct bt_str args;
    enum bt_err err = bt_chat_args_json(p, e->arena, &args);
    if (err == BT_ENOMEM) return err;
    if (err || !bt_wire_is_object(args, e->arena))
        return bt_wire_refuse(e->refused, where,
                              "a tool call's arguments must be a JSON object for Anthropic's "
                              "`input`");
    bt_jw_obj_begin(&e->w);
    bt_jw_key(&e->w, "type");
    bt_jw_cstr(&e->w, "tool_use");
    bt_jw_key(&e->w, "id");
    bt_wire_raw_str(&e->w, p->tool_call.id);
    bt_jw_key(&e->w, "name");
    bt_wire_raw_str(&e->w, p->tool_call.name);
    bt_jw_key(&e->w, "input");
    bt_jw_raw(&e->w, args);
    return BT_OK;
}

/* One part of a conversation message, as a block of the open message. */
static enum bt_err msg_part(struct aenc *e, const struct bt_chat_msg *m,
                            const struct bt_chat_part *p, const char *where)
{
    enum bt_err err = BT_OK;
    bool written = true;
    switch (p->type) {
    case BT_PART_TOOL_RESULT:
        err = tool_result(e, p, where);
        if (!err) bt_jw_obj_end(&e->w);
        return err;
    case BT_PART_TOOL_CALL:
        err = tool_use(e, p, where);
        break;
    case BT_PART_THINKING:
        /* Reasoning without a signature (another provider's, e.g. DeepSeek's
         * reasoning_content sent back) cannot be verified by Anthropic, which
         * refuses it: it stays out of the request. */
        if (!p->thinking.signature.len) return BT_OK;
        bt_jw_obj_begin(&e->w);
        bt_jw_key(&e->w, "type");
        bt_jw_cstr(&e->w, "thinking");
        bt_jw_key(&e->w, "thinking");
        bt_wire_raw_str(&e->w, p->thinking.text);
        bt_jw_key(&e->w, "signature");
        bt_wire_raw_str(&e->w, p->thinking.signature);
        bt_jw_obj_end(&e->w);
        return BT_OK;
    case BT_PART_REDACTED_THINKING:
        bt_jw_obj_begin(&e->w);
        bt_jw_key(&e->w, "type");
        bt_jw_cstr(&e->w, "redacted_thinking");
        bt_jw_key(&e->w, "data");
        bt_wire_raw_str(&e->w, p->thinking.text);
        bt_jw_obj_end(&e->w);
        return BT_OK;
    default:
        (void)m;
        err = content_block(e, p, where, &written);
        break;
    }
    if (err || !written) return err;
    err = cache_mark(e, &p->cache, where);
    bt_jw_obj_end(&e->w);
    return err;
}

static enum bt_err system_prompt(struct aenc *e)
{
    const struct bt_chat *c = e->c;
    bool any = false;
    char where[64];
    for (uint32_t pass = 0; pass < 2; pass++) {
        uint32_t n = pass == 0 ? 1 : c->nmsgs;
        for (uint32_t i = 0; i < n; i++) {
            const struct bt_chat_part *parts = c->system;
            uint32_t np = c->nsystem;
            const struct bt_cache_mark *mc = NULL;
            if (pass == 1) {
                const struct bt_chat_msg *m = &c->msgs[i];
                if (m->role != BT_ROLE_SYSTEM && m->role != BT_ROLE_DEVELOPER) continue;
                parts = m->parts;
                np = m->nparts;
                mc = &m->cache;
            }
            for (uint32_t j = 0; j < np; j++) {
                const struct bt_chat_part *p = &parts[j];
                snprintf(where, sizeof(where), pass ? "messages[%u].content" : "system", i);
                if (p->type != BT_PART_TEXT)
                    return bt_wire_refuse(e->refused, where,
                                          "Anthropic's system prompt holds text only");
                if (!p->text.len) continue;
                if (!any) {
                    bt_jw_key(&e->w, "system");
                    bt_jw_arr_begin(&e->w);
                    any = true;
                }
                text_block(e, p->text);
                bool mark_msg = mc && mc->set && j + 1 == np && !p->cache.set;
                enum bt_err err = cache_mark(e, mark_msg ? mc : &p->cache, where);
                if (err) return err;
                bt_jw_obj_end(&e->w);
            }
        }
    }
    if (any) bt_jw_arr_end(&e->w);
    return BT_OK;
}

static enum bt_err messages(struct aenc *e)
{
    const struct bt_chat *c = e->c;
    char where[64];
    bt_jw_key(&e->w, "messages");
    bt_jw_arr_begin(&e->w);
    for (uint32_t i = 0; i < c->nmsgs; i++) {
        const struct bt_chat_msg *m = &c->msgs[i];
        if (m->role == BT_ROLE_SYSTEM || m->role == BT_ROLE_DEVELOPER) continue; /* hoisted */
        const char *role = m->role == BT_ROLE_ASSISTANT ? "assistant" : "user";
        for (uint32_t j = 0; j < m->nparts; j++) {
            const struct bt_chat_part *p = &m->parts[j];
            snprintf(where, sizeof(where), "messages[%u].content[%u]", i, j);
            if ((p->type == BT_PART_TEXT || p->type == BT_PART_REFUSAL) && !p->text.len &&
                !p->cache.set)
                continue;
            if (m->role != BT_ROLE_ASSISTANT &&
                (p->type == BT_PART_TOOL_CALL || p->type == BT_PART_THINKING ||
                 p->type == BT_PART_REDACTED_THINKING))
                return bt_wire_refuse(e->refused, where, "only assistant messages hold this");
            if (m->role == BT_ROLE_ASSISTANT && p->type == BT_PART_TOOL_RESULT)
                return bt_wire_refuse(e->refused, where, "an assistant message holds no tool result");
            open_msg(e, role);
            struct bt_chat_part marked = *p;
            if (m->cache.set && j + 1 == m->nparts && !p->cache.set) marked.cache = m->cache;
            enum bt_err err = msg_part(e, m, &marked, where);
            if (err) return err;
        }
    }
    if (e->open_role) {
        bt_jw_arr_end(&e->w);
        bt_jw_obj_end(&e->w);
    }
    bt_jw_arr_end(&e->w);
    if (!e->open_role)
        return bt_wire_refuse(e->refused, "messages",
                              "the conversation has no message Anthropic can take (only system "
                              "messages or empty text)");
    return BT_OK;
}

static enum bt_err tools(struct aenc *e)
{
    const struct bt_chat *c = e->c;
    if (!c->ntools) return BT_OK;
    bt_jw_key(&e->w, "tools");
    bt_jw_arr_begin(&e->w);
    for (uint32_t i = 0; i < c->ntools; i++) {
        const struct bt_chat_tool *t = &c->tools[i];
        bt_jw_obj_begin(&e->w);
        bt_jw_key(&e->w, "name");
        bt_wire_raw_str(&e->w, t->name);
        if (t->description.len) {
            bt_jw_key(&e->w, "description");
            bt_wire_raw_str(&e->w, t->description);
        }
        bt_jw_key(&e->w, "input_schema");
        if (t->parameters.len)
            bt_jw_raw(&e->w, t->parameters);
        else
            bt_jw_raw(&e->w, BT_STR("{\"type\":\"object\",\"properties\":{}}"));
        char where[32];
        snprintf(where, sizeof(where), "tools[%u]", i);
        enum bt_err err = cache_mark(e, &t->cache, where);
        if (err) return err;
        bt_jw_obj_end(&e->w);
    }
    bt_jw_arr_end(&e->w);
    bool no_parallel = (c->given & BT_GIVEN_PARALLEL_TOOL_CALLS) && !c->parallel_tool_calls;
    if (c->tool_choice == BT_TOOL_CHOICE_UNSET && !no_parallel) return BT_OK;
    bt_jw_key(&e->w, "tool_choice");
    bt_jw_obj_begin(&e->w);
    bt_jw_key(&e->w, "type");
    switch (c->tool_choice) {
    case BT_TOOL_CHOICE_NONE: bt_jw_cstr(&e->w, "none"); break;
    case BT_TOOL_CHOICE_REQUIRED: bt_jw_cstr(&e->w, "any"); break;
    case BT_TOOL_CHOICE_NAMED:
        bt_jw_cstr(&e->w, "tool");
        bt_jw_key(&e->w, "name");
        bt_wire_raw_str(&e->w, c->tool_choice_name);
        break;
    case BT_TOOL_CHOICE_AUTO:
    case BT_TOOL_CHOICE_UNSET: bt_jw_cstr(&e->w, "auto"); break;
    }
    if (no_parallel && c->tool_choice != BT_TOOL_CHOICE_NONE) {
        bt_jw_key(&e->w, "disable_parallel_tool_use");
        bt_jw_bool(&e->w, true);
    }
    bt_jw_obj_end(&e->w);
    return BT_OK;
}

/* What Anthropic cannot express: a 400 naming it. */
static enum bt_err refuse_unsupported(const struct bt_chat *c, struct bt_chat_error *r)
{
    if ((c->given & BT_GIVEN_N) && c->n != 1)
        return bt_wire_refuse(r, "n", "Anthropic models give one choice per request; `n` must be 1");
    if ((c->given & BT_GIVEN_LOGPROBS) && c->logprobs)
        return bt_wire_refuse(r, "logprobs", "Anthropic models give no log probabilities");
    if ((c->given & BT_GIVEN_PRESENCE_PENALTY) && c->presence_penalty != 0)
        return bt_wire_refuse(r, "presence_penalty",
                              "`presence_penalty` has no counterpart in Anthropic's API");
    if ((c->given & BT_GIVEN_FREQUENCY_PENALTY) && c->frequency_penalty != 0)
        return bt_wire_refuse(r, "frequency_penalty",
                              "`frequency_penalty` has no counterpart in Anthropic's API");
    enum bt_err err = bt_wire_refuse_given(
        c, BT_GIVEN_TOP_LOGPROBS | BT_GIVEN_SEED | BT_GIVEN_METADATA | BT_GIVEN_CACHE_KEY,
        "Anthropic", r);
    if (err) return err;
    if ((c->given & BT_GIVEN_TEMPERATURE) && c->temperature > 1)
        return bt_wire_refuse(r, "temperature", "Anthropic takes a temperature from 0 to 1 (got %g)",
                              c->temperature);
    if (c->nextras) return bt_wire_refuse_extra(c, "Anthropic", r);
    return BT_OK;
}

enum bt_err bt_anthropic_encode_chat(const struct bt_chat *c, struct bt_str model,
                                     uint32_t max_tokens, struct bt_arena *arena,
                                     struct bt_buf *out, struct bt_chat_error *refused)
{
    memset(refused, 0, sizeof(*refused));
    enum bt_err err = refuse_unsupported(c, refused);
    if (err) return err;
    int64_t budget = 0;
    bool thinking_off = false;
    if (c->given & BT_GIVEN_REASONING_BUDGET)
        budget = c->reasoning_budget;
    else if (c->given & BT_GIVEN_REASONING_EFFORT) {
        budget = bt_wire_effort_budget(c->reasoning_effort);
        thinking_off = c->reasoning_effort == BT_EFFORT_NONE;
    }
    if (budget && budget < 1024)
        return bt_wire_refuse(refused, "reasoning_budget",
                              "Anthropic's thinking budget is at least 1024 tokens");
    int64_t mt = (c->given & BT_GIVEN_MAX_TOKENS) ? c->max_tokens : (int64_t)max_tokens + budget;
    if (budget && mt <= budget)
        return bt_wire_refuse(refused, "max_tokens",
                              "with thinking on, Anthropic needs max_tokens above the thinking "
                              "budget (%lld tokens)",
                              (long long)budget);

    struct aenc e = {.c = c, .arena = arena, .refused = refused};
    bt_jw_init(&e.w, out);
    bt_jw_obj_begin(&e.w);
    bt_jw_key(&e.w, "model");
    bt_jw_str(&e.w, model);
    bt_jw_key(&e.w, "max_tokens");
    bt_jw_int(&e.w, mt);
    err = system_prompt(&e);
    if (!err) err = messages(&e);
    if (!err) err = tools(&e);
    if (err) return err;
    if (c->given & BT_GIVEN_STOP) {
        bt_jw_key(&e.w, "stop_sequences");
        bt_jw_arr_begin(&e.w);
        for (uint32_t i = 0; i < c->nstop; i++) bt_wire_raw_str(&e.w, c->stop[i]);
        bt_jw_arr_end(&e.w);
    }
    if (c->given & BT_GIVEN_TEMPERATURE) {
        bt_jw_key(&e.w, "temperature");
        bt_jw_double(&e.w, c->temperature);
    }
    if (c->given & BT_GIVEN_TOP_P) {
        bt_jw_key(&e.w, "top_p");
        bt_jw_double(&e.w, c->top_p);
    }
    if (c->given & BT_GIVEN_TOP_K) {
        bt_jw_key(&e.w, "top_k");
        bt_jw_int(&e.w, c->top_k);
    }
    if (budget || thinking_off) {
        bt_jw_key(&e.w, "thinking");
        bt_jw_obj_begin(&e.w);
        bt_jw_key(&e.w, "type");
        bt_jw_cstr(&e.w, budget ? "enabled" : "disabled");
        if (budget) {
            bt_jw_key(&e.w, "budget_tokens");
            bt_jw_int(&e.w, budget);
        }
        bt_jw_obj_end(&e.w);
    }
    if ((c->given & BT_GIVEN_RESPONSE_FORMAT) && c->format != BT_FORMAT_TEXT &&
        c->format != BT_FORMAT_UNSET) {
        if (c->format == BT_FORMAT_JSON_SCHEMA && !c->format_schema.len)
            return bt_wire_refuse(refused, "response_format.json_schema.schema",
                                  "Anthropic's structured outputs need a schema");
        bt_jw_key(&e.w, "output_config");
        bt_jw_obj_begin(&e.w);
        bt_jw_key(&e.w, "format");
        bt_jw_obj_begin(&e.w);
        bt_jw_key(&e.w, "type");
        bt_jw_cstr(&e.w, "json_schema");
        bt_jw_key(&e.w, "schema");
        bt_jw_raw(&e.w, c->format == BT_FORMAT_JSON_SCHEMA ? c->format_schema
                                                          : BT_STR("{\"type\":\"object\"}"));
        bt_jw_obj_end(&e.w);
        bt_jw_obj_end(&e.w);
    }
    if ((c->given & BT_GIVEN_USER) && c->user.len) {
        bt_jw_key(&e.w, "metadata");
        bt_jw_obj_begin(&e.w);
        bt_jw_key(&e.w, "user_id");
        bt_wire_raw_str(&e.w, c->user);
        bt_jw_obj_end(&e.w);
    }
    if (c->stream) {
        bt_jw_key(&e.w, "stream");
        bt_jw_bool(&e.w, true);
    }
    bt_jw_obj_end(&e.w);
    return e.w.err;
}

/* An Anthropic client: its bytes with `model` spliced (the fast path). */
static enum bt_err encode_same(const struct bt_request *r, struct bt_str model,
                               struct bt_arena *arena, struct bt_pbody *out)
{
    struct bt_json_splice sp;
    bt_json_splice_init(&sp, &r->doc, arena);
    struct bt_buf mb;
    bt_buf_init(&mb, model.len * 6 + 16);
    enum bt_err err = bt_json_escape(&mb, model);
    struct bt_str mv = err ? BT_STR_NULL : bt_arena_strdup(arena, bt_buf_str(&mb));
    bt_buf_free(&mb);
    if (err) return err;
    if (!mv.p) return BT_ENOMEM;
    err = bt_json_splice_replace(&sp, r->tok_model, mv);
    if (err) return err;
    return bt_json_splice_slices(&sp, out->parts, BT_UP_BODY_PARTS, &out->n);
}

static enum bt_err anthropic_encode_for(const struct bt_provider *p, const struct bt_request *r,
                                        struct bt_str model, struct bt_arena *arena,
                                        struct bt_pbody *out, bool *added_usage)
{
    *added_usage = false; /* usage is in every Messages stream */
    memset(&out->refused, 0, sizeof(out->refused));
    out->path = BT_STR_NULL;
    if (r->op != BT_OP_CHAT) {
        bt_wire_refuse(&out->refused, "", "Anthropic models serve chat only (no embeddings)");
        return BT_EINVAL;
    }
    if (r->api == BT_API_ANTHROPIC) return encode_same(r, model, arena, out);
    if (!r->chat) {
        bt_wire_refuse(&out->refused, "", "this request cannot be translated for Anthropic");
        return BT_EINVAL;
    }
    struct bt_buf b;
    bt_buf_init(&b, (size_t)r->body_bytes * 2 + (1u << 20));
    uint32_t mt = p ? bt_provider_max_tokens(p, model) : 4096;
    enum bt_err err = bt_anthropic_encode_chat(r->chat, model, mt, arena, &b, &out->refused);
    if (!err) err = bt_wire_body(&b, arena, out);
    bt_buf_free(&b);
    return err;
}

static enum bt_err anthropic_encode(const struct bt_request *r, struct bt_str model,
                                    struct bt_arena *arena, struct bt_pbody *out,
                                    bool *added_usage)
{
    return anthropic_encode_for(NULL, r, model, arena, out, added_usage);
}

static const char *anthropic_path(enum bt_op op)
{
    (void)op;
    return "/v1/messages";
}

static size_t anthropic_headers(const struct bt_provider *p, bool stream, struct bt_http_header *hs,
                                size_t cap, char *scratch, size_t scratch_cap, enum bt_err *err)
{
    size_t n = bt_wire_headers(stream, "x-api-key", p->api_key, hs, cap - 1, err);
    if (!*err)
        hs[n++] = (struct bt_http_header){BT_STR("anthropic-version"),
                                          bt_str_c(p->api_version ? p->api_version : "2023-06-01")};
    return n;
}

/* ---- replies and events ---- */

static struct bt_str sget(const struct bt_json_doc *doc, int obj, const char *key)
{
    int t = bt_json_get(doc, obj, key);
    return bt_json_type(doc, t) == BT_JSON_STRING ? bt_json_str_raw(doc, t) : BT_STR_NULL;
}

static int64_t iget(const struct bt_json_doc *doc, int obj, const char *key, int64_t dflt)
{
    int t = bt_json_get(doc, obj, key);
    int64_t v;
    if (bt_json_type(doc, t) == BT_JSON_NUMBER && bt_json_int(doc, t, &v) == BT_OK && v >= 0 &&
        v < (1 << 20))
        return v;
    return dflt;
}

static bool contains(struct bt_str s, const char *needle)
{
    size_t n = strlen(needle);
    for (size_t i = 0; i + n <= s.len; i++)
        if (strncasecmp(s.p + i, needle, n) == 0) return true;
    return false;
}

enum bt_outcome bt_anthropic_error_outcome(struct bt_str type, struct bt_str message)
{
    if (bt_str_eq_c(type, "rate_limit_error")) return BT_OUTCOME_RATE_LIMIT;
    if (bt_str_eq_c(type, "authentication_error") || bt_str_eq_c(type, "permission_error"))
        return BT_OUTCOME_AUTH;
    if (bt_str_eq_c(type, "timeout_error")) return BT_OUTCOME_TIMEOUT;
    if (bt_str_eq_c(type, "invalid_request_error") || bt_str_eq_c(type, "not_found_error") ||
        bt_str_eq_c(type, "request_too_large")) {
        if (contains(message, "prompt is too long") || contains(message, "context window") ||
            contains(message, "context length"))
            return BT_OUTCOME_CONTEXT_WINDOW;
        return BT_OUTCOME_BAD_REQUEST;
    }
    return BT_OUTCOME_SERVER_ERROR; /* overloaded_error, api_error, anything else */
}

static void emit_error(const struct bt_json_doc *doc, int e, bt_event_cb cb, void *ud)
{
    struct bt_event ev = {.type = BT_EV_ERROR};
    if (bt_json_type(doc, e) == BT_JSON_OBJECT) {
        ev.err_type = sget(doc, e, "type");
        ev.err_message = sget(doc, e, "message");
    }
    ev.outcome = bt_anthropic_error_outcome(ev.err_type, ev.err_message);
    cb(ud, &ev);
}

/* usage: input, cache reads and writes are all prompt tokens (canon/event.h). */
static void emit_usage(const struct bt_json_doc *doc, int u, bt_event_cb cb, void *ud)
{
    if (bt_json_type(doc, u) != BT_JSON_OBJECT) return;
    struct bt_event ev = {.type = BT_EV_USAGE};
    struct bt_usage *us = &ev.usage;
    us->present = true;
    us->cache_read_tokens = bt_wire_count(doc, u, "cache_read_input_tokens");
    us->cache_write_tokens = bt_wire_count(doc, u, "cache_creation_input_tokens");
    us->prompt_tokens =
        bt_wire_count(doc, u, "input_tokens") + us->cache_read_tokens + us->cache_write_tokens;
    us->completion_tokens = bt_wire_count(doc, u, "output_tokens");
    us->total_tokens = us->prompt_tokens + us->completion_tokens;
    cb(ud, &ev);
}

static enum bt_finish finish_of(struct bt_str r)
{
    if (bt_str_eq_c(r, "end_turn")) return BT_FINISH_STOP;
    if (bt_str_eq_c(r, "max_tokens") || bt_str_eq_c(r, "model_context_window_exceeded"))
        return BT_FINISH_LENGTH;
    if (bt_str_eq_c(r, "stop_sequence")) return BT_FINISH_STOP_SEQUENCE;
    if (bt_str_eq_c(r, "tool_use")) return BT_FINISH_TOOL_CALLS;
    if (bt_str_eq_c(r, "refusal")) return BT_FINISH_CONTENT_FILTER;
    if (bt_str_eq_c(r, "pause_turn")) return BT_FINISH_PAUSE_TURN;
    return BT_FINISH_OTHER;
}

static void emit_finish(const struct bt_json_doc *doc, int obj, bt_event_cb cb, void *ud)
{
    int t = bt_json_get(doc, obj, "stop_reason");
    if (bt_json_type(doc, t) != BT_JSON_STRING) return;
    struct bt_event ev = {.type = BT_EV_FINISH, .finish = finish_of(bt_json_str_raw(doc, t))};
    cb(ud, &ev);
}

static void emit_start(const struct bt_json_doc *doc, int msg, bt_event_cb cb, void *ud)
{
    struct bt_event ev = {.type = BT_EV_START};
    ev.id = sget(doc, msg, "id");
    ev.name = sget(doc, msg, "model");
    cb(ud, &ev);
}

/* A content block's start (or, in a whole reply, the block itself). */
static void block_start(const struct bt_json_doc *doc, int b, uint32_t idx, bool whole,
                        bt_event_cb cb, void *ud)
{
    struct bt_event ev = {.block = idx, .tool_index = idx};
    struct bt_str type = sget(doc, b, "type");
    if (bt_str_eq_c(type, "text")) {
        ev.type = BT_EV_TEXT;
        ev.text = sget(doc, b, "text");
        if (ev.text.len) cb(ud, &ev);
    } else if (bt_str_eq_c(type, "tool_use")) {
        ev.type = BT_EV_TOOL_START;
        ev.id = sget(doc, b, "id");
        ev.name = sget(doc, b, "name");
        cb(ud, &ev);
        int in = bt_json_get(doc, b, "input");
        /* a stream's start carries `{}`; the arguments follow as deltas */
        if (whole && in >= 0) bt_wire_args_event(doc, in, &ev, cb, ud);
    } else if (bt_str_eq_c(type, "thinking")) {
        ev.type = BT_EV_REASONING;
        ev.text = sget(doc, b, "thinking");
        ev.signature = sget(doc, b, "signature");
        if (ev.text.len || ev.signature.len) cb(ud, &ev);
    } else if (bt_str_eq_c(type, "redacted_thinking")) {
        ev.type = BT_EV_REASONING;
        ev.redacted = true;
        ev.text = sget(doc, b, "data");
        cb(ud, &ev);
    }
}

static void block_delta(const struct bt_json_doc *doc, int d, uint32_t idx, bt_event_cb cb,
                        void *ud)
{
    struct bt_event ev = {.block = idx, .tool_index = idx};
    struct bt_str type = sget(doc, d, "type");
    if (bt_str_eq_c(type, "text_delta")) {
        ev.type = BT_EV_TEXT;
        ev.text = sget(doc, d, "text");
    } else if (bt_str_eq_c(type, "input_json_delta")) {
        ev.type = BT_EV_TOOL_ARGS;
        ev.text = sget(doc, d, "partial_json");
        if (!ev.text.len) return;
    } else if (bt_str_eq_c(type, "thinking_delta")) {
        ev.type = BT_EV_REASONING;
        ev.text = sget(doc, d, "thinking");
    } else if (bt_str_eq_c(type, "signature_delta")) {
        ev.type = BT_EV_REASONING;
        ev.signature = sget(doc, d, "signature");
    } else {
        return; /* citations_delta and future kinds carry nothing canonical */
    }
    cb(ud, &ev);
}

void bt_anthropic_decode_event(const struct bt_json_doc *doc, bt_event_cb cb, void *ud)
{
    if (bt_json_type(doc, 0) != BT_JSON_OBJECT) return;
    struct bt_str type = sget(doc, 0, "type");
    uint32_t idx = (uint32_t)iget(doc, 0, "index", 0);
    if (bt_str_eq_c(type, "message_start")) {
        int m = bt_json_get(doc, 0, "message");
        if (bt_json_type(doc, m) != BT_JSON_OBJECT) return;
        emit_start(doc, m, cb, ud);
        emit_usage(doc, bt_json_get(doc, m, "usage"), cb, ud);
    } else if (bt_str_eq_c(type, "content_block_start")) {
        block_start(doc, bt_json_get(doc, 0, "content_block"), idx, false, cb, ud);
    } else if (bt_str_eq_c(type, "content_block_delta")) {
        block_delta(doc, bt_json_get(doc, 0, "delta"), idx, cb, ud);
    } else if (bt_str_eq_c(type, "content_block_stop")) {
        struct bt_event ev = {.type = BT_EV_BLOCK_STOP, .block = idx};
        cb(ud, &ev);
    } else if (bt_str_eq_c(type, "message_delta")) {
        int d = bt_json_get(doc, 0, "delta");
        if (bt_json_type(doc, d) == BT_JSON_OBJECT) emit_finish(doc, d, cb, ud);
        emit_usage(doc, bt_json_get(doc, 0, "usage"), cb, ud);
    } else if (bt_str_eq_c(type, "message_stop")) {
        struct bt_event ev = {.type = BT_EV_DONE};
        cb(ud, &ev);
    } else if (bt_str_eq_c(type, "error")) {
        emit_error(doc, bt_json_get(doc, 0, "error"), cb, ud);
    }
}

void bt_anthropic_decode_reply(const struct bt_json_doc *doc, bt_event_cb cb, void *ud)
{
    if (bt_json_type(doc, 0) != BT_JSON_OBJECT) return;
    if (bt_str_eq_c(sget(doc, 0, "type"), "error")) {
        emit_error(doc, bt_json_get(doc, 0, "error"), cb, ud);
        return;
    }
    emit_start(doc, 0, cb, ud);
    int content = bt_json_get(doc, 0, "content");
    if (bt_json_type(doc, content) == BT_JSON_ARRAY) {
        uint32_t i = 0;
        for (int b = bt_json_first(doc, content); b >= 0 && i < doc->toks[content].size;
             b = (int)doc->toks[b].next, i++) {
            block_start(doc, b, i, true, cb, ud);
            struct bt_event ev = {.type = BT_EV_BLOCK_STOP, .block = i};
            cb(ud, &ev);
        }
    }
    emit_finish(doc, 0, cb, ud);
    emit_usage(doc, bt_json_get(doc, 0, "usage"), cb, ud);
    struct bt_event done = {.type = BT_EV_DONE};
    cb(ud, &done);
}

/* Content deltas and block edges change nothing accounted once the first
 * content came; message_start / message_delta (usage, stop reason) and errors
 * are decoded; message_stop is the clean end. */
static enum bt_ev_kind anthropic_classify(const struct bt_sse_event *ev, bool decoded_first,
                                          bool full)
{
    if (!ev->has_data) return BT_EVK_RELAY;
    if (bt_str_eq_c(ev->event, "ping")) return BT_EVK_RELAY;
    struct bt_str d = bt_str_trim(ev->data);
    if (d.len < 2 || d.p[0] != '{' || d.p[d.len - 1] != '}') return BT_EVK_INVALID;
    if (full && bt_json_validate(d.p, d.len, 0, NULL, 0) != BT_OK) return BT_EVK_INVALID;
    if (bt_str_eq_c(ev->event, "message_stop")) return BT_EVK_DONE;
    bool content = bt_str_eq_c(ev->event, "content_block_delta") ||
                   bt_str_eq_c(ev->event, "content_block_start") ||
                   bt_str_eq_c(ev->event, "content_block_stop");
    return content && decoded_first ? BT_EVK_PLAIN : BT_EVK_DECODE;
}

static bool anthropic_added_usage_event(const struct bt_json_doc *doc)
{
    (void)doc;
    return false;
}

/* `{"type":"error","error":{"type","message"}}`: the status decides, refined
 * by the type (529 overloaded is a server error, a 400 whose prompt is too long
 * a context-window error). */
static void anthropic_decode_error(int status, struct bt_str body, struct bt_arena *arena,
                                   struct bt_perror *out)
{
    memset(out, 0, sizeof(*out));
    out->cls = bt_outcome_from_status(status);
    struct bt_json_doc doc;
    if (!body.len || bt_json_parse(&doc, body.p, body.len, arena, NULL, NULL) != BT_OK) return;
    int e = bt_json_get(&doc, 0, "error");
    if (bt_json_type(&doc, e) != BT_JSON_OBJECT) return;
    out->message = bt_wire_field(&doc, e, "message", arena);
    out->type = bt_wire_field(&doc, e, "type", arena);
    if (out->cls == BT_OUTCOME_BAD_REQUEST)
        out->cls = bt_anthropic_error_outcome(out->type, out->message);
    if (out->cls == BT_OUTCOME_SERVER_ERROR && bt_str_eq_c(out->type, "rate_limit_error"))
        out->cls = BT_OUTCOME_RATE_LIMIT;
}

const struct bt_adapter bt_adapter_anthropic = {
    .name = "anthropic",
    .wire = BT_API_ANTHROPIC,
    .encode = anthropic_encode,
    .path = anthropic_path,
    .headers = anthropic_headers,
    .decode_reply = bt_anthropic_decode_reply,
    .classify_event = anthropic_classify,
    .decode_event = bt_anthropic_decode_event,
    .added_usage_event = anthropic_added_usage_event,
    .decode_error = anthropic_decode_error,
    .encode_for = anthropic_encode_for,
};
