/* Loopback targets the proxy connects to, each served by its own thread. */
#ifndef BENCH_TARGETS_H
#define BENCH_TARGETS_H

#include "loop.h"

#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>

enum target_kind {
    TARGET_SINK,    /* reads and discards, counting bytes */
    TARGET_ECHO,    /* sends back what it reads */
    TARGET_SOURCE,  /* writes without end once a client connects */
    TARGET_UDP_ECHO /* sends each datagram back to its sender */
};

struct tconn;

struct target {
    enum target_kind kind;
    struct sockaddr_in addr;
    struct handler listener;
    int epfd;
    pthread_t thread;
    atomic_bool stop;
    atomic_ullong bytes; /* received (sink, echo, udp) or sent (source) */
    atomic_ullong conns; /* connections accepted */
    struct tconn *live;  /* open connections, freed by target_stop */
    char *scratch;       /* read/write buffer shared by the thread */
    char err[160];       /* first failure seen by the thread */
};

/* Bind an ephemeral loopback port and start serving. Returns 0, or -1 with
 * t->err set. */
int target_start(struct target *t, enum target_kind kind);

/* Stop the thread and close every socket. */
void target_stop(struct target *t);

#endif
