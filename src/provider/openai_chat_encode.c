/* Canonical chat request -> OpenAI chat-completions body
 * (provider/openai_chat_encode.h). Strings in a bt_chat are escaped JSON
 * bodies, so they go between quotes as they are. */
#include "provider/openai_chat_encode.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json/json.h"

struct enc {
    struct bt_buf *b;
    struct bt_arena *a;
    struct bt_chat_error *e;
    enum bt_err err;
};

static void put(struct enc *x, const char *p, size_t n)
{
    if (!x->err) x->err = bt_buf_append(x->b, p, n);
}
#define PUT(x, lit) put((x), (lit), sizeof(lit) - 1)
static void put_str(struct enc *x, struct bt_str s) { put(x, s.p, s.len); }

static void put_quoted(struct enc *x, struct bt_str body)
{
    PUT(x, "\"");
    put_str(x, body);
    PUT(x, "\"");
}

static void put_int(struct enc *x, int64_t v)
{
    char t[24];
    int n = snprintf(t, sizeof(t), "%lld", (long long)v);
    put(x, t, (size_t)n);
}

/* The shortest decimal that reads back as `v` (0.7 stays 0.7). */
static void put_double(struct enc *x, double v)
{
    char t[40];
    int n = 0;
    for (int prec = 1; prec <= 17; prec++) {
        n = snprintf(t, sizeof(t), "%.*g", prec, v);
        if (strtod(t, NULL) == v) break;
    }
    put(x, t, (size_t)n);
}

__attribute__((format(printf, 3, 4))) static enum bt_err refuse(struct enc *x, const char *param,
                                                                const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(x->e->message, sizeof(x->e->message), fmt, ap);
    va_end(ap);
    snprintf(x->e->param, sizeof(x->e->param), "%s", param);
    return BT_EINVAL;
}

/* A parameter path (cut at the buffer's end, which still names the place). */
__attribute__((format(printf, 3, 4))) static void path_fmt(char *out, size_t cap, const char *fmt,
                                                           ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(out, cap, fmt, ap);
    va_end(ap);
}

const char *bt_openai_effort_for_budget(int64_t budget)
{
    if (budget < 4096) return "low";
    if (budget < 16384) return "medium";
    return "high";
}

static const char *effort_name(enum bt_effort e)
{
    switch (e) {
    case BT_EFFORT_NONE: return "none";
    case BT_EFFORT_MINIMAL: return "minimal";
    case BT_EFFORT_LOW: return "low";
    case BT_EFFORT_MEDIUM: return "medium";
    case BT_EFFORT_HIGH: return "high";
    case BT_EFFORT_XHIGH: return "xhigh";
    case BT_EFFORT_MAX: return "max";
    default: return "medium";
    }
}

/* ---- content parts ---- */

/* A data URL from a media type and base64 data (both escaped bodies). */
static void put_data_url(struct enc *x, struct bt_str media_type, struct bt_str data)
{
    PUT(x, "\"data:");
    put_str(x, media_type);
    PUT(x, ";base64,");
    put_str(x, data);
    PUT(x, "\"");
}

static void put_text_part(struct enc *x, struct bt_str text)
{
    PUT(x, "{\"type\":\"text\",\"text\":");
    put_quoted(x, text);
    PUT(x, "}");
}

