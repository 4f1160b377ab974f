/* Anthropic Messages request -> canonical chat request (api/anthropic_msg.h).
 *
 * One walk over each object's members (the last of a duplicated key wins, as
 * with bt_json_get), arrays sized from the token counts before they are
 * filled. Messages are Anthropic's wording (`messages.1.content.0.source`
 * paths, as Anthropic's own 400s name them). */
#include "api/anthropic_msg.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#define PATH_LEN 128

struct dec {
    const struct bt_json_doc *d;
    struct bt_arena *a;
    struct bt_chat *c;
    struct bt_chat_error *e;
};

#define fail(x, param, ...) bt_chat_fail((x)->e, (param), __VA_ARGS__)

static void *alloc(struct dec *x, size_t n, size_t size)
{
    return bt_arena_calloc(x->a, n ? n : 1, size);
}

static int type_of(const struct dec *x, int v) { return bt_json_type(x->d, v); }
static bool absent(const struct dec *x, int v) { return v < 0 || type_of(x, v) == BT_JSON_NULL; }

static enum bt_err bad_type(struct dec *x, const char *path, int v, const char *want)
{
    return fail(x, path, "%s: Input should be %s, not %s", path, want, bt_json_type_name(type_of(x, v)));
}

static enum bt_err missing(struct dec *x, const char *path)
{
    return fail(x, path, "%s: Field required", path);
}

__attribute__((format(printf, 2, 3))) static void subpath(char out[PATH_LEN], const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(out, PATH_LEN, fmt, ap);
    va_end(ap);
}

static enum bt_err get_str(struct dec *x, int v, const char *path, struct bt_str *out)
{
    if (type_of(x, v) != BT_JSON_STRING) return bad_type(x, path, v, "a valid string");
    *out = bt_json_str_raw(x->d, v);
    return BT_OK;
}

static enum bt_err get_obj(struct dec *x, int v, const char *path)
{
    return type_of(x, v) == BT_JSON_OBJECT ? BT_OK : bad_type(x, path, v, "a valid dictionary");
}

static enum bt_err get_double(struct dec *x, int v, const char *path, double lo, double hi,
                              double *out)
{
    if (type_of(x, v) != BT_JSON_NUMBER || bt_json_double(x->d, v, out))
        return bad_type(x, path, v, "a valid number");
    if (*out < lo || *out > hi)
        return fail(x, path, "%s: Input should be between %g and %g", path, lo, hi);
    return BT_OK;
}

static enum bt_err get_int(struct dec *x, int v, const char *path, int64_t lo, int64_t *out)
{
    if (type_of(x, v) != BT_JSON_NUMBER || bt_json_int(x->d, v, out))
        return bad_type(x, path, v, "a valid integer");
    if (*out < lo)
        return fail(x, path, "%s: Input should be greater than or equal to %lld", path,
                    (long long)lo);
    return BT_OK;
}

static enum bt_err get_bool(struct dec *x, int v, const char *path, bool *out)
{
    if (bt_json_bool(x->d, v, out)) return bad_type(x, path, v, "a valid boolean");
    return BT_OK;
}

/* The `type` member of a block or source object: the string token, or an error. */
static enum bt_err block_type(struct dec *x, int obj, const char *path, int *t)
{
    enum bt_err err = get_obj(x, obj, path);
    if (err) return err;
    *t = bt_json_get(x->d, obj, "type");
    char p[PATH_LEN];
    subpath(p, "%s.type", path);
    if (*t < 0) return missing(x, p);
    if (type_of(x, *t) != BT_JSON_STRING) return bad_type(x, p, *t, "a valid string");
    return BT_OK;
}

/* cache_control: {type: "ephemeral", ttl?}. Anthropic's own marks are kept. */
static enum bt_err cache_mark(struct dec *x, int v, const char *path, struct bt_cache_mark *m)
{
    if (absent(x, v)) return BT_OK;
    char p[PATH_LEN];
    subpath(p, "%s.cache_control", path);
    enum bt_err err = get_obj(x, v, p);
    if (err) return err;
    int t = bt_json_get(x->d, v, "type");
    if (!bt_json_str_eq(x->d, t, "ephemeral"))
        return fail(x, p, "%s.type: Input should be 'ephemeral'", p);
    m->set = true;
    int ttl = bt_json_get(x->d, v, "ttl");
    if (!absent(x, ttl)) {
        subpath(p, "%s.cache_control.ttl", path);
        return get_str(x, ttl, p, &m->ttl);
    }
    return BT_OK;
}

