/* The Gemini adapter: the GenerateContentRequest from the canonical chat
 * request, headers and path, and responses / stream chunks / errors into
 * canonical events. See gemini.h and docs/providers.md. */
#include "provider/gemini.h"

#include <stdio.h>
#include <string.h>

#include "provider/wire.h"

/* ---- the request ---- */

struct genc {
    struct bt_jw w;
    const struct bt_chat *c;
    struct bt_arena *arena;
    struct bt_chat_error *refused;
    const char *open_role; /* "user" / "model" being written, or NULL */
};

static void open_content(struct genc *e, const char *role)
{
    if (e->open_role && strcmp(e->open_role, role) == 0) return;
    if (e->open_role) {
        bt_jw_arr_end(&e->w);
        bt_jw_obj_end(&e->w);
    }
    bt_jw_obj_begin(&e->w);
    bt_jw_key(&e->w, "role");
    bt_jw_cstr(&e->w, role);
    bt_jw_key(&e->w, "parts");
    bt_jw_arr_begin(&e->w);
    e->open_role = role;
}

static void blob(struct genc *e, const char *key, struct bt_str mime, const char *mime_c,
                 const char *data_key, struct bt_str data)
{
    bt_jw_obj_begin(&e->w);
    bt_jw_key(&e->w, key);
    bt_jw_obj_begin(&e->w);
    bt_jw_key(&e->w, "mimeType");
    if (mime.len)
        bt_wire_raw_str(&e->w, mime);
    else
        bt_jw_cstr(&e->w, mime_c);
    bt_jw_key(&e->w, data_key);
    bt_wire_raw_str(&e->w, data);
    bt_jw_obj_end(&e->w);
    bt_jw_obj_end(&e->w);
}

/* The media type of an image URL from its extension; NULL when unknown. */
static const char *url_mime(struct bt_str url)
{
    static const char *const map[][2] = {{".png", "image/png"},   {".jpg", "image/jpeg"},
                                         {".jpeg", "image/jpeg"}, {".webp", "image/webp"},
                                         {".gif", "image/gif"},   {".heic", "image/heic"}};
    size_t end = url.len;
    for (size_t i = 0; i < url.len; i++)
        if (url.p[i] == '?' || url.p[i] == '#') {
            end = i;
            break;
        }
    for (size_t k = 0; k < sizeof(map) / sizeof(map[0]); k++) {
        size_t n = strlen(map[k][0]);
        if (end >= n && strncasecmp(url.p + end - n, map[k][0], n) == 0) return map[k][1];
    }
    return NULL;
}

static enum bt_err data_part(struct genc *e, const struct bt_chat_part *p, const char *where)
{
    switch (p->type) {
    case BT_PART_TEXT:
    case BT_PART_REFUSAL:
        bt_jw_obj_begin(&e->w);
        bt_jw_key(&e->w, "text");
        bt_wire_raw_str(&e->w, p->text);
        bt_jw_obj_end(&e->w);
        return BT_OK;
    case BT_PART_IMAGE:
        if (p->image.url.len) {
            const char *m = url_mime(p->image.url);
            if (!m)
                return bt_wire_refuse(e->refused, where,
                                      "Gemini needs an image URL's media type: use a URL ending "
                                      "in .png, .jpg, .jpeg, .webp, .gif or .heic, or send the "
                                      "image as data");
            blob(e, "fileData", BT_STR_NULL, m, "fileUri", p->image.url);
        } else {
            blob(e, "inlineData", p->image.media_type, "image/png", "data", p->image.data);
        }
        return BT_OK;
    case BT_PART_AUDIO: {
        char mime[40];
        int n = snprintf(mime, sizeof(mime), "audio/%.*s",
                         (int)(p->audio.format.len > 16 ? 16 : p->audio.format.len),
                         p->audio.format.p);
        blob(e, "inlineData", (struct bt_str){mime, (size_t)n}, NULL, "data", p->audio.data);
        return BT_OK;
    }
    case BT_PART_FILE:
        if (p->file.file_id.len || !p->file.data.len)
            return bt_wire_refuse(e->refused, where,
                                  "a file given by id cannot be sent to Gemini; send its data");
        blob(e, "inlineData", p->file.media_type, "application/pdf", "data", p->file.data);
        return BT_OK;
    default:
        return bt_wire_refuse(e->refused, where, "this kind of content cannot be sent here");
    }
}

