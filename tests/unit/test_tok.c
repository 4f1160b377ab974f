/* Unit tests for src/tok: golden token ids, the pre-tokenizer's edge cases
 * (whitespace, contractions, digit groups, scripts), invalid UTF-8, long pieces,
 * the API's error paths and thread safety. tok.c is included so the two merge
 * implementations (stack and heap) can be compared directly. The differential
 * test against npm tiktoken is tests/integration/tokens.test.mjs. */
#include <pthread.h>
#include <stdlib.h>
#include <time.h>

#include "harness.h"
#include "tok/tok.c"

/* Golden ids: printed once by npm tiktoken 1.0.22,
 * `get_encoding(E).encode_ordinary(text)`, and pasted here. */
struct golden {
    const char *text;
    uint32_t ids[16];
    size_t n;
};

#define G(text, ...)                                                                               \
    {                                                                                              \
        text, {__VA_ARGS__}, sizeof((uint32_t[]){__VA_ARGS__}) / sizeof(uint32_t)                  \
    }

static const struct golden cl100k_golden[] = {
    G("hello world", 15339, 1917),
    G("Hello, world! It's a test.", 9906, 11, 1917, 0, 1102, 596, 264, 1296, 13),
    G("I'M SURE THEY'LL", 40, 28703, 328, 4622, 63593, 6, 4178),
    G("  \n\n  x  ", 19124, 220, 865, 256),
    G("1234567", 4513, 10961, 22),
    G("안녕하세요 세계", 31495, 230, 75265, 243, 92245, 28867, 116, 22783, 226),
    G("日本語のテキスト", 9080, 22656, 45918, 252, 16144, 57933, 62903, 71634),
    G("👨‍👩‍👧 ok", 9468, 239, 101, 378, 235, 9468, 239, 102, 378, 235, 9468, 239, 100,
      5509),
    G("e\xcc\x81 café", 68, 54939, 53050),
    G("<|endoftext|>", 27, 91, 8862, 728, 428, 91, 29),
    G("HELLOworld ABC", 51812, 1623, 14957, 19921),
    G("a\tb\r\nc", 64, 2282, 319, 66),
};

static const struct golden o200k_golden[] = {
    G("hello world", 24912, 2375),
    G("Hello, world! It's a test.", 13225, 11, 2375, 0, 7744, 261, 1746, 13),
    G("I'M SURE THEY'LL", 40, 95346, 336, 8141, 95381, 6, 7454),
    G("  \n\n  x  ", 11691, 220, 1215, 256),
    G("1234567", 7633, 19354, 22),
    G("안녕하세요 세계", 14307, 171731, 75755),
    G("日本語のテキスト", 9048, 40909, 3385, 16056, 18368, 38236),
    G("👨‍👩‍👧 ok", 28823, 101, 2524, 28823, 102, 2524, 28823, 100, 4763),
    G("e\xcc\x81 café", 68, 13430, 30469),
    G("<|endoftext|>", 27, 91, 419, 1440, 919, 91, 29),
    G("HELLOworld ABC", 111642, 2699, 24169, 33047),
    G("a\tb\r\nc", 64, 3722, 370, 66),
};

static void check_golden(enum bt_tok_encoding enc, const struct golden *g, size_t ng)
{
    const struct bt_tok *t = bt_tok_get(enc);
    REQUIRE(t);
    for (size_t i = 0; i < ng; i++) {
        uint32_t ids[64];
        size_t n = 0;
        size_t len = strlen(g[i].text);
        CHECK_INT(bt_tok_encode(t, g[i].text, len, ids, 64, &n), BT_OK);
        bool same = n == g[i].n && memcmp(ids, g[i].ids, n * sizeof(uint32_t)) == 0;
        if (!same)
            H_FAIL("%s: ids of \"%s\" differ from tiktoken (%zu vs %zu ids)",
                   bt_tok_encoding_name(enc), g[i].text, n, g[i].n);
        CHECK_INT(bt_tok_count(t, g[i].text, len), g[i].n);
    }
}

