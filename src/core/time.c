#include "core/time.h"

#include <time.h>

uint64_t bt_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

int64_t bt_unix_time(void)
{
    return (int64_t)time(NULL);
}

bool bt_parse_duration_ms(struct bt_str s, uint64_t *ms)
{
    size_t i = 0;
    while (i < s.len && s.p[i] >= '0' && s.p[i] <= '9') i++;
    uint64_t n;
    if (!bt_str_to_u64((struct bt_str){s.p, i}, &n)) return false;
    struct bt_str unit = {s.p + i, s.len - i};
    uint64_t mul;
    if (unit.len == 0 || bt_str_eq_c(unit, "s")) mul = 1000;
    else if (bt_str_eq_c(unit, "ms")) mul = 1;
    else if (bt_str_eq_c(unit, "m")) mul = 60000;
    else if (bt_str_eq_c(unit, "h")) mul = 3600000;
    else if (bt_str_eq_c(unit, "d")) mul = 86400000;
    else return false;
    if (n > UINT64_MAX / mul) return false;
    *ms = n * mul;
    return true;
}
