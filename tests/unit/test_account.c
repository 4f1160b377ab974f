#include "harness.h"

#include <stdlib.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "account/access.h"
#include "core/log.h"

static char *read_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    static char buf[8192];
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = 0;
    return buf;
}

TEST(access_line_is_json_with_every_field)
{
    char path[] = "/tmp/bt-access-XXXXXX";
    int fd = mkstemp(path);
    REQUIRE(fd >= 0);
    close(fd);
    REQUIRE(bt_log_access_open(path) == 0);
    struct bt_access_rec rec = {
        .id = "req-1",
        .method = BT_STR("POST"),
        .path = BT_STR("/v1/chat/completions"),
        .model = BT_STR("chat \"quoted\" 모델"),
        .deployment = "openai/gpt-4o-mini",
        .status = 200,
        .latency_ns = 12345678,
        .ttft_ns = 2500000,
        .attempts = 2,
        .stream = true,
        .usage = {.present = true, .prompt_tokens = 11, .completion_tokens = 7, .total_tokens = 18},
        .finish = BT_FINISH_TOOL_CALLS,
    };
    bt_access_write(&rec);
    struct bt_access_rec err = {.id = "req-2", .method = BT_STR("GET"), .path = BT_STR("/x"),
                                .status = 404, .error = "no \"such\" url\n"};
    bt_access_write(&err);
    bt_log_access_open(NULL);
    char *text = read_file(path);
    unlink(path);
    REQUIRE(text);
    char *nl = strchr(text, '\n');
    REQUIRE(nl);
    *nl = 0;
    cJSON *a = cJSON_Parse(text);
    cJSON *b = cJSON_Parse(nl + 1);
    REQUIRE(a && b);
    CHECK_STR(cJSON_GetObjectItem(a, "id")->valuestring, "req-1");
    CHECK_STR(cJSON_GetObjectItem(a, "model")->valuestring, "chat \"quoted\" 모델");
    CHECK_STR(cJSON_GetObjectItem(a, "deployment")->valuestring, "openai/gpt-4o-mini");
    CHECK_INT(cJSON_GetObjectItem(a, "status")->valueint, 200);
    CHECK(cJSON_GetObjectItem(a, "latency_ms")->valuedouble > 12.3 &&
          cJSON_GetObjectItem(a, "latency_ms")->valuedouble < 12.4);
    CHECK(cJSON_GetObjectItem(a, "ttft_ms")->valuedouble == 2.5);
    CHECK(cJSON_IsTrue(cJSON_GetObjectItem(a, "stream")));
    CHECK_INT(cJSON_GetObjectItem(a, "attempts")->valueint, 2);
    CHECK_INT(cJSON_GetObjectItem(a, "prompt_tokens")->valueint, 11);
    CHECK_INT(cJSON_GetObjectItem(a, "completion_tokens")->valueint, 7);
    CHECK_STR(cJSON_GetObjectItem(a, "finish_reason")->valuestring, "tool_calls");
    CHECK(cJSON_GetObjectItem(a, "error") == NULL);
    CHECK(cJSON_IsNull(cJSON_GetObjectItem(b, "deployment")));
    CHECK(cJSON_IsNull(cJSON_GetObjectItem(b, "ttft_ms")));
    CHECK_STR(cJSON_GetObjectItem(b, "error")->valuestring, "no \"such\" url\n");
    CHECK_STR(cJSON_GetObjectItem(b, "model")->valuestring, "");
    cJSON_Delete(a);
    cJSON_Delete(b);
}

int main(void)
{
    RUN(access_line_is_json_with_every_field);
    return HARNESS_DONE();
}
