/* Canonical chat request -> OpenAI chat-completions body
 * (provider/openai_chat_encode.h). Strings in a bt_chat are escaped JSON
 * bodies, so they go between quotes as they are. */
#include "provider/openai_chat_encode.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json/jout.h"

struct enc {
    struct bt_jout o; /* the body */
    struct bt_arena *a;
    struct bt_chat_error *e;
};

/* The shortest decimal that reads back as `v` (0.7 stays 0.7). */
static void put_double(struct enc *x, double v)
{
    char t[40];
    int n = 0;
    for (int prec = 1; prec <= 17; prec++) {
        n = snprintf(t, sizeof(t), "%.*g", prec, v);
        if (strtod(t, NULL) == v) break;
    }
    bt_jout_put(&x->o, t, (size_t)n);
}

#define refuse(x, param, ...) bt_chat_fail((x)->e, (param), __VA_ARGS__)

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
    BT_JOUT_LIT(&x->o, "\"data:");
    bt_jout_str(&x->o, media_type);
    BT_JOUT_LIT(&x->o, ";base64,");
    bt_jout_str(&x->o, data);
    BT_JOUT_LIT(&x->o, "\"");
}

static void put_text_part(struct enc *x, struct bt_str text)
{
    BT_JOUT_LIT(&x->o, "{\"type\":\"text\",\"text\":");
    bt_jout_quoted(&x->o, text);
    BT_JOUT_LIT(&x->o, "}");
}

/* One user-side part as an OpenAI content part. */
static enum bt_err put_part(struct enc *x, const struct bt_chat_part *p, const char *path)
{
    switch (p->type) {
    case BT_PART_TEXT: put_text_part(x, p->text); return BT_OK;
    case BT_PART_IMAGE:
        BT_JOUT_LIT(&x->o, "{\"type\":\"image_url\",\"image_url\":{\"url\":");
        if (p->image.url.len) bt_jout_quoted(&x->o, p->image.url);
        else put_data_url(x, p->image.media_type, p->image.data);
        if (p->image.detail == BT_DETAIL_LOW) BT_JOUT_LIT(&x->o, ",\"detail\":\"low\"");
        else if (p->image.detail == BT_DETAIL_HIGH) BT_JOUT_LIT(&x->o, ",\"detail\":\"high\"");
        BT_JOUT_LIT(&x->o, "}}");
        return BT_OK;
    case BT_PART_AUDIO:
        BT_JOUT_LIT(&x->o, "{\"type\":\"input_audio\",\"input_audio\":{\"data\":");
        bt_jout_quoted(&x->o, p->audio.data);
        BT_JOUT_LIT(&x->o, ",\"format\":");
        bt_jout_quoted(&x->o, p->audio.format);
        BT_JOUT_LIT(&x->o, "}}");
        return BT_OK;
    case BT_PART_FILE:
        BT_JOUT_LIT(&x->o, "{\"type\":\"file\",\"file\":{");
        if (p->file.file_id.len) {
            BT_JOUT_LIT(&x->o, "\"file_id\":");
            bt_jout_quoted(&x->o, p->file.file_id);
        } else {
            BT_JOUT_LIT(&x->o, "\"filename\":");
            if (p->file.filename.len) bt_jout_quoted(&x->o, p->file.filename);
            else if (bt_str_eq_c(p->file.media_type, "application/pdf"))
                BT_JOUT_LIT(&x->o, "\"document.pdf\"");
            else BT_JOUT_LIT(&x->o, "\"document\"");
            BT_JOUT_LIT(&x->o, ",\"file_data\":");
            if (p->file.media_type.len) put_data_url(x, p->file.media_type, p->file.data);
            else bt_jout_quoted(&x->o, p->file.data);
        }
        BT_JOUT_LIT(&x->o, "}}");
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
    BT_JOUT_LIT(&x->o, "{\"role\":\"tool\",\"tool_call_id\":");
    bt_jout_quoted(&x->o, p->tool_result.call_id);
    BT_JOUT_LIT(&x->o, ",\"content\":");
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
        bt_jout_quoted(&x->o, rp[0].text);
    } else if (!p->tool_result.is_error && n == 0) {
        BT_JOUT_LIT(&x->o, "\"\"");
    } else {
        BT_JOUT_LIT(&x->o, "[");
        bool comma = false;
        if (p->tool_result.is_error) {
            put_text_part(x, BT_STR("Error:"));
            comma = true;
        }
        for (uint32_t i = 0; i < n; i++) {
            if (comma) BT_JOUT_LIT(&x->o, ",");
            put_text_part(x, rp[i].text);
            comma = true;
        }
        BT_JOUT_LIT(&x->o, "]");
    }
    BT_JOUT_LIT(&x->o, "}");
    return BT_OK;
}

