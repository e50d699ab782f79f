/* Worker threads: accept on own SO_REUSEPORT sockets, even out where new
 * sessions start, run sessions. */
#include "worker.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "auth_cache.h"
#include "auth_pool.h"
#include "bufpool.h"
#include "fdbudget.h"
#include "lease.h"
#include "log.h"
#include "loop.h"
#include "mailbox.h"
#include "net.h"
#include "resolve.h"
#include "session.h"
#include "sessq.h"
#include "stats.h"
#include "wenv.h"

#define ACCEPT_PAUSE_MS 100
#define ACCEPT_BATCH 64
#define POOL_MAX_FREE 64

atomic_int g_workers_running;

/* Sessions admitted under --max-sessions, all workers together, leased to
 * each worker (lease.h): accepting and closing a session touch only the
 * worker's own lease, and the shared count once per batch. No more than
 * max-sessions ever run; one may be refused early by what other workers
 * keep leased and unused, under 1/128 of the limit, and not at all below
 * 256 sessions per worker (batch 0: the exact shared count). */
static struct lease_pool admitted;

/* A snapshot this worker's sessions run under. The worker holds the one
 * reference (the shared, atomic count) and counts its sessions here, on its
 * own thread: accepting and closing never touch the shared count. The
 * first in the list is the snapshot new sessions get. */
struct snap {
    struct config *cfg;
    uint64_t sessions;
    struct snap *next;
};

struct listener {
    struct loop_io io; /* fd -1: slot free */
    struct worker *w;
    struct listen_spec spec;
    unsigned slot; /* its counters (lslots.h) */
};

struct worker {
    struct wenv env; /* loop, snapshot, own addresses, resolver, pools, stats, sessions */
    pthread_t thread;
    struct mailbox mbox;
    struct listener listeners[CONFIG_MAX_LISTEN];
    struct loop_timer accept_pause; /* out of fds: retry accept later */
    struct loop_timer drain_deadline;
    atomic_int draining; /* written on this worker's thread, read by any */
    int emfile_logged;
    atomic_uint reloads_posted;  /* reload messages sent by the main thread */
    atomic_uint reloads_applied; /* reload messages taken in (main waits on it) */
    struct snap *snaps;          /* env.cfg first, then older ones sessions still use */
    struct lease admit_lease;
    stat_t admitted;             /* sessions admitted and not ended: read by any thread */
    struct worker *const *group; /* every worker, this one included */
    int ngroup;
    unsigned turn;        /* which other worker to compare with next */
    atomic_uint incoming; /* connections handed to this worker, not started yet */
};

/* A connection accepted by one worker, to be started by another. */
struct handoff {
    struct mail mail;
    struct worker *to;
    int fd;
    unsigned slot;
    union addr_any peer;
    struct listen_spec spec;
};

struct worker_msg {
    struct mail mail;
    struct worker *w;
    struct snap *snap;      /* reload: the new snapshot (one reference) */
    struct addr_list *self; /* own addresses: the new list (one reference) */
    size_t n;
    struct worker_listen ls[CONFIG_MAX_LISTEN];
};

struct wenv *worker_env(struct worker *w)
{
    return &w->env;
}

int worker_draining(const struct worker *w)
{
    return w->draining;
}

uint64_t worker_sessions(const struct worker *w)
{
    return stat_get(&w->admitted);
}

static struct snap *snap_new(struct config *cfg)
{
    struct snap *s = calloc(1, sizeof *s);
    if (s)
        s->cfg = config_ref(cfg);
    return s;
}

static void snap_free(struct snap *s)
{
    config_unref(s->cfg);
    free(s);
}

/* A snapshot no session uses and no new one will get goes. */
static void snap_drop_unused(struct worker *w)
{
    for (struct snap **p = &w->snaps->next; *p;) {
        struct snap *s = *p;
        if (s->sessions) {
            p = &s->next;
            continue;
        }
        *p = s->next;
        snap_free(s);
    }
}