/* The name of the tool that call `id` called, from the assistant messages. */
static struct bt_str call_name(const struct bt_chat *c, struct bt_str id)
{
    for (uint32_t i = 0; i < c->nmsgs && id.len; i++)
        for (uint32_t j = 0; j < c->msgs[i].nparts; j++) {
            const struct bt_chat_part *p = &c->msgs[i].parts[j];
            if (p->type == BT_PART_TOOL_CALL && bt_str_eq(p->tool_call.id, id))
                return p->tool_call.name;
        }
    return BT_STR_NULL;
}

static enum bt_err function_response(struct genc *e, const struct bt_chat_part *p,
                                     const char *where)
{
    struct bt_str name = p->tool_result.name;
    if (!name.len) name = call_name(e->c, p->tool_result.call_id);
    if (!name.len)
        return bt_wire_refuse(e->refused, where,
                              "Gemini needs the tool's name with its result: no earlier tool "
                              "call has this tool_call_id");
    bt_jw_obj_begin(&e->w);
    bt_jw_key(&e->w, "functionResponse");
    bt_jw_obj_begin(&e->w);
    bt_jw_key(&e->w, "name");
    bt_wire_raw_str(&e->w, name);
    bt_jw_key(&e->w, "response");
    bt_jw_obj_begin(&e->w);
    bt_jw_key(&e->w, p->tool_result.is_error ? "error" : "content");
    bt_jw_raw(&e->w, BT_STR("\""));
    for (uint32_t i = 0; i < p->tool_result.nparts; i++) {
        const struct bt_chat_part *q = &p->tool_result.parts[i];
        if (q->type != BT_PART_TEXT)
            return bt_wire_refuse(e->refused, where, "a tool result toward Gemini holds text only");
        if (bt_buf_append_str(e->w.out, q->text)) e->w.err = BT_ETOOBIG;
    }
    if (bt_buf_append(e->w.out, "\"", 1)) e->w.err = BT_ETOOBIG;
    bt_jw_obj_end(&e->w);
    bt_jw_obj_end(&e->w);
    bt_jw_obj_end(&e->w);
    return BT_OK;
}

static enum bt_err function_call(struct genc *e, const struct bt_chat_part *p, const char *where)
{
    struct bt_str args;
    enum bt_err err = bt_chat_args_json(p, e->arena, &args);
    if (err == BT_ENOMEM) return err;
    if (err || !bt_wire_is_object(args, e->arena))
        return bt_wire_refuse(e->refused, where,
                              "a tool call's arguments must be a JSON object for Gemini's `args`");
    bt_jw_obj_begin(&e->w);
    bt_jw_key(&e->w, "functionCall");
    bt_jw_obj_begin(&e->w);
    bt_jw_key(&e->w, "name");
    bt_wire_raw_str(&e->w, p->tool_call.name);
    bt_jw_key(&e->w, "args");
    bt_jw_raw(&e->w, args);
    bt_jw_obj_end(&e->w);
    bt_jw_obj_end(&e->w);
    return BT_OK;
}