static void put_tool_call(struct enc *x, const struct bt_chat_part *p)
{
    struct bt_str args;
    enum bt_err err = bt_chat_args_string(p, x->a, &args);
    if (err) {
        if (!x->o.err) x->o.err = err;
        return;
    }
    BT_JOUT_LIT(&x->o, "{\"id\":");
    bt_jout_quoted(&x->o, p->tool_call.id);
    BT_JOUT_LIT(&x->o, ",\"type\":\"function\",\"function\":{\"name\":");
    bt_jout_quoted(&x->o, p->tool_call.name);
    BT_JOUT_LIT(&x->o, ",\"arguments\":");
    bt_jout_quoted(&x->o, args);
    BT_JOUT_LIT(&x->o, "}}");
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
    BT_JOUT_LIT(&x->o, "{\"role\":\"assistant\",\"content\":");
    if (!ntext && ncalls) BT_JOUT_LIT(&x->o, "null");
    else if (!ntext) BT_JOUT_LIT(&x->o, "\"\"");
    else {
        /* the text parts as one string: escaped bodies concatenate safely */
        BT_JOUT_LIT(&x->o, "\"");
        for (uint32_t i = 0; i < m->nparts; i++)
            if (m->parts[i].type == BT_PART_TEXT || m->parts[i].type == BT_PART_REFUSAL)
                bt_jout_str(&x->o, m->parts[i].text);
        BT_JOUT_LIT(&x->o, "\"");
    }
    if (nthink) {
        BT_JOUT_LIT(&x->o, ",\"reasoning_content\":\"");
        for (uint32_t i = 0; i < m->nparts; i++)
            if (m->parts[i].type == BT_PART_THINKING) bt_jout_str(&x->o, m->parts[i].thinking.text);
        BT_JOUT_LIT(&x->o, "\"");
    }
    if (ncalls) {
        BT_JOUT_LIT(&x->o, ",\"tool_calls\":[");
        bool comma = false;
        for (uint32_t i = 0; i < m->nparts; i++) {
            if (m->parts[i].type != BT_PART_TOOL_CALL) continue;
            if (comma) BT_JOUT_LIT(&x->o, ",");
            put_tool_call(x, &m->parts[i]);
            comma = true;
        }
        BT_JOUT_LIT(&x->o, "]");
    }
    BT_JOUT_LIT(&x->o, "}");
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
        if (*comma) BT_JOUT_LIT(&x->o, ",");
        enum bt_err err = put_tool_message(x, &m->parts[i], q);
        if (err) return err;
        *comma = true;
    }
    if (!rest && m->nparts) return BT_OK;
    if (*comma) BT_JOUT_LIT(&x->o, ",");
    *comma = true;
    const char *role = m->role == BT_ROLE_SYSTEM      ? "system"
                       : m->role == BT_ROLE_DEVELOPER ? "developer"
                                                      : "user";
    BT_JOUT_LIT(&x->o, "{\"role\":\"");
    bt_jout_str(&x->o, bt_str_c(role));
    BT_JOUT_LIT(&x->o, "\"");
    if (m->name.len) {
        BT_JOUT_LIT(&x->o, ",\"name\":");
        bt_jout_quoted(&x->o, m->name);
    }
    BT_JOUT_LIT(&x->o, ",\"content\":");
    if (rest == 1 && m->nparts == 1 && m->parts[0].type == BT_PART_TEXT) {
        bt_jout_quoted(&x->o, m->parts[0].text);
    } else if (!rest) {
        BT_JOUT_LIT(&x->o, "\"\"");
    } else {
        BT_JOUT_LIT(&x->o, "[");
        bool c2 = false;
        for (uint32_t i = 0; i < m->nparts; i++) {
            if (m->parts[i].type == BT_PART_TOOL_RESULT) continue;
            char q[128];
            path_fmt(q, sizeof(q), "%s.content.%u", path, i);
            if (c2) BT_JOUT_LIT(&x->o, ",");
            enum bt_err err = put_part(x, &m->parts[i], q);
            if (err) return err;
            c2 = true;
        }
        BT_JOUT_LIT(&x->o, "]");
    }
    BT_JOUT_LIT(&x->o, "}");
    return BT_OK;
}

