/* Latency histogram with 1 µs buckets up to one second. */
#ifndef BENCH_HIST_H
#define BENCH_HIST_H

#include <stdint.h>

struct hist {
    uint32_t *bucket; /* HIST_MAX_US buckets; the last also takes overflow */
    uint64_t count;
};

/* Returns 0 or -1 (out of memory). */
int hist_init(struct hist *h);
void hist_free(struct hist *h);
void hist_add_ns(struct hist *h, uint64_t ns);
/* Percentile p (0..100) in microseconds; 0 when empty. */
double hist_pct(const struct hist *h, double p);

#endif
