/* socks5d: start-up, listeners, signals, workers. */
#include <ares.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include "auth.h"
#include "config.h"
#include "log.h"
#include "version.h"
#include "worker.h"

#define LISTEN_BACKLOG 4096
#define AUTH_THREADS 2

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
 * the workers' sockets. Returns the fd or -1 after logging why. */
static int open_listener(const union addr_any *a)
{
    char name[ADDR_STRLEN];
    int one = 1;
    int fd = socket(a->sa.sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    addr_str(&a->sa, name, sizeof name);
    if (fd < 0) {
        log_error("listen %s: socket: %s", name, strerror(errno));
        return -1;
    }
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0 ||
        setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) < 0 ||
        (a->sa.sa_family == AF_INET6 &&
         setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one) < 0)) {
        log_error("listen %s: setsockopt: %s", name, strerror(errno));
        close(fd);
        return -1;
    }
    if (bind(fd, &a->sa, addr_len(&a->sa)) < 0 || listen(fd, LISTEN_BACKLOG) < 0) {
        log_error("listen %s: %s", name, strerror(errno));
        close(fd);
        return -1;
    }
    return fd;
}

static int worker_count(const struct config *c)
{
    long n = c->workers ? c->workers : sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)n : 1;
}

/* Creates the workers, each with its own socket per listen address. */
static struct worker **start_workers(struct config *c, int n)
{
    struct worker **w = calloc((size_t)n, sizeof *w);
    char err[256];
    if (!w)
        return NULL;
    for (int i = 0; i < n; i++) {
        int fds[CONFIG_MAX_LISTEN];
        for (size_t j = 0; j < c->nlisten; j++) {
            fds[j] = open_listener(&c->listen[j]);
            if (fds[j] < 0) {
                while (j > 0)
                    close(fds[--j]);
                goto fail;
            }
        }
        w[i] = worker_new(i, c, fds, c->nlisten, err, sizeof err);
        if (!w[i]) {
            log_error("%s", err);
            goto fail;
        }
    }
    for (int i = 0; i < n; i++)
        if (worker_start(w[i]) < 0) {
            log_error("worker %d: pthread_create: %s", i, strerror(errno));
            exit(1); /* threads already running cannot be unwound cleanly */
        }
    return w;
fail:
    for (int i = 0; i < n && w[i]; i++)
        worker_free(w[i]);
    free(w);
    return NULL;
}

/* Waits for signals until the workers have drained. Returns the exit code. */
static int run(struct worker **w, int n, const struct config *c)
{
    sigset_t set;
    int draining = 0;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGHUP);
    for (;;) {
        struct timespec tick = {0, 100 * 1000 * 1000};
        int sig = sigtimedwait(&set, NULL, &tick);
        if (sig == SIGTERM || sig == SIGINT) {
            if (draining) {
                log_warn("second signal: exiting now");
                return 0;
            }
            log_info("signal %d: draining sessions for up to %u ms", sig, c->shutdown_grace_ms);
            draining = 1;
            for (int i = 0; i < n; i++)
                worker_drain(w[i]);
        } else if (sig == SIGHUP) {
            log_warn("SIGHUP: reload is not supported yet; keeping the running configuration");
        }
        if (draining && atomic_load(&g_workers_running) == 0)
            return 0;
    }
}

int main(int argc, char **argv)
{
    int code;
    if (argc >= 2 && strcmp(argv[1], "passwd") == 0) {
        if (argc != 3) {
            fprintf(stderr, "usage: socks5d passwd NAME\n");
            return 2;
        }
        return auth_passwd_main(argv[2]);
    }
    struct config *c = config_from_args(argc, argv, &code);
    if (!c)
        return code;
    log_setup(c->log_level, c->access_log);
    signal(SIGPIPE, SIG_IGN);
    rlim_t nofile = raise_nofile();
    if (c->max_sessions == 0)
        c->max_sessions = nofile > 64 ? (nofile - 32) / 2 : 16;

    /* Signals are taken synchronously by this thread only. */
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &set, NULL);

    if (ares_library_init(ARES_LIB_INIT_ALL) != ARES_SUCCESS || auth_pool_start(AUTH_THREADS) < 0) {
        log_error("start-up: cannot initialise the resolver or the password threads");
        return 1;
    }
    int n = worker_count(c);
    struct worker **w = start_workers(c, n);
    if (!w)
        return 1;
    for (size_t i = 0; i < c->nlisten; i++) {
        char name[ADDR_STRLEN];
        log_info("socks5d %s listening on %s (%d workers, max %llu sessions)", SOCKS5D_VERSION,
                 addr_str(&c->listen[i].sa, name, sizeof name), n,
                 (unsigned long long)c->max_sessions);
    }
    code = run(w, n, c);
    if (atomic_load(&g_workers_running) != 0)
        _exit(code); /* second signal: do not wait for anyone */
    for (int i = 0; i < n; i++)
        worker_wait(w[i]);
    auth_pool_stop();
    for (int i = 0; i < n; i++)
        worker_free(w[i]);
    free(w);
    config_unref(c);
    ares_library_cleanup();
    log_info("stopped");
    return code;
}
