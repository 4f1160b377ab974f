/* baton's small unit-test harness. Each tests/unit/test_<module>.c defines
 * TEST(name) functions and a main() that calls RUN(name) for each, then returns
 * HARNESS_DONE(). The binary prints one line per failed check, and at the end
 * `<file>: N passed, N failed` counted per test function. */
#ifndef BT_TEST_HARNESS_H
#define BT_TEST_HARNESS_H

#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
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

/* ---- files, for tests driven by data files under tests/golden ---- */

/* The whole file at `path`, NUL-terminated (caller frees), its size in *len
 * (when len is not NULL); NULL when it cannot be read. */
static inline char *h_read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *s = n >= 0 ? malloc((size_t)n + 1) : NULL;
    if (s && fread(s, 1, (size_t)n, f) != (size_t)n) {
        free(s);
        s = NULL;
    }
    fclose(f);
    if (!s) return NULL;
    s[n] = 0;
    if (len) *len = (size_t)n;
    return s;
}

/* Writes `n` bytes of `s` to `path` (replacing it); silent on failure. */
static inline void h_write_file(const char *path, const char *s, size_t n)
{
    FILE *f = fopen(path, "wb");
    if (!f) return;
    fwrite(s, 1, n, f);
    fclose(f);
}

/* An expected file `path` that does not exist: with BATON_GOLDEN_WRITE set,
 * writes `got` there (to be read and checked before it is committed) and
 * passes; otherwise prints what was got and fails. */
static inline bool h_golden_missing(const char *path, const char *got, size_t n)
{
    if (getenv("BATON_GOLDEN_WRITE")) {
        h_write_file(path, got, n);
        fprintf(stderr, "  wrote %s\n", path);
        return true;
    }
    fprintf(stderr, "  missing golden file %s; got:\n%.*s\n", path, (int)n, got);
    return false;
}

/* qsort comparison for an array of C strings. */
static inline int h_cmp_names(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Frees `n` malloc'd strings and their array. */
static inline void h_free_list(char **names, size_t n)
{
    for (size_t i = 0; i < n; i++) free(names[i]);
    free(names);
}

#endif
