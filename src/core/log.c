#include "core/log.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

static atomic_int min_level = BT_LOG_INFO;
static atomic_int access_fd = 2;
static atomic_int log_fd = 2;

/* Points *slot at PATH (append), or back at stderr when PATH is NULL. A slot that
 * already has its own descriptor keeps its number: the new file is dup2'd onto it,
 * so a thread writing at that moment never hits a closed (or reused) descriptor. */
static int reopen(atomic_int *slot, const char *path)
{
    int cur = atomic_load(slot);
    if (!path) {
        atomic_store(slot, 2);
        if (cur > 2) close(cur);
        return 0;
    }
    int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
    if (fd < 0) return -errno;
    if (cur <= 2) {
        atomic_store(slot, fd);
        return 0;
    }
    int rc = dup3(fd, cur, O_CLOEXEC) < 0 ? -errno : 0;
    close(fd);
    return rc;
}

int bt_log_open(const char *path)
{
    return reopen(&log_fd, path);
}

void bt_log_set_level(enum bt_log_level level)
{
    atomic_store(&min_level, (int)level);
}

int bt_log_level_parse(const char *s)
{
    static const char *names[] = {"debug", "info", "warn", "error"};
    for (int i = 0; i < 4; i++)
        if (strcmp(s, names[i]) == 0) return i;
    return -1;
}

void bt_log(enum bt_log_level level, const char *fmt, ...)
{
    if ((int)level < atomic_load(&min_level)) return;
    static const char *names[] = {"debug", "info", "warn", "error"};
    char line[2048];
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    int n = (int)strftime(line, sizeof(line), "%Y-%m-%dT%H:%M:%S", &tm);
    n += snprintf(line + n, sizeof(line) - (size_t)n, ".%03ldZ %s ", ts.tv_nsec / 1000000,
                  names[level]);
    va_list ap;
    va_start(ap, fmt);
    int m = vsnprintf(line + n, sizeof(line) - (size_t)n - 1, fmt, ap);
    va_end(ap);
    if (m < 0) m = 0;
    n += m;
    if ((size_t)n > sizeof(line) - 2) n = (int)sizeof(line) - 2;
    line[n++] = '\n';
    ssize_t w = write(atomic_load(&log_fd), line, (size_t)n);
    (void)w;
}

int bt_log_access_open(const char *path)
{
    return reopen(&access_fd, path);
}

void bt_log_access(const char *line, size_t len)
{
    struct iovec iov[2] = {{(void *)line, len}, {"\n", 1}};
    ssize_t w = writev(atomic_load(&access_fd), iov, 2);
    (void)w;
}