/* ---- content blocks ---- */

enum where { IN_SYSTEM, IN_USER, IN_ASSISTANT, IN_TOOL_RESULT };

static enum bt_err image_block(struct dec *x, int blk, const char *path, struct bt_chat_part *p)
{
    char sp[PATH_LEN], q[PATH_LEN];
    subpath(sp, "%s.source", path);
    int src = bt_json_get(x->d, blk, "source");
    if (src < 0) return missing(x, sp);
    int t;
    enum bt_err err = block_type(x, src, sp, &t);
    if (err) return err;
    p->type = BT_PART_IMAGE;
    if (bt_json_str_eq(x->d, t, "base64")) {
        subpath(q, "%s.media_type", sp);
        int mt = bt_json_get(x->d, src, "media_type");
        if (mt < 0) return missing(x, q);
        if ((err = get_str(x, mt, q, &p->image.media_type))) return err;
        if (!bt_json_str_eq(x->d, mt, "image/jpeg") && !bt_json_str_eq(x->d, mt, "image/png") &&
            !bt_json_str_eq(x->d, mt, "image/gif") && !bt_json_str_eq(x->d, mt, "image/webp"))
            return fail(x, q,
                        "%s: Input should be 'image/jpeg', 'image/png', 'image/gif' or "
                        "'image/webp'",
                        q);
        subpath(q, "%s.data", sp);
        int data = bt_json_get(x->d, src, "data");
        if (data < 0) return missing(x, q);
        return get_str(x, data, q, &p->image.data);
    }
    if (bt_json_str_eq(x->d, t, "url")) {
        subpath(q, "%s.url", sp);
        int url = bt_json_get(x->d, src, "url");
        if (url < 0) return missing(x, q);
        return get_str(x, url, q, &p->image.url);
    }
    subpath(q, "%s.type", sp);
    return fail(x, q,
                "%s: image source type '%.*s' is not supported by baton's translation (use "
                "'base64' or 'url')",
                q, BT_STR_FMT(bt_json_str_raw(x->d, t)));
}

static enum bt_err document_block(struct dec *x, int blk, const char *path, struct bt_chat_part *p)
{
    char sp[PATH_LEN], q[PATH_LEN];
    subpath(sp, "%s.source", path);
    int src = bt_json_get(x->d, blk, "source");
    if (src < 0) return missing(x, sp);
    int t;
    enum bt_err err = block_type(x, src, sp, &t);
    if (err) return err;
    int data = bt_json_get(x->d, src, "data");
    subpath(q, "%s.data", sp);
    if (bt_json_str_eq(x->d, t, "text")) {
        /* A plain-text document is text for the model. */
        if (data < 0) return missing(x, q);
        p->type = BT_PART_TEXT;
        return get_str(x, data, q, &p->text);
    }
    if (bt_json_str_eq(x->d, t, "base64")) {
        if (data < 0) return missing(x, q);
        p->type = BT_PART_FILE;
        if ((err = get_str(x, data, q, &p->file.data))) return err;
        int mt = bt_json_get(x->d, src, "media_type");
        subpath(q, "%s.media_type", sp);
        if (mt < 0) return missing(x, q);
        if ((err = get_str(x, mt, q, &p->file.media_type))) return err;
        int title = bt_json_get(x->d, blk, "title");
        if (!absent(x, title)) {
            subpath(q, "%s.title", path);
            if ((err = get_str(x, title, q, &p->file.filename))) return err;
        }
        return BT_OK;
    }
    subpath(q, "%s.type", sp);
    return fail(x, q,
                "%s: document source type '%.*s' has no counterpart in baton's translation "
                "(use 'base64' or 'text')",
                q, BT_STR_FMT(bt_json_str_raw(x->d, t)));
}

static enum bt_err blocks(struct dec *x, int arr, const char *path, enum where w,
                          struct bt_chat_part **out, uint32_t *n);

