/* Bulk streams through the proxy on one client thread: upload (client
 * writes, a sink target counts) or download (a source target writes, the
 * client counts). */
#ifndef BENCH_BULK_H
#define BENCH_BULK_H

#include "opts.h"

#include <pthread.h>
#include <stdatomic.h>

struct stream;

struct bulk {
    const struct opts *o;
    struct dest dest;
    bool upload;
    int n;
    double end; /* the thread stops at this monotonic time */
    int epfd;
    struct stream *streams;
    pthread_t thread;
    atomic_ullong rx_bytes; /* download: bytes the client received */
    int established, failed;
    char err[200]; /* first failure */
};

/* Start n streams to target on a new thread. Returns 0, or -1 with b->err. */
int bulk_start(struct bulk *b, const struct opts *o, const struct sockaddr_in *target, bool upload,
               int n, double end);

/* Bytes each stream has moved so far into out[b->n]: received for a
 * download (what the proxy delivered), sent for an upload (what it took). */
void bulk_stream_bytes(const struct bulk *b, unsigned long long *out);

/* Wait for the thread, close every stream. */
void bulk_join(struct bulk *b);

#endif
