/* OpenAI chat request -> canonical chat request (api/openai_chat.h).
 *
 * One walk over each object's members (the last of a duplicated key wins, as
 * with bt_json_get), typed getters that fail with OpenAI-style messages, and
 * arrays sized from the token counts before they are filled, so nothing grows.
 * Error paths name the parameter as a path built while descending. */
#include "api/openai_chat.h"

#include <math.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "core/buf.h"

/* Longest parameter path we build; deeper paths are cut (still unique enough). */
#define PATH_MAX_LEN 128

struct dec {
    const struct bt_json_doc *d;
    struct bt_arena *a;
    struct bt_chat *c;
    struct bt_chat_error *e;
};

#define fail(x, param, ...) bt_chat_fail((x)->e, (param), __VA_ARGS__)

/* An array of n (at least one, so that an empty array is not NULL and the
 * fill loops may step a pointer over it): NULL only when out of memory. */
static void *alloc(struct dec *x, size_t n, size_t size)
{
    return bt_arena_calloc(x->a, n ? n : 1, size);
}

/* ---- members and values ---- */

static bool key_is(const struct dec *x, int k, const char *name)
{
    return bt_json_str_eq(x->d, k, name);
}

static int type_of(const struct dec *x, int v)
{
    return bt_json_type(x->d, v);
}

static bool absent(const struct dec *x, int v)
{
    return v < 0 || type_of(x, v) == BT_JSON_NULL;
}

static enum bt_err bad_type(struct dec *x, const char *path, int v, const char *want)
{
    return fail(x, path, "Invalid type for '%s': expected %s, but got %s instead.", path, want,
                bt_json_type_name(type_of(x, v)));
}

static enum bt_err missing(struct dec *x, const char *path)
{
    return fail(x, path, "Missing required parameter: '%s'.", path);
}

/* `path` + suffix, cut to PATH_MAX_LEN. */
__attribute__((format(printf, 2, 3))) static void subpath(char out[PATH_MAX_LEN], const char *fmt,
                                                          ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(out, PATH_MAX_LEN, fmt, ap);
    va_end(ap);
}

static enum bt_err get_str(struct dec *x, int v, const char *path, struct bt_str *out)
{
    if (type_of(x, v) != BT_JSON_STRING) return bad_type(x, path, v, "a string");
    *out = bt_json_str_raw(x->d, v);
    return BT_OK;
}

/* A required string member value `v` (-1 when the member is missing). */
static enum bt_err need_str(struct dec *x, int v, const char *path, struct bt_str *out)
{
    return v < 0 ? missing(x, path) : get_str(x, v, path, out);
}

/* Required string member `key` of object `obj`, which `path` names. */
static enum bt_err member_str(struct dec *x, int obj, const char *path, const char *key,
                              struct bt_str *out)
{
    char q[PATH_MAX_LEN];
    subpath(q, "%s.%s", path, key);
    return need_str(x, bt_json_get(x->d, obj, key), q, out);
}

static enum bt_err get_bool(struct dec *x, int v, const char *path, bool *out)
{
    if (bt_json_bool(x->d, v, out)) return bad_type(x, path, v, "a boolean");
    return BT_OK;
}

static enum bt_err get_raw_object(struct dec *x, int v, const char *path, struct bt_str *out)
{
    if (type_of(x, v) != BT_JSON_OBJECT) return bad_type(x, path, v, "an object");
    *out = bt_json_raw(x->d, v);
    return BT_OK;
}

/* The value as it appears in the body, cut for an error message. */
static struct bt_str shown(const struct dec *x, int v)
{
    struct bt_str s = type_of(x, v) == BT_JSON_STRING ? bt_json_str_raw(x->d, v) : bt_json_raw(x->d, v);
    if (s.len > 64) s.len = 64;
    return s;
}

/* One of `names` (NULL-terminated), as its index; BT_EINVAL naming them all. */
static enum bt_err get_enum(struct dec *x, int v, const char *path, const char *const *names,
                            int *out)
{
    if (type_of(x, v) != BT_JSON_STRING) return bad_type(x, path, v, "a string");
    char list[256];
    size_t o = 0;
    for (int i = 0; names[i]; i++) {
        if (bt_json_str_eq(x->d, v, names[i])) {
            *out = i;
            return BT_OK;
        }
        int n = snprintf(list + o, sizeof(list) - o, "%s'%s'", i ? ", " : "", names[i]);
        if (n > 0 && (size_t)n < sizeof(list) - o) o += (size_t)n;
    }
    struct bt_str s = shown(x, v);
    return fail(x, path, "Invalid value for '%s': '%.*s'. Supported values are: %s.", path,
                BT_STR_FMT(s), list);
}

/* A number within [min, max]; integers only when `integer`. */
static enum bt_err get_number(struct dec *x, int v, const char *path, bool integer, double min,
                              double max, double *dout, int64_t *iout)
{
    if (type_of(x, v) != BT_JSON_NUMBER)
        return bad_type(x, path, v, integer ? "an integer" : "a number");
    double d;
    if (integer) {
        int64_t i;
        if (bt_json_int(x->d, v, &i)) {
            struct bt_str s = shown(x, v);
            return fail(x, path, "Invalid type for '%s': expected an integer, but got %.*s instead.",
                        path, BT_STR_FMT(s));
        }
        *iout = i;
        d = (double)i;
    } else {
        if (bt_json_double(x->d, v, &d)) {
            struct bt_str s = shown(x, v);
            return fail(x, path, "Invalid '%s': %.*s is not a usable number.", path, BT_STR_FMT(s));
        }
        *dout = d;
    }
    if (d < min || d > max) {
        struct bt_str s = shown(x, v);
        return fail(x, path, "Invalid '%s': %s. Expected a value %s %g, but got %.*s instead.", path,
                    d < min ? "below minimum value" : "above maximum value", d < min ? ">=" : "<=",
                    d < min ? min : max, BT_STR_FMT(s));
    }
    return BT_OK;
}