static enum bt_err tool_result_block(struct dec *x, int blk, const char *path,
                                     struct bt_chat_part *p)
{
    char q[PATH_LEN];
    p->type = BT_PART_TOOL_RESULT;
    int id = bt_json_get(x->d, blk, "tool_use_id");
    subpath(q, "%s.tool_use_id", path);
    if (id < 0) return missing(x, q);
    enum bt_err err = get_str(x, id, q, &p->tool_result.call_id);
    if (err) return err;
    int ie = bt_json_get(x->d, blk, "is_error");
    if (!absent(x, ie)) {
        subpath(q, "%s.is_error", path);
        if ((err = get_bool(x, ie, q, &p->tool_result.is_error))) return err;
    }
    int content = bt_json_get(x->d, blk, "content");
    subpath(q, "%s.content", path);
    if (absent(x, content)) return BT_OK;
    if (type_of(x, content) == BT_JSON_STRING) {
        p->tool_result.parts = alloc(x, 1, sizeof(struct bt_chat_part));
        if (!p->tool_result.parts) return BT_ENOMEM;
        p->tool_result.parts[0].type = BT_PART_TEXT;
        p->tool_result.parts[0].text = bt_json_str_raw(x->d, content);
        p->tool_result.nparts = 1;
        return BT_OK;
    }
    if (type_of(x, content) != BT_JSON_ARRAY) return bad_type(x, q, content, "a valid list");
    return blocks(x, content, q, IN_TOOL_RESULT, &p->tool_result.parts, &p->tool_result.nparts);
}

/* One content block at `blk` into `p`. */
static enum bt_err block(struct dec *x, int blk, const char *path, enum where w,
                         struct bt_chat_part *p)
{
    int t;
    enum bt_err err = block_type(x, blk, path, &t);
    if (err) return err;
    char q[PATH_LEN];
    struct bt_str type = bt_json_str_raw(x->d, t);
    bool user = w == IN_USER, assistant = w == IN_ASSISTANT;
    if (bt_str_eq_c(type, "text")) {
        p->type = BT_PART_TEXT;
        int text = bt_json_get(x->d, blk, "text");
        subpath(q, "%s.text", path);
        if (text < 0) return missing(x, q);
        if ((err = get_str(x, text, q, &p->text))) return err;
    } else if (bt_str_eq_c(type, "image") && (user || w == IN_TOOL_RESULT)) {
        if ((err = image_block(x, blk, path, p))) return err;
    } else if (bt_str_eq_c(type, "document") && (user || w == IN_TOOL_RESULT)) {
        if ((err = document_block(x, blk, path, p))) return err;
    } else if (bt_str_eq_c(type, "tool_use") && assistant) {
        p->type = BT_PART_TOOL_CALL;
        int id = bt_json_get(x->d, blk, "id"), name = bt_json_get(x->d, blk, "name");
        int input = bt_json_get(x->d, blk, "input");
        subpath(q, "%s.id", path);
        if (id < 0) return missing(x, q);
        if ((err = get_str(x, id, q, &p->tool_call.id))) return err;
        subpath(q, "%s.name", path);
        if (name < 0) return missing(x, q);
        if ((err = get_str(x, name, q, &p->tool_call.name))) return err;
        subpath(q, "%s.input", path);
        if (input < 0) return missing(x, q);
        if ((err = get_obj(x, input, q))) return err;
        p->tool_call.args = bt_json_raw(x->d, input);
        p->tool_call.args_escaped = false;
    } else if (bt_str_eq_c(type, "tool_result") && user) {
        if ((err = tool_result_block(x, blk, path, p))) return err;
    } else if (bt_str_eq_c(type, "thinking") && assistant) {
        p->type = BT_PART_THINKING;
        int th = bt_json_get(x->d, blk, "thinking"), sig = bt_json_get(x->d, blk, "signature");
        subpath(q, "%s.thinking", path);
        if (th < 0) return missing(x, q);
        if ((err = get_str(x, th, q, &p->thinking.text))) return err;
        subpath(q, "%s.signature", path);
        if (sig < 0) return missing(x, q);
        if ((err = get_str(x, sig, q, &p->thinking.signature))) return err;
    } else if (bt_str_eq_c(type, "redacted_thinking") && assistant) {
        p->type = BT_PART_REDACTED_THINKING;
        int data = bt_json_get(x->d, blk, "data");
        subpath(q, "%s.data", path);
        if (data < 0) return missing(x, q);
        if ((err = get_str(x, data, q, &p->thinking.text))) return err;
    } else {
        subpath(q, "%s.type", path);
        static const char *const where_name[] = {"the system prompt", "a user message",
                                                 "an assistant message", "a tool result"};
        return fail(x, q,
                    "%s: a '%.*s' block is not accepted in %s by baton (it has no canonical "
                    "form or is not allowed there)",
                    q, BT_STR_FMT(type), where_name[w]);
    }
    return cache_mark(x, bt_json_get(x->d, blk, "cache_control"), path, &p->cache);
}

