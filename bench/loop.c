#include "loop.h"

#include <errno.h>
#include <sys/epoll.h>
#include <time.h>

int loop_watch(int epfd, struct handler *h, uint32_t events)
{
    struct epoll_event ev = {.events = events, .data.ptr = h};
    int op = h->events ? EPOLL_CTL_MOD : EPOLL_CTL_ADD;
    if (h->events == events)
        return 0;
    if (epoll_ctl(epfd, op, h->fd, &ev) < 0)
        return -1;
    h->events = events;
    return 0;
}

int loop_unwatch(int epfd, struct handler *h)
{
    h->events = 0;
    return epoll_ctl(epfd, EPOLL_CTL_DEL, h->fd, NULL);
}

void loop_forget(struct handler *h)
{
    h->events = 0;
}

int loop_poll(int epfd, int timeout_ms)
{
    struct epoll_event evs[256];
    int n = epoll_wait(epfd, evs, 256, timeout_ms);
    if (n < 0)
        return errno == EINTR ? 0 : -1;
    for (int i = 0; i < n; i++) {
        struct handler *h = evs[i].data.ptr;
        h->on_event(h, evs[i].events);
    }
    return n;
}

uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

double now_s(void)
{
    return (double)now_ns() / 1e9;
}

void sleep_until(double t)
{
    struct timespec ts;
    ts.tv_sec = (time_t)t;
    ts.tv_nsec = (long)((t - (double)ts.tv_sec) * 1e9);
    /* Absolute sleep: EINTR just resumes towards the same deadline, and the
     * deadline bounds the loop. */
    while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR)
        ;
}
