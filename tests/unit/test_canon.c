/* The canonical model and its OpenAI codecs: finish reasons, outcomes, usage
 * folding; the OpenAI chat request decoder; reply and stream decoding into
 * events; the OpenAI stream encoder and reply aggregator, checked against
 * cJSON (the oracle) and the spec's required fields. */
#include "harness.h"

#include <cjson/cJSON.h>
#include <stdlib.h>

#include "api/openai_chat.h"
#include "api/openai_encode.h"
#include "http/sse.h"
#include "provider/openai_reply.h"
#include "provider/openai.h"
#include "canon/chat.h"
#include "canon/event.h"
#include "core/outcome.h"

/* JSON written with ' for " (so fixtures read without backslashes); malloc'd. */
static char *jq(const char *s)
{
    char *o = strdup(s);
    for (char *p = o; *p; p++)
        if (*p == '\'') *p = '"';
    return o;
}

/* With BATON_CANON_DUMP=DIR, every body the encoders write (and every request
 * fixture) is also written to DIR/<test>-<n>.<ext>, for
 * tests/integration/canon_schema.test.mjs to validate against OpenAI's spec. */
static void dump(const char *ext, const char *data, size_t len)
{
    static int n;
    const char *dir = getenv("BATON_CANON_DUMP");
    if (!dir || !data) return;
    char path[512];
    snprintf(path, sizeof(path), "%s/%s-%d.%s", dir, h_cur_name, n++, ext);
    FILE *f = fopen(path, "w");
    if (!f) return;
    fwrite(data, 1, len, f);
    fclose(f);
}

/* A decoded request and what it lives on. */
struct req {
    char *body;
    struct bt_arena arena;
    struct bt_json_doc doc;
    struct bt_chat chat;
    struct bt_chat_error err;
};

/* Decodes `json` (with ' for "); the caller frees with req_free. */
static enum bt_err req_decode(struct req *r, const char *json)
{
    memset(r, 0, sizeof(*r));
    r->body = jq(json);
    bt_arena_init(&r->arena, 4096, 1u << 20);
    if (bt_json_parse(&r->doc, r->body, strlen(r->body), &r->arena, NULL, NULL)) return BT_EPARSE;
    enum bt_err err = bt_openai_chat_decode(&r->doc, &r->arena, &r->chat, &r->err);
    if (!err) dump("request.json", r->body, strlen(r->body));
    return err;
}

static void req_free(struct req *r)
{
    bt_arena_free(&r->arena);
    free(r->body);
}


/* ---------------------------------------------------------------------------
 * Streams: fixtures are OpenAI chunks as a provider sends them (' for "). */

#define H "{'id':'chatcmpl-1','object':'chat.completion.chunk','created':1700000000,'model':'gpt-x',"
#define C0(delta) H "'choices':[{'index':0,'delta':" delta ",'logprobs':null,'finish_reason':null}]}"
#define FIN(i, why) H "'choices':[{'index':" #i ",'delta':{},'logprobs':null,'finish_reason':'" why "'}]}"
#define USAGE_CHUNK H "'choices':[],'usage':{'prompt_tokens':10,'completion_tokens':20,'total_tokens':30," \
    "'prompt_tokens_details':{'cached_tokens':4,'audio_tokens':0},'completion_tokens_details':{'reasoning_tokens':12}}}"

static const char *const fx_text[] = {
    C0("{'role':'assistant','content':'','reasoning_content':''}"),
    C0("{'reasoning_content':'Let me think'}"),
    C0("{'reasoning_content':' about \\'it\\'.'}"),
    C0("{'content':'Hello'}"),
    C0("{'content':', w\\u00f6rld \\ud83d\\ude00\\n'}"),
    FIN(0, "stop"),
    USAGE_CHUNK,
    "[DONE]", NULL};

static const char *const fx_tools[] = {
    C0("{'role':'assistant','content':null}"),
    C0("{'tool_calls':[{'index':0,'id':'call_a','type':'function','function':{'name':'get_weather','arguments':''}}]}"),
    C0("{'tool_calls':[{'index':0,'function':{'arguments':'{\\'ci'}}]}"),
    C0("{'tool_calls':[{'index':1,'id':'call_b','type':'function','function':{'name':'get_time','arguments':'{\\'tz\\':'}}]}"),
    C0("{'tool_calls':[{'index':0,'function':{'arguments':'ty\\':\\'Paris\\'}'}},{'index':1,'function':{'arguments':'\\'CET\\'}'}}]}"),
    C0("{'tool_calls':[{'index':2,'id':'call_c','type':'function','function':{'name':'noop','arguments':'{}'}}]}"),
    FIN(0, "tool_calls"),
    USAGE_CHUNK,
    "[DONE]", NULL};

static const char *const fx_refusal[] = {
    C0("{'role':'assistant','content':null,'refusal':null}"),
    C0("{'refusal':'I am sorry, '}"),
    C0("{'refusal':'I cannot help with that.'}"),
    FIN(0, "stop"),
    USAGE_CHUNK,
    "[DONE]", NULL};

static const char *const fx_error[] = {
    C0("{'role':'assistant','content':''}"),
    C0("{'content':'Partial'}"),
    "{'error':{'message':'The server had an error while processing your request.','type':'server_error','param':null,'code':null}}",
    NULL};

static const char *const fx_two_choices[] = {
    C0("{'role':'assistant','content':''}"),
    H "'choices':[{'index':1,'delta':{'role':'assistant','content':'B1'},'finish_reason':null}]}",
    C0("{'content':'A1'}"),
    H "'choices':[{'index':1,'delta':{'content':'B2'},'finish_reason':'length'}]}",
    FIN(0, "stop"),
    USAGE_CHUNK,
    "[DONE]", NULL};

/* A provider that never says why it stopped: the encoder finishes the choice. */
static const char *const fx_no_finish[] = {
    C0("{'role':'assistant','content':'ok'}"),
    "[DONE]", NULL};

/* A provider that repeats role, id and finish_reason (some compatible servers do). */
static const char *const fx_repeats[] = {
    C0("{'role':'assistant','content':'a'}"),
    C0("{'role':'assistant','content':'b','tool_calls':[{'index':0,'id':'call_x','type':'function','function':{'name':'f','arguments':'{'}}]}"),
    C0("{'role':'assistant','tool_calls':[{'index':0,'id':'call_x','function':{'arguments':'}'}}]}"),
    FIN(0, "tool_calls"),
    H "'choices':[{'index':0,'delta':{},'finish_reason':'tool_calls'}],'usage':{'prompt_tokens':1,'completion_tokens':2,'total_tokens':3}}",
    "[DONE]", NULL};

/* Joins fixture chunks into an SSE body (malloc'd). */
static char *sse_of(const char *const *chunks)
{
    struct bt_buf b;
    bt_buf_init(&b, 1u << 20);
    for (size_t i = 0; chunks[i]; i++) {
        char *j = jq(chunks[i]);
        bt_buf_append_c(&b, "data: ");
        bt_buf_append_c(&b, j);
        bt_buf_append_c(&b, "\n\n");
        free(j);
    }
    bt_buf_cstr(&b);
    size_t n;
    return bt_buf_steal(&b, &n);
}

/* ---- the pipeline: SSE -> decoder -> events -> OpenAI stream encoder ---- */

struct pipe {
    bool legacy;                    /* bt_openai_decode_chunk rather than bt_openai_chunk_events */
    struct bt_openai_stream enc;
    struct bt_openai_agg agg;       /* fed the same events */
    struct bt_buf out;
    struct bt_arena scratch;
    enum bt_err first_err;          /* first non-OK from the encoder */
    int events;
};

static void pipe_event(void *ud, const struct bt_event *ev)
{
    struct pipe *p = ud;
    p->events++;
    enum bt_err err = bt_openai_stream_event(&p->enc, ev, &p->out);
    if (err && !p->first_err) p->first_err = err;
    bt_openai_agg_event(&p->agg, ev);
}

static int pipe_sse(void *ud, const struct bt_sse_event *sev)
{
    struct pipe *p = ud;
    if (p->legacy) {
        /* what exec does around the fast path's decoder */
        if (bt_str_eq_c(sev->data, "[DONE]")) {
            struct bt_event ev = {.type = BT_EV_DONE};
            pipe_event(p, &ev);
        } else {
            struct bt_json_doc doc;
            if (bt_json_parse(&doc, sev->data.p, sev->data.len, &p->scratch, NULL, NULL) == BT_OK)
                bt_openai_decode_chunk(&doc, pipe_event, p);
        }
    } else {
        (void)bt_openai_stream_data(sev->data, &p->scratch, pipe_event, p);
    }
    bt_arena_reset(&p->scratch);
    return 0;
}

static const struct bt_openai_enc_opts test_opts = {
    .id = {"chatcmpl-baton", 14}, .model = {"gpt-x", 5}, .created = 1700000001};

static void pipe_init(struct pipe *p, bool legacy, bool include_usage, size_t out_max)
{
    memset(p, 0, sizeof(*p));
    p->legacy = legacy;
    struct bt_openai_enc_opts o = test_opts;
    o.include_usage = include_usage;
    bt_openai_stream_init(&p->enc, &o);
    bt_openai_agg_init(&p->agg, &o, 1u << 20);
    bt_buf_init(&p->out, out_max);
    bt_arena_init(&p->scratch, 4096, 1u << 20);
}

static void pipe_free(struct pipe *p)
{
    dump("sse", p->out.p, p->out.len);
    bt_buf_free(&p->out);
    bt_arena_free(&p->scratch);
    bt_openai_agg_free(&p->agg);
}

/* Runs the SSE body through a pipe; the output stays in p->out (NUL-terminated). */
static void pipe_run(struct pipe *p, const char *sse)
{
    struct bt_sse parser;
    bt_sse_init(&parser, 1u << 20, pipe_sse, p);
    CHECK_INT(bt_sse_feed(&parser, sse, strlen(sse)), BT_OK);
    bt_sse_free(&parser);
    bt_buf_cstr(&p->out);
}

/* ---- an OpenAI client, as strict as the SDK's stream helper ---- */

/* What a client makes of a stream or a reply, in one shape so the two can be
 * compared: {"id","model","choices":[{"content","reasoning_content","refusal",
 * "tool_calls":[{"id","name","arguments"}],"finish_reason"}],"usage","error","done"}.
 * Empty strings are null (a stream's first `content: ""` says nothing). */
