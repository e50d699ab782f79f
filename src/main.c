/* socks5d: start-up, listeners, signals, reload, workers. */
#include <ares.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include "auth_pool.h"
#include "check.h"
#include "config.h"
#include "confdiff.h"
#include "fdbudget.h"
#include "hostaddr.h"
#include "log.h"
#include "metrics.h"
#include "net.h"
#include "notify.h"
#include "passwd.h"
#include "pidfile.h"
#include "policy.h"
#include "privs.h"
#include "quota.h"
#include "users.h"
#include "userstats.h"
#include "version.h"
#include "worker.h"

#define LISTEN_BACKLOG 4096
#define AUTH_THREADS 2

/* What the main thread keeps: the snapshot in force and, per listen
 * address, the socket each worker has for it. */
struct server {
    int argc;
    char **argv;
    struct config *cfg;
    struct worker **w;
    int nworkers;
    size_t nlisten;
    struct listen_spec spec[CONFIG_MAX_LISTEN];
    int *fds[CONFIG_MAX_LISTEN]; /* [listen][worker] */
    int activated;               /* listeners came from systemd (LISTEN_FDS) */
    struct addr_list *self;      /* the host's own addresses, as the workers have them */
    int addr_watch;              /* netlink socket: own addresses changed; -1: none */
    char *pid_file;              /* the pid file this process wrote, or NULL */
};

/* Soft fd limit up to the hard limit; returns the limit now in force. */
static rlim_t raise_nofile(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
        return 1024;
    if (rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        if (setrlimit(RLIMIT_NOFILE, &rl) < 0)
            getrlimit(RLIMIT_NOFILE, &rl);
    }
    return rl.rlim_cur;
}

/* One SO_REUSEPORT listening socket; the kernel spreads connections over
 * the workers' sockets. TCP_NODELAY here is inherited by every accepted
 * socket. Returns the fd or -1 after logging why. */
static int open_listener(const union addr_any *a)
{
    char err[256];
    int fd =
        net_listen_tcp(a, LISTEN_BACKLOG, NET_REUSEADDR | NET_REUSEPORT | NET_NODELAY | NET_V6ONLY,
                       err, sizeof err);
    if (fd < 0)
        log_error("listener: %s", err);
    return fd;
}

/* Opens one socket per worker for spec. Returns the array or NULL. */
static int *open_for_workers(const struct listen_spec *spec, int n)
{
    int *fds = calloc((size_t)n, sizeof *fds);
    for (int i = 0; fds && i < n; i++) {
        fds[i] = open_listener(&spec->addr);
        if (fds[i] < 0) {
            while (i > 0)
                close(fds[--i]);
            free(fds);
            return NULL;
        }
    }
    return fds;
}

static void log_held(const struct listen_spec *spec)
{
    char name[ADDR_STRLEN];
    log_error("listen %s: %s by another process (another socks5d?); 'reuse-port yes' or "
              "--reuse-port shares it",
              addr_str(&spec->addr.sa, name, sizeof name), strerror(EADDRINUSE));
}

static void close_all(int *fds, int n)
{
    for (int k = 0; k < n; k++)
        close(fds[k]);
    free(fds);
}

/* Opens spec for n workers. An address another process listens on is
 * refused unless the configuration asks to share it (SO_REUSEPORT would
 * otherwise split its connections with ours without a word): a probe bind
 * before, and the kernel's listener table after, for a second instance
 * that probed at the same moment. Only for addresses this process does not
 * hold yet. Returns the array, or NULL (*held set when that was the cause). */
static int *open_alone(const struct listen_spec *spec, int n, int share, int *held)
{
    char name[ADDR_STRLEN];
    int *fds;
    *held = net_tcp_held(&spec->addr) == 1; /* a failed probe: opening says why */
    if (*held && !share) {
        log_held(spec);
        return NULL;
    }
    if (*held)
        log_info("listen %s: sharing the address with another process (reuse-port)",
                 addr_str(&spec->addr.sa, name, sizeof name));
    *held = 0;
    if (!(fds = open_for_workers(spec, n)) || share)
        return fds;
    if (net_tcp_others(&spec->addr, fds, (size_t)n) == 1) {
        log_held(spec);
        close_all(fds, n);
        *held = 1;
        return NULL;
    }
    return fds;
}

/* systemd socket activation: fds 3.. are listening sockets. Every worker
 * watches a duplicate of each (they share one accept queue). */
