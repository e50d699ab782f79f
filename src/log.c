#include "log.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include "logring.h"

#define LINE_BYTES 2048
/* Per thread that logs: about 300 lines, as much as nginx buffers for an
 * access log, so a sink that stalls for a moment loses nothing. */
#define RING_BYTES (64 * 1024)
#define MAX_RINGS 256
#define TAG_ACCESS 0x80 /* ring tag: access log; otherwise the error-log level */
#define ROUND_LINES 64  /* per ring per round, so one busy worker cannot starve the rest */
#define STOP_WAIT_S 2

struct sink {
    int fd;          /* owned for life; targets are dup2()ed onto it */
    atomic_int kind; /* enum log_sink */
    char path[4096]; /* for SINK_FILE: reopened on SIGUSR1 (under switch_lock) */
};

static struct sink err_sink = {.fd = STDERR_FILENO, .kind = SINK_STDERR};
static struct sink acc_sink = {.fd = STDERR_FILENO, .kind = SINK_STDERR};
static atomic_int max_level = LOG_LVL_INFO;
static atomic_int access_json, error_json;
/* stderr is systemd's journal: it stamps lines itself and takes each
 * line's priority from a "<N>" prefix (sd-daemon(3)). */
static int journal;
static int syslog_open;
/* Held while targets are opened and switched (main thread on reload, log
 * thread on reopen), never while a line is written. */
static pthread_mutex_t switch_lock = PTHREAD_MUTEX_INITIALIZER;

/* The log thread and the rings it empties: one per thread that logs, made
 * on its first line and kept for the life of the process. */
static struct {
    pthread_t id;
    atomic_int running;  /* lines go through the rings */
    atomic_int stopping; /* write what is queued, then exit */
    atomic_int reopen;   /* SIGUSR1 seen: reopen the files */
    atomic_int sleeping; /* waiting on wake_fd: producers must signal */
    int wake_fd;
    pthread_mutex_t add_lock; /* taken once per thread, to register its ring */
    struct logring *rings[MAX_RINGS];
    atomic_size_t nrings;
    atomic_uint_least64_t ringless; /* lines of threads that got no ring */
} lt = {.wake_fd = -1, .add_lock = PTHREAD_MUTEX_INITIALIZER};
static _Thread_local struct logring *my_ring;
static _Thread_local int no_ring;

/* Whether stderr is the journal stream systemd set up: JOURNAL_STREAM
 * names its device and inode (systemd.exec(5)); a stderr redirected since
 * is not. */
static int journal_stream(void)
{
    const char *env = getenv("JOURNAL_STREAM");
    unsigned long long dev, ino;
    struct stat st;
    return env && sscanf(env, "%llu:%llu", &dev, &ino) == 2 && fstat(STDERR_FILENO, &st) == 0 &&
           (unsigned long long)st.st_dev == dev && (unsigned long long)st.st_ino == ino;
}

int log_init(void)
{
    journal = journal_stream();
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
 * opened. A link at the path is refused: whoever can plant one would have
 * root append to any file. O_NONBLOCK makes a FIFO without a reader fail
 * instead of hanging; writes then block again (on the log thread only). */
static int open_target(int kind, const char *path)
{
    if (kind != SINK_FILE)
        return kind == SINK_STDERR ? STDERR_FILENO : -1;
    int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK, 0640);
    if (fd < 0)
        return -2;
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0 || fcntl(fd, F_SETFL, fl & ~O_NONBLOCK) < 0) {
        int e = errno;
        close(fd);
        errno = e;
        return -2;
    }
    return fd;
}

static const char *open_error(int e)
{
    return e == ELOOP ? "is a symbolic link (log files are opened without following links)"
                      : strerror(e);
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
    /* A reopen passes s->path itself: copying it onto itself would empty
     * it (overlapping snprintf), and the next reopen would fail. */
    if (kind == SINK_FILE && path != s->path)
        snprintf(s->path, sizeof s->path, "%s", path);
    if (kind == SINK_SYSLOG && !syslog_open) {
        openlog("socks5d", LOG_PID | LOG_NDELAY, LOG_DAEMON);
        syslog_open = 1;
    }
    atomic_store(&s->kind, kind);
    return 0;
}

static int switch_targets(const struct log_settings *c, char *err, size_t errlen)
{
    /* Both targets open before either changes: all or nothing. */
    int efd = open_target(c->error_sink, c->error_log_path);
    if (efd == -2) {
        snprintf(err, errlen, "error-log %s: %s", c->error_log_path, open_error(errno));
        return -1;
    }
    int afd = open_target(c->access_sink, c->access_log_path);
    if (afd == -2) {
        snprintf(err, errlen, "access-log %s: %s", c->access_log_path, open_error(errno));
        if (efd > STDERR_FILENO)
            close(efd);
        return -1;
    }
    if (commit(&err_sink, c->error_sink, efd, c->error_log_path) < 0 ||
        commit(&acc_sink, c->access_sink, afd, c->access_log_path) < 0) {
        snprintf(err, errlen, "log: %s", strerror(errno));
        return -1;
    }
    return 0;
}

