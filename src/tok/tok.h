/* OpenAI-compatible BPE tokenizer: the cl100k_base and o200k_base encodings,
 * byte-exact with OpenAI's tiktoken (`encode_ordinary`: special-token text such
 * as "<|endoftext|>" is encoded as ordinary text).
 *
 * A gateway counts tokens before it calls a provider (rate limits in tokens per
 * minute, budgets, context-window checks), so counting is built for the hot
 * path: no allocation per call (pieces longer than 128 bytes use a reusable
 * per-thread scratch), no locks after the first use.
 *
 * The rank files are embedded in the binary (src/tok/embed.c) and parsed on the
 * first bt_tok_get() of each encoding, once per process (pthread_once), so a
 * process that never counts tokens pays nothing but the read-only pages of the
 * binary. Design notes: docs/internals/tokenizer.md.
 *
 * Input is bytes. Valid UTF-8 is split exactly like tiktoken's regexes do; an
 * invalid UTF-8 byte is taken as one character that is not a letter, number or
 * space (like a punctuation mark), so any input encodes and decodes back to the
 * same bytes. */
#ifndef BT_TOK_TOK_H
#define BT_TOK_TOK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/err.h"
#include "core/str.h"

enum bt_tok_encoding {
    BT_TOK_CL100K = 0, /* cl100k_base: gpt-4, gpt-3.5-turbo, text-embedding-3-* */
    BT_TOK_O200K = 1,  /* o200k_base: gpt-4o, gpt-4.1, gpt-5, o1, o3, o4 */
};
#define BT_TOK_N_ENCODINGS 2

/* An encoding's vocabulary: immutable once built, shared by all threads. */
struct bt_tok;

/* Returns the encoding, building it on the first call in the process (tens of
 * milliseconds; ~13 MB of heap for o200k, ~7 MB for cl100k); later calls are a
 * load. The result is owned by the library, lives until the process exits and
 * may be used from any thread. NULL when the encoding is unknown or could not be
 * built (out of memory): the failure is permanent for the process. */
const struct bt_tok *bt_tok_get(enum bt_tok_encoding enc);

/* "cl100k_base" or "o200k_base"; "?" for an unknown value. Static string. */
const char *bt_tok_encoding_name(enum bt_tok_encoding enc);

/* Parses "cl100k_base" / "o200k_base" (exact). Returns false and leaves *out
 * unchanged for anything else. */
bool bt_tok_encoding_from_name(struct bt_str name, enum bt_tok_encoding *out);

/* The encoding OpenAI uses for a model name, by prefix like tiktoken's table:
 * gpt-4o*, gpt-4.1*, gpt-4.5*, gpt-5*, o1*, o3*, o4*, chatgpt-* -> o200k_base;
 * gpt-4*, gpt-3.5*, gpt-35*, text-embedding-3*, *-ada-002, davinci-002,
 * babbage-002 -> cl100k_base. A "provider/" prefix is ignored
 * ("openai/gpt-4" is gpt-4). Anything else (other vendors' models, where no
 * exact count exists) gets o200k_base, the current default. Never fails. */
enum bt_tok_encoding bt_tok_encoding_for_model(struct bt_str model);

/* Number of tokens in text[0..len) (bytes; NULL is allowed when len == 0).
 * Allocates nothing except when a single pre-token piece is longer than 128
 * bytes: then a per-thread scratch (kept up to 1 MiB, freed at thread exit) is
 * used. Returns SIZE_MAX only when that scratch cannot be allocated (or for a
 * single piece of 2 GiB or more). */
size_t bt_tok_count(const struct bt_tok *t, const char *text, size_t len);

/* Encodes text[0..len) into token ids. Writes at most `cap` ids to `ids` and
 * sets *n_out to the total number of tokens. Returns BT_OK when all of them
 * fit, BT_ETOOBIG when the text has more than `cap` tokens (ids then holds the
 * first `cap`, *n_out the full count), BT_ENOMEM when the scratch for a long
 * piece cannot be allocated, BT_EINVAL for a NULL t or n_out. A text never has
 * more tokens than bytes, so cap == len always suffices. Borrows everything. */
enum bt_err bt_tok_encode(const struct bt_tok *t, const char *text, size_t len, uint32_t *ids,
                          size_t cap, size_t *n_out);

/* The bytes of token `id` (not NUL-terminated; may be part of a UTF-8
 * character), valid as long as the process lives; sets *len. NULL for an id
 * outside the vocabulary (special tokens included). */
const uint8_t *bt_tok_token_bytes(const struct bt_tok *t, uint32_t id, size_t *len);

/* Number of ordinary tokens (ranks) in the encoding. */
size_t bt_tok_vocab_size(const struct bt_tok *t);

#endif
