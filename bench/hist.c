#include "hist.h"

#include <stdlib.h>

#define HIST_MAX_US 1000000u

int hist_init(struct hist *h)
{
    h->count = 0;
    h->bucket = calloc(HIST_MAX_US, sizeof(*h->bucket));
    return h->bucket ? 0 : -1;
}

void hist_free(struct hist *h)
{
    free(h->bucket);
    h->bucket = NULL;
}

void hist_add_ns(struct hist *h, uint64_t ns)
{
    uint64_t us = ns / 1000u;
    h->bucket[us < HIST_MAX_US ? us : HIST_MAX_US - 1]++;
    h->count++;
}

double hist_pct(const struct hist *h, double p)
{
    uint64_t rank, seen = 0;
    if (h->count == 0)
        return 0;
    /* Nearest-rank percentile: the smallest value with at least p% of the
     * samples at or below it. */
    rank = (uint64_t)((p / 100.0) * (double)h->count + 0.999999);
    if (rank < 1)
        rank = 1;
    for (uint32_t us = 0; us < HIST_MAX_US; us++) {
        seen += h->bucket[us];
        if (seen >= rank)
            return us;
    }
    return HIST_MAX_US - 1;
}
