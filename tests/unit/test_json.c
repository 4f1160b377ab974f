#include "harness.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdlib.h>

#include "core/arena.h"
#include "core/buf.h"
#include "json/json.h"

/* Parses a NUL-terminated literal; the doc borrows `s` and tokens live in `a`. */
static enum bt_err parse(struct bt_json_doc *d, const char *s, struct bt_arena *a)
{
    return bt_json_parse(d, s, strlen(s), a, NULL, NULL);
}

/* Parse result of `s` (length n) with its own arena; err (optional) filled. */
static enum bt_err try_parse(const char *s, size_t n, const struct bt_json_limits *lim,
                             struct bt_json_error *err)
{
    struct bt_arena a;
    bt_arena_init(&a, 4096, 0);
    struct bt_json_doc d;
    enum bt_err e = bt_json_parse(&d, s, n, &a, lim, err);
    bt_arena_free(&a);
    return e;
}

static enum bt_err try_c(const char *s) { return try_parse(s, strlen(s), NULL, NULL); }

/* ---- tokenizer ---- */

TEST(parse_all_types)
{
    struct bt_arena a;
    bt_arena_init(&a, 4096, 0);
    struct bt_json_doc d;
    const char *s = " {\"s\":\"x\",\"n\":-1.5e3,\"t\":true,\"f\":false,\"z\":null,"
                    "\"a\":[1,[],{}],\"o\":{\"k\":\"v\"}} ";
    REQUIRE(parse(&d, s, &a) == BT_OK);
    CHECK_INT(d.ntoks, 20);
    CHECK_INT(bt_json_type(&d, 0), BT_JSON_OBJECT);
    CHECK_INT(d.toks[0].size, 7);
    CHECK_INT(d.toks[0].start, 1);
    CHECK_INT(d.toks[0].end, strlen(s) - 1);
    CHECK_INT(d.toks[0].next, d.ntoks);
    CHECK_INT(bt_json_type(&d, bt_json_get(&d, 0, "s")), BT_JSON_STRING);
    CHECK_INT(bt_json_type(&d, bt_json_get(&d, 0, "n")), BT_JSON_NUMBER);
    CHECK_INT(bt_json_type(&d, bt_json_get(&d, 0, "t")), BT_JSON_TRUE);
    CHECK_INT(bt_json_type(&d, bt_json_get(&d, 0, "f")), BT_JSON_FALSE);
    CHECK_INT(bt_json_type(&d, bt_json_get(&d, 0, "z")), BT_JSON_NULL);
    int arr = bt_json_get(&d, 0, "a");
    CHECK_INT(bt_json_type(&d, arr), BT_JSON_ARRAY);
    CHECK_INT(d.toks[arr].size, 3);
    CHECK_SLICE(bt_json_raw(&d, arr), "[1,[],{}]");
    CHECK_INT(d.toks[arr].next, arr + 4);
    CHECK_SLICE(bt_json_raw(&d, bt_json_get(&d, 0, "n")), "-1.5e3");
    CHECK_SLICE(bt_json_raw(&d, bt_json_get(&d, 0, "s")), "\"x\"");
    CHECK_SLICE(bt_json_str_raw(&d, bt_json_get(&d, 0, "s")), "x");
    /* Scalars at the top level are documents too (RFC 8259). */
    const char *tops[] = {"0", "-0", "1e5", "\"\"", "true", "false", "null", "[]", "{}", " 7 "};
    for (size_t i = 0; i < sizeof(tops) / sizeof(*tops); i++) {
        CHECK_INT(parse(&d, tops[i], &a), BT_OK);
        CHECK_INT(d.ntoks, 1);
    }
    bt_arena_free(&a);
}

TEST(parse_numbers)
{
    const char *ok[] = {"0", "-0", "0.0", "10", "123456789", "-12.5", "1e9", "1E+9", "1e-9",
                        "0.5e0", "1.25E-002", "1e400", "-0.0e-0"};
    for (size_t i = 0; i < sizeof(ok) / sizeof(*ok); i++)
        if (try_c(ok[i]) != BT_OK) H_FAIL("should accept %s", ok[i]);
    const char *bad[] = {"01", "-01", "00", "1.", "1.e5", ".5", "-", "+1", "1e", "1e+", "-a",
                         "0x10", "1.5.5", "1e5e5", "Infinity", "NaN", "--1", "1 2", "[01]",
                         "[1.]", "{\"a\":-}"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(*bad); i++)
        if (try_c(bad[i]) != BT_EPARSE) H_FAIL("should reject %s", bad[i]);
}

TEST(parse_invalid)
{
    const char *bad[] = {
        "", " ", "[1,]", "{\"a\":1,}", "[,1]", "{,}", "{\"a\"}", "{\"a\":}", "{a:1}",
        "{'a':1}", "['a']", "[1 2]", "{\"a\":1 \"b\":2}", "[", "]", "{", "}", "[1", "{\"a\":1",
        "\"abc", "\"abc\\", "\"\\x\"", "\"\\u12\"", "\"\\u12g4\"", "\"\\U1234\"", "tru", "nul",
        "truex", "true false", "[]]", "{}}", "[]x", "{\"a\":1}x", "\"a\"\"b\"", "nan", "[\"\\\"]",
        "{\"a\" 1}", "[1,,2]", "\xEF\xBB\xBF{}", "\v1", "\f[]", "[1]\x01",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(*bad); i++)
        if (try_c(bad[i]) != BT_EPARSE) H_FAIL("should reject [%zu] %s", i, bad[i]);
    /* Control characters inside strings must be escaped. */
    CHECK_INT(try_c("\"a\tb\""), BT_EPARSE);
    CHECK_INT(try_c("\"a\nb\""), BT_EPARSE);
    CHECK_INT(try_c("\"\x1f\""), BT_EPARSE);
    CHECK_INT(try_parse("\"a\0b\"", 5, NULL, NULL), BT_EPARSE);
    CHECK_INT(try_parse("[1]\0", 4, NULL, NULL), BT_EPARSE);
    CHECK_INT(try_c("\"\x7f\""), BT_OK); /* DEL is not a control character for JSON */
    CHECK_INT(try_c("\"a\\tb\\u001f\""), BT_OK);
}

TEST(parse_utf8)
{
    const char *ok[] = {"\"\xC3\xA9\"", "\"\xE2\x82\xAC\"", "\"\xF0\x9F\x98\x80\"",
                        "\"\xEF\xBF\xBF\"", "\"\xF4\x8F\xBF\xBF\"", "\"\xED\x9F\xBF\"",
                        "\"caf\xC3\xA9 na\xC3\xAFve \xE6\x97\xA5\xE6\x9C\xAC\xE8\xAA\x9E\""};
    for (size_t i = 0; i < sizeof(ok) / sizeof(*ok); i++)
        if (try_c(ok[i]) != BT_OK) H_FAIL("should accept [%zu]", i);
    const char *bad[] = {
        "\"\x80\"",             /* lone continuation */
        "\"\xC3\"",             /* truncated */
        "\"\xC3(\"",            /* bad continuation */
        "\"\xC0\xAF\"",         /* overlong '/' */
        "\"\xC1\xBF\"",         /* overlong */
        "\"\xE0\x80\xAF\"",     /* overlong 3-byte */
        "\"\xED\xA0\x80\"",     /* UTF-8 encoded surrogate */
        "\"\xF0\x80\x80\xAF\"", /* overlong 4-byte */
        "\"\xF4\x90\x80\x80\"", /* > U+10FFFF */
        "\"\xF5\x80\x80\x80\"", "\"\xFF\"", "\"\xFE\"",
        "\"\xE2\x82\"",          /* truncated before the quote */
        "[\"ok\",\"\xE2\x82\xAC\xE2\"]",
        "\xC3\xA9", /* outside a string */
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(*bad); i++)
        if (try_c(bad[i]) != BT_EPARSE) H_FAIL("should reject [%zu]", i);
    /* The 8-byte fast path must not skip an invalid byte in the middle of a long run. */
    char buf[64];
    for (size_t pos = 1; pos < 40; pos++) {
        memset(buf, 'a', 42);
        buf[0] = '"';
        buf[41] = '"';
        buf[pos] = (char)0x80;
        if (try_parse(buf, 42, NULL, NULL) != BT_EPARSE) H_FAIL("bad byte at %zu missed", pos);
        buf[pos] = '\n';
        if (try_parse(buf, 42, NULL, NULL) != BT_EPARSE) H_FAIL("ctl byte at %zu missed", pos);
        buf[pos] = '"';
        if (try_parse(buf, 42, NULL, NULL) != BT_EPARSE) H_FAIL("quote at %zu missed", pos);
        buf[pos] = 'z';
        if (try_parse(buf, 42, NULL, NULL) != BT_OK) H_FAIL("plain at %zu refused", pos);
    }
}