static uint64_t admit_batch(const struct config *c)
{
    int n = atomic_load_explicit(&g_workers_running, memory_order_relaxed);
    return lease_batch(c->max_sessions, n > 0 ? (unsigned)n : 1);
}

int worker_admit(struct worker *w)
{
    const struct config *c = w->env.cfg;
    if (!lease_take(&admitted, &w->admit_lease, 1, c->max_sessions, admit_batch(c)))
        return 0;
    stat_inc(&w->admitted);
    w->snaps->sessions++;
    return 1;
}

/* A session has ended: its slot under --max-sessions goes back, and its
 * snapshot when it was the last to use an old one. */
static void on_session_ended(struct wenv *env, struct config *cfg)
{
    struct worker *w = container_of(env, struct worker, env);
    struct snap *s = w->snaps;
    lease_give(&admitted, &w->admit_lease, 1, admit_batch(env->cfg));
    stat_add(&w->admitted, (uint64_t)-1);
    while (s->cfg != cfg)
        s = s->next;
    s->sessions--;
    if (!s->sessions && s != w->snaps)
        snap_drop_unused(w);
}

static void on_accept(struct loop_io *io, unsigned events);

/* Starts a connection this worker accepted or was handed, holding one
 * descriptor of the budget, if --max-sessions lets it. */
static void start_here(struct worker *w, int fd, const union addr_any *peer,
                       const struct listen_spec *spec, unsigned slot)
{
    if (!worker_admit(w)) {
        stat_inc(&w->env.stats.refused_limit);
        log_debug("worker %d: session limit %llu reached, closing new connection", w->env.id,
                  (unsigned long long)w->env.cfg->max_sessions);
        close(fd);
        fdbudget_give(1);
        return;
    }
    stat_inc(&w->env.stats.listener_conns[slot]);
    session_start(&w->env, fd, peer, spec, slot);
}

static uint64_t load_of(struct worker *w)
{
    return stat_get(&w->admitted) + atomic_load_explicit(&w->incoming, memory_order_relaxed);
}

/* Where a new connection should start. The kernel's SO_REUSEPORT hash
 * spreads connections evenly only on average: 8 long downloads often split
 * 6/2, and the 6 then share one worker's time while the other idles. A
 * session never moves once started, so the balance is kept where sessions
 * start: a worker running more sessions than the next of the others in
 * turn, by more than an eighth of its own (a busy server's counts wobble;
 * evening out every wobble would cost a hand-off per accept), hands the new
 * connection over. Comparing with one other worker, not all, keeps this
 * O(1) at any worker count and still evens the load out. */
static struct worker *lighter(struct worker *w)
{
    if (w->ngroup < 2)
        return w;
    struct worker *o = w->group[w->turn++ % (unsigned)w->ngroup];
    if (o == w)
        o = w->group[w->turn++ % (unsigned)w->ngroup];
    uint64_t mine = load_of(w);
    if (mine <= load_of(o) + mine / 8 || atomic_load(&o->draining))
        return w;
    return o;
}

static void on_handoff(struct mail *m)
{
    struct handoff *h = container_of(m, struct handoff, mail);
    struct worker *w = h->to;
    /* Draining began after the hand-off: like a connection still queued
     * on a listener that closes. */
    if (atomic_load(&w->draining)) {
        close(h->fd);
        fdbudget_give(1);
    } else {
        start_here(w, h->fd, &h->peer, &h->spec, h->slot);
    }
    atomic_fetch_sub(&w->incoming, 1);
    free(h);
}

/* Posts the connection to worker to. Returns 0, or -1 when it stays here. */
static int hand_off(struct worker *to, int fd, const union addr_any *peer,
                    const struct listener *ln)
{
    struct handoff *h = malloc(sizeof *h);
    if (!h)
        return -1;
    h->to = to;
    h->fd = fd;
    h->slot = ln->slot;
    h->peer = *peer;
    h->spec = ln->spec;
    /* Counted before posting: a worker that begins to drain now keeps its
     * loop running until this connection has been taken and closed. */
    atomic_fetch_add(&to->incoming, 1);
    mailbox_post(&to->mbox, &h->mail, on_handoff);
    return 0;
}