TEST(golden_cl100k)
{
    check_golden(BT_TOK_CL100K, cl100k_golden, sizeof(cl100k_golden) / sizeof(cl100k_golden[0]));
}
TEST(golden_o200k)
{
    check_golden(BT_TOK_O200K, o200k_golden, sizeof(o200k_golden) / sizeof(o200k_golden[0]));
}

/* Encodes text and renders the tokens as "tok|tok|tok" for readable checks.
 * Expected renderings were checked against npm tiktoken 1.0.22. */
static const char *pieces(enum bt_tok_encoding enc, const char *text)
{
    static char out[4096];
    const struct bt_tok *t = bt_tok_get(enc);
    uint32_t ids[512];
    size_t n = 0, o = 0;
    if (!t || bt_tok_encode(t, text, strlen(text), ids, 512, &n)) return "(error)";
    for (size_t i = 0; i < n; i++) {
        size_t l;
        const uint8_t *b = bt_tok_token_bytes(t, ids[i], &l);
        if (!b || o + l + 2 >= sizeof(out)) return "(bad id)";
        if (i) out[o++] = '|';
        memcpy(out + o, b, l);
        o += l;
    }
    out[o] = '\0';
    return out;
}

TEST(whitespace_rules)
{
    /* \s+(?!\S): a run of spaces gives its last one to the next word. */
    CHECK_STR(pieces(BT_TOK_CL100K, "a   b"), "a|  | b");
    CHECK_STR(pieces(BT_TOK_O200K, "a   b"), "a|  | b");
    /* Trailing whitespace stays one run; a lone space before a digit is its own piece. */
    CHECK_STR(pieces(BT_TOK_CL100K, "x   "), "x|   ");
    CHECK_STR(pieces(BT_TOK_CL100K, "x 1"), "x| |1");
    /* \s*[\r\n]+: up to and including the last newline of the run. */
    CHECK_STR(pieces(BT_TOK_CL100K, "a \n \n  b"), "a| \n \n| | b");
    CHECK_STR(pieces(BT_TOK_CL100K, "\n\n\n"), "\n\n\n");
    /* A tab prefixes a word like a space does. */
    CHECK_STR(pieces(BT_TOK_CL100K, "\tword"), "\tword");
    /* Punctuation takes one leading space and trailing newlines. */
    CHECK_STR(pieces(BT_TOK_CL100K, "a ...\n\nb"), "a| ...\n\n|b");
    /* o200k's [\r\n/]*: the '/' after the newline joins the piece (";\n/"). */
    CHECK_STR(pieces(BT_TOK_O200K, "x ;;\n/y"), "x| ;|;\n/|y");
}

TEST(contractions_and_case)
{
    CHECK_STR(pieces(BT_TOK_CL100K, "it's"), "it|'s");
    CHECK_STR(pieces(BT_TOK_CL100K, "IT'S"), "IT|'S");
    CHECK_STR(pieces(BT_TOK_CL100K, "we'LL"), "we|'|LL"); /* the piece "'LL" is two tokens */
    CHECK_STR(pieces(BT_TOK_CL100K, "'sa"), "'s|a");
    /* o200k attaches the contraction to the word before it. */
    CHECK_STR(pieces(BT_TOK_O200K, "it's"), "it's");
    CHECK_STR(pieces(BT_TOK_O200K, "don'T"), "don|'T");
    /* o200k's case classes: an upper run followed by lowercase stays one word,
     * a lowercase run followed by uppercase splits. */
    CHECK_STR(pieces(BT_TOK_O200K, "camelCase"), "camel|Case");
    CHECK_STR(pieces(BT_TOK_CL100K, "camelCase"), "camel|Case");
    CHECK_STR(pieces(BT_TOK_O200K, "HTTPServer"), "HTTP|Server");
}

TEST(digits_group_by_three)
{
    CHECK_STR(pieces(BT_TOK_CL100K, "1234567"), "123|456|7");
    CHECK_STR(pieces(BT_TOK_O200K, "12345"), "123|45");
    CHECK_STR(pieces(BT_TOK_CL100K, "a12"), "a|12");
    /* \p{N} is not only ASCII: Arabic-Indic digits group the same way. */
    const struct bt_tok *t = bt_tok_get(BT_TOK_O200K);
    REQUIRE(t);
    const char *ar = "\xd9\xa1\xd9\xa2\xd9\xa3\xd9\xa4"; /* ١٢٣٤ */
    uint32_t a[16], b[16];
    size_t na = 0, nb = 0;
    CHECK_INT(bt_tok_encode(t, ar, 8, a, 16, &na), BT_OK);
    CHECK_INT(bt_tok_encode(t, ar, 6, b, 16, &nb), BT_OK);
    CHECK(na > nb); /* the fourth digit starts a new piece */
}

TEST(empty_and_bad_arguments)
{
    const struct bt_tok *t = bt_tok_get(BT_TOK_CL100K);
    REQUIRE(t);
    CHECK_INT(bt_tok_count(t, NULL, 0), 0);
    CHECK_INT(bt_tok_count(t, "", 0), 0);
    CHECK_INT(bt_tok_count(NULL, "abc", 3), 0);
    size_t n = 99;
    CHECK_INT(bt_tok_encode(t, "", 0, NULL, 0, &n), BT_OK);
    CHECK_INT(n, 0);
    CHECK_INT(bt_tok_encode(NULL, "a", 1, NULL, 0, &n), BT_EINVAL);
    CHECK_INT(bt_tok_encode(t, "a", 1, NULL, 4, &n), BT_EINVAL);
    CHECK_INT(bt_tok_encode(t, "a", 1, NULL, 0, NULL), BT_EINVAL);
    /* Too small an array: the first ids and the full count. */
    uint32_t ids[2];
    CHECK_INT(bt_tok_encode(t, "Hello, world! It's a test.", 26, ids, 2, &n), BT_ETOOBIG);
    CHECK_INT(n, 9);
    CHECK_INT(ids[0], 9906);
    CHECK_INT(ids[1], 11);
    CHECK_INT(bt_tok_encode(t, "Hello", 5, NULL, 0, &n), BT_ETOOBIG);
    CHECK_INT(n, 1);
    CHECK(bt_tok_get((enum bt_tok_encoding)7) == NULL);
    size_t l = 5;
    CHECK(bt_tok_token_bytes(t, 100257, &l) == NULL); /* <|endoftext|> is special */
    CHECK_INT(l, 0);
    CHECK(bt_tok_token_bytes(t, UINT32_MAX, NULL) == NULL);
    CHECK(bt_tok_token_bytes(NULL, 1, NULL) == NULL);
    CHECK_INT(bt_tok_vocab_size(t), 100256);
    CHECK_INT(bt_tok_vocab_size(bt_tok_get(BT_TOK_O200K)), 199998);
}