TEST(parse_error_offsets)
{
    struct bt_json_error e;
    CHECK_INT(try_parse("[1,2,]", 6, NULL, &e), BT_EPARSE);
    CHECK_INT(e.offset, 5);
    CHECK(strstr(e.msg, "value") != NULL);
    CHECK_INT(try_parse("{\"a\":1 x", 8, NULL, &e), BT_EPARSE);
    CHECK_INT(e.offset, 7);
    CHECK_STR(e.msg, "expected ',' or '}' after object member");
    CHECK_INT(try_parse("[01]", 4, NULL, &e), BT_EPARSE);
    CHECK_INT(e.offset, 2);
    CHECK(strstr(e.msg, "leading zero") != NULL);
    CHECK_INT(try_parse("\"ab\\q\"", 6, NULL, &e), BT_EPARSE);
    CHECK_INT(e.offset, 3);
    CHECK(strstr(e.msg, "escape") != NULL);
    CHECK_INT(try_parse("\"ab\xff\"", 5, NULL, &e), BT_EPARSE);
    CHECK_INT(e.offset, 3);
    CHECK(strstr(e.msg, "UTF-8") != NULL);
    CHECK_INT(try_parse("{} {}", 5, NULL, &e), BT_EPARSE);
    CHECK_INT(e.offset, 3);
    CHECK_INT(try_parse("[\"abc", 5, NULL, &e), BT_EPARSE);
    CHECK_INT(e.offset, 5);
    CHECK(strstr(e.msg, "unterminated") != NULL);
    CHECK_INT(try_parse("", 0, NULL, &e), BT_EPARSE);
    CHECK_INT(e.offset, 0);
    CHECK(e.msg[0] != '\0');
    CHECK_INT(try_parse("\"a\x01\"", 4, NULL, &e), BT_EPARSE);
    CHECK_INT(e.offset, 2);
    CHECK(strstr(e.msg, "control") != NULL);
}

TEST(parse_limits)
{
    char deep[300];
    for (int i = 0; i < 150; i++) {
        deep[i] = '[';
        deep[299 - i] = ']';
    }
    struct bt_json_error e;
    /* Default depth is 128. */
    CHECK_INT(try_parse(deep, 300, NULL, &e), BT_ETOOBIG);
    CHECK_INT(e.offset, 128);
    CHECK(strstr(e.msg, "deep") != NULL);
    CHECK_INT(try_parse(deep + 22, 256, NULL, NULL), BT_OK); /* exactly 128 */
    CHECK_INT(try_parse(deep + 21, 258, NULL, NULL), BT_ETOOBIG);
    struct bt_json_limits lim = {.max_depth = 150};
    CHECK_INT(try_parse(deep, 300, &lim, NULL), BT_OK);
    lim.max_depth = 149;
    CHECK_INT(try_parse(deep, 300, &lim, NULL), BT_ETOOBIG);
    lim.max_depth = 2;
    CHECK_INT(try_c("[[1]]") , BT_OK);
    CHECK_INT(try_parse("[[1]]", 5, &lim, NULL), BT_OK);
    CHECK_INT(try_parse("[[[1]]]", 7, &lim, NULL), BT_ETOOBIG);
    CHECK_INT(try_parse("{\"a\":{\"b\":{}}}", 14, &lim, NULL), BT_ETOOBIG);

    struct bt_json_limits tl = {.max_tokens = 4};
    CHECK_INT(try_parse("[1,2,3]", 7, &tl, NULL), BT_OK);
    CHECK_INT(try_parse("[1,2,3,4]", 9, &tl, &e), BT_ETOOBIG);
    CHECK(strstr(e.msg, "tokens") != NULL);
    CHECK_INT(try_parse("{\"a\":1,\"b\":2}", 13, &tl, NULL), BT_ETOOBIG);

    /* Many tokens: the token array grows past its first guess. */
    struct bt_buf b;
    bt_buf_init(&b, 1 << 22);
    bt_buf_append_c(&b, "[");
    for (int i = 0; i < 100000; i++) bt_buf_append_c(&b, i ? ",1" : "1");
    bt_buf_append_c(&b, "]");
    struct bt_arena a;
    bt_arena_init(&a, 4096, 0);
    struct bt_json_doc d;
    CHECK_INT(bt_json_parse(&d, b.p, b.len, &a, NULL, NULL), BT_OK);
    CHECK_INT(d.ntoks, 100001);
    CHECK_INT(d.toks[0].size, 100000);
    CHECK_INT(bt_json_at(&d, 0, 99999), 100000);
    /* An arena cap turns into BT_ENOMEM, not a crash. */
    struct bt_arena small;
    bt_arena_init(&small, 1024, 4096);
    CHECK_INT(bt_json_parse(&d, b.p, b.len, &small, NULL, NULL), BT_ENOMEM);
    bt_arena_free(&small);
    bt_arena_free(&a);
    bt_buf_free(&b);
}

/* ---- navigation ---- */

TEST(navigation)
{
    struct bt_arena a;
    bt_arena_init(&a, 4096, 0);
    struct bt_json_doc d;
    const char *s = "{\"model\":\"gpt\",\"messages\":[{\"role\":\"system\",\"content\":\"be brief\"},"
                    "{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"hi\"}]}],"
                    "\"opts\":{\"deep\":{\"er\":42}},\"dup\":1,\"dup\":2,\"k\\u0065y\":\"esc\"}";
    REQUIRE(parse(&d, s, &a) == BT_OK);
    CHECK(bt_json_str_eq(&d, bt_json_get(&d, 0, "model"), "gpt"));
    CHECK_INT(bt_json_get(&d, 0, "absent"), -1);
    CHECK_INT(bt_json_get(&d, -1, "model"), -1);
    CHECK_INT(bt_json_get(&d, 1, "model"), -1); /* a string, not an object */
    int deep = bt_json_path(&d, 0, "opts", "deep", "er", NULL);
    int64_t v = 0;
    CHECK_INT(bt_json_int(&d, deep, &v), BT_OK);
    CHECK_INT(v, 42);
    CHECK_INT(bt_json_path(&d, 0, "opts", "nope", "er", NULL), -1);
    CHECK_INT(bt_json_path(&d, 0, NULL), 0);
    /* Duplicate keys: the last wins. */
    CHECK_INT(bt_json_int(&d, bt_json_get(&d, 0, "dup"), &v), BT_OK);
    CHECK_INT(v, 2);
    /* Keys compare unescaped. */
    CHECK(bt_json_str_eq(&d, bt_json_get(&d, 0, "key"), "esc"));

    int msgs = bt_json_get(&d, 0, "messages");
    CHECK_INT(d.toks[msgs].size, 2);
    int m1 = bt_json_at(&d, msgs, 1);
    CHECK(bt_json_str_eq(&d, bt_json_get(&d, m1, "role"), "user"));
    CHECK_INT(bt_json_at(&d, msgs, 2), -1);
    int txt = bt_json_get(&d, bt_json_at(&d, bt_json_get(&d, m1, "content"), 0), "text");
    CHECK(bt_json_str_eq(&d, txt, "hi"));
    CHECK(!bt_json_str_eq(&d, txt, "h"));
    CHECK(!bt_json_str_eq(&d, txt, "hii"));
    /* bt_json_at on an object gives the i-th member value. */
    CHECK_INT(bt_json_at(&d, 0, 0), bt_json_get(&d, 0, "model"));
    CHECK_INT(bt_json_at(&d, 0, 2), bt_json_get(&d, 0, "opts"));

    /* Iterate the array of messages, then each object's keys. */
    const char *roles[2] = {0};
    int n = 0, keys = 0;
    for (int c = bt_json_first(&d, msgs); c >= 0 && n < (int)d.toks[msgs].size;
         c = (int)d.toks[c].next, n++) {
        roles[n] = bt_json_str_eq(&d, bt_json_get(&d, c, "role"), "system") ? "system" : "other";
        uint32_t i = 0;
        for (int k = bt_json_first(&d, c); k >= 0 && i < d.toks[c].size;
             k = (int)d.toks[k + 1].next, i++) {
            CHECK_INT(bt_json_type(&d, k), BT_JSON_STRING);
            keys++;
        }
    }
    CHECK_INT(n, 2);
    CHECK_INT(keys, 4);
    CHECK_STR(roles[0], "system");
    CHECK_STR(roles[1], "other");
    CHECK_INT(bt_json_first(&d, bt_json_get(&d, 0, "model")), -1);
    CHECK_INT(bt_json_first(&d, -1), -1);
    REQUIRE(parse(&d, "{\"e\":{},\"f\":[]}", &a) == BT_OK);
    CHECK_INT(bt_json_first(&d, bt_json_get(&d, 0, "e")), -1);
    CHECK_INT(bt_json_first(&d, bt_json_get(&d, 0, "f")), -1);
    CHECK_INT(bt_json_type(&d, -1), 0);
    CHECK_INT(bt_json_raw(&d, -1).len, 0);
    bt_arena_free(&a);
}

