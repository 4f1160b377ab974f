/* The provider layer's own part: which adapter speaks for a provider, whether it
 * can be tried, and the transport an attempt goes over. Adapters (openai.c, ...)
 * know their wire; this file knows how a provider is reached. */
#include "provider/provider.h"

#include <stdio.h>
#include <string.h>

#include "provider/anthropic.h"
#include "provider/gemini.h"
#include "provider/openai.h"
#include "provider/openai_azure.h"
#include "sim/sim.h"

const struct bt_adapter *bt_adapter_for(const struct bt_provider *p)
{
    enum bt_provider_type t = p->type == BT_PROVIDER_SIM && p->sim_wire ? p->sim_wire : p->type;
    switch (t) {
    case BT_PROVIDER_ANTHROPIC: return &bt_adapter_anthropic;
    case BT_PROVIDER_GEMINI: return &bt_adapter_gemini;
    case BT_PROVIDER_AZURE: return &bt_adapter_azure;
    case BT_PROVIDER_OPENAI:
    case BT_PROVIDER_SIM: /* the simulator renders the OpenAI wire unless `wire:` says */
        break;
    }
    return &bt_adapter_openai;
}

bool bt_provider_ready(const struct bt_provider *p, char *msg, size_t msgcap)
{
    if (p->type == BT_PROVIDER_SIM || !p->api_key_required || p->api_key) return true;
    if (p->api_key_env)
        snprintf(msg, msgcap, "provider %s has no API key configured (%s is not set)", p->name,
                 p->api_key_env);
    else
        snprintf(msg, msgcap, "provider %s has no API key configured", p->name);
    return false;
}

enum bt_err bt_provider_encode(const struct bt_provider *p, const struct bt_request *r,
                               struct bt_str upstream_model, struct bt_arena *arena,
                               struct bt_pbody *out, bool *added_usage)
{
    out->nfwd = 0;
    if (p->type != BT_PROVIDER_SIM) { /* the simulator reads no header */
        enum bt_err ferr = bt_fwd_pick(p, r->headers, r->nheaders, out->fwd, &out->nfwd, NULL, 0);
        if (ferr) return ferr;
    }
    out->path = BT_STR_NULL;
    const struct bt_adapter *ad = bt_adapter_for(p);
    if (ad->encode_for) return ad->encode_for(p, r, upstream_model, arena, out, added_usage);
    return ad->encode(r, upstream_model, arena, out, added_usage);
}

enum bt_err bt_provider_check_headers(const struct bt_provider *p, const struct bt_request *r,
                                      char *msg, size_t msgcap)
{
    size_t n;
    return bt_fwd_pick(p, r->headers, r->nheaders, NULL, &n, msg, msgcap);
}

/* The simulator reads the body once, at start: a joined copy will do. */
static enum bt_err start_sim(const struct bt_provider *p, const struct bt_adapter *ad,
                             uv_loop_t *loop, enum bt_op op, const struct bt_pbody *body,
                             const struct bt_up_callbacks *cb, void *ud, struct bt_pcall *call)
{
    size_t len = 0;
    for (size_t i = 0; i < body->n; i++) len += body->parts[i].len;
    struct bt_buf joined;
    bt_buf_init(&joined, len + 1);
    for (size_t i = 0; i < body->n; i++) bt_buf_append_str(&joined, body->parts[i]);
    struct bt_sim_request sr = {
        .method = BT_STR("POST"),
        .path = body->path.len ? body->path : bt_str_c(ad->path(op)),
        .body = bt_buf_str(&joined),
        .fault = -1,
    };
    call->sim = joined.len == len ? bt_sim_start(loop, ad->wire, &p->sim, &sr, cb, ud) : NULL;
    bt_buf_free(&joined);
    return call->sim ? BT_OK : BT_ENOMEM;
}

enum bt_err bt_provider_start(const struct bt_provider *p, uv_loop_t *loop,
                              struct bt_upstream *up, enum bt_op op, bool stream,
                              const struct bt_pbody *body, const struct bt_up_callbacks *cb,
                              void *ud, struct bt_pcall *call)
{
    memset(call, 0, sizeof(*call));
    const struct bt_adapter *ad = bt_adapter_for(p);
    if (p->type == BT_PROVIDER_SIM) return start_sim(p, ad, loop, op, body, cb, ud, call);
    char target[1024];
    struct bt_str tail = body->path.len ? body->path : bt_str_c(ad->path(op));
    int n = snprintf(target, sizeof(target), "%s%.*s", p->base_path, (int)tail.len, tail.p);
    if (n < 0 || (size_t)n >= sizeof(target)) return BT_ETOOBIG;
    char scratch[1024];
    struct bt_http_header hs[8 + BT_FWD_MAX];
    enum bt_err err;
    size_t nh = ad->headers(p, stream, hs, 8, scratch, sizeof(scratch), &err);
    if (err) return err;
    /* forward_headers: a forwarded header takes the place of the adapter's of the
     * same name (an Anthropic client's anthropic-version reaches an anthropic
     * provider as the client sent it, once); a client header repeated is
     * forwarded as often as it came */
    size_t kept = 0;
    for (size_t j = 0; j < nh; j++) {
        bool replaced = false;
        for (size_t i = 0; i < body->nfwd && !replaced; i++)
            replaced = bt_str_caseeq(hs[j].name, body->fwd[i].name);
        if (!replaced) hs[kept++] = hs[j];
    }
    nh = kept;
    for (size_t i = 0; i < body->nfwd; i++) hs[nh++] = body->fwd[i];
    /* TLS settings and the proxy route are part of the pool key: a connection
     * made for one provider's settings never serves another's. */
    struct bt_up_origin origin = {
        .tls = p->tls,
        .host = p->host,
        .port = p->port,
        .ca_file = p->tls_ca_file,
        .tls_no_verify = p->tls_no_verify,
        .proxy_host = p->proxy_host,
        .proxy_port = p->proxy_port,
        .proxy_auth = p->proxy_auth,
    };
    struct bt_up_request ur = {
        .method = BT_STR("POST"),
        .target = {target, (size_t)n},
        .headers = hs,
        .nheaders = nh,
        .body_parts = body->parts,
        .nbody_parts = body->n,
        /* The executor enforces first-byte, idle and total deadlines for every
         * transport; the client enforces connect. */
        .timeouts = {.connect_ms = p->timeouts.connect_ms},
    };
    call->up = bt_upstream_request(up, &origin, &ur, cb, ud);
    return call->up ? BT_OK : BT_ENOMEM;
}

void bt_provider_cancel(struct bt_pcall *call)
{
    if (call->up) bt_upstream_cancel(call->up);
    if (call->sim) bt_sim_cancel(call->sim);
    call->up = NULL;
    call->sim = NULL;
}