static enum bt_err contents(struct genc *e)
{
    const struct bt_chat *c = e->c;
    char where[64];
    bt_jw_key(&e->w, "contents");
    bt_jw_arr_begin(&e->w);
    for (uint32_t i = 0; i < c->nmsgs; i++) {
        const struct bt_chat_msg *m = &c->msgs[i];
        if (m->role == BT_ROLE_SYSTEM || m->role == BT_ROLE_DEVELOPER) continue; /* hoisted */
        const char *role = m->role == BT_ROLE_ASSISTANT ? "model" : "user";
        for (uint32_t j = 0; j < m->nparts; j++) {
            const struct bt_chat_part *p = &m->parts[j];
            snprintf(where, sizeof(where), "messages[%u].content[%u]", i, j);
            /* Reasoning from earlier turns is not sent: Gemini cannot verify
             * another provider's, and its own thought signatures ride on parts
             * the canonical request does not keep. */
            if (p->type == BT_PART_THINKING || p->type == BT_PART_REDACTED_THINKING) continue;
            if ((p->type == BT_PART_TEXT || p->type == BT_PART_REFUSAL) && !p->text.len) continue;
            open_content(e, role);
            enum bt_err err = p->type == BT_PART_TOOL_CALL     ? function_call(e, p, where)
                              : p->type == BT_PART_TOOL_RESULT ? function_response(e, p, where)
                                                               : data_part(e, p, where);
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
                              "the conversation has no message Gemini can take (only system "
                              "messages or empty text)");
    return BT_OK;
}

static enum bt_err system_instruction(struct genc *e)
{
    const struct bt_chat *c = e->c;
    bool any = false;
    for (uint32_t i = 0; i <= c->nmsgs; i++) {
        const struct bt_chat_part *parts = c->system;
        uint32_t np = c->nsystem;
        if (i > 0) {
            const struct bt_chat_msg *m = &c->msgs[i - 1];
            if (m->role != BT_ROLE_SYSTEM && m->role != BT_ROLE_DEVELOPER) continue;
            parts = m->parts;
            np = m->nparts;
        }
        for (uint32_t j = 0; j < np; j++) {
            if (parts[j].type != BT_PART_TEXT)
                return bt_wire_refuse(e->refused, "system",
                                      "Gemini's system instruction holds text only");
            if (!parts[j].text.len) continue;
            if (!any) {
                bt_jw_key(&e->w, "systemInstruction");
                bt_jw_obj_begin(&e->w);
                bt_jw_key(&e->w, "parts");
                bt_jw_arr_begin(&e->w);
                any = true;
            }
            bt_jw_obj_begin(&e->w);
            bt_jw_key(&e->w, "text");
            bt_wire_raw_str(&e->w, parts[j].text);
            bt_jw_obj_end(&e->w);
        }
    }
    if (any) {
        bt_jw_arr_end(&e->w);
        bt_jw_obj_end(&e->w);
    }
    return BT_OK;
}

static void tools(struct genc *e)
{
    const struct bt_chat *c = e->c;
    if (!c->ntools) return;
    bt_jw_key(&e->w, "tools");
    bt_jw_arr_begin(&e->w);
    bt_jw_obj_begin(&e->w);
    bt_jw_key(&e->w, "functionDeclarations");
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
        if (t->parameters.len) {
            bt_jw_key(&e->w, "parametersJsonSchema");
            bt_jw_raw(&e->w, t->parameters);
        }
        bt_jw_obj_end(&e->w);
    }
    bt_jw_arr_end(&e->w);
    bt_jw_obj_end(&e->w);
    bt_jw_arr_end(&e->w);
    if (c->tool_choice == BT_TOOL_CHOICE_UNSET) return;
    bt_jw_key(&e->w, "toolConfig");
    bt_jw_obj_begin(&e->w);
    bt_jw_key(&e->w, "functionCallingConfig");
    bt_jw_obj_begin(&e->w);
    bt_jw_key(&e->w, "mode");
    bt_jw_cstr(&e->w, c->tool_choice == BT_TOOL_CHOICE_NONE   ? "NONE"
                      : c->tool_choice == BT_TOOL_CHOICE_AUTO ? "AUTO"
                                                              : "ANY");
    if (c->tool_choice == BT_TOOL_CHOICE_NAMED) {
        bt_jw_key(&e->w, "allowedFunctionNames");
        bt_jw_arr_begin(&e->w);
        bt_wire_raw_str(&e->w, c->tool_choice_name);
        bt_jw_arr_end(&e->w);
    }
    bt_jw_obj_end(&e->w);
    bt_jw_obj_end(&e->w);
}