static void on_accept_pause_end(struct loop_timer *t)
{
    struct worker *w = container_of(t, struct worker, accept_pause);
    for (size_t i = 0; i < CONFIG_MAX_LISTEN; i++)
        if (w->listeners[i].io.fd >= 0)
            on_accept(&w->listeners[i].io, LOOP_READ);
}

/* Out of fds: stop accepting for a moment instead of spinning on a queue
 * that cannot shrink. The pending connections wait in the backlog. */
static void pause_accepting(struct worker *w, int err)
{
    if (!w->emfile_logged) {
        log_warn("worker %d: accept: %s; pausing accepts for %d ms", w->env.id, strerror(err),
                 ACCEPT_PAUSE_MS);
        w->emfile_logged = 1;
    }
    if (!loop_timer_armed(&w->accept_pause))
        loop_timer_arm(w->env.loop, &w->accept_pause, ACCEPT_PAUSE_MS, on_accept_pause_end);
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
        int fd = net_accept(io->fd, &peer);
        if (fd < 0) {
            if (errno == ECONNABORTED)
                continue;
            if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM)
                pause_accepting(w, errno);
            else if (errno != EAGAIN)
                log_error("worker %d: accept: %s", w->env.id, strerror(errno));
            return;
        }
        w->emfile_logged = 0;
        /* Over budget: closed at once rather than left to wait in the
         * queue for descriptors that other sessions hold. */
        if (!fdbudget_take(1, FDB_CLIENT)) {
            stat_inc(&w->env.stats.refused_limit);
            log_debug("worker %d: out of descriptor budget, closing new connection", w->env.id);
            close(fd);
            continue;
        }
        struct worker *to = lighter(w);
        if (to == w || hand_off(to, fd, &peer, ln) < 0)
            start_here(w, fd, &peer, &ln->spec, ln->slot);
        else
            stat_inc(&w->env.stats.handed_off);
    }
    /* The batch ended with connections possibly still queued: no new edge
     * will come for them, so look again after this round. */
    if (!loop_timer_armed(&w->accept_pause))
        loop_timer_arm(w->env.loop, &w->accept_pause, 0, on_accept_pause_end);
}

/* Takes over a listening socket into a free slot. Returns 0 or -1. */
static int adopt_listener(struct worker *w, const struct worker_listen *l)
{
    for (size_t i = 0; i < CONFIG_MAX_LISTEN; i++) {
        struct listener *ln = &w->listeners[i];
        if (ln->io.fd >= 0)
            continue;
        ln->w = w;
        ln->spec = l->spec;
        ln->slot = lslots_get(&l->spec.addr);
        return loop_io_add(w->env.loop, &ln->io, l->fd, LOOP_READ, on_accept);
    }
    errno = EMFILE;
    return -1;
}

static void close_listener(struct worker *w, struct listener *ln)
{
    int fd = ln->io.fd;
    loop_io_del(w->env.loop, &ln->io);
    close(fd);
    ln->io.fd = -1;
}

static void close_listeners(struct worker *w)
{
    for (size_t i = 0; i < CONFIG_MAX_LISTEN; i++)
        if (w->listeners[i].io.fd >= 0)
            close_listener(w, &w->listeners[i]);
}