TEST(scalars)
{
    struct bt_arena a;
    bt_arena_init(&a, 4096, 0);
    struct bt_json_doc d;
    REQUIRE(parse(&d, "[0,-7,9223372036854775807,-9223372036854775808,9223372036854775808,"
                      "1.5,2.0,1e3,-2.5e-3,true,false,null,\"s\",1e400,12345678901234567890123]",
                  &a) == BT_OK);
    int64_t v = 0;
    double x = 0;
    bool b = false;
    CHECK_INT(bt_json_int(&d, bt_json_at(&d, 0, 0), &v), BT_OK);
    CHECK_INT(v, 0);
    CHECK_INT(bt_json_int(&d, bt_json_at(&d, 0, 1), &v), BT_OK);
    CHECK_INT(v, -7);
    CHECK_INT(bt_json_int(&d, bt_json_at(&d, 0, 2), &v), BT_OK);
    CHECK(v == INT64_MAX);
    CHECK_INT(bt_json_int(&d, bt_json_at(&d, 0, 3), &v), BT_OK);
    CHECK(v == INT64_MIN);
    CHECK_INT(bt_json_int(&d, bt_json_at(&d, 0, 4), &v), BT_EINVAL);
    CHECK_INT(bt_json_int(&d, bt_json_at(&d, 0, 5), &v), BT_EINVAL);
    CHECK_INT(bt_json_int(&d, bt_json_at(&d, 0, 6), &v), BT_OK);
    CHECK_INT(v, 2);
    CHECK_INT(bt_json_int(&d, bt_json_at(&d, 0, 7), &v), BT_OK);
    CHECK_INT(v, 1000);
    CHECK_INT(bt_json_int(&d, bt_json_at(&d, 0, 12), &v), BT_EINVAL);
    CHECK_INT(bt_json_double(&d, bt_json_at(&d, 0, 5), &x), BT_OK);
    CHECK(x == 1.5);
    CHECK_INT(bt_json_double(&d, bt_json_at(&d, 0, 8), &x), BT_OK);
    CHECK(x == -2.5e-3);
    CHECK_INT(bt_json_double(&d, bt_json_at(&d, 0, 13), &x), BT_EINVAL); /* overflows */
    CHECK_INT(bt_json_double(&d, bt_json_at(&d, 0, 14), &x), BT_OK);
    CHECK(x > 1.2e22 && x < 1.3e22);
    CHECK_INT(bt_json_double(&d, bt_json_at(&d, 0, 12), &x), BT_EINVAL);
    CHECK_INT(bt_json_bool(&d, bt_json_at(&d, 0, 9), &b), BT_OK);
    CHECK(b);
    CHECK_INT(bt_json_bool(&d, bt_json_at(&d, 0, 10), &b), BT_OK);
    CHECK(!b);
    CHECK_INT(bt_json_bool(&d, bt_json_at(&d, 0, 11), &b), BT_EINVAL);
    CHECK_INT(bt_json_bool(&d, -1, &b), BT_EINVAL);
    /* A number that ends the input (no terminator after it). */
    char num[3] = {'4', '2', 'X'};
    REQUIRE(bt_json_parse(&d, num, 2, &a, NULL, NULL) == BT_OK);
    CHECK_INT(bt_json_double(&d, 0, &x), BT_OK);
    CHECK(x == 42.0);
    bt_arena_free(&a);
}

/* ---- strings ---- */

TEST(string_escapes)
{
    struct bt_arena a;
    bt_arena_init(&a, 4096, 0);
    struct bt_json_doc d;
    REQUIRE(parse(&d, "[\"plain\",\"a\\\"b\\\\c\\/d\\b\\f\\n\\r\\t\",\"\\u00e9\\u20AC\","
                      "\"\\uD83D\\uDE00\",\"x\\uD83Dy\",\"\\uDE00\",\"\\uD83D\\u0041\","
                      "\"\\uD83D\\uD83D\\uDE00\",\"\\u0000z\"]",
                  &a) == BT_OK);
    struct bt_str s;
    CHECK_INT(bt_json_str(&d, 1, &a, &s), BT_OK);
    CHECK_SLICE(s, "plain");
    CHECK(s.p == d.src + 2); /* no escapes: a slice into the source */
    CHECK_INT(d.toks[1].escaped, 0);
    CHECK_INT(d.toks[2].escaped, 1);
    CHECK_INT(bt_json_str(&d, 2, &a, &s), BT_OK);
    CHECK_SLICE(s, "a\"b\\c/d\b\f\n\r\t");
    CHECK_INT(s.p[s.len], 0);
    CHECK_INT(bt_json_str(&d, 3, &a, &s), BT_OK);
    CHECK_SLICE(s, "\xC3\xA9\xE2\x82\xAC");
    CHECK_INT(bt_json_str(&d, 4, &a, &s), BT_OK);
    CHECK_SLICE(s, "\xF0\x9F\x98\x80"); /* U+1F600 from a surrogate pair */
    CHECK(bt_json_str_eq(&d, 4, "\xF0\x9F\x98\x80"));
    CHECK_INT(bt_json_str(&d, 5, &a, &s), BT_OK);
    CHECK_SLICE(s, "x\xEF\xBF\xBDy"); /* lone high surrogate */
    CHECK_INT(bt_json_str(&d, 6, &a, &s), BT_OK);
    CHECK_SLICE(s, "\xEF\xBF\xBD"); /* lone low surrogate */
    CHECK_INT(bt_json_str(&d, 7, &a, &s), BT_OK);
    CHECK_SLICE(s, "\xEF\xBF\xBD" "A");
    CHECK_INT(bt_json_str(&d, 8, &a, &s), BT_OK);
    CHECK_SLICE(s, "\xEF\xBF\xBD\xF0\x9F\x98\x80");
    CHECK_INT(bt_json_str(&d, 9, &a, &s), BT_OK);
    CHECK_INT(s.len, 2);
    CHECK(s.p[0] == 0 && s.p[1] == 'z');
    CHECK_INT(bt_json_str(&d, 0, &a, &s), BT_EINVAL);
    CHECK_INT(bt_json_str(&d, -1, &a, &s), BT_EINVAL);

    struct bt_buf b;
    bt_buf_init(&b, 64);
    CHECK_INT(bt_json_unescape(BT_STR("a\\u0041\\n"), &b), BT_OK);
    CHECK_SLICE(bt_buf_str(&b), "aA\n");
    bt_buf_reset(&b);
    CHECK_INT(bt_json_unescape(BT_STR("bad\\q"), &b), BT_EPARSE);
    CHECK_INT(bt_json_unescape(BT_STR("bad\\u12"), &b), BT_EPARSE);
    CHECK_INT(bt_json_unescape(BT_STR("bad\\"), &b), BT_EPARSE);
    bt_buf_free(&b);
    /* The cap applies to the decoded size: 12 escaped bytes decode to 4. */
    bt_buf_init(&b, 4);
    CHECK_INT(bt_json_unescape(BT_STR("\\uD83D\\uDE00"), &b), BT_OK);
    CHECK_SLICE(bt_buf_str(&b), "\xF0\x9F\x98\x80");
    CHECK_INT(bt_json_unescape(BT_STR("x"), &b), BT_ETOOBIG);
    bt_buf_free(&b);
    bt_arena_free(&a);
}