struct client {
    cJSON *sum;
    bool strict;        /* check the rules strict clients and the spec impose */
    bool include_usage; /* strict: `usage` on every chunk */
    int chunks;
    int violations;
    char first_violation[300];
};

#define VIOLATION(cl, ...)                                                                 \
    do {                                                                                   \
        if (!(cl)->violations++)                                                           \
            snprintf((cl)->first_violation, sizeof((cl)->first_violation), __VA_ARGS__);   \
    } while (0)

static void client_init(struct client *cl, bool strict, bool include_usage)
{
    memset(cl, 0, sizeof(*cl));
    cl->strict = strict;
    cl->include_usage = include_usage;
    cl->sum = cJSON_CreateObject();
    cJSON_AddArrayToObject(cl->sum, "choices");
    cJSON_AddNullToObject(cl->sum, "usage");
    cJSON_AddNullToObject(cl->sum, "error");
    cJSON_AddFalseToObject(cl->sum, "done");
}

static cJSON *sum_choice(struct client *cl, int index)
{
    cJSON *choices = cJSON_GetObjectItem(cl->sum, "choices");
    while (cJSON_GetArraySize(choices) <= index) {
        cJSON *c = cJSON_CreateObject();
        cJSON_AddNullToObject(c, "content");
        cJSON_AddNullToObject(c, "reasoning_content");
        cJSON_AddNullToObject(c, "refusal");
        cJSON_AddArrayToObject(c, "tool_calls");
        cJSON_AddNullToObject(c, "finish_reason");
        cJSON_AddFalseToObject(c, "began");
        cJSON_AddItemToArray(choices, c);
    }
    return cJSON_GetArrayItem(choices, index);
}

/* Appends a string member's value to `key` of `obj` (null stays null for ""). */
static void sum_append(cJSON *obj, const char *key, const cJSON *v)
{
    if (!cJSON_IsString(v) || !v->valuestring[0]) return;
    cJSON *cur = cJSON_GetObjectItem(obj, key);
    size_t a = cJSON_IsString(cur) ? strlen(cur->valuestring) : 0, b = strlen(v->valuestring);
    char *s = malloc(a + b + 1);
    if (a) memcpy(s, cur->valuestring, a);
    memcpy(s + a, v->valuestring, b + 1);
    cJSON_ReplaceItemInObject(obj, key, cJSON_CreateString(s));
    free(s);
}

static void sum_set(cJSON *obj, const char *key, cJSON *v)
{
    cJSON_ReplaceItemInObject(obj, key, v);
}

/* The usage members compared (details default to 0). */
static cJSON *usage_summary(const cJSON *u)
{
    cJSON *s = cJSON_CreateObject();
    static const char *const keys[] = {"prompt_tokens", "completion_tokens", "total_tokens"};
    for (int i = 0; i < 3; i++) {
        const cJSON *v = cJSON_GetObjectItem(u, keys[i]);
        cJSON_AddNumberToObject(s, keys[i], cJSON_IsNumber(v) ? v->valuedouble : -1);
    }
    const cJSON *c = cJSON_GetObjectItem(cJSON_GetObjectItem(u, "prompt_tokens_details"), "cached_tokens");
    const cJSON *r =
        cJSON_GetObjectItem(cJSON_GetObjectItem(u, "completion_tokens_details"), "reasoning_tokens");
    cJSON_AddNumberToObject(s, "cached_tokens", cJSON_IsNumber(c) ? c->valuedouble : 0);
    cJSON_AddNumberToObject(s, "reasoning_tokens", cJSON_IsNumber(r) ? r->valuedouble : 0);
    return s;
}

static bool in_enum(const cJSON *v, const char *const *names)
{
    if (!cJSON_IsString(v)) return false;
    for (int i = 0; names[i]; i++)
        if (strcmp(v->valuestring, names[i]) == 0) return true;
    return false;
}

static const char *const finish_enum[] = {"stop", "length", "tool_calls", "content_filter",
                                          "function_call", NULL};

/* The spec's required members of an OpenAI error object. */
static void check_error_shape(struct client *cl, const cJSON *e)
{
    if (!cJSON_IsString(cJSON_GetObjectItem(e, "message")) ||
        !cJSON_IsString(cJSON_GetObjectItem(e, "type")) || !cJSON_HasObjectItem(e, "param") ||
        !cJSON_HasObjectItem(e, "code"))
        VIOLATION(cl, "error object without message, type, param or code");
}

/* The head every chunk and reply shares: id, object, created, model. */
static void check_head(struct client *cl, const cJSON *o, const char *object)
{
    const cJSON *id = cJSON_GetObjectItem(o, "id"), *model = cJSON_GetObjectItem(o, "model");
    if (!cJSON_IsString(id) || !cJSON_IsString(model) ||
        !cJSON_IsNumber(cJSON_GetObjectItem(o, "created")) ||
        !in_enum(cJSON_GetObjectItem(o, "object"), (const char *const[]){object, NULL}))
        VIOLATION(cl, "head without id, object '%s', created or model", object);
    if (!cJSON_IsArray(cJSON_GetObjectItem(o, "choices")))
        VIOLATION(cl, "no choices array");
    if (cJSON_IsString(id) && !cJSON_HasObjectItem(cl->sum, "id")) {
        cJSON_AddStringToObject(cl->sum, "id", id->valuestring);
        cJSON_AddStringToObject(cl->sum, "model", cJSON_IsString(model) ? model->valuestring : "");
    } else if (cl->strict && cJSON_IsString(id) &&
               strcmp(cJSON_GetObjectItem(cl->sum, "id")->valuestring, id->valuestring) != 0) {
        VIOLATION(cl, "the id changed within the stream");
    }
}

static void client_tool_delta(struct client *cl, cJSON *choice, const cJSON *tc)
{
    const cJSON *index = cJSON_GetObjectItem(tc, "index");
    if (!cJSON_IsNumber(index)) {
        VIOLATION(cl, "tool call delta without index");
        return;
    }
    cJSON *calls = cJSON_GetObjectItem(choice, "tool_calls");
    const cJSON *fn = cJSON_GetObjectItem(tc, "function");
    const cJSON *id = cJSON_GetObjectItem(tc, "id"), *name = cJSON_GetObjectItem(fn, "name");
    cJSON *call = cJSON_GetArrayItem(calls, index->valueint);
    if (!call) {
        if (index->valueint != cJSON_GetArraySize(calls))
            VIOLATION(cl, "tool call index %d skips one", index->valueint);
        /* the SDK helper's rule: the first delta names the call completely */
        if (cl->strict && (!cJSON_IsString(id) || !cJSON_IsString(name) ||
                           !in_enum(cJSON_GetObjectItem(tc, "type"), (const char *const[]){"function", NULL})))
            VIOLATION(cl, "first delta of tool call %d lacks id, type or function.name", index->valueint);
        call = cJSON_CreateObject();
        cJSON_AddItemToObject(call, "id", cJSON_IsString(id) ? cJSON_CreateString(id->valuestring) : cJSON_CreateNull());
        cJSON_AddItemToObject(call, "name", cJSON_IsString(name) ? cJSON_CreateString(name->valuestring) : cJSON_CreateNull());
        cJSON_AddStringToObject(call, "arguments", "");
        while (cJSON_GetArraySize(calls) < index->valueint) cJSON_AddItemToArray(calls, cJSON_CreateNull());
        cJSON_AddItemToArray(calls, call);
    } else if (cl->strict && (id || name)) {
        VIOLATION(cl, "a later delta of tool call %d repeats its id or name", index->valueint);
    }
    sum_append(call, "arguments", cJSON_GetObjectItem(fn, "arguments"));
}

static void client_chunk(struct client *cl, const cJSON *o)
{
    cl->chunks++;
    check_head(cl, o, "chat.completion.chunk");
    if (cl->strict && cl->include_usage != cJSON_HasObjectItem(o, "usage"))
        VIOLATION(cl, "usage member %s", cl->include_usage ? "missing" : "not asked for");
    const cJSON *usage = cJSON_GetObjectItem(o, "usage");
    if (cJSON_IsObject(usage)) {
        if (cl->strict && cJSON_GetArraySize(cJSON_GetObjectItem(o, "choices")) != 0)
            VIOLATION(cl, "usage chunk with choices");
        sum_set(cl->sum, "usage", usage_summary(usage));
    }
    const cJSON *c;
    cJSON_ArrayForEach(c, cJSON_GetObjectItem(o, "choices"))
    {
        const cJSON *index = cJSON_GetObjectItem(c, "index"), *delta = cJSON_GetObjectItem(c, "delta");
        const cJSON *fr = cJSON_GetObjectItem(c, "finish_reason");
        if (!cJSON_IsNumber(index) || !cJSON_IsObject(delta) || !cJSON_HasObjectItem(c, "finish_reason") ||
            !(cJSON_IsNull(fr) || in_enum(fr, finish_enum))) {
            VIOLATION(cl, "choice without index, delta or a valid finish_reason");
            continue;
        }
        cJSON *s = sum_choice(cl, index->valueint);
        if (!cJSON_IsTrue(cJSON_GetObjectItem(s, "began"))) {
            if (cl->strict && !in_enum(cJSON_GetObjectItem(delta, "role"), (const char *const[]){"assistant", NULL}))
                VIOLATION(cl, "first delta of choice %d without role", index->valueint);
            sum_set(s, "began", cJSON_CreateTrue());
        }
        if (cl->strict && !cJSON_IsNull(cJSON_GetObjectItem(s, "finish_reason")))
            VIOLATION(cl, "choice %d continues after its finish_reason", index->valueint);
        sum_append(s, "content", cJSON_GetObjectItem(delta, "content"));
        sum_append(s, "reasoning_content", cJSON_GetObjectItem(delta, "reasoning_content"));
        sum_append(s, "refusal", cJSON_GetObjectItem(delta, "refusal"));
        const cJSON *tc;
        cJSON_ArrayForEach(tc, cJSON_GetObjectItem(delta, "tool_calls")) client_tool_delta(cl, s, tc);
        if (cJSON_IsString(fr)) sum_set(s, "finish_reason", cJSON_CreateString(fr->valuestring));
    }
}

/* Reads a whole SSE body as a client would. */
static void client_read_sse(struct client *cl, const char *sse);

