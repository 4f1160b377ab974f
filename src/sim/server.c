/* `baton sim --listen` (server.h): relays each HTTP request to a simulated call
 * and its callbacks to the HTTP response. */
#include "sim/server.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "http/server.h"
#include "sim/sim.h"

struct sim_server {
    uv_loop_t *loop;
    const struct bt_sim_cfg *cfg;
    enum bt_api wire; /* the wire format it speaks at /v1 */
    struct bt_http_server *http;
    uv_signal_t sigterm, sigint;
    uint64_t requests, cancelled, active;
};

/* One request relayed from the simulator to an HTTP client. */
struct sim_req {
    struct sim_server *srv;
    struct bt_http_req *hreq;
    struct bt_sim_call *call;
    bool begun;
};

static void sreq_finish(struct sim_req *r)
{
    r->srv->active--;
    free(r);
}

static void s_head(void *ud, int status, const struct bt_http_header *hs, size_t n)
{
    struct sim_req *r = ud;
    struct bt_http_header extra[16];
    size_t ne = 0;
    struct bt_str ctype = BT_STR("application/json");
    for (size_t i = 0; i < n && ne < 16; i++) {
        if (bt_str_caseeq_c(hs[i].name, "content-type")) ctype = hs[i].value;
        else extra[ne++] = hs[i];
    }
    r->begun = true;
    if (bt_http_stream_begin(r->hreq, status, extra, ne, ctype) == BT_OK) return;
    /* The request is finished (refused head, client gone): stop the call; the
     * simulator sends nothing more once cancelled, even from inside this callback. */
    bt_sim_cancel(r->call);
    sreq_finish(r);
}

static void s_data(void *ud, const char *p, size_t n)
{
    struct sim_req *r = ud;
    if (bt_http_stream_write(r->hreq, (struct bt_str){p, n}) == BT_OK) return;
    bt_sim_cancel(r->call); /* the client is gone: no s_done will come */
    r->call = NULL;
    bt_http_reset(r->hreq);
    sreq_finish(r);
}

static void s_done(void *ud, enum bt_err err, const char *detail)
{
    (void)detail;
    struct sim_req *r = ud;
    r->call = NULL;
    if (err || !r->begun) bt_http_reset(r->hreq);
    else bt_http_stream_end(r->hreq);
    sreq_finish(r);
}

static const struct bt_up_callbacks sim_cbs = {s_head, s_data, s_done, NULL};

static void s_abort(struct bt_http_req *req, void *ud)
{
    (void)req;
    struct sim_req *r = ud;
    r->srv->cancelled++;
    if (r->call) bt_sim_cancel(r->call);
    sreq_finish(r);
}

static void respond(struct bt_http_req *req, int status, struct bt_str body)
{
    enum bt_err err = bt_http_respond(req, status, NULL, 0, BT_STR("application/json"), body);
    (void)err; /* the request is finished either way */
}

/* One of the server's own errors, in the shape of the wire it speaks. */
static void respond_error(struct sim_server *s, struct bt_http_req *req, enum bt_sim_error e)
{
    struct bt_sim_reply r;
    bt_sim_reply_init(&r);
    bt_sim_renderer_find(s->wire)->render_error(&r, e);
    respond(req, r.status, bt_buf_str(&r.body));
    bt_sim_reply_free(&r);
}