static void generation_config(struct genc *e)
{
    const struct bt_chat *c = e->c;
    struct bt_jw *w = &e->w;
    bool thinking = c->given & (BT_GIVEN_REASONING_EFFORT | BT_GIVEN_REASONING_BUDGET);
    bool json = (c->given & BT_GIVEN_RESPONSE_FORMAT) &&
                (c->format == BT_FORMAT_JSON_OBJECT || c->format == BT_FORMAT_JSON_SCHEMA);
    uint32_t keys = BT_GIVEN_TEMPERATURE | BT_GIVEN_TOP_P | BT_GIVEN_TOP_K | BT_GIVEN_MAX_TOKENS |
                    BT_GIVEN_STOP | BT_GIVEN_N | BT_GIVEN_SEED | BT_GIVEN_PRESENCE_PENALTY |
                    BT_GIVEN_FREQUENCY_PENALTY;
    if (!(c->given & keys) && !thinking && !json) return;
    bt_jw_key(w, "generationConfig");
    bt_jw_obj_begin(w);
    if (c->given & BT_GIVEN_TEMPERATURE) {
        bt_jw_key(w, "temperature");
        bt_jw_double(w, c->temperature);
    }
    if (c->given & BT_GIVEN_TOP_P) {
        bt_jw_key(w, "topP");
        bt_jw_double(w, c->top_p);
    }
    if (c->given & BT_GIVEN_TOP_K) {
        bt_jw_key(w, "topK");
        bt_jw_int(w, c->top_k);
    }
    if (c->given & BT_GIVEN_MAX_TOKENS) {
        bt_jw_key(w, "maxOutputTokens");
        bt_jw_int(w, c->max_tokens);
    }
    if (c->given & BT_GIVEN_STOP) {
        bt_jw_key(w, "stopSequences");
        bt_jw_arr_begin(w);
        for (uint32_t i = 0; i < c->nstop; i++) bt_wire_raw_str(w, c->stop[i]);
        bt_jw_arr_end(w);
    }
    if (c->given & BT_GIVEN_N) {
        bt_jw_key(w, "candidateCount");
        bt_jw_int(w, c->n);
    }
    if (c->given & BT_GIVEN_SEED) {
        bt_jw_key(w, "seed");
        bt_jw_int(w, c->seed);
    }
    if (c->given & BT_GIVEN_PRESENCE_PENALTY) {
        bt_jw_key(w, "presencePenalty");
        bt_jw_double(w, c->presence_penalty);
    }
    if (c->given & BT_GIVEN_FREQUENCY_PENALTY) {
        bt_jw_key(w, "frequencyPenalty");
        bt_jw_double(w, c->frequency_penalty);
    }
    if (json) {
        bt_jw_key(w, "responseMimeType");
        bt_jw_cstr(w, "application/json");
        if (c->format == BT_FORMAT_JSON_SCHEMA && c->format_schema.len) {
            bt_jw_key(w, "responseJsonSchema");
            bt_jw_raw(w, c->format_schema);
        }
    }
    if (thinking) {
        int64_t budget = (c->given & BT_GIVEN_REASONING_BUDGET)
                             ? c->reasoning_budget
                             : bt_wire_effort_budget(c->reasoning_effort);
        bt_jw_key(w, "thinkingConfig");
        bt_jw_obj_begin(w);
        bt_jw_key(w, "thinkingBudget");
        bt_jw_int(w, budget);
        bt_jw_key(w, "includeThoughts");
        bt_jw_bool(w, budget > 0);
        bt_jw_obj_end(w);
    }
    bt_jw_obj_end(w);
}