TEST(string_escape_out)
{
    struct bt_buf b;
    bt_buf_init(&b, 1024);
    CHECK_INT(bt_json_escape(&b, BT_STR("plain")), BT_OK);
    CHECK_SLICE(bt_buf_str(&b), "\"plain\"");
    bt_buf_reset(&b);
    CHECK_INT(bt_json_escape(&b, BT_STR("q\"b\\n\n\r\t\b\f\x01\x1f/\x7f")), BT_OK);
    CHECK_SLICE(bt_buf_str(&b), "\"q\\\"b\\\\n\\n\\r\\t\\b\\f\\u0001\\u001f/\x7f\"");
    bt_buf_reset(&b);
    CHECK_INT(bt_json_escape(&b, (struct bt_str){"a\0b", 3}), BT_OK);
    CHECK_SLICE(bt_buf_str(&b), "\"a\\u0000b\"");
    bt_buf_reset(&b);
    /* Valid UTF-8 passes through; invalid bytes become U+FFFD. */
    CHECK_INT(bt_json_escape(&b, BT_STR("\xC3\xA9\xF0\x9F\x98\x80|\xFF|\xC3|\xED\xA0\x80")), BT_OK);
    CHECK_SLICE(bt_buf_str(&b), "\"\xC3\xA9\xF0\x9F\x98\x80|\xEF\xBF\xBD|\xEF\xBF\xBD|"
                                "\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD\"");
    bt_buf_reset(&b);
    CHECK_INT(bt_json_escape(&b, BT_STR_NULL), BT_OK);
    CHECK_SLICE(bt_buf_str(&b), "\"\"");
    bt_buf_free(&b);
    /* Past the cap: an error and the buffer unchanged. */
    bt_buf_init(&b, 8);
    bt_buf_append_c(&b, "ab");
    CHECK_INT(bt_json_escape(&b, BT_STR("\n\n\n")), BT_ETOOBIG);
    CHECK_SLICE(bt_buf_str(&b), "ab");
    bt_buf_free(&b);
}

/* ---- splicer ---- */

/* Applies the edits made by `edit` to `src` and compares with `want`; the output
 * must also parse. */
static void splice_case(const char *src, const char *want,
                        enum bt_err (*edit)(struct bt_json_splice *, const struct bt_json_doc *),
                        int line)
{
    struct bt_arena a;
    bt_arena_init(&a, 4096, 0);
    struct bt_json_doc d;
    struct bt_buf out;
    bt_buf_init(&out, 1 << 16);
    if (parse(&d, src, &a) != BT_OK) {
        H_FAIL("line %d: source does not parse", line);
        goto done;
    }
    struct bt_json_splice sp;
    bt_json_splice_init(&sp, &d, &a);
    enum bt_err e = edit(&sp, &d);
    if (!e) e = bt_json_splice_apply(&sp, &out);
    if (e) {
        H_FAIL("line %d: edit failed: %d", line, (int)e);
        goto done;
    }
    if (out.len != strlen(want) || memcmp(out.p, want, out.len) != 0)
        H_FAIL("line %d: got %.*s want %s", line, (int)out.len, out.p, want);
    struct bt_json_doc d2;
    if (bt_json_parse(&d2, out.p, out.len, &a, NULL, NULL) != BT_OK)
        H_FAIL("line %d: output does not parse: %.*s", line, (int)out.len, out.p);
    /* The same edits as slices (no copy) join to the same bytes; with room for
     * one slice fewer than needed, BT_ETOOBIG. */
    struct bt_str parts[16];
    size_t n = 0, joined = 0;
    e = bt_json_splice_slices(&sp, parts, 16, &n);
    if (e) H_FAIL("line %d: slices failed: %d", line, (int)e);
    for (size_t i = 0; !e && i < n; i++) {
        if (!parts[i].len) H_FAIL("line %d: empty slice %zu", line, i);
        if (joined + parts[i].len > out.len || memcmp(out.p + joined, parts[i].p, parts[i].len) != 0)
            H_FAIL("line %d: slice %zu differs from the applied output", line, i);
        joined += parts[i].len;
    }
    if (!e && joined != out.len) H_FAIL("line %d: slices hold %zu bytes, not %zu", line, joined, out.len);
    if (!e && n > 0 && bt_json_splice_slices(&sp, parts, n - 1, &n) != BT_ETOOBIG)
        H_FAIL("line %d: too few slots not refused", line);
done:
    bt_buf_free(&out);
    bt_arena_free(&a);
}

