/* The Azure OpenAI adapter: see openai_azure.h. */
#include "provider/openai_azure.h"

#include <stdio.h>
#include <string.h>

#include "provider/openai.h"
#include "provider/openai_reply.h"
#include "provider/wire.h"

struct bt_str bt_openai_azure_path(struct bt_str model, enum bt_op op, const char *api_version,
                                   struct bt_arena *arena)
{
    char tail[128];
    snprintf(tail, sizeof(tail), "%s?api-version=%s",
             op == BT_OP_EMBED ? "/embeddings" : "/chat/completions", api_version ? api_version : "");
    return bt_wire_path("/openai/deployments/", model, tail, arena);
}

static enum bt_err azure_encode_for(const struct bt_provider *p, const struct bt_request *r,
                                    struct bt_str model, struct bt_arena *arena,
                                    struct bt_pbody *out, bool *added_usage)
{
    enum bt_err err = bt_adapter_openai.encode(r, model, arena, out, added_usage);
    if (err) return err;
    out->path = bt_openai_azure_path(model, r->op, p ? p->api_version : NULL, arena);
    return out->path.p ? BT_OK : BT_ENOMEM;
}

static enum bt_err azure_encode(const struct bt_request *r, struct bt_str model,
                                struct bt_arena *arena, struct bt_pbody *out, bool *added_usage)
{
    return azure_encode_for(NULL, r, model, arena, out, added_usage);
}

/* OpenAI's headers with the key as `api-key`: exactly one credential header. */
static size_t azure_headers(const struct bt_provider *p, bool stream, struct bt_http_header *hs,
                            size_t cap, char *scratch, size_t scratch_cap, enum bt_err *err)
{
    return bt_wire_headers(stream, "api-key", p->api_key, hs, cap, err);
}

/* The rest is OpenAI's, called through its table (its functions are file-local). */
static const char *azure_path(enum bt_op op) { return bt_adapter_openai.path(op); }

static enum bt_ev_kind azure_classify(const struct bt_sse_event *ev, bool decoded_first, bool full)
{
    return bt_adapter_openai.classify_event(ev, decoded_first, full);
}

static bool azure_added_usage_event(const struct bt_json_doc *doc)
{
    return bt_adapter_openai.added_usage_event(doc);
}

static void azure_decode_error(int status, struct bt_str body, struct bt_arena *arena,
                               struct bt_perror *out)
{
    bt_adapter_openai.decode_error(status, body, arena, out);
}

const struct bt_adapter bt_adapter_azure = {
    .name = "azure",
    .wire = BT_API_OPENAI,
    .encode = azure_encode,
    .path = azure_path,
    .headers = azure_headers,
    .decode_reply = bt_openai_reply_events,
    .classify_event = azure_classify,
    .decode_event = bt_openai_chunk_events,
    .added_usage_event = azure_added_usage_event,
    .decode_error = azure_decode_error,
    .encode_for = azure_encode_for,
};