struct worker *worker_new(int id, struct config *cfg, struct addr_list *self,
                          const struct worker_listen *ls, size_t n, char *err, size_t errlen)
{
    struct worker *w = calloc(1, sizeof *w);
    size_t i = 0; /* ls[i..n) are not adopted yet: closed here on failure */
    if (!w) {
        snprintf(err, errlen, "worker %d: out of memory", id);
        for (i = 0; i < n; i++)
            close(ls[i].fd);
        return NULL;
    }
    for (size_t k = 0; k < CONFIG_MAX_LISTEN; k++)
        w->listeners[k].io.fd = -1;
    w->env.id = id;
    w->env.ended = on_session_ended;
    w->env.self = addr_list_ref(self);
    bufpool_init(&w->env.pool, POOL_MAX_FREE);
    if (!(w->snaps = snap_new(cfg))) {
        snprintf(err, errlen, "worker %d: out of memory", id);
        goto fail;
    }
    w->env.cfg = w->snaps->cfg;
    if (!(w->env.loop = loop_new()) || mailbox_init(&w->mbox, w->env.loop) < 0) {
        snprintf(err, errlen, "worker %d: epoll/eventfd: %s", id, strerror(errno));
        goto fail;
    }
    if (!(w->env.resolver = resolver_new(w->env.loop, err, errlen)))
        goto fail;
    if (!(w->env.auth_cache = auth_cache_new(cfg->auth_cache_ttl_ms, w->env.loop, &w->mbox))) {
        snprintf(err, errlen, "worker %d: auth cache: out of memory", id);
        goto fail;
    }
    for (i = 0; i < n; i++)
        if (adopt_listener(w, &ls[i]) < 0) {
            snprintf(err, errlen, "worker %d: epoll_ctl: %s", id, strerror(errno));
            goto fail;
        }
    return w;
fail:
    for (; i < n; i++)
        close(ls[i].fd);
    worker_free(w);
    return NULL;
}

static void on_reload(struct mail *m)
{
    struct worker_msg *msg = (struct worker_msg *)m;
    struct worker *w = msg->w;
    size_t i, j;
    if (w->draining) {
        for (j = 0; j < msg->n; j++) {
            int kept = 0;
            for (i = 0; i < CONFIG_MAX_LISTEN; i++)
                kept |= w->listeners[i].io.fd == msg->ls[j].fd;
            if (!kept)
                close(msg->ls[j].fd);
        }
        snap_free(msg->snap);
        free(msg);
        atomic_fetch_add(&w->reloads_applied, 1);
        return;
    }
    /* Keep what is still wanted (its spec may have changed), close the rest. */
    for (i = 0; i < CONFIG_MAX_LISTEN; i++) {
        struct listener *ln = &w->listeners[i];
        if (ln->io.fd < 0)
            continue;
        for (j = 0; j < msg->n && msg->ls[j].fd != ln->io.fd; j++)
            ;
        if (j == msg->n)
            close_listener(w, ln);
        else
            ln->spec = msg->ls[j].spec;
    }
    for (j = 0; j < msg->n; j++) {
        int have = 0;
        for (i = 0; i < CONFIG_MAX_LISTEN; i++)
            have |= w->listeners[i].io.fd == msg->ls[j].fd;
        if (!have && adopt_listener(w, &msg->ls[j]) < 0) {
            log_error("worker %d: reload: cannot add a listener: %s", w->env.id, strerror(errno));
            close(msg->ls[j].fd);
        }
    }
    msg->snap->next = w->snaps;
    w->snaps = msg->snap;
    w->env.cfg = w->snaps->cfg;
    for (struct session *s = w->env.sessions.head, *next; s; s = next) {
        next = s->next;
        session_recheck_user(s, w->env.cfg);
    }
    snap_drop_unused(w);
    free(msg);
    atomic_fetch_add(&w->reloads_applied, 1);
    /* Connections may have queued on new sockets before they were watched. */
    if (!loop_timer_armed(&w->accept_pause))
        loop_timer_arm(w->env.loop, &w->accept_pause, 0, on_accept_pause_end);
}

int worker_reload(struct worker *w, struct config *cfg, const struct worker_listen *ls, size_t n)
{
    struct worker_msg *m = calloc(1, sizeof *m);
    if (!m || !(m->snap = snap_new(cfg))) {
        free(m);
        return -1;
    }
    m->w = w;
    m->n = n;
    memcpy(m->ls, ls, n * sizeof *ls);
    atomic_fetch_add(&w->reloads_posted, 1);
    mailbox_post(&w->mbox, &m->mail, on_reload);
    return 0;
}

int worker_reload_pending(struct worker *w)
{
    return atomic_load(&w->reloads_applied) != atomic_load(&w->reloads_posted);
}