static enum bt_err blocks(struct dec *x, int arr, const char *path, enum where w,
                          struct bt_chat_part **out, uint32_t *n)
{
    uint32_t size = x->d->toks[arr].size;
    struct bt_chat_part *parts = alloc(x, size, sizeof(*parts));
    if (!parts) return BT_ENOMEM;
    uint32_t i = 0;
    char q[PATH_LEN];
    for (int b = bt_json_first(x->d, arr); b >= 0 && i < size; b = (int)x->d->toks[b].next, i++) {
        subpath(q, "%s.%u", path, i);
        enum bt_err err = block(x, b, q, w, &parts[i]);
        if (err) return err;
    }
    *out = parts;
    *n = i;
    return BT_OK;
}

/* ---- top level ---- */

static enum bt_err system_prompt(struct dec *x, int v)
{
    struct bt_chat *c = x->c;
    if (type_of(x, v) == BT_JSON_STRING) {
        c->system = alloc(x, 1, sizeof(*c->system));
        if (!c->system) return BT_ENOMEM;
        c->system[0].type = BT_PART_TEXT;
        c->system[0].text = bt_json_str_raw(x->d, v);
        c->nsystem = 1;
        return BT_OK;
    }
    if (type_of(x, v) != BT_JSON_ARRAY) return bad_type(x, "system", v, "a valid string or list");
    return blocks(x, v, "system", IN_SYSTEM, &c->system, &c->nsystem);
}

static enum bt_err messages(struct dec *x, int v)
{
    struct bt_chat *c = x->c;
    if (type_of(x, v) != BT_JSON_ARRAY) return bad_type(x, "messages", v, "a valid list");
    uint32_t size = x->d->toks[v].size;
    c->msgs = alloc(x, size, sizeof(*c->msgs));
    if (!c->msgs) return BT_ENOMEM;
    uint32_t i = 0;
    char path[PATH_LEN], q[PATH_LEN];
    for (int m = bt_json_first(x->d, v); m >= 0 && i < size; m = (int)x->d->toks[m].next, i++) {
        struct bt_chat_msg *msg = &c->msgs[i];
        subpath(path, "messages.%u", i);
        enum bt_err err = get_obj(x, m, path);
        if (err) return err;
        int role = bt_json_get(x->d, m, "role"), content = bt_json_get(x->d, m, "content");
        subpath(q, "%s.role", path);
        if (role < 0) return missing(x, q);
        if (bt_json_str_eq(x->d, role, "user")) msg->role = BT_ROLE_USER;
        else if (bt_json_str_eq(x->d, role, "assistant")) msg->role = BT_ROLE_ASSISTANT;
        else return fail(x, q, "%s: Input should be 'user' or 'assistant'", q);
        subpath(q, "%s.content", path);
        if (content < 0) return missing(x, q);
        if (type_of(x, content) == BT_JSON_STRING) {
            msg->parts = alloc(x, 1, sizeof(*msg->parts));
            if (!msg->parts) return BT_ENOMEM;
            msg->parts[0].type = BT_PART_TEXT;
            msg->parts[0].text = bt_json_str_raw(x->d, content);
            msg->nparts = 1;
            continue;
        }
        if (type_of(x, content) != BT_JSON_ARRAY)
            return bad_type(x, q, content, "a valid string or list");
        err = blocks(x, content, q, msg->role == BT_ROLE_USER ? IN_USER : IN_ASSISTANT,
                     &msg->parts, &msg->nparts);
        if (err) return err;
    }
    c->nmsgs = i;
    return BT_OK;
}