/* A stream onto stderr whose every line starts with the journal's "<N>"
 * priority prefix. */
struct prefixed {
    int prio;
    int mid_line; /* the last write ended inside a line: no prefix next */
};

static ssize_t prefixed_write(void *cookie, const char *buf, size_t n)
{
    struct prefixed *p = cookie;
    for (size_t done = 0; done < n;) {
        const char *nl = memchr(buf + done, '\n', n - done);
        size_t len = nl ? (size_t)(nl - buf) + 1 - done : n - done;
        char pre[8];
        int plen = p->mid_line ? 0 : snprintf(pre, sizeof pre, "<%d>", p->prio);
        struct iovec iov[2] = {{pre, (size_t)plen}, {(void *)(buf + done), len}};
        /* Best effort, as for log lines: an error has nowhere else to go. */
        ssize_t w = writev(STDERR_FILENO, iov, 2);
        (void)w;
        p->mid_line = !nl;
        done += len;
    }
    return (ssize_t)n;
}

FILE *log_stderr(enum log_level level)
{
    static const int prios[] = {LOG_ERR, LOG_WARNING, LOG_INFO, LOG_DEBUG};
    static struct prefixed cookie[4];
    static FILE *streams[4];
    if (!journal)
        return stderr;
    if (!streams[level]) {
        cookie[level].prio = prios[level];
        streams[level] =
            fopencookie(&cookie[level], "w", (cookie_io_functions_t){.write = prefixed_write});
        if (!streams[level])
            return stderr;
        setvbuf(streams[level], NULL, _IONBF, 0);
    }
    return streams[level];
}

/* Whether a syslog daemon (or journald) takes datagrams at /dev/log. */
static int syslog_listens(void)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX, .sun_path = "/dev/log"};
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0)
        return 0;
    int ok = connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0;
    close(fd);
    return ok;
}

int log_check_syslog(const struct log_settings *c, FILE *out)
{
    const char *what[] = {"error-log", "access-log"};
    int sinks[] = {c->error_sink, c->access_sink}, n = 0;
    for (int i = 0; i < 2; i++)
        if (sinks[i] == SINK_SYSLOG && !syslog_listens()) {
            fprintf(out,
                    "socks5d: warning: %s syslog: nothing listens on /dev/log (no syslog daemon "
                    "or journald here): its lines are lost\n",
                    what[i]);
            n++;
        }
    return n;
}

int log_configure(const struct log_settings *c, char *err, size_t errlen)
{
    pthread_mutex_lock(&switch_lock);
    int rc = switch_targets(c, err, errlen);
    pthread_mutex_unlock(&switch_lock);
    if (rc < 0)
        return -1;
    atomic_store(&max_level, c->level);
    atomic_store(&access_json, c->access_json);
    atomic_store(&error_json, c->error_json);
    /* The warning goes where the operator looks at start and reload (the
     * error log itself may be the syslog that nobody reads). */
    log_check_syslog(c, log_stderr(LOG_LVL_WARN));
    return 0;
}

static int reopen_files(void)
{
    struct sink *all[] = {&err_sink, &acc_sink};
    int rc = 0;
    pthread_mutex_lock(&switch_lock);
    for (int i = 0; i < 2; i++) {
        if (atomic_load(&all[i]->kind) != SINK_FILE)
            continue;
        int fd = open_target(SINK_FILE, all[i]->path);
        if (fd == -2 || commit(all[i], SINK_FILE, fd, all[i]->path) < 0) {
            log_error("reopen %s: %s", all[i]->path, open_error(errno));
            rc = -1;
        } else {
            log_info("reopened %s", all[i]->path);
        }
    }
    pthread_mutex_unlock(&switch_lock);
    return rc;
}

int log_chown(uid_t uid)
{
    struct sink *all[] = {&err_sink, &acc_sink};
    for (int i = 0; i < 2; i++) {
        struct stat st;
        if (atomic_load(&all[i]->kind) != SINK_FILE)
            continue;
        if (fstat(all[i]->fd, &st) < 0)
            return -1;
        /* A second name could be a link to a file the user must not own. */
        if (S_ISREG(st.st_mode) && st.st_nlink != 1) {
            errno = EMLINK;
            return -1;
        }
        if (S_ISREG(st.st_mode) && st.st_uid != uid && fchown(all[i]->fd, uid, (gid_t)-1) < 0)
            return -1;
    }
    return 0;
}

