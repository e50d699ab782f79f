/* Command-line settings shared by every scenario. */
#ifndef BENCH_OPTS_H
#define BENCH_OPTS_H

#include "socks.h"

#include <netinet/in.h>
#include <stdbool.h>

struct opts {
    const char *scenario;
    struct proxy_cfg proxy;
    const char *domain; /* CONNECT by this name instead of the target's IPv4 */
    double duration;    /* measured seconds */
    double warmup;      /* unmeasured seconds before the measurement */
    double hold;        /* idle, trickle: longest wait for the driver; sink: lifetime */
    int streams;        /* tput: bulk streams */
    int clients;        /* crr: concurrent clients */
    int size;           /* message / datagram payload bytes */
    int count;          /* idle, trickle: tunnels to open */
    int window;         /* udp: datagrams in flight */
    int interval_ms;    /* trickle: each tunnel writes once per interval */
    int target_port;    /* -T: first TCP target's port, 0 = random */
    bool have_target;
    struct sockaddr_in target; /* idle: sink from `loadgen sink` */
};

/* Measurement window in monotonic seconds, shared by a scenario's threads. */
struct window {
    double start, end;
};

#endif
