/* Error log and access log. Each line goes out in one write(2), so lines
 * from different workers never interleave. */
#ifndef SOCKS5D_LOG_H
#define SOCKS5D_LOG_H

enum log_level { LOG_LVL_ERROR = 0, LOG_LVL_WARN, LOG_LVL_INFO, LOG_LVL_DEBUG };

/* Set once at start-up (before workers start). */
void log_setup(enum log_level level, int access_log);
int log_enabled(enum log_level level);
int log_access_enabled(void);

void log_msg(enum log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
#define log_error(...) log_msg(LOG_LVL_ERROR, __VA_ARGS__)
#define log_warn(...) log_msg(LOG_LVL_WARN, __VA_ARGS__)
#define log_info(...) log_msg(LOG_LVL_INFO, __VA_ARGS__)
#define log_debug(...)                                                                            \
    do {                                                                                          \
        if (log_enabled(LOG_LVL_DEBUG))                                                           \
            log_msg(LOG_LVL_DEBUG, __VA_ARGS__);                                                  \
    } while (0)

/* One access-log line (logfmt fields, without time or newline). */
void log_access(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif
