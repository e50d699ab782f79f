/* Descriptor budget: one shared counter, touched when a session opens or
 * closes a descriptor. See fdbudget.h. */
#include "fdbudget.h"

#include <dirent.h>
#include <stdatomic.h>

static _Atomic uint64_t used;
/* Set once at start, read by every thread; atomic because the metrics
 * thread already accepts (and charges) when the budget is set. */
static _Atomic uint64_t limit = UINT64_MAX; /* for FDB_CLIENT; FDB_EXTRA stops at limit - reserve */
static _Atomic uint64_t reserve;

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
    /* The reserve first: a reader never sees a reserve beyond the limit. */
    atomic_store_explicit(&reserve, res, memory_order_relaxed);
    atomic_store_explicit(&limit, lim, memory_order_relaxed);
}

int fdbudget_take(unsigned n, enum fdbudget_use use)
{
    uint64_t lim = get(&limit);
    uint64_t cap = use == FDB_CLIENT ? lim : lim - get(&reserve);
    uint64_t now = atomic_fetch_add_explicit(&used, n, memory_order_relaxed) + n;
    if (now <= cap)
        return 1;
    atomic_fetch_sub_explicit(&used, n, memory_order_relaxed);
    return 0;
}

void fdbudget_give(unsigned n)
{
    atomic_fetch_sub_explicit(&used, n, memory_order_relaxed);
}

int fdbudget_tight(void)
{
    uint64_t lim = get(&limit);
    return lim != UINT64_MAX && get(&used) + 4 * get(&reserve) > lim;
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
