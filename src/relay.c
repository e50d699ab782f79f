#include "relay.h"

#include <errno.h>
#include <stdint.h>
#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

void relay_note(struct relay_side *s, unsigned events)
{
    if (events & LOOP_READ)
        s->readable = 1;
    if (events & LOOP_RDHUP)
        s->rdhup = 1;
    if (events & LOOP_WRITE)
        s->writable = 1;
}

unsigned relay_interest(const struct relay *r, const struct relay_side *s)
{
    const struct relay_dir *d = s == &r->client ? &r->up : &r->down;
    const struct relay_side *dst = s == &r->client ? &r->target : &r->client;
    /* Until the destination drains, each arrival at the source would wake
     * the loop for a write that fails again: against a fast sender that
     * was a wake-up, an epoll_wait and a failed splice per segment. */
    if (d->off < d->len && !dst->writable)
        return LOOP_WRITE;
    return LOOP_READ | LOOP_WRITE;
}

/* Thousandths of a byte per byte. */
#define MILLI 1000
/* A refill never covers more than this: longer pauses only fill the burst. */
#define REFILL_MAX_MS 60000

/* The burst, in thousandths of a byte: a quarter second, at least a packet.
 * Bounded far below INT64_MAX so that a few concurrent refills of a full
 * bucket cannot overflow it. */
static int64_t bucket_cap(uint64_t rate)
{
    uint64_t cap = rate / 4 > 1500 ? rate / 4 : 1500;
    return cap < INT64_MAX / 8 / MILLI ? (int64_t)(cap * MILLI) : INT64_MAX / 8;
}

void relay_bucket_init(struct relay_bucket *b, uint64_t rate, uint64_t now_ms)
{
    atomic_init(&b->rate, rate);
    atomic_init(&b->tokens, bucket_cap(rate));
    atomic_init(&b->last_ms, now_ms);
}

void relay_bucket_set_rate(struct relay_bucket *b, uint64_t rate)
{
    atomic_store_explicit(&b->rate, rate, memory_order_relaxed);
}

/* Adds the tokens earned since the last refill. Whoever moves last_ms
 * forward adds for that interval, so concurrent refills never count a
 * millisecond twice. */
static void bucket_refill(struct relay_bucket *b, uint64_t now_ms)
{
    uint64_t last = atomic_load_explicit(&b->last_ms, memory_order_relaxed);
    if (now_ms <= last || !atomic_compare_exchange_strong(&b->last_ms, &last, now_ms))
        return;
    uint64_t rate = atomic_load_explicit(&b->rate, memory_order_relaxed);
    uint64_t ms = now_ms - last < REFILL_MAX_MS ? now_ms - last : REFILL_MAX_MS;
    int64_t cap = bucket_cap(rate), add; /* ms * rate: thousandths of a byte */
    if (ms * rate / ms != rate || ms * rate > (uint64_t)cap)
        add = cap;
    else
        add = (int64_t)(ms * rate);
    int64_t t = atomic_fetch_add(&b->tokens, add) + add;
    while (t > cap && !atomic_compare_exchange_weak(&b->tokens, &t, cap))
        ;
}

size_t relay_bucket_allowance(struct relay_bucket *b, uint64_t now_ms)
{
    if (!b)
        return SIZE_MAX;
    bucket_refill(b, now_ms);
    int64_t t = atomic_load_explicit(&b->tokens, memory_order_relaxed);
    return t > 0 ? (size_t)(t / MILLI) : 0;
}

/* Bytes wait in [off, len) of the direction's buffer, or of its pipe (off
 * counts what left it): the two paths differ only in the syscall. */