/* ---- cache marks ---- */

/* `cache_control: {"type":"ephemeral","ttl":"1h"}` (the Anthropic-style extension
 * OpenAI-compatible gateways accept) or `prompt_cache_breakpoint: {"mode":
 * "explicit"}` (OpenAI's). Other keys: *used stays false. */
static enum bt_err cache_member(struct dec *x, int k, int v, const char *path,
                                struct bt_cache_mark *m, bool *used)
{
    char p[PATH_MAX_LEN];
    *used = true;
    if (key_is(x, k, "cache_control")) {
        subpath(p, "%s.cache_control", path);
        if (absent(x, v)) return BT_OK;
        if (type_of(x, v) != BT_JSON_OBJECT) return bad_type(x, p, v, "an object");
        struct bt_json_members ms = bt_json_members_of(x->d, v);
        int mk, mv;
        while (bt_json_members_next(&ms, &mk, &mv)) {
            char q[PATH_MAX_LEN];
            if (key_is(x, mk, "type")) {
                static const char *const types[] = {"ephemeral", NULL};
                int t;
                subpath(q, "%s.type", p);
                if (get_enum(x, mv, q, types, &t)) return BT_EINVAL;
            } else if (key_is(x, mk, "ttl") && !absent(x, mv)) {
                subpath(q, "%s.ttl", p);
                if (get_str(x, mv, q, &m->ttl)) return BT_EINVAL;
            }
        }
        m->set = true;
        return BT_OK;
    }
    if (key_is(x, k, "prompt_cache_breakpoint")) {
        subpath(p, "%s.prompt_cache_breakpoint", path);
        if (absent(x, v)) return BT_OK;
        if (type_of(x, v) != BT_JSON_OBJECT) return bad_type(x, p, v, "an object");
        int mode = bt_json_get(x->d, v, "mode");
        if (mode >= 0) {
            static const char *const modes[] = {"explicit", NULL};
            int t;
            char q[PATH_MAX_LEN];
            subpath(q, "%s.mode", p);
            if (get_enum(x, mode, q, modes, &t)) return BT_EINVAL;
        }
        m->set = true;
        return BT_OK;
    }
    *used = false;
    return BT_OK;
}

/* ---- content parts ---- */

/* Which OpenAI part types a role's content may hold. */
enum {
    ALLOW_TEXT = 1u << 0,
    ALLOW_IMAGE = 1u << 1,
    ALLOW_AUDIO = 1u << 2,
    ALLOW_FILE = 1u << 3,
    ALLOW_REFUSAL = 1u << 4,
};
static const char *const part_type_names[] = {"text", "image_url", "input_audio", "file",
                                              "refusal", NULL};

static bool media_type_ok(struct bt_str s)
{
    if (!s.len || s.len > 127) return false;
    for (size_t i = 0; i < s.len; i++) {
        char ch = s.p[i];
        bool ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
                  ch == '/' || ch == '.' || ch == '+' || ch == '-' || ch == '_';
        if (!ok) return false;
    }
    return true;
}

/* Splits a `data:<media type>;base64,<data>` URL (raw, escaped) into its media
 * type (checked to need no escaping, so it is a valid string body either way)
 * and its data (the raw rest). *is_data is false for any other URL. */
static enum bt_err data_url(struct dec *x, struct bt_str raw, const char *path, bool *is_data,
                            struct bt_str *media, struct bt_str *data)
{
    *is_data = raw.len >= 5 && memcmp(raw.p, "data:", 5) == 0;
    if (!*is_data) return BT_OK;
    long comma = bt_str_index(raw, ',');
    struct bt_str head = {raw.p + 5, comma < 0 ? 0 : (size_t)comma - 5};
    if (comma >= 0 && memchr(head.p, '\\', head.len)) {
        /* a client that escapes '/' (PHP's json_encode): decode the short head */
        struct bt_buf b;
        bt_buf_init(&b, head.len + 1);
        enum bt_err err = bt_json_unescape(head, &b);
        if (!err) head = bt_arena_strdup(x->a, bt_buf_str(&b));
        bt_buf_free(&b);
        if (err == BT_ENOMEM || (!err && !head.p)) return BT_ENOMEM;
        if (err) head.len = 0;
    }
    static const char b64[] = ";base64";
    size_t bl = sizeof(b64) - 1;
    if (comma < 0 || head.len <= bl || memcmp(head.p + head.len - bl, b64, bl) != 0)
        return fail(x, path, "Invalid '%s': a data URL must have the form "
                             "data:<media type>;base64,<data>.", path);
    *media = (struct bt_str){head.p, (size_t)bt_str_index(head, ';')};
    if (!media_type_ok(*media))
        return fail(x, path, "Invalid '%s': the data URL's media type '%.*s' is not valid.", path,
                    BT_STR_FMT(*media));
    *data = (struct bt_str){raw.p + comma + 1, raw.len - (size_t)comma - 1};
    return BT_OK;
}

