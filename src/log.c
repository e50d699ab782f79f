#include "log.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include "config.h"

struct sink {
    int fd;          /* owned for life; targets are dup2()ed onto it */
    atomic_int kind; /* enum log_sink */
    char path[4096]; /* for SINK_FILE: reopened on SIGUSR1 (main thread only) */
};

static struct sink err_sink = {.fd = STDERR_FILENO, .kind = SINK_STDERR};
static struct sink acc_sink = {.fd = STDERR_FILENO, .kind = SINK_STDERR};
static atomic_int max_level = LOG_LVL_INFO;
static atomic_int access_json;
static int stamp_lines = 1; /* stderr into systemd's journal: it stamps lines itself */
static int syslog_open;

int log_init(void)
{
    stamp_lines = getenv("JOURNAL_STREAM") == NULL;
    err_sink.fd = fcntl(STDERR_FILENO, F_DUPFD_CLOEXEC, 3);
    acc_sink.fd = fcntl(STDERR_FILENO, F_DUPFD_CLOEXEC, 3);
    if (err_sink.fd < 0 || acc_sink.fd < 0) {
        /* stderr is closed: fall back to a sink that discards. */
        int null = open("/dev/null", O_WRONLY | O_CLOEXEC);
        if (null < 0)
            return -1;
        if (err_sink.fd < 0)
            err_sink.fd = null;
        if (acc_sink.fd < 0)
            acc_sink.fd = err_sink.fd == null ? fcntl(null, F_DUPFD_CLOEXEC, 3) : null;
    }
    return 0;
}

/* The descriptor a sink of this kind writes to: a newly opened file,
 * stderr, or -1 (syslog, off). Returns -2 with errno when a file cannot be
 * opened. */
static int open_target(int kind, const char *path)
{
    if (kind == SINK_FILE) {
        int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
        return fd < 0 ? -2 : fd;
    }
    return kind == SINK_STDERR ? STDERR_FILENO : -1;
}

/* Switches s to kind, writing to fd (from open_target, which it takes). */
static int commit(struct sink *s, int kind, int fd, const char *path)
{
    if (fd >= 0 && dup2(fd, s->fd) < 0) {
        int e = errno;
        if (fd > STDERR_FILENO)
            close(fd);
        errno = e;
        return -1;
    }
    if (fd > STDERR_FILENO)
        close(fd);
    if (kind == SINK_FILE)
        snprintf(s->path, sizeof s->path, "%s", path);
    if (kind == SINK_SYSLOG && !syslog_open) {
        openlog("socks5d", LOG_PID | LOG_NDELAY, LOG_DAEMON);
        syslog_open = 1;
    }
    atomic_store(&s->kind, kind);
    return 0;
}

int log_configure(const struct config *c, char *err, size_t errlen)
{
    /* Both targets open before either changes: all or nothing. */
    int efd = open_target(c->error_sink, c->error_log_path);
    if (efd == -2) {
        snprintf(err, errlen, "error-log %s: %s", c->error_log_path, strerror(errno));
        return -1;
    }
    int afd = open_target(c->access_sink, c->access_log_path);
    if (afd == -2) {
        snprintf(err, errlen, "access-log %s: %s", c->access_log_path, strerror(errno));
        if (efd > STDERR_FILENO)
            close(efd);
        return -1;
    }
    if (commit(&err_sink, c->error_sink, efd, c->error_log_path) < 0 ||
        commit(&acc_sink, c->access_sink, afd, c->access_log_path) < 0) {
        snprintf(err, errlen, "log: %s", strerror(errno));
        return -1;
    }
    atomic_store(&max_level, c->log_level);
    atomic_store(&access_json, c->access_json);
    return 0;
}

int log_reopen(void)
{
    struct sink *all[] = {&err_sink, &acc_sink};
    int rc = 0;
    for (int i = 0; i < 2; i++) {
        if (atomic_load(&all[i]->kind) != SINK_FILE)
            continue;
        int fd = open_target(SINK_FILE, all[i]->path);
        if (fd == -2 || commit(all[i], SINK_FILE, fd, all[i]->path) < 0) {
            log_error("reopen %s: %s", all[i]->path, strerror(errno));
            rc = -1;
        }
    }
    return rc;
}

int log_enabled(enum log_level level)
{
    return (int)level <= atomic_load_explicit(&max_level, memory_order_relaxed);
}

