/* The Anthropic front end's codecs: the Messages request decoder, the OpenAI
 * chat encoder fed by it (provider side), and the Anthropic stream encoder and
 * Message aggregator fed by OpenAI streams, each output read back by a client
 * as strict as the Anthropic SDK's stream accumulator (cJSON is the oracle). */
#include "harness.h"

#include <cjson/cJSON.h>
#include <stdlib.h>

#include "api/anthropic_encode.h"
#include "api/anthropic_msg.h"
#include "canon/chat.h"
#include "http/sse.h"
#include "provider/openai_chat_encode.h"
#include "provider/openai_reply.h"

/* JSON written with ' for " (fixtures read without backslashes); malloc'd. */
static char *jq(const char *s)
{
    char *o = strdup(s);
    for (char *p = o; *p; p++)
        if (*p == '\'') *p = '"';
    return o;
}

struct req {
    char *text;
    struct bt_arena a;
    struct bt_json_doc doc;
    struct bt_chat c;
    struct bt_chat_error e;
    enum bt_err err;
};

static void req_decode(struct req *r, const char *fixture, bool count_only)
{
    memset(r, 0, sizeof(*r));
    r->text = jq(fixture);
    bt_arena_init(&r->a, 4096, 1u << 22);
    r->err = bt_json_parse(&r->doc, r->text, strlen(r->text), &r->a, NULL, NULL);
    if (!r->err) r->err = bt_anthropic_msg_decode(&r->doc, &r->a, count_only, &r->c, &r->e);
}

static void req_free(struct req *r)
{
    bt_arena_free(&r->a);
    free(r->text);
}

static const char *EVERY =
    "{'model':'claude-x','max_tokens':30000,'temperature':0.5,'top_p':0.9,'stream':true,"
    "'stop_sequences':['END','STOP'],'metadata':{'user_id':'u-1'},"
    "'thinking':{'type':'enabled','budget_tokens':20000},"
    "'system':[{'type':'text','text':'sys one','cache_control':{'type':'ephemeral','ttl':'1h'}},"
    "{'type':'text','text':'sys two'}],"
    "'tools':[{'name':'get','description':'gets','input_schema':{'type':'object'}},"
    "{'type':'custom','name':'put','input_schema':{'type':'object','properties':{}}}],"
    "'tool_choice':{'type':'tool','name':'put','disable_parallel_tool_use':true},"
    "'messages':["
    "{'role':'user','content':[{'type':'text','text':'look \\u00e9'},"
    "{'type':'image','source':{'type':'base64','media_type':'image/png','data':'iVBO'}},"
    "{'type':'image','source':{'type':'url','url':'https://x.test/a.png'}},"
    "{'type':'document','source':{'type':'base64','media_type':'application/pdf','data':'JVBE'},'title':'r.pdf'},"
    "{'type':'document','source':{'type':'text','media_type':'text/plain','data':'plain doc'}}]},"
    "{'role':'assistant','content':[{'type':'thinking','thinking':'hmm','signature':'SIG'},"
    "{'type':'redacted_thinking','data':'OPAQUE'},{'type':'text','text':'calling'},"
    "{'type':'tool_use','id':'tu_1','name':'get','input':{'q':'a\\'b'}}]},"
    "{'role':'user','content':[{'type':'tool_result','tool_use_id':'tu_1','content':'42','is_error':true},"
    "{'type':'tool_result','tool_use_id':'tu_2','content':[{'type':'text','text':'r2'}]},"
    "{'type':'text','text':'next'}]},"
    "{'role':'assistant','content':'plain reply'}]}";

TEST(decode_every_block)
{
    struct req r;
    req_decode(&r, EVERY, false);
    if (r.err) H_FAIL("%d %s %s", r.err, r.e.message, r.e.param);
    REQUIRE(r.err == BT_OK);
    const struct bt_chat *c = &r.c;
    CHECK_SLICE(c->model, "claude-x");
    CHECK_INT(c->max_tokens, 30000);
    CHECK(c->stream);
    CHECK(c->temperature == 0.5 && c->top_p == 0.9);
    CHECK_INT(c->nstop, 2);
    CHECK_SLICE(c->stop[1], "STOP");
    CHECK_SLICE(c->user, "u-1");
    CHECK_INT(c->reasoning_budget, 20000);
    CHECK(c->given & BT_GIVEN_REASONING_BUDGET);
    CHECK_INT(c->nsystem, 2);
    CHECK(c->system[0].cache.set);
    CHECK_SLICE(c->system[0].cache.ttl, "1h");
    CHECK_INT(c->ntools, 2);
    CHECK_SLICE(c->tools[1].name, "put");
    CHECK_SLICE(c->tools[0].parameters, "{\"type\":\"object\"}");
    CHECK_INT(c->tool_choice, BT_TOOL_CHOICE_NAMED);
    CHECK_SLICE(c->tool_choice_name, "put");
    CHECK(!c->parallel_tool_calls && (c->given & BT_GIVEN_PARALLEL_TOOL_CALLS));
    REQUIRE(c->nmsgs == 4);
    const struct bt_chat_msg *m = &c->msgs[0];
    CHECK_INT(m->role, BT_ROLE_USER);
    REQUIRE(m->nparts == 5);
    CHECK_SLICE(m->parts[0].text, "look \\u00e9"); /* still escaped */
    CHECK_INT(m->parts[1].type, BT_PART_IMAGE);
    CHECK_SLICE(m->parts[1].image.media_type, "image/png");
    CHECK_SLICE(m->parts[1].image.data, "iVBO");
    CHECK_SLICE(m->parts[2].image.url, "https://x.test/a.png");
    CHECK_INT(m->parts[3].type, BT_PART_FILE);
    CHECK_SLICE(m->parts[3].file.filename, "r.pdf");
    CHECK_INT(m->parts[4].type, BT_PART_TEXT);
    CHECK_SLICE(m->parts[4].text, "plain doc");
    m = &c->msgs[1];
    REQUIRE(m->nparts == 4);
    CHECK_INT(m->parts[0].type, BT_PART_THINKING);
    CHECK_SLICE(m->parts[0].thinking.signature, "SIG");
    CHECK_INT(m->parts[1].type, BT_PART_REDACTED_THINKING);
    CHECK_INT(m->parts[3].type, BT_PART_TOOL_CALL);
    CHECK(!m->parts[3].tool_call.args_escaped);
    CHECK_SLICE(m->parts[3].tool_call.args, "{\"q\":\"a\\\"b\"}");
    m = &c->msgs[2];
    REQUIRE(m->nparts == 3);
    CHECK_INT(m->parts[0].type, BT_PART_TOOL_RESULT);
    CHECK(m->parts[0].tool_result.is_error);
    CHECK_SLICE(m->parts[0].tool_result.call_id, "tu_1");
    CHECK_INT(m->parts[1].tool_result.nparts, 1);
    CHECK_SLICE(c->msgs[3].parts[0].text, "plain reply");
    CHECK_INT(c->nextras, 0);
    req_free(&r);
}

