/* The request path as one piece, in process: the path table, then identify ->
 * decode -> admit -> route -> exec against the simulator, on a worker opened as
 * `baton serve` opens one (bt_worker_open), answering real HTTP over loopback.
 * Each stage's refusal is checked to come from that stage, in that order. */
#include "harness.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/log.h"
#include "serve/worker.h"

static const char config_yaml[] =
    "auth: {master_key: \"sk-pipeline-master\"}\n"
    "providers:\n"
    "  ok: {type: sim, seed: 3}\n"
    "  f500: {type: sim, faults: {500: 1}}\n"
    "  f400: {type: sim}\n"
    "models:\n"
    "  demo: {provider: ok}\n"
    "  broken: {provider: f500, model: b}\n"
    "  group:\n"
    "    deployments:\n"
    "      - {provider: f500, model: first}\n"
    "      - {provider: ok, model: second}\n";

static struct {
    struct bt_worker w;
    pthread_t th;
    uv_async_t stop;
    uint16_t port;
} F;

static void on_stop(uv_async_t *a)
{
    bt_worker_close(&F.w);
    uv_close((uv_handle_t *)a, NULL);
}

static void *loop_main(void *arg)
{
    (void)arg;
    uv_run(&F.w.loop, UV_RUN_DEFAULT);
    return NULL;
}

static bool start(void)
{
    bt_log_set_level(BT_LOG_ERROR);
    if (bt_log_access_open("/dev/null")) return false;
    struct bt_config_diags d = {0};
    struct bt_config *cfg = NULL;
    enum bt_err err = bt_config_load_string("pipeline.yaml", config_yaml, strlen(config_yaml), &cfg, &d);
    if (err) bt_config_diags_print(&d, stderr);
    bt_config_diags_free(&d);
    if (err) return false;
    memset(&F.w, 0, sizeof(F.w));
    uv_loop_init(&F.w.loop);
    F.w.cfg = cfg;
    struct bt_metrics_opts mo = {.shards = 1};
    if (bt_metrics_create(&mo, &F.w.metrics)) return false;
    F.w.mshard = bt_metrics_shard(F.w.metrics, 0);
    if (bt_worker_open(&F.w, NULL) || bt_http_server_listen(F.w.http, "127.0.0.1", 0, false))
        return false;
    F.port = bt_http_server_port(F.w.http);
    uv_async_init(&F.w.loop, &F.stop, on_stop);
    return pthread_create(&F.th, NULL, loop_main, NULL) == 0;
}

static void stop(void)
{
    uv_async_send(&F.stop);
    pthread_join(F.th, NULL);
    CHECK_INT(uv_loop_close(&F.w.loop), 0);
    CHECK(F.w.execs == NULL); /* nothing left in flight */
    bt_config_unref(F.w.cfg);
    bt_metrics_free(F.w.metrics);
    bt_log_access_open(NULL);
}

struct resp {
    int status;
    char head[4096];
    char body[16384];
};

/* One request on its own connection (Connection: close); the whole response. */
static bool call(const char *method, const char *path, const char *key, const char *body,
                 struct resp *r)
{
    memset(r, 0, sizeof(*r));
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(F.port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof(a))) return false;
    char req[8192];
    int n = snprintf(req, sizeof(req),
                     "%s %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n%s%s%s"
                     "Content-Type: application/json\r\nContent-Length: %zu\r\n\r\n%s",
                     method, path, key ? "Authorization: Bearer " : "", key ? key : "",
                     key ? "\r\n" : "", body ? strlen(body) : 0, body ? body : "");
    if (write(fd, req, (size_t)n) != n) return false;
    static char buf[1 << 16];
    size_t got = 0;
    ssize_t k;
    while (got < sizeof(buf) - 1 && (k = read(fd, buf + got, sizeof(buf) - 1 - got)) > 0)
        got += (size_t)k;
    close(fd);
    buf[got] = 0;
    char *end = strstr(buf, "\r\n\r\n");
    if (!end || sscanf(buf, "HTTP/1.1 %d", &r->status) != 1) return false;
    snprintf(r->head, sizeof(r->head), "%.*s", (int)(end - buf), buf);
    snprintf(r->body, sizeof(r->body), "%s", end + 4);
    return true;
}

static bool has(const struct resp *r, const char *needle)
{
    return strstr(r->head, needle) || strstr(r->body, needle);
}

#define KEY "sk-pipeline-master"
#define CHAT(model) "{\"model\":\"" model "\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}"

