/* TCP relay between two connected sockets, edge-triggered.
 *
 * Each direction has at most one buffer (or, for bulk transfers, one pipe
 * to splice through), taken from the worker's pool when bytes arrive and
 * returned when they have all been written: a side is read only when its
 * peer has taken everything before (backpressure, flat memory). EOF one way becomes
 * shutdown(SHUT_WR) on the other while the reverse direction keeps flowing. */
#ifndef SOCKS5D_RELAY_H
#define SOCKS5D_RELAY_H

#include <stdatomic.h>
#include <stdint.h>

#include "bufpool.h"
#include "loop.h"
#include "result.h"

struct relay_side {
    struct loop_io io;
    uint8_t readable; /* may have bytes (or EOF) we have not read */
    uint8_t writable; /* may take bytes */
    uint8_t rdhup;    /* peer sent FIN: read until 0 */
    uint8_t eof;      /* read returned 0 */
};

/* Token bucket limiting one direction to `rate` bytes per second. One bucket
 * may be shared by tunnels on several workers (a user's limit), so every
 * field is atomic. Tokens count thousandths of a byte, so slow rates still
 * refill at millisecond steps; they go below zero when two workers read at
 * once, a debt that delays the next reads. */
struct relay_bucket {
    _Atomic int64_t tokens;
    _Atomic uint64_t rate, last_ms;
};

struct relay_dir {
    struct relay_bucket *bucket; /* NULL: unlimited */
    uint8_t *buf;
    struct relay_pipe *pipe; /* splice path, once the tunnel is a bulk one */
    uint32_t off, len;       /* bytes [off, len) of the buffer or pipe wait */
    uint8_t shut;            /* EOF passed on with shutdown(SHUT_WR) */
    uint64_t bytes;
};

struct relay {
    struct relay_side client, target;
    struct relay_dir up;   /* client -> target */
    struct relay_dir down; /* target -> client */
};

/* Reported through *flags: bytes were read; the read budget ran out while a
 * side was still readable (call again later: no new edge will come); a
 * direction is out of tokens (call again in a few ms). */
enum { RELAY_MOVED = 1, RELAY_MORE = 2, RELAY_THROTTLED = 4 };
/* Bytes read per direction per call: a bulk tunnel yields to the others
 * this often (the `fair` benchmark: ping-pong latency next to bulk). */
#ifndef RELAY_BUDGET
#define RELAY_BUDGET (512 * 1024)
#endif
/* A direction switches from read/write to splice after this many bytes:
 * small exchanges are cheaper with one copy than with the pipe's syscalls. */
#ifndef RELAY_SPLICE_AFTER
#define RELAY_SPLICE_AFTER (256 * 1024)
#endif

/* Records the events of one side (LOOP_* bits). */
void relay_note(struct relay_side *s, unsigned events);
/* The events worth watching on side `s` of r now (LOOP_* bits): always
 * writability, and readability unless what was read from s waits for a
 * full destination. */
unsigned relay_interest(const struct relay *r, const struct relay_side *s);
/* Moves what can be moved in both directions, up to RELAY_BUDGET bytes
 * each. Returns RES_DONE when both directions have ended, RES_ERROR on a
 * socket error (errno in *err), RES_AGAIN otherwise; *flags as above. */
enum result relay_pump(struct relay *r, struct bufpool *pool, uint64_t now_ms, unsigned *flags,
                       int *err);
/* Sets up b for `rate` bytes per second (a quarter second of burst). */
void relay_bucket_init(struct relay_bucket *b, uint64_t rate, uint64_t now_ms);
/* Changes the rate of a bucket that may be in use (a reload). Thread-safe. */
void relay_bucket_set_rate(struct relay_bucket *b, uint64_t rate);
/* For other pumps: the bytes a direction limited by b (NULL: unlimited)
 * may read now, and the charge for n bytes read. */
size_t relay_bucket_allowance(struct relay_bucket *b, uint64_t now_ms);
void relay_bucket_charge(struct relay_bucket *b, size_t n);
/* Socket I/O for other pumps (gss_relay.c) that keeps a side's edge flags
 * as relay_pump does. Read: bytes read (>0), 0 when nothing is there now or
 * at EOF (s->eof set), -1 on error (errno in *err). Write: bytes written, 0
 * when the socket is full, -1 on error. */
long relay_side_read(struct relay_side *s, uint8_t *buf, size_t max, int *err);
long relay_side_write(struct relay_side *s, const uint8_t *buf, size_t len, int *err);
/* Returns the buffers to the pool. */
void relay_release(struct relay *r, struct bufpool *pool);

#endif
