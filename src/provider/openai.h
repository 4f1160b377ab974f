/* The OpenAI-compatible adapter (every vendor that speaks OpenAI's chat
 * completions and embeddings: OpenAI, DeepSeek, Upstage, vLLM, Ollama, ...). The
 * provider registry refers to it as bt_adapter_openai; the decoders below are
 * exported for the unit tests and fuzz targets. */
#ifndef BT_PROVIDER_OPENAI_H
#define BT_PROVIDER_OPENAI_H

#include "provider/provider.h"

extern const struct bt_adapter bt_adapter_openai;

/* Decodes one OpenAI chat.completion.chunk (already tokenized) into events. */
void bt_openai_decode_chunk(const struct bt_json_doc *doc, bt_event_cb cb, void *ud);
/* True when an OpenAI chunk's text shows none of what the stream relay must
 * decode: a `usage` or `error` member whose value is an object, or a non-null
 * `finish_reason`; and its braces pair up, so an event cut short after a '}' is
 * decoded (and refused) too. One pass finds each '{', '}' and '_' (16 bytes at a
 * time with SSE2) and only the bytes around them are looked at. A false
 * "not plain" only costs a full decode; a member name written with escapes, or an
 * `error` given as a bare string, is not recognised (`stream_check: full`
 * validates every event and finds those exactly). */
bool bt_openai_chunk_is_plain(struct bt_str data);
/* The same decision byte by byte: the reference the vector version is tested against. */
bool bt_openai_chunk_is_plain_bytes(struct bt_str data);
/* Decodes a whole OpenAI reply (chat.completion or embeddings list): emits
 * FINISH and USAGE events. */
void bt_openai_decode_response(const struct bt_json_doc *doc, bt_event_cb cb, void *ud);
/* Reads usage out of an OpenAI `usage` object token. */
void bt_openai_read_usage(const struct bt_json_doc *doc, int tok, struct bt_usage *u);

#endif