/* One user-side part as an OpenAI content part. */
static enum bt_err put_part(struct enc *x, const struct bt_chat_part *p, const char *path)
{
    switch (p->type) {
    case BT_PART_TEXT: put_text_part(x, p->text); return BT_OK;
    case BT_PART_IMAGE:
        PUT(x, "{\"type\":\"image_url\",\"image_url\":{\"url\":");
        if (p->image.url.len) put_quoted(x, p->image.url);
        else put_data_url(x, p->image.media_type, p->image.data);
        if (p->image.detail == BT_DETAIL_LOW) PUT(x, ",\"detail\":\"low\"");
        else if (p->image.detail == BT_DETAIL_HIGH) PUT(x, ",\"detail\":\"high\"");
        PUT(x, "}}");
        return BT_OK;
    case BT_PART_AUDIO:
        PUT(x, "{\"type\":\"input_audio\",\"input_audio\":{\"data\":");
        put_quoted(x, p->audio.data);
        PUT(x, ",\"format\":");
        put_quoted(x, p->audio.format);
        PUT(x, "}}");
        return BT_OK;
    case BT_PART_FILE:
        PUT(x, "{\"type\":\"file\",\"file\":{");
        if (p->file.file_id.len) {
            PUT(x, "\"file_id\":");
            put_quoted(x, p->file.file_id);
        } else {
            PUT(x, "\"filename\":");
            if (p->file.filename.len) put_quoted(x, p->file.filename);
            else if (bt_str_eq_c(p->file.media_type, "application/pdf"))
                PUT(x, "\"document.pdf\"");
            else PUT(x, "\"document\"");
            PUT(x, ",\"file_data\":");
            if (p->file.media_type.len) put_data_url(x, p->file.media_type, p->file.data);
            else put_quoted(x, p->file.data);
        }
        PUT(x, "}}");
        return BT_OK;
    default:
        return refuse(x, path, "%s: this content has no counterpart in an OpenAI user message",
                      path);
    }
}

/* A tool result as a `tool` message: its text (an image or document has no
 * place in an OpenAI tool message). An error result starts with "Error:"
 * (OpenAI has no is_error). */
static enum bt_err put_tool_message(struct enc *x, const struct bt_chat_part *p, const char *path)
{
    PUT(x, "{\"role\":\"tool\",\"tool_call_id\":");
    put_quoted(x, p->tool_result.call_id);
    PUT(x, ",\"content\":");
    const struct bt_chat_part *rp = p->tool_result.parts;
    uint32_t n = p->tool_result.nparts;
    for (uint32_t i = 0; i < n; i++) {
        if (rp[i].type != BT_PART_TEXT) {
            char q[128];
            path_fmt(q, sizeof(q), "%s.content.%u", path, i);
            return refuse(x, q,
                          "%s: a tool result may hold only text toward this provider (OpenAI "
                          "tool messages take no images or documents)",
                          q);
        }
    }
    if (!p->tool_result.is_error && n == 1) {
        put_quoted(x, rp[0].text);
    } else if (!p->tool_result.is_error && n == 0) {
        PUT(x, "\"\"");
    } else {
        PUT(x, "[");
        bool comma = false;
        if (p->tool_result.is_error) {
            put_text_part(x, BT_STR("Error:"));
            comma = true;
        }
        for (uint32_t i = 0; i < n; i++) {
            if (comma) PUT(x, ",");
            put_text_part(x, rp[i].text);
            comma = true;
        }
        PUT(x, "]");
    }
    PUT(x, "}");
    return BT_OK;
}

static void put_tool_call(struct enc *x, const struct bt_chat_part *p)
{
    struct bt_str args;
    enum bt_err err = bt_chat_args_string(p, x->a, &args);
    if (err) {
        if (!x->err) x->err = err;
        return;
    }
    PUT(x, "{\"id\":");
    put_quoted(x, p->tool_call.id);
    PUT(x, ",\"type\":\"function\",\"function\":{\"name\":");
    put_quoted(x, p->tool_call.name);
    PUT(x, ",\"arguments\":");
    put_quoted(x, args);
    PUT(x, "}}");
}

/* An assistant message: reasoning as `reasoning_content` (DeepSeek's name; its
 * thinking mode with tools wants it back), text as content, then tool_calls.
 * Signatures and redacted thinking mean nothing to another provider. */