static int take_activated(struct server *sv)
{
    const char *pid = getenv("LISTEN_PID"), *nfds = getenv("LISTEN_FDS");
    int n;
    if (!pid || !nfds || atol(pid) != (long)getpid() || (n = atoi(nfds)) <= 0)
        return 0;
    for (int i = 0; i < n && sv->nlisten < CONFIG_MAX_LISTEN; i++) {
        struct listen_spec *sp = &sv->spec[sv->nlisten];
        socklen_t len = sizeof sp->addr;
        int fd = 3 + i;
        char err[64];
        /* systemd hands over blocking sockets unless told NonBlocking=; the
         * array is allocated last so that a failure leaves nothing behind. */
        if (getsockname(fd, &sp->addr.sa, &len) < 0) {
            log_error("LISTEN_FDS: fd %d: %s", fd, strerror(errno));
            return -1;
        }
        if (net_set_nonblock(fd, err, sizeof err) < 0) {
            log_error("LISTEN_FDS: %s", err);
            return -1;
        }
        if (!(sv->fds[sv->nlisten] = calloc((size_t)sv->nworkers, sizeof(int)))) {
            log_error("LISTEN_FDS: fd %d: out of memory", fd);
            return -1;
        }
        sp->proxy_protocol = (uint8_t)sv->cfg->proxy_protocol_all;
        for (int k = 0; k < sv->nworkers; k++)
            sv->fds[sv->nlisten][k] = k == 0 ? fd : fcntl(fd, F_DUPFD_CLOEXEC, 3);
        sv->nlisten++;
    }
    unsetenv("LISTEN_PID");
    unsetenv("LISTEN_FDS");
    unsetenv("LISTEN_FDNAMES");
    sv->activated = 1;
    log_info("using %zu listening socket%s from systemd; 'listen' settings are ignored",
             sv->nlisten, log_s(sv->nlisten));
    return 0;
}

/* Returns 0, or the exit code: 2 for an address held elsewhere. */
static int bind_listeners(struct server *sv)
{
    if (take_activated(sv) < 0)
        return 1;
    if (sv->activated)
        return 0;
    for (size_t i = 0; i < sv->cfg->nlisten; i++) {
        int held;
        sv->spec[i] = sv->cfg->listen[i];
        if (!(sv->fds[i] = open_alone(&sv->spec[i], sv->nworkers, sv->cfg->reuse_port, &held)))
            return held ? 2 : 1;
        sv->nlisten = i + 1;
    }
    return 0;
}

/* The listeners worker k is to have. */
static size_t worker_set(const struct server *sv, int k, struct worker_listen *out)
{
    for (size_t i = 0; i < sv->nlisten; i++) {
        out[i].spec = sv->spec[i];
        out[i].fd = sv->fds[i][k];
    }
    return sv->nlisten;
}

static int start_workers(struct server *sv)
{
    char err[256];
    struct worker_listen ls[CONFIG_MAX_LISTEN];
    if (!(sv->w = calloc((size_t)sv->nworkers, sizeof *sv->w)))
        return -1;
    for (int k = 0; k < sv->nworkers; k++) {
        size_t n = worker_set(sv, k, ls);
        if (!(sv->w[k] = worker_new(k, sv->cfg, sv->self, ls, n, err, sizeof err))) {
            log_error("%s", err);
            return -1;
        }
    }
    /* What is open now (listeners, loops, logs, metrics) is not charged. */
    fdbudget_init(raise_nofile(), fdbudget_count_open(), sv->nworkers);
    for (int k = 0; k < sv->nworkers; k++)
        worker_group(sv->w[k], sv->w, sv->nworkers);
    for (int k = 0; k < sv->nworkers; k++)
        if (worker_start(sv->w[k]) < 0) {
            log_error("worker %d: pthread_create: %s", k, strerror(errno));
            return -1;
        }
    return 0;
}

/* ---------------- the host's own addresses ---------------- */

/* Takes a new snapshot of the host's addresses and, when it differs, hands
 * it to every worker. On failure the workers keep the previous one. */
static void refresh_self(struct server *sv)
{
    char err[256];
    struct addr_list *l = hostaddr_snapshot(err, sizeof err);
    if (!l) {
        log_error("own addresses: %s (deny-private keeps the previous list)", err);
        return;
    }
    if (addr_list_equal(l, sv->self)) {
        addr_list_unref(l);
        return;
    }
    for (int k = 0; k < sv->nworkers; k++)
        if (worker_set_self(sv->w[k], l) < 0)
            log_error("own addresses: worker %d: out of memory", k);
    addr_list_unref(sv->self);
    sv->self = l;
    log_debug("own addresses changed: %zu now", l->n);
}