int log_access_enabled(void)
{
    return atomic_load_explicit(&acc_sink.kind, memory_order_relaxed) != SINK_OFF;
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

/* Appends to a line buffer, never past its end. */
struct line {
    char buf[2048];
    size_t n;
};

static void put(struct line *l, const char *s, size_t len)
{
    size_t room = sizeof l->buf - 1 - l->n; /* keep one byte for the newline */
    if (len > room)
        len = room;
    memcpy(l->buf + l->n, s, len);
    l->n += len;
}

static void puts_(struct line *l, const char *s)
{
    put(l, s, strlen(s));
}

static void emit(struct sink *s, int prio, struct line *l)
{
    int kind = atomic_load_explicit(&s->kind, memory_order_relaxed);
    if (kind == SINK_SYSLOG) {
        l->buf[l->n] = '\0';
        syslog(prio, "%s", l->buf);
        return;
    }
    if (kind == SINK_OFF)
        return;
    l->buf[l->n++] = '\n';
    /* Best effort: a log line that cannot be written has nowhere else to go. */
    ssize_t w = write(s->fd, l->buf, l->n);
    (void)w;
}

void log_msg(enum log_level level, const char *fmt, ...)
{
    static const char *const names[] = {"error: ", "warn: ", "info: ", "debug: "};
    static const int prios[] = {LOG_ERR, LOG_WARNING, LOG_INFO, LOG_DEBUG};
    struct line l = {.n = 0};
    va_list ap;
    if (!log_enabled(level))
        return;
    int kind = atomic_load(&err_sink.kind);
    if (kind == SINK_FILE || (stamp_lines && kind == SINK_STDERR)) {
        l.n = stamp(l.buf, sizeof l.buf);
        put(&l, " ", 1);
    }
    puts_(&l, names[level]);
    va_start(ap, fmt);
    int m = vsnprintf(l.buf + l.n, sizeof l.buf - 1 - l.n, fmt, ap);
    va_end(ap);
    if (m > 0)
        l.n += (size_t)m < sizeof l.buf - 1 - l.n ? (size_t)m : sizeof l.buf - 2 - l.n;
    emit(&err_sink, prios[level], &l);
}

/* Length of the well-formed UTF-8 sequence at p (1..4), or 0. */
static size_t utf8_len(const unsigned char *p)
{
    size_t n = p[0] >= 0xf0 && p[0] <= 0xf4 ? 4 : p[0] >= 0xe0 ? 3 : p[0] >= 0xc2 ? 2 : 0;
    if (p[0] >= 0xf5)
        return 0;
    for (size_t i = 1; i < n; i++)
        if ((p[i] & 0xc0) != 0x80)
            return 0;
    /* Overlong three- and four-byte forms, surrogates, beyond U+10FFFF. */
    if ((n == 3 && ((p[0] == 0xe0 && p[1] < 0xa0) || (p[0] == 0xed && p[1] >= 0xa0))) ||
        (n == 4 && ((p[0] == 0xf0 && p[1] < 0x90) || (p[0] == 0xf4 && p[1] >= 0x90))))
        return 0;
    return n;
}

/* Values come from clients (user and host names): control bytes and bytes
 * that are not UTF-8 are escaped, so a line stays one valid line. logfmt
 * quotes values that need it; JSON escapes always. */
static void put_value(struct line *l, const char *v, int json)
{
    int quote = json || !*v || strpbrk(v, " =\"\\\t") != NULL;
    char esc[8];
    if (quote)
        put(l, "\"", 1);
    for (const unsigned char *p = (const unsigned char *)v; *p;) {
        size_t n = *p >= 0x80 ? utf8_len(p) : 1;
        if (*p == '"' || *p == '\\') {
            esc[0] = '\\';
            esc[1] = (char)*p;
            put(l, esc, 2);
        } else if (*p < 0x20 || *p == 0x7f || n == 0) {
            snprintf(esc, sizeof esc, "\\u%04x", *p);
            put(l, esc, strlen(esc));
        } else {
            put(l, (const char *)p, n);
            p += n;
            continue;
        }
        p++;
    }
    if (quote)
        put(l, "\"", 1);
}

void log_access(const char *const *kv, size_t n)
{
    struct line l = {.n = 0};
    char ts[40];
    int json = atomic_load_explicit(&access_json, memory_order_relaxed);
    if (!log_access_enabled())
        return;
    stamp(ts, sizeof ts);
    puts_(&l, json ? "{\"time\":\"" : "time=");
    puts_(&l, ts);
    if (json)
        puts_(&l, "\"");
    for (size_t i = 0; i + 1 < 2 * n; i += 2) {
        puts_(&l, json ? ",\"" : " ");
        puts_(&l, kv[i]);
        puts_(&l, json ? "\":" : "=");
        put_value(&l, kv[i + 1], json);
    }
    if (json)
        puts_(&l, "}");
    emit(&acc_sink, LOG_INFO, &l);
}
