/* libFuzzer target for what baton reads from an Anthropic provider: Messages
 * streams, whole replies and error bodies through the anthropic adapter (see
 * provider_events_driver.h for what is checked). Seeds: the golden streams and
 * replies of tests/golden/anthropic/events. */
#include "provider/anthropic.h"
#include "provider_events_driver.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    return fuzz_provider_events(&bt_adapter_anthropic, data, size);
}