/* Start-up: the first snapshot, and the socket that says when to take the next. */
static int watch_self(struct server *sv)
{
    char err[256];
    /* The socket first: a change during the snapshot is then not missed. */
    if ((sv->addr_watch = hostaddr_watch()) < 0)
        log_warn("own addresses: netlink: %s (deny-private sees new addresses only on reload)",
                 strerror(errno));
    if (!(sv->self = hostaddr_snapshot(err, sizeof err))) {
        log_error("start-up: own addresses: %s", err);
        return -1;
    }
    return 0;
}

static void unwatch_self(struct server *sv)
{
    addr_list_unref(sv->self);
    if (sv->addr_watch >= 0)
        close(sv->addr_watch);
}

static void poll_self(struct server *sv)
{
    int rc = sv->addr_watch >= 0 ? hostaddr_changed(sv->addr_watch) : 0;
    if (rc > 0)
        refresh_self(sv);
    else if (rc < 0) {
        /* Not every 100 ms: one message, then reloads alone refresh. */
        log_error("own addresses: netlink: %s (deny-private sees new addresses only on reload)",
                  strerror(errno));
        close(sv->addr_watch);
        sv->addr_watch = -1;
    }
}

/* ---------------- reload ---------------- */

/* Reads the configuration again with the original command line. Problems
 * go to the error log. Socket-activated listeners are not in the
 * configuration: protected mode checks them here. */
static struct config *load_again(struct server *sv)
{
    char *text = NULL;
    size_t len = 0;
    int code, check;
    FILE *err = open_memstream(&text, &len);
    if (!err)
        return NULL;
    struct config *c = config_load(sv->argc, sv->argv, err, &code, &check);
    if (c && sv->activated && config_check_open_proxy(c, sv->spec, sv->nlisten, err) < 0) {
        config_unref(c);
        c = NULL;
    }
    fclose(err);
    for (char *save, *line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save))
        log_error("reload: %s", line);
    free(text);
    return c;
}

/* The socket array for spec if it is already open, else NULL. */
static int *kept_fds(const struct server *sv, const struct listen_spec *spec)
{
    for (size_t j = 0; j < sv->nlisten; j++)
        if (config_same_listen(&sv->spec[j], spec))
            return sv->fds[j];
    return NULL;
}

/* New listen set: addresses kept keep their sockets, new ones are opened.
 * Returns 0 with spec/fds/n filled, or -1 with nothing changed. */
static int reconcile(struct server *sv, const struct config *c, struct listen_spec *spec, int **fds,
                     size_t *n)
{
    size_t i;
    int held;
    for (i = 0; i < c->nlisten; i++) {
        spec[i] = c->listen[i];
        fds[i] = kept_fds(sv, &spec[i]);
        if (!fds[i] && !(fds[i] = open_alone(&spec[i], sv->nworkers, c->reuse_port, &held)))
            break;
    }
    if (i == c->nlisten) {
        *n = i;
        return 0;
    }
    while (i-- > 0)
        if (!kept_fds(sv, &spec[i]))
            close_all(fds[i], sv->nworkers);
    return -1;
}

/* "Reloaded" is announced once every worker runs the new snapshot, so a
 * session accepted after the announcement is sure to see it. Workers take
 * their mail within a loop round; the wait is bounded all the same. */
static void wait_applied(struct server *sv)
{
    for (int tries = 0; tries < 2000; tries++) {
        int k = 0;
        while (k < sv->nworkers && !worker_reload_pending(sv->w[k]))
            k++;
        if (k == sv->nworkers)
            return;
        struct timespec ms = {0, 1000000};
        nanosleep(&ms, NULL);
    }
    log_warn("reload: a worker is slow to take the new configuration");
}

/* What the reload changed, and what it leaves for a restart. */
static void log_reload(const struct config *old, const struct config *c, const struct server *sv)
{
    char what[1536], later[256];
    confdiff_changes(old, c, !sv->activated, what, sizeof what);
    confdiff_restart(old, c, sv->nworkers, later, sizeof later);
    log_info("configuration reloaded: %s", what);
    if (later[0])
        log_warn("reload: these settings change only on restart: %s", later);
}