/* Reopening is the log thread's job when it runs: a file on a stalled disk
 * then holds up nobody else. */
static void wake_now(void)
{
    uint64_t one = 1;
    /* Fails only when the counter is full: a wake-up is pending anyway. */
    ssize_t w = write(lt.wake_fd, &one, sizeof one);
    (void)w;
}

int log_reopen(void)
{
    if (!atomic_load(&lt.running))
        return reopen_files();
    atomic_store(&lt.reopen, 1);
    wake_now();
    return 0;
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
    char buf[LINE_BYTES];
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

/* Writes one line (n bytes in buf, which has room for one more) to the
 * sink the tag names. */
static void write_line(uint8_t tag, char *buf, size_t n)
{
    static const int prios[] = {LOG_ERR, LOG_WARNING, LOG_INFO, LOG_DEBUG};
    struct sink *s = tag & TAG_ACCESS ? &acc_sink : &err_sink;
    int kind = atomic_load_explicit(&s->kind, memory_order_relaxed);
    if (kind == SINK_SYSLOG) {
        buf[n] = '\0';
        syslog(tag & TAG_ACCESS ? LOG_INFO : prios[tag & 3], "%s", buf);
        return;
    }
    if (kind == SINK_OFF)
        return;
    buf[n++] = '\n';
    /* Best effort: a log line that cannot be written has nowhere else to go. */
    ssize_t w = write(s->fd, buf, n);
    (void)w;
}

/* The calling thread's ring, made on its first line; NULL when none can be
 * had (out of memory, too many threads). */
static struct logring *thread_ring(void)
{
    if (my_ring || no_ring)
        return my_ring;
    struct logring *r = logring_new(RING_BYTES);
    pthread_mutex_lock(&lt.add_lock);
    size_t n = atomic_load(&lt.nrings);
    if (r && n < MAX_RINGS) {
        lt.rings[n] = r;
        atomic_store(&lt.nrings, n + 1); /* after the slot: the log thread reads it next */
        my_ring = r;
    } else {
        logring_free(r);
        no_ring = 1;
    }
    pthread_mutex_unlock(&lt.add_lock);
    return my_ring;
}

/* Queues the line for the log thread, or writes it at once when there is
 * none (start-up, -t, after shutdown, unit tests). Never waits for a sink. */
static void emit(uint8_t tag, struct line *l)
{
    if (!atomic_load(&lt.running)) {
        write_line(tag, l->buf, l->n);
        return;
    }
    struct logring *r = thread_ring();
    if (!r) {
        atomic_fetch_add_explicit(&lt.ringless, 1, memory_order_relaxed);
        return;
    }
    if (logring_push(r, tag, l->buf, l->n) < 0)
        return;
    /* Pairs with the fence in log_main: either it sees the line, or this
     * sees it asleep and wakes it. */
    atomic_thread_fence(memory_order_seq_cst);
    if (atomic_load_explicit(&lt.sleeping, memory_order_relaxed) &&
        atomic_exchange(&lt.sleeping, 0))
        wake_now();
}

/* The journal's "<N>" priority prefix, on lines to a stderr that is the
 * journal (syslog sinks carry the priority themselves). */
static void put_priority(struct line *l, int kind, int prio)
{
    char p[8];
    if (journal && kind == SINK_STDERR)
        put(l, p, (size_t)snprintf(p, sizeof p, "<%d>", prio));
}

static void put_value(struct line *l, const char *v, int json);

void log_msg(enum log_level level, const char *fmt, ...)
{
    static const char *const names[] = {"error", "warn", "info", "debug"};
    static const int prios[] = {LOG_ERR, LOG_WARNING, LOG_INFO, LOG_DEBUG};
    struct line l = {.n = 0};
    char msg[LINE_BYTES];
    va_list ap;
    if (!log_enabled(level))
        return;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    int kind = atomic_load(&err_sink.kind);
    put_priority(&l, kind, prios[level]);
    if (atomic_load_explicit(&error_json, memory_order_relaxed)) {
        char ts[40];
        stamp(ts, sizeof ts);
        puts_(&l, "{\"time\":\"");
        puts_(&l, ts);
        puts_(&l, "\",\"level\":\"");
        puts_(&l, names[level]);
        puts_(&l, "\",\"msg\":");
        put_value(&l, msg, 1);
        puts_(&l, "}");
    } else {
        if (kind == SINK_FILE || (!journal && kind == SINK_STDERR)) {
            l.n += stamp(l.buf + l.n, sizeof l.buf - l.n);
            put(&l, " ", 1);
        }
        puts_(&l, names[level]);
        puts_(&l, ": ");
        puts_(&l, msg);
    }
    emit((uint8_t)level, &l);
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

/* Appends pairs kv[0..n) as logfmt (" key=value") or as JSON members
 * (",\"key\":\"value\"", first without its comma when first). */
static void put_pairs(struct line *l, const char *const *kv, size_t n, int json, int first)
{
    for (size_t i = 0; i + 1 < 2 * n; i += 2) {
        puts_(l, json ? (first && i == 0 ? "\"" : ",\"") : " ");
        puts_(l, kv[i]);
        puts_(l, json ? "\":" : "=");
        put_value(l, kv[i + 1], json);
    }
}

void log_access(const char *const *kv, size_t n)
{
    struct line l = {.n = 0};
    char ts[40];
    int json = atomic_load_explicit(&access_json, memory_order_relaxed);
    if (!log_access_enabled())
        return;
    stamp(ts, sizeof ts);
    put_priority(&l, atomic_load_explicit(&acc_sink.kind, memory_order_relaxed), LOG_INFO);
    puts_(&l, json ? "{\"time\":\"" : "time=");
    puts_(&l, ts);
    if (json)
        puts_(&l, "\"");
    put_pairs(&l, kv, n, json, 0);
    if (json)
        puts_(&l, "}");
    emit(TAG_ACCESS, &l);
}

void log_json_object(FILE *f, const char *const *kv, size_t n)
{
    struct line l = {.n = 0};
    puts_(&l, "{");
    put_pairs(&l, kv, n, 1, 1);
    puts_(&l, "}");
    fwrite(l.buf, 1, l.n, f);
}

/* ---------------- the log thread ---------------- */

/* Writes up to ROUND_LINES lines of every ring. Returns how many. */
static size_t drain_round(void)
{
    char buf[LINE_BYTES + 1];
    size_t done = 0, n = atomic_load(&lt.nrings);
    for (size_t i = 0; i < n; i++)
        for (int k = 0; k < ROUND_LINES; k++) {
            uint8_t tag;
            ssize_t len = logring_pop(lt.rings[i], &tag, buf, LINE_BYTES);
            if (len < 0)
                break;
            write_line(tag, buf, (size_t)len);
            done++;
        }
    return done;
}

/* Sleeps until a producer wakes it, or 100 ms (a missed wake-up costs no
 * more than that). */
static void doze(void)
{
    struct pollfd p = {.fd = lt.wake_fd, .events = POLLIN};
    uint64_t v;
    if (poll(&p, 1, 100) > 0 && read(lt.wake_fd, &v, sizeof v) < 0 && errno != EAGAIN)
        log_error("log thread: eventfd: %s", strerror(errno));
}

static void *log_main(void *arg)
{
    (void)arg;
    for (;;) {
        if (atomic_exchange(&lt.reopen, 0))
            reopen_files();
        if (drain_round() > 0)
            continue;
        if (atomic_load(&lt.stopping))
            return NULL;
        atomic_store(&lt.sleeping, 1);
        atomic_thread_fence(memory_order_seq_cst);
        if (drain_round() == 0 && !atomic_load(&lt.reopen) && !atomic_load(&lt.stopping))
            doze();
        atomic_store(&lt.sleeping, 0);
    }
}

int log_start(void)
{
    lt.wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (lt.wake_fd < 0)
        return -1;
    atomic_store(&lt.stopping, 0);
    atomic_store(&lt.running, 1);
    int e = pthread_create(&lt.id, NULL, log_main, NULL);
    if (e != 0) {
        atomic_store(&lt.running, 0);
        close(lt.wake_fd);
        lt.wake_fd = -1;
        errno = e;
        return -1;
    }
    return 0;
}

void log_stop(void)
{
    struct timespec until;
    if (!atomic_load(&lt.running) || atomic_exchange(&lt.stopping, 1))
        return;
    wake_now();
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += STOP_WAIT_S;
    /* A sink that stays stuck keeps its thread and its lines: exiting must
     * not wait for it, and later lines queue or are dropped. */
    if (pthread_timedjoin_np(lt.id, NULL, &until) != 0)
        return;
    atomic_store(&lt.running, 0);
    /* Lines queued after the thread's last round: this thread is the
     * consumer now. */
    while (drain_round() > 0)
        ;
    close(lt.wake_fd);
    lt.wake_fd = -1;
}

uint64_t log_dropped(void)
{
    uint64_t sum = atomic_load_explicit(&lt.ringless, memory_order_relaxed);
    size_t n = atomic_load(&lt.nrings);
    for (size_t i = 0; i < n; i++)
        sum += logring_dropped(lt.rings[i]);
    return sum;
}