TEST(decode_refusals)
{
    static const struct {
        const char *body, *param;
    } cases[] = {
        {"{'messages':[{'role':'user','content':'x'}],'max_tokens':5}", "model"},
        {"{'model':'m','max_tokens':5}", "messages"},
        {"{'model':'m','messages':[{'role':'user','content':'x'}]}", "max_tokens"},
        {"{'model':'m','max_tokens':0,'messages':[{'role':'user','content':'x'}]}", "max_tokens"},
        {"{'model':'m','max_tokens':5,'temperature':1.2,'messages':[{'role':'user','content':'x'}]}", "temperature"},
        {"{'model':'m','max_tokens':5,'top_p':'a','messages':[{'role':'user','content':'x'}]}", "top_p"},
        {"{'model':'m','max_tokens':5,'messages':[{'role':'system','content':'x'}]}", "messages.0.role"},
        {"{'model':'m','max_tokens':5,'messages':[{'role':'user','content':5}]}", "messages.0.content"},
        {"{'model':'m','max_tokens':5,'messages':[{'role':'user','content':[{'type':'tool_use','id':'a','name':'b','input':{}}]}]}", "messages.0.content.0.type"},
        {"{'model':'m','max_tokens':5,'messages':[{'role':'assistant','content':[{'type':'tool_result','tool_use_id':'a'}]}]}", "messages.0.content.0.type"},
        {"{'model':'m','max_tokens':5,'messages':[{'role':'user','content':[{'type':'image','source':{'type':'file','file_id':'f'}}]}]}", "messages.0.content.0.source.type"},
        {"{'model':'m','max_tokens':5,'messages':[{'role':'user','content':[{'type':'image','source':{'type':'base64','media_type':'image/tiff','data':'x'}}]}]}", "messages.0.content.0.source.media_type"},
        {"{'model':'m','max_tokens':5,'messages':[{'role':'user','content':[{'type':'document','source':{'type':'url','url':'https://x'}}]}]}", "messages.0.content.0.source.type"},
        {"{'model':'m','max_tokens':5,'messages':[{'role':'user','content':[{'type':'text'}]}]}", "messages.0.content.0.text"},
        {"{'model':'m','max_tokens':5,'tools':[{'type':'bash_20250124','name':'bash'}],'messages':[{'role':'user','content':'x'}]}", "tools.0.type"},
        {"{'model':'m','max_tokens':5,'tools':[{'name':'a'}],'messages':[{'role':'user','content':'x'}]}", "tools.0.input_schema"},
        {"{'model':'m','max_tokens':5,'tool_choice':{'type':'maybe'},'messages':[{'role':'user','content':'x'}]}", "tool_choice.type"},
        {"{'model':'m','max_tokens':5,'tool_choice':{'type':'tool','name':'zz'},'tools':[{'name':'a','input_schema':{}}],'messages':[{'role':'user','content':'x'}]}", "tool_choice.name"},
        {"{'model':'m','max_tokens':5,'thinking':{'type':'enabled','budget_tokens':100},'messages':[{'role':'user','content':'x'}]}", "thinking.budget_tokens"},
        {"{'model':'m','max_tokens':2000,'thinking':{'type':'enabled','budget_tokens':4000},'messages':[{'role':'user','content':'x'}]}", "thinking.budget_tokens"},
        {"{'model':'m','max_tokens':5,'stop_sequences':[1],'messages':[{'role':'user','content':'x'}]}", "stop_sequences.0"},
        {"{'model':'m','max_tokens':5,'metadata':{'user_id':3},'messages':[{'role':'user','content':'x'}]}", "metadata.user_id"},
        {"{'model':'m','max_tokens':5,'system':[{'type':'image','source':{}}],'messages':[{'role':'user','content':'x'}]}", "system.0.type"},
        {"{'model':'m','max_tokens':5,'messages':[{'role':'user','content':[{'type':'text','text':'a','cache_control':{'type':'forever'}}]}]}", "messages.0.content.0.cache_control"},
        {"[1]", ""},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct req r;
        req_decode(&r, cases[i].body, false);
        if (r.err != BT_EINVAL) H_FAIL("case %zu: err %d", i, r.err);
        else if (strcmp(r.e.param, cases[i].param) != 0 || !r.e.message[0])
            H_FAIL("case %zu: param '%s' (want '%s'), message '%s'", i, r.e.param, cases[i].param,
                   r.e.message);
        req_free(&r);
    }
    /* count_tokens needs no max_tokens; unknown members are extras */
    struct req r;
    req_decode(&r, "{'model':'m','service_tier':'auto','messages':[{'role':'user','content':'x'}]}", true);
    CHECK_INT(r.err, BT_OK);
    CHECK_INT(r.c.nextras, 1);
    CHECK_SLICE(r.c.extras[0].key, "service_tier");
    req_free(&r);
}

