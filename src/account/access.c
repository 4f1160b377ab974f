#include "account/access.h"

#include "core/buf.h"
#include "core/log.h"
#include "core/time.h"
#include "json/json.h"

void bt_access_write(const struct bt_access_rec *rec)
{
    struct bt_buf b;
    bt_buf_init(&b, 16384);
    struct bt_jw w;
    bt_jw_init(&w, &b);
    bt_jw_obj_begin(&w);
    bt_jw_key(&w, "ts");
    bt_jw_int(&w, bt_unix_time());
    bt_jw_key(&w, "id");
    bt_jw_cstr(&w, rec->id ? rec->id : "");
    bt_jw_key(&w, "method");
    bt_jw_str(&w, rec->method);
    bt_jw_key(&w, "path");
    bt_jw_str(&w, rec->path);
    bt_jw_key(&w, "model");
    bt_jw_str(&w, rec->model);
    bt_jw_key(&w, "deployment");
    if (rec->deployment) bt_jw_cstr(&w, rec->deployment);
    else bt_jw_null(&w);
    bt_jw_key(&w, "status");
    bt_jw_int(&w, rec->status);
    bt_jw_key(&w, "latency_ms");
    bt_jw_decimal(&w, (int64_t)(rec->latency_ns / 1000), 3); /* µs as ms: no printf, no strtod */
    bt_jw_key(&w, "ttft_ms");
    if (rec->ttft_ns) bt_jw_decimal(&w, (int64_t)(rec->ttft_ns / 1000), 3);
    else bt_jw_null(&w);
    bt_jw_key(&w, "stream");
    bt_jw_bool(&w, rec->stream);
    bt_jw_key(&w, "attempts");
    bt_jw_int(&w, rec->attempts);
    bt_jw_key(&w, "prompt_tokens");
    bt_jw_int(&w, rec->usage.prompt_tokens);
    bt_jw_key(&w, "completion_tokens");
    bt_jw_int(&w, rec->usage.completion_tokens);
    bt_jw_key(&w, "total_tokens");
    bt_jw_int(&w, rec->usage.total_tokens);
    if (rec->usage.estimated) {
        bt_jw_key(&w, "usage_estimated");
        bt_jw_bool(&w, true);
    }
    if (rec->cost_known) { /* USD, the same decimal as x-baton-cost-usd */
        bt_jw_key(&w, "cost_usd");
        bt_jw_decimal(&w, rec->cost_pusd, 12);
    }
    if (rec->finish) {
        bt_jw_key(&w, "finish_reason");
        bt_jw_cstr(&w, bt_finish_name(rec->finish));
    }
    if (rec->error) {
        bt_jw_key(&w, "error");
        bt_jw_cstr(&w, rec->error);
    }
    if (rec->key_id) {
        bt_jw_key(&w, "key_id");
        bt_jw_cstr(&w, rec->key_id);
    }
    bt_jw_obj_end(&w);
    if (!w.err) bt_log_access(b.p, b.len);
    bt_buf_free(&b);
    if (rec->metrics) {
        struct bt_metrics_req m = {
            .model = rec->metric_model,
            .deployment = rec->metric_deployment,
            .status = rec->status,
            .latency_ns = rec->latency_ns,
            .ttft_ns = rec->ttft_ns,
            .tokens_in = rec->usage.present ? rec->usage.prompt_tokens : -1,
            .tokens_out = rec->usage.present ? rec->usage.completion_tokens : -1,
        };
        bt_metrics_request_done(rec->metrics, &m);
    }
}