static void reload(struct server *sv)
{
    struct listen_spec spec[CONFIG_MAX_LISTEN];
    int *fds[CONFIG_MAX_LISTEN];
    struct worker_listen ls[CONFIG_MAX_LISTEN];
    size_t n = 0;
    char err[512];
    notify("RELOADING=1");
    struct config *c = load_again(sv);
    if (c)
        config_size_limits(c, raise_nofile());
    if (!c) {
        log_error("reload failed: keeping the running configuration");
        notify("READY=1\nSTATUS=reload failed; running the previous configuration");
        metrics_reloaded(0);
        return;
    }
    if (!sv->activated && reconcile(sv, c, spec, fds, &n) < 0) {
        log_error(
            "reload failed: cannot open the new listeners; keeping the running configuration");
        config_unref(c);
        notify("READY=1\nSTATUS=reload failed; running the previous configuration");
        metrics_reloaded(0);
        return;
    }
    if (log_configure(&c->log, err, sizeof err) < 0)
        log_error("reload: %s (logs stay where they were)", err);
    userstats_set_max(c->metrics_users);
    refresh_self(sv);
    if (!sv->activated) {
        /* Sockets of addresses no longer listed are closed by the workers. */
        for (size_t j = 0; j < sv->nlisten; j++) {
            int kept = 0;
            for (size_t i = 0; i < n; i++)
                kept |= fds[i] == sv->fds[j];
            if (!kept)
                free(sv->fds[j]);
        }
        memcpy(sv->spec, spec, n * sizeof *spec);
        memcpy(sv->fds, fds, n * sizeof *fds);
        sv->nlisten = n;
    }
    for (int k = 0; k < sv->nworkers; k++) {
        size_t m = worker_set(sv, k, ls);
        if (worker_reload(sv->w[k], c, ls, m) < 0)
            log_error("reload: worker %d: out of memory", k);
    }
    wait_applied(sv);
    /* Failures counted under the old settings must not come back under a
     * later configuration that throttles these addresses again. */
    size_t forgot = quota_auth_forget(policy_login_throttled, c);
    if (forgot)
        log_info("reload: login throttle: forgot %zu counter%s of addresses no longer throttled",
                 forgot, forgot == 1 ? "" : "s");
    log_reload(sv->cfg, c, sv);
    config_unref(sv->cfg);
    sv->cfg = c;
    metrics_reloaded(1);
    notify("READY=1\nSTATUS=configuration reloaded");
}

/* ---------------- signals ---------------- */

/* Waits for signals until the workers have drained. Returns the exit code. */
/* STATUS= for systemctl status, when the count changed, at most every 5 s. */
static void report_status(const struct server *sv)
{
    static unsigned long last = ~0UL;
    static time_t when;
    unsigned long n = 0;
    for (int k = 0; k < sv->nworkers; k++)
        n += (unsigned long)worker_sessions(sv->w[k]);
    time_t now = time(NULL);
    if (n == last || now - when < 5)
        return;
    last = n;
    when = now;
    notify("STATUS=%lu session%s", n, log_s(n));
}

static void drain_workers(struct server *sv)
{
    for (int k = 0; k < sv->nworkers; k++)
        worker_drain(sv->w[k]);
}

/* The signals the main thread takes synchronously (blocked everywhere). */
static void handled_signals(sigset_t *set)
{
    sigemptyset(set);
    sigaddset(set, SIGTERM);
    sigaddset(set, SIGINT);
    sigaddset(set, SIGHUP);
    sigaddset(set, SIGUSR1);
}

static void reopen_logs(const struct config *c)
{
    if (c->log.error_sink != SINK_FILE && c->log.access_sink != SINK_FILE) {
        log_info("signal USR1: no log file to reopen (the logs go to stderr or syslog)");
        return;
    }
    log_info("signal USR1: reopening the log files");
    log_reopen();
}

