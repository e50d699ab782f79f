/* Error log and access log. Each goes to stderr, syslog, a file (reopened
 * on SIGUSR1 for logrotate) or, for the access log, nowhere. Lines are
 * written with one write(2) each, so workers never interleave them, and
 * switching targets never closes a descriptor a worker may be using: each
 * log owns one descriptor for life and new targets are dup2()ed onto it. */
#ifndef SOCKS5D_LOG_H
#define SOCKS5D_LOG_H

#include <stddef.h>

struct config;

enum log_level { LOG_LVL_ERROR = 0, LOG_LVL_WARN, LOG_LVL_INFO, LOG_LVL_DEBUG };

/* Called once before anything logs. Returns 0 or -1. */
int log_init(void);
/* Points both logs where c says (at start and on reload). Returns 0, or -1
 * with the reason in err (the previous targets stay in force). */
int log_configure(const struct config *c, char *err, size_t errlen);
/* Reopens log files (SIGUSR1). Returns 0 or -1 after logging why. */
int log_reopen(void);

int log_enabled(enum log_level level);
int log_access_enabled(void);

void log_msg(enum log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
#define log_error(...) log_msg(LOG_LVL_ERROR, __VA_ARGS__)
#define log_warn(...) log_msg(LOG_LVL_WARN, __VA_ARGS__)
#define log_info(...) log_msg(LOG_LVL_INFO, __VA_ARGS__)
#define log_debug(...)                                                                             \
    do {                                                                                           \
        if (log_enabled(LOG_LVL_DEBUG))                                                            \
            log_msg(LOG_LVL_DEBUG, __VA_ARGS__);                                                   \
    } while (0)

/* One access-log record: n key/value pairs (kv[2i], kv[2i+1]), written as
 * logfmt (time=... key=value ...) or as one JSON object per line. */
void log_access(const char *const *kv, size_t n);

#endif
