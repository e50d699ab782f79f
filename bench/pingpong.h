/* One tunnel to an echo target, ping-pong of fixed-size messages on its own
 * thread, recording each round trip. */
#ifndef BENCH_PINGPONG_H
#define BENCH_PINGPONG_H

#include "hist.h"
#include "opts.h"

#include <pthread.h>

struct pingpong {
    const struct opts *o;
    struct dest dest;
    struct window win; /* round trips that start and end inside are kept */
    pthread_t thread;
    struct hist hist;
    long long rounds; /* all round trips, in the window or not */
    char err[200];    /* empty unless the tunnel failed */
};

/* Start the thread. Returns 0, or -1 with p->err set. */
int pingpong_start(struct pingpong *p, const struct opts *o, const struct sockaddr_in *echo,
                   struct window win);

/* Wait for the thread to finish (at the window's end). */
void pingpong_join(struct pingpong *p);

/* Release the histogram. */
void pingpong_free(struct pingpong *p);

#endif