static int run(struct server *sv)
{
    sigset_t set;
    int draining = 0;
    struct timespec drain_at = {0, 0}, now;
    handled_signals(&set);
    for (;;) {
        struct timespec tick = {0, 100 * 1000 * 1000};
        int sig = sigtimedwait(&set, NULL, &tick);
        if (sig == SIGTERM || sig == SIGINT) {
            if (draining) {
                log_warn("second signal: exiting now");
                return 0;
            }
            log_info("signal %d: draining sessions for up to %u ms", sig,
                     sv->cfg->shutdown_grace_ms);
            notify("STOPPING=1");
            /* Health checks fail first, so balancers stop sending before
             * the listeners close. */
            metrics_set_draining();
            draining = 1;
            clock_gettime(CLOCK_MONOTONIC, &drain_at);
            drain_at.tv_sec += sv->cfg->drain_delay_ms / 1000;
            drain_at.tv_nsec += (long)(sv->cfg->drain_delay_ms % 1000) * 1000000;
            if (drain_at.tv_nsec >= 1000000000L) {
                drain_at.tv_sec++;
                drain_at.tv_nsec -= 1000000000L;
            }
            if (sv->cfg->drain_delay_ms == 0) {
                drain_workers(sv);
                drain_at.tv_sec = 0;
            }
        } else if (sig == SIGHUP && !draining) {
            reload(sv);
        } else if (sig == SIGUSR1) {
            reopen_logs(sv->cfg);
        }
        clock_gettime(CLOCK_MONOTONIC, &now);
        if (drain_at.tv_sec &&
            (now.tv_sec > drain_at.tv_sec ||
             (now.tv_sec == drain_at.tv_sec && now.tv_nsec >= drain_at.tv_nsec))) {
            drain_workers(sv);
            drain_at.tv_sec = 0;
        }
        if (draining && atomic_load(&g_workers_running) == 0)
            return 0;
        if (!draining) {
            poll_self(sv);
            report_status(sv);
        }
    }
}

static void block_signals(void)
{
    sigset_t set;
    handled_signals(&set);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);
}

static int worker_count(const struct config *c)
{
    long n = c->workers ? c->workers : sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)n : 1;
}

/* At exit: the pid file goes if it is still ours (a run user that cannot
 * write its directory cannot remove it; the next start replaces it). */
static void release_pid_file(struct server *sv)
{
    char err[512];
    if (sv->pid_file && pidfile_release(sv->pid_file, err, sizeof err) < 0)
        log_warn("%s", err);
    free(sv->pid_file);
    sv->pid_file = NULL;
}

static void shutdown_all(struct server *sv)
{
    metrics_stop();
    for (int k = 0; k < sv->nworkers; k++)
        if (sv->w && sv->w[k])
            worker_wait(sv->w[k]);
    auth_pool_stop();
    for (int k = 0; k < sv->nworkers; k++)
        if (sv->w && sv->w[k])
            worker_free(sv->w[k]);
    free(sv->w);
    for (size_t i = 0; i < sv->nlisten; i++)
        free(sv->fds[i]);
    release_pid_file(sv);
    config_unref(sv->cfg);
    unwatch_self(sv);
    ares_library_cleanup();
}

/* Listens, drops privileges, starts metrics. Returns 0 or the exit code. */
static int prepare(struct server *sv)
{
    char err[512];
    int code;
    if (sv->cfg->pid_file) {
        if (!(sv->pid_file = strdup(sv->cfg->pid_file))) {
            log_error("pid-file %s: out of memory", sv->cfg->pid_file);
            return 1;
        }
        if (pidfile_claim(sv->pid_file, err, sizeof err) != 0) {
            log_error("%s", err);
            free(sv->pid_file);
            sv->pid_file = NULL; /* not ours to remove */
            return 2;
        }
    }
    if ((code = bind_listeners(sv)) != 0)
        return code;
    if (sv->activated &&
        config_check_open_proxy(sv->cfg, sv->spec, sv->nlisten, log_stderr(LOG_LVL_ERROR)) < 0)
        return 2;
    if (privs_drop(sv->cfg, sv->spec, sv->nlisten, err, sizeof err) < 0) {
        log_error("%s", err);
        return 2;
    }
    if (metrics_start(&sv->cfg->metrics, sv->nworkers, sv->cfg->metrics_sessions, err, sizeof err) <
        0) {
        log_error("%s", err);
        return 1;
    }
    return 0;
}

/* Start-up failed before the workers took the listeners: close and free
 * what was made so far. */
static int abandon(struct server *sv, int code)
{
    metrics_stop();
    for (size_t i = 0; i < sv->nlisten; i++) {
        for (int k = 0; k < sv->nworkers; k++)
            close(sv->fds[i][k]);
        free(sv->fds[i]);
    }
    auth_pool_stop();
    release_pid_file(sv);
    config_unref(sv->cfg);
    unwatch_self(sv);
    ares_library_cleanup();
    log_stop(); /* the reason is written before the exit */
    return code;
}

/* Log files are checked before root opens them, at start and by -t. */
static int check_log_file(const struct config *c, int sink, const char *what, const char *path)
{
    char err[512];
    if (sink != SINK_FILE || privs_check_log_file(c, what, path, err, sizeof err) == 0)
        return 0;
    fprintf(log_stderr(LOG_LVL_ERROR), "socks5d: %s\n", err);
    return -1;
}

