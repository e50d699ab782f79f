/* Descriptor budget: one shared counter, touched when a session opens or
 * closes a descriptor. See fdbudget.h. */
#include "fdbudget.h"

#include <dirent.h>
#include <stdatomic.h>

static _Atomic uint64_t used;
static uint64_t limit = UINT64_MAX; /* for FDB_CLIENT; FDB_EXTRA stops at limit - reserve */
static uint64_t reserve;

void fdbudget_init(uint64_t nofile, uint64_t in_use, int nworkers)
{
    /* Left uncharged: resolver sockets (a few per worker), a log file
     * reopened next to the old one, a peer accepted before its BIND
     * listener closes, a reload's new listeners. */
    uint64_t slack = 8 + 2 * (uint64_t)nworkers + nofile / 64;
    limit = nofile > in_use + slack ? nofile - in_use - slack : 0;
    reserve = limit / 8 > 2 ? limit / 8 : 2;
    if (reserve > 1024)
        reserve = 1024;
    if (reserve > limit)
        reserve = limit;
}

int fdbudget_take(unsigned n, enum fdbudget_use use)
{
    uint64_t cap = use == FDB_CLIENT ? limit : limit - reserve;
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
    uint64_t now = atomic_load_explicit(&used, memory_order_relaxed);
    return limit != UINT64_MAX && now + 4 * reserve > limit;
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