static enum bt_err image_part(struct dec *x, int v, const char *path, struct bt_chat_part *p)
{
    char q[PATH_MAX_LEN];
    int url = v, detail = -1;
    subpath(q, "%s.url", path);
    if (type_of(x, v) == BT_JSON_OBJECT) {
        url = bt_json_get(x->d, v, "url");
        detail = bt_json_get(x->d, v, "detail");
    } else if (type_of(x, v) != BT_JSON_STRING) {
        return bad_type(x, path, v, "an object");
    } else {
        snprintf(q, sizeof(q), "%s", path); /* the URL given as a plain string */
    }
    struct bt_str u;
    if (need_str(x, url, q, &u)) return BT_EINVAL;
    if (!u.len) return fail(x, q, "Invalid '%s': empty string. Expected an image URL.", q);
    bool is_data;
    enum bt_err err = data_url(x, u, q, &is_data, &p->image.media_type, &p->image.data);
    if (err) return err;
    if (!is_data) p->image.url = u;
    if (!absent(x, detail)) {
        static const char *const details[] = {"auto", "low", "high", NULL};
        int dv;
        subpath(q, "%s.detail", path);
        if (get_enum(x, detail, q, details, &dv)) return BT_EINVAL;
        p->image.detail = (enum bt_image_detail)(BT_DETAIL_AUTO + dv);
    }
    return BT_OK;
}

static enum bt_err audio_part(struct dec *x, int v, const char *path, struct bt_chat_part *p)
{
    if (type_of(x, v) != BT_JSON_OBJECT) return bad_type(x, path, v, "an object");
    if (member_str(x, v, path, "data", &p->audio.data)) return BT_EINVAL;
    return member_str(x, v, path, "format", &p->audio.format);
}

static enum bt_err file_part(struct dec *x, int v, const char *path, struct bt_chat_part *p)
{
    char q[PATH_MAX_LEN];
    if (type_of(x, v) != BT_JSON_OBJECT) return bad_type(x, path, v, "an object");
    struct bt_json_members ms = bt_json_members_of(x->d, v);
    int k, fv;
    while (bt_json_members_next(&ms, &k, &fv)) {
        if (absent(x, fv)) continue;
        struct bt_str *dst = key_is(x, k, "file_data") ? &p->file.data
                             : key_is(x, k, "file_id") ? &p->file.file_id
                             : key_is(x, k, "filename") ? &p->file.filename
                                                        : NULL;
        if (!dst) continue;
        subpath(q, "%s.%.*s", path, BT_STR_FMT(bt_json_str_raw(x->d, k)));
        if (get_str(x, fv, q, dst)) return BT_EINVAL;
        if (dst == &p->file.data) {
            bool is_data;
            struct bt_str media = BT_STR_NULL, data = BT_STR_NULL;
            enum bt_err err = data_url(x, *dst, q, &is_data, &media, &data);
            if (err) return err;
            if (is_data) {
                p->file.media_type = media;
                p->file.data = data;
            }
        }
    }
    if (!p->file.data.len && !p->file.file_id.len)
        return fail(x, path, "Invalid '%s': give either 'file_data' or 'file_id'.", path);
    return BT_OK;
}

/* One element of a content array. */
static enum bt_err content_part(struct dec *x, int v, const char *path, unsigned allow,
                                struct bt_chat_part *p)
{
    char q[PATH_MAX_LEN];
    if (type_of(x, v) != BT_JSON_OBJECT) return bad_type(x, path, v, "an object");
    int type = bt_json_get(x->d, v, "type");
    subpath(q, "%s.type", path);
    if (type < 0) return missing(x, q);
    int t;
    if (get_enum(x, type, q, part_type_names, &t)) return BT_EINVAL;
    if (!(allow & (1u << t))) {
        char list[128];
        size_t o = 0;
        for (int i = 0; part_type_names[i]; i++) {
            if (!(allow & (1u << i))) continue;
            int n = snprintf(list + o, sizeof(list) - o, "%s'%s'", o ? ", " : "", part_type_names[i]);
            if (n > 0 && (size_t)n < sizeof(list) - o) o += (size_t)n;
        }
        return fail(x, q, "Invalid value for '%s': '%s' is not allowed in this message's content. "
                          "Supported values are: %s.", q, part_type_names[t], list);
    }
    static const enum bt_part_type types[] = {BT_PART_TEXT, BT_PART_IMAGE, BT_PART_AUDIO,
                                              BT_PART_FILE, BT_PART_REFUSAL};
    p->type = types[t];
    int body = -1;
    struct bt_json_members ms = bt_json_members_of(x->d, v);
    int k, mv;
    while (bt_json_members_next(&ms, &k, &mv)) {
        bool used;
        if (cache_member(x, k, mv, path, &p->cache, &used)) return BT_EINVAL;
        if (!used && key_is(x, k, part_type_names[t])) body = mv;
    }
    subpath(q, "%s.%s", path, part_type_names[t]);
    if (body < 0) return missing(x, q);
    switch (p->type) {
    case BT_PART_TEXT:
    case BT_PART_REFUSAL: return get_str(x, body, q, &p->text);
    case BT_PART_IMAGE: return image_part(x, body, q, p);
    case BT_PART_AUDIO: return audio_part(x, body, q, p);
    default: return file_part(x, body, q, p);
    }
}

/* The number of parts `content` will give: a string is one, null none. */
static uint32_t content_count(const struct dec *x, int content)
{
    if (type_of(x, content) == BT_JSON_ARRAY) return x->d->toks[content].size;
    return type_of(x, content) == BT_JSON_STRING ? 1 : 0;
}

/* Fills parts[0..content_count) from `content` (a string, an array of parts,
 * or null where `nullable`). */
