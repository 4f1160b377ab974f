/* The Azure OpenAI adapter (provider type `azure`): OpenAI's wire with Azure's
 * addressing, POST {base_url}/openai/deployments/{deployment}/chat/completions
 * ?api-version=V, the deployment being the deployment's model id, and the key
 * in an `api-key` header. Bodies, replies, streams and errors are OpenAI's
 * (bt_adapter_openai's functions). */
#ifndef BT_PROVIDER_OPENAI_AZURE_H
#define BT_PROVIDER_OPENAI_AZURE_H

#include "provider/provider.h"

extern const struct bt_adapter bt_adapter_azure;

/* The target after the base path for deployment `model`, `op` and
 * `api_version` into `arena` (the deployment percent-encoded); NULL slice on
 * BT_ENOMEM. */
struct bt_str bt_openai_azure_path(struct bt_str model, enum bt_op op, const char *api_version,
                                   struct bt_arena *arena);

#endif
