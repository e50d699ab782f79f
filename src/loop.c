/* Event loop on epoll (edge-triggered) with a binary min-heap of timers. */
#include "loop.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <time.h>
#include <unistd.h>

#define LOOP_BATCH 256

struct loop {
    int epfd;
    uint64_t now;
    struct epoll_event events[LOOP_BATCH];
    int nevents, cur;                      /* the batch being dispatched */
    struct loop_defer *deferred, *running; /* queued; being run this round */
    struct loop_timer **heap;              /* 1-based */
    uint32_t heap_len, heap_cap;
};

static uint64_t monotonic_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

struct loop *loop_new(void)
{
    struct loop *l = calloc(1, sizeof *l);
    if (!l)
        return NULL;
    l->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (l->epfd < 0) {
        free(l);
        return NULL;
    }
    l->now = monotonic_ms();
    return l;
}

void loop_free(struct loop *l)
{
    if (!l)
        return;
    close(l->epfd);
    free(l->heap);
    free(l);
}

uint64_t loop_now(const struct loop *l)
{
    return l->now;
}

static uint32_t to_epoll(unsigned mask)
{
    uint32_t ev = (mask & LOOP_LEVEL) ? EPOLLRDHUP : EPOLLET | EPOLLRDHUP;
    if (mask & LOOP_READ)
        ev |= EPOLLIN;
    if (mask & LOOP_WRITE)
        ev |= EPOLLOUT;
    return ev;
}