static enum bt_err content(struct dec *x, int v, const char *path, unsigned allow, bool nullable,
                           struct bt_chat_part *parts)
{
    if (v < 0 && !nullable) return missing(x, path);
    if (absent(x, v)) {
        if (nullable) return BT_OK;
        return bad_type(x, path, v, "one of a string or array of objects");
    }
    if (type_of(x, v) == BT_JSON_STRING) {
        parts[0].type = BT_PART_TEXT;
        parts[0].text = bt_json_str_raw(x->d, v);
        return BT_OK;
    }
    if (type_of(x, v) != BT_JSON_ARRAY)
        return bad_type(x, path, v, "one of a string or array of objects");
    if (!x->d->toks[v].size)
        return fail(x, path, "Invalid '%s': empty array. Expected an array with minimum length 1, "
                             "but got an empty array instead.", path);
    uint32_t i = 0;
    for (int e = bt_json_first(x->d, v); i < x->d->toks[v].size; e = (int)x->d->toks[e].next, i++) {
        char q[PATH_MAX_LEN];
        subpath(q, "%s[%u]", path, i);
        enum bt_err err = content_part(x, e, q, allow, &parts[i]);
        if (err) return err;
    }
    return BT_OK;
}

/* ---- messages ---- */

/* The members of a message that decoding reads. */
struct msg_toks {
    int role, content, name, tool_calls, function_call, refusal, reasoning, reasoning_alt,
        tool_call_id, audio;
};

/* `{"name","arguments"}`: a tool call's `function`, or an assistant message's
 * legacy `function_call` (a call without an id). */
static enum bt_err function_call(struct dec *x, int v, const char *path, struct bt_chat_part *p)
{
    if (v < 0) return missing(x, path);
    if (type_of(x, v) != BT_JSON_OBJECT) return bad_type(x, path, v, "an object");
    p->type = BT_PART_TOOL_CALL;
    p->tool_call.args_escaped = true;
    if (member_str(x, v, path, "name", &p->tool_call.name)) return BT_EINVAL;
    return member_str(x, v, path, "arguments", &p->tool_call.args);
}

static enum bt_err tool_call(struct dec *x, int v, const char *path, struct bt_chat_part *p)
{
    char q[PATH_MAX_LEN];
    if (type_of(x, v) != BT_JSON_OBJECT) return bad_type(x, path, v, "an object");
    int type = bt_json_get(x->d, v, "type");
    if (!absent(x, type)) {
        static const char *const types[] = {"function", "custom", NULL};
        int t;
        subpath(q, "%s.type", path);
        if (get_enum(x, type, q, types, &t)) return BT_EINVAL;
        if (t == 1)
            return fail(x, q, "Invalid value for '%s': custom tool calls cannot be translated for "
                              "this model's provider; only 'function' is supported.", q);
    }
    if (member_str(x, v, path, "id", &p->tool_call.id)) return BT_EINVAL;
    subpath(q, "%s.function", path);
    return function_call(x, bt_json_get(x->d, v, "function"), q, p);
}

static enum bt_err assistant(struct dec *x, const struct msg_toks *t, const char *path,
                             struct bt_chat_msg *m)
{
    char q[PATH_MAX_LEN];
    if (!absent(x, t->audio)) {
        subpath(q, "%s.audio", path);
        return fail(x, q, "Invalid '%s': a reference to an earlier audio reply cannot be "
                          "translated for this model's provider.", q);
    }
    int reasoning = !absent(x, t->reasoning) ? t->reasoning : t->reasoning_alt;
    bool has_reasoning = !absent(x, reasoning), has_refusal = !absent(x, t->refusal);
    bool has_fc = !absent(x, t->function_call);
    uint32_t ncalls = 0;
    if (!absent(x, t->tool_calls)) {
        subpath(q, "%s.tool_calls", path);
        if (type_of(x, t->tool_calls) != BT_JSON_ARRAY)
            return bad_type(x, q, t->tool_calls, "an array");
        ncalls = x->d->toks[t->tool_calls].size;
    }
    uint32_t ncontent = content_count(x, t->content);
    m->nparts = (uint32_t)has_reasoning + ncontent + (uint32_t)has_refusal + ncalls + (uint32_t)has_fc;
    m->parts = alloc(x, m->nparts, sizeof(*m->parts));
    if (!m->parts) return BT_ENOMEM;
    struct bt_chat_part *p = m->parts;
    if (has_reasoning) {
        /* DeepSeek's reasoning_content (Solar's reasoning): thinking mode with
         * tools wants it back, so it is kept as a thinking part */
        subpath(q, "%s.%s", path, reasoning == t->reasoning ? "reasoning_content" : "reasoning");
        p->type = BT_PART_THINKING;
        if (get_str(x, reasoning, q, &p->thinking.text)) return BT_EINVAL;
        p++;
    }
    subpath(q, "%s.content", path);
    enum bt_err err = content(x, t->content, q, ALLOW_TEXT | ALLOW_REFUSAL, true, p);
    if (err) return err;
    p += ncontent;
    if (has_refusal) {
        subpath(q, "%s.refusal", path);
        p->type = BT_PART_REFUSAL;
        if (get_str(x, t->refusal, q, &p->text)) return BT_EINVAL;
        p++;
    }
    uint32_t i = 0;
    for (int e = bt_json_first(x->d, t->tool_calls); i < ncalls; e = (int)x->d->toks[e].next, i++) {
        subpath(q, "%s.tool_calls[%u]", path, i);
        err = tool_call(x, e, q, p++);
        if (err) return err;
    }
    if (has_fc) {
        subpath(q, "%s.function_call", path);
        err = function_call(x, t->function_call, q, p++);
        if (err) return err;
    }
    return BT_OK;
}