static enum bt_err ed_none(struct bt_json_splice *sp, const struct bt_json_doc *d)
{
    (void)sp;
    (void)d;
    return BT_OK;
}
static enum bt_err ed_set_model(struct bt_json_splice *sp, const struct bt_json_doc *d)
{
    (void)d;
    return bt_json_splice_set(sp, 0, "model", BT_STR("\"m2\""));
}
static enum bt_err ed_replace_model(struct bt_json_splice *sp, const struct bt_json_doc *d)
{
    return bt_json_splice_replace(sp, bt_json_get(d, 0, "model"), BT_STR("\"gpt-x\""));
}
static enum bt_err ed_add_stream(struct bt_json_splice *sp, const struct bt_json_doc *d)
{
    (void)d;
    return bt_json_splice_set(sp, 0, "stream_options", BT_STR("{\"include_usage\":true}"));
}
static enum bt_err ed_rm_a(struct bt_json_splice *sp, const struct bt_json_doc *d)
{
    (void)d;
    return bt_json_splice_remove(sp, 0, "a");
}
static enum bt_err ed_rm_b(struct bt_json_splice *sp, const struct bt_json_doc *d)
{
    (void)d;
    return bt_json_splice_remove(sp, 0, "b");
}
static enum bt_err ed_rm_c(struct bt_json_splice *sp, const struct bt_json_doc *d)
{
    (void)d;
    return bt_json_splice_remove(sp, 0, "c");
}
static enum bt_err ed_rm_all(struct bt_json_splice *sp, const struct bt_json_doc *d)
{
    (void)d;
    enum bt_err e = bt_json_splice_remove(sp, 0, "b");
    if (!e) e = bt_json_splice_remove(sp, 0, "c");
    if (!e) e = bt_json_splice_remove(sp, 0, "a");
    return e;
}
static enum bt_err ed_rm_bc(struct bt_json_splice *sp, const struct bt_json_doc *d)
{
    (void)d;
    enum bt_err e = bt_json_splice_remove(sp, 0, "b");
    if (!e) e = bt_json_splice_remove(sp, 0, "c");
    return e;
}
static enum bt_err ed_rm_ab(struct bt_json_splice *sp, const struct bt_json_doc *d)
{
    (void)d;
    enum bt_err e = bt_json_splice_remove(sp, 0, "a");
    if (!e) e = bt_json_splice_remove(sp, 0, "b");
    return e;
}
static enum bt_err ed_add_then_rm_all(struct bt_json_splice *sp, const struct bt_json_doc *d)
{
    (void)d;
    enum bt_err e = bt_json_splice_set(sp, 0, "x", BT_STR("1"));
    if (!e) e = bt_json_splice_set(sp, 0, "y", BT_STR("2"));
    if (!e) e = bt_json_splice_remove(sp, 0, "a");
    return e;
}
static enum bt_err ed_rm_then_add(struct bt_json_splice *sp, const struct bt_json_doc *d)
{
    (void)d;
    enum bt_err e = bt_json_splice_remove(sp, 0, "a");
    if (!e) e = bt_json_splice_set(sp, 0, "x", BT_STR("1"));
    if (!e) e = bt_json_splice_set(sp, 0, "x", BT_STR("[2]")); /* set twice: last wins */
    if (!e) e = bt_json_splice_set(sp, 0, "a", BT_STR("3"));  /* re-added at the end */
    return e;
}
static enum bt_err ed_set_twice(struct bt_json_splice *sp, const struct bt_json_doc *d)
{
    (void)d;
    enum bt_err e = bt_json_splice_set(sp, 0, "a", BT_STR("1"));
    if (!e) e = bt_json_splice_set(sp, 0, "a", BT_STR("2"));
    return e;
}
static enum bt_err ed_nested(struct bt_json_splice *sp, const struct bt_json_doc *d)
{
    int so = bt_json_get(d, 0, "stream_options");
    enum bt_err e = bt_json_splice_set(sp, so, "include_usage", BT_STR("true"));
    if (!e) e = bt_json_splice_replace(sp, bt_json_get(d, 0, "model"), BT_STR("\"m\""));
    if (!e) e = bt_json_splice_remove(sp, 0, "user");
    return e;
}
static enum bt_err ed_escaped_key(struct bt_json_splice *sp, const struct bt_json_doc *d)
{
    (void)d;
    return bt_json_splice_set(sp, 0, "new\"key\n", BT_STR("0"));
}

TEST(splice_edits)
{
    /* No edits: the output is the input, byte for byte. */
    const char *odd = " {\"t\" : 0.7 ,\"big\":1E+2,\"s\":\"\\u00e9\\/\"}\n";
    splice_case(odd, odd, ed_none, __LINE__);
    splice_case("{\"model\":\"a\",\"temperature\":0.7,\"top_p\":1.0e0}",
                "{\"model\":\"m2\",\"temperature\":0.7,\"top_p\":1.0e0}", ed_set_model, __LINE__);
    splice_case("{ \"temperature\" : 0.7 , \"model\" : \"a\" }",
                "{ \"temperature\" : 0.7 , \"model\" : \"gpt-x\" }", ed_replace_model, __LINE__);
    /* Appending: after the last member, with a comma; into an empty object, without. */
    splice_case("{\"model\":\"a\"}", "{\"model\":\"a\",\"stream_options\":{\"include_usage\":true}}",
                ed_add_stream, __LINE__);
    splice_case("{\n  \"model\": \"a\"\n}",
                "{\n  \"model\": \"a\",\"stream_options\":{\"include_usage\":true}\n}", ed_add_stream,
                __LINE__);
    splice_case("{}", "{\"stream_options\":{\"include_usage\":true}}", ed_add_stream, __LINE__);
    splice_case("{ }", "{\"stream_options\":{\"include_usage\":true} }", ed_add_stream, __LINE__);
    splice_case("{}", "{\"model\":\"m2\"}", ed_set_model, __LINE__);
    /* Removal of the first, middle and last member, and of the only one. */
    splice_case("{\"a\":1,\"b\":2,\"c\":3}", "{\"b\":2,\"c\":3}", ed_rm_a, __LINE__);
    splice_case("{\"a\":1,\"b\":2,\"c\":3}", "{\"a\":1,\"c\":3}", ed_rm_b, __LINE__);
    splice_case("{\"a\":1,\"b\":2,\"c\":3}", "{\"a\":1,\"b\":2}", ed_rm_c, __LINE__);
    splice_case("{ \"a\" : 1 , \"b\" : 2 }", "{ \"b\" : 2 }", ed_rm_a, __LINE__);
    splice_case("{ \"a\" : 1 , \"b\" : 2 }", "{ \"a\" : 1 }", ed_rm_b, __LINE__);
    splice_case("{\"a\":1}", "{}", ed_rm_a, __LINE__);
    splice_case("{\"a\":{\"x\":[1,2]}}", "{}", ed_rm_a, __LINE__);
    splice_case("{}", "{}", ed_rm_a, __LINE__);
    splice_case("{\"b\":1}", "{\"b\":1}", ed_rm_a, __LINE__); /* absent: no-op */
    /* Removing several, in any order, keeps commas right. */
    splice_case("{\"a\":1,\"b\":2,\"c\":3}", "{}", ed_rm_all, __LINE__);
    splice_case("{\"a\":1,\"b\":2,\"c\":3}", "{\"a\":1}", ed_rm_bc, __LINE__);
    splice_case("{\"a\":1,\"b\":2,\"c\":3}", "{\"c\":3}", ed_rm_ab, __LINE__);
    /* Duplicate keys are all removed. */
    splice_case("{\"a\":1,\"b\":2,\"a\":3}", "{\"b\":2}", ed_rm_a, __LINE__);
    /* Mixed insertions and removals in the same object. */
    splice_case("{\"a\":1}", "{\"x\":1,\"y\":2}", ed_add_then_rm_all, __LINE__);
    splice_case("{\"a\":1,\"b\":2}", "{\"b\":2,\"x\":[2],\"a\":3}", ed_rm_then_add, __LINE__);
    splice_case("{\"a\":0}", "{\"a\":2}", ed_set_twice, __LINE__);
    splice_case("{\"z\":0}", "{\"z\":0,\"a\":2}", ed_set_twice, __LINE__);
    splice_case("{\"model\":\"gpt\",\"stream_options\":{},\"user\":\"u\",\"t\":0.70}",
                "{\"model\":\"m\",\"stream_options\":{\"include_usage\":true},\"t\":0.70}", ed_nested,
                __LINE__);
    splice_case("{\"user\":\"u\",\"model\":\"gpt\",\"stream_options\":{\"a\":1}}",
                "{\"model\":\"m\",\"stream_options\":{\"a\":1,\"include_usage\":true}}", ed_nested,
                __LINE__);
    splice_case("{}", "{\"new\\\"key\\n\":0}", ed_escaped_key, __LINE__);
}