static int client_sse(void *ud, const struct bt_sse_event *sev)
{
    struct client *cl = ud;
    if (cJSON_IsTrue(cJSON_GetObjectItem(cl->sum, "done")) || !cJSON_IsNull(cJSON_GetObjectItem(cl->sum, "error")))
        VIOLATION(cl, "an event after [DONE] or an error");
    if (bt_str_eq_c(sev->data, "[DONE]")) {
        sum_set(cl->sum, "done", cJSON_CreateTrue());
        return 0;
    }
    cJSON *o = cJSON_ParseWithLength(sev->data.p, sev->data.len);
    if (!cJSON_IsObject(o)) {
        VIOLATION(cl, "an event that is not a JSON object: %.*s", BT_STR_FMT(sev->data));
    } else if (cJSON_HasObjectItem(o, "error")) {
        const cJSON *e = cJSON_GetObjectItem(o, "error");
        check_error_shape(cl, e);
        sum_set(cl->sum, "error", cJSON_Duplicate(e, true));
    } else {
        client_chunk(cl, o);
    }
    cJSON_Delete(o);
    return 0;
}

static void client_read_sse(struct client *cl, const char *sse)
{
    struct bt_sse parser;
    bt_sse_init(&parser, 1u << 20, client_sse, cl);
    if (bt_sse_feed(&parser, sse, strlen(sse)) || bt_sse_partial(&parser))
        VIOLATION(cl, "the SSE body does not parse or ends inside an event");
    bt_sse_free(&parser);
    /* the helper's last rule: every choice finished, unless the stream failed */
    if (cl->strict && cJSON_IsTrue(cJSON_GetObjectItem(cl->sum, "done"))) {
        const cJSON *c;
        cJSON_ArrayForEach(c, cJSON_GetObjectItem(cl->sum, "choices"))
        if (cJSON_IsNull(cJSON_GetObjectItem(c, "finish_reason")))
            VIOLATION(cl, "a choice ended without a finish_reason");
    }
}

/* Reads a chat.completion as a client would, into the same summary. */
static void client_read_reply(struct client *cl, const char *json)
{
    cJSON *o = cJSON_Parse(json);
    if (!cJSON_IsObject(o)) {
        VIOLATION(cl, "the reply is not a JSON object");
        cJSON_Delete(o);
        return;
    }
    if (cJSON_HasObjectItem(o, "error")) {
        check_error_shape(cl, cJSON_GetObjectItem(o, "error"));
        sum_set(cl->sum, "error", cJSON_Duplicate(cJSON_GetObjectItem(o, "error"), true));
        cJSON_Delete(o);
        return;
    }
    check_head(cl, o, "chat.completion");
    sum_set(cl->sum, "done", cJSON_CreateTrue());
    const cJSON *c;
    int i = 0;
    cJSON_ArrayForEach(c, cJSON_GetObjectItem(o, "choices"))
    {
        const cJSON *m = cJSON_GetObjectItem(c, "message"), *fr = cJSON_GetObjectItem(c, "finish_reason");
        const cJSON *index = cJSON_GetObjectItem(c, "index");
        if (!cJSON_IsNumber(index) || index->valueint != i || !cJSON_IsObject(m) ||
            !cJSON_HasObjectItem(c, "logprobs") || !in_enum(fr, finish_enum) ||
            !in_enum(cJSON_GetObjectItem(m, "role"), (const char *const[]){"assistant", NULL}) ||
            !cJSON_HasObjectItem(m, "content") || !cJSON_HasObjectItem(m, "refusal")) {
            VIOLATION(cl, "reply choice %d lacks index, message (role, content, refusal), logprobs "
                          "or a valid finish_reason", i);
            i++;
            continue;
        }
        cJSON *s = sum_choice(cl, i++);
        sum_set(s, "began", cJSON_CreateTrue());
        sum_append(s, "content", cJSON_GetObjectItem(m, "content"));
        sum_append(s, "reasoning_content", cJSON_GetObjectItem(m, "reasoning_content"));
        sum_append(s, "refusal", cJSON_GetObjectItem(m, "refusal"));
        const cJSON *tc;
        int k = 0;
        cJSON_ArrayForEach(tc, cJSON_GetObjectItem(m, "tool_calls"))
        {
            cJSON *d = cJSON_Duplicate(tc, true);
            cJSON_AddNumberToObject(d, "index", k++);
            client_tool_delta(cl, s, d);
            cJSON_Delete(d);
        }
        sum_set(s, "finish_reason", cJSON_CreateString(cJSON_IsString(fr) ? fr->valuestring : ""));
    }
    const cJSON *u = cJSON_GetObjectItem(o, "usage");
    if (cJSON_IsObject(u)) sum_set(cl->sum, "usage", usage_summary(u));
    cJSON_Delete(o);
}