/* A tool (or legacy function) message: one TOOL_RESULT part holding the content. */
static enum bt_err tool_result(struct dec *x, const struct msg_toks *t, const char *path,
                               bool legacy, struct bt_chat_msg *m)
{
    char q[PATH_MAX_LEN];
    m->nparts = 1;
    m->parts = alloc(x, 1, sizeof(*m->parts));
    if (!m->parts) return BT_ENOMEM;
    struct bt_chat_part *r = m->parts;
    r->type = BT_PART_TOOL_RESULT;
    if (legacy) {
        subpath(q, "%s.name", path);
        if (need_str(x, t->name, q, &r->tool_result.name)) return BT_EINVAL;
    } else {
        subpath(q, "%s.tool_call_id", path);
        if (need_str(x, t->tool_call_id, q, &r->tool_result.call_id)) return BT_EINVAL;
    }
    r->tool_result.nparts = content_count(x, t->content);
    r->tool_result.parts = alloc(x, r->tool_result.nparts, sizeof(struct bt_chat_part));
    if (!r->tool_result.parts) return BT_ENOMEM;
    subpath(q, "%s.content", path);
    if (legacy && t->content < 0) return missing(x, q);
    return content(x, t->content, q, ALLOW_TEXT, legacy, r->tool_result.parts);
}

static enum bt_err message(struct dec *x, int v, const char *path, struct bt_chat_msg *m)
{
    char q[PATH_MAX_LEN];
    if (type_of(x, v) != BT_JSON_OBJECT) return bad_type(x, path, v, "an object");
    struct msg_toks t;
    memset(&t, 0xff, sizeof(t)); /* every member -1: absent */
    struct bt_json_members ms = bt_json_members_of(x->d, v);
    int k, mv;
    while (bt_json_members_next(&ms, &k, &mv)) {
        bool used;
        if (cache_member(x, k, mv, path, &m->cache, &used)) return BT_EINVAL;
        if (used) continue;
        static const struct {
            const char *key;
            size_t off;
        } keys[] = {
            {"role", offsetof(struct msg_toks, role)},
            {"content", offsetof(struct msg_toks, content)},
            {"name", offsetof(struct msg_toks, name)},
            {"tool_calls", offsetof(struct msg_toks, tool_calls)},
            {"function_call", offsetof(struct msg_toks, function_call)},
            {"refusal", offsetof(struct msg_toks, refusal)},
            {"reasoning_content", offsetof(struct msg_toks, reasoning)},
            {"reasoning", offsetof(struct msg_toks, reasoning_alt)},
            {"tool_call_id", offsetof(struct msg_toks, tool_call_id)},
            {"audio", offsetof(struct msg_toks, audio)},
        };
        for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
            if (key_is(x, k, keys[i].key)) {
                *(int *)(void *)((char *)&t + keys[i].off) = mv; /* other members are ignored */
                break;
            }
        }
    }
    static const char *const roles[] = {"system", "developer", "user", "assistant", "tool",
                                        "function", NULL};
    static const enum bt_role role_of[] = {BT_ROLE_SYSTEM, BT_ROLE_DEVELOPER, BT_ROLE_USER,
                                           BT_ROLE_ASSISTANT, BT_ROLE_TOOL, BT_ROLE_TOOL};
    subpath(q, "%s.role", path);
    if (t.role < 0) return missing(x, q);
    int r;
    if (get_enum(x, t.role, q, roles, &r)) return BT_EINVAL;
    m->role = role_of[r];
    if (!absent(x, t.name) && r != 5) {
        subpath(q, "%s.name", path);
        if (get_str(x, t.name, q, &m->name)) return BT_EINVAL;
    }
    if (m->role == BT_ROLE_ASSISTANT) return assistant(x, &t, path, m);
    if (m->role == BT_ROLE_TOOL) return tool_result(x, &t, path, r == 5, m);
    unsigned allow = m->role == BT_ROLE_USER ? ALLOW_TEXT | ALLOW_IMAGE | ALLOW_AUDIO | ALLOW_FILE
                                             : ALLOW_TEXT;
    m->nparts = content_count(x, t.content);
    m->parts = alloc(x, m->nparts, sizeof(*m->parts));
    if (!m->parts) return BT_ENOMEM;
    subpath(q, "%s.content", path);
    return content(x, t.content, q, allow, false, m->parts);
}

static enum bt_err messages(struct dec *x, int v)
{
    if (type_of(x, v) != BT_JSON_ARRAY) return bad_type(x, "messages", v, "an array");
    uint32_t n = x->d->toks[v].size;
    if (!n)
        return fail(x, "messages", "Invalid 'messages': empty array. Expected an array with "
                                   "minimum length 1, but got an empty array instead.");
    x->c->msgs = alloc(x, n, sizeof(*x->c->msgs));
    if (!x->c->msgs) return BT_ENOMEM;
    x->c->nmsgs = n;
    uint32_t i = 0;
    for (int e = bt_json_first(x->d, v); i < n; e = (int)x->d->toks[e].next, i++) {
        char q[PATH_MAX_LEN];
        subpath(q, "messages[%u]", i);
        enum bt_err err = message(x, e, q, &x->c->msgs[i]);
        if (err) return err;
    }
    return BT_OK;
}

/* ---- tools ---- */

/* A named schema: a function definition (`tools[i].function`, a legacy
 * `functions[i]`: schema under "parameters") or `response_format.json_schema`
 * (under "schema"): name (required), description, schema, strict. */
struct named_schema {
    struct bt_str *name, *description, *schema;
    bool *strict, *strict_given; /* strict_given may be NULL */
};

