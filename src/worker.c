/* Worker threads: accept on own SO_REUSEPORT sockets, run sessions. */
#include "worker.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "auth.h"
#include "log.h"
#include "resolve.h"
#include "session.h"

#define ACCEPT_PAUSE_MS 100
#define ACCEPT_BATCH 64
#define POOL_MAX_FREE 64

atomic_ulong g_sessions;
atomic_int g_workers_running;

struct worker_msg {
    struct mail mail;
    struct worker *w;
};

void worker_link(struct worker *w, struct session *s)
{
    s->prev = NULL;
    s->next = w->sessions;
    if (w->sessions)
        w->sessions->prev = s;
    w->sessions = s;
    w->nsessions++;
}

void worker_unlink(struct worker *w, struct session *s)
{
    if (s->prev)
        s->prev->next = s->next;
    else
        w->sessions = s->next;
    if (s->next)
        s->next->prev = s->prev;
    w->nsessions--;
}

static void on_accept(struct loop_io *io, unsigned events);

static void on_accept_pause_end(struct loop_timer *t)
{
    struct worker *w = container_of(t, struct worker, accept_pause);
    for (size_t i = 0; i < w->nlisteners; i++)
        on_accept(&w->listeners[i].io, LOOP_READ);
}

/* Out of fds: stop accepting for a moment instead of spinning on a queue
 * that cannot shrink. The pending connections wait in the backlog. */
static void pause_accepting(struct worker *w, int err)
{
    if (!w->emfile_logged) {
        log_warn("worker %d: accept: %s; pausing accepts for %d ms", w->id, strerror(err),
                 ACCEPT_PAUSE_MS);
        w->emfile_logged = 1;
    }
    if (!loop_timer_armed(&w->accept_pause))
        loop_timer_arm(w->loop, &w->accept_pause, ACCEPT_PAUSE_MS, on_accept_pause_end);
}

/* Reserves a slot under --max-sessions. */
static int admit(const struct config *cfg)
{
    unsigned long n = atomic_fetch_add_explicit(&g_sessions, 1, memory_order_relaxed);
    if (n < cfg->max_sessions)
        return 1;
    atomic_fetch_sub_explicit(&g_sessions, 1, memory_order_relaxed);
    return 0;
}

static void on_accept(struct loop_io *io, unsigned events)
{
    struct listener *ln = container_of(io, struct listener, io);
    struct worker *w = ln->w;
    (void)events;
    if (w->draining || loop_timer_armed(&w->accept_pause))
        return;
    /* Edge-triggered: drain the queue, in batches so accepting never
     * starves the sessions already running. */
    for (int i = 0; i < ACCEPT_BATCH; i++) {
        union addr_any peer;
        socklen_t len = sizeof peer;
        int fd = accept4(io->fd, &peer.sa, &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED)
                continue;
            if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM)
                pause_accepting(w, errno);
            else if (errno != EAGAIN)
                log_error("worker %d: accept: %s", w->id, strerror(errno));
            return;
        }
        w->emfile_logged = 0;
        if (!admit(w->cfg)) {
            log_debug("worker %d: session limit %llu reached, closing new connection", w->id,
                      (unsigned long long)w->cfg->max_sessions);
            close(fd);
            continue;
        }
        session_start(w, fd, &peer);
    }
    /* The batch ended with connections possibly still queued: no new edge
     * will come for them, so look again after this round. */
    if (!loop_timer_armed(&w->accept_pause))
        loop_timer_arm(w->loop, &w->accept_pause, 0, on_accept_pause_end);
}