/* Fails the current test with both summaries when they differ. */
#define CHECK_SAME(a, b)                                                                   \
    do {                                                                                   \
        if (!cJSON_Compare((a), (b), true)) {                                              \
            char *h_x = cJSON_PrintUnformatted(a), *h_y = cJSON_PrintUnformatted(b);       \
            H_FAIL("%s != %s:\n    %s\n    %s", #a, #b, h_x, h_y);                         \
            free(h_x);                                                                     \
            free(h_y);                                                                     \
        }                                                                                  \
    } while (0)

#define CHECK_CLIENT(cl)                                                                   \
    do {                                                                                   \
        if ((cl).violations) H_FAIL("%d violations, first: %s", (cl).violations, (cl).first_violation); \
    } while (0)

static void client_free(struct client *cl)
{
    cJSON_Delete(cl->sum);
}

/* A fixture read by a plain (lenient) client, and run through the pipeline
 * whose output a strict client reads. */
struct trip {
    struct client in, out;
    struct pipe p;
};

/* The two summaries must be equal once the input's usage is taken out when
 * the client did not ask for it (CHECK_SAME by the caller). Free with trip_free. */
static void round_trip(struct trip *t, const char *const *fixture, bool legacy, bool include_usage)
{
    char *sse = sse_of(fixture);
    client_init(&t->in, false, false);
    client_read_sse(&t->in, sse);
    pipe_init(&t->p, legacy, include_usage, 1u << 20);
    pipe_run(&t->p, sse);
    client_init(&t->out, true, include_usage);
    client_read_sse(&t->out, t->p.out.p);
    if (!include_usage) sum_set(t->in.sum, "usage", cJSON_CreateNull());
    free(sse);
}

static void trip_free(struct trip *t)
{
    client_free(&t->in);
    client_free(&t->out);
    pipe_free(&t->p);
}

TEST(finish_names_round_trip)
{
    for (int f = BT_FINISH_STOP; f <= BT_FINISH_LAST; f++) {
        const char *n = bt_finish_name((enum bt_finish)f);
        CHECK(n[0] != 0);
        CHECK_INT(bt_finish_parse(bt_str_c(n)), f);
    }
    CHECK_STR(bt_finish_name(BT_FINISH_NONE), "");
    CHECK_INT(bt_finish_parse(BT_STR("")), BT_FINISH_NONE);
    CHECK_INT(bt_finish_parse(BT_STR("function_call")), BT_FINISH_TOOL_CALLS);
    CHECK_INT(bt_finish_parse(BT_STR("end_turn")), BT_FINISH_OTHER);
    CHECK_STR(bt_finish_name(BT_FINISH_STOP_SEQUENCE), "stop_sequence");
    CHECK_STR(bt_finish_name(BT_FINISH_PAUSE_TURN), "pause_turn");
}

TEST(outcome_names)
{
    static const char *want[] = {"ok", "rate_limit", "server_error", "timeout", "connection",
                                 "context_window", "content_filter", "auth", "bad_request"};
    for (int o = BT_OUTCOME_OK; o <= BT_OUTCOME_BAD_REQUEST; o++)
        CHECK_STR(bt_outcome_name((enum bt_outcome)o), want[o]);
    CHECK_STR(bt_outcome_name((enum bt_outcome)99), "unknown");
}

TEST(usage_merge)
{
    /* Anthropic-like running totals: input first, output later (input left out) */
    struct bt_usage acc = {0};
    struct bt_usage a = {.present = true, .prompt_tokens = 100, .completion_tokens = 1,
                         .cache_read_tokens = 60, .cache_write_tokens = 20};
    struct bt_usage b = {.present = true, .completion_tokens = 42};
    bt_usage_merge(&acc, &a);
    bt_usage_merge(&acc, &b);
    CHECK(acc.present);
    CHECK_INT(acc.prompt_tokens, 100);
    CHECK_INT(acc.completion_tokens, 42);
    CHECK_INT(acc.total_tokens, 142);
    CHECK_INT(acc.cached_tokens, 60); /* the alias */
    CHECK_INT(acc.cache_write_tokens, 20);
    /* increments add up */
    struct bt_usage d = {.present = true, .delta = true, .completion_tokens = 3,
                         .reasoning_tokens = 2};
    bt_usage_merge(&acc, &d);
    bt_usage_merge(&acc, &d);
    CHECK_INT(acc.completion_tokens, 48);
    CHECK_INT(acc.reasoning_tokens, 4);
    CHECK_INT(acc.total_tokens, 148);
    CHECK(!acc.delta);
    /* a report that is not present changes nothing; a larger total is kept */
    struct bt_usage none = {.prompt_tokens = 999};
    bt_usage_merge(&acc, &none);
    CHECK_INT(acc.prompt_tokens, 100);
    struct bt_usage t = {.present = true, .total_tokens = 500};
    bt_usage_merge(&acc, &t);
    CHECK_INT(acc.total_tokens, 500);
}

TEST(chat_request_every_part)
{
    struct req r;
    enum bt_err err = req_decode(&r,
        "{'model':'gpt-4o','messages':["
        "{'role':'system','content':'Be brief.'},"
        "{'role':'developer','content':[{'type':'text','text':'Use metric units.',"
        "'cache_control':{'type':'ephemeral','ttl':'1h'}}]},"
        "{'role':'user','name':'ann','content':["
        "{'type':'text','text':'What is in \\'these\\'?'},"
        "{'type':'image_url','image_url':{'url':'https://example.com/a.png','detail':'high'}},"
        "{'type':'image_url','image_url':{'url':'data:image/png;base64,iVBORw0KGgo='}},"
        "{'type':'image_url','image_url':{'url':'data:image\\/jpeg;base64,AAAA\\/BB=='}},"
        "{'type':'input_audio','input_audio':{'data':'UklGRg==','format':'wav'}},"
        "{'type':'file','file':{'file_data':'data:application/pdf;base64,JVBERi0=','filename':'a.pdf'}},"
        "{'type':'file','file':{'file_id':'file-abc'},'prompt_cache_breakpoint':{'mode':'explicit'}}],"
        "'cache_control':{'type':'ephemeral'}},"
        "{'role':'assistant','reasoning_content':'Let me look.','content':[{'type':'text','text':'Checking.'},"
        "{'type':'refusal','refusal':'no'}],'tool_calls':[{'id':'call_1','type':'function',"
        "'function':{'name':'get_weather','arguments':'{\\'city\\':\\'Paris\\'}'}}]},"
        "{'role':'tool','tool_call_id':'call_1','content':[{'type':'text','text':'18C'}]},"
        "{'role':'function','name':'legacy_fn','content':null},"
        "{'role':'assistant','content':null,'refusal':'I cannot.',"
        "'function_call':{'name':'legacy_fn','arguments':'{}'}}],"
        "'tools':[{'type':'function','function':{'name':'get_weather','description':'Weather',"
        "'parameters':{'type':'object','properties':{'city':{'type':'string'}}},'strict':true},"
        "'cache_control':{'type':'ephemeral'}}],"
        "'functions':[{'name':'legacy_fn'}],"
        "'tool_choice':{'type':'function','function':{'name':'get_weather'}},"
        "'parallel_tool_calls':false,'temperature':0.7,'top_p':0.9,'top_k':40,"
        "'max_completion_tokens':256,'max_tokens':100,'stop':['END','STOP'],'seed':42,'n':1,"
        "'presence_penalty':0.5,'frequency_penalty':-0.5,'logprobs':true,'top_logprobs':3,"
        "'reasoning_effort':'low','response_format':{'type':'json_schema','json_schema':"
        "{'name':'w','description':'d','schema':{'type':'object'},'strict':true}},"
        "'metadata':{'k':'v'},'user':'u-1','prompt_cache_key':'ck','stream':true,"
        "'stream_options':{'include_usage':true},'service_tier':'flex','store':null}");
    CHECK_INT(err, BT_OK);
    if (err) {
        fprintf(stderr, "  %s (%s)\n", r.err.message, r.err.param);
        req_free(&r);
        return;
    }
    const struct bt_chat *c = &r.chat;
    CHECK_SLICE(c->model, "gpt-4o");
    CHECK_INT(c->nsystem, 0);
    REQUIRE(c->nmsgs == 7);
    const struct bt_chat_msg *m = c->msgs;
    CHECK_INT(m[0].role, BT_ROLE_SYSTEM);
    REQUIRE(m[0].nparts == 1);
    CHECK_INT(m[0].parts[0].type, BT_PART_TEXT);
    CHECK_SLICE(m[0].parts[0].text, "Be brief.");
    CHECK(!m[0].parts[0].cache.set);
    CHECK_INT(m[1].role, BT_ROLE_DEVELOPER);
    REQUIRE(m[1].nparts == 1);
    CHECK(m[1].parts[0].cache.set);
    CHECK_SLICE(m[1].parts[0].cache.ttl, "1h");
    /* user: text, two images, an escaped data URL, audio, two files */
    CHECK_INT(m[2].role, BT_ROLE_USER);
    CHECK_SLICE(m[2].name, "ann");
    CHECK(m[2].cache.set);
    REQUIRE(m[2].nparts == 7);
    const struct bt_chat_part *p = m[2].parts;
    CHECK_SLICE(p[0].text, "What is in \\\"these\\\"?"); /* still escaped */
    CHECK_INT(p[1].type, BT_PART_IMAGE);
    CHECK_SLICE(p[1].image.url, "https://example.com/a.png");
    CHECK_INT(p[1].image.detail, BT_DETAIL_HIGH);
    CHECK_INT(p[2].type, BT_PART_IMAGE);
    CHECK_INT(p[2].image.url.len, 0);
    CHECK_SLICE(p[2].image.media_type, "image/png");
    CHECK_SLICE(p[2].image.data, "iVBORw0KGgo=");
    CHECK_INT(p[2].image.detail, BT_DETAIL_UNSET);
    CHECK_SLICE(p[3].image.media_type, "image/jpeg");
    CHECK_SLICE(p[3].image.data, "AAAA\\/BB==");
    CHECK_INT(p[4].type, BT_PART_AUDIO);
    CHECK_SLICE(p[4].audio.data, "UklGRg==");
    CHECK_SLICE(p[4].audio.format, "wav");
    CHECK_INT(p[5].type, BT_PART_FILE);
    CHECK_SLICE(p[5].file.media_type, "application/pdf");
    CHECK_SLICE(p[5].file.data, "JVBERi0=");
    CHECK_SLICE(p[5].file.filename, "a.pdf");
    CHECK_INT(p[6].type, BT_PART_FILE);
    CHECK_SLICE(p[6].file.file_id, "file-abc");
    CHECK(p[6].cache.set);
    CHECK_INT(p[6].cache.ttl.len, 0);
    /* assistant: thinking first, then content, then the calls */
    CHECK_INT(m[3].role, BT_ROLE_ASSISTANT);
    REQUIRE(m[3].nparts == 4);
    p = m[3].parts;
    CHECK_INT(p[0].type, BT_PART_THINKING);
    CHECK_SLICE(p[0].thinking.text, "Let me look.");
    CHECK_INT(p[1].type, BT_PART_TEXT);
    CHECK_INT(p[2].type, BT_PART_REFUSAL);
    CHECK_SLICE(p[2].text, "no");
    CHECK_INT(p[3].type, BT_PART_TOOL_CALL);
    CHECK_SLICE(p[3].tool_call.id, "call_1");
    CHECK_SLICE(p[3].tool_call.name, "get_weather");
    CHECK_SLICE(p[3].tool_call.args, "{\\\"city\\\":\\\"Paris\\\"}");
    CHECK(p[3].tool_call.args_escaped);
    struct bt_str js;
    REQUIRE(bt_chat_args_json(&p[3], &r.arena, &js) == BT_OK);
    CHECK_SLICE(js, "{\"city\":\"Paris\"}");
    /* tool result, legacy function result, legacy call */
    CHECK_INT(m[4].role, BT_ROLE_TOOL);
    REQUIRE(m[4].nparts == 1);
    CHECK_INT(m[4].parts[0].type, BT_PART_TOOL_RESULT);
    CHECK_SLICE(m[4].parts[0].tool_result.call_id, "call_1");
    REQUIRE(m[4].parts[0].tool_result.nparts == 1);
    CHECK_SLICE(m[4].parts[0].tool_result.parts[0].text, "18C");
    CHECK(!m[4].parts[0].tool_result.is_error);
    CHECK_INT(m[5].role, BT_ROLE_TOOL);
    REQUIRE(m[5].nparts == 1);
    CHECK_SLICE(m[5].parts[0].tool_result.name, "legacy_fn");
    CHECK_INT(m[5].parts[0].tool_result.call_id.len, 0);
    CHECK_INT(m[5].parts[0].tool_result.nparts, 0);
    REQUIRE(m[6].nparts == 2);
    CHECK_INT(m[6].parts[0].type, BT_PART_REFUSAL);
    CHECK_SLICE(m[6].parts[0].text, "I cannot.");
    CHECK_INT(m[6].parts[1].type, BT_PART_TOOL_CALL);
    CHECK_SLICE(m[6].parts[1].tool_call.name, "legacy_fn");
    CHECK_INT(m[6].parts[1].tool_call.id.len, 0);
    /* tools and choice */
    REQUIRE(c->ntools == 2);
    CHECK_SLICE(c->tools[0].name, "get_weather");
    CHECK_SLICE(c->tools[0].description, "Weather");
    CHECK_SLICE(c->tools[0].parameters, "{\"type\":\"object\",\"properties\":{\"city\":{\"type\":\"string\"}}}");
    CHECK(c->tools[0].strict && c->tools[0].strict_given);
    CHECK(c->tools[0].cache.set);
    CHECK_SLICE(c->tools[1].name, "legacy_fn");
    CHECK(!c->tools[1].strict_given);
    CHECK_INT(c->tool_choice, BT_TOOL_CHOICE_NAMED);
    CHECK_SLICE(c->tool_choice_name, "get_weather");
    /* sampling */
    uint32_t want = BT_GIVEN_TEMPERATURE | BT_GIVEN_TOP_P | BT_GIVEN_TOP_K | BT_GIVEN_MAX_TOKENS |
                    BT_GIVEN_STOP | BT_GIVEN_SEED | BT_GIVEN_N | BT_GIVEN_PRESENCE_PENALTY |
                    BT_GIVEN_FREQUENCY_PENALTY | BT_GIVEN_LOGPROBS | BT_GIVEN_TOP_LOGPROBS |
                    BT_GIVEN_PARALLEL_TOOL_CALLS | BT_GIVEN_REASONING_EFFORT |
                    BT_GIVEN_RESPONSE_FORMAT | BT_GIVEN_METADATA | BT_GIVEN_USER |
                    BT_GIVEN_CACHE_KEY;
    CHECK_INT(c->given, want);
    CHECK(c->temperature == 0.7 && c->top_p == 0.9);
    CHECK_INT(c->top_k, 40);
    CHECK_INT(c->max_tokens, 256); /* max_completion_tokens wins */
    REQUIRE(c->nstop == 2);
    CHECK_SLICE(c->stop[1], "STOP");
    CHECK_INT(c->seed, 42);
    CHECK_INT(c->n, 1);
    CHECK(c->presence_penalty == 0.5 && c->frequency_penalty == -0.5);
    CHECK(c->logprobs);
    CHECK_INT(c->top_logprobs, 3);
    CHECK(!c->parallel_tool_calls);
    CHECK_INT(c->reasoning_effort, BT_EFFORT_LOW);
    CHECK_INT(c->format, BT_FORMAT_JSON_SCHEMA);
    CHECK_SLICE(c->format_name, "w");
    CHECK_SLICE(c->format_description, "d");
    CHECK_SLICE(c->format_schema, "{\"type\":\"object\"}");
    CHECK(c->format_strict);
    CHECK_SLICE(c->metadata, "{\"k\":\"v\"}");
    CHECK_SLICE(c->user, "u-1");
    CHECK_SLICE(c->cache_key, "ck");
    CHECK(c->stream && c->include_usage);
    /* unmapped members are kept, nulls are not */
    REQUIRE(c->nextras == 1);
    CHECK_SLICE(c->extras[0].key, "service_tier");
    CHECK_SLICE(c->extras[0].value, "\"flex\"");
    req_free(&r);
}

TEST(chat_request_minimal_and_defaults)
{
    struct req r;
    REQUIRE(req_decode(&r, "{'model':'m','messages':[{'role':'user','content':''}],"
                           "'tool_choice':'required','stop':'x','temperature':null,"
                           "'response_format':{'type':'json_object'},'reasoning_effort':'minimal',"
                           "'function_call':'auto'}") == BT_OK);
    CHECK_INT(r.chat.nmsgs, 1);
    REQUIRE(r.chat.msgs[0].nparts == 1);
    CHECK_INT(r.chat.msgs[0].parts[0].text.len, 0);
    CHECK_INT(r.chat.tool_choice, BT_TOOL_CHOICE_REQUIRED); /* tool_choice beats function_call */
    CHECK_INT(r.chat.nstop, 1);
    CHECK_INT(r.chat.given, BT_GIVEN_STOP | BT_GIVEN_RESPONSE_FORMAT | BT_GIVEN_REASONING_EFFORT);
    CHECK_INT(r.chat.format, BT_FORMAT_JSON_OBJECT);
    CHECK_INT(r.chat.reasoning_effort, BT_EFFORT_MINIMAL);
    CHECK(!r.chat.stream);
    CHECK_INT(r.chat.ntools, 0);
    req_free(&r);
    REQUIRE(req_decode(&r, "{'model':'m','messages':[{'role':'user','content':'hi'}],"
                           "'function_call':{'name':'f'},'max_tokens':5}") == BT_OK);
    CHECK_INT(r.chat.tool_choice, BT_TOOL_CHOICE_NAMED);
    CHECK_SLICE(r.chat.tool_choice_name, "f");
    CHECK_INT(r.chat.max_tokens, 5);
    req_free(&r);
}

TEST(chat_request_errors)
{
    static const struct {
        const char *body, *param, *says;
    } cases[] = {
        {"[]", "", "must be a JSON object"},
        {"{'messages':[]}", "model", "Missing required parameter: 'model'"},
        {"{'model':'m'}", "messages", "Missing required parameter: 'messages'"},
        {"{'model':'m','messages':{}}", "messages", "expected an array, but got an object"},
        {"{'model':'m','messages':[]}", "messages", "empty array"},
        {"{'model':'m','messages':[{'content':'x'}]}", "messages[0].role", "Missing"},
        {"{'model':'m','messages':[{'role':'robot','content':'x'}]}", "messages[0].role",
         "Supported values are: 'system', 'developer', 'user', 'assistant', 'tool', 'function'"},
        {"{'model':'m','messages':[{'role':'user','content':7}]}", "messages[0].content",
         "expected one of a string or array of objects, but got a number"},
        {"{'model':'m','messages':[{'role':'user'}]}", "messages[0].content", "Missing"},
        {"{'model':'m','messages':[{'role':'user','content':[]}]}", "messages[0].content",
         "empty array"},
        {"{'model':'m','messages':[{'role':'user','content':['hi']}]}", "messages[0].content[0]",
         "expected an object, but got a string"},
        {"{'model':'m','messages':[{'role':'user','content':[{'type':'video'}]}]}",
         "messages[0].content[0].type", "'video'"},
        {"{'model':'m','messages':[{'role':'system','content':[{'type':'image_url','image_url':"
         "{'url':'https://x'}}]}]}", "messages[0].content[0].type",
         "'image_url' is not allowed in this message's content. Supported values are: 'text'"},
        {"{'model':'m','messages':[{'role':'assistant','content':[{'type':'file','file':{}}]}]}",
         "messages[0].content[0].type", "Supported values are: 'text', 'refusal'"},
        {"{'model':'m','messages':[{'role':'user','content':[{'type':'text'}]}]}",
         "messages[0].content[0].text", "Missing"},
        {"{'model':'m','messages':[{'role':'user','content':[{'type':'text','text':1}]}]}",
         "messages[0].content[0].text", "expected a string"},
        {"{'model':'m','messages':[{'role':'user','content':[{'type':'image_url','image_url':{}}]}]}",
         "messages[0].content[0].image_url.url", "Missing"},
        {"{'model':'m','messages':[{'role':'user','content':[{'type':'image_url','image_url':"
         "{'url':'data:image/png,abc'}}]}]}", "messages[0].content[0].image_url.url",
         "data:<media type>;base64,<data>"},
        {"{'model':'m','messages':[{'role':'user','content':[{'type':'image_url','image_url':"
         "{'url':'data:image/p ng;base64,abc'}}]}]}", "messages[0].content[0].image_url.url",
         "media type 'image/p ng' is not valid"},
        {"{'model':'m','messages':[{'role':'user','content':[{'type':'image_url','image_url':"
         "{'url':'https://x','detail':'ultra'}}]}]}", "messages[0].content[0].image_url.detail",
         "'ultra'"},
        {"{'model':'m','messages':[{'role':'user','content':[{'type':'input_audio','input_audio':"
         "{'data':'AA=='}}]}]}", "messages[0].content[0].input_audio.format", "Missing"},
        {"{'model':'m','messages':[{'role':'user','content':[{'type':'file','file':"
         "{'filename':'a'}}]}]}", "messages[0].content[0].file", "either 'file_data' or 'file_id'"},
        {"{'model':'m','messages':[{'role':'user','content':[{'type':'text','text':'a',"
         "'cache_control':{'type':'permanent'}}]}]}", "messages[0].content[0].cache_control.type",
         "'permanent'"},
        {"{'model':'m','messages':[{'role':'tool','content':'x'}]}", "messages[0].tool_call_id",
         "Missing"},
        {"{'model':'m','messages':[{'role':'tool','tool_call_id':'c'}]}", "messages[0].content",
         "Missing"},
        {"{'model':'m','messages':[{'role':'function','content':'x'}]}", "messages[0].name",
         "Missing"},
        {"{'model':'m','messages':[{'role':'assistant','tool_calls':[{'id':'c','type':'function',"
         "'function':{'name':'f'}}]}]}", "messages[0].tool_calls[0].function.arguments", "Missing"},
        {"{'model':'m','messages':[{'role':'assistant','tool_calls':[{'type':'function',"
         "'function':{'name':'f','arguments':'{}'}}]}]}", "messages[0].tool_calls[0].id", "Missing"},
        {"{'model':'m','messages':[{'role':'assistant','tool_calls':[{'id':'c','type':'custom',"
         "'custom':{'name':'f','input':''}}]}]}", "messages[0].tool_calls[0].type",
         "custom tool calls cannot be translated"},
        {"{'model':'m','messages':[{'role':'assistant','tool_calls':{}}]}",
         "messages[0].tool_calls", "expected an array"},
        {"{'model':'m','messages':[{'role':'assistant','audio':{'id':'a'}}]}", "messages[0].audio",
         "cannot be translated"},
        {"{'model':'m','messages':[{'role':'user','content':'x'}],'tools':[{'type':'custom',"
         "'custom':{'name':'g'}}]}", "tools[0].type", "custom tools cannot be translated"},
        {"{'model':'m','messages':[{'role':'user','content':'x'}],'tools':[{'type':'function',"
         "'function':{'description':'d'}}]}", "tools[0].function.name", "Missing"},
        {"{'model':'m','messages':[{'role':'user','content':'x'}],'tools':[{'type':'function',"
         "'function':{'name':'f','parameters':'{}'}}]}", "tools[0].function.parameters",
         "expected an object"},
        {"{'model':'m','messages':[{'role':'user','content':'x'}],'tool_choice':'sometimes'}",
         "tool_choice", "Supported values are: 'auto', 'none', 'required'"},
        {"{'model':'m','messages':[{'role':'user','content':'x'}],'tool_choice':{'type':"
         "'allowed_tools','allowed_tools':{'mode':'auto','tools':[]}}}", "tool_choice.type",
         "'allowed_tools' cannot be translated"},
        {"{'model':'m','messages':[{'role':'user','content':'x'}],'tool_choice':{'type':"
         "'function','function':{}}}", "tool_choice.function.name", "Missing"},
        {"{'model':'m','messages':[{'role':'user','content':'x'}],'temperature':3}", "temperature",
         "above maximum value. Expected a value <= 2, but got 3"},
        {"{'model':'m','messages':[{'role':'user','content':'x'}],'temperature':'hot'}",
         "temperature", "expected a number, but got a string"},
        {"{'model':'m','messages':[{'role':'user','content':'x'}],'n':0}", "n",
         "below minimum value. Expected a value >= 1, but got 0"},
        {"{'model':'m','messages':[{'role':'user','content':'x'}],'n':1.5}", "n",
         "expected an integer, but got 1.5"},
        {"{'model':'m','messages':[{'role':'user','content':'x'}],'top_logprobs':21}",
         "top_logprobs", "above maximum"},
        {"{'model':'m','messages':[{'role':'user','content':'x'}],'max_completion_tokens':0}",
         "max_completion_tokens", "below minimum"},
        {"{'model':'m','messages':[{'role':'user','content':'x'}],'logprobs':1}", "logprobs",
         "expected a boolean"},
        {"{'model':'m','messages':[{'role':'user','content':'x'}],'reasoning_effort':'extreme'}",
         "reasoning_effort", "'none', 'minimal', 'low', 'medium', 'high', 'xhigh', 'max'"},
        {"{'model':'m','messages':[{'role':'user','content':'x'}],'response_format':{'type':"
         "'json_schema','json_schema':{'schema':{}}}}", "response_format.json_schema.name",
         "Missing"},
        {"{'model':'m','messages':[{'role':'user','content':'x'}],'response_format':{'type':"
         "'yaml'}}", "response_format.type", "'yaml'"},
        {"{'model':'m','messages':[{'role':'user','content':'x'}],'stop':[1]}", "stop[0]",
         "expected a string"},
        {"{'model':'m','messages':[{'role':'user','content':'x'}],'stream':'yes'}", "stream",
         "expected a boolean"},
        {"{'model':'m','messages':[{'role':'user','content':'x'}],'stream_options':"
         "{'include_usage':1}}", "stream_options.include_usage", "expected a boolean"},
        {"{'model':'m','messages':[{'role':'user','content':'x'}],'metadata':'k'}", "metadata",
         "expected an object"},
        {"{'model':'','messages':[{'role':'user','content':'x'}]}", "model", "non-empty"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct req r;
        enum bt_err err = req_decode(&r, cases[i].body);
        if (err != BT_EINVAL || strcmp(r.err.param, cases[i].param) != 0 ||
            !strstr(r.err.message, cases[i].says))
            H_FAIL("case %zu %s: err %d param '%s' message '%s'", i, cases[i].body, err, r.err.param,
                   r.err.message);
        req_free(&r);
    }
}

TEST(chat_args_helpers)
{
    struct bt_arena a;
    bt_arena_init(&a, 1024, 0);
    struct bt_chat_part raw = {.type = BT_PART_TOOL_CALL};
    raw.tool_call.args = BT_STR("{\"q\":\"a\\\"b\"}");
    struct bt_str out;
    REQUIRE(bt_chat_args_json(&raw, &a, &out) == BT_OK);
    CHECK_SLICE(out, "{\"q\":\"a\\\"b\"}");
    REQUIRE(bt_chat_args_string(&raw, &a, &out) == BT_OK);
    CHECK_SLICE(out, "{\\\"q\\\":\\\"a\\\\\\\"b\\\"}");
    struct bt_chat_part esc = raw;
    esc.tool_call.args = out;
    esc.tool_call.args_escaped = true;
    REQUIRE(bt_chat_args_json(&esc, &a, &out) == BT_OK);
    CHECK_SLICE(out, "{\"q\":\"a\\\"b\"}");
    struct bt_chat_part empty = {.type = BT_PART_TOOL_CALL};
    REQUIRE(bt_chat_args_json(&empty, &a, &out) == BT_OK);
    CHECK_SLICE(out, "{}");
    esc.tool_call.args = BT_STR("bad \\x");
    CHECK_INT(bt_chat_args_json(&esc, &a, &out), BT_EPARSE);
    CHECK_STR(bt_chat_given_name(BT_GIVEN_TOP_K), "top_k");
    CHECK_STR(bt_chat_given_name(BT_GIVEN_LAST), "prompt_cache_key");
    CHECK_STR(bt_chat_given_name(3), "");
    bt_arena_free(&a);
}


static const char *sum_str(const cJSON *sum, int choice, const char *key)
{
    const cJSON *v = cJSON_GetObjectItem(cJSON_GetArrayItem(cJSON_GetObjectItem(sum, "choices"), choice), key);
    return cJSON_IsString(v) ? v->valuestring : "(null)";
}

static const char *sum_call(const cJSON *sum, int choice, int k, const char *key)
{
    const cJSON *calls = cJSON_GetObjectItem(cJSON_GetArrayItem(cJSON_GetObjectItem(sum, "choices"), choice), "tool_calls");
    const cJSON *v = cJSON_GetObjectItem(cJSON_GetArrayItem(calls, k), key);
    return cJSON_IsString(v) ? v->valuestring : "(null)";
}

static double sum_usage(const cJSON *sum, const char *key)
{
    const cJSON *v = cJSON_GetObjectItem(cJSON_GetObjectItem(sum, "usage"), key);
    return cJSON_IsNumber(v) ? v->valuedouble : -1;
}

/* The aggregator fed by the pipe writes a reply that reads like the stream. */
static void check_agg_matches(struct pipe *p, const struct client *in, int want_status)
{
    struct bt_buf b;
    bt_buf_init(&b, 1u << 20);
    int status = 0;
    CHECK_INT(bt_openai_agg_write(&p->agg, &b, &status), BT_OK);
    CHECK_INT(status, want_status);
    bt_buf_cstr(&b);
    dump("reply.json", b.p, b.len);
    struct client r;
    client_init(&r, true, false);
    client_read_reply(&r, b.p);
    CHECK_CLIENT(r);
    CHECK_SAME(in->sum, r.sum);
    client_free(&r);
    bt_buf_free(&b);
}

TEST(stream_text_and_reasoning)
{
    for (int legacy = 0; legacy < 2; legacy++) {
        for (int iu = 0; iu < 2; iu++) {
            struct trip t;
            round_trip(&t, fx_text, legacy, iu);
            CHECK_CLIENT(t.in);
            CHECK_CLIENT(t.out);
            CHECK_INT(t.p.first_err, BT_OK);
            CHECK_SAME(t.in.sum, t.out.sum);
            CHECK_STR(sum_str(t.out.sum, 0, "content"), "Hello, w\xc3\xb6rld \xf0\x9f\x98\x80\n");
            CHECK_STR(sum_str(t.out.sum, 0, "reasoning_content"), "Let me think about \"it\".");
            CHECK_STR(sum_str(t.out.sum, 0, "finish_reason"), "stop");
            CHECK(cJSON_IsTrue(cJSON_GetObjectItem(t.out.sum, "done")));
            if (iu) {
                CHECK(sum_usage(t.out.sum, "cached_tokens") == 4);
                CHECK(sum_usage(t.out.sum, "reasoning_tokens") == 12);
                CHECK(sum_usage(t.out.sum, "total_tokens") == 30);
                check_agg_matches(&t.p, &t.in, 200);
            } else {
                CHECK(cJSON_IsNull(cJSON_GetObjectItem(t.out.sum, "usage")));
                CHECK(!strstr(t.p.out.p, "usage"));
            }
            /* the escapes travel as they came: nothing decoded and re-encoded */
            CHECK(strstr(t.p.out.p, "\"content\":\", w\\u00f6rld \\ud83d\\ude00\\n\"") != NULL);
            CHECK(strstr(t.p.out.p, "data: [DONE]\n\n") == t.p.out.p + t.p.out.len - 14);
            trip_free(&t);
        }
    }
}

TEST(stream_parallel_tool_calls)
{
    for (int legacy = 0; legacy < 2; legacy++) {
        struct trip t;
        round_trip(&t, fx_tools, legacy, true);
        CHECK_CLIENT(t.out);
        CHECK_INT(t.p.first_err, BT_OK);
        CHECK_SAME(t.in.sum, t.out.sum);
        CHECK_STR(sum_call(t.out.sum, 0, 0, "id"), "call_a");
        CHECK_STR(sum_call(t.out.sum, 0, 0, "name"), "get_weather");
        CHECK_STR(sum_call(t.out.sum, 0, 0, "arguments"), "{\"city\":\"Paris\"}");
        CHECK_STR(sum_call(t.out.sum, 0, 1, "id"), "call_b");
        CHECK_STR(sum_call(t.out.sum, 0, 1, "arguments"), "{\"tz\":\"CET\"}");
        CHECK_STR(sum_call(t.out.sum, 0, 2, "name"), "noop");
        CHECK_STR(sum_call(t.out.sum, 0, 2, "arguments"), "{}");
        CHECK_STR(sum_str(t.out.sum, 0, "content"), "(null)");
        CHECK_STR(sum_str(t.out.sum, 0, "finish_reason"), "tool_calls");
        check_agg_matches(&t.p, &t.in, 200);
        trip_free(&t);
    }
}

TEST(stream_refusal)
{
    struct trip t;
    round_trip(&t, fx_refusal, false, true);
    CHECK_CLIENT(t.out);
    CHECK_SAME(t.in.sum, t.out.sum);
    CHECK_STR(sum_str(t.out.sum, 0, "refusal"), "I am sorry, I cannot help with that.");
    CHECK_STR(sum_str(t.out.sum, 0, "content"), "(null)");
    check_agg_matches(&t.p, &t.in, 200);
    trip_free(&t);
}

TEST(stream_error_event)
{
    for (int legacy = 0; legacy < 2; legacy++) {
        struct trip t;
        round_trip(&t, fx_error, legacy, true);
        CHECK_CLIENT(t.out);
        CHECK_INT(t.p.first_err, BT_OK);
        CHECK(bt_openai_stream_ended(&t.p.enc));
        CHECK_INT(t.p.enc.state, BT_OAS_FAILED);
        CHECK(!strstr(t.p.out.p, "[DONE]"));
        CHECK(!cJSON_IsTrue(cJSON_GetObjectItem(t.out.sum, "done")));
        CHECK_STR(sum_str(t.out.sum, 0, "content"), "Partial");
        const cJSON *e = cJSON_GetObjectItem(t.out.sum, "error");
        REQUIRE(cJSON_IsObject(e));
        CHECK_STR(cJSON_GetObjectItem(e, "message")->valuestring,
                  "The server had an error while processing your request.");
        /* classified (server_error) it speaks baton's words; unclassified (the
         * fast path's decoder) it keeps the provider's */
        CHECK_STR(cJSON_GetObjectItem(e, "type")->valuestring, legacy ? "server_error" : "upstream_error");
        CHECK(cJSON_IsNull(cJSON_GetObjectItem(e, "code")));
        /* the aggregator answers the same error, with a status */
        struct bt_buf b;
        bt_buf_init(&b, 4096);
        int status = 0;
        CHECK_INT(bt_openai_agg_write(&t.p.agg, &b, &status), BT_OK);
        CHECK_INT(status, 502);
        bt_buf_cstr(&b);
        dump("reply.json", b.p, b.len);
        cJSON *o = cJSON_Parse(b.p);
        CHECK(cJSON_IsObject(cJSON_GetObjectItem(o, "error")));
        cJSON_Delete(o);
        bt_buf_free(&b);
        trip_free(&t);
    }
}

TEST(stream_two_choices)
{
    for (int legacy = 0; legacy < 2; legacy++) {
        struct trip t;
        round_trip(&t, fx_two_choices, legacy, false);
        CHECK_CLIENT(t.out);
        CHECK_SAME(t.in.sum, t.out.sum);
        CHECK_STR(sum_str(t.out.sum, 0, "content"), "A1");
        CHECK_STR(sum_str(t.out.sum, 1, "content"), "B1B2");
        CHECK_STR(sum_str(t.out.sum, 1, "finish_reason"), "length");
        trip_free(&t);
    }
}

TEST(stream_repairs)
{
    /* no finish_reason from the provider: "stop" before [DONE] */
    struct trip t;
    round_trip(&t, fx_no_finish, false, false);
    CHECK_CLIENT(t.out);
    CHECK_STR(sum_str(t.out.sum, 0, "content"), "ok");
    CHECK_STR(sum_str(t.out.sum, 0, "finish_reason"), "stop");
    trip_free(&t);
    /* repeated role, call id and finish_reason: written once */
    for (int legacy = 0; legacy < 2; legacy++) {
        round_trip(&t, fx_repeats, legacy, true);
        CHECK_CLIENT(t.out);
        CHECK_SAME(t.in.sum, t.out.sum);
        CHECK_STR(sum_call(t.out.sum, 0, 0, "arguments"), "{}");
        CHECK(sum_usage(t.out.sum, "total_tokens") == 3);
        trip_free(&t);
    }
}

/* Feeds events one by one into a fresh encoder. */
static enum bt_err feed_events(struct pipe *p, const struct bt_event *evs, size_t n)
{
    enum bt_err last = BT_OK;
    for (size_t i = 0; i < n; i++) last = bt_openai_stream_event(&p->enc, &evs[i], &p->out);
    bt_buf_cstr(&p->out);
    return last;
}

TEST(stream_cut_short)
{
    /* exec ends a stream that stopped without [DONE] with a classified error */
    struct pipe p;
    pipe_init(&p, false, true, 1u << 20);
    const char *const part[] = {fx_text[0], fx_text[1], fx_text[3], NULL};
    char *sse = sse_of(part);
    pipe_run(&p, sse);
    struct bt_event timeout = {.type = BT_EV_ERROR, .outcome = BT_OUTCOME_TIMEOUT,
                               .err_message = BT_STR("the provider sent nothing for 30 s")};
    CHECK_INT(feed_events(&p, &timeout, 1), BT_OK);
    struct client out;
    client_init(&out, true, true);
    client_read_sse(&out, p.out.p);
    CHECK_CLIENT(out);
    const cJSON *e = cJSON_GetObjectItem(out.sum, "error");
    CHECK_STR(cJSON_GetObjectItem(e, "type")->valuestring, "timeout_error");
    CHECK_STR(cJSON_GetObjectItem(e, "code")->valuestring, "upstream_timeout");
    CHECK_STR(sum_str(out.sum, 0, "content"), "Hello");
    CHECK(!strstr(p.out.p, "[DONE]"));
    /* later events change nothing */
    size_t len = p.out.len;
    struct bt_event done = {.type = BT_EV_DONE};
    CHECK_INT(feed_events(&p, &done, 1), BT_OK);
    CHECK_INT(p.out.len, len);
    client_free(&out);
    pipe_free(&p);
    free(sse);
}

TEST(stream_protocol_errors)
{
    static const struct bt_event args_first[] = {
        {.type = BT_EV_START, .id = BT_STR("m1"), .name = BT_STR("claude")},
        {.type = BT_EV_TOOL_ARGS, .tool_index = 3, .text = BT_STR("{}")},
    };
    static const struct bt_event nameless[] = {
        {.type = BT_EV_TOOL_START, .tool_index = 0, .id = BT_STR("toolu_1")},
    };
    static const struct bt_event too_many[] = {
        {.type = BT_EV_TEXT, .choice = BT_OPENAI_ENC_MAX_CHOICES, .text = BT_STR("x")},
    };
    const struct {
        const struct bt_event *evs;
        size_t n;
        const char *says;
    } cases[] = {
        {args_first, 2, "arguments for tool call 3 before starting it"},
        {nameless, 1, "started tool call 0 without a name"},
        {too_many, 1, "more than 8 choices"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct pipe p;
        pipe_init(&p, false, false, 1u << 20);
        CHECK_INT(feed_events(&p, cases[i].evs, cases[i].n), BT_EPROTO);
        CHECK_INT(p.enc.state, BT_OAS_FAILED);
        struct client out;
        client_init(&out, true, false);
        client_read_sse(&out, p.out.p);
        CHECK_CLIENT(out);
        const cJSON *e = cJSON_GetObjectItem(out.sum, "error");
        REQUIRE(cJSON_IsObject(e));
        CHECK(strstr(cJSON_GetObjectItem(e, "message")->valuestring, cases[i].says) != NULL);
        CHECK_STR(cJSON_GetObjectItem(e, "code")->valuestring, "upstream_invalid_stream");
        client_free(&out);
        pipe_free(&p);
    }
}

TEST(stream_without_start)
{
    /* a provider that never names the role: the first delta still carries it;
     * a made-up call id when the provider gave none; a stream with nothing in
     * it still finishes its choice */
    static const struct bt_event evs[] = {
        {.type = BT_EV_REASONING, .text = BT_STR("hm"), .signature = BT_STR("sig")},
        {.type = BT_EV_REASONING, .redacted = true, .text = BT_STR("opaque")},
        {.type = BT_EV_BLOCK_STOP},
        {.type = BT_EV_TOOL_START, .tool_index = 5, .name = BT_STR("f")},
        {.type = BT_EV_TOOL_ARGS, .tool_index = 5, .text = BT_STR("{\\\"a\\\":1}")},
        {.type = BT_EV_USAGE, .usage = {.present = true, .prompt_tokens = 7, .completion_tokens = 1,
                                        .cache_write_tokens = 3}},
        {.type = BT_EV_USAGE, .usage = {.present = true, .completion_tokens = 9}},
        {.type = BT_EV_FINISH, .finish = BT_FINISH_PAUSE_TURN},
        {.type = BT_EV_DONE},
    };
    struct pipe p;
    pipe_init(&p, false, true, 1u << 20);
    CHECK_INT(feed_events(&p, evs, sizeof(evs) / sizeof(evs[0])), BT_OK);
    struct client out;
    client_init(&out, true, true);
    client_read_sse(&out, p.out.p);
    CHECK_CLIENT(out);
    CHECK_STR(sum_str(out.sum, 0, "reasoning_content"), "hm");
    CHECK(!strstr(p.out.p, "opaque") && !strstr(p.out.p, "sig"));
    CHECK_STR(sum_call(out.sum, 0, 0, "id"), "call_chatcmpl-baton_0");
    CHECK_STR(sum_call(out.sum, 0, 0, "arguments"), "{\"a\":1}");
    CHECK_STR(sum_str(out.sum, 0, "finish_reason"), "stop"); /* pause_turn: OpenAI has none */
    CHECK(sum_usage(out.sum, "completion_tokens") == 9);
    CHECK(sum_usage(out.sum, "total_tokens") == 16);
    CHECK(strstr(p.out.p, "\"cache_write_tokens\":3") != NULL);
    CHECK_STR(cJSON_GetObjectItem(out.sum, "model")->valuestring, "gpt-x");
    client_free(&out);
    pipe_free(&p);

    static const struct bt_event empty[] = {{.type = BT_EV_DONE}};
    pipe_init(&p, false, false, 1u << 20);
    CHECK_INT(feed_events(&p, empty, 1), BT_OK);
    client_init(&out, true, false);
    client_read_sse(&out, p.out.p);
    CHECK_CLIENT(out);
    CHECK_INT(out.chunks, 1);
    CHECK_STR(sum_str(out.sum, 0, "finish_reason"), "stop");
    client_free(&out);
    pipe_free(&p);
}

TEST(stream_bounded_output)
{
    char text[300];
    memset(text, 'x', sizeof(text));
    struct bt_event big = {.type = BT_EV_TEXT, .text = {text, sizeof(text)}};
    struct pipe p;
    pipe_init(&p, false, false, 256);
    CHECK_INT(bt_openai_stream_event(&p.enc, &big, &p.out), BT_ETOOBIG);
    CHECK_INT(p.out.len, 0);
    CHECK(!p.enc.choice[0].began);
    CHECK_INT(p.enc.state, BT_OAS_OPEN);
    /* the caller flushes (here: a larger buffer) and feeds the same event */
    bt_buf_free(&p.out);
    bt_buf_init(&p.out, 4096);
    CHECK_INT(bt_openai_stream_event(&p.enc, &big, &p.out), BT_OK);
    struct bt_event done = {.type = BT_EV_DONE};
    CHECK_INT(bt_openai_stream_event(&p.enc, &done, &p.out), BT_OK);
    bt_buf_cstr(&p.out);
    struct client out;
    client_init(&out, true, false);
    client_read_sse(&out, p.out.p);
    CHECK_CLIENT(out);
    CHECK_INT(strlen(sum_str(out.sum, 0, "content")), 300);
    client_free(&out);
    pipe_free(&p);
}

/* ---- whole replies ---- */

static const char reply_json[] =
    "{'id':'chatcmpl-9','object':'chat.completion','created':1700000002,'model':'gpt-x-2024',"
    "'choices':[{'index':0,'message':{'role':'assistant','content':'Here: \\'x\\'',"
    "'reasoning_content':'thought','refusal':null,'tool_calls':["
    "{'id':'call_1','type':'function','function':{'name':'a','arguments':'{\\'q\\':1}'}},"
    "{'id':'call_2','type':'function','function':{'name':'b','arguments':'{}'}}]},"
    "'logprobs':null,'finish_reason':'tool_calls'},"
    "{'index':1,'message':{'role':'assistant','content':null,'refusal':'No.'},'logprobs':null,"
    "'finish_reason':'content_filter'}],"
    "'usage':{'prompt_tokens':100,'completion_tokens':50,'total_tokens':150,"
    "'prompt_tokens_details':{'cached_tokens':64,'cache_write_tokens':20},"
    "'completion_tokens_details':{'reasoning_tokens':30}}}";

static void reply_to(const char *json, struct pipe *p, bool include_usage)
{
    char *body = jq(json);
    pipe_init(p, false, include_usage, 1u << 20);
    struct bt_json_doc doc;
    if (bt_json_parse(&doc, body, strlen(body), &p->scratch, NULL, NULL) == BT_OK)
        bt_openai_reply_events(&doc, pipe_event, p);
    bt_buf_cstr(&p->out);
    free(body);
}

TEST(reply_round_trip)
{
    char *orig = jq(reply_json);
    struct client want;
    client_init(&want, true, false);
    client_read_reply(&want, orig);
    CHECK_CLIENT(want);
    struct pipe p;
    reply_to(reply_json, &p, true);
    CHECK_INT(p.first_err, BT_OK);
    /* the aggregator rebuilds the reply */
    struct bt_buf b;
    bt_buf_init(&b, 1u << 20);
    int status = 0;
    CHECK_INT(bt_openai_agg_write(&p.agg, &b, &status), BT_OK);
    CHECK_INT(status, 200);
    bt_buf_cstr(&b);
    dump("reply.json", b.p, b.len);
    struct client got;
    client_init(&got, true, false);
    client_read_reply(&got, b.p);
    CHECK_CLIENT(got);
    CHECK_SAME(want.sum, got.sum);
    CHECK(strstr(b.p, "\"cache_write_tokens\":20") != NULL);
    /* ... and the same events make a stream that reads the same */
    struct client streamed;
    client_init(&streamed, true, true);
    client_read_sse(&streamed, p.out.p);
    CHECK_CLIENT(streamed);
    CHECK_SAME(want.sum, streamed.sum);
    CHECK_STR(cJSON_GetObjectItem(got.sum, "model")->valuestring, "gpt-x-2024");
    CHECK_STR(sum_str(got.sum, 1, "refusal"), "No.");
    CHECK(sum_usage(got.sum, "cached_tokens") == 64);
    client_free(&want);
    client_free(&got);
    client_free(&streamed);
    bt_buf_free(&b);
    pipe_free(&p);
    free(orig);
}

TEST(reply_error_body)
{
    struct pipe p;
    reply_to("{'error':{'message':'Rate limit reached','type':'requests','param':null,"
             "'code':'rate_limit_exceeded'}}", &p, false);
    CHECK_INT(p.events, 1);
    struct bt_buf b;
    bt_buf_init(&b, 4096);
    int status = 0;
    CHECK_INT(bt_openai_agg_write(&p.agg, &b, &status), BT_OK);
    CHECK_INT(status, 429);
    bt_buf_cstr(&b);
    dump("reply.json", b.p, b.len);
    cJSON *o = cJSON_Parse(b.p);
    const cJSON *e = cJSON_GetObjectItem(o, "error");
    CHECK_STR(cJSON_GetObjectItem(e, "message")->valuestring, "Rate limit reached");
    CHECK_STR(cJSON_GetObjectItem(e, "type")->valuestring, "rate_limit_error");
    CHECK_STR(cJSON_GetObjectItem(e, "code")->valuestring, "rate_limit_exceeded");
    cJSON_Delete(o);
    bt_buf_free(&b);
    pipe_free(&p);
}

TEST(agg_limits)
{
    struct bt_openai_agg a;
    bt_openai_agg_init(&a, &test_opts, 10);
    struct bt_event t = {.type = BT_EV_TEXT, .text = BT_STR("0123456789abc")};
    CHECK_INT(bt_openai_agg_event(&a, &t), BT_ETOOBIG);
    struct bt_buf b;
    bt_buf_init(&b, 4096);
    int status = 0;
    CHECK_INT(bt_openai_agg_write(&a, &b, &status), BT_ETOOBIG);
    CHECK_INT(b.len, 0);
    bt_openai_agg_free(&a);
    bt_openai_agg_init(&a, &test_opts, 1000);
    struct bt_event args = {.type = BT_EV_TOOL_ARGS, .tool_index = 1, .text = BT_STR("{}")};
    CHECK_INT(bt_openai_agg_event(&a, &args), BT_EPROTO);
    bt_openai_agg_free(&a);
    /* nothing at all: one empty choice, id and model from the options */
    bt_openai_agg_init(&a, &test_opts, 1000);
    CHECK_INT(bt_openai_agg_write(&a, &b, &status), BT_OK);
    bt_buf_cstr(&b);
    dump("reply.json", b.p, b.len);
    struct client r;
    client_init(&r, true, false);
    client_read_reply(&r, b.p);
    CHECK_CLIENT(r);
    CHECK_STR(cJSON_GetObjectItem(r.sum, "id")->valuestring, "chatcmpl-baton");
    CHECK_STR(sum_str(r.sum, 0, "finish_reason"), "stop");
    client_free(&r);
    bt_openai_agg_free(&a);
    bt_buf_free(&b);
}

/* ---- the two chunk decoders agree ---- */

static void ev_sig(void *ud, const struct bt_event *ev)
{
    struct bt_buf *b = ud;
    const struct bt_usage *u = &ev->usage;
    bt_buf_printf(b, "%d/%u/%u id=%.*s text=%.*s fin=%d u=%d,%lld,%lld,%lld,%lld,%lld err=%.*s|%.*s|%.*s;\n",
                  ev->type, ev->choice, ev->tool_index, BT_STR_FMT(ev->id), BT_STR_FMT(ev->text),
                  ev->finish, u->present, (long long)u->prompt_tokens, (long long)u->completion_tokens,
                  (long long)u->total_tokens, (long long)u->cached_tokens,
                  (long long)u->reasoning_tokens, BT_STR_FMT(ev->err_type), BT_STR_FMT(ev->err_message),
                  BT_STR_FMT(ev->err_code));
    if (ev->type == BT_EV_TOOL_START) bt_buf_printf(b, "  name=%.*s\n", BT_STR_FMT(ev->name));
}

TEST(chunk_decoders_agree)
{
    const char *const *fixtures[] = {fx_text, fx_tools, fx_error, fx_two_choices, fx_no_finish,
                                     fx_repeats};
    for (size_t f = 0; f < sizeof(fixtures) / sizeof(fixtures[0]); f++) {
        for (size_t i = 0; fixtures[f][i]; i++) {
            if (strcmp(fixtures[f][i], "[DONE]") == 0) continue;
            char *body = jq(fixtures[f][i]);
            struct bt_arena a;
            bt_arena_init(&a, 4096, 0);
            struct bt_json_doc doc;
            REQUIRE(bt_json_parse(&doc, body, strlen(body), &a, NULL, NULL) == BT_OK);
            struct bt_buf x, y;
            bt_buf_init(&x, 1u << 16);
            bt_buf_init(&y, 1u << 16);
            bt_openai_decode_chunk(&doc, ev_sig, &x);
            bt_openai_chunk_events(&doc, ev_sig, &y);
            bt_buf_cstr(&x);
            bt_buf_cstr(&y);
            if (strcmp(x.p ? x.p : "", y.p ? y.p : "") != 0)
                H_FAIL("fixture %zu chunk %zu:\n%s---\n%s", f, i, x.p, y.p);
            bt_buf_free(&x);
            bt_buf_free(&y);
            bt_arena_free(&a);
            free(body);
        }
    }
}

TEST(error_outcomes)
{
    static const struct {
        const char *type, *code;
        enum bt_outcome want;
    } cases[] = {
        {"invalid_request_error", "context_length_exceeded", BT_OUTCOME_CONTEXT_WINDOW},
        {"requests", "rate_limit_exceeded", BT_OUTCOME_RATE_LIMIT},
        {"insufficient_quota", "insufficient_quota", BT_OUTCOME_RATE_LIMIT},
        {"overloaded_error", "", BT_OUTCOME_RATE_LIMIT},
        {"invalid_request_error", "content_policy_violation", BT_OUTCOME_CONTENT_FILTER},
        {"authentication_error", "", BT_OUTCOME_AUTH},
        {"invalid_request_error", "invalid_api_key", BT_OUTCOME_AUTH},
        {"timeout_error", "", BT_OUTCOME_TIMEOUT},
        {"invalid_request_error", "", BT_OUTCOME_BAD_REQUEST},
        {"server_error", "", BT_OUTCOME_SERVER_ERROR},
        {"", "", BT_OUTCOME_SERVER_ERROR},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        CHECK_INT(bt_openai_error_outcome(bt_str_c(cases[i].type), bt_str_c(cases[i].code)),
                  cases[i].want);
    static const int status[] = {502, 429, 502, 504, 502, 400, 400, 502, 400};
    for (int o = BT_OUTCOME_OK; o <= BT_OUTCOME_BAD_REQUEST; o++) {
        const char *type = NULL, *code = NULL;
        CHECK_INT(bt_openai_outcome_error((enum bt_outcome)o, &type, &code), status[o]);
        CHECK(type && type[0]);
    }
    /* a stream event that is not JSON is a server error */
    struct bt_arena a;
    bt_arena_init(&a, 1024, 0);
    struct bt_buf sig;
    bt_buf_init(&sig, 4096);
    CHECK_INT(bt_openai_stream_data(BT_STR("{\"choices\":[{"), &a, ev_sig, &sig), BT_EPARSE);
    CHECK_INT(bt_openai_stream_data(BT_STR("[DONE]"), &a, ev_sig, &sig), BT_OK);
    bt_buf_cstr(&sig);
    CHECK(strstr(sig.p, "not JSON") != NULL);
    CHECK(strncmp(strchr(sig.p, '\n') + 1, "9/", 2) == 0); /* then DONE */
    /* `"error": null` (some servers write it on every chunk) is no error */
    bt_buf_reset(&sig);
    CHECK_INT(bt_openai_stream_data(BT_STR("{\"error\":null,\"choices\":[{\"index\":0,"
                                           "\"delta\":{\"content\":\"hi\"}}]}"),
                                    &a, ev_sig, &sig), BT_OK);
    bt_buf_cstr(&sig);
    CHECK(strncmp(sig.p, "2/0/0 id= text=hi ", 18) == 0);
    bt_buf_free(&sig);
    bt_arena_free(&a);
}

int main(void)
{
    RUN(finish_names_round_trip);
    RUN(outcome_names);
    RUN(usage_merge);
    RUN(chat_request_every_part);
    RUN(chat_request_minimal_and_defaults);
    RUN(chat_request_errors);
    RUN(chat_args_helpers);
    RUN(stream_text_and_reasoning);
    RUN(stream_parallel_tool_calls);
    RUN(stream_refusal);
    RUN(stream_error_event);
    RUN(stream_two_choices);
    RUN(stream_repairs);
    RUN(stream_cut_short);
    RUN(stream_protocol_errors);
    RUN(stream_without_start);
    RUN(stream_bounded_output);
    RUN(reply_round_trip);
    RUN(reply_error_body);
    RUN(agg_limits);
    RUN(chunk_decoders_agree);
    RUN(error_outcomes);
    return HARNESS_DONE();
}