enum bt_err bt_gemini_encode_chat(const struct bt_chat *c, struct bt_arena *arena,
                                  struct bt_buf *out, struct bt_chat_error *refused)
{
    memset(refused, 0, sizeof(*refused));
    if ((c->given & BT_GIVEN_LOGPROBS) && c->logprobs)
        return bt_wire_refuse(refused, "logprobs",
                              "log probabilities from Gemini are not carried through baton");
    enum bt_err err = bt_wire_refuse_given(c,
                                           BT_GIVEN_TOP_LOGPROBS | BT_GIVEN_METADATA |
                                               BT_GIVEN_USER | BT_GIVEN_CACHE_KEY,
                                           "Gemini", refused);
    if (err) return err;
    if ((c->given & BT_GIVEN_PARALLEL_TOOL_CALLS) && !c->parallel_tool_calls)
        return bt_wire_refuse(refused, "parallel_tool_calls",
                              "Gemini cannot be told to make one tool call at a time");
    if ((c->given & BT_GIVEN_N) && c->n > 1 && c->stream)
        return bt_wire_refuse(refused, "n",
                              "Gemini streams one candidate: `n` above 1 needs stream: false");
    if ((c->given & BT_GIVEN_N) && (c->n < 1 || c->n > 8))
        return bt_wire_refuse(refused, "n", "Gemini gives 1 to 8 candidates (got %lld)",
                              (long long)c->n);
    if (c->nextras) return bt_wire_refuse_extra(c, "Gemini", refused);
    struct genc e = {.c = c, .arena = arena, .refused = refused};
    bt_jw_init(&e.w, out);
    bt_jw_obj_begin(&e.w);
    err = contents(&e);
    if (!err) err = system_instruction(&e);
    if (err) return err;
    tools(&e);
    generation_config(&e);
    bt_jw_obj_end(&e.w);
    return e.w.err;
}

struct bt_str bt_gemini_path(struct bt_str model, bool stream, struct bt_arena *arena)
{
    if (model.len > 7 && memcmp(model.p, "models/", 7) == 0) {
        model.p += 7;
        model.len -= 7;
    }
    return bt_wire_path("/v1beta/models/", model,
                        stream ? ":streamGenerateContent?alt=sse" : ":generateContent", arena);
}

static enum bt_err gemini_encode_for(const struct bt_provider *p, const struct bt_request *r,
                                     struct bt_str model, struct bt_arena *arena,
                                     struct bt_pbody *out, bool *added_usage)
{
    (void)p;
    *added_usage = false; /* usageMetadata comes with every response */
    memset(&out->refused, 0, sizeof(out->refused));
    if (r->op != BT_OP_CHAT || !r->chat) {
        bt_wire_refuse(&out->refused, "",
                       r->op != BT_OP_CHAT ? "Gemini providers serve chat only through baton"
                                           : "this request cannot be translated for Gemini");
        return BT_EINVAL;
    }
    out->path = bt_gemini_path(model, r->stream, arena);
    if (!out->path.p) return BT_ENOMEM;
    struct bt_buf b;
    bt_buf_init(&b, (size_t)r->body_bytes * 2 + (1u << 20));
    enum bt_err err = bt_gemini_encode_chat(r->chat, arena, &b, &out->refused);
    if (!err) err = bt_wire_body(&b, arena, out);
    bt_buf_free(&b);
    return err;
}

static enum bt_err gemini_encode(const struct bt_request *r, struct bt_str model,
                                 struct bt_arena *arena, struct bt_pbody *out, bool *added_usage)
{
    return gemini_encode_for(NULL, r, model, arena, out, added_usage);
}

static const char *gemini_path(enum bt_op op)
{
    (void)op;
    return "/v1beta/models"; /* never used alone: encode sets the whole path */
}

static size_t gemini_headers(const struct bt_provider *p, bool stream, struct bt_http_header *hs,
                             size_t cap, char *scratch, size_t scratch_cap, enum bt_err *err)
{
    return bt_wire_headers(stream, "x-goog-api-key", p->api_key, hs, cap, err);
}

