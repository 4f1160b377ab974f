/* The canonical model and its OpenAI codecs: finish reasons, outcomes, usage
 * folding; the OpenAI chat request decoder; reply and stream decoding into
 * events; the OpenAI stream encoder and reply aggregator, checked against
 * cJSON (the oracle) and the spec's required fields. */
#include "harness.h"

#include <cjson/cJSON.h>
#include <stdlib.h>

#include "api/openai_chat.h"
#include "canon/chat.h"
#include "canon/event.h"
#include "canon/outcome.h"

/* JSON written with ' for " (so fixtures read without backslashes); malloc'd. */
static char *jq(const char *s)
{
    char *o = strdup(s);
    for (char *p = o; *p; p++)
        if (*p == '\'') *p = '"';
    return o;
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
    return bt_openai_chat_decode(&r->doc, &r->arena, &r->chat, &r->err);
}

static void req_free(struct req *r)
{
    bt_arena_free(&r->arena);
    free(r->body);
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
    CHECK_STR(bt_outcome_name((enum bt_outcome)99), "");
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
                           "'functions':null,'function_call':'auto'}") == BT_OK);
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

int main(void)
{
    RUN(finish_names_round_trip);
    RUN(outcome_names);
    RUN(usage_merge);
    RUN(chat_request_every_part);
    RUN(chat_request_minimal_and_defaults);
    RUN(chat_request_errors);
    RUN(chat_args_helpers);
    return HARNESS_DONE();
}
