/* Clocks and durations. Durations in config are written 250ms, 10s, 10m, 1h. */
#ifndef BT_CORE_TIME_H
#define BT_CORE_TIME_H

#include <stdbool.h>
#include <stdint.h>

#include "core/str.h"

/* The deadlines of a call to a provider (config `timeouts:`); 0 = none for that
 * phase. The defaults are the config's (docs/config.md). */
struct bt_timeouts {
    uint64_t connect_ms;    /* default 10s */
    uint64_t first_byte_ms; /* default 120s: request sent -> response head */
    uint64_t idle_ms;       /* default 60s: longest silence between two chunks */
    uint64_t total_ms;      /* default 10m */
};

/* Monotonic clock in nanoseconds. */
uint64_t bt_now_ns(void);
/* Wall clock in seconds since the epoch. */
int64_t bt_unix_time(void);
/* Parses "250ms", "10s", "10m", "1h" (or a bare number of seconds) into
 * milliseconds; false on anything else. */
bool bt_parse_duration_ms(struct bt_str s, uint64_t *ms);

#endif