static void handle(struct bt_http_req *req, void *ud)
{
    struct sim_server *s = ud;
    if (bt_str_eq_c(req->path, "/sim/stats")) {
        char body[256];
        int n = snprintf(body, sizeof(body),
                         "{\"connections\":%llu,\"requests\":%llu,\"cancelled\":%llu,\"active\":%llu}",
                         (unsigned long long)bt_http_server_accepted(s->http),
                         (unsigned long long)s->requests, (unsigned long long)s->cancelled,
                         (unsigned long long)s->active);
        respond(req, 200, (struct bt_str){body, (size_t)n});
        return;
    }
    if (bt_str_eq_c(req->path, "/health/live") || bt_str_eq_c(req->path, "/health/ready")) {
        respond(req, 200, BT_STR("{\"status\":\"ok\"}"));
        return;
    }
    s->requests++;
    /* The wire by the path: Anthropic's /v1/messages and Gemini's /v1beta are
     * passed whole (the renderers own those paths), OpenAI's /v1 is stripped. */
    enum bt_api wire = s->wire;
    size_t strip = 3;
    if (bt_str_eq_c(req->path, "/v1/messages")) {
        wire = BT_API_ANTHROPIC;
        strip = 0;
    } else if (bt_str_starts_with(req->path, BT_STR("/v1beta/"))) {
        wire = BT_API_GEMINI;
        strip = 0;
    } else if (!bt_str_starts_with(req->path, BT_STR("/v1/"))) {
        respond_error(s, req, BT_SIM_ERR_UNKNOWN_URL);
        return;
    }
    int fault = -1;
    struct bt_str f = bt_http_header_get(req, "x-sim-fault");
    if (f.p) {
        fault = bt_sim_fault_parse(bt_str_trim(f));
        if (fault < 0) {
            respond_error(s, req, BT_SIM_ERR_BAD_FAULT);
            return;
        }
    }
    struct sim_req *r = calloc(1, sizeof(*r));
    if (!r) {
        bt_http_reset(req);
        return;
    }
    r->srv = s;
    r->hreq = req;
    s->active++;
    /* Gemini's method and alt=sse sit in the query: the renderer reads them */
    char target[2048];
    struct bt_str path = {req->path.p + strip, req->path.len - strip};
    if (wire == BT_API_GEMINI && req->query.len) {
        int n = snprintf(target, sizeof target, "%.*s?%.*s", BT_STR_FMT(path),
                         BT_STR_FMT(req->query));
        if (n > 0 && (size_t)n < sizeof target) path = (struct bt_str){target, (size_t)n};
    }
    struct bt_sim_request sr = {
        .method = req->method,
        .path = path,
        .body = req->body,
        .fault = fault,
    };
    bt_http_on_abort(req, s_abort, r);
    r->call = bt_sim_start(s->loop, wire, s->cfg, &sr, &sim_cbs, r);
    if (!r->call) {
        bt_http_reset(req);
        sreq_finish(r);
    }
}

static void on_signal(uv_signal_t *sig, int signum)
{
    (void)signum;
    struct sim_server *s = sig->data;
    uv_signal_stop(&s->sigterm);
    uv_signal_stop(&s->sigint);
    bt_http_server_close(s->http, NULL, NULL);
}

static void close_walk(uv_handle_t *h, void *arg)
{
    (void)arg;
    if (!uv_is_closing(h)) uv_close(h, NULL);
}

int bt_sim_serve_main(const char *host, uint16_t port, const struct bt_sim_cfg *cfg,
                      uint32_t workers)
{
    (void)workers;
    signal(SIGPIPE, SIG_IGN);
    struct sim_server s;
    memset(&s, 0, sizeof(s));
    s.loop = uv_default_loop();
    s.cfg = cfg;
    s.wire = BT_API_OPENAI; /* at /v1; /v1/messages and /v1beta/ choose their own */
    struct bt_http_opts o = {
        .max_header_bytes = 64 * 1024,
        .max_body_bytes = 64u << 20,
        .header_timeout_ms = 30000,
        .idle_timeout_ms = 300000,
        .body_timeout_ms = 30000,
        .max_connections = 100000,
        .handler = handle,
        .handler_ud = &s,
    };
    s.http = bt_http_server_new(s.loop, &o);
    if (!s.http) return 1;
    if (bt_http_server_listen(s.http, host, port, false)) {
        fprintf(stderr, "baton sim: cannot listen on %s:%u\n", host, port);
        bt_http_server_close(s.http, NULL, NULL);
        uv_run(s.loop, UV_RUN_DEFAULT);
        return 1;
    }
    uv_signal_init(s.loop, &s.sigterm);
    uv_signal_init(s.loop, &s.sigint);
    s.sigterm.data = s.sigint.data = &s;
    uv_signal_start(&s.sigterm, on_signal, SIGTERM);
    uv_signal_start(&s.sigint, on_signal, SIGINT);
    bt_info("baton sim listening on http://%s:%u/v1 (seed %llu)", host,
            bt_http_server_port(s.http), (unsigned long long)cfg->seed);
    uv_run(s.loop, UV_RUN_DEFAULT);
    uv_walk(s.loop, close_walk, NULL);
    uv_run(s.loop, UV_RUN_DEFAULT);
    uv_loop_close(s.loop);
    return 0;
}