static enum bt_err put_messages(struct enc *x, const struct bt_chat *c)
{
    BT_JOUT_LIT(&x->o, "\"messages\":[");
    bool comma = false;
    if (c->nsystem) {
        BT_JOUT_LIT(&x->o, "{\"role\":\"system\",\"content\":");
        if (c->nsystem == 1) {
            bt_jout_quoted(&x->o, c->system[0].text);
        } else {
            BT_JOUT_LIT(&x->o, "[");
            for (uint32_t i = 0; i < c->nsystem; i++) {
                if (i) BT_JOUT_LIT(&x->o, ",");
                put_text_part(x, c->system[i].text);
            }
            BT_JOUT_LIT(&x->o, "]");
        }
        BT_JOUT_LIT(&x->o, "}");
        comma = true;
    }
    for (uint32_t i = 0; i < c->nmsgs; i++) {
        const struct bt_chat_msg *m = &c->msgs[i];
        char path[64];
        path_fmt(path, sizeof(path), "messages.%u", i);
        enum bt_err err;
        if (m->role == BT_ROLE_ASSISTANT) {
            if (comma) BT_JOUT_LIT(&x->o, ",");
            err = put_assistant(x, m, path);
            comma = true;
        } else {
            err = put_user(x, m, path, &comma);
        }
        if (err) return err;
    }
    BT_JOUT_LIT(&x->o, "]");
    return BT_OK;
}

