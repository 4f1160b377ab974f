#include "harness.h"

#include <stdlib.h>

#include "core/arena.h"
#include "core/buf.h"
#include "core/err.h"
#include "core/str.h"
#include "core/time.h"

TEST(str_basics)
{
    struct bt_str s = bt_str_c("  Content-Length \t");
    CHECK_SLICE(bt_str_trim(s), "Content-Length");
    CHECK(bt_str_caseeq_c(bt_str_trim(s), "content-length"));
    CHECK(!bt_str_eq_c(bt_str_trim(s), "content-length"));
    CHECK_INT(bt_str_index(BT_STR("provider/model/x"), '/'), 8);
    CHECK_INT(bt_str_index(BT_STR("abc"), '/'), -1);
    uint64_t v = 0;
    CHECK(bt_str_to_u64(BT_STR("18446744073709551615"), &v));
    CHECK(v == UINT64_MAX);
    CHECK(!bt_str_to_u64(BT_STR("18446744073709551616"), &v));
    CHECK(!bt_str_to_u64(BT_STR(""), &v));
    CHECK(!bt_str_to_u64(BT_STR("12a"), &v));
    char *d = bt_str_dup(BT_STR("xyz"));
    CHECK_STR(d, "xyz");
    free(d);
}

TEST(buf_cap_enforced)
{
    struct bt_buf b;
    bt_buf_init(&b, 10);
    CHECK_INT(bt_buf_append_c(&b, "0123456789"), BT_OK);
    CHECK_INT(bt_buf_append_c(&b, "x"), BT_ETOOBIG);
    CHECK_INT(b.len, 10);
    bt_buf_consume(&b, 4);
    CHECK_SLICE(bt_buf_str(&b), "456789");
    CHECK_INT(bt_buf_printf(&b, "%d", 1234), BT_OK);
    CHECK_SLICE(bt_buf_str(&b), "4567891234");
    CHECK_INT(bt_buf_printf(&b, "%d", 5), BT_ETOOBIG);
    CHECK_INT(bt_buf_cstr(&b), BT_OK);
    CHECK_STR(b.p, "4567891234");
    bt_buf_free(&b);

    bt_buf_init(&b, 1 << 20);
    for (int i = 0; i < 1000; i++) bt_buf_printf(&b, "line %d with some padding to grow\n", i);
    CHECK(b.len > 30000);
    CHECK_INT(bt_buf_append_u64(&b, 0), BT_OK);
    CHECK_INT(b.p[b.len - 1], '0');
    size_t n;
    char *s = bt_buf_steal(&b, &n);
    CHECK(s && n > 30000 && b.p == NULL);
    free(s);
}

TEST(pct_decode)
{
    struct bt_buf b;
    bt_buf_init(&b, 16);
    CHECK_INT(bt_buf_append_pct_decoded(&b, BT_STR("meta%2Fllama-3")), BT_OK);
    CHECK_SLICE(bt_buf_str(&b), "meta/llama-3");
    static const char *const bad[] = {"a%0Ab", "%00", "a%2", "a%", "%zz", "x%7f"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        bt_buf_reset(&b);
        CHECK_INT(bt_buf_append_pct_decoded(&b, bt_str_c(bad[i])), BT_EPARSE);
    }
    bt_buf_reset(&b);
    CHECK_INT(bt_buf_append_pct_decoded(&b, BT_STR("0123456789abcdefg")), BT_ETOOBIG);
    bt_buf_free(&b);
}

TEST(arena_alloc_and_cap)
{
    struct bt_arena a;
    bt_arena_init(&a, 128, 4096);
    char *p1 = bt_arena_alloc(&a, 10);
    char *p2 = bt_arena_alloc(&a, 10);
    REQUIRE(p1 && p2);
    CHECK(((uintptr_t)p1 & 15) == 0 && ((uintptr_t)p2 & 15) == 0);
    CHECK(p2 - p1 == 16);
    char *big = bt_arena_alloc(&a, 1000);
    CHECK(big != NULL);
    char *p3 = bt_arena_alloc(&a, 10); /* still from the small block */
    CHECK(p3 == p2 + 16);
    CHECK(bt_arena_alloc(&a, 5000) == NULL);
    struct bt_str d = bt_arena_strdup(&a, BT_STR("hello"));
    CHECK_SLICE(d, "hello");
    CHECK_INT(d.p[5], 0);
    bt_arena_reset(&a);
    CHECK_INT(a.used, 0);
    CHECK(bt_arena_alloc(&a, 3000) != NULL);
    bt_arena_free(&a);
}