static enum bt_err named_schema(struct dec *x, int v, const char *path, const char *schema_key,
                                const struct named_schema *out)
{
    char q[PATH_MAX_LEN];
    if (v < 0) return missing(x, path);
    if (type_of(x, v) != BT_JSON_OBJECT) return bad_type(x, path, v, "an object");
    struct bt_json_members ms = bt_json_members_of(x->d, v);
    int k, mv;
    while (bt_json_members_next(&ms, &k, &mv)) {
        if (absent(x, mv)) continue;
        subpath(q, "%s.%.*s", path, BT_STR_FMT(bt_json_str_raw(x->d, k)));
        enum bt_err err = BT_OK;
        if (key_is(x, k, "description")) {
            err = get_str(x, mv, q, out->description);
        } else if (key_is(x, k, schema_key)) {
            err = get_raw_object(x, mv, q, out->schema);
        } else if (key_is(x, k, "strict")) {
            err = get_bool(x, mv, q, out->strict);
            if (out->strict_given) *out->strict_given = true;
        }
        if (err) return err;
    }
    if (member_str(x, v, path, "name", out->name)) return BT_EINVAL;
    subpath(q, "%s.name", path);
    if (!out->name->len) return fail(x, q, "Invalid '%s': empty string. Expected a name.", q);
    return BT_OK;
}

static enum bt_err function_def(struct dec *x, int v, const char *path, struct bt_chat_tool *t)
{
    struct named_schema o = {&t->name, &t->description, &t->parameters, &t->strict,
                             &t->strict_given};
    return named_schema(x, v, path, "parameters", &o);
}

/* `tools` and the legacy `functions`, appended in that order. */
static enum bt_err tools(struct dec *x, int tv, int fv)
{
    uint32_t nt = 0, nf = 0;
    if (!absent(x, tv)) {
        if (type_of(x, tv) != BT_JSON_ARRAY) return bad_type(x, "tools", tv, "an array");
        nt = x->d->toks[tv].size;
    }
    if (!absent(x, fv)) {
        if (type_of(x, fv) != BT_JSON_ARRAY) return bad_type(x, "functions", fv, "an array");
        nf = x->d->toks[fv].size;
    }
    if (!nt && !nf) return BT_OK;
    struct bt_chat_tool *ts = alloc(x, nt + nf, sizeof(*ts));
    if (!ts) return BT_ENOMEM;
    x->c->tools = ts;
    x->c->ntools = nt + nf;
    char q[PATH_MAX_LEN], r[PATH_MAX_LEN];
    uint32_t i = 0;
    for (int e = bt_json_first(x->d, tv); i < nt; e = (int)x->d->toks[e].next, i++) {
        subpath(q, "tools[%u]", i);
        if (type_of(x, e) != BT_JSON_OBJECT) return bad_type(x, q, e, "an object");
        int type = bt_json_get(x->d, e, "type");
        subpath(r, "%s.type", q);
        if (type < 0) return missing(x, r);
        static const char *const types[] = {"function", "custom", NULL};
        int t;
        if (get_enum(x, type, r, types, &t)) return BT_EINVAL;
        if (t == 1)
            return fail(x, r, "Invalid value for '%s': custom tools cannot be translated for this "
                              "model's provider; only 'function' tools are supported.", r);
        struct bt_json_members ms = bt_json_members_of(x->d, e);
        int k, mv;
        while (bt_json_members_next(&ms, &k, &mv)) {
            bool used;
            if (cache_member(x, k, mv, q, &ts[i].cache, &used)) return BT_EINVAL;
        }
        subpath(r, "%s.function", q);
        enum bt_err err = function_def(x, bt_json_get(x->d, e, "function"), r, &ts[i]);
        if (err) return err;
    }
    uint32_t j = 0;
    for (int e = bt_json_first(x->d, fv); j < nf; e = (int)x->d->toks[e].next, j++) {
        subpath(q, "functions[%u]", j);
        enum bt_err err = function_def(x, e, q, &ts[nt + j]);
        if (err) return err;
    }
    return BT_OK;
}

/* `tool_choice`, or the legacy `function_call` when `legacy`. */
static enum bt_err tool_choice(struct dec *x, int v, bool legacy)
{
    const char *path = legacy ? "function_call" : "tool_choice";
    struct bt_chat *c = x->c;
    if (type_of(x, v) == BT_JSON_STRING) {
        static const char *const modes[] = {"auto", "none", "required", NULL};
        static const char *const legacy_modes[] = {"auto", "none", NULL};
        int m;
        if (get_enum(x, v, path, legacy ? legacy_modes : modes, &m)) return BT_EINVAL;
        c->tool_choice = (enum bt_tool_choice)(BT_TOOL_CHOICE_AUTO + m);
        return BT_OK;
    }
    if (type_of(x, v) != BT_JSON_OBJECT) return bad_type(x, path, v, "a string or an object");
    char q[PATH_MAX_LEN];
    int fn = v;
    if (!legacy) {
        int type = bt_json_get(x->d, v, "type");
        subpath(q, "%s.type", path);
        if (type < 0) return missing(x, q);
        static const char *const types[] = {"function", "allowed_tools", "custom", NULL};
        int t;
        if (get_enum(x, type, q, types, &t)) return BT_EINVAL;
        if (t != 0)
            return fail(x, q, "Invalid value for '%s': '%s' cannot be translated for this "
                              "model's provider; use 'function' or a mode string.", q, types[t]);
        fn = bt_json_get(x->d, v, "function");
        subpath(q, "%s.function", path);
        if (fn < 0) return missing(x, q);
        if (type_of(x, fn) != BT_JSON_OBJECT) return bad_type(x, q, fn, "an object");
        subpath(q, "%s.function.name", path);
    } else {
        subpath(q, "%s.name", path);
    }
    if (need_str(x, bt_json_get(x->d, fn, "name"), q, &c->tool_choice_name)) return BT_EINVAL;
    c->tool_choice = BT_TOOL_CHOICE_NAMED;
    return BT_OK;
}