struct worker *worker_new(int id, struct config *cfg, const int *fds, size_t n, char *err,
                          size_t errlen)
{
    struct worker *w = calloc(1, sizeof *w);
    if (!w || !(w->loop = loop_new()) || !(w->listeners = calloc(n ? n : 1, sizeof *w->listeners))) {
        snprintf(err, errlen, "worker %d: out of memory", id);
        goto fail;
    }
    w->id = id;
    w->cfg = config_ref(cfg);
    bufpool_init(&w->pool, POOL_MAX_FREE);
    if (mailbox_init(&w->mbox, w->loop) < 0) {
        snprintf(err, errlen, "worker %d: eventfd: %s", id, strerror(errno));
        goto fail;
    }
    if (!(w->resolver = resolver_new(w->loop, err, errlen)))
        goto fail;
    if (!(w->auth_cache = auth_cache_new(cfg->auth_cache_ttl_ms))) {
        snprintf(err, errlen, "worker %d: auth cache: out of memory", id);
        goto fail;
    }
    for (size_t i = 0; i < n; i++) {
        struct listener *ln = &w->listeners[w->nlisteners];
        ln->w = w;
        if (loop_io_add(w->loop, &ln->io, fds[i], LOOP_READ, on_accept) < 0) {
            snprintf(err, errlen, "worker %d: epoll_ctl: %s", id, strerror(errno));
            goto fail;
        }
        w->nlisteners++;
    }
    return w;
fail:
    if (w)
        worker_free(w);
    return NULL;
}

static void close_listeners(struct worker *w)
{
    for (size_t i = 0; i < w->nlisteners; i++) {
        int fd = w->listeners[i].io.fd;
        loop_io_del(w->loop, &w->listeners[i].io);
        close(fd);
    }
    w->nlisteners = 0;
}

static void on_drain_deadline(struct loop_timer *t)
{
    struct worker *w = container_of(t, struct worker, drain_deadline);
    if (w->nsessions)
        log_info("worker %d: grace period over, closing %zu sessions", w->id, w->nsessions);
    while (w->sessions)
        session_close(w->sessions);
}

static void on_drain(struct mail *m)
{
    struct worker_msg *msg = (struct worker_msg *)m;
    struct worker *w = msg->w;
    free(msg);
    if (w->draining)
        return;
    w->draining = 1;
    close_listeners(w);
    loop_timer_cancel(w->loop, &w->accept_pause);
    loop_timer_arm(w->loop, &w->drain_deadline, w->cfg->shutdown_grace_ms, on_drain_deadline);
}

void worker_drain(struct worker *w)
{
    struct worker_msg *m = calloc(1, sizeof *m);
    if (!m) {
        log_error("worker %d: cannot send drain message: out of memory", w->id);
        return;
    }
    m->w = w;
    mailbox_post(&w->mbox, &m->mail, on_drain);
}

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    while (!w->draining || w->nsessions > 0) {
        if (loop_run_once(w->loop, -1) < 0) {
            log_error("worker %d: epoll_wait: %s", w->id, strerror(errno));
            break;
        }
    }
    atomic_fetch_sub(&g_workers_running, 1);
    return NULL;
}

int worker_start(struct worker *w)
{
    sigset_t all, old;
    int rc;
    /* Signals belong to the main thread. */
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &old);
    atomic_fetch_add(&g_workers_running, 1);
    rc = pthread_create(&w->thread, NULL, worker_main, w);
    if (rc != 0)
        atomic_fetch_sub(&g_workers_running, 1);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc != 0) {
        errno = rc;
        return -1;
    }
    return 0;
}

void worker_wait(struct worker *w)
{
    if (w->thread)
        pthread_join(w->thread, NULL);
    w->thread = 0;
}

void worker_free(struct worker *w)
{
    if (w->loop) {
        while (w->sessions)
            session_close(w->sessions);
        close_listeners(w);
        resolver_free(w->resolver);
        /* Timers of 0 ms (deferred answers) and mail (auth results) may
         * still hold memory: let them run and free it. */
        loop_timer_cancel(w->loop, &w->accept_pause);
        loop_timer_cancel(w->loop, &w->drain_deadline);
        loop_run_once(w->loop, 0);
        if (w->mbox.io.fn)
            mailbox_destroy(&w->mbox, w->loop);
    }
    auth_cache_free(w->auth_cache);
    bufpool_destroy(&w->pool);
    if (w->cfg)
        config_unref(w->cfg);
    free(w->listeners);
    loop_free(w->loop);
    free(w);
}
