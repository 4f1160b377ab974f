/* The front-end interface through its OpenAI implementation (bt_fe_openai): error
 * bodies and in-stream errors from neutral errors, and responses translated from
 * canonical events (a stream begun, encoded and ended cleanly or with an error; a
 * whole reply), read back with cJSON. */
#include "harness.h"

#include <cjson/cJSON.h>
#include <stdlib.h>

#include "api/openai.h"

static cJSON *error_of(const struct bt_error *e)
{
    struct bt_buf b;
    bt_buf_init(&b, 1 << 16);
    const char *ct = bt_fe_openai.error_body(&b, e);
    if (strcmp(ct, "application/json") != 0) H_FAIL("content type %s", ct);
    bt_buf_cstr(&b);
    cJSON *j = cJSON_Parse(b.p);
    bt_buf_free(&b);
    return j;
}

static const char *type_of(const struct bt_error *e, char *buf, size_t cap)
{
    cJSON *j = error_of(e);
    cJSON *t = cJSON_GetObjectItem(cJSON_GetObjectItem(j, "error"), "type");
    snprintf(buf, cap, "%s", cJSON_IsString(t) ? t->valuestring : "(none)");
    cJSON_Delete(j);
    return buf;
}

TEST(error_types)
{
    char buf[64];
    static const struct {
        struct bt_error e;
        const char *type;
    } cases[] = {
        {{.status = 400, .message = {"bad", 3}}, "invalid_request_error"},
        {{.status = 401, .message = {"key", 3}}, "invalid_request_error"},
        {{.status = 403, .message = {"no", 2}}, "permission_error"},
        {{.status = 404, .message = {"no", 2}}, "invalid_request_error"},
        {{.status = 429, .cls = BT_OUTCOME_RATE_LIMIT, .message = {"slow", 4}}, "rate_limit_error"},
        {{.status = 500, .message = {"oom", 3}}, "server_error"},
        {{.status = 503, .message = {"bye", 3}}, "server_error"},
        {{.status = 502, .cls = BT_OUTCOME_SERVER_ERROR, .upstream = true, .message = {"x", 1}},
         "upstream_error"},
        {{.status = 502, .cls = BT_OUTCOME_AUTH, .upstream = true, .message = {"x", 1}},
         "upstream_error"},
        {{.status = 502, .cls = BT_OUTCOME_CONNECTION, .upstream = true, .message = {"x", 1}},
         "upstream_error"},
        {{.status = 504, .cls = BT_OUTCOME_TIMEOUT, .upstream = true, .message = {"x", 1}},
         "timeout_error"},
        {{.status = 502, .upstream = true, .type = {"server_error", 12}, .message = {"x", 1}},
         "server_error"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const char *got = type_of(&cases[i].e, buf, sizeof(buf));
        if (strcmp(got, cases[i].type) != 0)
            H_FAIL("case %zu (status %d, %s): type %s, want %s", i, cases[i].e.status,
                   bt_outcome_name(cases[i].e.cls), got, cases[i].type);
    }
    struct bt_error e = {.status = 400, .message = BT_STR("m \"q\""), .code = "c1", .param = "p1"};
    cJSON *j = error_of(&e);
    cJSON *er = cJSON_GetObjectItem(j, "error");
    CHECK_STR(cJSON_GetObjectItem(er, "message")->valuestring, "m \"q\"");
    CHECK_STR(cJSON_GetObjectItem(er, "code")->valuestring, "c1");
    CHECK_STR(cJSON_GetObjectItem(er, "param")->valuestring, "p1");
    cJSON_Delete(j);
}

TEST(stream_error_event)
{
    struct bt_buf b;
    bt_buf_init(&b, 4096);
    struct bt_error e = {.status = 502, .cls = BT_OUTCOME_SERVER_ERROR, .upstream = true,
                         .message = BT_STR("broke"), .code = "upstream_reset"};
    CHECK_INT(bt_fe_openai.stream_error(&b, &e), BT_OK);
    bt_buf_cstr(&b);
    CHECK(strncmp(b.p, "data: {\"error\":{\"message\":\"broke\"", 33) == 0);
    CHECK(b.len > 2 && strcmp(b.p + b.len - 2, "\n\n") == 0);
    CHECK(strstr(b.p, "[DONE]") == NULL);
    bt_buf_free(&b);
}

/* The JSON of every `data:` event in `sse`, in order; the count in *n. */
static int events(const char *sse, cJSON **out, int cap, bool *done)
{
    int n = 0;
    *done = false;
    for (const char *p = sse; (p = strstr(p, "data: ")) != NULL;) {
        p += 6;
        const char *end = strstr(p, "\n\n");
        if (!end) break;
        if (end - p == 6 && memcmp(p, "[DONE]", 6) == 0) *done = true;
        else if (n < cap) out[n++] = cJSON_ParseWithLength(p, (size_t)(end - p));
        p = end;
    }
    return n;
}

static void feed(void *st, struct bt_buf *out, const struct bt_event *evs, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (bt_fe_openai.stream_event(st, &evs[i], out)) H_FAIL("event %zu refused", i);
}

static const struct bt_event hello[] = {
    {.type = BT_EV_START, .id = {"msg-1", 5}},
    {.type = BT_EV_TEXT, .text = {"Hel", 3}},
    {.type = BT_EV_TEXT, .text = {"lo \\\"x\\\"", 8}},
    {.type = BT_EV_FINISH, .finish = BT_FINISH_STOP},
    {.type = BT_EV_USAGE, .usage = {.present = true, .prompt_tokens = 3, .completion_tokens = 2,
                                    .total_tokens = 5}},
};

TEST(translated_stream)
{
    struct bt_request r = {.include_usage = true};
    void *st = calloc(1, bt_fe_openai.stream_size);
    struct bt_buf out;
    bt_buf_init(&out, 1 << 16);
    bt_fe_openai.stream_begin(st, &r, BT_STR("claude-x"));
    feed(st, &out, hello, sizeof(hello) / sizeof(hello[0]));
    CHECK_INT(bt_fe_openai.stream_end(st, NULL, &out), BT_OK);
    bt_buf_cstr(&out);
    cJSON *ev[16];
    bool done;
    int n = events(out.p, ev, 16, &done);
    CHECK(done);
    REQUIRE(n >= 3);
    CHECK_STR(cJSON_GetObjectItem(ev[0], "object")->valuestring, "chat.completion.chunk");
    CHECK_STR(cJSON_GetObjectItem(ev[0], "model")->valuestring, "claude-x");
    cJSON *d0 = cJSON_GetObjectItem(cJSON_GetArrayItem(cJSON_GetObjectItem(ev[0], "choices"), 0), "delta");
    CHECK_STR(cJSON_GetObjectItem(d0, "role")->valuestring, "assistant");
    char text[64] = "";
    const char *finish = NULL;
    bool usage = false;
    for (int i = 0; i < n; i++) {
        cJSON *c = cJSON_GetArrayItem(cJSON_GetObjectItem(ev[i], "choices"), 0);
        cJSON *t = cJSON_GetObjectItem(cJSON_GetObjectItem(c, "delta"), "content");
        if (cJSON_IsString(t)) strncat(text, t->valuestring, sizeof(text) - strlen(text) - 1);
        cJSON *f = cJSON_GetObjectItem(c, "finish_reason");
        if (cJSON_IsString(f)) finish = f->valuestring;
        cJSON *u = cJSON_GetObjectItem(ev[i], "usage");
        if (cJSON_IsObject(u)) usage = cJSON_GetObjectItem(u, "total_tokens")->valueint == 5;
    }
    CHECK_STR(text, "Hello \"x\"");
    CHECK_STR(finish, "stop");
    CHECK(usage);
    for (int i = 0; i < n; i++) cJSON_Delete(ev[i]);
    bt_buf_free(&out);

    /* the same stream cut by an error: its error event, no [DONE] */
    bt_buf_init(&out, 1 << 16);
    bt_fe_openai.stream_begin(st, &r, BT_STR("m"));
    feed(st, &out, hello, 3);
    struct bt_error e = {.status = 502, .cls = BT_OUTCOME_CONNECTION, .upstream = true,
                         .message = BT_STR("the stream broke \"off\""), .code = "upstream_reset"};
    CHECK_INT(bt_fe_openai.stream_end(st, &e, &out), BT_OK);
    CHECK_INT(bt_fe_openai.stream_end(st, NULL, &out), BT_OK); /* ended: nothing more */
    bt_buf_cstr(&out);
    n = events(out.p, ev, 16, &done);
    CHECK(!done);
    REQUIRE(n >= 1);
    cJSON *er = cJSON_GetObjectItem(ev[n - 1], "error");
    REQUIRE(cJSON_IsObject(er));
    CHECK_STR(cJSON_GetObjectItem(er, "message")->valuestring, "the stream broke \"off\"");
    CHECK_STR(cJSON_GetObjectItem(er, "type")->valuestring, "upstream_error");
    for (int i = 0; i < n; i++) cJSON_Delete(ev[i]);
    bt_buf_free(&out);
    free(st);
}

TEST(translated_reply)
{
    struct bt_request r = {0};
    void *rep = bt_fe_openai.reply_new(&r, BT_STR("gemini-x"), 1 << 20);
    REQUIRE(rep);
    for (size_t i = 0; i < sizeof(hello) / sizeof(hello[0]); i++) bt_fe_openai.reply_event(rep, &hello[i]);
    bt_fe_openai.reply_event(rep, &(struct bt_event){.type = BT_EV_DONE});
    struct bt_buf out;
    bt_buf_init(&out, 1 << 16);
    int status = 0;
    CHECK_INT(bt_fe_openai.reply_write(rep, &out, &status), BT_OK);
    CHECK_INT(status, 200);
    bt_buf_cstr(&out);
    cJSON *j = cJSON_Parse(out.p);
    REQUIRE(j);
    CHECK_STR(cJSON_GetObjectItem(j, "object")->valuestring, "chat.completion");
    cJSON *msg = cJSON_GetObjectItem(cJSON_GetArrayItem(cJSON_GetObjectItem(j, "choices"), 0), "message");
    CHECK_STR(cJSON_GetObjectItem(msg, "content")->valuestring, "Hello \"x\"");
    CHECK_INT(cJSON_GetObjectItem(cJSON_GetObjectItem(j, "usage"), "total_tokens")->valueint, 5);
    cJSON_Delete(j);
    bt_buf_free(&out);
    bt_fe_openai.reply_free(rep);
}

int main(void)
{
    RUN(error_types);
    RUN(stream_error_event);
    RUN(translated_stream);
    RUN(translated_reply);
    return HARNESS_DONE();
}