TEST(splice_errors)
{
    struct bt_arena a;
    bt_arena_init(&a, 4096, 0);
    struct bt_json_doc d;
    REQUIRE(parse(&d, "{\"a\":[1,2],\"b\":3}", &a) == BT_OK);
    struct bt_json_splice sp;
    bt_json_splice_init(&sp, &d, &a);
    CHECK_INT(bt_json_splice_set(&sp, 2, "x", BT_STR("1")), BT_EINVAL); /* an array */
    CHECK_INT(bt_json_splice_set(&sp, -1, "x", BT_STR("1")), BT_EINVAL);
    CHECK_INT(bt_json_splice_set(&sp, 0, "x", BT_STR_NULL), BT_EINVAL);
    CHECK_INT(bt_json_splice_remove(&sp, 2, "x"), BT_EINVAL);
    CHECK_INT(bt_json_splice_replace(&sp, 99, BT_STR("1")), BT_EINVAL);
    /* Overlapping edits: the array and one of its elements. */
    CHECK_INT(bt_json_splice_replace(&sp, 2, BT_STR("[]")), BT_OK);
    CHECK_INT(bt_json_splice_replace(&sp, 3, BT_STR("9")), BT_OK);
    struct bt_buf out;
    bt_buf_init(&out, 1024);
    bt_buf_append_c(&out, "keep");
    CHECK_INT(bt_json_splice_apply(&sp, &out), BT_EINVAL);
    CHECK_SLICE(bt_buf_str(&out), "keep");
    bt_buf_free(&out);
    /* Output over the buffer cap: ETOOBIG and the buffer unchanged. */
    bt_json_splice_init(&sp, &d, &a);
    CHECK_INT(bt_json_splice_replace(&sp, 0, BT_STR("[\"a long replacement value\"]")), BT_OK);
    bt_buf_init(&out, 10);
    CHECK_INT(bt_json_splice_apply(&sp, &out), BT_ETOOBIG);
    CHECK_INT(out.len, 0);
    bt_buf_free(&out);
    /* Many edits grow the edit array. */
    struct bt_buf big;
    bt_buf_init(&big, 1 << 20);
    bt_buf_append_c(&big, "[");
    for (int i = 0; i < 100; i++) bt_buf_append_c(&big, i ? ",0.10" : "0.10");
    bt_buf_append_c(&big, "]");
    REQUIRE(bt_json_parse(&d, big.p, big.len, &a, NULL, NULL) == BT_OK);
    bt_json_splice_init(&sp, &d, &a);
    for (int i = 99; i >= 0; i -= 2) CHECK_INT(bt_json_splice_replace(&sp, 1 + i, BT_STR("7")), BT_OK);
    bt_buf_init(&out, 1 << 20);
    CHECK_INT(bt_json_splice_apply(&sp, &out), BT_OK);
    CHECK(out.len > 10 && memcmp(out.p, "[0.10,7,0.10,7", 14) == 0);
    CHECK(memcmp(out.p + out.len - 8, ",0.10,7]", 8) == 0);
    bt_buf_free(&out);
    bt_buf_free(&big);
    bt_arena_free(&a);
}

/* ---- writer ---- */

TEST(writer_basic)
{
    struct bt_buf b;
    bt_buf_init(&b, 4096);
    struct bt_jw w;
    bt_jw_init(&w, &b);
    bt_jw_obj_begin(&w);
    bt_jw_key(&w, "id");
    bt_jw_cstr(&w, "chatcmpl-1");
    bt_jw_key(&w, "n");
    bt_jw_int(&w, -42);
    bt_jw_key(&w, "min");
    bt_jw_int(&w, INT64_MIN);
    bt_jw_key(&w, "ok");
    bt_jw_bool(&w, true);
    bt_jw_key(&w, "no");
    bt_jw_bool(&w, false);
    bt_jw_key(&w, "nil");
    bt_jw_null(&w);
    bt_jw_key(&w, "none");
    bt_jw_cstr(&w, NULL);
    bt_jw_key(&w, "list");
    bt_jw_arr_begin(&w);
    bt_jw_int(&w, 1);
    bt_jw_arr_begin(&w);
    bt_jw_arr_end(&w);
    bt_jw_obj_begin(&w);
    bt_jw_obj_end(&w);
    bt_jw_str(&w, BT_STR("a\"b"));
    bt_jw_arr_end(&w);
    bt_jw_key_str(&w, BT_STR("raw\n"));
    bt_jw_raw(&w, BT_STR("{\"x\":0.7}"));
    bt_jw_obj_end(&w);
    CHECK_INT(w.err, BT_OK);
    CHECK_INT(w.depth, 0);
    CHECK_SLICE(bt_buf_str(&b), "{\"id\":\"chatcmpl-1\",\"n\":-42,\"min\":-9223372036854775808,"
                                "\"ok\":true,\"no\":false,\"nil\":null,\"none\":null,"
                                "\"list\":[1,[],{},\"a\\\"b\"],\"raw\\n\":{\"x\":0.7}}");
    struct bt_arena a;
    bt_arena_init(&a, 4096, 0);
    struct bt_json_doc d;
    CHECK_INT(bt_json_parse(&d, b.p, b.len, &a, NULL, NULL), BT_OK);
    bt_arena_free(&a);
    /* A scalar document. */
    bt_buf_reset(&b);
    bt_jw_init(&w, &b);
    bt_jw_int(&w, 0);
    CHECK_INT(w.err, BT_OK);
    CHECK_SLICE(bt_buf_str(&b), "0");
    bt_buf_free(&b);
}

TEST(writer_doubles)
{
    struct { double v; const char *want; } cases[] = {
        {0.7, "0.7"}, {0.1, "0.1"}, {1.0, "1"}, {-2.5, "-2.5"}, {0.0, "0"}, {-0.0, "-0"},
        {1e21, "1e+21"}, {1.5e-7, "1.5e-07"}, {0.30000000000000004, "0.30000000000000004"},
        {123456789012345678.0, "1.2345678901234568e+17"}, {NAN, "null"}, {INFINITY, "null"},
        {-INFINITY, "null"}, {5e-324, "4.94065645841247e-324"},
    };
    struct bt_buf b;
    bt_buf_init(&b, 256);
    for (size_t i = 0; i < sizeof(cases) / sizeof(*cases); i++) {
        bt_buf_reset(&b);
        struct bt_jw w;
        bt_jw_init(&w, &b);
        bt_jw_double(&w, cases[i].v);
        CHECK_INT(w.err, BT_OK);
        if (b.len != strlen(cases[i].want) || memcmp(b.p, cases[i].want, b.len) != 0)
            H_FAIL("double %zu: got %.*s want %s", i, (int)b.len, b.p, cases[i].want);
        if (isfinite(cases[i].v)) {
            bt_buf_cstr(&b);
            CHECK(strtod(b.p, NULL) == cases[i].v);
        }
    }
    /* Doubles inside an array get commas. */
    bt_buf_reset(&b);
    struct bt_jw w;
    bt_jw_init(&w, &b);
    bt_jw_arr_begin(&w);
    bt_jw_double(&w, 0.5);
    bt_jw_double(&w, NAN);
    bt_jw_double(&w, 2);
    bt_jw_arr_end(&w);
    CHECK_SLICE(bt_buf_str(&b), "[0.5,null,2]");
    bt_buf_free(&b);
}

/* What bt_jw_decimal writes for v, places as the only value in b. */
static struct bt_str decimal_text(struct bt_buf *b, int64_t v, unsigned places)
{
    bt_buf_reset(b);
    struct bt_jw w;
    bt_jw_init(&w, b);
    bt_jw_decimal(&w, v, places);
    return w.err ? BT_STR("error") : bt_buf_str(b);
}

TEST(writer_decimal)
{
    struct bt_buf b, d;
    bt_buf_init(&b, 256);
    bt_buf_init(&d, 256);
    CHECK_SLICE(decimal_text(&b, 12345, 3), "12.345");
    CHECK_SLICE(decimal_text(&b, 12300, 3), "12.3");
    CHECK_SLICE(decimal_text(&b, 12000, 3), "12");
    CHECK_SLICE(decimal_text(&b, 5, 3), "0.005");
    CHECK_SLICE(decimal_text(&b, 0, 3), "0");
    CHECK_SLICE(decimal_text(&b, -1500, 3), "-1.5");
    CHECK_SLICE(decimal_text(&b, 7, 0), "7");
    CHECK_SLICE(decimal_text(&b, -7, 1), "-0.7");
    CHECK_SLICE(decimal_text(&b, INT64_MIN, 0), "-9223372036854775808");
    CHECK_SLICE(decimal_text(&b, INT64_MAX, 18), "9.223372036854775807");
    CHECK_SLICE(decimal_text(&b, INT64_MIN, 18), "-9.223372036854775808");
    CHECK_SLICE(decimal_text(&b, 100, 18), "0.0000000000000001");
    CHECK_SLICE(decimal_text(&b, 1, 19), "error"); /* more than 18 places */
    /* Milliseconds from microseconds: the same text bt_jw_double writes for the
     * double nearest v / 1000, over a range of magnitudes. */
    for (int64_t v = 0; v < 100000000; v = v < 3000 ? v + 1 : v * 3 / 2 + 7) {
        struct bt_str got = decimal_text(&b, v, 3);
        bt_buf_reset(&d);
        struct bt_jw x;
        bt_jw_init(&x, &d);
        bt_jw_double(&x, (double)v / 1000.0);
        if (!bt_str_eq(got, bt_buf_str(&d))) {
            H_FAIL("%lld / 1000: decimal %.*s, double %.*s", (long long)v, BT_STR_FMT(got),
                   (int)d.len, d.p);
            break;
        }
    }
    /* In an array: commas. */
    bt_buf_reset(&b);
    struct bt_jw w;
    bt_jw_init(&w, &b);
    bt_jw_arr_begin(&w);
    bt_jw_decimal(&w, 25, 1);
    bt_jw_decimal(&w, 3, 2);
    bt_jw_arr_end(&w);
    CHECK_SLICE(bt_buf_str(&b), "[2.5,0.03]");
    bt_buf_free(&b);
    bt_buf_free(&d);
}