static void put_tools(struct enc *x, const struct bt_chat *c)
{
    BT_JOUT_LIT(&x->o, ",\"tools\":[");
    for (uint32_t i = 0; i < c->ntools; i++) {
        const struct bt_chat_tool *t = &c->tools[i];
        if (i) BT_JOUT_LIT(&x->o, ",");
        BT_JOUT_LIT(&x->o, "{\"type\":\"function\",\"function\":{\"name\":");
        bt_jout_quoted(&x->o, t->name);
        if (t->description.len) {
            BT_JOUT_LIT(&x->o, ",\"description\":");
            bt_jout_quoted(&x->o, t->description);
        }
        if (t->parameters.len) {
            BT_JOUT_LIT(&x->o, ",\"parameters\":");
            bt_jout_str(&x->o, t->parameters);
        }
        if (t->strict_given) {
            if (t->strict) BT_JOUT_LIT(&x->o, ",\"strict\":true");
            else BT_JOUT_LIT(&x->o, ",\"strict\":false");
        }
        BT_JOUT_LIT(&x->o, "}}");
    }
    BT_JOUT_LIT(&x->o, "]");
    switch (c->tool_choice) {
    case BT_TOOL_CHOICE_AUTO: BT_JOUT_LIT(&x->o, ",\"tool_choice\":\"auto\""); break;
    case BT_TOOL_CHOICE_NONE: BT_JOUT_LIT(&x->o, ",\"tool_choice\":\"none\""); break;
    case BT_TOOL_CHOICE_REQUIRED: BT_JOUT_LIT(&x->o, ",\"tool_choice\":\"required\""); break;
    case BT_TOOL_CHOICE_NAMED:
        BT_JOUT_LIT(&x->o, ",\"tool_choice\":{\"type\":\"function\",\"function\":{\"name\":");
        bt_jout_quoted(&x->o, c->tool_choice_name);
        BT_JOUT_LIT(&x->o, "}}");
        break;
    default: break;
    }
    if (c->given & BT_GIVEN_PARALLEL_TOOL_CALLS) {
        if (c->parallel_tool_calls) BT_JOUT_LIT(&x->o, ",\"parallel_tool_calls\":true");
        else BT_JOUT_LIT(&x->o, ",\"parallel_tool_calls\":false");
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
    struct enc x = {{out, BT_OK}, arena, err};
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
        struct bt_str k = c->extras[0].key;
        if (k.len) snprintf(key, sizeof(key), "%.*s", (int)(k.len > 80 ? 80 : k.len), k.p);
        else snprintf(key, sizeof(key), "\"\""); /* a member named "" */
        return refuse(&x, key,
                      "%s: this parameter has no counterpart in the OpenAI chat API of the "
                      "provider serving this model; remove it",
                      key);
    }
    size_t before = out->len;
    BT_JOUT_LIT(&x.o, "{\"model\":");
    if (!x.o.err) x.o.err = bt_json_escape(out, model);
    BT_JOUT_LIT(&x.o, ",");
    enum bt_err e = put_messages(&x, c);
    if (e) {
        out->len = before;
        return e;
    }
    if (c->ntools) put_tools(&x, c);
    bool reasoning = c->given & (BT_GIVEN_REASONING_BUDGET | BT_GIVEN_REASONING_EFFORT);
    if (c->given & BT_GIVEN_REASONING_EFFORT) {
        BT_JOUT_LIT(&x.o, ",\"reasoning_effort\":\"");
        bt_jout_str(&x.o, bt_str_c(effort_name(c->reasoning_effort)));
        BT_JOUT_LIT(&x.o, "\"");
    } else if (c->given & BT_GIVEN_REASONING_BUDGET) {
        BT_JOUT_LIT(&x.o, ",\"reasoning_effort\":\"");
        bt_jout_str(&x.o, bt_str_c(bt_openai_effort_for_budget(c->reasoning_budget)));
        BT_JOUT_LIT(&x.o, "\"");
    }
    if (c->given & BT_GIVEN_MAX_TOKENS) {
        /* OpenAI's reasoning models take only max_completion_tokens; many
         * OpenAI-compatible servers know only max_tokens. */
        if (reasoning) BT_JOUT_LIT(&x.o, ",\"max_completion_tokens\":");
        else BT_JOUT_LIT(&x.o, ",\"max_tokens\":");
        bt_jout_int(&x.o, c->max_tokens);
    }
    if (c->given & BT_GIVEN_TEMPERATURE) {
        BT_JOUT_LIT(&x.o, ",\"temperature\":");
        put_double(&x, c->temperature);
    }
    if (c->given & BT_GIVEN_TOP_P) {
        BT_JOUT_LIT(&x.o, ",\"top_p\":");
        put_double(&x, c->top_p);
    }
    if (c->given & BT_GIVEN_PRESENCE_PENALTY) {
        BT_JOUT_LIT(&x.o, ",\"presence_penalty\":");
        put_double(&x, c->presence_penalty);
    }
    if (c->given & BT_GIVEN_FREQUENCY_PENALTY) {
        BT_JOUT_LIT(&x.o, ",\"frequency_penalty\":");
        put_double(&x, c->frequency_penalty);
    }
    if (c->given & BT_GIVEN_SEED) {
        BT_JOUT_LIT(&x.o, ",\"seed\":");
        bt_jout_int(&x.o, c->seed);
    }
    if (c->given & BT_GIVEN_N) {
        BT_JOUT_LIT(&x.o, ",\"n\":");
        bt_jout_int(&x.o, c->n);
    }
    if ((c->given & BT_GIVEN_STOP) && c->nstop) {
        BT_JOUT_LIT(&x.o, ",\"stop\":[");
        for (uint32_t i = 0; i < c->nstop; i++) {
            if (i) BT_JOUT_LIT(&x.o, ",");
            bt_jout_quoted(&x.o, c->stop[i]);
        }
        BT_JOUT_LIT(&x.o, "]");
    }
    if ((c->given & BT_GIVEN_USER) && c->user.len) {
        BT_JOUT_LIT(&x.o, ",\"user\":");
        bt_jout_quoted(&x.o, c->user);
    }
    if (c->stream) BT_JOUT_LIT(&x.o, ",\"stream\":true,\"stream_options\":{\"include_usage\":true}");
    BT_JOUT_LIT(&x.o, "}");
    if (x.o.err) out->len = before;
    return x.o.err;
}
