/* baton's small unit-test harness. Each tests/unit/test_<module>.c defines
 * TEST(name) functions and a main() that calls RUN(name) for each, then returns
 * HARNESS_DONE(). The binary prints one line per failed check, and at the end
 * `<file>: N passed, N failed` counted per test function. */
#ifndef BT_TEST_HARNESS_H
#define BT_TEST_HARNESS_H

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

static int h_passed, h_failed, h_cur_failed;
static const char *h_cur_name;

#define TEST(name) static void name(void)

#define H_FAIL(...)                                                                    \
    do {                                                                               \
        fprintf(stderr, "  FAIL %s (%s:%d): ", h_cur_name, __FILE__, __LINE__);        \
        fprintf(stderr, __VA_ARGS__);                                                  \
        fputc('\n', stderr);                                                           \
        h_cur_failed++;                                                                \
    } while (0)

#define CHECK(cond)                                                                    \
    do {                                                                               \
        if (!(cond)) H_FAIL("%s", #cond);                                              \
    } while (0)

/* Like CHECK but stops the current test function on failure. */
#define REQUIRE(cond)                                                                  \
    do {                                                                               \
        if (!(cond)) {                                                                 \
            H_FAIL("%s", #cond);                                                       \
            return;                                                                    \
        }                                                                              \
    } while (0)

#define CHECK_INT(a, b)                                                                \
    do {                                                                               \
        long long h_a = (long long)(a), h_b = (long long)(b);                          \
        if (h_a != h_b) H_FAIL("%s == %s: %lld != %lld", #a, #b, h_a, h_b);            \
    } while (0)

#define CHECK_STR(a, b)                                                                \
    do {                                                                               \
        const char *h_a = (a), *h_b = (b);                                             \
        if (!h_a || !h_b || strcmp(h_a, h_b) != 0)                                     \
            H_FAIL("%s == %s: \"%s\" != \"%s\"", #a, #b, h_a ? h_a : "(null)",          \
                   h_b ? h_b : "(null)");                                              \
    } while (0)

/* Compares a struct bt_str (or anything with .p/.len) with a C string. */
#define CHECK_SLICE(s, lit)                                                            \
    do {                                                                               \
        const char *h_b = (lit);                                                       \
        size_t h_bl = strlen(h_b);                                                     \
        if ((s).len != h_bl || ((s).len && memcmp((s).p, h_b, h_bl) != 0))             \
            H_FAIL("%s == %s: \"%.*s\" != \"%s\"", #s, #lit, (int)(s).len,              \
                   (s).p ? (s).p : "", h_b);                                           \
    } while (0)

#define RUN(name)                                                                      \
    do {                                                                               \
        h_cur_name = #name;                                                            \
        h_cur_failed = 0;                                                              \
        name();                                                                        \
        if (h_cur_failed) h_failed++;                                                  \
        else h_passed++;                                                               \
    } while (0)

#define HARNESS_DONE()                                                                 \
    (printf("%s: %d passed, %d failed\n", __FILE__, h_passed, h_failed), h_failed ? 1 : 0)

#endif
