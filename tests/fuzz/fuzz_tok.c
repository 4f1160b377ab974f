/* libFuzzer target for the BPE tokenizer (src/tok). Input: byte 0 picks the
 * encoding (low bit) and a small id-array cap; the rest is the text, any bytes
 * (invalid UTF-8 included).
 *
 * Checked:
 *  - no crash, leak, out-of-bounds access or undefined behaviour;
 *  - bt_tok_count equals the number of ids bt_tok_encode returns, and never
 *    exceeds the number of bytes;
 *  - the ids' token bytes, concatenated, are exactly the input (nothing lost,
 *    duplicated or reordered by the pre-tokenizer or the merges);
 *  - with a too-small id array, BT_ETOOBIG, the same total and the same first
 *    ids as the full encoding.
 * Exactness against tiktoken is tests/integration/tokens.test.mjs's job. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "tok/tok.h"

#define CHECK(c)                                                                                   \
    do {                                                                                           \
        if (!(c)) __builtin_trap();                                                                \
    } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0) return 0;
    const struct bt_tok *t = bt_tok_get((data[0] & 1) ? BT_TOK_O200K : BT_TOK_CL100K);
    CHECK(t);
    size_t small_cap = (data[0] >> 1) % 8;
    const char *text = (const char *)data + 1;
    size_t len = size - 1;

    size_t count = bt_tok_count(t, text, len);
    CHECK(count <= len);
    CHECK((count == 0) == (len == 0));

    uint32_t *ids = malloc((len + 1) * sizeof(uint32_t));
    uint8_t *back = malloc(len + 1);
    CHECK(ids && back);
    size_t n = 0;
    CHECK(bt_tok_encode(t, text, len, ids, len + 1, &n) == BT_OK);
    CHECK(n == count);
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        size_t l = 0;
        const uint8_t *b = bt_tok_token_bytes(t, ids[i], &l);
        CHECK(b && l > 0 && o + l <= len);
        memcpy(back + o, b, l);
        o += l;
    }
    CHECK(o == len && (len == 0 || memcmp(back, text, len) == 0));

    if (small_cap < n) {
        uint32_t first[8];
        size_t n2 = 0;
        CHECK(bt_tok_encode(t, text, len, first, small_cap, &n2) == BT_ETOOBIG);
        CHECK(n2 == n && memcmp(first, ids, small_cap * sizeof(uint32_t)) == 0);
    }
    free(back);
    free(ids);
    return 0;
}