/* ---- responses ---- */

static struct bt_str sget(const struct bt_json_doc *doc, int obj, const char *key)
{
    int t = bt_json_get(doc, obj, key);
    return bt_json_type(doc, t) == BT_JSON_STRING ? bt_json_str_raw(doc, t) : BT_STR_NULL;
}

static bool has(struct bt_str s, const char *needle)
{
    size_t n = strlen(needle);
    for (size_t i = 0; i + n <= s.len; i++)
        if (strncasecmp(s.p + i, needle, n) == 0) return true;
    return false;
}

enum bt_outcome bt_gemini_error_outcome(struct bt_str status, struct bt_str message)
{
    if (has(message, "token count") || has(message, "exceeds the maximum number of tokens") ||
        has(message, "context window") || has(message, "too many tokens"))
        return BT_OUTCOME_CONTEXT_WINDOW;
    if (bt_str_eq_c(status, "RESOURCE_EXHAUSTED")) return BT_OUTCOME_RATE_LIMIT;
    if (bt_str_eq_c(status, "PERMISSION_DENIED") || bt_str_eq_c(status, "UNAUTHENTICATED"))
        return BT_OUTCOME_AUTH;
    if (bt_str_eq_c(status, "DEADLINE_EXCEEDED")) return BT_OUTCOME_TIMEOUT;
    if (bt_str_eq_c(status, "INVALID_ARGUMENT") || bt_str_eq_c(status, "FAILED_PRECONDITION") ||
        bt_str_eq_c(status, "NOT_FOUND") || bt_str_eq_c(status, "OUT_OF_RANGE")) {
        if (has(message, "safety") || has(message, "blocked")) return BT_OUTCOME_CONTENT_FILTER;
        return BT_OUTCOME_BAD_REQUEST;
    }
    return BT_OUTCOME_SERVER_ERROR; /* INTERNAL, UNAVAILABLE, anything else */
}

static enum bt_finish finish_of(struct bt_str r, bool called)
{
    if (bt_str_eq_c(r, "STOP")) return called ? BT_FINISH_TOOL_CALLS : BT_FINISH_STOP;
    if (bt_str_eq_c(r, "MAX_TOKENS")) return BT_FINISH_LENGTH;
    static const char *const filtered[] = {"SAFETY",      "RECITATION",         "BLOCKLIST",
                                           "PROHIBITED_CONTENT", "SPII",         "IMAGE_SAFETY",
                                           "IMAGE_PROHIBITED_CONTENT", "IMAGE_RECITATION", NULL};
    for (size_t i = 0; filtered[i]; i++)
        if (bt_str_eq_c(r, filtered[i])) return BT_FINISH_CONTENT_FILTER;
    return BT_FINISH_OTHER;
}

static int64_t idx_of(const struct bt_json_doc *doc, int obj, int64_t dflt)
{
    int t = bt_json_get(doc, obj, "index");
    int64_t v;
    if (bt_json_type(doc, t) == BT_JSON_NUMBER && bt_json_int(doc, t, &v) == BT_OK && v >= 0 &&
        v < 1024)
        return v;
    return dflt;
}