static void on_self(struct mail *m)
{
    struct worker_msg *msg = (struct worker_msg *)m;
    addr_list_unref(msg->w->env.self);
    msg->w->env.self = msg->self;
    free(msg);
}

int worker_set_self(struct worker *w, struct addr_list *self)
{
    struct worker_msg *m = calloc(1, sizeof *m);
    if (!m)
        return -1;
    m->w = w;
    m->self = addr_list_ref(self);
    mailbox_post(&w->mbox, &m->mail, on_self);
    return 0;
}

static void on_drain_deadline(struct loop_timer *t)
{
    struct worker *w = container_of(t, struct worker, drain_deadline);
    if (w->env.sessions.n)
        log_info("worker %d: grace period over, closing %zu session%s", w->env.id,
                 w->env.sessions.n, log_s(w->env.sessions.n));
    while (w->env.sessions.head)
        session_fail(w->env.sessions.head, "server shutting down: shutdown-grace over");
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
    loop_timer_cancel(w->env.loop, &w->accept_pause);
    loop_timer_arm(w->env.loop, &w->drain_deadline, w->env.cfg->shutdown_grace_ms,
                   on_drain_deadline);
}

void worker_drain(struct worker *w)
{
    struct worker_msg *m = calloc(1, sizeof *m);
    if (!m) {
        log_error("worker %d: cannot send drain message: out of memory", w->env.id);
        return;
    }
    m->w = w;
    mailbox_post(&w->mbox, &m->mail, on_drain);
}

/* Lists or closes this worker's sessions that the question is about. */
static void on_sessq(struct mail *m)
{
    struct sessq_part *p = container_of(m, struct sessq_part, mail);
    struct worker *w = p->ctx;
    FILE *f = p->q->close ? NULL : open_memstream(&p->json, &p->len);
    int first = 1;
    for (struct session *s = w->env.sessions.head, *next; s; s = next) {
        next = s->next;
        if (!sessq_match(p->q, s->id, s->user))
            continue;
        if (p->q->close) {
            session_fail(s, "closed by the operator");
            p->closed++;
        } else if (f) {
            if (!first)
                fputc(',', f);
            session_describe(s, f);
            first = 0;
        }
    }
    if (f && fclose(f) != 0) {
        free(p->json);
        p->json = NULL;
        p->len = 0;
    }
    sessq_done(p);
}

void worker_sessq(struct worker *w, struct sessq_part *p)
{
    p->ctx = w;
    mailbox_post(&w->mbox, &p->mail, on_sessq);
}

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    while (!atomic_load(&w->draining) || w->env.sessions.n > 0 || atomic_load(&w->incoming)) {
        if (loop_run_once(w->env.loop, -1) < 0) {
            log_error("worker %d: epoll_wait: %s", w->env.id, strerror(errno));
            break;
        }
    }
    atomic_fetch_sub(&g_workers_running, 1);
    return NULL;
}

void worker_group(struct worker *w, struct worker *const *all, int n)
{
    w->group = all;
    w->ngroup = n;
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
    if (w->env.loop) {
        while (w->env.sessions.head)
            session_close(w->env.sessions.head);
        auth_pool_release(w->env.auth_cache);
        close_listeners(w);
        resolver_free(w->env.resolver);
        /* Timers of 0 ms (deferred answers) and mail (auth results) may
         * still hold memory: let them run and free it. */
        loop_timer_cancel(w->env.loop, &w->accept_pause);
        loop_timer_cancel(w->env.loop, &w->drain_deadline);
        loop_run_once(w->env.loop, 0);
        if (w->mbox.io.fn)
            mailbox_destroy(&w->mbox, w->env.loop);
    }
    auth_cache_free(w->env.auth_cache);
    bufpool_destroy(&w->env.pool);
    lease_return(&admitted, &w->admit_lease);
    while (w->snaps) {
        struct snap *s = w->snaps;
        w->snaps = s->next;
        snap_free(s);
    }
    addr_list_unref(w->env.self);
    loop_free(w->env.loop);
    free(w);
}
