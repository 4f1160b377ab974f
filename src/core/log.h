/* The operational log: leveled lines to stderr (or a file), one line per call.
 * Access-log lines (one JSON object per request) go through bt_log_access(). */
#ifndef BT_CORE_LOG_H
#define BT_CORE_LOG_H

#include <stddef.h>

enum bt_log_level { BT_LOG_DEBUG, BT_LOG_INFO, BT_LOG_WARN, BT_LOG_ERROR };

/* Sets the minimum level printed (default INFO). */
void bt_log_set_level(enum bt_log_level level);
/* Parses "debug", "info", "warn", "error"; -1 when unknown. */
int bt_log_level_parse(const char *s);
void bt_log(enum bt_log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Sends the operational log to PATH (append), or back to stderr when NULL.
 * Returns 0 or -errno. */
int bt_log_open(const char *path);
/* Opens PATH (append) for the access log, or stderr when path is NULL. Reopening
 * a file (SIGUSR1, reload) is safe while other threads log; switching back to
 * stderr is for shutdown, when no other thread logs. Returns 0 or -errno. */
int bt_log_access_open(const char *path);
/* Writes one access-log line (the caller passes the JSON object without newline). */
void bt_log_access(const char *line, size_t len);

#define bt_debug(...) bt_log(BT_LOG_DEBUG, __VA_ARGS__)
#define bt_info(...) bt_log(BT_LOG_INFO, __VA_ARGS__)
#define bt_warn(...) bt_log(BT_LOG_WARN, __VA_ARGS__)
#define bt_error(...) bt_log(BT_LOG_ERROR, __VA_ARGS__)

#endif
