/* A count under a process-wide limit that threads share without touching a
 * shared cache line for every take and give.
 *
 * The pool counts what it has leased to holders (a worker, a thread); a
 * holder hands slots out of its own lease and goes back to the pool only
 * when its lease is empty (taking a batch more than it needs) or when it
 * holds more than two batches unused (giving the excess back). So:
 *   - in use never exceeds the limit: the pool's count, which is at least
 *     what is in use, is checked against it with one atomic add;
 *   - a take may be refused early by what other holders keep unused, at
 *     most two batches each; the caller keeps that small by choosing the
 *     batch (lease_batch), and a batch of 0 is the exact shared counter;
 *   - a limit lowered at run time is exceeded by at most two batches (of
 *     the new limit) per holder: a holder trims what it keeps to the batch
 *     it is given at every take and give.
 * A holder is used by one thread at a time; the pool by any. */
#ifndef SOCKS5D_LEASE_H
#define SOCKS5D_LEASE_H

#include <stdatomic.h>
#include <stdint.h>

#define LEASE_MAX_BATCH 64

struct lease_pool {
    _Alignas(64) _Atomic uint64_t leased; /* handed to holders: in use or kept by them */
};

struct lease {
    uint64_t have; /* leased from the pool and not in use */
};

/* The batch for a limit shared by `holders`: the slots they may keep unused
 * stay under 1/128 of the limit (2 batches each), at most LEASE_MAX_BATCH;
 * 0 (exact) for small limits. */
uint64_t lease_batch(uint64_t limit, unsigned holders);
/* Takes n slots under limit. Returns 1, or 0 with nothing taken. */
int lease_take(struct lease_pool *p, struct lease *l, uint64_t n, uint64_t limit, uint64_t batch);
/* Gives back n slots taken before. */
void lease_give(struct lease_pool *p, struct lease *l, uint64_t n, uint64_t batch);
/* Gives the pool everything the holder keeps unused (a holder that ends). */
void lease_return(struct lease_pool *p, struct lease *l);
/* Slots leased to holders: in use plus kept unused (relaxed). */
uint64_t lease_leased(const struct lease_pool *p);

#endif