TEST(encoding_names_and_models)
{
    enum bt_tok_encoding e = BT_TOK_O200K;
    CHECK(bt_tok_encoding_from_name(BT_STR("cl100k_base"), &e) && e == BT_TOK_CL100K);
    CHECK(bt_tok_encoding_from_name(BT_STR("o200k_base"), &e) && e == BT_TOK_O200K);
    CHECK(!bt_tok_encoding_from_name(BT_STR("p50k_base"), &e) && e == BT_TOK_O200K);
    CHECK(!bt_tok_encoding_from_name(BT_STR(""), &e));
    CHECK_STR(bt_tok_encoding_name(BT_TOK_CL100K), "cl100k_base");
    CHECK_STR(bt_tok_encoding_name((enum bt_tok_encoding)9), "?");
    static const struct {
        const char *model;
        enum bt_tok_encoding enc;
    } m[] = {
        {"gpt-4o", BT_TOK_O200K},
        {"gpt-4o-mini-2024-07-18", BT_TOK_O200K},
        {"gpt-4.1-nano", BT_TOK_O200K},
        {"gpt-5", BT_TOK_O200K},
        {"o1-preview", BT_TOK_O200K},
        {"o3-mini", BT_TOK_O200K},
        {"o4-mini", BT_TOK_O200K},
        {"gpt-4", BT_TOK_CL100K},
        {"gpt-4-turbo", BT_TOK_CL100K},
        {"gpt-3.5-turbo", BT_TOK_CL100K},
        {"gpt-35-turbo", BT_TOK_CL100K},
        {"text-embedding-3-small", BT_TOK_CL100K},
        {"text-embedding-ada-002", BT_TOK_CL100K},
        {"openai/gpt-4", BT_TOK_CL100K},
        {"deepseek-chat", BT_TOK_O200K},
        {"", BT_TOK_O200K},
    };
    for (size_t i = 0; i < sizeof(m) / sizeof(m[0]); i++)
        if (bt_tok_encoding_for_model(bt_str_c(m[i].model)) != m[i].enc)
            H_FAIL("model %s: wrong encoding", m[i].model);
}

/* Decodes ids back to bytes and compares with the input. */
static bool round_trips(const struct bt_tok *t, const char *text, size_t len)
{
    uint32_t *ids = malloc((len + 1) * sizeof(uint32_t));
    char *back = malloc(len + 1);
    size_t n = 0, o = 0;
    bool ok = ids && back && bt_tok_encode(t, text, len, ids, len + 1, &n) == BT_OK &&
              n == bt_tok_count(t, text, len) && (len == 0 || n > 0);
    for (size_t i = 0; ok && i < n; i++) {
        size_t l;
        const uint8_t *b = bt_tok_token_bytes(t, ids[i], &l);
        ok = b && o + l <= len;
        if (ok) memcpy(back + o, b, l);
        o += l;
    }
    ok = ok && o == len && memcmp(back, text, len) == 0;
    free(ids);
    free(back);
    return ok;
}

TEST(invalid_utf8)
{
    static const char *bad[] = {
        "\xff",
        "\xc3\x28",
        "a\xe2\x82",
        "\xed\xa0\x80 surrogate",
        "\xf4\x90\x80\x80 too big",
        "\xc0\xaf overlong",
        "\xf0\x9f\x98",
        "word\x80\x80\x80word",
        "'\xc5",
        "1\xcc\x81\xcc",
    };
    for (int e = 0; e < BT_TOK_N_ENCODINGS; e++) {
        const struct bt_tok *t = bt_tok_get((enum bt_tok_encoding)e);
        REQUIRE(t);
        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
            CHECK(bt_tok_count(t, bad[i], strlen(bad[i])) > 0);
            if (!round_trips(t, bad[i], strlen(bad[i]))) H_FAIL("round trip of bad[%zu]", i);
        }
        /* Every single byte value alone and between letters. */
        for (int b = 0; b < 256; b++) {
            char s[3] = {'a', (char)b, 'b'};
            if (!round_trips(t, s + 1, 1) || !round_trips(t, s, 3)) H_FAIL("byte %d", b);
        }
    }
}

