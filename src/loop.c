/* Event loop on epoll (edge-triggered) with a binary min-heap of timers.
 * The kernel's registrations carry the fd, and the loop finds its owner in
 * an fd-indexed table: handing a connection to a new owner is a store, and
 * an event for a closed fd finds no owner. */
#include "loop.h"

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/resource.h>
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
    int replay; /* the event being dispatched moved to a new owner: give it to it too */
};

/* The owner of each registered fd, one table for every loop of the process:
 * a descriptor number is registered in one loop at a time, and only that
 * loop's thread reads or writes its slot (atomics, relaxed: a number one
 * thread closed may come back in another). Reserved once for the hard
 * descriptor limit, which the process never raises, whatever it is; only the
 * pages of numbers in use are touched, 8 bytes per descriptor. */
static _Atomic(struct loop_io *) *owners;
static uint32_t owners_cap;
static pthread_once_t owners_once = PTHREAD_ONCE_INIT;

static void owners_map(void)
{
    struct rlimit rl;
    uint32_t n = INT_MAX; /* descriptor numbers are ints */
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_max < n)
        n = (uint32_t)rl.rlim_max;
    void *p = mmap(NULL, (size_t)n * sizeof *owners, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p == MAP_FAILED)
        return;
    owners = p;
    owners_cap = n;
}

static struct loop_io *owner_of(int fd)
{
    return atomic_load_explicit(&owners[fd], memory_order_relaxed);
}

static void set_owner(int fd, struct loop_io *io)
{
    atomic_store_explicit(&owners[fd], io, memory_order_relaxed);
}

static uint64_t monotonic_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

struct loop *loop_new(void)
{
    struct loop *l;
    if (pthread_once(&owners_once, owners_map) != 0 || !owners) {
        errno = ENOMEM;
        return NULL;
    }
    l = calloc(1, sizeof *l);
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
    struct epoll_event ev = {.events = to_epoll(mask), .data.fd = fd};
    io->fn = fn;
    io->mask = mask;
    if (fd < 0 || (uint32_t)fd >= owners_cap) {
        io->fd = -1;
        errno = EMFILE;
        return -1;
    }
    if (epoll_ctl(l->epfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
        io->fd = -1; /* never held: the caller closes fd */
        return -1;
    }
    io->fd = fd;
    set_owner(fd, io);
    return 0;
}

int loop_io_set(struct loop *l, struct loop_io *io, unsigned mask)
{
    struct epoll_event ev = {.events = to_epoll(mask), .data.fd = io->fd};
    if (io->mask == mask)
        return 0;
    io->mask = mask;
    return epoll_ctl(l->epfd, EPOLL_CTL_MOD, io->fd, &ev);
}

static int dispatching(const struct loop *l, int fd)
{
    return l->cur < l->nevents && l->events[l->cur].data.fd == fd;
}

/* fd leaves the loop: neither an event for it still waiting in the current
 * batch nor the one being handled may reach whoever registers the same
 * number next. */
static void forget(struct loop *l, int fd)
{
    if (dispatching(l, fd))
        l->replay = 0;
    for (int i = l->cur; i < l->nevents; i++)
        if (l->events[i].data.fd == fd)
            l->events[i].data.fd = -1;
    if (fd >= 0 && (uint32_t)fd < owners_cap)
        set_owner(fd, NULL);
}

int loop_io_move(struct loop *l, struct loop_io *from, struct loop_io *to, unsigned mask,
                 loop_io_fn fn)
{
    struct epoll_event ev = {.events = to_epoll(mask), .data.fd = from->fd};
    int same = from->mask == mask;
    to->fn = fn;
    to->fd = from->fd;
    to->mask = mask;
    from->fd = -1;
    set_owner(to->fd, to);
    /* Moved while its event is being handled (a dial's winner handed to the
     * session): the same event goes to the new owner when `from`'s handler
     * returns, which tells it what the kernel would have on re-arming, one
     * epoll_ctl per connection less. */
    if (same && dispatching(l, to->fd)) {
        l->replay = 1;
        return 0;
    }
    return epoll_ctl(l->epfd, EPOLL_CTL_MOD, to->fd, &ev);
}

void loop_io_close(struct loop *l, struct loop_io *io)
{
    forget(l, io->fd);
    close(io->fd);
    io->fd = -1;
}

void loop_io_del(struct loop *l, struct loop_io *io)
{
    forget(l, io->fd);
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

/* The owner of fd handles the event; so does each owner it moves to while
 * handling it (bounded: every repeat needs another move). */
static void dispatch(struct loop *l, int fd, unsigned events)
{
    struct loop_io *io;
    if (fd < 0)
        return;
    l->replay = 1;
    while (l->replay && (io = owner_of(fd)) != NULL) {
        l->replay = 0;
        io->fn(io, events);
    }
    l->replay = 0;
}

int loop_run_once(struct loop *l, int max_wait_ms)
{
    int n = epoll_wait(l->epfd, l->events, LOOP_BATCH, next_timeout(l, max_wait_ms));
    if (n < 0 && errno != EINTR)
        return -1;
    l->now = monotonic_ms();
    l->nevents = n > 0 ? n : 0;
    for (l->cur = 0; l->cur < l->nevents; l->cur++)
        dispatch(l, l->events[l->cur].data.fd, from_epoll(l->events[l->cur].events));
    l->nevents = 0;
    run_timers(l);
    run_deferred(l);
    return n > 0 ? n : 0;
}