static enum bt_err tools(struct dec *x, int v)
{
    struct bt_chat *c = x->c;
    if (type_of(x, v) != BT_JSON_ARRAY) return bad_type(x, "tools", v, "a valid list");
    uint32_t size = x->d->toks[v].size;
    c->tools = alloc(x, size, sizeof(*c->tools));
    if (!c->tools) return BT_ENOMEM;
    uint32_t i = 0;
    char path[PATH_LEN], q[PATH_LEN];
    for (int t = bt_json_first(x->d, v); t >= 0 && i < size; t = (int)x->d->toks[t].next, i++) {
        struct bt_chat_tool *tool = &c->tools[i];
        subpath(path, "tools.%u", i);
        enum bt_err err = get_obj(x, t, path);
        if (err) return err;
        int type = bt_json_get(x->d, t, "type");
        if (!absent(x, type) && !bt_json_str_eq(x->d, type, "custom")) {
            subpath(q, "%s.type", path);
            if (type_of(x, type) != BT_JSON_STRING) return bad_type(x, q, type, "a valid string");
            return fail(x, q,
                        "%s: the server tool '%.*s' runs only on Anthropic's own servers; baton "
                        "serves this model through a provider that cannot run it",
                        q, BT_STR_FMT(bt_json_str_raw(x->d, type)));
        }
        int name = bt_json_get(x->d, t, "name"), desc = bt_json_get(x->d, t, "description");
        int schema = bt_json_get(x->d, t, "input_schema");
        subpath(q, "%s.name", path);
        if (name < 0) return missing(x, q);
        if ((err = get_str(x, name, q, &tool->name))) return err;
        if (!absent(x, desc)) {
            subpath(q, "%s.description", path);
            if ((err = get_str(x, desc, q, &tool->description))) return err;
        }
        subpath(q, "%s.input_schema", path);
        if (schema < 0) return missing(x, q);
        if ((err = get_obj(x, schema, q))) return err;
        tool->parameters = bt_json_raw(x->d, schema);
        int strict = bt_json_get(x->d, t, "strict");
        if (!absent(x, strict)) {
            subpath(q, "%s.strict", path);
            if ((err = get_bool(x, strict, q, &tool->strict))) return err;
            tool->strict_given = true;
        }
        if ((err = cache_mark(x, bt_json_get(x->d, t, "cache_control"), path, &tool->cache)))
            return err;
    }
    c->ntools = i;
    return BT_OK;
}

static enum bt_err tool_choice(struct dec *x, int v)
{
    struct bt_chat *c = x->c;
    int t;
    enum bt_err err = block_type(x, v, "tool_choice", &t);
    if (err) return err;
    if (bt_json_str_eq(x->d, t, "auto")) c->tool_choice = BT_TOOL_CHOICE_AUTO;
    else if (bt_json_str_eq(x->d, t, "any")) c->tool_choice = BT_TOOL_CHOICE_REQUIRED;
    else if (bt_json_str_eq(x->d, t, "none")) c->tool_choice = BT_TOOL_CHOICE_NONE;
    else if (bt_json_str_eq(x->d, t, "tool")) {
        c->tool_choice = BT_TOOL_CHOICE_NAMED;
        int name = bt_json_get(x->d, v, "name");
        if (name < 0) return missing(x, "tool_choice.name");
        if ((err = get_str(x, name, "tool_choice.name", &c->tool_choice_name))) return err;
    } else {
        return fail(x, "tool_choice.type",
                    "tool_choice.type: Input should be 'auto', 'any', 'tool' or 'none'");
    }
    int dp = bt_json_get(x->d, v, "disable_parallel_tool_use");
    if (!absent(x, dp)) {
        bool off;
        if ((err = get_bool(x, dp, "tool_choice.disable_parallel_tool_use", &off))) return err;
        c->parallel_tool_calls = !off;
        c->given |= BT_GIVEN_PARALLEL_TOOL_CALLS;
    }
    return BT_OK;
}

static enum bt_err thinking(struct dec *x, int v)
{
    struct bt_chat *c = x->c;
    int t;
    enum bt_err err = block_type(x, v, "thinking", &t);
    if (err) return err;
    if (bt_json_str_eq(x->d, t, "disabled")) return BT_OK;
    if (!bt_json_str_eq(x->d, t, "enabled"))
        return fail(x, "thinking.type", "thinking.type: Input should be 'enabled' or 'disabled'");
    int b = bt_json_get(x->d, v, "budget_tokens");
    if (b < 0) return missing(x, "thinking.budget_tokens");
    if ((err = get_int(x, b, "thinking.budget_tokens", 1024, &c->reasoning_budget))) return err;
    c->given |= BT_GIVEN_REASONING_BUDGET;
    return BT_OK;
}

static enum bt_err stop_sequences(struct dec *x, int v)
{
    struct bt_chat *c = x->c;
    if (type_of(x, v) != BT_JSON_ARRAY) return bad_type(x, "stop_sequences", v, "a valid list");
    uint32_t size = x->d->toks[v].size;
    if (!size) return BT_OK;
    c->stop = alloc(x, size, sizeof(*c->stop));
    if (!c->stop) return BT_ENOMEM;
    uint32_t i = 0;
    char q[PATH_LEN];
    for (int s = bt_json_first(x->d, v); s >= 0 && i < size; s = (int)x->d->toks[s].next, i++) {
        subpath(q, "stop_sequences.%u", i);
        enum bt_err err = get_str(x, s, q, &c->stop[i]);
        if (err) return err;
    }
    c->nstop = i;
    c->given |= BT_GIVEN_STOP;
    return BT_OK;
}