/* ---- provider side: the OpenAI body ---- */

static cJSON *encode_openai(struct req *r, const char *fixture, enum bt_err *err, char *param)
{
    req_decode(r, fixture, false);
    if (r->err) {
        *err = r->err;
        return NULL;
    }
    struct bt_buf out;
    bt_buf_init(&out, 1u << 20);
    *err = bt_openai_chat_encode(&r->c, BT_STR("up/model \"x\""), &r->a, &out, &r->e);
    if (param) snprintf(param, 128, "%s", r->e.param);
    cJSON *j = NULL;
    if (!*err) {
        bt_buf_cstr(&out);
        j = cJSON_Parse(out.p);
        if (!j) H_FAIL("not JSON: %s", out.p);
    }
    bt_buf_free(&out);
    return j;
}

static const char *jstr(const cJSON *o, const char *path)
{
    /* a dotted path, numbers index arrays */
    char buf[200];
    snprintf(buf, sizeof(buf), "%s", path);
    const cJSON *cur = o;
    for (char *tok = strtok(buf, "."); tok && cur; tok = strtok(NULL, "."))
        cur = (*tok >= '0' && *tok <= '9') ? cJSON_GetArrayItem(cur, atoi(tok))
                                           : cJSON_GetObjectItemCaseSensitive(cur, tok);
    if (!cur) return "(missing)";
    if (cJSON_IsString(cur)) return cur->valuestring;
    static char num[64];
    if (cJSON_IsNumber(cur)) {
        snprintf(num, sizeof(num), "%g", cur->valuedouble);
        return num;
    }
    if (cJSON_IsBool(cur)) return cJSON_IsTrue(cur) ? "true" : "false";
    if (cJSON_IsNull(cur)) return "null";
    return "(object)";
}

TEST(openai_body_from_anthropic)
{
    struct req r;
    enum bt_err err;
    cJSON *j = encode_openai(&r, EVERY, &err, NULL);
    REQUIRE(j);
    CHECK_STR(jstr(j, "model"), "up/model \"x\"");
    CHECK_STR(jstr(j, "messages.0.role"), "system");
    CHECK_STR(jstr(j, "messages.0.content.1.text"), "sys two");
    CHECK_STR(jstr(j, "messages.1.role"), "user");
    CHECK_STR(jstr(j, "messages.1.content.0.text"), "look \xc3\xa9");
    CHECK_STR(jstr(j, "messages.1.content.1.image_url.url"), "data:image/png;base64,iVBO");
    CHECK_STR(jstr(j, "messages.1.content.2.image_url.url"), "https://x.test/a.png");
    CHECK_STR(jstr(j, "messages.1.content.3.file.file_data"), "data:application/pdf;base64,JVBE");
    CHECK_STR(jstr(j, "messages.1.content.3.file.filename"), "r.pdf");
    CHECK_STR(jstr(j, "messages.1.content.4.text"), "plain doc");
    CHECK_STR(jstr(j, "messages.2.role"), "assistant");
    CHECK_STR(jstr(j, "messages.2.content"), "calling");
    CHECK_STR(jstr(j, "messages.2.reasoning_content"), "hmm");
    CHECK_STR(jstr(j, "messages.2.tool_calls.0.id"), "tu_1");
    CHECK_STR(jstr(j, "messages.2.tool_calls.0.function.arguments"), "{\"q\":\"a\\\"b\"}");
    CHECK_STR(jstr(j, "messages.3.role"), "tool");
    CHECK_STR(jstr(j, "messages.3.tool_call_id"), "tu_1");
    CHECK_STR(jstr(j, "messages.3.content.0.text"), "Error:");
    CHECK_STR(jstr(j, "messages.3.content.1.text"), "42");
    CHECK_STR(jstr(j, "messages.4.role"), "tool");
    CHECK_STR(jstr(j, "messages.4.content"), "r2");
    CHECK_STR(jstr(j, "messages.5.role"), "user");
    CHECK_STR(jstr(j, "messages.5.content.0.text"), "next");
    CHECK_STR(jstr(j, "messages.6.content"), "plain reply");
    CHECK_INT(cJSON_GetArraySize(cJSON_GetObjectItem(j, "messages")), 7);
    CHECK_STR(jstr(j, "tools.1.function.name"), "put");
    CHECK_STR(jstr(j, "tools.0.type"), "function");
    CHECK_STR(jstr(j, "tool_choice.function.name"), "put");
    CHECK_STR(jstr(j, "parallel_tool_calls"), "false");
    CHECK_STR(jstr(j, "reasoning_effort"), "high");
    CHECK_STR(jstr(j, "max_completion_tokens"), "30000");
    CHECK_STR(jstr(j, "max_tokens"), "(missing)");
    CHECK_STR(jstr(j, "temperature"), "0.5");
    CHECK_STR(jstr(j, "stop.1"), "STOP");
    CHECK_STR(jstr(j, "user"), "u-1");
    CHECK_STR(jstr(j, "stream"), "true");
    CHECK_STR(jstr(j, "stream_options.include_usage"), "true");
    CHECK_STR(jstr(j, "top_k"), "(missing)");
    cJSON_Delete(j);
    req_free(&r);

    /* without thinking: max_tokens; any -> required; a 0.7 stays 0.7 */
    j = encode_openai(&r,
                      "{'model':'m','max_tokens':7,'temperature':0.7,'tools':[{'name':'a','input_schema':{}}],"
                      "'tool_choice':{'type':'any'},'messages':[{'role':'user','content':'x'}]}",
                      &err, NULL);
    REQUIRE(j);
    CHECK_STR(jstr(j, "max_tokens"), "7");
    CHECK_STR(jstr(j, "tool_choice"), "required");
    CHECK_STR(jstr(j, "stream"), "(missing)");
    cJSON_Delete(j);
    req_free(&r);

    CHECK_STR(bt_openai_effort_for_budget(1024), "low");
    CHECK_STR(bt_openai_effort_for_budget(4096), "medium");
    CHECK_STR(bt_openai_effort_for_budget(16384), "high");
}

