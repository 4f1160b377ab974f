/* Client headers forwarded to a provider: the rules and the per-request pick.
 * See fwd.h and docs/config.md (`forward_headers`). */
#include "config/fwd.h"

#include <stdio.h>
#include <string.h>

/* The default allow-list of each provider type. Kept short on purpose: only
 * headers that change what the provider does for this caller (account, project,
 * beta features, idempotency). The SDKs' `x-stainless-*` telemetry headers are
 * not in it: they describe the client's runtime to the vendor and change nothing
 * in the reply. A new provider type adds its row here (anthropic: anthropic-beta). */
static const char *const openai_defaults[] = {"OpenAI-Organization", "OpenAI-Project",
                                              "OpenAI-Beta", "Idempotency-Key", NULL};
static const char *const anthropic_defaults[] = {"anthropic-version", "anthropic-beta", NULL};
static const char *const azure_defaults[] = {"Idempotency-Key", NULL};
static const char *const no_defaults[] = {NULL};

const char *const *bt_fwd_defaults(enum bt_provider_type t)
{
    switch (t) {
    case BT_PROVIDER_OPENAI:
        return openai_defaults;
    case BT_PROVIDER_ANTHROPIC:
        return anthropic_defaults;
    case BT_PROVIDER_AZURE:
        return azure_defaults;
    case BT_PROVIDER_GEMINI:
    case BT_PROVIDER_SIM:
        break;
    }
    return no_defaults;
}

/* Names a list may never hold, by reason. Lower case. */
static const char *const credentials[] = {
    "authorization", "proxy-authorization", "x-api-key", "api-key", "x-goog-api-key", "cookie",
    NULL};
static const char *const framing[] = {"host",       "content-length",   "transfer-encoding",
                                      "connection", "keep-alive",       "proxy-connection",
                                      "te",         "upgrade",          "trailer",
                                      "expect",     "content-encoding", "accept-encoding",
                                      NULL};
static const char *const baton_own[] = {"content-type", "accept", "user-agent", NULL};

static bool in(const char *const *list, struct bt_str name)
{
    for (size_t i = 0; list[i]; i++)
        if (bt_str_caseeq_c(name, list[i])) return true;
    return false;
}

const char *bt_fwd_refused(struct bt_str name)
{
    if (in(credentials, name)) return "a credential: the client's credentials stay with baton";
    if (in(framing, name))
        return "a hop-by-hop or framing header: baton frames its own request and reads the "
               "reply itself";
    if (in(baton_own, name)) return "set by baton itself";
    return NULL;
}

bool bt_fwd_name_ok(struct bt_str name)
{
    if (name.len == 0 || name.len > BT_FWD_NAME_MAX) return false;
    for (size_t i = 0; i < name.len; i++) {
        unsigned char c = (unsigned char)name.p[i];
        bool alnum = (c >= '0' && c <= '9') || ((c | 0x20) >= 'a' && (c | 0x20) <= 'z');
        if (!alnum && !memchr("!#$%&'+-.^_`|~", c, 14)) return false;
    }
    return true;
}

/* A value that can go into a request head as it is: no control byte (CR and LF
 * above all: an obs-folded client header arrives with its CRLF inside), and
 * bounded. Bytes 0x80-0xFF (obs-text) are opaque to HTTP and pass. */
static bool value_ok(struct bt_str v)
{
    if (v.len > BT_FWD_VALUE_MAX) return false;
    for (size_t i = 0; i < v.len; i++) {
        unsigned char c = (unsigned char)v.p[i];
        if (c < 0x20 || c == 0x7f) return false;
    }
    return true;
}

enum bt_err bt_fwd_pick(const struct bt_provider *p, const struct bt_http_header *hs, size_t n,
                        struct bt_http_header *out, size_t *nout, char *msg, size_t msgcap)
{
    *nout = 0;
    if (!p->nforward_headers) return BT_OK;
    for (size_t i = 0; i < n; i++) {
        const struct bt_str name = hs[i].name;
        size_t j = 0;
        while (j < p->nforward_headers && !bt_str_caseeq(name, p->forward_headers[j]))
            j++;
        if (j == p->nforward_headers) continue;
        int shown = (int)(name.len > BT_FWD_NAME_MAX ? BT_FWD_NAME_MAX : name.len);
        if (!value_ok(hs[i].value)) {
            if (msgcap && hs[i].value.len > BT_FWD_VALUE_MAX)
                snprintf(msg, msgcap,
                         "The %.*s header is longer than %d bytes; baton does not forward it to "
                         "the provider.",
                         shown, name.p, BT_FWD_VALUE_MAX);
            else if (msgcap)
                snprintf(msg, msgcap,
                         "The %.*s header contains a control character (such as a line break "
                         "or tab); baton does not forward it to the provider.",
                         shown, name.p);
            return BT_EINVAL;
        }
        if (*nout == BT_FWD_MAX) {
            if (msgcap)
                snprintf(msg, msgcap,
                         "Too many headers to forward to the provider (at most %d; %.*s is one "
                         "too many).",
                         BT_FWD_MAX, shown, name.p);
            return BT_ETOOBIG;
        }
        if (out) out[*nout] = (struct bt_http_header){p->forward_headers[j], hs[i].value};
        (*nout)++;
    }
    return BT_OK;
}