static enum bt_err put_assistant(struct enc *x, const struct bt_chat_msg *m, const char *path)
{
    uint32_t ntext = 0, ncalls = 0, nthink = 0;
    for (uint32_t i = 0; i < m->nparts; i++) {
        enum bt_part_type t = m->parts[i].type;
        if (t == BT_PART_TEXT || t == BT_PART_REFUSAL) ntext++;
        else if (t == BT_PART_TOOL_CALL) ncalls++;
        else if (t == BT_PART_THINKING && m->parts[i].thinking.text.len) nthink++;
        else if (t != BT_PART_THINKING && t != BT_PART_REDACTED_THINKING) {
            char q[128];
            path_fmt(q, sizeof(q), "%s.content.%u", path, i);
            return refuse(x, q, "%s: this content has no counterpart in an OpenAI assistant message",
                          q);
        }
    }
    PUT(x, "{\"role\":\"assistant\",\"content\":");
    if (!ntext && ncalls) PUT(x, "null");
    else if (!ntext) PUT(x, "\"\"");
    else {
        /* the text parts as one string: escaped bodies concatenate safely */
        PUT(x, "\"");
        for (uint32_t i = 0; i < m->nparts; i++)
            if (m->parts[i].type == BT_PART_TEXT || m->parts[i].type == BT_PART_REFUSAL)
                put_str(x, m->parts[i].text);
        PUT(x, "\"");
    }
    if (nthink) {
        PUT(x, ",\"reasoning_content\":\"");
        for (uint32_t i = 0; i < m->nparts; i++)
            if (m->parts[i].type == BT_PART_THINKING) put_str(x, m->parts[i].thinking.text);
        PUT(x, "\"");
    }
    if (ncalls) {
        PUT(x, ",\"tool_calls\":[");
        bool comma = false;
        for (uint32_t i = 0; i < m->nparts; i++) {
            if (m->parts[i].type != BT_PART_TOOL_CALL) continue;
            if (comma) PUT(x, ",");
            put_tool_call(x, &m->parts[i]);
            comma = true;
        }
        PUT(x, "]");
    }
    PUT(x, "}");
    return BT_OK;
}

/* A user (or tool) message: its tool results first, each a `tool` message
 * (OpenAI wants them right after the assistant's calls), then the rest as one
 * user message. A single text part is sent as a string. */
static enum bt_err put_user(struct enc *x, const struct bt_chat_msg *m, const char *path,
                            bool *comma)
{
    uint32_t rest = 0;
    for (uint32_t i = 0; i < m->nparts; i++) {
        if (m->parts[i].type != BT_PART_TOOL_RESULT) {
            rest++;
            continue;
        }
        char q[128];
        path_fmt(q, sizeof(q), "%s.content.%u", path, i);
        if (*comma) PUT(x, ",");
        enum bt_err err = put_tool_message(x, &m->parts[i], q);
        if (err) return err;
        *comma = true;
    }
    if (!rest && m->nparts) return BT_OK;
    if (*comma) PUT(x, ",");
    *comma = true;
    const char *role = m->role == BT_ROLE_SYSTEM      ? "system"
                       : m->role == BT_ROLE_DEVELOPER ? "developer"
                                                      : "user";
    PUT(x, "{\"role\":\"");
    put_str(x, bt_str_c(role));
    PUT(x, "\"");
    if (m->name.len) {
        PUT(x, ",\"name\":");
        put_quoted(x, m->name);
    }
    PUT(x, ",\"content\":");
    if (rest == 1 && m->nparts == 1 && m->parts[0].type == BT_PART_TEXT) {
        put_quoted(x, m->parts[0].text);
    } else if (!rest) {
        PUT(x, "\"\"");
    } else {
        PUT(x, "[");
        bool c2 = false;
        for (uint32_t i = 0; i < m->nparts; i++) {
            if (m->parts[i].type == BT_PART_TOOL_RESULT) continue;
            char q[128];
            path_fmt(q, sizeof(q), "%s.content.%u", path, i);
            if (c2) PUT(x, ",");
            enum bt_err err = put_part(x, &m->parts[i], q);
            if (err) return err;
            c2 = true;
        }
        PUT(x, "]");
    }
    PUT(x, "}");
    return BT_OK;
}