TEST(openai_body_refusals)
{
    static const struct {
        const char *body, *param;
    } cases[] = {
        {"{'model':'m','max_tokens':5,'top_k':3,'messages':[{'role':'user','content':'x'}]}", "top_k"},
        {"{'model':'m','max_tokens':5,'service_tier':'auto','messages':[{'role':'user','content':'x'}]}", "service_tier"},
        {"{'model':'m','max_tokens':5,'':1,'messages':[{'role':'user','content':'x'}]}", "\"\""},
        {"{'model':'m','max_tokens':5,'messages':[{'role':'user','content':[{'type':'tool_result','tool_use_id':'a','content':[{'type':'image','source':{'type':'url','url':'https://x'}}]}]}]}", "messages.0.content.0.content.0"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct req r;
        enum bt_err err;
        char param[128] = "";
        cJSON *j = encode_openai(&r, cases[i].body, &err, param);
        if (j || err != BT_EINVAL) H_FAIL("case %zu: err %d", i, err);
        else if (strcmp(param, cases[i].param) != 0 || !r.e.message[0])
            H_FAIL("case %zu: param '%s' want '%s'", i, param, cases[i].param);
        cJSON_Delete(j);
        req_free(&r);
    }
}

/* ---- reply side: OpenAI stream -> Anthropic stream and Message ---- */

struct pipe {
    struct bt_anthropic_stream *enc;
    struct bt_anthropic_agg agg;
    struct bt_buf out;
    struct bt_arena scratch;
    enum bt_err first_err;
};

static void pipe_event(void *ud, const struct bt_event *ev)
{
    struct pipe *p = ud;
    enum bt_err err = bt_anthropic_stream_event(p->enc, ev, &p->out);
    if ((err == BT_ETOOBIG || err == BT_ENOMEM) && p->out.max < (1u << 20)) {
        /* a small output buffer: "flush" (keep the bytes elsewhere) and retry */
        err = bt_anthropic_stream_event(p->enc, ev, &p->out);
    }
    if (err && !p->first_err) p->first_err = err;
    bt_anthropic_agg_event(&p->agg, ev);
}

static int pipe_sse(void *ud, const struct bt_sse_event *sev)
{
    struct pipe *p = ud;
    (void)bt_openai_stream_data(sev->data, &p->scratch, pipe_event, p);
    bt_arena_reset(&p->scratch);
    return 0;
}

static const struct bt_anthropic_enc_opts OPTS = {.id = {"baton", 5}, .model = {"claude-x", 8}};

static void pipe_init(struct pipe *p)
{
    memset(p, 0, sizeof(*p));
    p->enc = malloc(sizeof(*p->enc));
    bt_anthropic_stream_init(p->enc, &OPTS);
    bt_anthropic_agg_init(&p->agg, &OPTS, 1u << 20);
    bt_buf_init(&p->out, 1u << 22);
    bt_arena_init(&p->scratch, 4096, 1u << 20);
}

static void pipe_free(struct pipe *p)
{
    free(p->enc);
    bt_buf_free(&p->out);
    bt_arena_free(&p->scratch);
    bt_anthropic_agg_free(&p->agg);
}

/* Feeds `sse` split at byte `cut` (0: whole). */
static void pipe_run(struct pipe *p, const char *sse, size_t cut)
{
    struct bt_sse parser;
    bt_sse_init(&parser, 1u << 20, pipe_sse, p);
    size_t n = strlen(sse);
    if (cut && cut < n) {
        CHECK_INT(bt_sse_feed(&parser, sse, cut), BT_OK);
        CHECK_INT(bt_sse_feed(&parser, sse + cut, n - cut), BT_OK);
    } else {
        CHECK_INT(bt_sse_feed(&parser, sse, n), BT_OK);
    }
    bt_sse_free(&parser);
    bt_buf_cstr(&p->out);
}

/* An Anthropic client as strict as the SDK's accumulator: rebuilds the Message
 * from the events and counts rule violations. */
struct aclient {
    cJSON *msg;
    int open;         /* open block index, -1 none */
    bool stopped;     /* message_stop seen */
    bool delta_seen;  /* message_delta seen */
    char *partial[64];
    char error_type[64];
    int violations;
    char first[300];
};

#define VIOL(cl, ...)                                                                       \
    do {                                                                                    \
        if (!(cl)->violations++) snprintf((cl)->first, sizeof((cl)->first), __VA_ARGS__);   \
    } while (0)

static void append_str(cJSON *obj, const char *key, const char *add)
{
    cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    const char *old = cJSON_IsString(v) ? v->valuestring : "";
    size_t n = strlen(old) + strlen(add) + 1;
    char *s = malloc(n);
    snprintf(s, n, "%s%s", old, add);
    cJSON_ReplaceItemInObjectCaseSensitive(obj, key, cJSON_CreateString(s));
    free(s);
}

static void client_event(struct aclient *cl, const char *name, const char *data)
{
    cJSON *d = cJSON_Parse(data);
    if (!d) {
        VIOL(cl, "data is not JSON: %.100s", data);
        return;
    }
    const char *type = jstr(d, "type");
    if (strcmp(type, name) != 0) VIOL(cl, "event %s carries type %s", name, type);
    if (cl->stopped) VIOL(cl, "%s after message_stop", name);
    if (!cl->msg && strcmp(name, "message_start") != 0 && strcmp(name, "error") != 0)
        VIOL(cl, "%s before message_start", name);
    cJSON *content = cl->msg ? cJSON_GetObjectItem(cl->msg, "content") : NULL;
    const cJSON *ix = cJSON_GetObjectItem(d, "index");
    int idx = cJSON_IsNumber(ix) ? ix->valueint : -1;
    if (!strcmp(name, "message_start")) {
        if (cl->msg) VIOL(cl, "second message_start");
        else cl->msg = cJSON_Duplicate(cJSON_GetObjectItem(d, "message"), 1);
    } else if (!strcmp(name, "content_block_start")) {
        if (cl->open >= 0) VIOL(cl, "block %d starts while %d is open", idx, cl->open);
        if (idx != cJSON_GetArraySize(content)) VIOL(cl, "block index %d out of order", idx);
        cJSON_AddItemToArray(content, cJSON_Duplicate(cJSON_GetObjectItem(d, "content_block"), 1));
        cl->open = idx;
    } else if (!strcmp(name, "content_block_delta")) {
        if (idx != cl->open) VIOL(cl, "delta for block %d while %d is open", idx, cl->open);
        cJSON *blk = cJSON_GetArrayItem(content, idx);
        const char *dt = jstr(d, "delta.type");
        if (!blk) return (void)cJSON_Delete(d);
        if (!strcmp(dt, "text_delta")) append_str(blk, "text", jstr(d, "delta.text"));
        else if (!strcmp(dt, "thinking_delta")) append_str(blk, "thinking", jstr(d, "delta.thinking"));
        else if (!strcmp(dt, "signature_delta")) append_str(blk, "signature", jstr(d, "delta.signature"));
        else if (!strcmp(dt, "input_json_delta") && idx < 64) {
            const char *pj = jstr(d, "delta.partial_json");
            size_t n = (cl->partial[idx] ? strlen(cl->partial[idx]) : 0) + strlen(pj) + 1;
            char *s = malloc(n);
            snprintf(s, n, "%s%s", cl->partial[idx] ? cl->partial[idx] : "", pj);
            free(cl->partial[idx]);
            cl->partial[idx] = s;
        } else VIOL(cl, "unknown delta %s", dt);
    } else if (!strcmp(name, "content_block_stop")) {
        if (idx != cl->open) VIOL(cl, "stop of block %d while %d is open", idx, cl->open);
        cJSON *blk = cJSON_GetArrayItem(content, idx);
        if (blk && !strcmp(jstr(blk, "type"), "tool_use")) {
            cJSON *in = cJSON_Parse(idx < 64 && cl->partial[idx] ? cl->partial[idx] : "{}");
            if (!in) VIOL(cl, "tool input is not JSON: %s", cl->partial[idx]);
            else cJSON_ReplaceItemInObjectCaseSensitive(blk, "input", in);
        }
        cl->open = -1;
    } else if (!strcmp(name, "message_delta")) {
        if (cl->open >= 0) VIOL(cl, "message_delta with block %d open", cl->open);
        cJSON_ReplaceItemInObjectCaseSensitive(cl->msg, "stop_reason",
                                               cJSON_Duplicate(cJSON_GetObjectItem(cJSON_GetObjectItem(d, "delta"), "stop_reason"), 1));
        cJSON_ReplaceItemInObjectCaseSensitive(cl->msg, "usage", cJSON_Duplicate(cJSON_GetObjectItem(d, "usage"), 1));
        cl->delta_seen = true;
    } else if (!strcmp(name, "message_stop")) {
        if (!cl->delta_seen) VIOL(cl, "message_stop without message_delta");
        cl->stopped = true;
    } else if (!strcmp(name, "error")) {
        snprintf(cl->error_type, sizeof(cl->error_type), "%s", jstr(d, "error.type"));
        cl->stopped = true;
    } else if (strcmp(name, "ping") != 0) {
        VIOL(cl, "unknown event %s", name);
    }
    cJSON_Delete(d);
}

/* Reads the whole stream text: every event must be `event: X\ndata: {...}\n\n`. */
static void client_read(struct aclient *cl, const char *sse)
{
    memset(cl, 0, sizeof(*cl));
    cl->open = -1;
    char *copy = strdup(sse);
    for (char *ev = copy; *ev;) {
        char *end = strstr(ev, "\n\n");
        if (!end) {
            VIOL(cl, "event not terminated: %.80s", ev);
            break;
        }
        *end = 0;
        char *nl = strchr(ev, '\n');
        if (strncmp(ev, "event: ", 7) != 0 || !nl || strncmp(nl + 1, "data: ", 6) != 0) {
            VIOL(cl, "not an event/data pair: %.80s", ev);
        } else {
            *nl = 0;
            client_event(cl, ev + 7, nl + 7);
        }
        ev = end + 2;
    }
    free(copy);
}

static void client_free(struct aclient *cl)
{
    cJSON_Delete(cl->msg);
    for (int i = 0; i < 64; i++) free(cl->partial[i]);
}

/* The aggregator's Message parsed; NULL on an error (status in *status). */
static cJSON *agg_json(struct pipe *p, int *status)
{
    struct bt_buf b;
    bt_buf_init(&b, 1u << 22);
    cJSON *j = NULL;
    enum bt_err err = bt_anthropic_agg_write(&p->agg, &b, status);
    if (!err) {
        bt_buf_cstr(&b);
        j = cJSON_Parse(b.p);
    } else {
        *status = -(int)err;
    }
    bt_buf_free(&b);
    return j;
}

static char *chunk(const char *delta, const char *finish)
{
    char buf[1024];
    snprintf(buf, sizeof(buf),
             "data: {'id':'chatcmpl-7','object':'chat.completion.chunk','created':1,'model':'gpt-up',"
             "'choices':[{'index':0,'delta':%s,'finish_reason':%s}]}\n\n",
             delta, finish);
    return jq(buf);
}

/* A stream from chunk deltas, a finish and a usage chunk, then [DONE]. */
static char *stream_of(const char *const *deltas, const char *finish, const char *usage)
{
    struct bt_buf b;
    bt_buf_init(&b, 1u << 20);
    for (const char *const *d = deltas; *d; d++) {
        char *c = chunk(*d, "null");
        bt_buf_append_c(&b, c);
        free(c);
    }
    char fin[64];
    snprintf(fin, sizeof(fin), "'%s'", finish);
    char *c = chunk("{}", fin);
    bt_buf_append_c(&b, c);
    free(c);
    if (usage) {
        char buf[512];
        snprintf(buf, sizeof(buf),
                 "data: {'id':'chatcmpl-7','object':'chat.completion.chunk','created':1,'model':'gpt-up','choices':[],'usage':%s}\n\n",
                 usage);
        c = jq(buf);
        bt_buf_append_c(&b, c);
        free(c);
    }
    bt_buf_append_c(&b, "data: [DONE]\n\n");
    bt_buf_cstr(&b);
    char *s = strdup(b.p);
    bt_buf_free(&b);
    return s;
}

static const char *const TOOL_DELTAS[] = {
    "{'role':'assistant','content':'','reasoning_content':'let me \\'think\\''}",
    "{'content':'Checking \\u00e9.'}",
    "{'tool_calls':[{'index':0,'id':'call_a','type':'function','function':{'name':'get','arguments':''}}]}",
    "{'tool_calls':[{'index':0,'function':{'arguments':'{\\'ci'}}]}",
    "{'tool_calls':[{'index':1,'id':'call_b','type':'function','function':{'name':'time','arguments':'{\\'t'}}]}",
    "{'tool_calls':[{'index':0,'function':{'arguments':'ty\\':\\'P\\\\\\'x\\'}'}}]}",
    "{'tool_calls':[{'index':1,'function':{'arguments':'z\\':1}'}}]}",
    NULL,
};
static const char *TOOL_USAGE =
    "{'prompt_tokens':100,'completion_tokens':30,'total_tokens':130,"
    "'prompt_tokens_details':{'cached_tokens':60},'completion_tokens_details':{'reasoning_tokens':7}}";

TEST(stream_tools_and_reasoning)
{
    char *sse = stream_of(TOOL_DELTAS, "tool_calls", TOOL_USAGE);
    struct pipe p;
    pipe_init(&p);
    pipe_run(&p, sse, 0);
    CHECK_INT(p.first_err, BT_OK);
    struct aclient cl;
    client_read(&cl, p.out.p);
    if (cl.violations) H_FAIL("%d violations, first: %s\n%s", cl.violations, cl.first, p.out.p);
    CHECK(cl.stopped);
    REQUIRE(cl.msg);
    CHECK_STR(jstr(cl.msg, "id"), "msg_chatcmpl-7");
    CHECK_STR(jstr(cl.msg, "model"), "gpt-up");
    CHECK_STR(jstr(cl.msg, "content.0.type"), "thinking");
    CHECK_STR(jstr(cl.msg, "content.0.thinking"), "let me \"think\"");
    CHECK_STR(jstr(cl.msg, "content.1.text"), "Checking \xc3\xa9.");
    CHECK_STR(jstr(cl.msg, "content.2.id"), "call_a");
    CHECK_STR(jstr(cl.msg, "content.2.input.city"), "P\"x");
    CHECK_STR(jstr(cl.msg, "content.3.name"), "time");
    CHECK_STR(jstr(cl.msg, "content.3.input.tz"), "1");
    CHECK_STR(jstr(cl.msg, "stop_reason"), "tool_use");
    CHECK_STR(jstr(cl.msg, "usage.input_tokens"), "40");
    CHECK_STR(jstr(cl.msg, "usage.cache_read_input_tokens"), "60");
    CHECK_STR(jstr(cl.msg, "usage.output_tokens"), "30");
    /* the aggregator gives the same Message */
    int status = 0;
    cJSON *agg = agg_json(&p, &status);
    CHECK_INT(status, 200);
    REQUIRE(agg);
    CHECK(cJSON_Compare(cJSON_GetObjectItem(agg, "content"), cJSON_GetObjectItem(cl.msg, "content"), 1));
    CHECK_STR(jstr(agg, "stop_reason"), "tool_use");
    CHECK_STR(jstr(agg, "usage.input_tokens"), "40");
    CHECK_STR(jstr(agg, "id"), "msg_chatcmpl-7");
    cJSON_Delete(agg);
    client_free(&cl);
    pipe_free(&p);
    free(sse);
}

TEST(stream_split_at_every_byte)
{
    char *sse = stream_of(TOOL_DELTAS, "tool_calls", TOOL_USAGE);
    struct pipe whole;
    pipe_init(&whole);
    pipe_run(&whole, sse, 0);
    size_t n = strlen(sse);
    int differ = 0;
    for (size_t cut = 1; cut < n; cut++) {
        struct pipe p;
        pipe_init(&p);
        pipe_run(&p, sse, cut);
        if (p.out.len != whole.out.len || memcmp(p.out.p, whole.out.p, p.out.len) != 0) differ++;
        pipe_free(&p);
    }
    CHECK_INT(differ, 0);
    pipe_free(&whole);
    free(sse);
}

TEST(stream_bounded_output)
{
    /* an output buffer that fills: the event is refused whole and fed again */
    char *sse = stream_of(TOOL_DELTAS, "tool_calls", TOOL_USAGE);
    struct pipe big;
    pipe_init(&big);
    pipe_run(&big, sse, 0);
    struct pipe p;
    pipe_init(&p);
    bt_buf_free(&p.out);
    bt_buf_init(&p.out, 64);
    struct bt_buf all;
    bt_buf_init(&all, 1u << 20);
    /* drive events by hand: flush into `all` whenever the encoder says full */
    struct bt_event evs[] = {
        {.type = BT_EV_START, .id = BT_STR("c1"), .name = BT_STR("m")},
        {.type = BT_EV_TEXT, .text = BT_STR("hello there, a longer text delta")},
        {.type = BT_EV_TOOL_START, .tool_index = 0, .id = BT_STR("t"), .name = BT_STR("f")},
        {.type = BT_EV_TOOL_ARGS, .tool_index = 0, .text = BT_STR("{}")},
        {.type = BT_EV_DONE},
    };
    struct bt_anthropic_stream *ref = malloc(sizeof(*ref));
    bt_anthropic_stream_init(ref, &OPTS);
    struct bt_buf refout;
    bt_buf_init(&refout, 1u << 20);
    int full = 0;
    for (size_t i = 0; i < sizeof(evs) / sizeof(evs[0]); i++) {
        CHECK_INT(bt_anthropic_stream_event(ref, &evs[i], &refout), BT_OK);
        for (;;) {
            enum bt_err err = bt_anthropic_stream_event(p.enc, &evs[i], &p.out);
            if (err == BT_ETOOBIG || err == BT_ENOMEM) {
                full++;
                bt_buf_append(&all, p.out.p, p.out.len);
                if (!p.out.len) {
                    bt_buf_free(&p.out);
                    bt_buf_init(&p.out, 1u << 16); /* one event bigger than the buffer */
                }
                bt_buf_reset(&p.out);
                continue;
            }
            CHECK_INT(err, BT_OK);
            break;
        }
    }
    bt_buf_append(&all, p.out.p, p.out.len);
    CHECK(full > 0);
    CHECK_INT(all.len, refout.len);
    CHECK(all.len == refout.len && memcmp(all.p, refout.p, all.len) == 0);
    bt_buf_free(&all);
    bt_buf_free(&refout);
    free(ref);
    pipe_free(&p);
    pipe_free(&big);
    free(sse);
}

TEST(stream_error_and_protocol_faults)
{
    /* an error chunk after content: event: error, no message_stop */
    char *c1 = chunk("{'role':'assistant','content':'par'}", "null");
    char *e = jq("data: {'error':{'message':'boom \\'x\\'','type':'rate_limit_error','code':'rate_limit_exceeded'}}\n\n");
    size_t n = strlen(c1) + strlen(e) + 1;
    char *sse = malloc(n);
    snprintf(sse, n, "%s%s", c1, e);
    struct pipe p;
    pipe_init(&p);
    pipe_run(&p, sse, 0);
    struct aclient cl;
    client_read(&cl, p.out.p);
    CHECK_INT(cl.violations, 0);
    CHECK_STR(cl.error_type, "rate_limit_error");
    CHECK(strstr(p.out.p, "message_stop") == NULL);
    CHECK(strstr(p.out.p, "boom \\\"x\\\"") != NULL);
    int status = 0;
    cJSON *agg = agg_json(&p, &status);
    CHECK_INT(status, 429);
    CHECK_STR(jstr(agg, "error.type"), "rate_limit_error");
    CHECK_STR(jstr(agg, "type"), "error");
    cJSON_Delete(agg);
    client_free(&cl);
    pipe_free(&p);
    free(sse);
    free(c1);
    free(e);

    /* arguments of a call never started: an api_error event, BT_EPROTO */
    pipe_init(&p);
    struct bt_event bad = {.type = BT_EV_TOOL_ARGS, .tool_index = 3, .text = BT_STR("{}")};
    CHECK_INT(bt_anthropic_stream_event(p.enc, &bad, &p.out), BT_EPROTO);
    bt_buf_cstr(&p.out);
    client_read(&cl, p.out.p);
    CHECK_STR(cl.error_type, "api_error");
    CHECK(bt_anthropic_stream_ended(p.enc));
    client_free(&cl);
    CHECK_INT(bt_anthropic_agg_event(&p.agg, &bad), BT_EPROTO);
    pipe_free(&p);

    /* an empty stream still makes a valid message; a stream end with no finish
     * after tool calls says tool_use */
    pipe_init(&p);
    CHECK_INT(bt_anthropic_stream_event(p.enc, &(struct bt_event){.type = BT_EV_DONE}, &p.out), BT_OK);
    bt_buf_cstr(&p.out);
    client_read(&cl, p.out.p);
    CHECK_INT(cl.violations, 0);
    CHECK(cl.stopped && cl.msg);
    CHECK_STR(jstr(cl.msg, "id"), "msg_baton");
    CHECK_STR(jstr(cl.msg, "model"), "claude-x");
    CHECK_STR(jstr(cl.msg, "stop_reason"), "end_turn");
    client_free(&cl);
    pipe_free(&p);
}

TEST(finish_and_error_mapping)
{
    static const struct {
        const char *finish, *want;
    } cases[] = {{"stop", "end_turn"},
                 {"length", "max_tokens"},
                 {"tool_calls", "tool_use"},
                 {"content_filter", "refusal"},
                 {"weird", "end_turn"}};
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const char *deltas[] = {"{'role':'assistant','content':'x'}", NULL};
        char *sse = stream_of(deltas, cases[i].finish, NULL);
        struct pipe p;
        pipe_init(&p);
        pipe_run(&p, sse, 0);
        struct aclient cl;
        client_read(&cl, p.out.p);
        CHECK_INT(cl.violations, 0);
        if (cl.msg && strcmp(jstr(cl.msg, "stop_reason"), cases[i].want) != 0)
            H_FAIL("%s -> %s", cases[i].finish, jstr(cl.msg, "stop_reason"));
        client_free(&cl);
        pipe_free(&p);
        free(sse);
    }
    CHECK_STR(bt_anthropic_error_type(400, BT_OUTCOME_OK), "invalid_request_error");
    CHECK_STR(bt_anthropic_error_type(401, BT_OUTCOME_OK), "authentication_error");
    CHECK_STR(bt_anthropic_error_type(403, BT_OUTCOME_OK), "permission_error");
    CHECK_STR(bt_anthropic_error_type(404, BT_OUTCOME_OK), "not_found_error");
    CHECK_STR(bt_anthropic_error_type(413, BT_OUTCOME_OK), "request_too_large");
    CHECK_STR(bt_anthropic_error_type(429, BT_OUTCOME_OK), "rate_limit_error");
    CHECK_STR(bt_anthropic_error_type(502, BT_OUTCOME_SERVER_ERROR), "api_error");
    CHECK_STR(bt_anthropic_error_type(502, BT_OUTCOME_RATE_LIMIT), "rate_limit_error");
    CHECK_STR(bt_anthropic_error_type(504, BT_OUTCOME_TIMEOUT), "timeout_error");
    CHECK_STR(bt_anthropic_error_type(529, BT_OUTCOME_OK), "overloaded_error");
    CHECK_STR(bt_anthropic_error_type(400, BT_OUTCOME_CONTEXT_WINDOW), "invalid_request_error");
    CHECK_INT(bt_anthropic_outcome_status(BT_OUTCOME_BAD_REQUEST), 400);
    CHECK_INT(bt_anthropic_outcome_status(BT_OUTCOME_SERVER_ERROR), 502);
}