static enum bt_err metadata(struct dec *x, int v)
{
    struct bt_chat *c = x->c;
    enum bt_err err = get_obj(x, v, "metadata");
    if (err) return err;
    c->metadata = bt_json_raw(x->d, v);
    int u = bt_json_get(x->d, v, "user_id");
    if (!absent(x, u)) {
        if ((err = get_str(x, u, "metadata.user_id", &c->user))) return err;
        c->given |= BT_GIVEN_USER;
    }
    return BT_OK;
}

enum bt_err bt_anthropic_msg_decode(const struct bt_json_doc *doc, struct bt_arena *arena,
                                    bool count_only, struct bt_chat *out,
                                    struct bt_chat_error *e)
{
    memset(out, 0, sizeof(*out));
    memset(e, 0, sizeof(*e));
    struct dec x = {doc, arena, out, e};
    if (bt_json_type(doc, 0) != BT_JSON_OBJECT)
        return fail(&x, NULL, "The request body must be a JSON object.");
    uint32_t nmembers = doc->toks[0].size;
    out->extras = alloc(&x, nmembers, sizeof(*out->extras));
    if (!out->extras) return BT_ENOMEM;
    int model = -1, msgs = -1;
    struct bt_json_members it = bt_json_members_of(doc, 0);
    int k, v;
    enum bt_err err = BT_OK;
    while (!err && bt_json_members_next(&it, &k, &v)) {
        struct bt_str key = bt_json_str_raw(doc, k);
        if (bt_str_eq_c(key, "model")) model = v;
        else if (bt_str_eq_c(key, "messages")) msgs = v;
        else if (absent(&x, v)) continue;
        else if (bt_str_eq_c(key, "system")) err = system_prompt(&x, v);
        else if (bt_str_eq_c(key, "max_tokens")) {
            if (!(err = get_int(&x, v, "max_tokens", 1, &out->max_tokens)))
                out->given |= BT_GIVEN_MAX_TOKENS;
        } else if (bt_str_eq_c(key, "temperature")) {
            if (!(err = get_double(&x, v, "temperature", 0, 1, &out->temperature)))
                out->given |= BT_GIVEN_TEMPERATURE;
        } else if (bt_str_eq_c(key, "top_p")) {
            if (!(err = get_double(&x, v, "top_p", 0, 1, &out->top_p)))
                out->given |= BT_GIVEN_TOP_P;
        } else if (bt_str_eq_c(key, "top_k")) {
            if (!(err = get_int(&x, v, "top_k", 0, &out->top_k))) out->given |= BT_GIVEN_TOP_K;
        } else if (bt_str_eq_c(key, "stream")) err = get_bool(&x, v, "stream", &out->stream);
        else if (bt_str_eq_c(key, "stop_sequences")) err = stop_sequences(&x, v);
        else if (bt_str_eq_c(key, "metadata")) err = metadata(&x, v);
        else if (bt_str_eq_c(key, "tools")) err = tools(&x, v);
        else if (bt_str_eq_c(key, "tool_choice")) err = tool_choice(&x, v);
        else if (bt_str_eq_c(key, "thinking")) err = thinking(&x, v);
        else out->extras[out->nextras++] = (struct bt_chat_extra){key, bt_json_raw(doc, v)};
    }
    if (err) return err;
    if (model < 0) return missing(&x, "model");
    if ((err = get_str(&x, model, "model", &out->model))) return err;
    if (msgs < 0) return missing(&x, "messages");
    if ((err = messages(&x, msgs))) return err;
    if (!count_only && !(out->given & BT_GIVEN_MAX_TOKENS)) return missing(&x, "max_tokens");
    if (!count_only && (out->given & BT_GIVEN_REASONING_BUDGET) &&
        out->reasoning_budget >= out->max_tokens)
        return fail(&x, "thinking.budget_tokens",
                    "`max_tokens` must be greater than `thinking.budget_tokens`");
    if (out->tool_choice == BT_TOOL_CHOICE_NAMED) {
        bool found = false;
        for (uint32_t i = 0; i < out->ntools && !found; i++)
            found = bt_str_eq(out->tools[i].name, out->tool_choice_name);
        if (!found)
            return fail(&x, "tool_choice.name", "tool_choice.name: tool '%.*s' is not in 'tools'",
                        BT_STR_FMT(out->tool_choice_name));
    }
    return BT_OK;
}
