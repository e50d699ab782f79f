#include "lslots.h"

#include <pthread.h>
#include <stdio.h>
#include <stdatomic.h>
#include <string.h>

static struct {
    pthread_mutex_t mu;                 /* taken when a listener is adopted */
    char name[LSLOTS_MAX][ADDR_STRLEN]; /* written once, before n covers it */
    atomic_uint n;
} ls = {.mu = PTHREAD_MUTEX_INITIALIZER};

unsigned lslots_get(const union addr_any *addr)
{
    char name[ADDR_STRLEN];
    unsigned i, n;
    addr_str(&addr->sa, name, sizeof name);
    pthread_mutex_lock(&ls.mu);
    n = atomic_load(&ls.n);
    for (i = 0; i < n && strcmp(ls.name[i], name) != 0; i++)
        ;
    if (i == n && n < LSLOTS_MAX) {
        snprintf(ls.name[n], sizeof ls.name[n], "%s", n == LSLOTS_MAX - 1 ? "other" : name);
        atomic_store(&ls.n, n + 1);
    }
    pthread_mutex_unlock(&ls.mu);
    return i < LSLOTS_MAX ? i : LSLOTS_MAX - 1;
}

unsigned lslots_count(void)
{
    return atomic_load(&ls.n);
}

const char *lslots_name(unsigned i)
{
    return ls.name[i];
}
