#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static enum log_level max_level = LOG_LVL_INFO;
static int access_on = 1;

void log_setup(enum log_level level, int access_log)
{
    max_level = level;
    access_on = access_log;
}

int log_enabled(enum log_level level)
{
    return level <= max_level;
}

int log_access_enabled(void)
{
    return access_on;
}

/* ISO 8601 UTC with milliseconds. */
static size_t stamp(char *buf, size_t len)
{
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    size_t n = strftime(buf, len, "%Y-%m-%dT%H:%M:%S", &tm);
    return n + (size_t)snprintf(buf + n, len - n, ".%03ldZ", ts.tv_nsec / 1000000);
}

/* Writes "<prefix><time><sep><message>\n". */
static void emit(const char *prefix, const char *sep, const char *fmt, va_list ap)
{
    char line[2048];
    size_t n = (size_t)snprintf(line, sizeof line, "%s", prefix);
    n += stamp(line + n, sizeof line - n);
    int m = snprintf(line + n, sizeof line - n, "%s", sep);
    if (m > 0)
        n += (size_t)m;
    m = vsnprintf(line + n, sizeof line - n, fmt, ap);
    if (m > 0)
        n += (size_t)m < sizeof line - n ? (size_t)m : sizeof line - n - 1;
    line[n++] = '\n';
    /* Best effort: a log line that cannot be written has nowhere else to go. */
    ssize_t w = write(STDERR_FILENO, line, n);
    (void)w;
}

void log_msg(enum log_level level, const char *fmt, ...)
{
    static const char *const names[] = {" error: ", " warn: ", " info: ", " debug: "};
    va_list ap;
    if (!log_enabled(level))
        return;
    va_start(ap, fmt);
    emit("", names[level], fmt, ap);
    va_end(ap);
}

void log_access(const char *fmt, ...)
{
    va_list ap;
    if (!access_on)
        return;
    va_start(ap, fmt);
    emit("time=", " ", fmt, ap);
    va_end(ap);
}
