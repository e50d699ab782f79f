/* Error log and access log. Each goes to stderr, syslog, a file (reopened
 * on SIGUSR1 for logrotate) or, for the access log, nowhere.
 *
 * Once log_start has run, no thread that logs ever waits for a sink: each
 * formats its line into its own bounded ring and a log thread writes the
 * rings out, one write(2) per line. A line that finds its ring full is
 * dropped and counted (log_dropped). One thread's lines, and so one
 * session's, keep their order. Before log_start and after log_stop lines
 * are written at once by the caller.
 *
 * Switching targets never closes a descriptor a writer may be using: each
 * log owns one descriptor for life and new targets are dup2()ed onto it.
 * Files are opened with O_NOFOLLOW: a symbolic link at the path is refused. */
#ifndef SOCKS5D_LOG_H
#define SOCKS5D_LOG_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>

enum log_level { LOG_LVL_ERROR = 0, LOG_LVL_WARN, LOG_LVL_INFO, LOG_LVL_DEBUG };
enum log_sink { SINK_OFF = 0, SINK_STDERR, SINK_SYSLOG, SINK_FILE };

/* Where the logs go and what they keep: part of the configuration. */
struct log_settings {
    int level;                   /* enum log_level */
    int error_sink, access_sink; /* enum log_sink */
    char *error_log_path, *access_log_path;
    int access_json;
    int error_json; /* error-log lines as JSON objects (time, level, msg) */
};

/* Called once before anything logs. Returns 0 or -1. */
int log_init(void);
/* Points both logs where c says (at start and on reload). Returns 0, or -1
 * with the reason in err (the previous targets stay in force). */
int log_configure(const struct log_settings *c, char *err, size_t errlen);
/* stderr for what is reported there rather than in the error log (start-up
 * before the log exists, -t): when stderr is the journal, a stream that
 * starts each line with the journal's "<N>" priority prefix for `level`, as
 * the error log's lines have; else stderr itself. Main thread only. */
FILE *log_stderr(enum log_level level);
/* Writes to out a warning for each syslog sink in c that no syslog daemon
 * or journald listens for (no socket at /dev/log): its lines would be
 * lost. Returns how many. */
int log_check_syslog(const struct log_settings *c, FILE *out);
/* Reopens log files (SIGUSR1): on the log thread when it runs (returns 0
 * at once), else now (returns 0 or -1 after logging why). */
int log_reopen(void);
/* Gives the open log files to uid (the group stays), so that the user root
 * drops to can reopen them. Refuses a file with several names. Returns 0,
 * or -1 with errno. */
int log_chown(uid_t uid);

/* Starts the log thread (signals must already be blocked). Returns 0, or -1
 * with errno. */
int log_start(void);
/* Writes what is queued and stops the log thread; waits at most 2 s for a
 * stuck sink, then leaves it. */
void log_stop(void);
/* Lines dropped because their thread's buffer was full. */
uint64_t log_dropped(void);

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

/* "s" unless n is 1, for counts in messages: "%d worker%s". */
static inline const char *log_s(unsigned long long n)
{
    return n == 1 ? "" : "s";
}

/* One access-log record: n key/value pairs (kv[2i], kv[2i+1]), written as
 * logfmt (time=... key=value ...) or as one JSON object per line. */
void log_access(const char *const *kv, size_t n);
/* Writes the same pairs as one JSON object (no time, no newline) to f. */
void log_json_object(FILE *f, const char *const *kv, size_t n);

#endif
