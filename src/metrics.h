/* The metrics endpoint: Prometheus text at /metrics, a health check at
 * /healthz, and the live session list at /sessions, served by a thread of
 * its own so a scrape never touches a worker's loop (the session list is
 * asked of the workers through their mailboxes). Off unless configured. */
#ifndef SOCKS5D_METRICS_H
#define SOCKS5D_METRICS_H

#include <stddef.h>

#include "addr.h"

struct worker;

/* Who may list and close sessions (/sessions, /sessions/close). */
enum metrics_sessions {
    METRICS_SESSIONS_LOOPBACK = 0, /* the default */
    METRICS_SESSIONS_OFF,
    METRICS_SESSIONS_ANY,
};

/* Binds the endpoint (family 0: metrics off, nothing happens); sessions is
 * an enum metrics_sessions. Returns 0, or -1 with the reason in err. */
int metrics_start(const union addr_any *addr, int nworkers, int sessions, char *err, size_t errlen);
/* Starts serving once the workers exist. */
void metrics_set_workers(struct worker **w, int n);
/* /healthz answers 503 from now on: a load balancer stops sending. */
void metrics_set_draining(void);
/* Counts a reload and whether it succeeded. */
void metrics_reloaded(int ok);
void metrics_stop(void);

#endif