TEST(reply_from_whole_openai_reply)
{
    /* a whole chat.completion gives the same Message through the aggregator */
    char *body = jq("{'id':'chatcmpl-w','object':'chat.completion','created':1,'model':'gpt-up',"
                    "'choices':[{'index':0,'message':{'role':'assistant','content':'hi',"
                    "'reasoning_content':'r','tool_calls':[{'id':'c1','type':'function',"
                    "'function':{'name':'f','arguments':'{\\'a\\':[1,2]}'}}]},'finish_reason':'tool_calls'}],"
                    "'usage':{'prompt_tokens':5,'completion_tokens':2,'total_tokens':7}}");
    struct bt_arena a;
    bt_arena_init(&a, 4096, 1u << 20);
    struct bt_json_doc doc;
    REQUIRE(bt_json_parse(&doc, body, strlen(body), &a, NULL, NULL) == BT_OK);
    struct bt_anthropic_agg agg;
    bt_anthropic_agg_init(&agg, &OPTS, 1u << 20);
    bt_openai_reply_events(&doc, bt_anthropic_agg_cb, &agg);
    struct bt_buf out;
    bt_buf_init(&out, 1u << 20);
    int status = 0;
    CHECK_INT(bt_anthropic_agg_write(&agg, &out, &status), BT_OK);
    bt_buf_cstr(&out);
    cJSON *j = cJSON_Parse(out.p);
    REQUIRE(j);
    CHECK_STR(jstr(j, "content.0.thinking"), "r");
    CHECK_STR(jstr(j, "content.1.text"), "hi");
    CHECK_STR(jstr(j, "content.2.input.a.1"), "2");
    CHECK_STR(jstr(j, "stop_reason"), "tool_use");
    CHECK_STR(jstr(j, "usage.input_tokens"), "5");
    cJSON_Delete(j);
    bt_anthropic_agg_free(&agg);

    /* arguments that are not a JSON object cannot become an `input` */
    bt_anthropic_agg_init(&agg, &OPTS, 1u << 20);
    bt_anthropic_agg_event(&agg, &(struct bt_event){.type = BT_EV_TOOL_START, .id = BT_STR("c"), .name = BT_STR("f")});
    bt_anthropic_agg_event(&agg, &(struct bt_event){.type = BT_EV_TOOL_ARGS, .text = BT_STR("[1")});
    bt_buf_reset(&out);
    CHECK_INT(bt_anthropic_agg_write(&agg, &out, &status), BT_EPROTO);
    bt_anthropic_agg_free(&agg);
    bt_buf_free(&out);
    bt_arena_free(&a);
    free(body);
}

int main(void)
{
    RUN(decode_every_block);
    RUN(decode_refusals);
    RUN(openai_body_from_anthropic);
    RUN(openai_body_refusals);
    RUN(stream_tools_and_reasoning);
    RUN(stream_split_at_every_byte);
    RUN(stream_bounded_output);
    RUN(stream_error_and_protocol_faults);
    RUN(finish_and_error_mapping);
    RUN(reply_from_whole_openai_reply);
    return HARNESS_DONE();
}
