/* libFuzzer target for what baton reads from a Gemini provider:
 * streamGenerateContent SSE streams, whole GenerateContentResponses and error
 * bodies through the gemini adapter (see provider_events_driver.h for what is
 * checked). Seeds: the golden streams and replies of tests/golden/gemini/events. */
#include "provider/gemini.h"
#include "provider_events_driver.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    return fuzz_provider_events(&bt_adapter_gemini, data, size);
}
