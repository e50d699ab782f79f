#include "dial.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include "fdbudget.h"
#include "net.h"
#include "resolve.h"

struct attempt {
    struct loop_io io;
    struct dial *d;
    int live;
};

struct dial {
    struct loop *loop;
    dial_fn fn;
    void *owner;
    size_t n, next, active;
    int last_err;
    int has_out;
    struct net_out out;
    struct loop_timer stagger, deadline;
    union addr_any addrs[RESOLVE_MAX_ADDRS];
    struct attempt at[RESOLVE_MAX_ADDRS];
};

static void close_attempt(struct dial *d, struct attempt *a)
{
    loop_io_close(d->loop, &a->io);
    fdbudget_give(1);
    a->live = 0;
    d->active--;
}

static void dial_free(struct dial *d, struct attempt *keep)
{
    for (size_t i = 0; i < d->next; i++)
        if (d->at[i].live && &d->at[i] != keep)
            close_attempt(d, &d->at[i]);
    loop_timer_cancel(d->loop, &d->stagger);
    loop_timer_cancel(d->loop, &d->deadline);
    free(d);
}

static void finish(struct dial *d, struct attempt *winner, int err)
{
    dial_fn fn = d->fn;
    void *owner = d->owner;
    union addr_any peer;
    if (winner) {
        peer = d->addrs[winner - d->at];
        fn(owner, winner->io.fd, &winner->io, 0, &peer);
    } else {
        fn(owner, -1, NULL, err, NULL);
    }
    dial_free(d, winner);
}

static void on_connect(struct loop_io *io, unsigned events);
static void on_stagger(struct loop_timer *t);

/* A connecting socket charged to the budget, or -1 with errno set. */
static int open_attempt(struct dial *d, struct attempt *a, const union addr_any *to)
{
    int fd = net_connect_nb(to, d->has_out ? &d->out : NULL, NET_NODELAY | NET_BUDGET, NULL, 0);
    if (fd < 0)
        return -1;
    /* Interest in both directions from the start: the winner's
     * registration is handed to the session as it is. */
    if (loop_io_add(d->loop, &a->io, fd, LOOP_READ | LOOP_WRITE, on_connect) < 0) {
        net_close(fd, NET_BUDGET);
        return -1;
    }
    return fd;
}

/* Starts attempts until one is in flight or the list is exhausted. Out of
 * budget, it stops: the next address waits for an attempt to end. */
static void start_next(struct dial *d)
{
    while (d->next < d->n) {
        struct attempt *a = &d->at[d->next];
        if (open_attempt(d, a, &d->addrs[d->next]) < 0) {
            d->last_err = errno;
            if (errno == EMFILE)
                return;
            d->next++;
            continue;
        }
        d->next++;
        a->d = d;
        a->live = 1;
        d->active++;
        if (d->next < d->n)
            loop_timer_arm(d->loop, &d->stagger, DIAL_STAGGER_MS, on_stagger);
        return;
    }
}

static void on_stagger(struct loop_timer *t)
{
    start_next(container_of(t, struct dial, stagger));
}

static void on_deadline(struct loop_timer *t)
{
    finish(container_of(t, struct dial, deadline), NULL, ETIMEDOUT);
}

static void on_connect(struct loop_io *io, unsigned events)
{
    struct attempt *a = container_of(io, struct attempt, io);
    struct dial *d = a->d;
    int err = 0;
    socklen_t len = sizeof err;
    if (!(events & (LOOP_WRITE | LOOP_HUP)))
        return;
    /* Writable without an error flag means connected: no need to ask. */
    if ((events & LOOP_HUP) && getsockopt(io->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
        err = errno;
    if ((events & LOOP_HUP) && err == 0)
        err = ECONNRESET;
    if (err == 0) {
        finish(d, a, 0);
        return;
    }
    d->last_err = err;
    close_attempt(d, a);
    loop_timer_cancel(d->loop, &d->stagger);
    start_next(d);
    if (d->active == 0)
        finish(d, NULL, d->last_err);
}

struct dial *dial_start(struct loop *l, const union addr_any *addrs, size_t n,
                        const struct net_out *out, uint32_t timeout_ms, dial_fn fn, void *owner,
                        int *err)
{
    struct dial *d = calloc(1, sizeof *d);
    if (!d) {
        *err = ENOMEM;
        return NULL;
    }
    d->loop = l;
    d->fn = fn;
    d->owner = owner;
    d->n = n < RESOLVE_MAX_ADDRS ? n : RESOLVE_MAX_ADDRS;
    memcpy(d->addrs, addrs, d->n * sizeof *addrs);
    if (out != NULL) {
        d->has_out = 1;
        d->out = *out;
    }
    d->last_err = EHOSTUNREACH;
    start_next(d);
    if (d->active == 0 || loop_timer_arm(l, &d->deadline, timeout_ms, on_deadline) < 0) {
        *err = d->active ? ENOMEM : d->last_err;
        dial_free(d, NULL);
        return NULL;
    }
    return d;
}

void dial_cancel(struct dial *d)
{
    dial_free(d, NULL);
}