static enum bt_err put_messages(struct enc *x, const struct bt_chat *c)
{
    PUT(x, "\"messages\":[");
    bool comma = false;
    if (c->nsystem) {
        PUT(x, "{\"role\":\"system\",\"content\":");
        if (c->nsystem == 1) {
            put_quoted(x, c->system[0].text);
        } else {
            PUT(x, "[");
            for (uint32_t i = 0; i < c->nsystem; i++) {
                if (i) PUT(x, ",");
                put_text_part(x, c->system[i].text);
            }
            PUT(x, "]");
        }
        PUT(x, "}");
        comma = true;
    }
    for (uint32_t i = 0; i < c->nmsgs; i++) {
        const struct bt_chat_msg *m = &c->msgs[i];
        char path[64];
        path_fmt(path, sizeof(path), "messages.%u", i);
        enum bt_err err;
        if (m->role == BT_ROLE_ASSISTANT) {
            if (comma) PUT(x, ",");
            err = put_assistant(x, m, path);
            comma = true;
        } else {
            err = put_user(x, m, path, &comma);
        }
        if (err) return err;
    }
    PUT(x, "]");
    return BT_OK;
}

static void put_tools(struct enc *x, const struct bt_chat *c)
{
    PUT(x, ",\"tools\":[");
    for (uint32_t i = 0; i < c->ntools; i++) {
        const struct bt_chat_tool *t = &c->tools[i];
        if (i) PUT(x, ",");
        PUT(x, "{\"type\":\"function\",\"function\":{\"name\":");
        put_quoted(x, t->name);
        if (t->description.len) {
            PUT(x, ",\"description\":");
            put_quoted(x, t->description);
        }
        if (t->parameters.len) {
            PUT(x, ",\"parameters\":");
            put_str(x, t->parameters);
        }
        if (t->strict_given) {
            if (t->strict) PUT(x, ",\"strict\":true");
            else PUT(x, ",\"strict\":false");
        }
        PUT(x, "}}");
    }
    PUT(x, "]");
    switch (c->tool_choice) {
    case BT_TOOL_CHOICE_AUTO: PUT(x, ",\"tool_choice\":\"auto\""); break;
    case BT_TOOL_CHOICE_NONE: PUT(x, ",\"tool_choice\":\"none\""); break;
    case BT_TOOL_CHOICE_REQUIRED: PUT(x, ",\"tool_choice\":\"required\""); break;
    case BT_TOOL_CHOICE_NAMED:
        PUT(x, ",\"tool_choice\":{\"type\":\"function\",\"function\":{\"name\":");
        put_quoted(x, c->tool_choice_name);
        PUT(x, "}}");
        break;
    default: break;
    }
    if (c->given & BT_GIVEN_PARALLEL_TOOL_CALLS) {
        if (c->parallel_tool_calls) PUT(x, ",\"parallel_tool_calls\":true");
        else PUT(x, ",\"parallel_tool_calls\":false");
    }
}

/* The settings written below; any other given one is refused by name. */
#define SUPPORTED                                                                              \
    (BT_GIVEN_TEMPERATURE | BT_GIVEN_TOP_P | BT_GIVEN_MAX_TOKENS | BT_GIVEN_STOP |             \
     BT_GIVEN_SEED | BT_GIVEN_N | BT_GIVEN_PRESENCE_PENALTY | BT_GIVEN_FREQUENCY_PENALTY |    \
     BT_GIVEN_PARALLEL_TOOL_CALLS | BT_GIVEN_REASONING_EFFORT | BT_GIVEN_REASONING_BUDGET |   \
     BT_GIVEN_USER)

