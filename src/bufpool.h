/* Per-worker pool of relay buffers: a session holds one only while bytes are
 * in flight, so an idle tunnel costs no buffer memory. Single-threaded. */
#ifndef SOCKS5D_BUFPOOL_H
#define SOCKS5D_BUFPOOL_H

#include <stddef.h>
#include <stdint.h>

#define BUFPOOL_SIZE (64 * 1024)
/* Handshake buffers: a PROXY v2 header (at most 1,040 bytes) plus the
 * largest greeting, RFC 1929 message and request (1,032) fit. */
#define BUFPOOL_SMALL 4096

struct freelist {
    void *head;
    size_t n, max, size;
};

/* A pipe for splice(2): bytes move socket -> pipe -> socket in the kernel. */
struct relay_pipe {
    int r, w;
    uint32_t size; /* bytes it holds, as the kernel granted */
    struct relay_pipe *next;
};

struct bufpool {
    struct freelist big, small;
    size_t max_free;
    size_t in_use; /* big buffers handed out */
    struct relay_pipe *free_pipes;
    size_t npipes;     /* idle pipes kept */
    unsigned pipe_off; /* get_pipe calls left that make no new pipe */
};

void bufpool_init(struct bufpool *p, size_t max_free);
void bufpool_destroy(struct bufpool *p);
/* Returns a BUFPOOL_SIZE buffer or NULL when memory is exhausted. */
uint8_t *bufpool_get(struct bufpool *p);
/* Accepts NULL. */
void bufpool_put(struct bufpool *p, uint8_t *buf);
/* The same for BUFPOOL_SMALL buffers, which are wiped when they come back
 * (they hold handshakes, credentials included): a reused one is all zeros. */
uint8_t *bufpool_get_small(struct bufpool *p);
void bufpool_put_small(struct bufpool *p, uint8_t *buf);
/* Returns an empty non-blocking pipe of BUFPOOL_PIPE_SIZE, or of
 * BUFPOOL_PIPE_FALLBACK or the kernel's default where the kernel refuses
 * more (see pipe->size), or NULL: no memory, its two descriptors do not fit
 * the budget, or the kernel grants less than BUFPOOL_SIZE. Use buffers
 * then. After a pipe too small, the next BUFPOOL_PIPE_RETRY calls that
 * find no idle pipe return NULL without trying. */
struct relay_pipe *bufpool_get_pipe(struct bufpool *p);
/* Takes back a pipe; one still holding bytes (`dirty`) is closed. */
void bufpool_put_pipe(struct bufpool *p, struct relay_pipe *pipe, int dirty);

/* 512 KiB: about half the splice calls per MB of 256 KiB (docs/benchmarks.md,
 * 2026-12-07 tput). Past fs.pipe-max-size or the user's pipe-user-pages-soft
 * the kernel refuses it; 256 KiB may still fit. */
#ifndef BUFPOOL_PIPE_SIZE
#define BUFPOOL_PIPE_SIZE (512 * 1024)
#endif
#define BUFPOOL_PIPE_FALLBACK (256 * 1024)
#define BUFPOOL_PIPE_RETRY 64

#endif