/* ---- the rest of the top level ---- */

static enum bt_err stop(struct dec *x, int v)
{
    struct bt_chat *c = x->c;
    if (type_of(x, v) == BT_JSON_STRING) {
        c->stop = alloc(x, 1, sizeof(*c->stop));
        if (!c->stop) return BT_ENOMEM;
        c->stop[0] = bt_json_str_raw(x->d, v);
        c->nstop = 1;
    } else if (type_of(x, v) == BT_JSON_ARRAY) {
        uint32_t n = x->d->toks[v].size, i = 0;
        if (!n) return BT_OK; /* no stop sequences: as if not given */
        c->stop = alloc(x, n, sizeof(*c->stop));
        if (!c->stop) return BT_ENOMEM;
        for (int e = bt_json_first(x->d, v); i < n; e = (int)x->d->toks[e].next, i++) {
            char q[PATH_MAX_LEN];
            subpath(q, "stop[%u]", i);
            if (get_str(x, e, q, &c->stop[i])) return BT_EINVAL;
        }
        c->nstop = n;
    } else {
        return bad_type(x, "stop", v, "a string or an array of strings");
    }
    c->given |= BT_GIVEN_STOP;
    return BT_OK;
}

static enum bt_err response_format(struct dec *x, int v)
{
    struct bt_chat *c = x->c;
    if (type_of(x, v) != BT_JSON_OBJECT) return bad_type(x, "response_format", v, "an object");
    int type = bt_json_get(x->d, v, "type");
    if (type < 0) return missing(x, "response_format.type");
    static const char *const types[] = {"text", "json_object", "json_schema", NULL};
    int t;
    if (get_enum(x, type, "response_format.type", types, &t)) return BT_EINVAL;
    c->format = (enum bt_format)(BT_FORMAT_TEXT + t);
    c->given |= BT_GIVEN_RESPONSE_FORMAT;
    if (c->format != BT_FORMAT_JSON_SCHEMA) return BT_OK;
    struct named_schema o = {&c->format_name, &c->format_description, &c->format_schema,
                             &c->format_strict, NULL};
    return named_schema(x, bt_json_get(x->d, v, "json_schema"), "response_format.json_schema",
                        "schema", &o);
}

static enum bt_err stream_options(struct dec *x, int v)
{
    if (type_of(x, v) != BT_JSON_OBJECT) return bad_type(x, "stream_options", v, "an object");
    int iu = bt_json_get(x->d, v, "include_usage");
    if (absent(x, iu)) return BT_OK;
    return get_bool(x, iu, "stream_options.include_usage", &x->c->include_usage);
}

/* Number-valued top-level members: where each goes and its documented range. */
enum num_kind { NUM_DOUBLE, NUM_INT, NUM_BOOL };
static const struct scalar {
    const char *key;
    uint32_t bit;
    enum num_kind kind;
    double min, max;
    size_t off;
} scalars[] = {
    {"temperature", BT_GIVEN_TEMPERATURE, NUM_DOUBLE, 0, 2, offsetof(struct bt_chat, temperature)},
    {"top_p", BT_GIVEN_TOP_P, NUM_DOUBLE, 0, 1, offsetof(struct bt_chat, top_p)},
    /* not OpenAI's, but vLLM and other compatible servers take it (-1: off) */
    {"top_k", BT_GIVEN_TOP_K, NUM_INT, -1, 1e9, offsetof(struct bt_chat, top_k)},
    {"seed", BT_GIVEN_SEED, NUM_INT, -9.3e18, 9.3e18, offsetof(struct bt_chat, seed)},
    {"n", BT_GIVEN_N, NUM_INT, 1, 128, offsetof(struct bt_chat, n)},
    {"presence_penalty", BT_GIVEN_PRESENCE_PENALTY, NUM_DOUBLE, -2, 2,
     offsetof(struct bt_chat, presence_penalty)},
    {"frequency_penalty", BT_GIVEN_FREQUENCY_PENALTY, NUM_DOUBLE, -2, 2,
     offsetof(struct bt_chat, frequency_penalty)},
    {"logprobs", BT_GIVEN_LOGPROBS, NUM_BOOL, 0, 0, offsetof(struct bt_chat, logprobs)},
    {"top_logprobs", BT_GIVEN_TOP_LOGPROBS, NUM_INT, 0, 20, offsetof(struct bt_chat, top_logprobs)},
    {"parallel_tool_calls", BT_GIVEN_PARALLEL_TOOL_CALLS, NUM_BOOL, 0, 0,
     offsetof(struct bt_chat, parallel_tool_calls)},
};

static enum bt_err scalar(struct dec *x, const struct scalar *s, int v)
{
    void *dst = (char *)x->c + s->off;
    enum bt_err err;
    if (s->kind == NUM_BOOL) err = get_bool(x, v, s->key, dst);
    else err = get_number(x, v, s->key, s->kind == NUM_INT, s->min, s->max, dst, dst);
    if (!err) x->c->given |= s->bit;
    return err;
}

/* The top-level members with their own handling. */
enum top_key {
    T_MODEL, T_MESSAGES, T_STREAM, T_STREAM_OPTIONS, T_MAX_TOKENS, T_MAX_COMPLETION_TOKENS, T_STOP,
    T_TOOLS, T_FUNCTIONS, T_TOOL_CHOICE, T_FUNCTION_CALL, T_REASONING_EFFORT, T_RESPONSE_FORMAT,
    T_METADATA, T_USER, T_PROMPT_CACHE_KEY, T_COUNT
};
static const char *const top_keys[T_COUNT] = {
    "model", "messages", "stream", "stream_options", "max_tokens", "max_completion_tokens", "stop",
    "tools", "functions", "tool_choice", "function_call", "reasoning_effort", "response_format",
    "metadata", "user", "prompt_cache_key",
};