enum bt_err bt_openai_chat_encode(const struct bt_chat *c, struct bt_str model,
                                  struct bt_arena *arena, struct bt_buf *out,
                                  struct bt_chat_error *err)
{
    memset(err, 0, sizeof(*err));
    struct enc x = {out, arena, err, BT_OK};
    uint32_t unsupported = c->given & ~(uint32_t)SUPPORTED;
    if (unsupported) {
        uint32_t bit = unsupported & -unsupported;
        const char *name = bt_chat_given_name(bit);
        if (bit == BT_GIVEN_TOP_K) name = "top_k";
        return refuse(&x, name,
                      "%s: this parameter has no counterpart in the OpenAI chat API of the "
                      "provider serving this model; remove it",
                      name);
    }
    if (c->nextras) {
        char key[96];
        snprintf(key, sizeof(key), "%.*s", (int)(c->extras[0].key.len > 80 ? 80 : c->extras[0].key.len),
                 c->extras[0].key.p);
        return refuse(&x, key,
                      "%s: this parameter has no counterpart in the OpenAI chat API of the "
                      "provider serving this model; remove it",
                      key);
    }
    size_t before = out->len;
    PUT(&x, "{\"model\":");
    if (!x.err) x.err = bt_json_escape(out, model);
    PUT(&x, ",");
    enum bt_err e = put_messages(&x, c);
    if (e) {
        out->len = before;
        return e;
    }
    if (c->ntools) put_tools(&x, c);
    bool reasoning = c->given & (BT_GIVEN_REASONING_BUDGET | BT_GIVEN_REASONING_EFFORT);
    if (c->given & BT_GIVEN_REASONING_EFFORT) {
        PUT(&x, ",\"reasoning_effort\":\"");
        put_str(&x, bt_str_c(effort_name(c->reasoning_effort)));
        PUT(&x, "\"");
    } else if (c->given & BT_GIVEN_REASONING_BUDGET) {
        PUT(&x, ",\"reasoning_effort\":\"");
        put_str(&x, bt_str_c(bt_openai_effort_for_budget(c->reasoning_budget)));
        PUT(&x, "\"");
    }
    if (c->given & BT_GIVEN_MAX_TOKENS) {
        /* OpenAI's reasoning models take only max_completion_tokens; many
         * OpenAI-compatible servers know only max_tokens. */
        if (reasoning) PUT(&x, ",\"max_completion_tokens\":");
        else PUT(&x, ",\"max_tokens\":");
        put_int(&x, c->max_tokens);
    }
    if (c->given & BT_GIVEN_TEMPERATURE) {
        PUT(&x, ",\"temperature\":");
        put_double(&x, c->temperature);
    }
    if (c->given & BT_GIVEN_TOP_P) {
        PUT(&x, ",\"top_p\":");
        put_double(&x, c->top_p);
    }
    if (c->given & BT_GIVEN_PRESENCE_PENALTY) {
        PUT(&x, ",\"presence_penalty\":");
        put_double(&x, c->presence_penalty);
    }
    if (c->given & BT_GIVEN_FREQUENCY_PENALTY) {
        PUT(&x, ",\"frequency_penalty\":");
        put_double(&x, c->frequency_penalty);
    }
    if (c->given & BT_GIVEN_SEED) {
        PUT(&x, ",\"seed\":");
        put_int(&x, c->seed);
    }
    if (c->given & BT_GIVEN_N) {
        PUT(&x, ",\"n\":");
        put_int(&x, c->n);
    }
    if ((c->given & BT_GIVEN_STOP) && c->nstop) {
        PUT(&x, ",\"stop\":[");
        for (uint32_t i = 0; i < c->nstop; i++) {
            if (i) PUT(&x, ",");
            put_quoted(&x, c->stop[i]);
        }
        PUT(&x, "]");
    }
    if ((c->given & BT_GIVEN_USER) && c->user.len) {
        PUT(&x, ",\"user\":");
        put_quoted(&x, c->user);
    }
    if (c->stream) PUT(&x, ",\"stream\":true,\"stream_options\":{\"include_usage\":true}");
    PUT(&x, "}");
    if (x.err) out->len = before;
    return x.err;
}