TEST(stages_in_order)
{
    REQUIRE(start());
    struct resp r;
    /* identify comes before decode: no key and a broken body is a 401 */
    REQUIRE(call("POST", "/v1/chat/completions", NULL, "{broken", &r));
    CHECK_INT(r.status, 401);
    CHECK(has(&r, "\"code\":\"invalid_api_key\""));
    /* with the key, decode refuses the body */
    REQUIRE(call("POST", "/v1/chat/completions", KEY, "{broken", &r));
    CHECK_INT(r.status, 400);
    CHECK(has(&r, "\"type\":\"invalid_request_error\""));
    REQUIRE(call("POST", "/v1/chat/completions", KEY, "{\"model\":\"demo\"}", &r));
    CHECK_INT(r.status, 400);
    CHECK(has(&r, "\"param\":\"messages\""));
    /* route: a name nothing matches */
    REQUIRE(call("POST", "/v1/chat/completions", KEY, CHAT("nosuch"), &r));
    CHECK_INT(r.status, 404);
    CHECK(has(&r, "\"code\":\"model_not_found\""));
    CHECK(has(&r, "x-baton-attempts: 0"));
    /* exec: served by the simulator */
    REQUIRE(call("POST", "/v1/chat/completions", KEY, CHAT("demo"), &r));
    CHECK_INT(r.status, 200);
    CHECK(has(&r, "x-baton-deployment: ok/demo"));
    CHECK(has(&r, "\"object\":\"chat.completion\""));
    /* a direct provider/model id */
    REQUIRE(call("POST", "/v1/embeddings", KEY, "{\"model\":\"ok/emb\",\"input\":\"x\"}", &r));
    CHECK_INT(r.status, 200);
    CHECK(has(&r, "x-baton-deployment: ok/emb"));
    stop();
}

TEST(exec_falls_over_by_class)
{
    REQUIRE(start());
    struct resp r;
    /* a server error alone: 502 in the client's shape, one attempt */
    REQUIRE(call("POST", "/v1/chat/completions", KEY, CHAT("broken"), &r));
    CHECK_INT(r.status, 502);
    CHECK(has(&r, "\"type\":\"upstream_error\""));
    CHECK(has(&r, "x-baton-attempts: 1"));
    /* in a group the next deployment answers; the rotation puts the broken one
     * first in one request of two */
    int fell = 0;
    for (int i = 0; i < 2; i++) {
        REQUIRE(call("POST", "/v1/chat/completions", KEY, CHAT("group"), &r));
        CHECK_INT(r.status, 200);
        CHECK(has(&r, "x-baton-deployment: ok/second"));
        if (has(&r, "x-baton-attempts: 2")) fell++;
    }
    CHECK_INT(fell, 1);
    stop();
}

TEST(path_table)
{
    REQUIRE(start());
    struct resp r;
    REQUIRE(call("GET", "/health/live", NULL, NULL, &r));
    CHECK_INT(r.status, 200);
    REQUIRE(call("GET", "/health/ready", NULL, NULL, &r));
    CHECK_INT(r.status, 200);
    REQUIRE(call("GET", "/metrics", NULL, NULL, &r));
    CHECK_INT(r.status, 200);
    CHECK(has(&r, "baton_build_info"));
    REQUIRE(call("GET", "/v1/models", NULL, NULL, &r));
    CHECK_INT(r.status, 401); /* the API's URLs need the key, even to list */
    REQUIRE(call("GET", "/v1/models", KEY, NULL, &r));
    CHECK_INT(r.status, 200);
    CHECK(has(&r, "\"id\":\"group\""));
    REQUIRE(call("GET", "/v1/models/ok%2Fx", KEY, NULL, &r));
    CHECK_INT(r.status, 200);
    CHECK(has(&r, "\"owned_by\":\"ok\""));
    REQUIRE(call("DELETE", "/v1/chat/completions", KEY, NULL, &r));
    CHECK_INT(r.status, 405);
    CHECK(has(&r, "\"code\":\"method_not_allowed\""));
    REQUIRE(call("GET", "/v1/nope", NULL, NULL, &r));
    CHECK_INT(r.status, 401); /* an unknown caller learns nothing about URLs */
    REQUIRE(call("GET", "/v1/nope", KEY, NULL, &r));
    CHECK_INT(r.status, 404);
    CHECK(has(&r, "\"code\":\"unknown_url\""));
    REQUIRE(call("GET", "/elsewhere", NULL, NULL, &r));
    CHECK_INT(r.status, 404);
    REQUIRE(call("POST", "/admin/reload", NULL, NULL, &r));
    CHECK_INT(r.status, 401);
    REQUIRE(call("POST", "/admin/nope", KEY, NULL, &r));
    CHECK_INT(r.status, 404);
    stop();
}

int main(void)
{
    RUN(stages_in_order);
    RUN(exec_falls_over_by_class);
    RUN(path_table);
    return HARNESS_DONE();
}