/* Sorts each top-level member into `t` (by key), the scalar table, or extras. */
static enum bt_err sort_members(struct dec *x, int t[T_COUNT])
{
    struct bt_chat *c = x->c;
    for (int i = 0; i < T_COUNT; i++) t[i] = -1;
    c->extras = alloc(x, x->d->toks[0].size, sizeof(*c->extras));
    if (!c->extras) return BT_ENOMEM;
    struct bt_json_members ms = bt_json_members_of(x->d, 0);
    int k, v;
    while (bt_json_members_next(&ms, &k, &v)) {
        bool known = false;
        for (int i = 0; i < T_COUNT && !known; i++) {
            if (key_is(x, k, top_keys[i])) {
                t[i] = v;
                known = true;
            }
        }
        for (size_t i = 0; i < sizeof(scalars) / sizeof(scalars[0]) && !known; i++) {
            if (key_is(x, k, scalars[i].key)) {
                known = true;
                if (!absent(x, v) && scalar(x, &scalars[i], v)) return BT_EINVAL;
            }
        }
        if (!known && !absent(x, v))
            c->extras[c->nextras++] = (struct bt_chat_extra){bt_json_str_raw(x->d, k),
                                                             bt_json_raw(x->d, v)};
    }
    return BT_OK;
}

static enum bt_err max_tokens(struct dec *x, const int t[T_COUNT])
{
    /* max_completion_tokens replaces the deprecated max_tokens when both are given */
    int v = !absent(x, t[T_MAX_COMPLETION_TOKENS]) ? t[T_MAX_COMPLETION_TOKENS] : t[T_MAX_TOKENS];
    if (absent(x, v)) return BT_OK;
    const char *key = v == t[T_MAX_TOKENS] ? "max_tokens" : "max_completion_tokens";
    if (get_number(x, v, key, true, 1, 9.2e18, NULL, &x->c->max_tokens)) return BT_EINVAL;
    x->c->given |= BT_GIVEN_MAX_TOKENS;
    return BT_OK;
}

static enum bt_err top_level(struct dec *x, const int t[T_COUNT])
{
    struct bt_chat *c = x->c;
    if (need_str(x, t[T_MODEL], "model", &c->model)) return BT_EINVAL;
    if (!c->model.len) return fail(x, "model", "'model' must be a non-empty string.");
    if (t[T_MESSAGES] < 0) return missing(x, "messages");
    enum bt_err err = messages(x, t[T_MESSAGES]);
    if (err) return err;
    if (!absent(x, t[T_STREAM]) && get_bool(x, t[T_STREAM], "stream", &c->stream)) return BT_EINVAL;
    if (!absent(x, t[T_STREAM_OPTIONS]) && stream_options(x, t[T_STREAM_OPTIONS])) return BT_EINVAL;
    if (max_tokens(x, t)) return BT_EINVAL;
    if (!absent(x, t[T_STOP]) && (err = stop(x, t[T_STOP]))) return err;
    if ((err = tools(x, t[T_TOOLS], t[T_FUNCTIONS]))) return err;
    if (!absent(x, t[T_TOOL_CHOICE])) err = tool_choice(x, t[T_TOOL_CHOICE], false);
    else if (!absent(x, t[T_FUNCTION_CALL])) err = tool_choice(x, t[T_FUNCTION_CALL], true);
    if (err) return err;
    if (!absent(x, t[T_REASONING_EFFORT])) {
        static const char *const efforts[] = {"none", "minimal", "low", "medium", "high", "xhigh",
                                              "max", NULL};
        int e;
        if (get_enum(x, t[T_REASONING_EFFORT], "reasoning_effort", efforts, &e)) return BT_EINVAL;
        c->reasoning_effort = (enum bt_effort)(BT_EFFORT_NONE + e);
        c->given |= BT_GIVEN_REASONING_EFFORT;
    }
    if (!absent(x, t[T_RESPONSE_FORMAT]) && response_format(x, t[T_RESPONSE_FORMAT])) return BT_EINVAL;
    if (!absent(x, t[T_METADATA])) {
        if (get_raw_object(x, t[T_METADATA], "metadata", &c->metadata)) return BT_EINVAL;
        c->given |= BT_GIVEN_METADATA;
    }
    if (!absent(x, t[T_USER])) {
        if (get_str(x, t[T_USER], "user", &c->user)) return BT_EINVAL;
        c->given |= BT_GIVEN_USER;
    }
    if (!absent(x, t[T_PROMPT_CACHE_KEY])) {
        if (get_str(x, t[T_PROMPT_CACHE_KEY], "prompt_cache_key", &c->cache_key)) return BT_EINVAL;
        c->given |= BT_GIVEN_CACHE_KEY;
    }
    return BT_OK;
}

enum bt_err bt_openai_chat_decode(const struct bt_json_doc *doc, struct bt_arena *arena,
                                  struct bt_chat *out, struct bt_chat_error *err)
{
    memset(out, 0, sizeof(*out));
    err->message[0] = err->param[0] = 0;
    struct dec x = {doc, arena, out, err};
    if (bt_json_type(doc, 0) != BT_JSON_OBJECT)
        return fail(&x, NULL, "The request body must be a JSON object.");
    int t[T_COUNT];
    enum bt_err e = sort_members(&x, t);
    if (!e) e = top_level(&x, t);
    if (e == BT_ENOMEM) fail(&x, NULL, "out of memory");
    return e;
}