/* One candidate: START, its parts, FINISH; true when it finished. */
static bool candidate(const struct bt_json_doc *doc, int cand, uint32_t ci, bt_event_cb cb,
                      void *ud)
{
    struct bt_event start = {.type = BT_EV_START, .choice = ci};
    start.id = sget(doc, 0, "responseId");
    start.name = sget(doc, 0, "modelVersion");
    cb(ud, &start);
    bool called = false;
    int parts = bt_json_path(doc, cand, "content", "parts", NULL);
    if (bt_json_type(doc, parts) == BT_JSON_ARRAY) {
        uint32_t j = 0;
        for (int p = bt_json_first(doc, parts); p >= 0 && j < doc->toks[parts].size;
             p = (int)doc->toks[p].next, j++) {
            struct bt_event ev = {.choice = ci, .block = j, .tool_index = j};
            int thought = bt_json_get(doc, p, "thought");
            bool is_thought = bt_json_type(doc, thought) == BT_JSON_TRUE;
            struct bt_str text = sget(doc, p, "text");
            int fc = bt_json_get(doc, p, "functionCall");
            if (bt_json_type(doc, fc) == BT_JSON_OBJECT) {
                called = true;
                ev.type = BT_EV_TOOL_START;
                ev.id = sget(doc, fc, "id");
                ev.name = sget(doc, fc, "name");
                cb(ud, &ev);
                int args = bt_json_get(doc, fc, "args");
                if (args >= 0)
                    bt_wire_args_event(doc, args, &ev, cb, ud);
                else {
                    ev.type = BT_EV_TOOL_ARGS;
                    ev.text = BT_STR("{}");
                    cb(ud, &ev);
                }
                ev.id = ev.name = BT_STR_NULL;
            } else if (text.len || bt_json_type(doc, bt_json_get(doc, p, "text")) == BT_JSON_STRING) {
                ev.type = is_thought ? BT_EV_REASONING : BT_EV_TEXT;
                ev.text = text;
                if (text.len) cb(ud, &ev);
            }
            struct bt_str sig = sget(doc, p, "thoughtSignature");
            if (sig.len) {
                struct bt_event se = {.type = BT_EV_REASONING, .choice = ci, .block = j};
                se.signature = sig;
                cb(ud, &se);
            }
        }
    }
    struct bt_str fr = sget(doc, cand, "finishReason");
    if (!fr.len || bt_str_eq_c(fr, "FINISH_REASON_UNSPECIFIED")) return false;
    struct bt_event fin = {.type = BT_EV_FINISH, .choice = ci, .finish = finish_of(fr, called)};
    cb(ud, &fin);
    return true;
}

void bt_gemini_decode(const struct bt_json_doc *doc, bt_event_cb cb, void *ud)
{
    int root = 0;
    if (bt_json_type(doc, 0) == BT_JSON_ARRAY) root = bt_json_first(doc, 0); /* [{"error":..}] */
    if (root < 0 || bt_json_type(doc, root) != BT_JSON_OBJECT) return;
    int e = bt_json_get(doc, root, "error");
    if (bt_json_type(doc, e) == BT_JSON_OBJECT) {
        struct bt_event ev = {.type = BT_EV_ERROR};
        ev.err_type = sget(doc, e, "status");
        ev.err_message = sget(doc, e, "message");
        ev.outcome = bt_gemini_error_outcome(ev.err_type, ev.err_message);
        cb(ud, &ev);
        return;
    }
    if (root != 0) return;
    bool finished = false;
    int cands = bt_json_get(doc, 0, "candidates");
    if (bt_json_type(doc, cands) == BT_JSON_ARRAY) {
        uint32_t i = 0;
        for (int c = bt_json_first(doc, cands); c >= 0 && i < doc->toks[cands].size;
             c = (int)doc->toks[c].next, i++)
            finished |= candidate(doc, c, (uint32_t)idx_of(doc, c, i), cb, ud);
    }
    int pf = bt_json_get(doc, 0, "promptFeedback");
    struct bt_str block = sget(doc, pf, "blockReason");
    if (block.len && !finished) {
        struct bt_event ev = {.type = BT_EV_ERROR, .outcome = BT_OUTCOME_CONTENT_FILTER};
        ev.err_type = BT_STR("prompt_blocked");
        ev.err_message = block;
        ev.err_code = block;
        cb(ud, &ev);
        return;
    }
    int um = bt_json_get(doc, 0, "usageMetadata");
    if (bt_json_type(doc, um) == BT_JSON_OBJECT) {
        struct bt_event ev = {.type = BT_EV_USAGE};
        struct bt_usage *u = &ev.usage;
        u->present = true;
        u->prompt_tokens = bt_wire_count(doc, um, "promptTokenCount") +
                           bt_wire_count(doc, um, "toolUsePromptTokenCount");
        u->cached_tokens = bt_wire_count(doc, um, "cachedContentTokenCount");
        u->reasoning_tokens = bt_wire_count(doc, um, "thoughtsTokenCount");
        u->completion_tokens = bt_wire_count(doc, um, "candidatesTokenCount") + u->reasoning_tokens;
        u->total_tokens = bt_wire_count(doc, um, "totalTokenCount");
        if (u->total_tokens < u->prompt_tokens + u->completion_tokens)
            u->total_tokens = u->prompt_tokens + u->completion_tokens;
        cb(ud, &ev);
    }
    if (finished) {
        struct bt_event ev = {.type = BT_EV_DONE};
        cb(ud, &ev);
    }
}