static ssize_t write_out(struct relay_dir *d, int fd)
{
    if (d->pipe)
        return splice(d->pipe->r, NULL, fd, NULL, d->len - d->off,
                      SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
    return send(fd, d->buf + d->off, d->len - d->off, MSG_NOSIGNAL);
}

static ssize_t read_in(struct relay_dir *d, int fd, size_t max)
{
    if (d->pipe)
        return splice(fd, NULL, d->pipe->w, NULL, max, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
    return read(fd, d->buf, max);
}

/* Writes what waits. Returns 1 when nothing is left, 0 when the destination
 * is full, -1 on error. */
/* What a write to dst that returned n means: n, 0 when dst is full (it is
 * no longer writable), -1 on error (errno in *err). */
static ssize_t wrote(struct relay_side *dst, ssize_t n, int *err)
{
    if (n >= 0)
        return n;
    if (errno == EAGAIN) {
        dst->writable = 0;
        return 0;
    }
    *err = errno;
    return -1;
}

/* What a read of at most max bytes from src that returned n means: n, 0
 * when there is nothing now or at EOF (src->eof), -1 on error. */
static ssize_t got(struct relay_side *src, ssize_t n, size_t max, int *err)
{
    if (n > 0) {
        /* A short read drained the socket; a later arrival raises a new
         * edge. After a FIN keep reading: the EOF has no edge of its own. */
        if ((size_t)n < max && !src->rdhup)
            src->readable = 0;
        return n;
    }
    if (n == 0)
        src->eof = 1;
    else if (errno != EAGAIN) {
        *err = errno;
        return -1;
    }
    src->readable = 0;
    return 0;
}

static int flush(struct relay_dir *d, struct relay_side *dst, int *err)
{
    while (d->off < d->len) {
        ssize_t n;
        while ((n = write_out(d, dst->io.fd)) < 0 && errno == EINTR)
            ;
        if ((n = wrote(dst, n, err)) <= 0)
            return (int)n;
        d->off += (uint32_t)n;
        d->bytes += (uint64_t)n;
    }
    return 1;
}

void relay_bucket_charge(struct relay_bucket *b, size_t n)
{
    if (b)
        atomic_fetch_sub(&b->tokens, (int64_t)n * MILLI);
}

/* Reads at most `max` bytes into the empty buffer or pipe. Returns 1 when
 * bytes arrived, 0 when there is nothing to read now or EOF was seen, -1 on
 * error. */
static int fill(struct relay_dir *d, struct relay_side *src, size_t max, int *err)
{
    ssize_t n;
    while ((n = read_in(d, src->io.fd, max)) < 0 && errno == EINTR)
        ;
    if ((n = got(src, n, max, err)) <= 0)
        return (int)n;
    relay_bucket_charge(d->bucket, (size_t)n);
    d->off = 0;
    d->len = (uint32_t)n;
    return 1;
}

/* Gives back what the direction holds while idle. */
static void idle_dir(struct relay_dir *d, struct bufpool *pool)
{
    bufpool_put(pool, d->buf);
    bufpool_put_pipe(pool, d->pipe, d->pipe && d->off < d->len);
    d->buf = NULL;
    d->pipe = NULL;
    d->off = d->len = 0;
}

/* Takes the buffer or, once the direction is a bulk one, the pipe to read
 * into; returns how much one read may take, or 0 (out of memory). */
static size_t take_room(struct relay_dir *d, struct bufpool *pool)
{
    /* No pipe to be had (out of fds): stay on the buffer path. */
    if (d->bytes >= RELAY_SPLICE_AFTER && (d->pipe || (d->pipe = bufpool_get_pipe(pool)))) {
        bufpool_put(pool, d->buf); /* empty here: flushed before reading */
        d->buf = NULL;
        return d->pipe->size; /* more would read short and look drained */
    }
    if (!d->buf && !(d->buf = bufpool_get(pool)))
        return 0;
    return BUFPOOL_SIZE;
}

/* One direction. Returns -1 on error, else RELAY_MOVED / RELAY_MORE bits. */
static int pump_dir(struct relay_dir *d, const struct relay_dir *other, struct relay_side *src,
                    struct relay_side *dst, struct bufpool *pool, uint64_t now_ms, int *err)
{
    int moved = 0;
    size_t budget = RELAY_BUDGET; /* bytes this call may read */
    for (;;) {
        int rc = flush(d, dst, err);
        if (rc <= 0)
            return rc < 0 ? -1 : moved;
        if (budget == 0 && src->readable && !src->eof)
            return moved | RELAY_MORE;
        if (src->eof || !src->readable) {
            idle_dir(d, pool);
            if (src->eof && !d->shut) {
                d->shut = 1;
                /* The last direction to end needs no shutdown: both sockets
                 * are closed next, which sends the FIN. The peer may already
                 * be gone; the other direction decides. */
                if (!other->shut)
                    shutdown(dst->io.fd, SHUT_WR);
            }
            return moved;
        }
        size_t max = relay_bucket_allowance(d->bucket, now_ms);
        if (max > budget)
            max = budget;
        if (max == 0) {
            idle_dir(d, pool); /* flushed above: nothing to hold while waiting */
            return moved | RELAY_THROTTLED;
        }
        size_t room = take_room(d, pool);
        if (room == 0) {
            *err = ENOMEM;
            return -1;
        }
        rc = fill(d, src, max < room ? max : room, err);
        if (rc < 0)
            return -1;
        if (rc > 0) {
            moved = RELAY_MOVED;
            budget -= d->len < budget ? d->len : budget;
        }
    }
}

enum result relay_pump(struct relay *r, struct bufpool *pool, uint64_t now_ms, unsigned *flags,
                       int *err)
{
    *flags = 0;
    int up = pump_dir(&r->up, &r->down, &r->client, &r->target, pool, now_ms, err);
    if (up < 0)
        return RES_ERROR;
    int down = pump_dir(&r->down, &r->up, &r->target, &r->client, pool, now_ms, err);
    if (down < 0)
        return RES_ERROR;
    *flags = (unsigned)(up | down);
    return (r->up.shut && r->down.shut) ? RES_DONE : RES_AGAIN;
}

long relay_side_read(struct relay_side *s, uint8_t *buf, size_t max, int *err)
{
    ssize_t n;
    while ((n = read(s->io.fd, buf, max)) < 0 && errno == EINTR)
        ;
    return got(s, n, max, err);
}

long relay_side_write(struct relay_side *s, const uint8_t *buf, size_t len, int *err)
{
    ssize_t n;
    while ((n = send(s->io.fd, buf, len, MSG_NOSIGNAL)) < 0 && errno == EINTR)
        ;
    return wrote(s, n, err);
}

void relay_release(struct relay *r, struct bufpool *pool)
{
    idle_dir(&r->up, pool);
    idle_dir(&r->down, pool);
}