static uint64_t rng_state = 88172645463325252ull;
static uint64_t rng(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

/* The stack merge and the heap merge give the same tokens for the same piece. */
TEST(small_and_large_merge_agree)
{
    static const char alphabet[] = "aaabbcdeeeiinnorsstt  ..,\xc3\xa9\xed\x95\x9c";
    for (int e = 0; e < BT_TOK_N_ENCODINGS; e++) {
        const struct bt_tok *t = bt_tok_get((enum bt_tok_encoding)e);
        REQUIRE(t);
        for (int iter = 0; iter < 2000; iter++) {
            uint8_t p[SMALL_PIECE];
            size_t n = 2 + rng() % (SMALL_PIECE - 1);
            for (size_t i = 0; i < n; i++)
                p[i] = (uint8_t)alphabet[rng() % (sizeof(alphabet) - 1)];
            uint32_t a[SMALL_PIECE], b[SMALL_PIECE];
            struct out oa = {a, SMALL_PIECE, 0}, ob = {b, SMALL_PIECE, 0}, oc = {NULL, 0, 0};
            bpe_small(t, p, n, &oa);
            REQUIRE(bpe_large(t, p, n, &ob) == 0);
            REQUIRE(bpe_large(t, p, n, &oc) == 0);
            if (oa.n != ob.n || oc.n != oa.n || memcmp(a, b, oa.n * sizeof(uint32_t)) != 0) {
                H_FAIL("enc %d iter %d: small %zu ids, large %zu ids", e, iter, oa.n, ob.n);
                return;
            }
        }
    }
}

TEST(long_inputs_finish)
{
    size_t len = 1u << 20;
    char *s = malloc(len);
    REQUIRE(s);
    for (int e = 0; e < BT_TOK_N_ENCODINGS; e++) {
        const struct bt_tok *t = bt_tok_get((enum bt_tok_encoding)e);
        REQUIRE(t);
        clock_t c0 = clock();
        /* One 1 MiB piece of a single letter (quadratic in tiktoken). */
        memset(s, 'a', len);
        size_t n1 = bt_tok_count(t, s, len);
        CHECK(n1 > 0 && n1 < len / 4);
        CHECK(round_trips(t, s, len));
        /* 1 MiB of random bytes: invalid UTF-8, controls, everything. */
        for (size_t i = 0; i < len; i++)
            s[i] = (char)rng();
        CHECK(bt_tok_count(t, s, len) > len / 8);
        CHECK(round_trips(t, s, len));
        /* 256 KiB of random letters and no spaces (one piece), then 1 MiB of words. */
        for (size_t i = 0; i < len / 4; i++)
            s[i] = (char)('a' + rng() % 26);
        CHECK(round_trips(t, s, len / 4));
        for (size_t i = 0; i < len; i++)
            s[i] = rng() % 6 == 0 ? ' ' : (char)('a' + rng() % 26);
        CHECK(round_trips(t, s, len));
        double secs = (double)(clock() - c0) / CLOCKS_PER_SEC;
        if (secs > 120) H_FAIL("%s: 3.25 MiB took %.1f s", bt_tok_encoding_name(e), secs);
    }
    free(s);
}

/* Threads share the encodings; each uses its own scratch for long pieces. */
struct thread_arg {
    enum bt_tok_encoding enc;
    size_t count;
};

static void *thread_main(void *p)
{
    struct thread_arg *a = p;
    const struct bt_tok *t = bt_tok_get(a->enc);
    char text[600];
    for (size_t i = 0; i < sizeof(text); i++)
        text[i] = (char)('a' + i % 7); /* a 600-byte piece */
    a->count = 0;
    for (int i = 0; t && i < 50; i++)
        a->count += bt_tok_count(t, text, sizeof(text));
    return NULL;
}

TEST(threads_share_encodings)
{
    pthread_t th[4];
    struct thread_arg args[4];
    for (int i = 0; i < 4; i++) {
        args[i].enc = (enum bt_tok_encoding)(i % 2);
        REQUIRE(pthread_create(&th[i], NULL, thread_main, &args[i]) == 0);
    }
    for (int i = 0; i < 4; i++)
        pthread_join(th[i], NULL);
    CHECK(args[0].count > 0 && args[0].count == args[2].count);
    CHECK(args[1].count > 0 && args[1].count == args[3].count);
}

int main(void)
{
    RUN(golden_cl100k);
    RUN(golden_o200k);
    RUN(whitespace_rules);
    RUN(contractions_and_case);
    RUN(digits_group_by_three);
    RUN(empty_and_bad_arguments);
    RUN(encoding_names_and_models);
    RUN(invalid_utf8);
    RUN(small_and_large_merge_agree);
    RUN(long_inputs_finish);
    RUN(threads_share_encodings);
    return HARNESS_DONE();
}