TEST(durations)
{
    uint64_t ms = 0;
    CHECK(bt_parse_duration_ms(BT_STR("250ms"), &ms) && ms == 250);
    CHECK(bt_parse_duration_ms(BT_STR("10s"), &ms) && ms == 10000);
    CHECK(bt_parse_duration_ms(BT_STR("10m"), &ms) && ms == 600000);
    CHECK(bt_parse_duration_ms(BT_STR("2h"), &ms) && ms == 7200000);
    CHECK(bt_parse_duration_ms(BT_STR("90d"), &ms) && ms == 90ull * 86400000);
    CHECK(bt_parse_duration_ms(BT_STR("30"), &ms) && ms == 30000);
    CHECK(!bt_parse_duration_ms(BT_STR("10x"), &ms));
    CHECK(!bt_parse_duration_ms(BT_STR("ms"), &ms));
    CHECK(!bt_parse_duration_ms(BT_STR("-1s"), &ms));
}

TEST(strerror_total)
{
    for (int e = BT_OK; e <= BT_ECONFIG; e++) CHECK(bt_strerror((enum bt_err)e) != NULL);
    CHECK_STR(bt_strerror(BT_ETOOBIG), "too large");
}

TEST(mask_password)
{
    char out[128];
    bt_str_mask_password("postgresql://baton:s3cret@db:5432/x", out, sizeof(out));
    CHECK_STR(out, "postgresql://baton:***@db:5432/x");
    bt_str_mask_password("postgresql://baton@db/x", out, sizeof(out));
    CHECK_STR(out, "postgresql://baton@db/x");
    bt_str_mask_password("host=db user=baton password=s3cret dbname=x", out, sizeof(out));
    CHECK_STR(out, "host=db user=baton password=*** dbname=x");
    bt_str_mask_password("redis://:pw@h:6379/0", out, sizeof(out));
    CHECK_STR(out, "redis://:***@h:6379/0");
    /* too small for the result: cut, never the password shown whole */
    bt_str_mask_password("postgresql://u:abcdefgh@h/x", out, 24);
    CHECK_STR(out, "postgresql://u:***@h/x");
    bt_str_mask_password("postgresql://u:abcdefgh@h/x", out, 19);
    CHECK_STR(out, "postgresql://u:***");
}

TEST(redis_url)
{
    char host[64], pw[32], why[128];
    int port, db;
    CHECK(bt_parse_redis_url("redis://127.0.0.1:6380/2", host, sizeof(host), &port, &db, pw,
                             sizeof(pw), why, sizeof(why)));
    CHECK_STR(host, "127.0.0.1");
    CHECK_INT(port, 6380);
    CHECK_INT(db, 2);
    CHECK_STR(pw, "");
    CHECK(bt_parse_redis_url("redis://:s3cret@cache", host, sizeof(host), &port, &db, pw,
                             sizeof(pw), why, sizeof(why)));
    CHECK_STR(host, "cache");
    CHECK_INT(port, 6379);
    CHECK_INT(db, 0);
    CHECK_STR(pw, "s3cret");
    static const char *const bad[] = {"http://x", "redis://", "redis://h:0", "redis://h:70000",
                                      "redis://h:12x", "redis://h/db", "redis://h:1/-1"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        why[0] = 0;
        if (bt_parse_redis_url(bad[i], host, sizeof(host), &port, &db, pw, sizeof(pw), why,
                               sizeof(why)) || !why[0])
            H_FAIL("%s accepted or no reason", bad[i]);
    }
}

int main(void)
{
    RUN(mask_password);
    RUN(redis_url);
    RUN(str_basics);
    RUN(buf_cap_enforced);
    RUN(pct_decode);
    RUN(arena_alloc_and_cap);
    RUN(durations);
    RUN(strerror_total);
    return HARNESS_DONE();
}