int loop_io_add(struct loop *l, struct loop_io *io, int fd, unsigned mask, loop_io_fn fn)
{
    struct epoll_event ev = {.events = to_epoll(mask), .data.ptr = io};
    io->fn = fn;
    io->mask = mask;
    if (epoll_ctl(l->epfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
        io->fd = -1; /* never held: the caller closes fd */
        return -1;
    }
    io->fd = fd;
    return 0;
}

int loop_io_set(struct loop *l, struct loop_io *io, unsigned mask)
{
    struct epoll_event ev = {.events = to_epoll(mask), .data.ptr = io};
    if (io->mask == mask)
        return 0;
    io->mask = mask;
    return epoll_ctl(l->epfd, EPOLL_CTL_MOD, io->fd, &ev);
}

static void forget_pending(struct loop *l, struct loop_io *io)
{
    for (int i = l->cur + 1; i < l->nevents; i++)
        if (l->events[i].data.ptr == io)
            l->events[i].data.ptr = NULL;
}

int loop_io_move(struct loop *l, struct loop_io *from, struct loop_io *to, unsigned mask,
                 loop_io_fn fn)
{
    struct epoll_event ev = {.events = to_epoll(mask), .data.ptr = to};
    forget_pending(l, from);
    to->fn = fn;
    to->fd = from->fd;
    to->mask = mask;
    from->fd = -1;
    return epoll_ctl(l->epfd, EPOLL_CTL_MOD, to->fd, &ev);
}

void loop_io_close(struct loop *l, struct loop_io *io)
{
    forget_pending(l, io);
    close(io->fd);
    io->fd = -1;
}

void loop_io_del(struct loop *l, struct loop_io *io)
{
    /* The owner may free io right after this returns; forget any event
     * for it still waiting in the current batch. */
    forget_pending(l, io);
    epoll_ctl(l->epfd, EPOLL_CTL_DEL, io->fd, NULL);
    io->fd = -1;
}

/* ---- timers: min-heap on `when` ---- */

static void heap_set(struct loop *l, uint32_t i, struct loop_timer *t)
{
    l->heap[i] = t;
    t->heap_idx = i;
}

static void heap_up(struct loop *l, uint32_t i)
{
    struct loop_timer *t = l->heap[i];
    while (i > 1 && l->heap[i / 2]->when > t->when) {
        heap_set(l, i, l->heap[i / 2]);
        i /= 2;
    }
    heap_set(l, i, t);
}

static void heap_down(struct loop *l, uint32_t i)
{
    struct loop_timer *t = l->heap[i];
    for (;;) {
        uint32_t c = 2 * i;
        if (c > l->heap_len)
            break;
        if (c < l->heap_len && l->heap[c + 1]->when < l->heap[c]->when)
            c++;
        if (l->heap[c]->when >= t->when)
            break;
        heap_set(l, i, l->heap[c]);
        i = c;
    }
    heap_set(l, i, t);
}

void loop_timer_cancel(struct loop *l, struct loop_timer *t)
{
    uint32_t i = t->heap_idx;
    if (i == 0)
        return;
    t->heap_idx = 0;
    struct loop_timer *last = l->heap[l->heap_len--];
    if (i > l->heap_len)
        return;
    heap_set(l, i, last);
    heap_up(l, i);
    heap_down(l, last->heap_idx);
}

int loop_timer_arm(struct loop *l, struct loop_timer *t, uint64_t ms, loop_timer_fn fn)
{
    loop_timer_cancel(l, t);
    if (l->heap_len + 1 >= l->heap_cap) {
        uint32_t cap = l->heap_cap ? l->heap_cap * 2 : 1024;
        struct loop_timer **h = realloc(l->heap, cap * sizeof *h);
        if (!h) {
            errno = ENOMEM;
            return -1;
        }
        l->heap = h;
        l->heap_cap = cap;
    }
    t->fn = fn;
    t->when = l->now + ms;
    l->heap_len++;
    heap_set(l, l->heap_len, t);
    heap_up(l, l->heap_len);
    return 0;
}

void loop_defer(struct loop *l, struct loop_defer *d, loop_defer_fn fn)
{
    if (d->queued)
        return;
    d->fn = fn;
    d->queued = 1;
    d->next = l->deferred;
    l->deferred = d;
}

static int unlink_from(struct loop_defer **pp, struct loop_defer *d)
{
    while (*pp && *pp != d)
        pp = &(*pp)->next;
    if (!*pp)
        return 0;
    *pp = d->next;
    return 1;
}

void loop_defer_cancel(struct loop *l, struct loop_defer *d)
{
    if (!d->queued)
        return;
    if (!unlink_from(&l->deferred, d))
        unlink_from(&l->running, d);
    d->queued = 0;
}

/* Runs what was queued before this round; what callbacks queue now waits
 * for the next round (a tunnel that re-queues itself cannot spin here).
 * Items are taken one at a time so a callback may cancel any other. */
static void run_deferred(struct loop *l)
{
    l->running = l->deferred;
    l->deferred = NULL;
    while (l->running) {
        struct loop_defer *d = l->running;
        l->running = d->next;
        d->queued = 0;
        d->fn(d);
    }
}

static int next_timeout(struct loop *l, int max_wait_ms)
{
    if (l->deferred)
        return 0;
    if (l->heap_len == 0)
        return max_wait_ms;
    uint64_t when = l->heap[1]->when;
    uint64_t left = when <= l->now ? 0 : when - l->now;
    int wait = left > INT_MAX ? INT_MAX : (int)left;
    return (max_wait_ms >= 0 && max_wait_ms < wait) ? max_wait_ms : wait;
}

static void run_timers(struct loop *l)
{
    while (l->heap_len > 0 && l->heap[1]->when <= l->now) {
        struct loop_timer *t = l->heap[1];
        loop_timer_cancel(l, t);
        t->fn(t);
    }
}

static unsigned from_epoll(uint32_t ev)
{
    unsigned m = 0;
    if (ev & EPOLLIN)
        m |= LOOP_READ;
    if (ev & EPOLLOUT)
        m |= LOOP_WRITE;
    if (ev & EPOLLRDHUP)
        m |= LOOP_RDHUP | LOOP_READ;
    if (ev & (EPOLLHUP | EPOLLERR))
        m |= LOOP_HUP | LOOP_READ | LOOP_WRITE;
    return m;
}

int loop_run_once(struct loop *l, int max_wait_ms)
{
    int n = epoll_wait(l->epfd, l->events, LOOP_BATCH, next_timeout(l, max_wait_ms));
    if (n < 0 && errno != EINTR)
        return -1;
    l->now = monotonic_ms();
    l->nevents = n > 0 ? n : 0;
    for (l->cur = 0; l->cur < l->nevents; l->cur++) {
        struct loop_io *io = l->events[l->cur].data.ptr;
        if (io)
            io->fn(io, from_epoll(l->events[l->cur].events));
    }
    l->nevents = 0;
    run_timers(l);
    run_deferred(l);
    return n > 0 ? n : 0;
}
