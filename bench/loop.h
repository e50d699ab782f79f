/* Minimal epoll dispatch: each registered fd carries a handler. */
#ifndef BENCH_LOOP_H
#define BENCH_LOOP_H

#include <stdint.h>

struct handler {
    void (*on_event)(struct handler *h, uint32_t events);
    int fd;
    uint32_t events; /* interest currently registered, 0 if none */
};

/* Register h->fd with the given interest, or change it; no syscall when the
 * interest is unchanged. Returns 0 or -1 with errno set. */
int loop_watch(int epfd, struct handler *h, uint32_t events);

/* Stop watching h->fd, which stays open. Returns 0 or -1 with errno set. */
int loop_unwatch(int epfd, struct handler *h);

/* Forget h after the caller closed h->fd (closing drops it from epoll). */
void loop_forget(struct handler *h);

/* Wait up to timeout_ms and dispatch ready handlers. Returns the number of
 * events dispatched or -1 with errno set (EINTR is reported as 0). */
int loop_poll(int epfd, int timeout_ms);

/* Monotonic clock in seconds and nanoseconds. */
double now_s(void);
uint64_t now_ns(void);

/* Sleep until monotonic time t (seconds). */
void sleep_until(double t);

#endif
