/* Leased counts under a limit. See lease.h. */
#include "lease.h"

uint64_t lease_batch(uint64_t limit, unsigned holders)
{
    uint64_t b = limit / (256 * (uint64_t)(holders ? holders : 1));
    return b < LEASE_MAX_BATCH ? b : LEASE_MAX_BATCH;
}

/* Adds n to the pool if that keeps it within limit. */
static int pool_add(struct lease_pool *p, uint64_t n, uint64_t limit)
{
    uint64_t before = atomic_fetch_add_explicit(&p->leased, n, memory_order_relaxed);
    if (before + n <= limit)
        return 1;
    atomic_fetch_sub_explicit(&p->leased, n, memory_order_relaxed);
    return 0;
}

/* Keeps at most two batches unused, one after trimming. */
static void trim(struct lease_pool *p, struct lease *l, uint64_t batch)
{
    if (l->have <= 2 * batch)
        return;
    atomic_fetch_sub_explicit(&p->leased, l->have - batch, memory_order_relaxed);
    l->have = batch;
}

int lease_take(struct lease_pool *p, struct lease *l, uint64_t n, uint64_t limit, uint64_t batch)
{
    trim(p, l, batch); /* the limit, and with it the batch, may have come down */
    if (l->have >= n) {
        l->have -= n;
        return 1;
    }
    /* A batch more while the pool is far from the limit; near it, exactly
     * what is asked for, so the last slots go to whoever asks first. */
    if (batch && pool_add(p, n + batch, limit)) {
        l->have += batch;
        return 1;
    }
    return pool_add(p, n, limit);
}

void lease_give(struct lease_pool *p, struct lease *l, uint64_t n, uint64_t batch)
{
    l->have += n;
    trim(p, l, batch);
}

void lease_return(struct lease_pool *p, struct lease *l)
{
    atomic_fetch_sub_explicit(&p->leased, l->have, memory_order_relaxed);
    l->have = 0;
}

uint64_t lease_leased(const struct lease_pool *p)
{
    return atomic_load_explicit((_Atomic uint64_t *)&p->leased, memory_order_relaxed);
}