/* Every chunk carries running usage; only the first content, a finish reason,
 * a blocked prompt or an error can change what is accounted. */
static enum bt_ev_kind gemini_classify(const struct bt_sse_event *ev, bool decoded_first, bool full)
{
    if (!ev->has_data) return BT_EVK_RELAY;
    struct bt_str d = bt_str_trim(ev->data);
    if (d.len < 2 || !((d.p[0] == '{' && d.p[d.len - 1] == '}') ||
                       (d.p[0] == '[' && d.p[d.len - 1] == ']')))
        return BT_EVK_INVALID;
    if (full) {
        struct bt_json_watch w[1] = {{"finishReason", 12, 3, false}};
        if (bt_json_validate(d.p, d.len, 0, w, 1) != BT_OK) return BT_EVK_INVALID;
    }
    if (!decoded_first) return BT_EVK_DECODE;
    if (memmem(d.p, d.len, "\"finishReason\"", 14) || memmem(d.p, d.len, "\"error\"", 7) ||
        memmem(d.p, d.len, "\"blockReason\"", 13))
        return BT_EVK_DECODE;
    return BT_EVK_PLAIN;
}

static bool gemini_added_usage_event(const struct bt_json_doc *doc)
{
    (void)doc;
    return false;
}

/* `{"error":{"code","message","status"}}` (or that object in an array): the
 * status decides, refined by the gRPC status and the message. */
static void gemini_decode_error(int status, struct bt_str body, struct bt_arena *arena,
                                struct bt_perror *out)
{
    memset(out, 0, sizeof(*out));
    out->cls = bt_outcome_from_status(status);
    struct bt_json_doc doc;
    if (!body.len || bt_json_parse(&doc, body.p, body.len, arena, NULL, NULL) != BT_OK) return;
    int root = bt_json_type(&doc, 0) == BT_JSON_ARRAY ? bt_json_first(&doc, 0) : 0;
    int e = root >= 0 ? bt_json_get(&doc, root, "error") : -1;
    if (bt_json_type(&doc, e) != BT_JSON_OBJECT) return;
    out->message = bt_wire_field(&doc, e, "message", arena);
    out->type = bt_wire_field(&doc, e, "status", arena);
    struct bt_str raw_status = sget(&doc, e, "status"), raw_msg = sget(&doc, e, "message");
    enum bt_outcome o = bt_gemini_error_outcome(raw_status, raw_msg);
    if (out->cls == BT_OUTCOME_BAD_REQUEST || o == BT_OUTCOME_RATE_LIMIT ||
        o == BT_OUTCOME_CONTEXT_WINDOW)
        out->cls = o;
}

const struct bt_adapter bt_adapter_gemini = {
    .name = "gemini",
    .wire = BT_API_GEMINI,
    .encode = gemini_encode,
    .path = gemini_path,
    .headers = gemini_headers,
    .decode_reply = bt_gemini_decode,
    .classify_event = gemini_classify,
    .decode_event = bt_gemini_decode,
    .added_usage_event = gemini_added_usage_event,
    .decode_error = gemini_decode_error,
    .encode_for = gemini_encode_for,
};