static int check_log_files(const struct config *c)
{
    int bad = check_log_file(c, c->log.error_sink, "error-log", c->log.error_log_path) < 0;
    bad |= check_log_file(c, c->log.access_sink, "access-log", c->log.access_log_path) < 0;
    return bad ? -1 : 0;
}

/* -t and -T: every problem at once; 2 when the start would fail. */
static int check_and_exit(struct config *c, int mode)
{
    int bad = check_log_files(c) < 0;
    bad |= check_config(c, log_stderr(LOG_LVL_WARN), log_stderr(LOG_LVL_ERROR)) < 0;
    log_check_syslog(&c->log, log_stderr(LOG_LVL_WARN));
    if (!bad && mode == CONFIG_DUMP) {
        config_size_limits(c, raise_nofile());
        config_dump(c, stdout);
    } else if (!bad) {
        printf("socks5d: configuration OK%s%s\n", c->path ? ": " : "", c->path ? c->path : "");
    }
    config_unref(c);
    return bad ? 2 : 0;
}

int main(int argc, char **argv)
{
    struct server sv = {.argc = argc, .argv = argv, .addr_watch = -1};
    char err[512];
    int code, check;
    if (argc >= 2 && strcmp(argv[1], "passwd") == 0)
        return passwd_main(argc - 1, argv + 1);
    if (log_init() < 0)
        return 1;
    /* Before any thread exists, so every thread inherits it. */
    if (privs_early() < 0) {
        fprintf(log_stderr(LOG_LVL_ERROR), "socks5d: prctl(PR_SET_NO_NEW_PRIVS): %s\n",
                strerror(errno));
        return 1;
    }
    /* What goes wrong before the error log exists is written to stderr, with
     * the journal's priority prefix when stderr is the journal. */
    if (!(sv.cfg = config_load(argc, argv, log_stderr(LOG_LVL_ERROR), &code, &check)))
        return code;
    if (check != CONFIG_RUN)
        return check_and_exit(sv.cfg, check);
    if (check_log_files(sv.cfg) < 0) {
        config_unref(sv.cfg);
        return 2;
    }
    if (log_configure(&sv.cfg->log, err, sizeof err) < 0) {
        fprintf(log_stderr(LOG_LVL_ERROR), "socks5d: %s\n", err);
        config_unref(sv.cfg);
        return 2;
    }
    userstats_set_max(sv.cfg->metrics_users);
    block_signals();
    if (log_start() < 0) {
        fprintf(log_stderr(LOG_LVL_ERROR), "socks5d: log thread: %s\n", strerror(errno));
        config_unref(sv.cfg);
        return 1;
    }
    config_size_limits(sv.cfg, raise_nofile());
    sv.nworkers = worker_count(sv.cfg);
    if (ares_library_init(ARES_LIB_INIT_ALL) != ARES_SUCCESS || quota_init() < 0 ||
        auth_pool_start(AUTH_THREADS) < 0) {
        log_error("start-up: cannot initialise the resolver or the password threads");
        return abandon(&sv, 1);
    }
    if (watch_self(&sv) < 0)
        return abandon(&sv, 1);
    if ((code = prepare(&sv)) != 0)
        return abandon(&sv, code);
    if (start_workers(&sv) < 0) {
        log_stop();
        _exit(1); /* some threads may run already: they cannot be unwound */
    }
    for (size_t i = 0; i < sv.nlisten; i++) {
        char name[ADDR_STRLEN];
        log_info("socks5d %s listening on %s%s (%d worker%s, max %llu session%s)", SOCKS5D_VERSION,
                 addr_str(&sv.spec[i].addr.sa, name, sizeof name),
                 sv.spec[i].proxy_protocol ? " with PROXY protocol" : "", sv.nworkers,
                 log_s((unsigned)sv.nworkers), (unsigned long long)sv.cfg->max_sessions,
                 log_s(sv.cfg->max_sessions));
    }
    metrics_set_workers(sv.w, sv.nworkers);
    notify("READY=1\nSTATUS=listening");
    code = run(&sv);
    if (atomic_load(&g_workers_running) != 0) {
        log_stop();
        _exit(code); /* second signal: do not wait for anyone */
    }
    shutdown_all(&sv);
    log_info("stopped");
    log_stop();
    return code;
}
