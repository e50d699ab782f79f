/* Many tunnels opened at once, with a bounded number of handshakes in
 * flight, client addresses spread over 127.0.0.2-251 (idle, trickle). */
#ifndef BENCH_FLEET_H
#define BENCH_FLEET_H

#include "loop.h"
#include "opts.h"

struct fleet;

struct fleet_tun {
    struct handler h;
    struct tunnel t;
    struct fleet *f;
    bool up; /* handshake done and on_up accepted it */
};

struct fleet {
    const struct opts *o;
    struct dest dest;
    int epfd;
    int count; /* tunnels to open */
    struct fleet_tun *tun;
    int next, pending, established, failed;
    /* Called once a tunnel's handshake is done; returns 0 to keep it (the
     * callback sets up its events) or -1 after fleet_fail. */
    int (*on_up)(struct fleet_tun *it);
    char err[200]; /* first failure */
};

/* Returns 0, or -1 (out of memory or descriptors) with f->err set. */
int fleet_init(struct fleet *f, const struct opts *o, const struct dest *d, int count,
               int (*on_up)(struct fleet_tun *it));

/* Open every tunnel, giving up on what is not up after timeout_s. */
void fleet_open(struct fleet *f, double timeout_s);

/* Count a failure of it (first one in f->err) and close its socket. */
void fleet_fail(struct fleet_tun *it, const char *what, int err);

/* Close every tunnel still open, release the rest. */
void fleet_free(struct fleet *f);

#endif
