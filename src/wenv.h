/* A worker's environment: what the sessions it runs may use of it.
 *
 * The worker (worker.c) fills and owns it and stays opaque: sessions, and
 * the udp and bind sub-machines they drive, see only this. Everything here
 * belongs to one worker thread, so nothing in it is locked. */
#ifndef SOCKS5D_WENV_H
#define SOCKS5D_WENV_H

#include <stddef.h>

#include "addr.h"
#include "bufpool.h"
#include "loop.h"
#include "net.h"
#include "stats.h"

struct auth_cache;
struct config;
struct policy_state;
struct resolver;
struct session;

/* The sessions running on one worker: written by session.c alone (linked
 * at start, unlinked at close); the worker reads n. */
struct session_set {
    struct session *head;
    size_t n;
};

struct wenv {
    int id; /* the worker's number, for log lines */
    struct loop *loop;
    struct config *cfg;     /* snapshot new sessions start with (the worker's reference) */
    struct addr_list *self; /* the host's own addresses now (the worker's reference) */
    struct resolver *resolver;
    struct auth_cache *auth_cache;
    struct bufpool pool;
    struct stats stats; /* this worker's counters: written on its thread only */
    struct session_set sessions;
    /* Called once for every session handed to session_start, after it is
     * gone, with the snapshot it ran under (cfg when it started): the owner
     * gives back what it took when it admitted it. Sessions take no
     * reference of their own: the owner keeps the snapshot until then. */
    void (*ended)(struct wenv *env, struct config *cfg);
};

/* What a session's sub-machine (a UDP association, a BIND listener) may use
 * of the session that drives it; all of it outlives the sub-machine. */
struct cmd_ctx {
    struct wenv *env;
    const struct config *cfg; /* the session's snapshot */
    struct policy_state *pol; /* decides every destination and peer */
    int control_fd;           /* the client's TCP connection (not owned) */
    union addr_any client;    /* its peer, as the rules see it */
    struct net_out out;       /* how its own outbound sockets leave (a route's `out`) */
};

#endif
