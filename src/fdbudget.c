/* Descriptor budget: a shared count leased to threads (lease.h), so
 * opening and closing a descriptor touches only the thread's own lease
 * except once per batch. See fdbudget.h. */
#include "fdbudget.h"

#include <dirent.h>
#include <stdatomic.h>

#include "lease.h"

static struct lease_pool used;
/* Each thread that charges descriptors (workers, the metrics thread) holds
 * a lease; those threads live as long as the process. */
static _Thread_local struct lease mine;
/* Set once at start, read by every thread; atomic because the metrics
 * thread already accepts (and charges) when the budget is set. */
static _Atomic uint64_t limit = UINT64_MAX; /* for FDB_CLIENT; FDB_EXTRA stops at limit - reserve */
static _Atomic uint64_t reserve;
/* What the threads may keep unused stays under a quarter of the reserve:
 * the clients' reserve stays theirs, and the budget is exact (batch 0)
 * when it is small. */
static _Atomic uint64_t batch = LEASE_MAX_BATCH;

static uint64_t get(_Atomic uint64_t *v)
{
    return atomic_load_explicit(v, memory_order_relaxed);
}

void fdbudget_init(uint64_t nofile, uint64_t in_use, int nworkers)
{
    /* Left uncharged: resolver sockets (a few per worker), a log file
     * reopened next to the old one, a peer accepted before its BIND
     * listener closes, a reload's new listeners. */
    uint64_t slack = 8 + 2 * (uint64_t)nworkers + nofile / 64;
    uint64_t lim = nofile > in_use + slack ? nofile - in_use - slack : 0;
    uint64_t res = lim / 8 > 2 ? lim / 8 : 2;
    if (res > 1024)
        res = 1024;
    if (res > lim)
        res = lim;
    uint64_t holders = (uint64_t)nworkers + 1; /* the metrics thread too */
    uint64_t b = lease_batch(lim, (unsigned)holders);
    if (b > res / (8 * holders))
        b = res / (8 * holders);
    atomic_store_explicit(&batch, b, memory_order_relaxed);
    /* The reserve first: a reader never sees a reserve beyond the limit. */
    atomic_store_explicit(&reserve, res, memory_order_relaxed);
    atomic_store_explicit(&limit, lim, memory_order_relaxed);
}

int fdbudget_take(unsigned n, enum fdbudget_use use)
{
    uint64_t lim = get(&limit);
    uint64_t cap = use == FDB_CLIENT ? lim : lim - get(&reserve);
    return lease_take(&used, &mine, n, cap, get(&batch));
}

void fdbudget_give(unsigned n)
{
    lease_give(&used, &mine, n, get(&batch));
}

int fdbudget_tight(void)
{
    uint64_t lim = get(&limit);
    return lim != UINT64_MAX && lease_leased(&used) + 4 * get(&reserve) > lim;
}

uint64_t fdbudget_count_open(void)
{
    DIR *d = opendir("/proc/self/fd");
    uint64_t n = 0;
    if (!d)
        return 0;
    while (readdir(d))
        n++;
    closedir(d);
    return n > 3 ? n - 3 : 0; /* ".", ".." and the directory's own fd */
}
