/* libFuzzer target: arbitrary bytes as the query string of GET /admin/usage.
 * Parsing must never crash, leak or read out of bounds; when it succeeds every
 * filter is a non-empty NUL-terminated string without control characters, the
 * grouping one of the known ones and the date a UTC midnight; when it fails
 * the message is a printable, NUL-terminated line. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "account/usage.h"

static void check_value(const char *v)
{
    if (!v) return;
    size_t n = strlen(v);
    if (n == 0) abort();
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)v[i] < 0x20 || v[i] == 0x7f) abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct bt_arena a;
    bt_arena_init(&a, 1024, 1u << 20);
    struct bt_usage_query q;
    char why[400];
    why[0] = 0;
    enum bt_err err = bt_usage_query_parse((struct bt_str){(const char *)data, size}, &a, &q, why,
                                           sizeof(why));
    if (!err) {
        check_value(q.key_id);
        check_value(q.user);
        check_value(q.team);
        check_value(q.model);
        if ((unsigned)q.group > BT_UG_DAY) abort();
        if (q.since_ms < 0 || q.since_ms % 86400000) abort();
    } else {
        if (err != BT_EINVAL || !why[0] || !memchr(why, 0, sizeof(why))) abort();
        for (const char *p = why; *p; p++)
            if ((unsigned char)*p < 0x20) abort();
    }
    bt_arena_free(&a);
    return 0;
}