TEST(writer_errors)
{
    struct bt_buf b;
    struct bt_jw w;
    /* Past the cap: ETOOBIG sticks, later calls do nothing. */
    bt_buf_init(&b, 16);
    bt_jw_init(&w, &b);
    bt_jw_arr_begin(&w);
    bt_jw_cstr(&w, "0123456789");
    CHECK_INT(w.err, BT_OK);
    bt_jw_cstr(&w, "abcdef");
    CHECK_INT(w.err, BT_ETOOBIG);
    size_t len = b.len;
    bt_jw_int(&w, 1);
    bt_jw_arr_end(&w);
    CHECK_INT(w.err, BT_ETOOBIG);
    CHECK_INT(b.len, len);
    bt_buf_free(&b);

    bt_buf_init(&b, 1024);
    /* A value in an object without a key. */
    bt_jw_init(&w, &b);
    bt_jw_obj_begin(&w);
    bt_jw_int(&w, 1);
    CHECK_INT(w.err, BT_EINVAL);
    /* A key in an array. */
    bt_buf_reset(&b);
    bt_jw_init(&w, &b);
    bt_jw_arr_begin(&w);
    bt_jw_key(&w, "k");
    CHECK_INT(w.err, BT_EINVAL);
    /* Mismatched close, close at the top level, two keys in a row. */
    bt_buf_reset(&b);
    bt_jw_init(&w, &b);
    bt_jw_arr_begin(&w);
    bt_jw_obj_end(&w);
    CHECK_INT(w.err, BT_EINVAL);
    bt_buf_reset(&b);
    bt_jw_init(&w, &b);
    bt_jw_arr_end(&w);
    CHECK_INT(w.err, BT_EINVAL);
    bt_buf_reset(&b);
    bt_jw_init(&w, &b);
    bt_jw_obj_begin(&w);
    bt_jw_key(&w, "a");
    bt_jw_key(&w, "b");
    CHECK_INT(w.err, BT_EINVAL);
    bt_buf_reset(&b);
    bt_jw_init(&w, &b);
    bt_jw_obj_begin(&w);
    bt_jw_key(&w, "a");
    bt_jw_obj_end(&w);
    CHECK_INT(w.err, BT_EINVAL);
    /* Two top-level values. */
    bt_buf_reset(&b);
    bt_jw_init(&w, &b);
    bt_jw_int(&w, 1);
    bt_jw_int(&w, 2);
    CHECK_INT(w.err, BT_EINVAL);
    /* Empty raw JSON. */
    bt_buf_reset(&b);
    bt_jw_init(&w, &b);
    bt_jw_raw(&w, BT_STR_NULL);
    CHECK_INT(w.err, BT_EINVAL);
    /* Too deep. */
    bt_buf_reset(&b);
    bt_jw_init(&w, &b);
    for (int i = 0; i < BT_JW_MAX_DEPTH - 1; i++) bt_jw_arr_begin(&w);
    CHECK_INT(w.err, BT_OK);
    bt_jw_arr_begin(&w);
    CHECK_INT(w.err, BT_ETOOBIG);
    bt_buf_free(&b);
}

/* Writes the value at tok of d through the writer (strings unescaped and
 * re-escaped, numbers raw). Returns the next token. */
static int rewrite(const struct bt_json_doc *d, int tok, struct bt_jw *w, struct bt_arena *a)
{
    const struct bt_json_tok *t = &d->toks[tok];
    struct bt_str s;
    switch (t->type) {
    case BT_JSON_OBJECT: {
        bt_jw_obj_begin(w);
        int c = tok + 1;
        for (uint32_t i = 0; i < t->size; i++) {
            if (bt_json_str(d, c, a, &s)) w->err = BT_EINVAL;
            bt_jw_key_str(w, s);
            c = rewrite(d, c + 1, w, a);
        }
        bt_jw_obj_end(w);
        return c;
    }
    case BT_JSON_ARRAY: {
        bt_jw_arr_begin(w);
        int c = tok + 1;
        for (uint32_t i = 0; i < t->size; i++) c = rewrite(d, c, w, a);
        bt_jw_arr_end(w);
        return c;
    }
    case BT_JSON_STRING:
        if (bt_json_str(d, tok, a, &s)) w->err = BT_EINVAL;
        bt_jw_str(w, s);
        break;
    case BT_JSON_NUMBER: bt_jw_raw(w, bt_json_raw(d, tok)); break;
    case BT_JSON_TRUE: bt_jw_bool(w, true); break;
    case BT_JSON_FALSE: bt_jw_bool(w, false); break;
    default: bt_jw_null(w);
    }
    return tok + 1;
}

TEST(writer_roundtrip)
{
    const char *src = "{ \"a\" : [ 1 , -2.5e3 , \"x\\ty\\u00e9\\uD83D\\uDE00\" , true , false , null ] ,"
                      " \"o\" : { \"k\\\"\" : { } , \"l\" : [ ] } }";
    const char *want = "{\"a\":[1,-2.5e3,\"x\\ty\xC3\xA9\xF0\x9F\x98\x80\",true,false,null],"
                       "\"o\":{\"k\\\"\":{},\"l\":[]}}";
    struct bt_arena a;
    bt_arena_init(&a, 4096, 0);
    struct bt_json_doc d;
    REQUIRE(parse(&d, src, &a) == BT_OK);
    struct bt_buf b;
    bt_buf_init(&b, 4096);
    struct bt_jw w;
    bt_jw_init(&w, &b);
    CHECK_INT(rewrite(&d, 0, &w, &a), (int)d.ntoks);
    CHECK_INT(w.err, BT_OK);
    CHECK_SLICE(bt_buf_str(&b), want);
    bt_buf_free(&b);
    bt_arena_free(&a);
}

/* ---- differential against cJSON ---- */

TEST(differential_cjson)
{
    /* Inputs where cJSON is strict (it is lenient on leading zeros, "1.", raw
     * control characters, UTF-8, lone surrogate escapes, a BOM and \v\f as
     * whitespace: those are left out here, see docs/internals/json.md). */
    const char *cases[] = {
        "{}", "[]", "0", "-1.5e+3", "\"s\"", "true", "false", "null", " [1, 2 ,3] ",
        "{\"a\":{\"b\":[{\"c\":null}]}}", "\"\\u00e9\\uD83D\\uDE00\\n\"", "[1e400]",
        "{\"a\":1,\"a\":2}", "[\"\xC3\xA9\"]", "[[[[[]]]]]", "{\"\":\"\"}",
        "", " ", "[1,]", "{\"a\":1,}", "[,]", "{,}", "{a:1}", "[1 2]", "{\"a\"}", "{\"a\":}",
        "[", "{", "]", "\"abc", "\"\\x\"", "\"\\u12\"", "tru", "nul", "truex", "[]x", "{} {}",
        "[-]", "[+1]", "[.5]", "[1e]", "[1e+]", "[\"a\",]", "{\"a\":1 \"b\":2}", "'a'", "[true,",
        "{\"a\":[}", "[}", "{]", "-", "--1", "[1,,2]", "nulll", "[null x]",
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(*cases); i++) {
        const char *s = cases[i];
        size_t n = strlen(s);
        bool ours = try_parse(s, n, NULL, NULL) == BT_OK;
        /* The length includes the NUL: cJSON's require_null_terminated check
         * looks for it. */
        cJSON *c = cJSON_ParseWithLengthOpts(s, n + 1, NULL, 1);
        bool theirs = c != NULL;
        cJSON_Delete(c);
        if (ours != theirs) H_FAIL("[%zu] %s: ours %d cJSON %d", i, s, ours, theirs);
    }
    /* Documented differences: cJSON accepts these, baton refuses them. */
    const char *lenient[] = {"01", "[1.]", "[-.5]", "\"a\nb\"", "\"\xFF\"", "\v[]"};
    for (size_t i = 0; i < sizeof(lenient) / sizeof(*lenient); i++) {
        const char *s = lenient[i];
        CHECK_INT(try_c(s), BT_EPARSE);
        cJSON *c = cJSON_ParseWithLengthOpts(s, strlen(s) + 1, NULL, 1);
        if (!c) H_FAIL("cJSON became strict on [%zu]", i);
        cJSON_Delete(c);
    }
    /* And the other way: a lone surrogate escape is grammatical JSON (RFC 8259
     * section 8.2) and becomes U+FFFD here; cJSON refuses it. */
    CHECK_INT(try_c("\"\\uDE00\""), BT_OK);
    cJSON *c = cJSON_ParseWithLengthOpts("\"\\uDE00\"", 9, NULL, 1);
    CHECK(c == NULL);
    cJSON_Delete(c);
}

/* bt_json_validate accepts exactly what bt_json_parse accepts: the differential
 * cases above, every single-byte corruption of a chat chunk, and long strings
 * with special bytes at every offset (the 16-byte scan's edges). */
TEST(validate_agrees_with_parse)
{
    const char *cases[] = {
        "{}", "[]", "0", "-1.5e+3", "\"s\"", "true", "false", "null", " [1, 2 ,3] ",
        "{\"a\":{\"b\":[{\"c\":null}]}}", "\"\\u00e9\\uD83D\\uDE00\\n\"", "[1e400]", "",
        " ", "[1,]", "{\"a\":1,}", "[,]", "{,}", "{a:1}", "[1 2]", "{\"a\"}", "{\"a\":}", "[", "{",
        "]", "\"abc", "\"\\x\"", "\"\\u12\"", "tru", "nul", "truex", "[]x", "{} {}", "[-]", "[+1]",
        "[.5]", "[1e]", "[1e+]", "01", "[1.]", "\"a\nb\"", "\"\xFF\"", "\"\xC3\"", "\"\xED\xA0\x80\"",
        "[1,,2]", "nulll", "[null x]", "{\"a\":[}", "[}", "{]", "[[]]]", "{\"a\":1}}",
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(*cases); i++) {
        size_t n = strlen(cases[i]);
        bool ours = bt_json_validate(cases[i], n, 0, NULL, 0) == BT_OK;
        bool parsed = try_parse(cases[i], n, NULL, NULL) == BT_OK;
        if (ours != parsed) H_FAIL("[%zu] %s: validate %d parse %d", i, cases[i], ours, parsed);
    }
    const char *chunk = "{\"id\":\"c1\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"h\xC3\xA9 \\\"x\\\"\"},"
                        "\"finish_reason\":null}],\"n\":-0.5e2,\"t\":true}";
    size_t n = strlen(chunk);
    char buf[256];
    const char repl[] = {'"', '\\', '{', '}', '[', ']', ',', ':', 'x', '0', ' ', '\n', 0x01, (char)0x80, (char)0xC3};
    for (size_t pos = 0; pos < n; pos++) {
        for (size_t r = 0; r < sizeof(repl); r++) {
            memcpy(buf, chunk, n);
            buf[pos] = repl[r];
            bool ours = bt_json_validate(buf, n, 0, NULL, 0) == BT_OK;
            bool parsed = try_parse(buf, n, NULL, NULL) == BT_OK;
            if (ours != parsed) H_FAIL("byte %zu -> 0x%02x: validate %d parse %d", pos, (unsigned char)repl[r], ours, parsed);
        }
    }
    /* A 40-byte string with one special byte at each offset. */
    for (size_t pos = 1; pos < 41; pos++) {
        for (size_t r = 0; r < 4; r++) {
            memset(buf, 'a', 42);
            buf[0] = buf[41] = '"';
            buf[pos] = "\"\x1f\xff\\"[r];
            bool ours = bt_json_validate(buf, 42, 0, NULL, 0) == BT_OK;
            if (ours) H_FAIL("special byte %zu/%zu accepted", r, pos);
            CHECK_INT(try_parse(buf, 42, NULL, NULL), BT_EPARSE);
        }
    }
    /* Depth: the default 128 like the tokenizer, a given limit, and the cap. */
    char deep[300];
    memset(deep, '[', 129);
    memset(deep + 129, ']', 129);
    CHECK_INT(bt_json_validate(deep, 258, 0, NULL, 0), BT_ETOOBIG);
    CHECK_INT(bt_json_validate(deep + 1, 256, 0, NULL, 0), BT_OK);
    CHECK_INT(bt_json_validate(deep + 1, 256, 10, NULL, 0), BT_ETOOBIG);
    CHECK_INT(bt_json_validate(NULL, 0, 0, NULL, 0), BT_EINVAL);
}

TEST(validate_watch)
{
    struct bt_json_watch w[3] = {{"usage", 5, 1, false}, {"error", 5, 1, false}, {"finish_reason", 13, 3, false}};
    const char *plain = "{\"usage\":null,\"choices\":[{\"delta\":{\"usage\":1},\"finish_reason\":null}],\"x\":{\"error\":1}}";
    CHECK_INT(bt_json_validate(plain, strlen(plain), 0, w, 3), BT_OK);
    CHECK(!w[0].hit && !w[1].hit && !w[2].hit);
    const char *fin = "{ \"choices\" : [ {\"index\":0}, { \"finish_reason\" : \"stop\" } ] }";
    CHECK_INT(bt_json_validate(fin, strlen(fin), 0, w, 3), BT_OK);
    CHECK(!w[0].hit && !w[1].hit && w[2].hit);
    w[2].hit = false;
    const char *use = "{\"choices\":[],\"usage\":{\"total_tokens\":3}}";
    CHECK_INT(bt_json_validate(use, strlen(use), 0, w, 3), BT_OK);
    CHECK(w[0].hit && !w[1].hit && !w[2].hit);
    w[0].hit = false;
    /* Escaped names at a watched depth count as hits (the caller decodes). */
    const char *esc = "{\"\\u0065rror\":\"boom\"}";
    CHECK_INT(bt_json_validate(esc, strlen(esc), 0, w, 3), BT_OK);
    CHECK(w[0].hit && w[1].hit);
}

int main(void)
{
    RUN(parse_all_types);
    RUN(parse_numbers);
    RUN(parse_invalid);
    RUN(parse_utf8);
    RUN(parse_error_offsets);
    RUN(parse_limits);
    RUN(navigation);
    RUN(scalars);
    RUN(string_escapes);
    RUN(string_escape_out);
    RUN(splice_edits);
    RUN(splice_errors);
    RUN(writer_basic);
    RUN(writer_doubles);
    RUN(writer_decimal);
    RUN(writer_errors);
    RUN(writer_roundtrip);
    RUN(differential_cjson);
    RUN(validate_agrees_with_parse);
    RUN(validate_watch);
    return HARNESS_DONE();
}
