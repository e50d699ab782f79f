/* A small event loop: file events and timers. Callers never see epoll.
 *
 * File events are edge-triggered: a handler is told when a descriptor becomes
 * readable or writable and must then read or write until EAGAIN (or remember
 * that it stopped early and come back). Interest is registered once per
 * descriptor; loop_io_set changes it and skips the syscall when nothing
 * changed. Timers are one-shot, kept in a min-heap; a handler re-arms itself. */
#ifndef SOCKS5D_LOOP_H
#define SOCKS5D_LOOP_H

#include <stddef.h>
#include <stdint.h>

/* The struct that embeds `ptr` as its `member`. */
#define container_of(ptr, type, member) ((type *)(void *)((char *)(ptr)-offsetof(type, member)))

struct loop;

/* LOOP_LEVEL asks for level-triggered events, for libraries (c-ares) that
 * do not promise to read until EAGAIN. */
enum { LOOP_READ = 1, LOOP_WRITE = 2, LOOP_LEVEL = 16 };
/* Extra bits passed to handlers: LOOP_RDHUP the peer will send no more
 * (reading returns 0 once the queue is drained); LOOP_HUP the connection is
 * dead both ways (reset or error). */
enum { LOOP_RDHUP = 4, LOOP_HUP = 8 };

struct loop_io;
typedef void (*loop_io_fn)(struct loop_io *io, unsigned events);

/* Embedded in its owner; recover the owner with container_of-style casts. */
struct loop_io {
    loop_io_fn fn;
    int fd;
    unsigned mask;
};

struct loop_timer;
typedef void (*loop_timer_fn)(struct loop_timer *t);

struct loop_timer {
    loop_timer_fn fn;
    uint64_t when;     /* ms, monotonic */
    uint32_t heap_idx; /* 0 = not armed */
};

/* Returns NULL on failure with errno set. */
struct loop *loop_new(void);
void loop_free(struct loop *l);

/* Descriptor ownership, the one rule every module follows:
 * - Before loop_io_add the fd belongs to whoever opened it.
 * - loop_io_add that succeeds hands the fd to `io`: from then on it is
 *   closed exactly once, by the owner of io, through loop_io_close (or
 *   loop_io_del followed by close), and io->fd reads -1 afterwards.
 * - loop_io_add that fails leaves io->fd at -1 and the fd with the caller,
 *   who closes it (nothing else will: io never held it).
 * - loop_io_move hands the fd from `from` to `to` whether or not the kernel
 *   took the new registration: on failure `to` owns it all the same and its
 *   owner closes it as usual (never the caller directly), before returning
 *   to the loop, since the kernel's registration may still name `from`.
 * Hence an owner's close path may always run `if (io->fd >= 0) close`, and
 * a descriptor is never closed twice. */

/* Registers fd with interest mask. Returns 0 or -1 with errno set (io->fd
 * is then -1 and the caller still owns fd). */
int loop_io_add(struct loop *l, struct loop_io *io, int fd, unsigned mask, loop_io_fn fn);
/* Changes interest; a no-op when unchanged. Returns 0 or -1 with errno set. */
int loop_io_set(struct loop *l, struct loop_io *io, unsigned mask);
/* Points fd's registration at `to` (a different owner) with a new mask and
 * handler; `from` is left unregistered. Returns 0 or -1 with errno set; in
 * both cases `to` owns the fd now (see above). From `from`'s own handler
 * with the mask unchanged it costs no syscall: `to` is then handed the same
 * event once that handler returns, as the kernel would report on re-arming. */
int loop_io_move(struct loop *l, struct loop_io *from, struct loop_io *to, unsigned mask,
                 loop_io_fn fn);
/* Points the next events of io at fn (the fd and interest stay): how an
 * owner moves a connection from one phase to the next. */
static inline void loop_io_handler(struct loop_io *io, loop_io_fn fn)
{
    io->fn = fn;
}
/* Forgets io and closes its fd, which also ends the registration: one
 * syscall instead of two. Only for fds never duplicated (a dup keeps the
 * registration alive after close). */
void loop_io_close(struct loop *l, struct loop_io *io);
/* Unregisters (the caller closes the fd afterwards). Safe from any handler:
 * events already collected for this io in the current round are dropped. */
void loop_io_del(struct loop *l, struct loop_io *io);

/* Arms (or re-arms) t to fire after ms milliseconds. Returns 0 or -1 (ENOMEM). */
int loop_timer_arm(struct loop *l, struct loop_timer *t, uint64_t ms, loop_timer_fn fn);
void loop_timer_cancel(struct loop *l, struct loop_timer *t);
static inline int loop_timer_armed(const struct loop_timer *t)
{
    return t->heap_idx != 0;
}

/* Work postponed to the end of this iteration (after the batch of events,
 * before waiting again): a handler that used its budget yields with it so
 * one busy tunnel cannot starve the others. */
struct loop_defer;
typedef void (*loop_defer_fn)(struct loop_defer *d);
struct loop_defer {
    loop_defer_fn fn;
    struct loop_defer *next;
    uint8_t queued;
};
void loop_defer(struct loop *l, struct loop_defer *d, loop_defer_fn fn);
void loop_defer_cancel(struct loop *l, struct loop_defer *d);

/* Cached monotonic time in ms, updated once per loop iteration. */
uint64_t loop_now(const struct loop *l);

/* Runs one iteration, waiting at most max_wait_ms (-1: until an event or a
 * timer). Returns the number of events handled or -1 on a fatal error. */
int loop_run_once(struct loop *l, int max_wait_ms);

#endif
