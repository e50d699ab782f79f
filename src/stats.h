/* Per-worker counters. Each has exactly one writer (its worker), so an
 * increment is a relaxed load and store, not a locked read-modify-write;
 * the metrics thread reads them with relaxed loads and sums over workers. */
#ifndef SOCKS5D_STATS_H
#define SOCKS5D_STATS_H

#include <stdatomic.h>
#include <stdint.h>

#include "lslots.h"

typedef _Atomic uint64_t stat_t;

/* Latency histogram upper bounds in ms (the last bucket is +Inf). */
#define STATS_BUCKETS 12
extern const uint32_t stats_bucket_ms[STATS_BUCKETS - 1];

/* Why a connection ended before a request was decided. */
enum hs_fail {
    HSF_TIMEOUT,
    HSF_PROTOCOL,  /* malformed greeting, auth or request */
    HSF_NO_METHOD, /* no acceptable method */
    HSF_AUTH,      /* wrong user or password */
    HSF_THROTTLED, /* too many failed logins from this IP */
    HSF_CLOSED,    /* client closed or reset mid-handshake */
    HSF_PROXY,     /* PROXY protocol header missing, malformed or untrusted */
    HSF_MAX,
};

struct histogram {
    stat_t bucket[STATS_BUCKETS];
    stat_t sum_ms, count;
};

struct stats {
    stat_t sessions[4][10]; /* [cmd 0..3][rep 0..8, 9: no reply] */
    stat_t handshake_fail[HSF_MAX];
    stat_t probes; /* connected and closed without a byte */
    stat_t auth_ok, auth_fail;
    stat_t auth_busy;        /* logins refused at once: verification queue full */
    stat_t gss_ok, gss_fail; /* GSS-API context establishments */
    stat_t gss_bad;          /* GSS-API sessions ended by a message that failed its check */
    stat_t refused_rule, refused_limit;
    stat_t handed_off; /* accepted here, started by a less busy worker */
    stat_t bytes_up, bytes_down;
    stat_t dgrams_up, dgrams_down, dgrams_dropped;
    stat_t dns_failures;
    struct histogram dns, connect;
    stat_t active;                     /* gauge: sessions open on this worker */
    stat_t listener_conns[LSLOTS_MAX]; /* connections accepted, by listener slot */
    /* By the listener slot that accepted the session: */
    stat_t listener_active[LSLOTS_MAX];  /* gauge: sessions open */
    stat_t listener_hs_fail[LSLOTS_MAX]; /* handshakes failed */
};

static inline void stat_add(stat_t *s, uint64_t n)
{
    atomic_store_explicit(s, atomic_load_explicit(s, memory_order_relaxed) + n,
                          memory_order_relaxed);
}

static inline void stat_inc(stat_t *s)
{
    stat_add(s, 1);
}

static inline uint64_t stat_get(const stat_t *s)
{
    return atomic_load_explicit((stat_t *)s, memory_order_relaxed);
}

void stats_observe(struct histogram *h, uint64_t ms);

#endif
